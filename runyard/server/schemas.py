"""Request bodies and list envelopes: the typed edge of the HTTP API."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..domain import Agent, Event, Run

__all__ = [
    "AgentCreate",
    "AgentList",
    "AgentUpdate",
    "Deleted",
    "EventList",
    "Limits",
    "RunCreate",
    "RunList",
    "ThreadRunCreate",
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


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
