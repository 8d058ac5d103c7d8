"""Request bodies and list envelopes: the typed edge of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .._events import Event
from .._versions import AgentVersion
from .._webhooks import Webhook, WebhookDelivery
from ..domain import Agent, Memory, Multitask, Run, RunLimits, RunOptions, Thread, Wait
from .limits import Limits, MessageText, Metadata, check_json, check_json_schema, check_text, max_json_bytes

__all__ = [
    "AgentCreate",
    "AgentList",
    "AgentUpdate",
    "AgentVersionList",
    "AnswerBody",
    "ApproveBody",
    "Deleted",
    "EventList",
    "InputBody",
    "Limits",
    "MemoryCreate",
    "MemoryList",
    "MessageBody",
    "ReplyBody",
    "RunCreate",
    "RunList",
    "ThreadCreate",
    "ThreadList",
    "ThreadRunCreate",
    "ToolResultsBody",
    "WaitList",
    "WebhookCreate",
    "WebhookDeliveryList",
    "WebhookList",
    "WebhookRotate",
    "WebhookUpdate",
]

T = TypeVar("T")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _json_rules(cls, data: Any) -> Any:
        # Before any field is read: depth, NaN/Infinity, NUL and surrogates, for every field.
        if isinstance(data, dict):
            for key, value in data.items():
                check_text(str(key), "body key")
                check_json(value, str(key))
        return data


JsonSchema = Annotated[dict[str, Any] | None, AfterValidator(check_json_schema)]
ToolName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]


class ClientToolDef(_Body):
    """A tool the caller executes: the run waits (`tool_result`) until its result is posted."""

    name: ToolName
    description: str = Field("", max_length=4000)
    parameters: JsonSchema = Field(None, description="JSON Schema of the arguments (default: none).")
    output_schema: JsonSchema = Field(None, description="A posted output must match it (422 otherwise).")


ClientTools = Annotated[list[ClientToolDef], Field(max_length=64)]
Variables = Annotated[dict[str, Any], max_json_bytes(Limits.MESSAGE_BYTES)]


class _AgentFields(_Body):
    instructions: str | None = Field(None, max_length=100_000)
    model: str | None = Field(None, min_length=1, max_length=200)
    route_id: str | None = Field(None, min_length=1, max_length=200, description="A route id: it picks the model.")
    tools: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=64)
    input_description: str | None = Field(None, max_length=10_000)
    output_description: str | None = Field(None, max_length=10_000)
    input_schema: JsonSchema = None
    output_schema: JsonSchema = None
    message_template: str | None = Field(
        None, max_length=32_000, description="Jinja2 (sandboxed): a run's `variables` render its task."
    )
    mcp_servers: list[dict[str, Any]] | None = Field(
        None, max_length=16, description="`{name, url, headers?, allowed_tools?, require_approval?}` or stdio."
    )
    client_tools: ClientTools | None = None
    limits: RunLimits | None = Field(None, description="Budgets of the agent's runs (the smallest limit wins).")
    metadata: Metadata | None = None


class AgentCreate(_AgentFields):
    name: str = Field(min_length=1, max_length=200)


class AgentUpdate(_AgentFields):
    name: str | None = Field(None, min_length=1, max_length=200)


class ThreadRunCreate(RunOptions, _Body):
    message: MessageText | None = Field(
        None, description="The task, at most 32 KB (UTF-8); optional when the agent has a message_template."
    )
    variables: Variables | None = Field(
        None, description="Checked against the agent's input_schema, then rendered by its message_template."
    )
    output_schema: JsonSchema = Field(None, description="Override the agent's output_schema for this run.")
    client_tools: ClientTools | None = Field(None, description="Tools the caller executes (added to the agent's).")
    files: list[Annotated[str, Field(max_length=40)]] | None = Field(
        None, max_length=100, description="Uploaded file ids, put into the thread's workspace before the run starts."
    )
    agent_id: str | None = Field(None, max_length=40)
    agent_version: int | None = Field(None, ge=1, description="Run this version of the agent (default: its newest).")
    persona_id: str | None = Field(
        None, min_length=1, max_length=220, description='The agent as "name@version" ("name" alone: its newest).'
    )
    name: str | None = Field(None, min_length=1, max_length=200, description="Quick start: agent name.")
    instructions: str | None = Field(None, max_length=100_000, description="Quick start: agent instructions.")
    tools: list[Annotated[str, Field(max_length=200)]] | None = Field(
        None, max_length=64, description="Override the agent's tools for this run."
    )
    model: str | None = Field(None, min_length=1, max_length=200, description="Override the agent's model.")
    route_id: str | None = Field(
        None, min_length=1, max_length=200, description="A route id (wins over model): it picks the model."
    )
    user_id: str | None = Field(None, min_length=1, max_length=200)
    metadata: Metadata = Field(default_factory=dict)
    stream: bool = Field(False, description="True: the response is the SSE stream of the new run.")
    multitask: Multitask = Field(
        "reject", description="When the thread has an active run: 409, start after it, or cancel it first."
    )
    webhook_url: str | None = Field(
        None, max_length=2048, description="Also deliver the run's terminal event here (signed with the org's secret)."
    )

    @model_validator(mode="after")
    def _modes_need_a_human(self) -> ThreadRunCreate:
        if self.permission_mode != "autonomous" and not self.human_in_the_loop:
            raise ValueError("permission_mode other than 'autonomous' requires human_in_the_loop: true")
        return self

    def options(self) -> dict[str, Any]:
        return self.model_dump(include=set(RunOptions.model_fields))


class RunCreate(ThreadRunCreate):
    thread_id: str | None = Field(None, max_length=40)


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None = None


class RunList(Page[Run]):
    pass


class AgentList(Page[Agent]):
    pass


class AgentVersionList(Page[AgentVersion]):
    pass


class EventList(Page[Event]):
    pass


class WaitList(Page[Wait]):
    pass


class ThreadList(Page[Thread]):
    pass


class MemoryList(Page[Memory]):
    pass


class AnswerBody(_Body):
    wait_id: str | None = Field(None, max_length=40, description="Default: the run's oldest open question.")
    answers: Annotated[dict[str, Any], max_json_bytes(Limits.MESSAGE_BYTES)] = Field(
        description="{question: answer}; choices must be among the options."
    )


class ApproveBody(_Body):
    wait_id: str | None = Field(None, max_length=40, description="Default: the run's oldest open approval.")
    decision: Literal["allow", "deny"]
    reason: str | None = Field(None, max_length=4000, description="Told to the model when denied.")
    remember: bool = Field(False, description="Allow this tool for the rest of the run.")


class InputBody(_Body):
    content: MessageText = Field(description="Free text, at most 32 KB: answers whatever the run waits for.")
    wait_id: str | None = Field(None, max_length=40, description="Default: the run's oldest open wait.")


class MessageBody(_Body):
    message: MessageText = Field(description="At most 32 KB.")


class ReplyBody(MessageBody):
    files: list[Annotated[str, Field(max_length=40)]] | None = Field(
        None, max_length=100, description="Uploaded file ids, put into the thread's workspace first."
    )


class ToolResult(_Body):
    tool_call_id: str = Field(min_length=1, max_length=200)
    output: Any = Field(None, description="The tool's result (JSON); matches its output_schema if it has one.")
    error: str | None = Field(None, max_length=32 * 1024, description="Instead of output: the tool failed.")

    @model_validator(mode="after")
    def _one_of(self) -> ToolResult:
        if ("output" in self.model_fields_set) == (self.error is not None):
            raise ValueError("give exactly one of output and error")
        return self

    def answer(self) -> dict[str, Any]:
        result = {"error": self.error} if self.error is not None else {"output": self.output}
        return {"tool_call_id": self.tool_call_id, **result}


class ToolResultsBody(_Body):
    results: list[ToolResult] = Field(min_length=1, max_length=64)


class ThreadCreate(_Body):
    user_id: str | None = Field(None, min_length=1, max_length=200)
    metadata: Metadata = Field(default_factory=dict)


class MemoryCreate(_Body):
    text: str = Field(min_length=1, max_length=4000)
    metadata: Metadata = Field(default_factory=dict)


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


Subscriptions = Annotated[list[Annotated[str, Field(max_length=100)]], Field(min_length=1, max_length=64)]


class WebhookUpdate(_Body):
    url: str | None = Field(None, max_length=2048, description="An http(s) URL; private addresses are refused.")
    events: Subscriptions | None = Field(None, description='Event types, prefixes such as "run.*", or "*".')
    description: str | None = Field(None, max_length=2000)
    enabled: bool | None = None
    metadata: Metadata | None = None


class WebhookCreate(WebhookUpdate):
    url: str = Field(max_length=2048, description="An http(s) URL; private addresses are refused.")  # type: ignore[assignment]
    events: Subscriptions = Field(description='Event types, prefixes such as "run.*", or "*".')  # type: ignore[assignment]
    enabled: bool = True  # type: ignore[assignment]
    secret: str | None = Field(None, max_length=100, description="A whsec_ secret of your own (default: generated).")


class WebhookRotate(_Body):
    secret: str | None = Field(None, max_length=100, description="A whsec_ secret of your own (default: generated).")


class WebhookList(Page[Webhook]):
    pass


class WebhookDeliveryList(Page[WebhookDelivery]):
    pass
