"""Request bodies and list envelopes: the typed edge of the HTTP API."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from typing import Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..domain import Agent, Event, Memory, PermissionMode, Run, Thread, Wait

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


class Limits:
    MESSAGE_BYTES = 32 * 1024
    METADATA_BYTES = 16 * 1024
    BODY_BYTES = 1024 * 1024
    PAGE_MAX = 100


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        try:
            jsonschema.validators.validator_for(value, default=jsonschema.Draft202012Validator).check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
    return value


class _AgentFields(_Body):
    instructions: str | None = Field(None, max_length=100_000)
    model: str | None = Field(None, min_length=1, max_length=200)
    tools: list[str] | None = Field(None, max_length=64)
    input_description: str | None = Field(None, max_length=10_000)
    output_description: str | None = Field(None, max_length=10_000)
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    _schemas = field_validator("input_schema", "output_schema")(_check_schema)


class AgentCreate(_AgentFields):
    name: str = Field(min_length=1, max_length=200)


class AgentUpdate(_AgentFields):
    name: str | None = Field(None, min_length=1, max_length=200)


class ThreadRunCreate(_Body):
    message: str = Field(min_length=1, description="The task, at most 32 KB (UTF-8).")
    agent_id: str | None = Field(None, max_length=40)
    name: str | None = Field(None, min_length=1, max_length=200, description="Quick start: agent name.")
    instructions: str | None = Field(None, max_length=100_000, description="Quick start: agent instructions.")
    tools: list[str] | None = Field(None, max_length=64, description="Override the agent's tools for this run.")
    model: str | None = Field(None, min_length=1, max_length=200, description="Override the agent's model.")
    user_id: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict, description="At most 16 KB as JSON.")
    stream: bool = Field(False, description="True: the response is the SSE stream of the new run.")
    human_in_the_loop: bool = Field(False, description="Offer ask_user_question; allow permission modes.")
    permission_mode: PermissionMode = Field("autonomous", description="Which tool calls wait for approval.")
    history: bool = Field(True, description="Include the thread's earlier runs as context.")
    memory: bool = Field(True, description="Give the model the user's memories and memory tools.")
    multitask: Literal["reject", "enqueue", "interrupt"] = Field(
        "reject", description="When the thread has an active run: 409, start after it, or cancel it first."
    )
    wait_timeout: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="Seconds a wait stays open.")
    wait_timeout_action: Literal["deny", "fail"] = Field("deny", description="What an expired wait does.")

    @model_validator(mode="after")
    def _modes_need_a_human(self) -> "ThreadRunCreate":
        if self.permission_mode != "autonomous" and not self.human_in_the_loop:
            raise ValueError("permission_mode other than 'autonomous' requires human_in_the_loop: true")
        return self

    def options(self) -> dict[str, Any]:
        return self.model_dump(include={"human_in_the_loop", "permission_mode", "history", "memory",
                                        "wait_timeout", "wait_timeout_action"})


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
    answers: dict[str, Any] = Field(description="{question: answer}; choices must be among the options.")


class ApproveBody(_Body):
    wait_id: str | None = Field(None, max_length=40, description="Default: the run's oldest open approval.")
    decision: Literal["allow", "deny"]
    reason: str | None = Field(None, max_length=4000, description="Told to the model when denied.")
    remember: bool = Field(False, description="Allow this tool for the rest of the run.")


class InputBody(_Body):
    content: str = Field(description="Free text, at most 32 KB: answers whatever the run waits for.")
    wait_id: str | None = Field(None, max_length=40, description="Default: the run's oldest open wait.")


class MessageBody(_Body):
    message: str = Field(min_length=1, description="At most 32 KB.")


class ThreadCreate(_Body):
    user_id: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class MemoryCreate(_Body):
    text: str = Field(min_length=1, max_length=4000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
