"""The usage report: tokens, cost, credits, runs by status and durations, summed in SQL.

Every figure comes from the runs' own `usage` totals (what their `usage` events added up to),
never from the event logs. A run that ends adds itself to `usage_daily` in the transaction of its
terminal event (`record`, called by `events.append_many`), under the UTC day it was created on.
A report reads the whole days of its range there, and scans the runs table only for the partial
days at its edges and for the runs still in flight (few, through the claim index). Percentiles
are nearest-rank: exact over scanned runs, within 2.5 % over whole days (a log-scale histogram).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..domain import ACTIVE_STATUSES, RunStatus
from .db import Conn, Tx
from .ids import first_id_at
from .schema import runs, usage_daily

__all__ = ["GROUP_KEYS", "bucket_of", "contributions", "record", "report"]

_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_COUNTS = ("requests", "tool_calls")
_SUMS = (*_COUNTS, *_TOKENS)
_STATUSES = tuple(s.value for s in RunStatus)
_DIMS = ("org_id", "day", "agent_id", "user_id", "model", "route_id", "status", "bucket")

GROUP_KEYS = {"agent": "agent_id", "user": "user_id", "model": "model", "route": "route_id", "day": "day"}
"""The `usage_daily` column each `group_by` reads (`route`: null for runs without a route)."""

_BASE = 1.05
"""Histogram buckets grow by 5 %: a bucket's middle is within 2.5 % of every duration in it."""


def bucket_of(duration_ms: float | None) -> int:
    """The histogram bucket of a duration: 0 under 1 ms, then one per 5 %; -1 for none."""
    if duration_ms is None:
        return -1
    return 0 if duration_ms < 1 else int(math.log(duration_ms) / math.log(_BASE)) + 1


def _bucket_ms(bucket: int) -> float:
    return 0.0 if bucket == 0 else _BASE ** (bucket - 1) * math.sqrt(_BASE)


_RUN_COLUMNS = (
    runs.c.id,
    runs.c.org_id,
    runs.c.created_at,
    runs.c.agent_id,
    runs.c.user_id,
    runs.c.model,
    runs.c.route_id,
    runs.c.status,
    runs.c.usage,
    runs.c.started_at,
    runs.c.completed_at,
    runs.c.failed_at,
    runs.c.cancelled_at,
)


@dataclass
class _Run:
    """What one run adds to a report (or to `usage_daily`)."""

    dims: dict[str, Any]
    sums: dict[str, int]
    cost: float
    unpriced: int
    credits: int
    duration_ms: float | None


def _of(row: Any, credits_per_usd: float) -> _Run:
    usage = row.usage or {}
    cost = usage.get("cost_usd")
    flag = usage.get("cost_known")
    unknown = flag is False or (flag is None and cost is None and (usage.get("requests") or 0) > 0)
    end = row.completed_at or row.failed_at or row.cancelled_at
    duration = None
    if end is not None and row.started_at is not None and RunStatus(row.status).is_terminal:
        duration = (end - row.started_at).total_seconds() * 1000
    priced = 0.0 if unknown else float(cost or 0.0)
    return _Run(
        dims={
            "org_id": row.org_id,
            "day": row.created_at.astimezone(UTC).strftime("%Y-%m-%d"),
            "agent_id": row.agent_id,
            "user_id": row.user_id or "",
            "model": row.model,
            "route_id": row.route_id or "",
            "status": row.status,
            "bucket": bucket_of(duration),
        },
        sums={f: int(usage.get(f) or 0) for f in _SUMS},
        cost=priced,
        unpriced=int(unknown),
        # As `runs.usage_view`: float noise must not cost a whole credit.
        credits=0 if unknown else math.ceil(round(priced * credits_per_usd, 9)),
        duration_ms=duration,
    )


