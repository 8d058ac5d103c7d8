"""What a tool knows about the call it serves, without taking pydantic-ai's RunContext."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["ToolCallContext", "current_tool_call"]


@dataclass(frozen=True)
class ToolCallContext:
    run_id: str
    tool_call_id: str

    @property
    def idempotency_key(self) -> str:
        """Stable across a crash and a resume: a tool may pass it on to make its effect happen once."""
        return f"{self.run_id}:{self.tool_call_id}"


current_tool_call: ContextVar[ToolCallContext | None] = ContextVar("runyard_tool_call", default=None)
