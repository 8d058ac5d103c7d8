"""Execute one claimed run with pydantic-ai, node by node, checkpointing after every step.

`execute` drives the agent loop; `classify` maps how it ended to one outcome; `persist`
writes exactly one store call per outcome.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import AgentRunError, ModelRetry, ToolFailed, UserError
from pydantic_ai.messages import (
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
    FunctionToolResultEvent,
)
from pydantic_ai.output import StructuredDict
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import FunctionToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from ..config import Settings
from ..domain import RunStatus
from ..store import checkpoints, queue
from ..store.db import Store, Tx
from ..store.errors import LeaseLost
from ..store.events import Fence
from .models import ModelError, Prices, ResolvedModel, load_routes, resolve_model
from .tools import BUILTIN_TOOLS
from .tools.context import ToolCallContext, current_tool_call
from .writer import EventWriter

__all__ = ["CancelReason", "RunHandle", "execute"]


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


@dataclass
class RunState:
    """What changes while the run executes."""

    usage: dict[str, Any]
    text: list[str] = field(default_factory=list)
    """Every text delta streamed in this attempt: the partial output if the run is cancelled."""


@dataclass
class RunDeps:
    """What the run is given: passed to tools as `ctx.deps`."""

    run_id: str
    writer: EventWriter
    state: RunState


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


class JournalToolset(WrapperToolset[RunDeps]):
    """Runs each tool call at most once per run: a journaled result is replayed, not re-executed."""

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[RunDeps], tool: ToolsetTool[RunDeps]
    ) -> Any:
        deps = ctx.deps
        call_id = ctx.tool_call_id or ""
        async with deps.writer.store.read() as conn:
            done = await checkpoints.journaled(conn, deps.run_id, call_id)
        if done is not None:
            if done.is_error:
                raise ToolFailed(str(done.result))
            return done.result
        is_error = False
        token = current_tool_call.set(ToolCallContext(deps.run_id, call_id))
        try:
            result = await self.wrapped.call_tool(name, tool_args, ctx, tool)
        except (ToolFailed, ModelRetry) as exc:
            is_error, result = True, str(exc.message)
        finally:
            current_tool_call.reset(token)
        result = result if isinstance(result, (str, int, float, bool, type(None), dict, list)) else str(result)
        deps.state.usage["tool_calls"] = deps.state.usage.get("tool_calls", 0) + 1
        event = ("tool.error", {"tool_call_id": call_id, "name": name, "error": result}) if is_error else (
            "tool.result", {"tool_call_id": call_id, "name": name, "result": result})

        async def journal(tx: Tx) -> None:
            await checkpoints.record_tool(tx.conn, deps.run_id, call_id, name, tool_args, result, is_error=is_error)

        # The journal entry and its event commit together: on resume, neither repeats.
        await deps.writer.flush(event, changes={"usage": dict(deps.state.usage)}, also=journal)
        if is_error:
            raise ToolFailed(str(result))
        return result


def _agent_for(config: dict[str, Any]) -> Agent[RunDeps, Any]:
    """Agents are stateless between runs: build one per distinct configuration and reuse it."""
    key = json.dumps([config.get("instructions"), config.get("tools"), config.get("output_schema")], sort_keys=True)
    agent = _AGENTS.get(key)
    if agent is None:
        if len(_AGENTS) >= 256:
            _AGENTS.pop(next(iter(_AGENTS)))
        agent = _AGENTS[key] = _build_agent(config)
    return agent


_AGENTS: dict[str, Agent[RunDeps, Any]] = {}


def _build_agent(config: dict[str, Any]) -> Agent[RunDeps, Any]:
    tools = [BUILTIN_TOOLS[name].function for name in config.get("tools", []) if name in BUILTIN_TOOLS]
    schema = config.get("output_schema")
    output_type: Any = str
    if schema:
        output_type = StructuredDict(schema, name="output")
    agent: Agent[RunDeps, Any] = Agent(
        instructions=config.get("instructions") or None,
        deps_type=RunDeps,
        output_type=output_type,
        toolsets=[JournalToolset(FunctionToolset(tools))] if tools else [],
    )
    if schema:
        validator = jsonschema.Draft202012Validator(schema)

        @agent.output_validator
        def _check(output: Any) -> Any:
            # StructuredDict does not enforce the schema: validate and let the model retry.
            errors = sorted(validator.iter_errors(output), key=lambda e: list(e.path))
            if errors:
                raise ModelRetry("output does not match the schema: " + "; ".join(e.message for e in errors[:5]))
            return output

    return agent


def _declared_tools(config: dict[str, Any]) -> list[dict[str, Any]]:
    declared = []
    for name in config.get("tools", []):
        spec = BUILTIN_TOOLS.get(name)
        if spec is None:
            continue
        tool = FunctionToolset([spec.function]).tools[name]
        definition: ToolDefinition = tool.tool_def
        declared.append({"name": name, "description": definition.description,
                         "parameters": definition.parameters_json_schema, "side_effects": spec.side_effects})
    return declared


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


async def execute(store: Store, settings: Settings, row: Any, handle: RunHandle) -> None:
    """Run one claimed run to its end (or to a cancel, a shutdown, or a lost lease)."""
    writer = EventWriter(store, row.id, handle.fence, flush_interval=settings.flush_interval)
    state = RunState(usage=dict(row.usage))
    try:
        try:
            output, messages = await _drive(store, settings, row, writer, state)
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
            await _fail(writer, state, f"{type(exc).__name__}: {exc}")
            return
        await writer.flush(
            ("run.completed", {"output": output, "usage": state.usage}),
            to=RunStatus.COMPLETED,
            changes={"output": output, "usage": state.usage, "worker_id": None, "lease_until": None},
            also=_saver(row.id, handle.fence.attempt, messages),
        )
    except LeaseLost:
        return
    finally:
        writer.close()


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text


async def _fail(writer: EventWriter, state: RunState, error: str) -> None:
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


async def _drive(
    store: Store, settings: Settings, row: Any, writer: EventWriter, state: RunState
) -> tuple[Any, list[ModelMessage]]:
    config = row.config
    resolved: ResolvedModel = resolve_model(
        row.model, config.get("script"), load_routes(str(settings.routes) if settings.routes else None)
    )
    agent = _agent_for(config)
    async with store.read() as conn:
        saved = await checkpoints.load(conn, row.id)
    history: list[ModelMessage] | None = ModelMessagesTypeAdapter.validate_json(saved) if saved else None
    prompt: str | None = None
    if history is None:
        prompt = row.original_prompt
        writer.emit("tools.declared", {"tools": _declared_tools(config)})
    deps = RunDeps(row.id, writer, state)
    attempt = writer.fence.attempt

    async def checkpoint(messages: list[ModelMessage], *extra: tuple[str, dict[str, Any]]) -> None:
        await writer.flush(*extra, changes={"usage": dict(state.usage)}, also=_saver(row.id, attempt, messages))

    tool_names = set(config.get("tools", []))
    async with agent.iter(prompt, message_history=history, model=resolved.model, deps=deps) as run:
        unsaved = False
        async for node in run:
            if Agent.is_model_request_node(node):
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
                    if isinstance(part, ToolCallPart) and part.tool_name in tool_names:
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
                        if isinstance(event, FunctionToolResultEvent) and event.part.outcome == "retried":
                            writer.emit("tool.error", {"tool_call_id": event.part.tool_call_id,
                                                       "name": event.part.tool_name,
                                                       "error": event.part.model_response_str()})
                unsaved = True
        assert run.result is not None
        return _jsonable(run.result.output), run.all_messages()


def _saver(run_id: str, attempt: int, messages: list[ModelMessage]) -> Callable[[Tx], Awaitable[None]]:
    blob = ModelMessagesTypeAdapter.dump_json(messages).decode()

    async def save(tx: Tx) -> None:
        await checkpoints.save(tx.conn, run_id, attempt, blob)

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
