"""Threads: the conversation runs belong to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from .db import Conn, utcnow
from .errors import NotFound
from .ids import new_id
from .schema import threads

__all__ = ["create", "get", "to_dict"]


def to_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "object": "thread", "user_id": row.user_id, "metadata": row.metadata,
            "created_at": row.created_at}


async def create(
    conn: Conn, org_id: str, *, user_id: str | None = None, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    values = {"id": new_id("thr"), "org_id": org_id, "user_id": user_id, "metadata": metadata or {},
              "created_at": utcnow()}
    await conn.execute(insert(threads).values(**values))
    return {"object": "thread", **values}


async def get(conn: Conn, org_id: str, thread_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(select(threads).where(threads.c.id == thread_id, threads.c.org_id == org_id))
    ).one_or_none()
    if row is None:
        raise NotFound.of("thread", thread_id)
    return to_dict(row)
