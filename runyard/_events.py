"""Run event types and their typed models, shared by the server and the SDK; `parse_event` reads one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union, cast, get_args

from pydantic import Discriminator, Field, Tag, TypeAdapter

from .domain import Wait, WaitKind, _Model

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_MODELS",
    "EVENT_TYPES",
    "SETTLING_EVENT_TYPES",
    "TERMINAL_EVENT_TYPES",
    "AnyEvent",
    "Event",
    "EventType",
    "parse_event",
]

EventType = Literal[
    "run.queued",
    "run.started",
    "tools.declared",
    "run.route.selected",
    "run.route.queued",
    "run.llm.retry",
    "run.provider_fallback",
    "message.delta",
    "message.reset",
    "message.completed",
    "reasoning.delta",
    "tool.call",
    "tool.result",
    "tool.error",
    "usage",
    "run.cancel_requested",
    "run.requeued",
    "run.waiting",
    "run.input_received",
    "tool.approval_requested",
    "tool.approved",
    "tool.denied",
    "message.appended",
    "memory.saved",
    "memory.deleted",
    "file.created",
    "file.updated",
    "file.deleted",
    "run.completed",
    "run.budget_exceeded",
    "run.failed",
    "run.cancelled",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
TERMINAL_EVENT_TYPES: frozenset[str] = frozenset({"run.completed", "run.failed", "run.cancelled"})
SETTLING_EVENT_TYPES: frozenset[str] = TERMINAL_EVENT_TYPES | {"run.waiting"}


class Event(_Model):
    """One entry of a run's event log. `seq` counts 1, 2, 3 … per run with no gap.

    `parse_event` returns the typed subclass for the event's `type` (`RunCompleted`, …), or a
    plain `Event` for a type this version does not know (a newer server)."""

    seq: int
    run_id: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES


class RunQueued(Event):
    type: Literal["run.queued"] = "run.queued"  # pyright: ignore[reportIncompatibleVariableOverride]


class RunStarted(Event):
    type: Literal["run.started"] = "run.started"  # pyright: ignore[reportIncompatibleVariableOverride]


class ToolsDeclared(Event):
    type: Literal["tools.declared"] = "tools.declared"  # pyright: ignore[reportIncompatibleVariableOverride]


class MessageDelta(Event):
    type: Literal["message.delta"] = "message.delta"  # pyright: ignore[reportIncompatibleVariableOverride]


class RouteSelected(Event):
    """Which route serves the run's model requests (again after a fallback)."""

    type: Literal["run.route.selected"] = "run.route.selected"  # pyright: ignore[reportIncompatibleVariableOverride]


class RouteQueued(Event):
    """The route's `max_concurrency` requests are in flight on this worker: the request waits for a slot."""

    type: Literal["run.route.queued"] = "run.route.queued"  # pyright: ignore[reportIncompatibleVariableOverride]


class LLMRetry(Event):
    """A model request failed (`status`, `error`) and is sent again after `delay_s`."""

    type: Literal["run.llm.retry"] = "run.llm.retry"  # pyright: ignore[reportIncompatibleVariableOverride]


class ProviderFallback(Event):
    """A route failed (`from`, `error`): its next fallback route (`to`) serves the request."""

    type: Literal["run.provider_fallback"] = "run.provider_fallback"  # pyright: ignore[reportIncompatibleVariableOverride]


class MessageReset(Event):
    """The model response being streamed broke off: drop its `message.delta`s and `reasoning.delta`s
    since the last `usage` event; the retried response's deltas follow."""

    type: Literal["message.reset"] = "message.reset"  # pyright: ignore[reportIncompatibleVariableOverride]


class MessageCompleted(Event):
    type: Literal["message.completed"] = "message.completed"  # pyright: ignore[reportIncompatibleVariableOverride]


class ReasoningDelta(Event):
    type: Literal["reasoning.delta"] = "reasoning.delta"  # pyright: ignore[reportIncompatibleVariableOverride]


class ToolCall(Event):
    type: Literal["tool.call"] = "tool.call"  # pyright: ignore[reportIncompatibleVariableOverride]


class ToolResult(Event):
    type: Literal["tool.result"] = "tool.result"  # pyright: ignore[reportIncompatibleVariableOverride]


