"""`/v1/agents`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ...domain import Agent
from ...store import agents
from ...store.errors import InvalidInput
from ...worker.models import known_model, load_routes, validate_script
from ...worker.tools import unknown_tools
from ..auth import org_id
from ..errors import ERRORS
from ..queries import After, Before, Limit
from ..schemas import AgentCreate, AgentList, AgentUpdate, Deleted

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=ERRORS)


def check_agent_fields(request: Request, fields: dict[str, Any]) -> None:
    """Checks shared by agent writes and quick-start runs: tool names, model, script."""
    if fields.get("tools"):
        unknown = unknown_tools(fields["tools"])
        if unknown:
            raise InvalidInput(f"unknown tools: {', '.join(unknown)}", field="tools")
    if fields.get("model") is not None:
        settings = request.app.state.settings
        if not known_model(fields["model"], load_routes(str(settings.routes) if settings.routes else None)):
            raise InvalidInput(
                f"unknown model {fields['model']!r}: use 'scripted', a route id, or a model string such as "
                "'openai:gpt-4o' or 'anthropic:claude-sonnet-4-5'",
                field="model",
            )
    if fields.get("metadata"):
        validate_script(fields["metadata"].get("script"))


@router.post("", status_code=201, response_model=Agent)
async def create_agent(body: AgentCreate, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    fields = body.model_dump(exclude_none=True)
    check_agent_fields(request, fields)
    async with request.app.state.store.tx() as tx:
        return await agents.create(tx.conn, org, fields)


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
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/{agent_id}", response_model=Agent)
async def get_agent(agent_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        return await agents.get(conn, org, agent_id)


@router.patch("/{agent_id}", response_model=Agent)
async def update_agent(
    agent_id: str, body: AgentUpdate, request: Request, org: str = Depends(org_id)
) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    for required in ("name", "instructions", "model", "tools", "metadata"):
        if required in fields and fields[required] is None:
            raise InvalidInput(f"{required} cannot be null", field=required)
    check_agent_fields(request, fields)
    async with request.app.state.store.tx() as tx:
        return await agents.update_(tx.conn, org, agent_id, fields)


@router.delete("/{agent_id}", response_model=Deleted)
async def delete_agent(agent_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.tx() as tx:
        await agents.delete_(tx.conn, org, agent_id)
    return {"id": agent_id, "object": "agent", "deleted": True}
