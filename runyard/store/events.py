"""The event log and the state machine: `append` is the only writer of both.

Appends to one run serialise on the run's row (locked until commit); the status change, if
any, is written in the same transaction as the event that announces it. Seqs are 1, 2, 3 …
with no gap and no duplicate, and seq order is commit order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Text, bindparam, cast, insert, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import ClauseElement

from .. import metrics
from ..config import get_settings
from ..domain import RunStatus
from . import outbox, usage
from .db import Conn, Tx, utcnow
from .errors import InvalidTransition, LeaseLost, NotFound
from .schema import events, runs

__all__ = [
    "TRANSITIONS",
    "Append",
    "Envelope",
    "Fence",
    "NewEvent",
    "append",
    "append_many",
    "check_transition",
    "dumps",
    "iso",
    "lock",
    "read",
    "refuse",
    "require_status",
]

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
_STOP_REASON = {S.COMPLETED: "completed", S.FAILED: "error", S.CANCELLED: "cancelled"}
"""A terminal run's `stop_reason` unless the append names another (`budget_exceeded`, `max_attempts`, …)."""

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


@dataclass(frozen=True)
class Append:
    """One run's part of an `append_many`: its new events, and the status and columns they change."""

    run_id: str
    new: Sequence[NewEvent]
    to: RunStatus | None = None
    changes: dict[str, Any] | None = None
    fence: Fence | None = None
    locked: Any = None
    """The run's row as this transaction already locked it (claimed FOR UPDATE, or just inserted):
    its `status`, `last_seq`, `attempt`, `worker_id` and `org_id`. None: `append_many` locks it."""


async def append(
    tx: Tx,
    run_id: str,
    new: Sequence[NewEvent],
    *,
    to: RunStatus | None = None,
    changes: dict[str, Any] | None = None,
    fence: Fence | None = None,
    org_id: str | None = None,
    locked: Any = None,
) -> list[dict[str, Any]]:
    """Append events to a run's log, optionally moving its status, in the caller's transaction.

    `fence` makes the write conditional on the caller still holding the run (else `LeaseLost`);
    `org_id` scopes the lookup to a tenant (else `NotFound`). Returns the new envelopes, which
    are published on `run:<id>` after commit.
    """
    [result] = await append_many(tx, [Append(run_id, new, to, changes, fence, locked)], org_id=org_id)
    assert not isinstance(result, LeaseLost)
    return result


async def lock(tx: Tx, run_id: str) -> Any:
    """The run's row (what `append` checks, and its follow-up queue), locked until commit:
    for a caller that decides on it first, then passes it to `append` as `locked`."""
    row = (await tx.conn.execute(_LOCK_WITH_PENDING, {"run_id": run_id})).one_or_none()
    if row is None:
        raise NotFound.of("run", run_id)
    return row


