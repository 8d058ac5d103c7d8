"""Agents: an org's named LLM + instructions + tools."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .db import Conn, utcnow
from .errors import Conflict, InvalidInput, NotFound
from .ids import new_id
from .pages import finish, page
from .schema import agents

__all__ = ["create", "delete_", "find_by_name", "find_or_create", "get", "list_", "to_dict", "update_"]

FIELDS = (
    "name",
    "instructions",
    "model",
    "tools",
    "input_description",
    "output_description",
    "input_schema",
    "output_schema",
    "message_template",
    "mcp_servers",
    "client_tools",
    "limits",
    "metadata",
)


def to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "agent",
        **{f: getattr(row, f) for f in FIELDS},
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def create(conn: Conn, org_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    values = {
        "id": new_id("agt"),
        "org_id": org_id,
        "instructions": "",
        "model": "scripted",
        "tools": [],
        "mcp_servers": [],
        "client_tools": [],
        "metadata": {},
        **fields,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(insert(agents).values(**values))
    except IntegrityError:
        raise Conflict(f"an agent named {fields['name']!r} already exists", field="name") from None
    return await get(conn, org_id, values["id"])


_GET = select(agents).where(agents.c.id == bindparam("agent_id"), agents.c.org_id == bindparam("org_id"))
"""Built once: run creation reads the agent every time."""


async def get(conn: Conn, org_id: str, agent_id: str) -> dict[str, Any]:
    row = (await conn.execute(_GET, {"agent_id": agent_id, "org_id": org_id})).one_or_none()
    if row is None:
        raise NotFound.of("agent", agent_id)
    return to_dict(row)


async def find_by_name(conn: Conn, org_id: str, name: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(agents).where(agents.c.org_id == org_id, agents.c.name == name))).one_or_none()
    return to_dict(row) if row is not None else None


async def find_or_create(conn: Conn, org_id: str, name: str, instructions: str | None) -> dict[str, Any]:
    """The agent named `name`, created with `instructions` when there is none (quick start)."""
    found = await find_by_name(conn, org_id, name)
    if found is not None:
        return found
    if instructions is None:
        raise InvalidInput(f"no agent named {name!r}: pass instructions to create it", field="instructions")
    try:
        return await create(conn, org_id, {"name": name, "instructions": instructions})
    except Conflict:  # created concurrently by another request
        found = await find_by_name(conn, org_id, name)
        if found is None:
            raise
        return found


async def list_(
    conn: Conn, org_id: str, *, limit: int, before: str | None = None, after: str | None = None
) -> tuple[list[dict[str, Any]], bool, str | None]:
    query, ascending = page(
        select(agents).where(agents.c.org_id == org_id), agents, limit=limit, before=before, after=after
    )
    rows, has_more, cursor = finish(list(await conn.execute(query)), limit=limit, ascending=ascending)
    return [to_dict(r) for r in rows], has_more, cursor


async def update_(conn: Conn, org_id: str, agent_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    await get(conn, org_id, agent_id)
    if fields:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    update(agents)
                    .where(agents.c.id == agent_id, agents.c.org_id == org_id)
                    .values(**fields, updated_at=utcnow())
                )
        except IntegrityError:
            raise Conflict(f"an agent named {fields.get('name')!r} already exists", field="name") from None
    return await get(conn, org_id, agent_id)


async def delete_(conn: Conn, org_id: str, agent_id: str) -> None:
    result = await conn.execute(delete(agents).where(agents.c.id == agent_id, agents.c.org_id == org_id))
    if result.rowcount == 0:
        raise NotFound.of("agent", agent_id)
