"""Conversation checkpoints: what a resumed attempt of a run continues from (invariant 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from . import runs as runs_store
from .db import Conn, utcnow
from .schema import checkpoints, runs

__all__ = ["Checkpoint", "load", "save"]


@dataclass(frozen=True)
class Checkpoint:
    """A run's conversation so far."""

    messages: str
    """pydantic-ai `ModelMessagesTypeAdapter` JSON."""
    history_len: int = 0
    """How many of `messages` came from the thread's earlier runs (the rest are the run's own)."""
    delivered: int = 0
    """Follow-up messages of the run's queue that `messages` took in: saving drops them from the queue."""


async def load(conn: Conn, org_id: str, run_id: str) -> Checkpoint | None:
    of_org = select(runs.c.id).where(runs.c.id == run_id, runs.c.org_id == org_id).exists()
    row = (
        await conn.execute(
            select(checkpoints.c.messages, checkpoints.c.history_len).where(checkpoints.c.run_id == run_id, of_org)
        )
    ).one_or_none()
    return Checkpoint(row.messages, row.history_len) if row is not None else None


_UPSERTS: dict[str, Any] = {}


def _upsert(dialect_name: str) -> Any:
    """One upsert, not an UPDATE then an INSERT (the first checkpoint costs one statement too); built once."""
    statement = _UPSERTS.get(dialect_name)
    if statement is None:
        dialect = postgresql if dialect_name == "postgresql" else sqlite
        insert = dialect.insert(checkpoints)
        columns = ("messages", "history_len", "attempt", "updated_at")
        statement = _UPSERTS[dialect_name] = insert.on_conflict_do_update(
            index_elements=[checkpoints.c.run_id], set_={c: insert.excluded[c] for c in columns}
        )
    return statement


async def save(conn: Conn, org_id: str, run_id: str, checkpoint: Checkpoint, *, attempt: int) -> None:
    """Write the conversation, inside the fenced transaction that appends the run's events."""
    values = {
        "messages": checkpoint.messages,
        "history_len": checkpoint.history_len,
        "attempt": attempt,
        "updated_at": utcnow(),
    }
    await conn.execute(_upsert(conn.dialect.name), {"run_id": run_id, **values})
    if checkpoint.delivered:
        await runs_store.drop_pending_messages(conn, org_id, run_id, checkpoint.delivered)
