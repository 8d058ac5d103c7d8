"""Budgets: the limits a run may not pass, and the one check the worker makes against them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["STOP_REASONS", "RunLimits", "StopReason", "exceeded", "tightest"]

StopReason = Literal["completed", "cancelled", "error", "budget_exceeded", "max_attempts", "wait_timeout"]
"""Why a terminal run ended: it answered, was cancelled, failed on an error, passed a limit, lost
its lease too often, or a pause for a human expired with `wait_timeout_action: "fail"`."""
STOP_REASONS: tuple[str, ...] = StopReason.__args__  # type: ignore[attr-defined]


class RunLimits(BaseModel):
    """What one run may use. Unset: no limit of that kind. Checked before every model request and
    every tool call; a run past one ends `failed` with `stop_reason: "budget_exceeded"`."""

    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float | None = Field(None, gt=0, description="Cost in USD (runs with a known price).")
    max_tokens: int | None = Field(None, gt=0, description="Input plus output tokens.")
    max_requests: int | None = Field(None, gt=0, description="Model requests.")
    max_tool_calls: int | None = Field(None, gt=0, description="Tool calls.")
    max_duration_s: float | None = Field(None, gt=0, description="Seconds since the run first started.")


def tightest(*limits: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Field by field, the smallest limit any of `limits` sets (a run's, its agent's, the org's)."""
    out: dict[str, Any] = {}
    for given in limits:
        for name, value in (given or {}).items():
            if value is not None:
                out[name] = value if out.get(name) is None else min(out[name], value)
    return out or None


def exceeded(
    limits: Mapping[str, Any] | None,
    usage: Mapping[str, Any],
    elapsed_s: float,
    before: Literal["request", "tool_call"],
) -> str | None:
    """What stops the run before its next model request or tool call, as `max_x reached: figure of
    limit`, or None while it is within `limits`. A limit counts as reached at its value; cost,
    tokens and time stop both, `max_requests` only a request, `max_tool_calls` only a call."""
    if not limits:
        return None
    counted = ("max_requests", usage.get("requests", 0))
    if before == "tool_call":
        counted = ("max_tool_calls", usage.get("tool_calls", 0))
    figures: Iterable[tuple[str, Any]] = (
        ("max_cost_usd", usage.get("cost_usd")),
        ("max_tokens", usage.get("input_tokens", 0) + usage.get("output_tokens", 0)),
        counted,
        ("max_duration_s", round(elapsed_s, 3)),
    )
    for name, figure in figures:
        limit = limits.get(name)
        if limit is not None and figure is not None and figure >= limit:
            return f"{name} reached: {figure:g} of {limit:g}"
    return None
