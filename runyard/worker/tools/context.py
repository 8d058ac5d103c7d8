"""What a tool knows about the call it serves, without taking pydantic-ai's RunContext."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from ...store.db import Tx
from ...store.events import NewEvent

__all__ = ["ToolCallContext", "current_tool_call"]


@dataclass(frozen=True)
class ToolCallContext:
    run_id: str
    tool_call_id: str
    writes: list[Callable[[Tx], Awaitable[None]]] = field(default_factory=list)
    """Store writes the tool staged: they commit with the call's result and journal entry."""
    events: list[NewEvent] = field(default_factory=list)
    """Events announcing those writes, appended just before the call's `tool.result`."""

    @property
    def idempotency_key(self) -> str:
        """Stable across a crash and a resume: a tool may pass it on to make its effect happen once."""
        return f"{self.run_id}:{self.tool_call_id}"

    def write_with_result(self, write: Callable[[Tx], Awaitable[None]], *events: NewEvent) -> None:
        """Stage a store write (and its events) for the transaction that journals this call, so the
        effect and the entry that stops a resume from repeating it commit together or not at all."""
        self.writes.append(write)
        self.events.extend(events)


current_tool_call: ContextVar[ToolCallContext | None] = ContextVar("runyard_tool_call", default=None)
