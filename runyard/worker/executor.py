"""Execute one claimed run with pydantic-ai, node by node, checkpointing after every step.

`_drive` runs the agent loop to an outcome (`Done`, or `Pause` for humans); `execute` maps
errors, cancels and lost leases; `_persist` writes exactly one store call per outcome.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.exceptions import AgentRunError, UserError
from pydantic_ai.messages import (
    FunctionToolResultEvent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    ToolCallPart,
    UserPromptPart,
    repair_messages,
)
from pydantic_ai.tools import DeferredToolRequests

import logging

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from ..config import Settings
from ..domain import RunStatus
from ..store import checkpoints, memories, queue, threads
from ..store import runs as runs_store
from ..store import waits as waits_store
from ..store.db import Store, Tx
from ..store.errors import LeaseLost
from ..store.events import Fence
from .models import ModelError, Prices, ResolvedModel, load_routes, resolve_model
from .agents import PLAN_INSTRUCTIONS, RunDeps, RunState, agent_for, declared_tools, tool_names
from .humans import Pause, deferred_results, own_messages, plan_prompt, plan_wait, planning, remembered_tools, waits_for
from .writer import EventWriter

__all__ = ["CancelReason", "RunHandle", "execute"]

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

    run_id: str
    fence: Fence
    task: asyncio.Task[None] | None = None
    cancel_reason: CancelReason | None = None

    def cancel(self, reason: CancelReason) -> None:
        if self.cancel_reason is None and self.task is not None:
            self.cancel_reason = reason
            self.task.cancel()


def _add_usage(state: RunState, response: ModelResponse, prices: Prices | None) -> dict[str, Any]:
    """Fold one model response's usage into the run's; returns that request's usage event data."""
    u = response.usage
    cost: float | None
    if prices is not None:
        cost = prices.cost(u.input_tokens, u.output_tokens, u.cache_read_tokens)
    else:
        try:
            cost = float(response.cost().total_price)
        except Exception:  # unknown model or provider: genai-prices has no price for it
            cost = None
    reasoning = u.output_reasoning_tokens or u.details.get("reasoning_tokens", 0)
    request = {
        "model": response.model_name,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "reasoning_tokens": reasoning,
        "cost_usd": cost,
    }
    total = state.usage
    for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        total[key] = total.get(key, 0) + request[key]
    total["requests"] = total.get("requests", 0) + 1
    if cost is not None:
        total["cost_usd"] = round((total.get("cost_usd") or 0.0) + cost, 10)
    return request


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


async def execute(store: Store, settings: Settings, row: Any, handle: RunHandle) -> None:
    """Run one claimed run to its end (or to a cancel, a shutdown, or a lost lease)."""
    writer = EventWriter(store, row.id, handle.fence, flush_interval=settings.flush_interval)
    state = RunState(usage=dict(row.usage))
    try:
        try:
            outcome = await _drive(store, settings, row, writer, state)
            await _persist(outcome, writer, state, row, handle)
        except asyncio.CancelledError:
            if handle.cancel_reason is None:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            await _on_cancel(writer, state, handle, row)
            return
        except LeaseLost:
            return
        except (ModelError, AgentRunError, UserError, ValueError, OSError) as exc:
            await _fail(writer, state, _error_text(exc))
            return
        except Exception as exc:  # an unrecoverable tool error or a bug: the run fails, the worker goes on
            if _is_infrastructure(exc):
                # The database is unreachable: nothing can be written now. Drop the run; its lease
                # expires and a worker resumes it from the last checkpoint once the database is back.
                log.warning("run %s: database unavailable (%s); leaving it to the lease", row.id, exc)
                return
            log.exception("run %s failed", row.id)
            await _fail(writer, state, f"{type(exc).__name__}: {exc}")
            return
    except LeaseLost:
        return
    finally:
        writer.close()