async def append_many(
    tx: Tx, appends: Sequence[Append], *, org_id: str | None = None, lost_ok: bool = False
) -> list[list[dict[str, Any]] | LeaseLost]:
    """`append` for many runs in one go: one locking read, one insert and one update per set of
    changed columns, whatever the number of runs (a worker flushes all its runs' deltas this way).

    With `lost_ok`, a run whose fence no longer holds writes nothing and gets its `LeaseLost` in
    the answer instead of failing the others.
    """
    assert len({a.run_id for a in appends}) == len(appends), "one Append per run"
    began = time.perf_counter()
    rows = {a.run_id: a.locked for a in appends if a.locked is not None}
    missing = sorted({a.run_id for a in appends} - rows.keys())
    if missing:
        # Sorted: concurrent transactions lock rows in the same order, so they cannot deadlock.
        stmt = _LOCK_ONE if len(missing) == 1 else _LOCK_MANY
        params = {"run_id": missing[0]} if len(missing) == 1 else {"run_ids": missing}
        rows.update((r.id, r) for r in await tx.conn.execute(stmt, params))
    now = utcnow()
    created_at = iso(now)
    results: list[list[dict[str, Any]] | LeaseLost] = []
    inserts: list[tuple[Any, ...]] = []
    insert_sql, stamp_of = _raw_insert(tx.conn.dialect)
    stamp = stamp_of(now) if stamp_of is not None else now
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    next_seq: dict[str, int] = {}
    ended: list[tuple[str, str | None]] = []
    announced: list[tuple[str, Envelope]] = []
    for a in appends:
        row = rows.get(a.run_id)
        if row is None or (org_id is not None and row.org_id != org_id):
            raise NotFound.of("run", a.run_id)
        current = RunStatus(row.status)
        fence = a.fence
        if fence is not None and (
            current is not S.RUNNING or row.attempt != fence.attempt or row.worker_id != fence.worker_id
        ):
            lost = LeaseLost(f"run {a.run_id}: attempt {fence.attempt} of {fence.worker_id} no longer holds it")
            if not lost_ok:
                raise lost
            results.append(lost)
            continue
        values = dict(a.changes or {})
        if a.to is not None:
            check_transition(a.run_id, current, a.to)
            values["status"] = a.to.value
            if a.to in _STAMP:
                values[_STAMP[a.to]] = now
                values.setdefault("stop_reason", _STOP_REASON[a.to])
        seq = next_seq[a.run_id] if a.run_id in next_seq else int(row.last_seq)
        envelopes = []
        for i, (type_, data) in enumerate(a.new, start=1):
            encoded = dumps(data)
            envelopes.append(Envelope.of(seq + i, a.run_id, type_, data, encoded, created_at))
            inserts.append((a.run_id, seq + i, type_, encoded, stamp))
        if envelopes:
            next_seq[a.run_id] = values["last_seq"] = envelopes[-1]["seq"]
            tx.publish_after_commit(f"run:{a.run_id}", envelopes)
            announced += [(row.org_id, e) for e in envelopes if e["type"] in _ANNOUNCED]
        if any(isinstance(v, ClauseElement) for v in values.values()):
            # A value computed by the database (its clock): a statement of its own.
            await tx.conn.execute(update(runs).where(runs.c.id == a.run_id).values(**values))
        elif values:
            updates.setdefault(tuple(sorted(values)), []).append({"_run_id": a.run_id, **values})
        if a.to is not None and a.to in _STAMP:
            ended.append((a.run_id, getattr(row, "thread_id", None)))
        results.append(envelopes)
    if inserts:
        await tx.conn.exec_driver_sql(insert_sql, inserts)
    for columns, params in updates.items():
        await tx.conn.execute(_update(columns), params)
    # After the updates: a terminal event's delivery carries the run as this transaction left it.
    await outbox.record(tx, announced)
    await usage.record(tx, [run_id for run_id, _ in ended], get_settings().credits_per_usd)
    for run_id, thread_id in ended:
        # A run's end may unblock the next run queued on its thread: wake the workers only then
        # (a wake for nothing costs every worker an empty claim).
        if thread_id is None or (await tx.conn.execute(_QUEUED_ON_THREAD, {"thread_id": thread_id})).first():
            tx.publish_after_commit("queue", run_id)
    _APPEND_SECONDS.observe(time.perf_counter() - began)
    if inserts:
        _APPENDED.inc(len(inserts))
    return results


_ANNOUNCED = outbox.ANNOUNCED
_APPEND_SECONDS = metrics.EVENT_APPEND_SECONDS
_APPENDED = metrics.EVENTS_APPENDED
_LOCKED = (
    runs.c.id,
    runs.c.status,
    runs.c.last_seq,
    runs.c.attempt,
    runs.c.worker_id,
    runs.c.org_id,
    runs.c.thread_id,
)
# Built once: SQLAlchemy caches a statement's compiled form by its cache key, and building and
# keying a statement per call was a good part of each append's cost.
_LOCK_ONE = select(*_LOCKED).where(runs.c.id == bindparam("run_id")).with_for_update()
_LOCK_WITH_PENDING = _LOCK_ONE.add_columns(runs.c.pending_messages)
_LOCK_MANY = (
    select(*_LOCKED).where(runs.c.id.in_(bindparam("run_ids", expanding=True))).order_by(runs.c.id).with_for_update()
)
_INSERTS: dict[str, Any] = {}


