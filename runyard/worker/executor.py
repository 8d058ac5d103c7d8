"""Execute one claimed run: classify how its agent loop ended, then persist that with one store call.

1. `_classify` drives the loop (`_drive`: resume, then turns until an answer or a pause) and maps
   how it ended to one `Outcome`: completed, paused for humans, failed, cancelled by a caller,
   released at shutdown, or abandoned (a lost lease, an unreachable database).
2. `_persist` writes that outcome with exactly one `store.outcomes` call (none when abandoned).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from pydantic_ai.exceptions import AgentRunError, UserError
from pydantic_ai.messages import ModelMessage
from pydantic_ai.tools import DeferredToolRequests

from .. import logs, tracing
from .._budgets import StopReason
from ..config import Settings
from ..store import outcomes
from ..store.checkpoints import Checkpoint
from ..store.db import Store, Tx
from ..store.errors import LeaseLost, is_unavailable
from ..store.events import Fence, NewEvent
from ..store.journal import JournalMismatch
from ..store.outcomes import ClaimedRun, FollowUpsQueued
from .agents import BudgetExceeded, JournalToolset, RunDeps, RunState, agent_for, declared_tools, tool_names
from .humans import plan_wait, remembered_tools, waits_for
from .models import ModelError, resolve_model
from .resume import prepare, take_follow_ups
from .routing import configured
from .tools.mcp_config import MCPConnection
from .turns import StreamCut, checkpoint_of, jsonable, run_turn
from .writer import EventWriter, Flusher

__all__ = [
    "Abandoned",
    "CancelReason",
    "Cancelled",
    "Completed",
    "Failed",
    "Outcome",
    "Paused",
    "Released",
    "RunHandle",
    "execute",
]

log = logging.getLogger("runyard.worker")


class CancelReason(str, enum.Enum):
    """Why the worker cancelled a run's task."""

    USER = "user"
    """A caller asked to cancel the run: it ends as `cancelled`."""
    SHUTDOWN = "shutdown"
    """The worker is stopping: the run goes back to the queue for another worker."""
    LEASE_LOST = "lease_lost"
    """Another attempt owns the run: stop without writing anything."""


@dataclass
class RunHandle:
    """What the worker knows of a run it executes."""

    run: ClaimedRun
    task: asyncio.Task[None] | None = None
    cancel_reason: CancelReason | None = None

    @property
    def fence(self) -> Fence:
        return self.run.fence

    def cancel(self, reason: CancelReason) -> None:
        if self.cancel_reason is None and self.task is not None:
            self.cancel_reason = reason
            self.task.cancel()


@dataclass(frozen=True)
class Completed:
    output: Any
    checkpoint: Checkpoint | None
    """The final conversation; None when the saved checkpoint already is."""
    messages: list[ModelMessage] | None = None
    """That conversation, to go on from if follow-ups turn out to be queued."""


@dataclass(frozen=True)
class Paused:
    """Stopped for humans: the waits to open (questions, input, approvals, a plan)."""

    waits: list[dict[str, Any]]
    checkpoint: Checkpoint


@dataclass(frozen=True)
class Failed:
    error: str
    stop_reason: StopReason = "error"
    output: Any = None
    """Past a budget: the text streamed so far, kept as the partial output."""


@dataclass(frozen=True)
class Cancelled:
    output: str | None
    """The text streamed before the cancel: the partial output."""


@dataclass(frozen=True)
class Released:
    reason: str


@dataclass(frozen=True)
class Abandoned:
    """Nothing can or may be written: another attempt owns the run, or the database is unreachable
    (the lease then expires and a worker resumes the run from its last checkpoint)."""

    reason: str


Outcome = Completed | Paused | Failed | Cancelled | Released | Abandoned


async def execute(
    store: Store, settings: Settings, handle: RunHandle, flusher: Flusher | None = None, *, trace_id: str | None = None
) -> None:
    """Run one claimed run to its outcome (an end, a pause, a cancel, a shutdown, or a lost lease).

    `flusher`: the worker's, shared by all its runs (default: one for this run alone). `trace_id`:
    the run's (from its row), the trace of the attempt's span when tracing is on."""
    with logs.bind(run_id=handle.run.id):  # the worker binds it too (with its id): this covers direct calls
        if not tracing.enabled():
            await _execute(store, settings, handle, flusher)
            return
        # Model request and tool call spans (pydantic-ai's) are this span's descendants.
        with tracing.attempt_span(handle.run, trace_id) as span:
            outcome = await _execute(store, settings, handle, flusher)
            tracing.end_attempt(span, _status_of(outcome), outcome.error if isinstance(outcome, Failed) else None)


