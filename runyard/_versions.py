"""Agent versions as the server and the SDK both see them: what an agent was at each change."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from .domain import ClientTool, MCPServer, RunLimits, _Model

__all__ = ["VERSIONED_FIELDS", "AgentVersion"]

VERSIONED_FIELDS: tuple[str, ...] = (
    "instructions",
    "model",
    "route_id",
    "tools",
    "input_description",
    "output_description",
    "input_schema",
    "output_schema",
    "message_template",
    "mcp_servers",
    "client_tools",
    "limits",
)
"""What makes a new version when it changes (a new name or metadata does not)."""


class AgentVersion(_Model):
    """An agent as it was from one change to the next: immutable. A run records the version it
    was created with (`agent_version`) and executes it, whatever the agent becomes meanwhile."""

    object: Literal["agent_version"] = "agent_version"
    agent_id: str
    version: int
    name: str
    instructions: str = ""
    model: str = "scripted"
    route_id: str | None = None
    tools: list[str] = Field(default_factory=list)
    input_description: str | None = None
    output_description: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    message_template: str | None = None
    mcp_servers: list[MCPServer] = Field(default_factory=list)
    client_tools: list[ClientTool] = Field(default_factory=list)
    limits: RunLimits | None = None
    created_at: datetime