def _insert(dialect: str) -> Any:
    """The events INSERT, its `data` given as JSON text already encoded (once, for the log and the envelope)."""
    stmt = _INSERTS.get(dialect)
    if stmt is None:
        data: Any = bindparam("data", type_=Text)
        if dialect == "postgresql":
            data = cast(data, JSONB)
        stmt = _INSERTS[dialect] = insert(events).values(
            run_id=bindparam("run_id"),
            seq=bindparam("seq"),
            type=bindparam("type"),
            data=data,
            created_at=bindparam("created_at"),
        )
    return stmt


_RAW_INSERTS: dict[str, tuple[str, Any]] = {}


def _raw_insert(dialect: Any) -> tuple[str, Any]:
    """`_insert` compiled once for `dialect`, and the bind processor of its one typed column.

    Run on the driver with rows as tuples: SQLAlchemy's per-row parameter processing cost four
    times the driver's executemany itself, and every row of a batch has the same timestamp."""
    raw = _RAW_INSERTS.get(dialect.name)
    if raw is None:
        compiled = _insert(dialect.name).compile(dialect=dialect)
        assert compiled.positiontup == ["run_id", "seq", "type", "data", "created_at"], compiled.positiontup
        raw = _RAW_INSERTS[dialect.name] = (str(compiled), events.c.created_at.type.bind_processor(dialect))
    return raw


dumps = json.JSONEncoder(separators=(",", ":")).encode
"""Compact JSON: what the log stores and every SSE client is sent."""


class Envelope(dict[str, Any]):
    """An event as readers get it, `{seq, run_id, type, data, created_at}`, with its JSON
    rendered once when appended: the SSE stream of every client sends `json` as is."""

    json: str

    @classmethod
    def of(cls, seq: int, run_id: str, type_: str, data: Any, encoded: str, created_at: str) -> Envelope:
        envelope = cls(seq=seq, run_id=run_id, type=type_, data=data, created_at=created_at)
        # Ids and event types are plain ASCII identifiers: quoting them needs no escaping.
        envelope.json = (
            f'{{"seq":{seq},"run_id":"{run_id}","type":"{type_}","data":{encoded},"created_at":"{created_at}"}}'
        )
        return envelope


_QUEUED_ON_THREAD = (
    select(runs.c.id)
    .where(runs.c.thread_id == bindparam("thread_id"), runs.c.status == RunStatus.PENDING.value)
    .limit(1)
)
_UPDATES: dict[tuple[str, ...], Any] = {}


def _update(columns: tuple[str, ...]) -> Any:
    """`UPDATE runs SET <columns> WHERE id = :_run_id`, one statement per set of columns, built once."""
    stmt = _UPDATES.get(columns)
    if stmt is None:
        values = {c: bindparam(c, type_=runs.c[c].type) for c in columns}
        stmt = _UPDATES[columns] = update(runs).where(runs.c.id == bindparam("_run_id")).values(values)
    return stmt


_READ = (
    select(events.c.seq, events.c.type, events.c.data, events.c.created_at)
    .where(
        events.c.run_id == bindparam("run_id"),
        events.c.seq > bindparam("after_seq"),
        select(runs.c.id).where(runs.c.id == bindparam("run_id"), runs.c.org_id == bindparam("org_id")).exists(),
    )
    .order_by(events.c.seq)
    .limit(bindparam("limit"))
)


async def read(conn: Conn, org_id: str, run_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """Committed events after `after_seq`, in seq order (none for a run of another org)."""
    rows = await conn.execute(_READ, {"run_id": run_id, "org_id": org_id, "after_seq": after_seq, "limit": limit})
    return [
        {"seq": r.seq, "run_id": run_id, "type": r.type, "data": _json(r.data), "created_at": iso(r.created_at)}
        for r in rows
    ]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
