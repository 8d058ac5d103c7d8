"""Statuses, event types and resource models shared by the server and the SDK.

This module imports only pydantic: the SDK ships it, the server builds on it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Agent",
    "EVENT_TYPES",
    "ErrorBody",
    "ErrorResponse",
    "Event",
    "EventType",
    "Run",
    "RunStatus",
    "TERMINAL_STATUSES",
    "Memory",
    "PermissionMode",
    "Thread",
    "ThreadMessage",
    "Usage",
    "Wait",
    "WaitKind",
]


class RunStatus(str, enum.Enum):
    """The lifecycle of a run. The store's CHECK constraint is built from this enum."""

    PENDING = "pending"
    """Queued: waiting for a worker to claim it."""
    RUNNING = "running"
    """A worker holds its lease and executes the agent loop."""
    WAITING = "waiting"
    """Paused for a human (`waiting_for` says what for); no worker is held."""
    COMPLETED = "completed"
    """Finished; `output` is set."""
    FAILED = "failed"
    """Ended with an error; `error` is a plain string."""
    CANCELLED = "cancelled"
    """Cancelled by a caller; partial output and usage are kept."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})

EventType = Literal[
    "run.queued",
    "run.started",
    "tools.declared",
    "message.delta",
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
    "run.completed",
    "run.failed",
    "run.cancelled",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
TERMINAL_EVENT_TYPES = frozenset({"run.completed", "run.failed", "run.cancelled"})
WaitKind = Literal["question", "approval", "input"]
PermissionMode = Literal["autonomous", "approve_writes", "approve_all", "plan"]


class _Model(BaseModel):
    # Unknown fields from a newer server must not break an older SDK.
    model_config = ConfigDict(extra="allow")


class Usage(_Model):
    """Tokens, requests and cost of a run so far."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    cost_usd: float | None = None


class Agent(_Model):
    """An LLM with instructions and tools, the thing a run executes."""

    id: str
    object: Literal["agent"] = "agent"
    name: str
    instructions: str = ""
    model: str = "scripted"
    tools: list[str] = Field(default_factory=list)
    input_description: str | None = None
    output_description: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class Thread(_Model):
    """A conversation that runs belong to."""

    id: str
    object: Literal["thread"] = "thread"
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class Run(_Model):
    """One execution of an agent on one task."""

    id: str
    object: Literal["run"] = "run"
    agent_id: str
    thread_id: str
    status: RunStatus
    original_prompt: str
    output: Any = None
    error: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    model: str
    tools: list[str] = Field(default_factory=list)
    waiting_for: WaitKind | None = None
    """What a `waiting` run waits for: `question`, `approval` or `input`."""
    human_in_the_loop: bool = False
    permission_mode: PermissionMode = "autonomous"
    history: bool = True
    memory: bool = True
    wait_timeout: float | None = None
    wait_timeout_action: Literal["deny", "fail"] = "deny"
    usage: Usage = Field(default_factory=Usage)
    duration_ms: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None
    attempt: int = 0
    trace_id: str
    last_seq: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def seed_status(self) -> str:
        """The status as the seeds' clients name it: `awaiting_approval`, `waiting_for_input`, or `status`."""
        if self.status is RunStatus.WAITING:
            return "awaiting_approval" if self.waiting_for == "approval" else "waiting_for_input"
        return self.status.value


class Wait(_Model):
    """A pause of a run for a human: a question, a tool (or plan) approval, or free input."""

    id: str
    object: Literal["wait"] = "wait"
    run_id: str
    user_id: str | None = None
    kind: WaitKind
    tool_call_id: str | None = None
    request: dict[str, Any]
    answer_schema: dict[str, Any]
    status: Literal["open", "resolved", "expired", "cancelled"]
    answer: Any = None
    resolved_by: str | None = None
    created_at: datetime
    resolved_at: datetime | None = None
    expires_at: datetime | None = None
    timeout_action: Literal["deny", "fail"] | None = None


class Memory(_Model):
    """A fact kept about an end user, offered to that user's runs."""

    id: str
    object: Literal["memory"] = "memory"
    user_id: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    created_at: datetime


class ThreadMessage(_Model):
    """One message of a thread's conversation, with the run it came from."""

    run_id: str
    role: Literal["user", "assistant", "tool"]
    content: Any = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    created_at: datetime | None = None


class Event(_Model):
    """One entry of a run's event log. `seq` counts 1, 2, 3 … per run with no gap."""

    seq: int
    run_id: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES


class ErrorBody(_Model):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(_Model):
    """Every 4xx/5xx body: `{"error": {"code", "message", "field"}}`."""

    error: ErrorBody
