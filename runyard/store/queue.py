"""The queue: claim, renew, release and reap, fenced by `(worker_id, attempt)`, for runs and
for jobs (webhook deliveries), which share the claim query and the lease.

    pending ──claim──► running ──finish──► completed | failed | cancelled
       ▲                  │
       └──release/reap────┘   (lease expired or worker shut down; attempt+1 at the next claim)
                              (past max_attempts the reaper fails the run instead)

A lease is `(worker_id, attempt, lease_until)`. `lease_until` is epoch seconds on the
database's clock, so workers on machines with skewed clocks agree on who holds a run; a
worker's own clock is only trusted to schedule its heartbeats, well inside the lease.
Every write a worker makes for a run matches its fence (`events.append(fence=…)`); a write
that matches nothing raises `LeaseLost` and the worker drops the run without touching it.
On failure: a crashed worker's runs are reaped when their lease expires; a worker that
loses its connection stops renewing and its runs go to whoever claims them next.

A job table (`webhook_deliveries`) has the same lease columns plus `available_at` (database
clock) for retries; its rows have no event log, so `claim_jobs` / `finish_jobs` / `reap_jobs`
write the row alone:

    pending ──claim_jobs──► running ──finish_jobs──► succeeded | failed
       ▲  (available_at ≤ now)  │          └──────► pending (a retry, later available_at)
       └───────reap_jobs────────┘   (lease expired)
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Float, Table, bindparam, func, select, update

from .. import metrics
from ..domain import RunStatus
from . import events
from .db import Row, Tx, utcnow
from .events import Fence
from .schema import ACTIVE, orgs, runs

__all__ = ["claim", "claim_jobs", "decide", "finish_jobs", "reap_expired", "reap_jobs", "release", "renew_many"]


def _clock(tx: Tx, now: float | None) -> Any:
    # The database clock unless a test moves time (epoch seconds) instead of sleeping past leases.
    return tx.store.db_now() if now is None else now


async def claim(
    tx: Tx,
    worker_id: str,
    *,
    limit: int,
    lease_seconds: float,
    max_per_org: int | None = None,
    now: float | None = None,
) -> list[tuple[Row, Fence]]:
    """Take up to `limit` pending runs, oldest first; returns each run row with its fence.

    `max_per_org`: an org never has more runs `running` than this; its other runs wait, in order,
    and runs of other orgs go past them."""
    began = time.perf_counter()
    clock = tx.store.db_now()
    if max_per_org is None:
        rows = (await tx.conn.execute(_candidates(clock), {"limit": limit})).all()
    else:
        rows = await _within_org_limits(tx, clock, limit, max_per_org)
    if not rows:
        metrics.CLAIM_SECONDS.observe(time.perf_counter() - began)
        return []
    # One reading of the database clock for the batch, taken with the rows it leases.
    lease_until = float(rows[0].db_now if now is None else now) + lease_seconds
    started = utcnow()
    appends, claimed = [], []
    for row in rows:
        attempt = row.attempt + 1
        changes = {
            "attempt": attempt,
            "worker_id": worker_id,
            "lease_until": lease_until,
            "started_at": row.started_at or started,
        }
        # The candidates query locked the rows: the append needs no second read of them.
        appends.append(
            events.Append(
                row.id,
                [("run.started", {"attempt": attempt, "worker_id": worker_id})],
                to=RunStatus.RUNNING,
                changes=changes,
                locked=row,
            )
        )
        claimed.append(Row(row._mapping, **changes, status=RunStatus.RUNNING.value, last_seq=row.last_seq + 1))
    await events.append_many(tx, appends)
    metrics.CLAIM_SECONDS.observe(time.perf_counter() - began)
    return [(r, Fence(worker_id, r.attempt)) for r in claimed]


_CANDIDATES: dict[str, Any] = {}


def _candidates(clock: Any) -> Any:
    """The claimable runs with the database clock, locked; built once per dialect's clock."""
    key = str(clock)
    stmt = _CANDIDATES.get(key)
    if stmt is None:
        earlier = runs.alias("earlier")
        # A run waits for the older active runs of its thread (multitask=enqueue keeps them in order).
        blocked = (
            select(earlier.c.id)
            .where(earlier.c.thread_id == runs.c.thread_id, earlier.c.id < runs.c.id, earlier.c.status.in_(ACTIVE))
            .exists()
        )
        stmt = _CANDIDATES[key] = _locked_candidates(
            runs, clock, runs.c.status == RunStatus.PENDING.value, ~blocked, order_by=(runs.c.status, runs.c.id)
        )
    return stmt


