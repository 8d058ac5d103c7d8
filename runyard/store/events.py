"""The event log and the state machine: `append` is the only writer of both.

Appends to one run serialise on the run's row (locked until commit); the status change, if
any, is written in the same transaction as the event that announces it. Seqs are 1, 2, 3 …
with no gap and no duplicate, and seq order is commit order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import insert, select, update

from ..domain import RunStatus
from .db import Conn, Tx, utcnow
from .errors import InvalidTransition, LeaseLost, NotFound
from .schema import events, runs

__all__ = ["TRANSITIONS", "Fence", "NewEvent", "append", "check_transition", "iso", "read", "refuse", "require_status"]

S = RunStatus
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    # RUNNING → PENDING: a lease expired or a worker released the run at shutdown.
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.PENDING, S.WAITING}),
    S.WAITING: frozenset({S.PENDING, S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
_STAMP = {S.COMPLETED: "completed_at", S.FAILED: "failed_at", S.CANCELLED: "cancelled_at"}

NewEvent = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Fence:
    """Who may write for a running run: the worker holding the lease, at this attempt."""

    worker_id: str
    attempt: int


def check_transition(run_id: str, current: RunStatus, to: RunStatus) -> None:
    if to not in TRANSITIONS[current]:
        raise InvalidTransition(f"run {run_id} is {current.value}: it cannot become {to.value}")


def require_status(run: Mapping[str, Any], allowed: Collection[RunStatus], refusal: str) -> RunStatus:
    """Every action that needs the run in some status checks it here: a 409 that says both."""
    status = RunStatus(run["status"])
    if status not in allowed:
        refuse(run, refusal)
    return status


def refuse(run: Mapping[str, Any], refusal: str) -> NoReturn:
    """`require_status` for an action no status allows right now (e.g. nothing is open to answer)."""
    raise InvalidTransition(f"run {run['id']} is {run['status']}: {refusal}")


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def append(
    tx: Tx,
    run_id: str,
    new: Sequence[NewEvent],
    *,
    to: RunStatus | None = None,
    changes: dict[str, Any] | None = None,
    fence: Fence | None = None,
    org_id: str | None = None,
) -> list[dict[str, Any]]:
    """Append events to a run's log, optionally moving its status, in the caller's transaction.

    `fence` makes the write conditional on the caller still holding the run (else `LeaseLost`);
    `org_id` scopes the lookup to a tenant (else `NotFound`). Returns the new envelopes, which
    are published on `run:<id>` after commit.
    """
    query = select(runs.c.status, runs.c.last_seq, runs.c.attempt, runs.c.worker_id, runs.c.org_id).where(
        runs.c.id == run_id
    )
    row = (await tx.conn.execute(query.with_for_update())).one_or_none()
    if row is None or (org_id is not None and row.org_id != org_id):
        raise NotFound.of("run", run_id)
    current = RunStatus(row.status)
    if fence is not None and (
        current is not S.RUNNING or row.attempt != fence.attempt or row.worker_id != fence.worker_id
    ):
        raise LeaseLost(f"run {run_id}: attempt {fence.attempt} of {fence.worker_id} no longer holds it")
    now = utcnow()
    values = dict(changes or {})
    if to is not None:
        check_transition(run_id, current, to)
        values["status"] = to.value
        if to in _STAMP:
            values[_STAMP[to]] = now
    created_at = iso(now)
    envelopes = [
        {"seq": row.last_seq + i, "run_id": run_id, "type": type_, "data": data, "created_at": created_at}
        for i, (type_, data) in enumerate(new, start=1)
    ]
    if envelopes:
        await tx.conn.execute(
            insert(events),
            [
                {"run_id": run_id, "seq": e["seq"], "type": e["type"], "data": e["data"], "created_at": now}
                for e in envelopes
            ],
        )
        values["last_seq"] = envelopes[-1]["seq"]
    if values:
        await tx.conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
    if envelopes:
        tx.publish_after_commit(f"run:{run_id}", envelopes)
    if to is not None and to in _STAMP:
        # A run's end may unblock the next run queued on its thread.
        tx.publish_after_commit("queue", run_id)
    return envelopes


async def read(conn: Conn, org_id: str, run_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """Committed events after `after_seq`, in seq order (none for a run of another org)."""
    of_org = select(runs.c.id).where(runs.c.id == run_id, runs.c.org_id == org_id).exists()
    rows = await conn.execute(
        select(events.c.seq, events.c.type, events.c.data, events.c.created_at)
        .where(events.c.run_id == run_id, events.c.seq > after_seq, of_org)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [
        {"seq": r.seq, "run_id": run_id, "type": r.type, "data": _json(r.data), "created_at": iso(r.created_at)}
        for r in rows
    ]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