class ToolError(Event):
    type: Literal["tool.error"] = "tool.error"  # pyright: ignore[reportIncompatibleVariableOverride]


class UsageReported(Event):
    type: Literal["usage"] = "usage"  # pyright: ignore[reportIncompatibleVariableOverride]


class RunCancelRequested(Event):
    type: Literal["run.cancel_requested"] = "run.cancel_requested"  # pyright: ignore[reportIncompatibleVariableOverride]


class RunRequeued(Event):
    type: Literal["run.requeued"] = "run.requeued"  # pyright: ignore[reportIncompatibleVariableOverride]


class RunWaiting(Event):
    """The `run.waiting` event: the run paused for a human and released its worker."""

    type: Literal["run.waiting"] = "run.waiting"  # pyright: ignore[reportIncompatibleVariableOverride]

    @property
    def waiting_for(self) -> WaitKind | None:
        """What the run waits for: `question`, `approval`, `input` or `tool_result`."""
        return self.data.get("waiting_for")

    @property
    def waits(self) -> list[Wait]:
        """The waits the run opened at this pause (their `status` is `open` as of this event)."""
        return [Wait.model_validate(w) for w in self.data.get("waits") or []]


class RunInputReceived(Event):
    type: Literal["run.input_received"] = "run.input_received"  # pyright: ignore[reportIncompatibleVariableOverride]


class ToolApprovalRequested(Event):
    type: Literal["tool.approval_requested"] = "tool.approval_requested"  # pyright: ignore[reportIncompatibleVariableOverride]


class ToolApproved(Event):
    type: Literal["tool.approved"] = "tool.approved"  # pyright: ignore[reportIncompatibleVariableOverride]


class ToolDenied(Event):
    type: Literal["tool.denied"] = "tool.denied"  # pyright: ignore[reportIncompatibleVariableOverride]


class MessageAppended(Event):
    type: Literal["message.appended"] = "message.appended"  # pyright: ignore[reportIncompatibleVariableOverride]


class MemorySaved(Event):
    type: Literal["memory.saved"] = "memory.saved"  # pyright: ignore[reportIncompatibleVariableOverride]


class MemoryDeleted(Event):
    type: Literal["memory.deleted"] = "memory.deleted"  # pyright: ignore[reportIncompatibleVariableOverride]


class FileCreated(Event):
    type: Literal["file.created"] = "file.created"  # pyright: ignore[reportIncompatibleVariableOverride]


class FileUpdated(Event):
    type: Literal["file.updated"] = "file.updated"  # pyright: ignore[reportIncompatibleVariableOverride]


class FileDeleted(Event):
    type: Literal["file.deleted"] = "file.deleted"  # pyright: ignore[reportIncompatibleVariableOverride]


class RunCompleted(Event):
    type: Literal["run.completed"] = "run.completed"  # pyright: ignore[reportIncompatibleVariableOverride]


class RunBudgetExceeded(Event):
    type: Literal["run.budget_exceeded"] = "run.budget_exceeded"  # pyright: ignore[reportIncompatibleVariableOverride]


class RunFailed(Event):
    type: Literal["run.failed"] = "run.failed"  # pyright: ignore[reportIncompatibleVariableOverride]


class RunCancelled(Event):
    type: Literal["run.cancelled"] = "run.cancelled"  # pyright: ignore[reportIncompatibleVariableOverride]


EVENT_MODELS: dict[str, type[Event]] = {model.model_fields["type"].default: model for model in Event.__subclasses__()}


def _event_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in EVENT_MODELS else "unknown"


AnyEvent = Annotated[
    Union[  # noqa: UP007 - built at runtime from the event models
        tuple(Annotated[model, Tag(kind)] for kind, model in EVENT_MODELS.items())  # type: ignore[valid-type]
        + (Annotated[Event, Tag("unknown")],)
    ],
    Discriminator(_event_tag),
]
"""Every event type as one discriminated union; unknown types parse as a plain `Event`."""
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(cast(Any, AnyEvent))  # a runtime-built union


def parse_event(value: Any) -> Event:
    """The typed event for a stored row, an SSE payload or a JSON page entry: the one parser."""
    return EVENT_ADAPTER.validate_python(value)
