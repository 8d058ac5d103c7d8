"""`/v1/agents`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request

from ..._versions import AgentVersion
from ...domain import Agent
from ...store import agents
from ...store.errors import InvalidInput
from ...worker.models import known_model, validate_script
from ...worker.routing import configured
from ...worker.tools import BUILTIN_TOOLS, unknown_tools
from ...worker.tools import mcp_config as mcp
from ...worker.tools.files import FILE_TOOLS
from ...worker.tools.human import HUMAN_TOOLS
from ...worker.tools.memory import MEMORY_TOOLS
from ..auth import org_id
from ..errors import ERRORS
from ..queries import After, Before, Limit
from ..schemas import AgentCreate, AgentList, AgentUpdate, AgentVersionList, Deleted
from ..variables import check_template

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=ERRORS)


def public(agent: dict[str, Any]) -> dict[str, Any]:
    """An agent as the API shows it: MCP header and env values redacted."""
    return {**agent, "mcp_servers": mcp.redact(agent.get("mcp_servers") or [])}


RESERVED_TOOL_NAMES = frozenset(BUILTIN_TOOLS) | FILE_TOOLS.keys() | HUMAN_TOOLS.keys() | MEMORY_TOOLS.keys()
"""A caller's tool may not take the name of a tool Runyard offers itself."""


def check_agent_fields(request: Request, fields: dict[str, Any]) -> None:
    """Checks shared by agent writes and run creation: tool names, model, script, template."""
    if fields.get("tools"):
        unknown = unknown_tools(fields["tools"])
        if unknown:
            raise InvalidInput(f"unknown tools: {', '.join(unknown)}", field="tools")
    seen: set[str] = set()
    for i, tool in enumerate(fields.get("client_tools") or []):
        name = tool["name"]
        if name in RESERVED_TOOL_NAMES or name in seen:
            why = "is a built-in tool's name" if name in RESERVED_TOOL_NAMES else "is declared twice"
            raise InvalidInput(f"client tool {name!r} {why}", field=f"client_tools[{i}].name")
        seen.add(name)
    if fields.get("message_template") is not None:
        check_template(fields["message_template"])
    if fields.get("model") is not None:
        settings = request.app.state.settings
        if not known_model(fields["model"], configured(settings)):
            raise InvalidInput(
                f"unknown model {fields['model']!r}: use 'scripted', a route id, or a model string such as "
                "'openai:gpt-4o' or 'anthropic:claude-sonnet-4-5'",
                field="model",
            )
    if fields.get("route_id") is not None and fields["route_id"] not in configured(request.app.state.settings):
        raise InvalidInput(f"unknown route {fields['route_id']!r}: GET /v1/routes lists them", field="route_id")
    if fields.get("metadata"):
        validate_script(fields["metadata"].get("script"))


async def check_mcp_servers(request: Request, fields: dict[str, Any]) -> None:
    """Normalise `mcp_servers` in place (the form it is stored in); its DNS checks run off the loop."""
    if fields.get("mcp_servers"):
        fields["mcp_servers"] = await mcp.acheck_servers(fields["mcp_servers"], request.app.state.settings)


@router.post("", status_code=201, response_model=Agent)
async def create_agent(body: AgentCreate, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    fields = body.model_dump(exclude_none=True)
    check_agent_fields(request, fields)
    await check_mcp_servers(request, fields)
    async with request.app.state.store.tx() as tx:
        return public(await agents.create(tx.conn, org, fields))


@router.get("", response_model=AgentList)
async def list_agents(
    request: Request,
    org: str = Depends(org_id),
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        data, has_more, cursor = await agents.list_(conn, org, limit=limit, before=before, after=after)
    return {"data": [public(a) for a in data], "has_more": has_more, "next_cursor": cursor}


@router.get("/{agent_id}", response_model=Agent)
async def get_agent(agent_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        return public(await agents.get(conn, org, agent_id))


@router.patch("/{agent_id}", response_model=Agent)
async def update_agent(
    agent_id: str, body: AgentUpdate, request: Request, org: str = Depends(org_id)
) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    for required in ("name", "instructions", "model", "tools", "metadata", "mcp_servers", "client_tools"):
        if required in fields and fields[required] is None:
            raise InvalidInput(f"{required} cannot be null", field=required)
    check_agent_fields(request, fields)
    if fields.get("mcp_servers"):
        async with request.app.state.store.read() as conn:
            stored = (await agents.get(conn, org, agent_id))["mcp_servers"]
        # A redacted value sent back (an edit of another field) keeps the stored secret.
        fields["mcp_servers"] = mcp.keep_redacted(fields["mcp_servers"], stored)
        await check_mcp_servers(request, fields)
    async with request.app.state.store.tx() as tx:
        return public(await agents.update_(tx.conn, org, agent_id, fields))


@router.get("/{agent_id}/versions", response_model=AgentVersionList)
async def list_agent_versions(
    agent_id: str,
    request: Request,
    org: str = Depends(org_id),
    limit: Limit = 20,
    before: int | None = Query(None, ge=1, le=2**31, description="Versions below this one."),
) -> dict[str, Any]:
    """What the agent was at each change of what it runs, newest version first."""
    async with request.app.state.store.read() as conn:
        data, has_more = await agents.list_versions(conn, org, agent_id, limit=limit, before=before)
    cursor = str(data[-1]["version"]) if has_more else None
    return {"data": [public(v) for v in data], "has_more": has_more, "next_cursor": cursor}


@router.get("/{agent_id}/versions/{version}", response_model=AgentVersion)
async def get_agent_version(
    agent_id: str, request: Request, org: str = Depends(org_id), version: int = Path(ge=1, le=2**31)
) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        return public(await agents.get_version(conn, org, agent_id, version))


@router.delete("/{agent_id}", response_model=Deleted)
async def delete_agent(agent_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.tx() as tx:
        await agents.delete_(tx.conn, org, agent_id)
    return {"id": agent_id, "object": "agent", "deleted": True}
