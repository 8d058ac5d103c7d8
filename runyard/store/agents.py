"""Agents: an org's named LLM + instructions + tools, and their versions.

Every change of what an agent runs (`VERSIONED_FIELDS`) makes a new immutable version, in the
same transaction: `version` on the agent is its newest, `agent_versions` keeps each snapshot."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .._versions import VERSIONED_FIELDS
from .db import Conn, utcnow
from .errors import Conflict, InvalidInput, NotFound
from .ids import new_id
from .pages import finish, page
from .schema import agent_versions, agents

__all__ = [
    "create",
    "delete_",
    "find_by_name",
    "find_or_create",
    "get",
    "get_version",
    "list_",
    "list_versions",
    "to_dict",
    "update_",
]

FIELDS = ("name", *VERSIONED_FIELDS, "metadata")


def to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "agent",
        **{f: getattr(row, f) for f in FIELDS},
        "version": row.version,
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
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(insert(agents).values(**values))
    except IntegrityError:
        raise Conflict(f"an agent named {fields['name']!r} already exists", field="name") from None
    agent = await get(conn, org_id, values["id"])
    await _snapshot(conn, org_id, agent)
    return agent


async def _snapshot(conn: Conn, org_id: str, agent: dict[str, Any]) -> None:
    snapshot = {"name": agent["name"], **{f: agent.get(f) for f in VERSIONED_FIELDS}}
    await conn.execute(
        insert(agent_versions).values(
            agent_id=agent["id"], version=agent["version"], org_id=org_id, snapshot=snapshot, created_at=utcnow()
        )
    )


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
    """Change an agent; a change of what it runs makes its next version."""
    current = await get(conn, org_id, agent_id)
    if not fields:
        return current
    changed = any(f in fields and fields[f] != current[f] for f in VERSIONED_FIELDS)
    values = {**fields, "updated_at": utcnow()}
    if changed:
        values["version"] = current["version"] + 1
    try:
        async with conn.begin_nested():
            await conn.execute(update(agents).where(agents.c.id == agent_id, agents.c.org_id == org_id).values(values))
    except IntegrityError:
        raise Conflict(f"an agent named {fields.get('name')!r} already exists", field="name") from None
    agent = await get(conn, org_id, agent_id)
    if changed:
        await _snapshot(conn, org_id, agent)
    return agent


def _version_dict(row: Any) -> dict[str, Any]:
    snapshot = {"object": "agent_version", "agent_id": row.agent_id, "version": row.version, **row.snapshot}
    return {**snapshot, "created_at": row.created_at}


async def get_version(conn: Conn, org_id: str, agent_id: str, version: int) -> dict[str, Any]:
    """One version of an agent (`NotFound` naming `agent_version` if it has none such)."""
    row = (
        await conn.execute(
            select(agent_versions).where(
                agent_versions.c.agent_id == agent_id,
                agent_versions.c.org_id == org_id,
                agent_versions.c.version == version,
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"agent {agent_id} has no version {version}", field="agent_version")
    return _version_dict(row)


async def list_versions(
    conn: Conn, org_id: str, agent_id: str, *, limit: int, before: int | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """An agent's versions, newest first; `before`: versions below that one."""
    await get(conn, org_id, agent_id)
    query = select(agent_versions).where(agent_versions.c.agent_id == agent_id, agent_versions.c.org_id == org_id)
    if before is not None:
        query = query.where(agent_versions.c.version < before)
    rows = list(await conn.execute(query.order_by(agent_versions.c.version.desc()).limit(limit + 1)))
    return [_version_dict(r) for r in rows[:limit]], len(rows) > limit


async def delete_(conn: Conn, org_id: str, agent_id: str) -> None:
    await conn.execute(
        delete(agent_versions).where(agent_versions.c.agent_id == agent_id, agent_versions.c.org_id == org_id)
    )
    result = await conn.execute(delete(agents).where(agents.c.id == agent_id, agents.c.org_id == org_id))
    if result.rowcount == 0:
        raise NotFound.of("agent", agent_id)