def _status_of(outcome: Outcome | None) -> str:
    """The attempt span's `runyard.run.status`: the run's status once this outcome is written."""
    match outcome:
        case Completed():
            return "completed"
        case Paused():
            return "waiting"
        case Failed():
            return "failed"
        case Cancelled():
            return "cancelled"
        case Released():
            return "pending"  # back in the queue for another worker
        case _:
            return "abandoned"  # another attempt owns the run, or the database was unreachable


async def _execute(store: Store, settings: Settings, handle: RunHandle, flusher: Flusher | None) -> Outcome | None:
    """Returns the outcome written (None or `Abandoned` when this attempt wrote none)."""
    run = handle.run
    outcome: Outcome | None = None
    own = flusher is None
    flusher = flusher or Flusher(store, settings.flush_interval)
    writer = EventWriter(store, run.id, run.fence, flusher=flusher)
    state = RunState(usage=dict(run.usage), claimed_pending=run.pending_messages)
    try:
        outcome = await _classify(store, settings, run, writer, state, handle)
        while True:
            try:
                await _persist(outcome, writer, run, state)
                break
            except FollowUpsQueued:
                # Messages came in while the model wrote its answer: one more turn takes them.
                assert isinstance(outcome, Completed) and outcome.messages is not None
                outcome = await _classify(store, settings, run, writer, state, handle, then=outcome.messages)
    except LeaseLost:
        outcome = None  # another attempt owns the run now: it writes, this one stops
    except asyncio.CancelledError:
        if handle.cancel_reason is None:
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        # Too late to change the outcome: let its shielded write land before the worker lets go.
        await writer.settle()
    finally:
        writer.close()
        if own:
            flusher.close()
    return outcome


async def _classify(
    store: Store,
    settings: Settings,
    run: ClaimedRun,
    writer: EventWriter,
    state: RunState,
    handle: RunHandle,
    *,
    then: list[ModelMessage] | None = None,
) -> Outcome:
    """How the agent loop ended, as one outcome: the only place errors and cancels are sorted."""
    try:
        return await _drive(store, settings, run, writer, state, then=then)
    except asyncio.CancelledError:
        if handle.cancel_reason is None:
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        if handle.cancel_reason is CancelReason.USER:
            return Cancelled("".join(state.text) or None)
        if handle.cancel_reason is CancelReason.SHUTDOWN:
            return Released("worker shutdown")
        return Abandoned("lease lost")
    except LeaseLost:
        return Abandoned("lease lost")
    except BudgetExceeded as exc:
        return Failed(str(exc), "budget_exceeded", "".join(state.text) or None)
    except (ModelError, AgentRunError, UserError, JournalMismatch) as exc:
        return Failed(_error_text(exc))
    except Exception as exc:
        budget = exc.subgroup(BudgetExceeded) if isinstance(exc, ExceptionGroup) else None
        if budget is not None:  # tool calls run in parallel may raise it inside a group
            return Failed(str(budget.exceptions[0]), "budget_exceeded", "".join(state.text) or None)
        if is_unavailable(exc):
            # Checked before OSError: a refused database connection is one, and must not fail the run.
            log.warning("run %s: database unavailable (%s); leaving it to the lease", run.id, exc)
            return Abandoned("database unavailable")
        if isinstance(exc, (ValueError, OSError)):
            return Failed(_error_text(exc))
        log.exception("run %s failed", run.id)  # an unrecoverable tool error or a bug: the worker goes on
        return Failed(f"{type(exc).__name__}: {exc}")


async def _persist(outcome: Outcome, writer: EventWriter, run: ClaimedRun, state: RunState) -> None:
    """One store call per outcome, with the events still buffered, in one fenced transaction."""
    if isinstance(outcome, Abandoned):
        return
    await writer.settle()  # a cancel may have left a step's commit running: the outcome comes after it
    usage = dict(state.usage)
    try:
        match outcome:
            case Completed(output=output, checkpoint=saved):
                delivered = state.delivered
                await writer.commit(
                    lambda tx, new: outcomes.complete(
                        tx, run, new, output=output, usage=usage, checkpoint=saved, delivered=delivered
                    )
                )
            case Paused(waits=waits, checkpoint=saved):
                await writer.commit(
                    lambda tx, new: outcomes.pause(tx, run, new, waits=waits, usage=usage, checkpoint=saved)
                )
            case Cancelled(output=output):
                await writer.commit(lambda tx, new: outcomes.cancel(tx, run, new, output=output, usage=usage))
            case Released(reason=reason):
                await writer.commit(lambda tx, new: outcomes.release(tx, run, new, usage=usage, reason=reason))
            case Failed(error=error, stop_reason=stop_reason, output=output):
                await _fail(writer, run, error, usage, stop_reason=stop_reason, output=output)
    except (LeaseLost, FollowUpsQueued):
        raise
    except Exception as exc:
        if isinstance(outcome, Failed) or is_unavailable(exc):
            log.warning("run %s: could not write its outcome (%s); leaving it to the lease", run.id, exc)
            return
        # The outcome itself cannot be stored (e.g. an output the database refuses): the run fails.
        log.exception("run %s: could not write its outcome", run.id)
        await _fail(writer, run, f"{type(exc).__name__}: {exc}", usage)


