"""Memories: what an org keeps about one of its end users, offered to that user's runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select

from .db import Conn, utcnow
from .errors import NotFound
from .ids import new_id
from .pages import finish, page
from .schema import memories

__all__ = ["all_for_user", "create", "delete_", "delete_all", "list_", "to_dict"]

MAX_IN_INSTRUCTIONS = 50


def to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "memory",
        "user_id": row.user_id,
        "text": row.text,
        "metadata": row.metadata,
        "run_id": row.run_id,
        "created_at": row.created_at,
    }


async def create(
    conn: Conn,
    org_id: str,
    user_id: str,
    text: str,
    *,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    values = {
        "id": id or new_id("mem"),
        "org_id": org_id,
        "user_id": user_id,
        "text": text,
        "metadata": metadata or {},
        "run_id": run_id,
        "created_at": utcnow(),
    }
    await conn.execute(insert(memories), [values])
    return {"object": "memory", **{k: v for k, v in values.items() if k != "org_id"}}


async def list_(
    conn: Conn, org_id: str, user_id: str, *, limit: int, before: str | None = None, after: str | None = None
) -> tuple[list[dict[str, Any]], bool, str | None]:
    query = select(memories).where(memories.c.org_id == org_id, memories.c.user_id == user_id)
    query, ascending = page(query, memories, limit=limit, before=before, after=after)
    rows, has_more, cursor = finish(list(await conn.execute(query)), limit=limit, ascending=ascending)
    return [to_dict(r) for r in rows], has_more, cursor


async def all_for_user(conn: Conn, org_id: str, user_id: str) -> list[dict[str, Any]]:
    """The newest memories of a user, oldest first: what goes into a run's instructions."""
    rows = await conn.execute(
        select(memories)
        .where(memories.c.org_id == org_id, memories.c.user_id == user_id)
        .order_by(memories.c.id.desc())
        .limit(MAX_IN_INSTRUCTIONS)
    )
    return [to_dict(r) for r in reversed(list(rows))]


async def delete_(conn: Conn, org_id: str, user_id: str, memory_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(
            select(memories).where(
                memories.c.id == memory_id, memories.c.org_id == org_id, memories.c.user_id == user_id
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound.of("memory", memory_id)
    await conn.execute(delete(memories).where(memories.c.id == memory_id))
    return to_dict(row)


async def delete_all(conn: Conn, org_id: str, user_id: str) -> int:
    result = await conn.execute(delete(memories).where(memories.c.org_id == org_id, memories.c.user_id == user_id))
    return result.rowcount