async def _within_org_limits(tx: Tx, clock: Any, limit: int, max_per_org: int) -> list[Any]:
    """The claimable runs of orgs below `max_per_org` running runs, at most that many per org.

    The orgs' rows are locked (in id order) before their running runs are counted again: two
    claimers on PostgreSQL then count one after the other, never both below the limit at once."""
    key = f"per-org:{clock}"
    stmt = _CANDIDATES.get(key)
    if stmt is None:
        stmt = _CANDIDATES[key] = _candidates(clock).where(_running_in_org(runs.c.org_id) < bindparam("per_org"))
    rows = (await tx.conn.execute(stmt, {"limit": limit, "per_org": max_per_org})).all()
    if not rows:
        return []
    org_ids = sorted({r.org_id for r in rows})
    await tx.conn.execute(select(orgs.c.id).where(orgs.c.id.in_(org_ids)).order_by(orgs.c.id).with_for_update())
    running = dict(
        (
            await tx.conn.execute(
                select(runs.c.org_id, func.count())
                .where(runs.c.org_id.in_(org_ids), runs.c.status == RunStatus.RUNNING.value)
                .group_by(runs.c.org_id)
            )
        ).all()
    )
    kept = []
    for row in rows:
        if running.get(row.org_id, 0) < max_per_org:
            running[row.org_id] = running.get(row.org_id, 0) + 1
            kept.append(row)
    return kept


def _running_in_org(org_id: Any) -> Any:
    other = runs.alias("in_org")
    return (
        select(func.count())
        .select_from(other)
        .where(other.c.org_id == org_id, other.c.status == RunStatus.RUNNING.value)
        .scalar_subquery()
    )


