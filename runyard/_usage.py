"""The usage report (`GET /v1/usage`) as the server and the SDK both see it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["USAGE_GROUPS", "UsageGroup", "UsageGroupBy", "UsageReport"]

UsageGroupBy = Literal["day", "agent", "user", "model", "route"]
USAGE_GROUPS: tuple[str, ...] = ("day", "agent", "user", "model", "route")


class _Model(BaseModel):
    # Unknown fields from a newer server must not break an older SDK.
    model_config = ConfigDict(extra="allow")


class UsageGroup(_Model):
    """What the runs of one group (or all of them, as `totals`) used."""

    key: str | None = None
    """The day (`YYYY-MM-DD`, UTC), agent id, user id, model or route; null in `totals`, and for
    runs without a user when grouped by user."""
    runs: int = 0
    runs_by_status: dict[str, int] = Field(default_factory=dict)
    requests: int = 0
    """Model requests."""
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    """Input plus output tokens."""
    cost_usd: float | None = None
    """The summed cost of the priced runs; null when none was priced."""
    cost_known: bool = True
    """False when some run made model requests at no known price: `cost_usd` then undercounts."""
    unpriced_runs: int = 0
    credits_used: int | None = None
    """The sum of each priced run's `credits_used`."""
    cache_hit_rate: float | None = None
    """Cache-read input tokens / input tokens (null with no input)."""
    duration_ms_p50: int | None = None
    """Median duration of the runs that ended (from first start to end)."""
    duration_ms_p95: int | None = None


class UsageReport(_Model):
    """`GET /v1/usage`: tokens, cost, credits, runs by status and durations over a time range,
    in total and per group."""

    object: Literal["usage_report"] = "usage_report"
    start: datetime
    """Runs created at or after this instant (the `from` query parameter)."""
    end: datetime
    """…and before this one (`to`)."""
    group_by: UsageGroupBy | None = None
    totals: UsageGroup
    data: list[UsageGroup] = Field(default_factory=list)
    """One entry per group: days oldest first, other groups by runs, most first."""
    has_more: bool = False
    """More groups than `limit`: the rest are counted in `totals` only."""
