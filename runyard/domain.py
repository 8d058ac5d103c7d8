"""Statuses and resource models shared by the server and the SDK (events: `_events`).

This module imports only pydantic: the SDK ships it, the server builds on it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._budgets import RunLimits, StopReason

__all__ = [
    "ACTIVE_STATUSES",
    "RUN_OPTION_DEFAULTS",
    "TERMINAL_STATUSES",
    "Agent",
    "ClientTool",
    "ErrorBody",
    "ErrorResponse",
    "File",
    "MCPServer",
    "Memory",
    "Multitask",
    "PermissionMode",
    "Run",
    "RunLimits",
    "RunOptions",
    "RunStatus",
    "Thread",
    "ThreadMessage",
    "Usage",
    "Wait",
    "WaitKind",
    "WaitStatus",
    "WaitTimeoutAction",
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
"""A run in one of these never changes again."""
ACTIVE_STATUSES = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})
"""A run in one of these still holds its thread (multitask rules apply)."""


class WaitStatus(str, enum.Enum):
    """The lifecycle of a wait. The store's CHECK constraint is built from this enum."""

    OPEN = "open"
    RESOLVED = "resolved"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


"""After one of these a long-poll has something to return: the run ended or waits for a human."""
WaitKind = Literal["question", "approval", "input", "tool_result"]
PermissionMode = Literal["autonomous", "approve_writes", "approve_all", "plan"]
WaitTimeoutAction = Literal["deny", "fail"]
Multitask = Literal["reject", "enqueue", "interrupt"]
"""What a new run does when its thread has an active run: 409, start after it, or cancel it first."""


class RunOptions(BaseModel):
    """Per-run options with defaults, declared once: for requests, runs, the store and the SDK."""

    human_in_the_loop: bool = Field(default=False, description="Offer ask_user_question; allow permission modes.")
    permission_mode: PermissionMode = Field(default="autonomous", description="Which tool calls wait for approval.")
    history: bool = Field(default=True, description="Include the thread's earlier runs as context.")
    memory: bool = Field(default=True, description="Give the model the user's memories and memory tools.")
    wait_timeout: float | None = Field(default=None, gt=0, le=7 * 24 * 3600, description="Seconds a wait stays open.")
    wait_timeout_action: WaitTimeoutAction = Field(default="deny", description="What an expired wait does.")
    limits: RunLimits | None = Field(default=None, description="Budgets; the agent's and the org's apply too.")


RUN_OPTION_DEFAULTS: dict[str, Any] = RunOptions().model_dump()


class _Model(BaseModel):
    # Unknown fields from a newer server must not break an older SDK.
    model_config = ConfigDict(extra="allow")


class Usage(_Model):
    """Tokens, requests and cost of a run so far. `cost_usd` comes from the route's prices, else
    genai-prices' bundled snapshot, else it is None with `cost_known: false`; `cache_hit_rate` is
    cache-read / input tokens (None without input); `credits_used` is the cost × credits per USD."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    cost_usd: float | None = None
    cost_known: bool = True
    cache_hit_rate: float | None = None
    credits_used: int | None = None


class ClientTool(_Model):
    """A tool the caller executes in its own process: the run waits (`tool_result`) for its result."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    output_schema: dict[str, Any] | None = None
    """JSON Schema a posted output must match (422 otherwise); `parameters` is the arguments' schema."""


class MCPServer(_Model):
    """An MCP server: streamable HTTP (`url`, `headers`) or stdio (`command`, `args`, `env`; if the
    operator allows it). `${NAME}` in a header or env value is replaced from the worker's environment;
    values are echoed redacted. `require_approval`: every call waits for approval (with a human)."""

    name: str
    url: str | None = None
    headers: dict[str, str] | None = None
    allowed_tools: list[str] | None = None
    require_approval: bool = False
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None


class File(_Model):
    """A file of a thread's workspace (`run_id`: its last writer), or an upload not yet attached."""

    id: str
    object: Literal["file"] = "file"
    thread_id: str | None = None
    run_id: str | None = None
    path: str
    size: int
    content_type: str
    sha256: str
    created_at: datetime
    updated_at: datetime


class Agent(_Model):
    """An LLM with instructions and tools, the thing a run executes."""

    id: str
    object: Literal["agent"] = "agent"
    name: str
    instructions: str = ""
    model: str = "scripted"
    route_id: str | None = None  # a route of the routes file: it picks the model (and its fallbacks)
    tools: list[str] = Field(default_factory=list)
    input_description: str | None = None
    output_description: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    message_template: str | None = None
    """A Jinja2 template (sandboxed) rendered with a run's `variables` into its task."""
    limits: RunLimits | None = None  # budgets of its runs (with the run's own and the org's: the smallest wins)
    version: int = 1  # one more at every change of what it runs (`VERSIONED_FIELDS`)
    mcp_servers: list[MCPServer] = Field(default_factory=list)
    client_tools: list[ClientTool] = Field(default_factory=list)
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


class Run(RunOptions, _Model):
    """One execution of an agent on one task."""

    id: str
    object: Literal["run"] = "run"
    agent_id: str
    thread_id: str
    status: RunStatus
    original_prompt: str
    output: Any = None
    error: str | None = None
    stop_reason: StopReason | None = None  # why a terminal run ended (null while it runs)
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    model: str
    route_id: str | None = None  # the route serving it (the run's, else the agent's); null: a model string
    tools: list[str] = Field(default_factory=list)
    variables: dict[str, Any] | None = None
    """The variables the task was rendered from (validated against the agent's `input_schema`)."""
    output_schema: dict[str, Any] | None = None
    waiting_for: WaitKind | None = None
    """What a `waiting` run waits for: `question`, `approval`, `input` or `tool_result`."""
    webhook_url: str | None = None  # also gets the run's terminal event, signed with the org's default secret
    agent_version: int | None = None  # the agent's version the run executes
    usage: Usage = Field(default_factory=Usage)
    steps: int = 0  # model requests so far
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
    status: WaitStatus
    answer: Any = None
    resolved_by: str | None = None
    created_at: datetime
    resolved_at: datetime | None = None
    expires_at: datetime | None = None
    timeout_action: WaitTimeoutAction | None = None


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


class ErrorBody(_Model):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(_Model):
    """Every 4xx/5xx body: `{"error": {"code", "message", "field"}}`."""

    error: ErrorBody
