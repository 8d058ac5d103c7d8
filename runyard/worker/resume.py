"""Where an attempt of a run starts: the task on a first attempt, else the last checkpoint.

`prepare` reads everything the attempt starts from in one connection: the checkpoint and the
run's waits (never on a first attempt: there are none yet), the user's memories, and the
thread's earlier conversations when there is no checkpoint to continue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse, TextPart, repair_messages
from pydantic_ai.tools import DeferredToolResults

from ..store import checkpoints, files, memories, threads
from ..store import runs as runs_store
from ..store import waits as waits_store
from ..store.db import Conn, Store
from ..store.outcomes import ClaimedRun
from .agents import FILES, PLAN_INSTRUCTIONS, RunState
from .humans import deferred_results, own_messages, plan_prompt, planning

__all__ = ["Start", "prepare", "take_follow_ups"]


@dataclass(frozen=True)
class Start:
    """What the first turn of an attempt is given."""

    history: list[ModelMessage] | None
    """The conversation to continue: the checkpoint's, else the thread's earlier runs'."""
    prompt: str | None
    """The task on a fresh start; what to tell the model next on a resume (None: nothing new)."""
    deferred: DeferredToolResults | None
    """Answers of the checkpoint's pending calls, from resolved waits."""
    waits: list[dict[str, Any]]
    planning: bool
    """In `plan` mode before a plan was approved: no tools, only a plan."""
    instructions: str | None
    """The user's memories and the plan instructions, added to the agent's own."""
    fresh: bool
    """No checkpoint: nothing of the run happened yet (its tools are declared now)."""

    @property
    def answer(self) -> str | None:
        """Resumed at a turn's end with nothing new to say: the last response's text is the run's answer.

        A response with tool calls is not an end: pydantic-ai runs them (or replays them)."""
        last = self.history[-1] if self.history else None
        if self.prompt is None and self.deferred is None and isinstance(last, ModelResponse) and not last.tool_calls:
            return "".join(p.content for p in last.parts if isinstance(p, TextPart))
        return None


async def prepare(store: Store, run: ClaimedRun, state: RunState) -> Start:
    """Load the attempt's starting point; sets `state.history_len` and takes pending follow-ups on a resume."""
    options = run.options
    saved: checkpoints.Checkpoint | None = None
    waits: list[dict[str, Any]] = []
    earlier: list[tuple[str, str, int]] = []
    memory_block: str | None = None
    files_block: str | None = None
    async with store.read() as conn:
        if run.attempt > 1:
            saved = await checkpoints.load(conn, run.org_id, run.id)
            waits = await waits_store.for_run(conn, run.org_id, run.id)
        if saved is None and options.history and not run.config.get("opens_thread"):
            earlier = await threads.conversations(
                conn, run.org_id, run.thread_id, before_run=run.id, terminal_only=True
            )
        if options.memory and run.user_id:
            memory_block = await _memory_block(conn, run.org_id, run.user_id)
        if FILES in run.config.get("tools", []):
            # What earlier runs of the thread (and the caller's uploads) left in the workspace.
            files_block = await files.workspace_block(conn, run.org_id, run.thread_id)
    is_planning = planning(run, waits)
    blocks = [memory_block, files_block, PLAN_INSTRUCTIONS if is_planning else None]
    instructions = "\n\n".join(filter(None, blocks)) or None
    if saved is None:
        history = _thread_history(earlier)
        state.history_len = len(history) if history else 0
        return Start(history, run.original_prompt, None, waits, is_planning, instructions, fresh=True)
    history = ModelMessagesTypeAdapter.validate_json(saved.messages)
    state.history_len = saved.history_len
    start = Start(
        history,
        plan_prompt(run, waits, history),
        deferred_results(history, waits),
        waits,
        is_planning,
        instructions,
        fresh=False,
    )
    if start.answer is not None:
        # Resumed at a turn's end (a crash between the final answer and completing): only new messages go on.
        prompt = await take_follow_ups(store, run, state) or None
        if prompt is not None:
            start = Start(history, prompt, None, waits, is_planning, instructions, fresh=False)
    return start


async def take_follow_ups(store: Store, run: ClaimedRun, state: RunState) -> str:
    """Follow-up messages not yet given to the model; they leave the queue with the next checkpoint."""
    if state.claimed_pending is not None:
        pending, state.claimed_pending = state.claimed_pending, None
    else:
        async with store.read() as conn:
            pending = await runs_store.pending_messages(conn, run.org_id, run.id)
    fresh = pending[state.delivered :]
    state.delivered = len(pending)
    return "\n\n".join(fresh)


async def _memory_block(conn: Conn, org_id: str, user_id: str) -> str | None:
    saved = await memories.all_for_user(conn, org_id, user_id)
    if not saved:
        return None
    lines = "\n".join(f"- [{m['id']}] {m['text']}" for m in saved)
    return f"What you know about this user (ids let you forget a fact):\n{lines}"


def _thread_history(earlier: list[tuple[str, str, int]]) -> list[ModelMessage] | None:
    """The thread's earlier runs, as the conversation this run continues (`history` option)."""
    history: list[ModelMessage] = []
    for _run_id, blob, history_len in earlier:
        history.extend(own_messages(ModelMessagesTypeAdapter.validate_json(blob), history_len))
    return repair_messages(history) if history else None