async def _fail(
    writer: EventWriter,
    run: ClaimedRun,
    error: str,
    usage: dict[str, Any],
    *,
    stop_reason: StopReason = "error",
    output: Any = None,
) -> None:
    async def write(tx: Tx, new: list[NewEvent]) -> None:
        await outcomes.fail(tx, run, new, error=error, usage=usage, stop_reason=stop_reason, output=output)

    try:
        await writer.commit(write)
    except LeaseLost:
        raise
    except Exception:
        # What failed may be in the buffer itself (data the store cannot encode): the run's end matters more.
        writer.discard()
        await writer.commit(write)


async def _drive(
    store: Store,
    settings: Settings,
    run: ClaimedRun,
    writer: EventWriter,
    state: RunState,
    *,
    then: list[ModelMessage] | None = None,
) -> Completed | Paused:
    """Run the agent loop from the checkpoint (or the task) until it answers or pauses for humans;
    `then`: go on from this conversation with the follow-ups queued since it ended."""
    resolved = resolve_model(
        run.model,
        run.config.get("script"),
        configured(settings),
        task=run.original_prompt,
        route_id=run.config.get("route_id"),
        emit=writer.emit,
    )
    # Going on after follow-ups: from where this attempt started, not a second read of it.
    start = state.start if then is not None else await prepare(store, run, state)
    state.start = start
    if start.answer is not None and then is None:
        return Completed(start.answer, None, start.history)  # the saved checkpoint already ends with this answer
    servers = run.config.get("mcp_servers") or []
    if start.planning and not (start.fresh and then is None):
        servers = []  # while a plan waits no tool is offered; a fresh start connects only to declare them
    # MCP tools are prefixed by their server; one that would shadow a tool of the run is skipped.
    async with _connect_mcp(servers, settings, reserved=tool_names(run)) as mcp:
        for server, error in mcp.errors:
            # The run goes on without that server's tools: the model may manage with the others.
            writer.emit("tool.error", {"server": server, "error": error})
        if start.fresh and then is None:
            # The tools the run may use (in plan mode they stay hidden until the plan is approved).
            writer.emit("tools.declared", {"tools": declared_tools(run, tool_names(run), mcp.specs)})
        names = tool_names(run, planning=start.planning)
        offered_mcp = {} if start.planning else dict(mcp.specs)
        mode = run.options.permission_mode
        deps = RunDeps(
            run,
            writer,
            state,
            settings,
            offered=frozenset([*names, *offered_mcp]),
            prices=resolved.prices,
            routed=resolved.routed,
            permission_mode="autonomous" if mode == "plan" else mode,
            remembered=remembered_tools(start.waits),
            mcp=offered_mcp,
        )
        agent = agent_for(run, names)
        history, prompt, deferred = start.history, start.prompt, start.deferred
        if then is not None:
            history, prompt, deferred = then, await take_follow_ups(store, run, state), None
        state.answered = frozenset(deferred.calls) if deferred is not None else frozenset()
        while True:
            try:
                async with agent.iter(
                    prompt,
                    message_history=history,
                    model=resolved.model,
                    deps=deps,
                    deferred_tool_results=deferred,
                    instructions=start.instructions,
                    toolsets=[JournalToolset(t) for t in mcp.toolsets] if offered_mcp else None,
                ) as agent_run:
                    await run_turn(agent_run, deps)
                break
            except StreamCut as cut:
                # The same request again, from the conversation that led to it (nothing re-executed).
                history, prompt, deferred = cut.messages, None, None
    assert agent_run.result is not None
    messages, output = agent_run.all_messages(), agent_run.result.output
    if isinstance(output, DeferredToolRequests):
        return Paused(waits_for(output, run), checkpoint_of(messages, state))
    if start.planning:
        return Paused([plan_wait(str(output), run)], checkpoint_of(messages, state))
    # Messages queued while the model answered its last step start one more turn: completing
    # checks the queue under the run's lock (`FollowUpsQueued`), so no read is needed here.
    return Completed(jsonable(output), checkpoint_of(messages, state), messages)


def _connect_mcp(
    servers: list[dict[str, Any]], settings: Settings, *, reserved: list[str]
) -> AbstractAsyncContextManager[MCPConnection]:
    if not servers:
        return nullcontext(MCPConnection())
    from .tools.mcp import connect  # fastmcp takes ~2 s to import: only runs with MCP servers pay for it

    return connect(servers, settings, reserved=reserved)


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text