def contributions(rows: Iterable[Any], credits_per_usd: float) -> list[dict[str, Any]]:
    """`usage_daily` rows adding up `rows` (ended runs, with the `_RUN_COLUMNS`)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        run = _of(row, credits_per_usd)
        key = tuple(run.dims[d] for d in _DIMS)
        entry = merged.get(key)
        if entry is None:
            entry = merged[key] = {**run.dims, "runs": 0, **dict.fromkeys(_SUMS, 0), "cost_usd": 0.0,
                                   "unpriced_runs": 0, "credits_used": 0}  # fmt: skip
        entry["runs"] += 1
        for f in _SUMS:
            entry[f] += run.sums[f]
        entry["cost_usd"] += run.cost
        entry["unpriced_runs"] += run.unpriced
        entry["credits_used"] += run.credits
    return list(merged.values())


_ADDED = ("runs", *_SUMS, "cost_usd", "unpriced_runs", "credits_used")


def upsert(dialect: str) -> Any:
    """The statement that adds `contributions` to `usage_daily` (one per dialect)."""
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    stmt = insert(usage_daily)
    return stmt.on_conflict_do_update(
        index_elements=list(_DIMS), set_={c: usage_daily.c[c] + stmt.excluded[c] for c in _ADDED}
    )


async def record(tx: Tx, run_ids: Sequence[str], credits_per_usd: float) -> None:
    """Add the runs that just ended to `usage_daily` (in their terminal event's transaction)."""
    if not run_ids:
        return
    rows = await tx.conn.execute(select(*_RUN_COLUMNS).where(runs.c.id.in_(list(run_ids))))
    values = contributions(rows, credits_per_usd)
    if values:
        await tx.conn.execute(upsert(tx.conn.dialect.name), values)


@dataclass
class _Group:
    runs: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    sums: Counter[str] = field(default_factory=Counter)
    cost: float = 0.0
    priced: int = 0
    unpriced: int = 0
    credits: int = 0
    durations: list[tuple[float, int]] = field(default_factory=list)

    def add(self, status: str, runs_: int, sums: dict[str, int], cost: float, unpriced: int, credits: int) -> None:
        self.runs += runs_
        self.by_status[status] += runs_
        self.sums.update(sums)
        self.cost += cost
        self.unpriced += unpriced
        self.priced += runs_ - unpriced
        self.credits += credits

    def view(self, key: Any) -> dict[str, Any]:
        tokens = {f: int(self.sums.get(f, 0)) for f in _SUMS}
        p50, p95 = _nearest_rank(self.durations, 50), _nearest_rank(self.durations, 95)
        return {
            "key": key,
            "runs": self.runs,
            "runs_by_status": {s: self.by_status.get(s, 0) for s in _STATUSES},
            **tokens,
            "total_tokens": tokens["input_tokens"] + tokens["output_tokens"],
            "cost_usd": self.cost if self.priced else None,
            "cost_known": not self.unpriced,
            "unpriced_runs": self.unpriced,
            "credits_used": self.credits if self.priced else None,
            "cache_hit_rate": tokens["cache_read_tokens"] / tokens["input_tokens"] if tokens["input_tokens"] else None,
            "duration_ms_p50": int(p50) if p50 is not None else None,  # truncated, as a run's duration_ms
            "duration_ms_p95": int(p95) if p95 is not None else None,
        }


def _nearest_rank(durations: list[tuple[float, int]], pct: int) -> float | None:
    total = sum(n for _, n in durations)
    if not total:
        return None
    rank, seen = (total * pct + 99) // 100, 0
    for value, n in sorted(durations):
        seen += n
        if seen >= rank:
            return value
    return None


def _day_start(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _runs_between(start: datetime, end: datetime) -> list[Any]:
    # Ids are minted just before created_at: the id bounds select the index range, the
    # created_at bounds make them exact.
    return [
        runs.c.id >= first_id_at("run", start - timedelta(milliseconds=1)),
        runs.c.id < first_id_at("run", end + timedelta(milliseconds=1)),
        runs.c.created_at >= start,
        runs.c.created_at < end,
    ]


async def report(
    conn: Conn,
    org_id: str,
    *,
    start: datetime,
    end: datetime,
    group_by: str | None = None,
    agent_id: str | None = None,
    user_id: str | None = None,
    limit: int = 100,
    credits_per_usd: float = 1000.0,
) -> dict[str, Any]:
    """The org's usage by runs created in `[start, end)`, in total and per `group_by`."""
    first_day = _day_start(start) if start == _day_start(start) else _day_start(start) + timedelta(days=1)
    last_day = _day_start(end)  # whole days: [first_day, last_day)
    filters = [runs.c.org_id == org_id]
    if agent_id is not None:
        filters.append(runs.c.agent_id == agent_id)
    if user_id is not None:
        filters.append(runs.c.user_id == user_id)
    scans = []
    if first_day < last_day:
        active = runs.c.status.in_([s.value for s in ACTIVE_STATUSES])
        scans += [
            _runs_between(start, first_day),
            _runs_between(last_day, end),
            [*_runs_between(first_day, last_day), active],
        ]
    else:
        scans.append(_runs_between(start, end))
    totals, groups = _Group(), dict[Any, _Group]()
    dim = GROUP_KEYS.get(group_by) if group_by is not None else None

    def group_of(value: Any) -> _Group:
        key = (value or None) if dim in ("user_id", "route_id") else value
        if key not in groups:
            groups[key] = _Group()
        return groups[key]

    for where in scans:
        for row in await conn.execute(select(*_RUN_COLUMNS).where(*filters, *where)):
            run = _of(row, credits_per_usd)
            targets = [totals] + ([group_of(run.dims[dim])] if dim else [])
            for g in targets:
                g.add(row.status, 1, run.sums, run.cost, run.unpriced, run.credits)
                if run.duration_ms is not None:
                    g.durations.append((run.duration_ms, 1))
    if first_day < last_day:
        await _whole_days(conn, org_id, first_day, last_day, agent_id, user_id, dim, totals, group_of)
    data: list[dict[str, Any]] = []
    has_more = False
    if group_by is not None:
        # Days oldest first; other groups by runs, most first (then by key, null last).
        def rank(item: tuple[Any, _Group]) -> tuple[Any, ...]:
            key, g = item
            return (key is None, key or "") if group_by == "day" else (-g.runs, key is None, key or "")

        order = sorted(groups.items(), key=rank)
        has_more = len(order) > limit
        data = [g.view(key) for key, g in order[:limit]]
    return {
        "object": "usage_report",
        "start": start,
        "end": end,
        "group_by": group_by,
        "totals": totals.view(None),
        "data": data,
        "has_more": has_more,
    }


async def _whole_days(
    conn: Conn,
    org_id: str,
    first_day: datetime,
    last_day: datetime,
    agent_id: str | None,
    user_id: str | None,
    dim: str | None,
    totals: _Group,
    group_of: Any,
) -> None:
    t = usage_daily.c
    keys = [t.status, t.bucket] + ([t[dim]] if dim else [])
    where = [t.org_id == org_id, t.day >= first_day.strftime("%Y-%m-%d"), t.day < last_day.strftime("%Y-%m-%d")]
    if agent_id is not None:
        where.append(t.agent_id == agent_id)
    if user_id is not None:
        where.append(t.user_id == user_id)
    sums = [func.sum(t[c]).label(c) for c in _ADDED]
    for row in await conn.execute(select(*keys, *sums).where(*where).group_by(*keys)):
        figures = {f: int(getattr(row, f)) for f in _SUMS}
        targets = [totals] + ([group_of(getattr(row, dim))] if dim else [])
        for g in targets:
            g.add(
                row.status, int(row.runs), figures, float(row.cost_usd), int(row.unpriced_runs), int(row.credits_used)
            )
            if row.bucket >= 0:
                g.durations.append((_bucket_ms(row.bucket), int(row.runs)))


def backfill(sync_conn: Any, credits_per_usd: float, *, batch: int = 20_000) -> int:
    """Add every ended run to `usage_daily` (which must hold none of them yet), `batch` runs at a
    time in id order; on a sync connection (the migration's, or a bulk loader's). Returns the runs added."""
    stmt = upsert(sync_conn.dialect.name)
    ended = runs.c.status.in_([s.value for s in RunStatus if s.is_terminal])
    added, after = 0, ""
    while True:
        query = select(*_RUN_COLUMNS).where(ended, runs.c.id > after).order_by(runs.c.id).limit(batch)
        chunk = list(sync_conn.execute(query))
        if not chunk:
            return added
        sync_conn.execute(stmt, contributions(chunk, credits_per_usd))
        added, after = added + len(chunk), chunk[-1].id
