"""One turn of the agent loop, node by node: stream events, account usage, checkpoint every step.

A turn is one `agent.iter` run to its output. After every model response with tool calls, and
before every request that carries tool results, the conversation is checkpointed in the
transaction that commits the step's events (invariant 4). A response without tool calls is
likely the answer: its checkpoint waits for the run's outcome, one transaction instead of two.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_ai import Agent
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
)
from pydantic_ai.run import AgentRun

from .. import metrics
from ..store import checkpoints
from ..store.checkpoints import Checkpoint
from ..store.db import Tx, utcnow
from ..store.events import NewEvent
from .agents import RunDeps, RunState
from .models import Prices, prices_of
from .resume import take_follow_ups
from .routing import retryable
from .writer import EventWriter

__all__ = ["StreamCut", "checkpoint_of", "jsonable", "run_turn"]


class StreamCut(Exception):
    """A model response broke off mid-stream and will be requested again: the turn starts over
    from `messages` (the conversation up to and with the request that failed)."""

    def __init__(self, messages: list[ModelMessage]):
        super().__init__("model stream cut")
        self.messages = messages


async def run_turn(agent_run: AgentRun[RunDeps, Any], deps: RunDeps) -> None:
    """Drive `agent_run` to its output; `deps.state` is what the turn changes."""
    state, writer = deps.state, deps.writer
    client_tools = {t["name"] for t in deps.run.config.get("client_tools") or []}
    unsaved = False  # tool results (or a retry prompt) in the conversation that no checkpoint holds yet
    async for node in agent_run:
        if Agent.is_model_request_node(node):
            deps.check_budget("request")
            appended = await take_follow_ups(writer.store, deps.run, state)
            if appended:
                node.request.parts = [*node.request.parts, UserPromptPart(appended)]
            if unsaved:
                # Saved before the request, so a resume sends these results instead of running the tools again.
                await _checkpoint(deps, [*agent_run.all_messages(), node.request])
                unsaved = False
            # The run's first model request (first attempt, no response yet): time its first event.
            first = deps.run.attempt == 1 and not state.usage.get("requests")
            mark = len(state.text)
            try:
                async with node.stream(agent_run.ctx) as stream:
                    async for event in stream:
                        if first:
                            metrics.time_to_first_event(deps.run.created_at, utcnow())
                            first = False
                        _on_stream_event(event, writer, state)
                    response = stream.response
            except Exception as exc:
                if deps.routed is None or not deps.routed.handed_over or not retryable(exc):
                    raise  # not a cut: the route's retries and fallbacks (if any) are spent
                # The deltas already logged belong to a response that will never complete: clients drop them.
                del state.text[mark:]
                writer.emit("message.reset", {"error": str(exc) or type(exc).__name__})
                if not deps.routed.stream_cut(exc):
                    raise
                raise StreamCut(agent_run.all_messages()) from exc
            step = _step_events(response, deps)
            if response.tool_calls:
                await _checkpoint(deps, agent_run.all_messages(), *step)
            else:
                # Likely the final answer: its checkpoint commits with the run's outcome (one
                # transaction, not two), or before the next request if the loop goes on.
                for type_, data in step:
                    writer.emit(type_, data)
                unsaved = True
        elif Agent.is_call_tools_node(node):
            async with node.stream(agent_run.ctx) as stream:
                async for event in stream:
                    # Bad arguments or an unknown tool: the model is asked to retry. Results of tools that
                    # ran are logged by JournalToolset with their journal entry; human answers here.
                    if not isinstance(event, FunctionToolResultEvent):
                        continue
                    part = event.part
                    if part.outcome == "retried":
                        writer.emit(
                            "tool.error",
                            {
                                "tool_call_id": part.tool_call_id,
                                "name": part.tool_name,
                                "error": part.model_response_str(),
                            },
                        )
                    elif part.tool_call_id in state.answered:
                        # A human's answer or a caller's tool result; a caller's error is a tool.error.
                        failed = part.outcome == "failed"
                        if part.tool_name in client_tools:
                            state.usage["tool_calls"] = state.usage.get("tool_calls", 0) + 1
                        key = "error" if failed else "result"
                        writer.emit(
                            "tool.error" if failed else "tool.result",
                            {"tool_call_id": part.tool_call_id, "name": part.tool_name, key: jsonable(part.content)},
                        )
            unsaved = True


def checkpoint_of(messages: list[ModelMessage], state: RunState) -> Checkpoint:
    """The conversation to save, with the follow-ups it took in (they leave the run's queue with it)."""
    return Checkpoint(ModelMessagesTypeAdapter.dump_json(messages).decode(), state.history_len, state.delivered)


async def _checkpoint(deps: RunDeps, messages: list[ModelMessage], *extra: NewEvent) -> None:
    run, state = deps.run, deps.state
    saved = checkpoint_of(messages, state)

    async def save(tx: Tx) -> None:
        await checkpoints.save(tx.conn, run.org_id, run.id, saved, attempt=run.attempt)

    await deps.writer.flush(*extra, changes={"usage": dict(state.usage)}, also=save)
    # Those follow-ups left the queue: the next ones read from it start at its new head.
    state.delivered -= saved.delivered


def _step_events(response: ModelResponse, deps: RunDeps) -> list[NewEvent]:
    """A model response's events: its text, the calls of offered tools, its usage."""
    text = "".join(p.content for p in response.parts if isinstance(p, TextPart))
    step: list[NewEvent] = [("message.completed", {"text": text})] if text else []
    for part in response.parts:
        if isinstance(part, ToolCallPart) and part.tool_name in deps.offered:
            step.append(
                (
                    "tool.call",
                    {"tool_call_id": part.tool_call_id, "name": part.tool_name, "args": jsonable(part.args_as_dict())},
                )
            )
    prices = prices_of(deps.routed.serving.config) if deps.routed is not None else deps.prices
    usage = _add_usage(deps.state, response, prices)
    if deps.routed is not None and deps.routed.serving.route_id is not None:
        usage["route_id"] = deps.routed.serving.route_id
    step.append(("usage", usage))
    return step


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
    if cost is None:
        # One request without a price makes the total unknown: null, never a sum that looks complete.
        total["cost_known"], total["cost_usd"] = False, None
    elif total.get("cost_known", True):
        total["cost_usd"] = round((total.get("cost_usd") or 0.0) + cost, 10)
    metrics.add_usage(
        response.model_name,
        (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, reasoning),
        cost,
    )
    return request


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


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
