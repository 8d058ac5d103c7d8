"""Request bodies and list envelopes: the typed edge of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..domain import Agent, Event, Memory, Multitask, Run, RunOptions, Thread, Wait
from .limits import Limits, MessageText, Metadata, check_json, check_json_schema, check_text, max_json_bytes

__all__ = [
    "AgentCreate",
    "AgentList",
    "AgentUpdate",
    "AnswerBody",
    "ApproveBody",
    "Deleted",
    "EventList",
    "InputBody",
    "Limits",
    "MemoryCreate",
    "MemoryList",
    "MessageBody",
    "RunCreate",
    "RunList",
    "ThreadCreate",
    "ThreadList",
    "ThreadRunCreate",
    "WaitList",
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


class _AgentFields(_Body):
    instructions: str | None = Field(None, max_length=100_000)
    model: str | None = Field(None, min_length=1, max_length=200)
    tools: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=64)
    input_description: str | None = Field(None, max_length=10_000)
    output_description: str | None = Field(None, max_length=10_000)
    input_schema: JsonSchema = None
    output_schema: JsonSchema = None
    metadata: Metadata | None = None


class AgentCreate(_AgentFields):
    name: str = Field(min_length=1, max_length=200)


class AgentUpdate(_AgentFields):
    name: str | None = Field(None, min_length=1, max_length=200)


class ThreadRunCreate(RunOptions, _Body):
    message: MessageText = Field(description="The task, at most 32 KB (UTF-8).")
    agent_id: str | None = Field(None, max_length=40)
    name: str | None = Field(None, min_length=1, max_length=200, description="Quick start: agent name.")
    instructions: str | None = Field(None, max_length=100_000, description="Quick start: agent instructions.")
    tools: list[Annotated[str, Field(max_length=200)]] | None = Field(
        None, max_length=64, description="Override the agent's tools for this run."
    )
    model: str | None = Field(None, min_length=1, max_length=200, description="Override the agent's model.")
    user_id: str | None = Field(None, min_length=1, max_length=200)
    metadata: Metadata = Field(default_factory=dict)
    stream: bool = Field(False, description="True: the response is the SSE stream of the new run.")
    multitask: Multitask = Field(
        "reject", description="When the thread has an active run: 409, start after it, or cancel it first."
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
