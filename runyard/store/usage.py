"""The usage report: tokens, cost, credits, runs by status and durations, summed in SQL.

Every figure comes from the runs' own `usage` totals (what their `usage` events added up to),
never from the event logs; the time range is a range of the `(org_id, id)` index, since run ids
sort by creation time. Percentiles are nearest-rank, by a window function both databases have.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Numeric, String, and_, case, cast, false, func, literal, or_, select

from ..domain import RunStatus
from .db import Conn
from .ids import first_id_at
from .schema import runs

__all__ = ["GROUP_KEYS", "report"]

_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_COUNTS = ("requests", "tool_calls")
_STATUSES = tuple(s.value for s in RunStatus)

GROUP_KEYS = {"agent": runs.c.agent_id, "user": runs.c.user_id, "model": runs.c.model, "route": runs.c.model}
"""`route` groups by the run's model name, which is its route id when it ran on a route."""


def _day(dialect: str) -> Any:
    if dialect == "sqlite":
        return func.substr(runs.c.created_at, 1, 10, type_=String)  # stored as 'YYYY-MM-DD HH:MM:SS…'
    return func.to_char(runs.c.created_at, "YYYY-MM-DD")


def _duration_ms(dialect: str) -> Any:
    end = func.coalesce(runs.c.completed_at, runs.c.failed_at, runs.c.cancelled_at)
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(runs.c.started_at)) * 86_400_000.0
    return func.extract("epoch", end - runs.c.started_at) * 1000.0


def _sqlite_ceil(value: Any) -> Any:
    whole = cast(value, Integer)
    return whole + case((value > whole, 1), else_=0)


def _aggregates(dialect: str, credits_per_usd: float) -> list[Any]:
    usage = runs.c.usage
    cost = usage["cost_usd"].as_float()
    known_flag = usage["cost_known"].as_boolean()
    unknown = or_(
        and_(known_flag.is_not(None), known_flag == false()),
        and_(known_flag.is_(None), cost.is_(None), usage["requests"].as_integer() > 0),
    )
    priced_credits = _credits(cost * credits_per_usd, dialect)
    return [
        func.count().label("runs"),
        *(func.sum(case((runs.c.status == s, 1), else_=0)).label(f"status_{s}") for s in _STATUSES),
        *(func.sum(func.coalesce(usage[f].as_integer(), 0)).label(f) for f in (*_TOKENS, *_COUNTS)),
        func.sum(case((unknown, None), else_=cost)).label("cost_usd"),
        func.sum(case((unknown, 1), else_=0)).label("unpriced_runs"),
        func.sum(case((unknown, None), else_=priced_credits)).label("credits_used"),
    ]


def _credits(value: Any, dialect: str) -> Any:
    rounded = func.round(value, 9)  # as `runs.usage_view`: float noise must not cost a whole credit
    if dialect == "sqlite":
        return _sqlite_ceil(rounded)
    return func.ceil(func.round(cast(value, Numeric), 9))


def _scope(query: Any, org_id: str, start: datetime, end: datetime, agent_id: str | None, user_id: str | None) -> Any:
    # Ids are minted just before created_at: the id bounds select the index range, the
    # created_at bounds make them exact.
    query = query.where(
        runs.c.org_id == org_id,
        runs.c.id >= first_id_at("run", start - timedelta(milliseconds=1)),
        runs.c.id < first_id_at("run", end + timedelta(milliseconds=1)),
        runs.c.created_at >= start,
        runs.c.created_at < end,
    )
    if agent_id is not None:
        query = query.where(runs.c.agent_id == agent_id)
    if user_id is not None:
        query = query.where(runs.c.user_id == user_id)
    return query


def _group(row: Any, durations: dict[Any, tuple[Any, Any]], key: Any = None) -> dict[str, Any]:
    tokens = {f: int(getattr(row, f) or 0) for f in (*_TOKENS, *_COUNTS)}
    p50, p95 = durations.get(key, (None, None))
    runs_count = int(row.runs or 0)
    cost = row.cost_usd
    return {
        "key": key,
        "runs": runs_count,
        "runs_by_status": {s: int(getattr(row, f"status_{s}") or 0) for s in _STATUSES},
        **tokens,
        "total_tokens": tokens["input_tokens"] + tokens["output_tokens"],
        "cost_usd": float(cost) if cost is not None else None,
        "cost_known": not row.unpriced_runs,
        "unpriced_runs": int(row.unpriced_runs or 0),
        "credits_used": int(row.credits_used) if row.credits_used is not None else None,
        "cache_hit_rate": tokens["cache_read_tokens"] / tokens["input_tokens"] if tokens["input_tokens"] else None,
        "duration_ms_p50": int(p50) if p50 is not None else None,  # truncated, as a run's duration_ms
        "duration_ms_p95": int(p95) if p95 is not None else None,
    }


async def _percentiles(conn: Conn, key: Any, scope: Any) -> dict[Any, tuple[Any, Any]]:
    """Nearest-rank p50 and p95 of the ended runs' durations, per group (key None: overall)."""
    dialect = conn.dialect.name
    duration = _duration_ms(dialect)
    partition = {"partition_by": key} if key is not None else {}
    ranked = scope(
        select(
            (key if key is not None else literal(None)).label("key"),
            duration.label("d"),
            func.row_number().over(order_by=duration, **partition).label("rn"),
            func.count().over(**partition).label("n"),
        ).where(runs.c.started_at.is_not(None), runs.c.status.in_([s.value for s in RunStatus if s.is_terminal]))
    ).subquery()
    rank50, rank95 = (ranked.c.n * 50 + 99) // 100, (ranked.c.n * 95 + 99) // 100
    rows = await conn.execute(
        select(
            ranked.c.key,
            func.max(case((ranked.c.rn == rank50, ranked.c.d))),
            func.max(case((ranked.c.rn == rank95, ranked.c.d))),
        )
        .where(or_(ranked.c.rn == rank50, ranked.c.rn == rank95))
        .group_by(ranked.c.key)
    )
    return {r[0]: (r[1], r[2]) for r in rows}


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
    dialect = conn.dialect.name

    def scope(query: Any) -> Any:
        return _scope(query, org_id, start, end, agent_id, user_id)

    aggregates = _aggregates(dialect, credits_per_usd)
    totals_row = (await conn.execute(scope(select(*aggregates)))).one()
    totals = _group(totals_row, await _percentiles(conn, None, scope))
    data: list[dict[str, Any]] = []
    has_more = False
    if group_by is not None:
        key = _day(dialect) if group_by == "day" else GROUP_KEYS[group_by]
        order = key.asc() if group_by == "day" else func.count().desc()
        query = scope(select(key.label("key"), *aggregates)).group_by(key).order_by(order, key).limit(limit + 1)
        rows = list(await conn.execute(query))
        has_more = len(rows) > limit
        durations = await _percentiles(conn, key, scope)
        data = [_group(r, durations, r.key) for r in rows[:limit]]
    return {
        "object": "usage_report",
        "start": start,
        "end": end,
        "group_by": group_by,
        "totals": totals,
        "data": data,
        "has_more": has_more,
    }
