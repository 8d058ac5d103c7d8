"""Threads: the conversation runs belong to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select

from . import files
from .db import Conn, utcnow
from .errors import Conflict, NotFound
from .ids import new_id
from .pages import finish, metadata_matches, page
from .schema import ACTIVE, TERMINAL, checkpoints, events, runs, threads, tool_calls, waits

__all__ = ["active_runs", "conversations", "create", "delete_", "get", "list_", "to_dict"]


def to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "thread",
        "user_id": row.user_id,
        "metadata": row.metadata,
        "created_at": row.created_at,
    }


_INSERT = insert(threads)


async def create(
    conn: Conn, org_id: str, *, user_id: str | None = None, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    values = {
        "id": new_id("thr"),
        "org_id": org_id,
        "user_id": user_id,
        "metadata": metadata or {},
        "created_at": utcnow(),
    }
    await conn.execute(_INSERT, [values])  # parameters, not .values(): compiled once
    return {"object": "thread", **{k: v for k, v in values.items() if k != "org_id"}}


async def get(conn: Conn, org_id: str, thread_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(select(threads).where(threads.c.id == thread_id, threads.c.org_id == org_id))
    ).one_or_none()
    if row is None:
        raise NotFound.of("thread", thread_id)
    return to_dict(row)


async def list_(
    conn: Conn,
    org_id: str,
    *,
    limit: int,
    before: str | None = None,
    after: str | None = None,
    user_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], bool, str | None]:
    query = select(threads).where(threads.c.org_id == org_id)
    if user_id is not None:
        query = query.where(threads.c.user_id == user_id)
    for key, value in (metadata or {}).items():
        query = query.where(metadata_matches(threads.c.metadata, key, value, conn.dialect.name))
    query, ascending = page(query, threads, limit=limit, before=before, after=after)
    rows, has_more, cursor = finish(list(await conn.execute(query)), limit=limit, ascending=ascending)
    return [to_dict(r) for r in rows], has_more, cursor


async def delete_(conn: Conn, org_id: str, thread_id: str) -> list[str]:
    """Delete a thread, its runs' records and its files; refused while one of its runs is active.

    Returns the blob keys the caller deletes after commit (S3: `Blobs.delete`; the database's are gone)."""
    await get(conn, org_id, thread_id)
    run_rows = (
        await conn.execute(
            select(runs.c.id, runs.c.status).where(runs.c.org_id == org_id, runs.c.thread_id == thread_id)
        )
    ).all()
    active = [r.id for r in run_rows if r.status in ACTIVE]
    if active:
        raise Conflict(f"thread {thread_id} has an active run ({active[0]}): cancel it first")
    ids = [r.id for r in run_rows]
    if ids:
        for table in (events, checkpoints, tool_calls, waits):
            await conn.execute(delete(table).where(table.c.run_id.in_(ids)))
        await conn.execute(delete(runs).where(runs.c.id.in_(ids)))
    keys = await files.delete_for_thread(conn, org_id, thread_id)
    await conn.execute(delete(threads).where(threads.c.id == thread_id))
    return keys


async def active_runs(conn: Conn, org_id: str, thread_id: str) -> list[str]:
    """Ids of the thread's pending, running or waiting runs, oldest first."""
    query = select(runs.c.id).where(runs.c.org_id == org_id, runs.c.thread_id == thread_id, runs.c.status.in_(ACTIVE))
    return [r.id for r in await conn.execute(query.order_by(runs.c.id))]


async def conversations(
    conn: Conn, org_id: str, thread_id: str, *, before_run: str | None = None, terminal_only: bool = False
) -> list[tuple[str, str, int]]:
    """(run_id, checkpoint JSON, history_len) of the thread's runs in order: their conversations."""
    query = (
        select(runs.c.id, checkpoints.c.messages, checkpoints.c.history_len)
        .join(checkpoints, checkpoints.c.run_id == runs.c.id)
        .where(runs.c.org_id == org_id, runs.c.thread_id == thread_id)
        .order_by(runs.c.id)
    )
    if before_run is not None:
        query = query.where(runs.c.id < before_run)
    if terminal_only:
        query = query.where(runs.c.status.in_(TERMINAL))
    return [(r.id, r.messages, r.history_len) for r in await conn.execute(query)]