def _locked_candidates(table: Table, clock: Any, *where: Any, order_by: tuple[Any, ...]) -> Any:
    """Up to `:limit` rows of `table` matching `where` in claim order, with the database clock,
    locked. SKIP LOCKED lets concurrent claimers pass over rows another claim holds instead of
    queueing behind it; SQLite has one writer, so it simply runs this serially."""
    return (
        select(table, clock.label("db_now"))
        .where(*where)
        .order_by(*order_by)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


async def renew_many(
    tx: Tx, fences: dict[str, Fence], *, lease_seconds: float, now: float | None = None
) -> dict[str, bool]:
    """Renew many leases in one statement; returns {run_id: cancel requested} for those still held.

    A run missing from the answer is no longer this worker's (its lease was lost).
    """
    if not fences:
        return {}
    worker_ids = {f.worker_id for f in fences.values()}
    assert len(worker_ids) == 1, "one worker renews its own runs"
    # Rows locked in id order, as every many-run write locks them (`events.append_many`): two
    # such transactions on PostgreSQL cannot then wait on each other (a deadlock).
    held = (
        select(runs.c.id)
        .where(
            runs.c.id.in_(sorted(fences)),
            runs.c.worker_id == worker_ids.pop(),
            runs.c.status == RunStatus.RUNNING.value,
        )
        .order_by(runs.c.id)
        .with_for_update()
    )
    result = await tx.conn.execute(
        update(runs)
        .where(runs.c.id.in_(held.scalar_subquery()))
        .values(lease_until=_clock(tx, now) + lease_seconds)
        .returning(runs.c.id, runs.c.attempt, runs.c.cancel_requested)
    )
    return {r.id: bool(r.cancel_requested) for r in result if r.attempt == fences[r.id].attempt}


async def release(tx: Tx, run_id: str, fence: Fence, *, reason: str) -> None:
    """Give a running run back to the queue at once (graceful shutdown)."""
    await events.append(
        tx,
        run_id,
        [("run.requeued", {"reason": reason, "attempt": fence.attempt})],
        to=RunStatus.PENDING,
        changes={"worker_id": None, "lease_until": None},
        fence=fence,
    )
    tx.publish_after_commit("queue", run_id)


def decide(lost_leases: int, max_attempts: int) -> RunStatus:
    """What an expired lease turns into: another try, or failure once attempts are spent.

    Only lost leases count: resuming after a pause for a human claims the run again too,
    and that must not use up its attempts.
    """
    return RunStatus.FAILED if lost_leases >= max_attempts else RunStatus.PENDING


async def reap_expired(
    tx: Tx, *, max_attempts: int, all_running: bool = False, now: float | None = None
) -> tuple[int, int]:
    """Requeue (or fail) running runs whose lease expired; returns (requeued, failed).

    `all_running` treats every running run as expired: an embedded server at startup knows
    no other process holds SQLite runs.
    """
    query = select(runs.c.id, runs.c.attempt, runs.c.lost_leases, runs.c.usage, runs.c.model).where(
        runs.c.status == RunStatus.RUNNING.value
    )
    if not all_running:
        query = query.where(runs.c.lease_until < _clock(tx, now))
    requeued = failed = 0
    for row in (await tx.conn.execute(query.with_for_update(skip_locked=True))).all():
        lost = row.lost_leases + 1
        if decide(lost, max_attempts) is RunStatus.FAILED:
            error = f"run exceeded max_attempts ({max_attempts}): its worker stopped renewing the lease {lost} times"
            await events.append(
                tx,
                row.id,
                [("run.failed", {"error": error, "usage": row.usage, "stop_reason": "max_attempts"})],
                to=RunStatus.FAILED,
                changes={
                    "error": error,
                    "stop_reason": "max_attempts",
                    "worker_id": None,
                    "lease_until": None,
                    "lost_leases": lost,
                },
            )
            metrics.run_finished(RunStatus.FAILED.value, row.model)
            failed += 1
        else:
            await events.append(
                tx,
                row.id,
                [("run.requeued", {"reason": "lease expired", "attempt": row.attempt})],
                to=RunStatus.PENDING,
                changes={"worker_id": None, "lease_until": None, "lost_leases": lost},
            )
            tx.publish_after_commit("queue", row.id)
            requeued += 1
    return requeued, failed


_JOB_CANDIDATES: dict[tuple[str, str], Any] = {}


async def claim_jobs(tx: Tx, table: Table, worker_id: str, *, limit: int, lease_seconds: float) -> list[Row]:
    """Lease up to `limit` due pending jobs of `table`, soonest due first; returns them as leased
    (`attempt` counts this one). `finish_jobs` must name the same `(worker_id, attempt)`."""
    clock = tx.store.db_now()
    key = (table.name, str(clock))
    stmt = _JOB_CANDIDATES.get(key)
    if stmt is None:
        due = (table.c.status == "pending", table.c.available_at <= clock)
        stmt = _JOB_CANDIDATES[key] = _locked_candidates(
            table, clock, *due, order_by=(table.c.status, table.c.available_at)
        )
    rows = (await tx.conn.execute(stmt, {"limit": limit})).all()
    if not rows:
        return []
    lease_until = float(rows[0].db_now) + lease_seconds
    await tx.conn.execute(
        update(table)
        .where(table.c.id == bindparam("_id"))
        .values(status="running", worker_id=worker_id, lease_until=lease_until, attempt=bindparam("_attempt")),
        [{"_id": r.id, "_attempt": r.attempt + 1} for r in rows],
    )
    return [
        Row(r._mapping, status="running", worker_id=worker_id, lease_until=lease_until, attempt=r.attempt + 1)
        for r in rows
    ]


async def finish_jobs(tx: Tx, table: Table, worker_id: str, results: list[dict[str, Any]]) -> set[str]:
    """Write what became of leased jobs, each fenced by this worker and the job's `attempt`.

    Each result is `{id, attempt, status, retry_in?, **columns}`: `status` `pending` with
    `retry_in` seconds makes it due again that long from now (database clock). Returns the ids
    written; a job missing from the answer was reaped and leased again meanwhile (its new holder
    decides), so this attempt's outcome is dropped.
    """
    if not results:
        return set()
    # One locking read checks every fence; then one UPDATE per set of columns for the jobs held.
    held_rows = await tx.conn.execute(
        select(table.c.id, table.c.attempt)
        .where(table.c.id.in_(sorted(r["id"] for r in results)), table.c.worker_id == worker_id)
        .where(table.c.status == "running")
        .order_by(table.c.id)
        .with_for_update()
    )
    held = {(r.id, r.attempt) for r in held_rows}
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for result in results:
        if (result["id"], result["attempt"]) in held:
            columns = {k: v for k, v in result.items() if k not in ("id", "attempt")}
            by_columns.setdefault(tuple(sorted(columns)), []).append({"_id": result["id"], **columns})
    for columns, params in by_columns.items():
        await tx.conn.execute(_finish_statement(tx, table, columns), params)
    return {p["_id"] for params in by_columns.values() for p in params}


_FINISH: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def _finish_statement(tx: Tx, table: Table, columns: tuple[str, ...]) -> Any:
    """`UPDATE <table> SET <columns>, lease cleared WHERE id = :_id`, built once per column set;
    `retry_in` sets `available_at` to the database clock plus that many seconds."""
    clock = tx.store.db_now()
    key = (table.name, str(clock), columns)
    stmt = _FINISH.get(key)
    if stmt is None:
        values: dict[str, Any] = {c: bindparam(c, type_=table.c[c].type) for c in columns if c != "retry_in"}
        if "retry_in" in columns:
            values["available_at"] = clock + bindparam("retry_in", type_=Float)
        stmt = _FINISH[key] = (
            update(table).where(table.c.id == bindparam("_id")).values(**values, worker_id=None, lease_until=None)
        )
    return stmt


async def reap_jobs(tx: Tx, table: Table, *, all_running: bool = False, now: float | None = None) -> int:
    """Give jobs whose lease expired (their worker died or stalled) back to the queue, due at once.
    `all_running`: every running job, as `reap_expired` has it."""
    expired = table.c.status == "running"
    if not all_running:
        expired = expired & (table.c.lease_until < _clock(tx, now))
    result = await tx.conn.execute(
        update(table).where(expired).values(status="pending", worker_id=None, lease_until=None, available_at=0.0)
    )
    return result.rowcount or 0
