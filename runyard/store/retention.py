"""Retention: delete ended runs with everything keyed by their id, and expired idempotency keys.

What goes: a run that is `completed`, `failed` or `cancelled` and ended before `runs_before`,
with its events, checkpoint, tool-call journal, waits and its record of the files it wrote.
Pending, running and waiting runs are never touched, whatever their age. Threads and agents
stay (a thread's later runs carry its conversation in their own checkpoints), and so do the
thread's files and memories: their `run_id` only records which run wrote them last; they
belong to the thread and the user (deleting the thread deletes its files).

Each `purge` is one bounded batch in the caller's transaction: at most `batch` runs (and, in
the same call, at most `batch` idempotency keys), so no transaction holds its locks, or on
SQLite the event loop, for long. The caller repeats while a count equals `batch`.

Runs are found through `ix_runs_claim (status, id)`, one terminal status at a time, oldest id
first. Ids are time-sortable and a run ends after it was created, so `id < id_at(runs_before)`
bounds the index range to runs created before the cutoff; each one's end stamp then decides.
On PostgreSQL, rows another transaction holds are skipped (`SKIP LOCKED`), never waited for.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, tuple_

from ..domain import RunStatus
from .db import Conn, Tx, utcnow
from .ids import first_id_at
from .schema import checkpoints, events, idempotency_keys, run_files, runs, tool_calls, waits

__all__ = ["BATCH", "BATCHES_PER_REAP", "cutoffs", "purge"]

BATCH = 100
"""Runs (and idempotency keys) per `purge` call. A run may carry thousands of events (one per
token delta): 100 runs of 1,000 events took ~0.1 s on SQLite (where the purge blocks the event
loop) and ~0.25 s on PostgreSQL on a laptop-class machine; 500 would stall the loop for ~0.6 s."""
BATCHES_PER_REAP = 4
"""`purge` calls per reaper pass, each its own transaction: a backlog drains over several
passes instead of stalling one."""

_ENDED_AT = {
    RunStatus.COMPLETED: runs.c.completed_at,
    RunStatus.FAILED: runs.c.failed_at,
    RunStatus.CANCELLED: runs.c.cancelled_at,
}
"""Each terminal status and the stamp the state machine sets when a run reaches it."""

# Children before the run: `waits.run_id` has a foreign key to `runs`; the other three are
# keyed by run_id without one.
_RUN_ROWS = (events, checkpoints, tool_calls, waits, run_files)


def cutoffs(
    *, retention_days: float | None, idempotency_key_hours: float, now: datetime | None = None
) -> tuple[datetime | None, datetime]:
    """`purge`'s `(runs_before, keys_before)` for these settings; no run cutoff when
    `retention_days` is unset (runs are kept forever)."""
    now = now or utcnow()
    runs_before = None if retention_days is None else now - timedelta(days=retention_days)
    return runs_before, now - timedelta(hours=idempotency_key_hours)


async def purge(
    tx: Tx, *, runs_before: datetime | None, keys_before: datetime | None, batch: int = BATCH
) -> dict[str, int]:
    """Delete one batch: ended runs older than `runs_before` (with their rows) and idempotency
    keys older than `keys_before`; `None` skips that part. Returns rows deleted per table."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    conn = tx.conn
    counts = {table.name: 0 for table in (runs, *_RUN_ROWS, idempotency_keys)}
    if runs_before is not None:
        ids = await _ended_runs(conn, runs_before, batch)
        if ids:
            for table in _RUN_ROWS:
                counts[table.name] = (await conn.execute(delete(table).where(table.c.run_id.in_(ids)))).rowcount
            counts[runs.name] = (await conn.execute(delete(runs).where(runs.c.id.in_(ids)))).rowcount
    if keys_before is not None:
        stale = (
            select(idempotency_keys.c.org_id, idempotency_keys.c.key)
            .where(idempotency_keys.c.created_at < keys_before)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        key = tuple_(idempotency_keys.c.org_id, idempotency_keys.c.key)
        counts[idempotency_keys.name] = (await conn.execute(delete(idempotency_keys).where(key.in_(stale)))).rowcount
    return counts


async def _ended_runs(conn: Conn, before: datetime, limit: int) -> list[str]:
    """Up to `limit` ids of terminal runs that ended before `before`, oldest first per status."""
    created_before = first_id_at("run", before)
    found: list[str] = []
    for status, ended_at in _ENDED_AT.items():
        query = (
            select(runs.c.id)
            .where(runs.c.status == status.value, runs.c.id < created_before, ended_at < before)
            .order_by(runs.c.id)
            .limit(limit - len(found))
            .with_for_update(skip_locked=True)
        )
        found += (await conn.execute(query)).scalars()
        if len(found) >= limit:
            break
    return found