async def _persist(outcome: Done | Pause, writer: EventWriter, state: RunState, row: Any, handle: RunHandle) -> None:
    """One store write per outcome: the run completes, or it waits (holding no worker)."""
    save = _saver(row.id, handle.fence.attempt, outcome.messages, state.history_len, state)
    if isinstance(outcome, Done):
        await writer.flush(
            ("run.completed", {"output": outcome.output, "usage": state.usage}),
            to=RunStatus.COMPLETED,
            changes={"output": outcome.output, "usage": state.usage, "worker_id": None, "lease_until": None},
            also=save,
        )
        return

    async def open_waits(tx: Tx) -> None:
        await save(tx)
        await waits_store.insert_many(tx.conn, outcome.waits)

    await writer.flush(
        *outcome.events(),
        to=RunStatus.WAITING,
        changes={"waiting_for": outcome.waiting_for, "usage": state.usage, "worker_id": None, "lease_until": None},
        also=open_waits,
    )


# SQLSTATE classes of a lost or refused connection: 08 connection exception, 57P admin or
# crash shutdown / cannot connect now, 53300 too many connections.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


def _is_infrastructure(exc: BaseException) -> bool:
    """A lost or refused database connection, as opposed to a bad statement."""
    if isinstance(exc, DisconnectionError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return True
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain and len(chain) < 10:  # the driver's error hides below
        chain.append(cause)
        cause = getattr(cause, "orig", None) or cause.__cause__
    for error in chain:
        sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
    return False


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text


async def _fail(writer: EventWriter, state: RunState, error: str) -> None:
    try:
        await _write_failure(writer, state, error)
    except LeaseLost:
        raise
    except Exception:
        # What failed may be in the buffer itself (e.g. data the store cannot encode): the
        # run's end matters more than those events.
        writer.discard()
        await _write_failure(writer, state, error)


async def _write_failure(writer: EventWriter, state: RunState, error: str) -> None:
    await writer.flush(
        ("run.failed", {"error": error, "usage": state.usage}),
        to=RunStatus.FAILED,
        changes={"error": error, "usage": state.usage, "worker_id": None, "lease_until": None},
    )


async def _on_cancel(writer: EventWriter, state: RunState, handle: RunHandle, row: Any) -> None:
    if handle.cancel_reason is CancelReason.LEASE_LOST:
        return
    if handle.cancel_reason is CancelReason.SHUTDOWN:

        async def release(tx: Tx) -> None:
            await queue.release(tx, row.id, handle.fence, reason="worker shutdown")

        await writer.flush(changes={"usage": state.usage}, also=release)
        return
    partial = "".join(state.text) or None
    await writer.flush(
        ("run.cancelled", {"output": partial, "usage": state.usage}),
        to=RunStatus.CANCELLED,
        changes={"output": partial, "usage": state.usage, "worker_id": None, "lease_until": None},
    )


@dataclass
class Done:
    output: Any
    messages: list[ModelMessage]


async def _drive(store: Store, settings: Settings, row: Any, writer: EventWriter, state: RunState) -> Done | Pause:
    """Run the agent loop from the checkpoint (or the task) until it ends or pauses for humans."""
    config = row.config
    resolved: ResolvedModel = resolve_model(
        row.model, config.get("script"), load_routes(str(settings.routes) if settings.routes else None),
        task=row.original_prompt,
    )
    async with store.read() as conn:
        saved = await checkpoints.load_with_history_len(conn, row.id)
        run_waits = await waits_store.for_run(conn, row.id)
        memory_block = await _memory_block(conn, row, config)
    history: list[ModelMessage] | None = None
    prompt: str | None = None
    if saved is not None:
        history = ModelMessagesTypeAdapter.validate_json(saved[0])
        history_len = saved[1]
    else:
        history, history_len = await _thread_history(store, row, config)
        prompt = row.original_prompt
    state.history_len = history_len
    is_planning = planning(config, run_waits)
    names = tool_names(config, row.user_id, planning=is_planning)
    if saved is None:
        # The tools the run may use (in plan mode they stay hidden until the plan is approved).
        writer.emit("tools.declared", {"tools": declared_tools(tool_names(config, row.user_id))})
    agent = agent_for(config, names)
    deps = RunDeps(row.id, row.org_id, row.user_id, writer, state,
                   permission_mode="autonomous" if config.get("permission_mode") == "plan"
                   else config.get("permission_mode", "autonomous"),
                   remembered=remembered_tools(run_waits))
    instructions = "\n\n".join(filter(None, [memory_block, PLAN_INSTRUCTIONS if is_planning else None])) or None
    deferred = deferred_results(history, run_waits)
    prompt = prompt or plan_prompt(config, run_waits, history)
    attempt = writer.fence.attempt
    if (prompt is None and deferred is None and history and isinstance(history[-1], ModelResponse)
            and not history[-1].tool_calls):
        # Resumed at a turn's end (a crash between the final answer and completing): only new
        # messages go on. A response with tool calls is not an end: pydantic-ai runs them.
        prompt = await _take_messages(store, row.id, state) or None
        if prompt is None:
            return Done(_final_output(history[-1]), history)

    async def checkpoint(messages: list[ModelMessage], *extra: tuple[str, dict[str, Any]]) -> None:
        await writer.flush(*extra, changes={"usage": dict(state.usage)},
                           also=_saver(row.id, attempt, messages, state.history_len, state))

    while True:
        async with agent.iter(prompt, message_history=history, model=resolved.model, deps=deps,
                              deferred_tool_results=deferred, instructions=instructions) as run:
            answered = set(deferred.calls) if deferred is not None else set()
            await _loop(run, store, row, writer, state, resolved, set(names), checkpoint, answered)
        assert run.result is not None
        messages, output = run.all_messages(), run.result.output
        if isinstance(output, DeferredToolRequests):
            return Pause(waits_for(output, row, config), messages)
        if is_planning:
            return Pause([plan_wait(str(output), row, config)], messages)
        # Messages appended while the model answered its last step start one more turn.
        follow_up = await _take_messages(store, row.id, state)
        if not follow_up:
            return Done(_jsonable(output), messages)
        history, prompt, deferred = messages, follow_up, None


async def _loop(run: Any, store: Store, row: Any, writer: EventWriter, state: RunState, resolved: ResolvedModel,
                names: set[str], checkpoint: Callable[..., Awaitable[None]], answered: set[str]) -> None:
    """`answered`: deferred calls (questions, input) whose human answer becomes their result now."""
    unsaved = False
    async for node in run:
        if Agent.is_model_request_node(node):
            appended = await _take_messages(store, row.id, state)
            if appended:
                node.request.parts = [*node.request.parts, UserPromptPart(appended)]
            if unsaved:
                # Tool results (or a retry prompt) are in this request, not yet in history:
                # save them now, so a resume sends them instead of running the tools again.
                await checkpoint([*run.all_messages(), node.request])
                unsaved = False
            async with node.stream(run.ctx) as stream:
                async for event in stream:
                    _on_stream_event(event, writer, state)
                response = stream.response
            text = "".join(p.content for p in response.parts if isinstance(p, TextPart))
            extra: list[tuple[str, dict[str, Any]]] = []
            if text:
                extra.append(("message.completed", {"text": text}))
            for part in response.parts:
                if isinstance(part, ToolCallPart) and part.tool_name in names:
                    extra.append(("tool.call", {"tool_call_id": part.tool_call_id, "name": part.tool_name,
                                                "args": _jsonable(part.args_as_dict())}))
            extra.append(("usage", _add_usage(state, response, resolved.prices)))
            if any(isinstance(p, ToolCallPart) for p in response.parts):
                await checkpoint(run.all_messages(), *extra)
            else:
                # Likely the final answer: its checkpoint commits with the run's end (one
                # transaction, not two), or before the next request if the loop goes on.
                for type_, data in extra:
                    writer.emit(type_, data)
                unsaved = True
        elif Agent.is_call_tools_node(node):
            async with node.stream(run.ctx) as stream:
                async for event in stream:
                    # Bad arguments or an unknown tool: the model is asked to retry. Failures of
                    # tools that ran are logged by JournalToolset with their journal entry.
                    if not isinstance(event, FunctionToolResultEvent):
                        continue
                    part = event.part
                    if part.outcome == "retried":
                        writer.emit("tool.error", {"tool_call_id": part.tool_call_id, "name": part.tool_name,
                                                   "error": part.model_response_str()})
                    elif part.tool_call_id in answered:
                        writer.emit("tool.result", {"tool_call_id": part.tool_call_id, "name": part.tool_name,
                                                    "result": _jsonable(part.content)})
            unsaved = True


def _final_output(response: ModelResponse) -> Any:
    return "".join(p.content for p in response.parts if isinstance(p, TextPart))


async def _take_messages(store: Store, run_id: str, state: RunState) -> str:
    """Follow-up messages not yet given to the model; they leave the queue with the next checkpoint."""
    async with store.read() as conn:
        pending = await runs_store.pending_messages(conn, run_id)
    fresh = pending[state.delivered:]
    state.delivered = len(pending)
    return "\n\n".join(fresh)


async def _memory_block(conn: Any, row: Any, config: dict[str, Any]) -> str | None:
    if not (config.get("memory", True) and row.user_id):
        return None
    saved = await memories.all_for_user(conn, row.org_id, row.user_id)
    if not saved:
        return None
    lines = "\n".join(f"- [{m['id']}] {m['text']}" for m in saved)
    return f"What you know about this user (ids let you forget a fact):\n{lines}"


async def _thread_history(store: Store, row: Any, config: dict[str, Any]) -> tuple[list[ModelMessage] | None, int]:
    """The thread's earlier runs, as the conversation this run continues (`history` option)."""
    if not config.get("history", True):
        return None, 0
    async with store.read() as conn:
        earlier = await threads.conversations(conn, row.thread_id, before_run=row.id, terminal_only=True)
    history: list[ModelMessage] = []
    for _run_id, blob, history_len in earlier:
        history.extend(own_messages(ModelMessagesTypeAdapter.validate_json(blob), history_len))
    if not history:
        return None, 0
    history = repair_messages(history)
    return history, len(history)


def _saver(run_id: str, attempt: int, messages: list[ModelMessage], history_len: int,
           state: RunState) -> Callable[[Tx], Awaitable[None]]:
    """Save the conversation; follow-up messages it now holds leave the run's queue with it."""
    blob = ModelMessagesTypeAdapter.dump_json(messages).decode()
    delivered = state.delivered

    async def save(tx: Tx) -> None:
        await checkpoints.save(tx.conn, run_id, attempt, blob, history_len=history_len)
        if delivered:
            await runs_store.drop_pending_messages(tx.conn, run_id, delivered)

    return save


def _on_stream_event(event: Any, writer: EventWriter, state: RunState) -> None:
    if isinstance(event, PartStartEvent):
        if isinstance(event.part, TextPart) and event.part.content:
            state.text.append(event.part.content)
            writer.emit("message.delta", {"delta": event.part.content})
        elif isinstance(event.part, ThinkingPart) and event.part.content:
            writer.emit("reasoning.delta", {"delta": event.part.content})
    elif isinstance(event, PartDeltaEvent):
        delta = event.delta
        if isinstance(delta, TextPartDelta) and delta.content_delta:
            state.text.append(delta.content_delta)
            writer.emit("message.delta", {"delta": delta.content_delta})
        elif isinstance(delta, ThinkingPartDelta) and delta.content_delta:
            writer.emit("reasoning.delta", {"delta": delta.content_delta})
