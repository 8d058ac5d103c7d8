"""`runyard usage`: tokens, cost and runs over a time range, as a table."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, cast

import typer
from rich.table import Table

from runyard import NOT_GIVEN, UsageGroup
from runyard._usage import UsageGroupBy

from .options import ApiKey, AsJson, BaseUrl, connect
from .output import fail, out, print_json, reporting

__all__ = ["usage"]

_SPAN = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_GROUPS = ("day", "agent", "user", "model", "route")


def _since(value: str) -> datetime:
    """`7d`, `24h`, `30m`, `2w` ago, or an ISO date or time (UTC unless it says otherwise)."""
    span = _SPAN.fullmatch(value.strip())
    if span:
        return datetime.now(UTC) - timedelta(**{_UNITS[span[2]]: int(span[1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--since {value!r}: give a span like 7d, 24h, 30m, or an ISO date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _cost(group: UsageGroup) -> str:
    if group.cost_usd is None:
        return "unknown"
    return f"${group.cost_usd:,.4f}" + ("" if group.cost_known else f" (+{group.unpriced_runs} unpriced)")


def _ms(value: int | None) -> str:
    return "" if value is None else (f"{value} ms" if value < 1000 else f"{value / 1000:.1f} s")


def usage(
    by: Annotated[str | None, typer.Option("--by", help="Group by day, agent, user, model or route.")] = None,
    since: Annotated[str, typer.Option("--since", help="Runs created since: 7d, 24h, 30m or an ISO date.")] = "30d",
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's runs.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this end user's runs.")] = None,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Tokens, cost, credits, runs by status and durations of the org's runs."""
    if by is not None and by not in _GROUPS:
        raise fail(f"--by {by!r}: choose one of {', '.join(_GROUPS)}")
    start = _since(since)
    client = connect(base_url, api_key)
    with reporting(client):
        report = client.usage.retrieve(
            since=start,
            group_by=cast(UsageGroupBy, by) if by else NOT_GIVEN,  # checked above
            agent_id=agent or NOT_GIVEN,
            user_id=user or NOT_GIVEN,
        )
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = [by or "", "runs", "completed", "failed", "tokens in", "tokens out", "cost", "credits", "p50", "p95"]
    for column in columns:
        table.add_column(column, justify="left" if column in (by or "",) else "right")
    rows = [*report.data, report.totals] if by else [report.totals]
    for group in rows:
        label = "total" if group is report.totals else (group.key if group.key is not None else "(none)")
        table.add_row(
            label,
            f"{group.runs:,}",
            f"{group.runs_by_status.get('completed', 0):,}",
            f"{group.runs_by_status.get('failed', 0):,}",
            f"{group.input_tokens:,}",
            f"{group.output_tokens:,}",
            _cost(group),
            "" if group.credits_used is None else f"{group.credits_used:,}",
            _ms(group.duration_ms_p50),
            _ms(group.duration_ms_p95),
        )
    out.print(f"runs created since {start.astimezone().strftime('%Y-%m-%d %H:%M')}")
    out.print(table)
    if report.has_more:
        out.print(f"(more {by} groups than shown; the total counts them all)")
