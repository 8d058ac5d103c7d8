"""Prometheus metrics of one process (an API node, a worker, or the embedded server), in one place.

Every metric is a plain prometheus-client object on the default registry; the API serves them
at `GET /metrics` (`runyard.server.app`), a worker on `RUNYARD_METRICS_PORT` if set. Hot paths
touch them through cached label children (`Children`): one dict lookup, no `.labels()` call.

Labels are bounded: never a run id; a model name is bounded by what an org configures, and
each labelled metric keeps at most `MAX_LABEL_VALUES` distinct ones, the rest counted as `other`.
The run gauges (`runyard_runs_active`) and the pool gauge are set when scraped, off the hot paths.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CLAIM_SECONDS",
    "COST_USD",
    "DB_POOL_IN_USE",
    "EVENTS_APPENDED",
    "EVENT_APPEND_SECONDS",
    "EVENT_FLUSH_SECONDS",
    "MAX_LABEL_VALUES",
    "OTHER",
    "RUNS_ACTIVE",
    "RUNS_CREATED",
    "RUNS_FINISHED",
    "RUN_DURATION_SECONDS",
    "SSE_STREAMS",
    "TIME_TO_FIRST_EVENT_SECONDS",
    "TOKENS",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_DELIVERY_SECONDS",
    "Children",
    "add_usage",
    "pool_in_use",
    "run_created",
    "run_finished",
    "time_to_first_event",
]

MAX_LABEL_VALUES = 200
"""Distinct label-value tuples one metric keeps; past it, new models are counted under `OTHER`."""
OTHER = "other"

C = TypeVar("C")


class Children(Generic[C]):
    """A metric's label children, cached by label values and capped at `MAX_LABEL_VALUES`.

    `get(values)` is one dict lookup once a child exists. `fold` maps label values to the ones
    used once the cap is reached (by default every value becomes `OTHER`)."""

    def __init__(
        self,
        make: Callable[[tuple[str, ...]], C],
        *,
        fold: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None,
        cap: int = MAX_LABEL_VALUES,
    ) -> None:
        self._make = make
        self._fold = fold or (lambda values: tuple(OTHER for _ in values))
        self._cap = cap
        self._children: dict[tuple[str, ...], C] = {}

    def get(self, values: tuple[str, ...]) -> C:
        child = self._children.get(values)
        if child is None:
            if len(self._children) >= self._cap:
                # Not cached under `values`: an unbounded stream of new values must not grow the dict.
                values = self._fold(values)
                child = self._children.get(values)
                if child is not None:
                    return child
            child = self._children[values] = self._make(values)
        return child


BUCKETS_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Database work: claims and appends (seconds)."""
BUCKETS_RUN = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Runs and model latency (seconds)."""

RUNS_CREATED = Counter("runyard_runs_created", "Runs queued by this process (API), by model.", ["model"])
"""`runyard_runs_created_total{model}`: runs `runs.create` queued (an idempotent replay is not counted)."""
RUNS_FINISHED = Counter(
    "runyard_runs_finished",
    "Runs that ended in this process, by terminal status and model.",
    ["status", "model"],
)
"""`runyard_runs_finished_total{status,model}`: completed / failed / cancelled, counted where the
outcome is written: the worker (complete, fail, cancel), the API (cancel of a pending or waiting
run) and the reaper (a run past max_attempts fails). Counted in the transaction, before its commit."""
RUN_DURATION_SECONDS = Histogram(
    "runyard_run_duration_seconds",
    "Run duration, first start to terminal outcome, of runs a worker of this process ended.",
    ["status"],
    buckets=BUCKETS_RUN,
)
"""`runyard_run_duration_seconds{status}`: `started_at` (first claim) to the outcome (what a run's
`duration_ms` reports), observed by the worker that writes the outcome."""
TIME_TO_FIRST_EVENT_SECONDS = Histogram(
    "runyard_time_to_first_event_seconds",
    "Run created_at to the first streamed event of its first model response.",
    buckets=BUCKETS_RUN,
)
"""`runyard_time_to_first_event_seconds`: queueing plus model latency as a caller sees it, from the
run's `created_at` (API node's clock) to the first stream event of the run's first model request
(worker's clock), first attempt only. Scripted and real models alike; clamped at 0 for clock skew."""
CLAIM_SECONDS = Histogram(
    "runyard_claim_seconds",
    "Time one queue claim takes (candidates query and run.started appends), empty claims included.",
    buckets=BUCKETS_FAST,
)
"""`runyard_claim_seconds`: `queue.claim` inside its transaction (the commit is not included)."""
EVENT_APPEND_SECONDS = Histogram(
    "runyard_event_append_seconds",
    "Time one events.append_many takes inside its transaction (lock, insert, update).",
    buckets=BUCKETS_FAST,
)
"""`runyard_event_append_seconds`: every append of this process (API and worker), commit excluded."""
EVENT_FLUSH_SECONDS = Histogram(
    "runyard_event_flush_seconds",
    "Time one worker flush of buffered events takes, its commit included.",
    buckets=BUCKETS_FAST,
)
"""`runyard_event_flush_seconds`: the worker `Flusher`'s batch transaction (all runs' deltas), with commit."""
EVENTS_APPENDED = Counter("runyard_events_appended", "Events appended to run logs by this process.")
"""`runyard_events_appended_total`: rows `events.append_many` inserted (counted before commit)."""
TOKENS = Counter("runyard_tokens", "Model tokens used by runs in this process, by model and kind.", ["model", "kind"])
"""`runyard_tokens_total{model,kind}`: kind is input, output, cache_read, cache_write or reasoning;
model as the provider names it in its response."""
COST_USD = Counter("runyard_cost_usd", "Model cost in USD of runs in this process (where a price is known).", ["model"])
"""`runyard_cost_usd_total{model}`: the cost each usage event reports; unpriced responses add nothing."""
SSE_STREAMS = Gauge("runyard_sse_streams", "Server-sent event streams open on this process.")
"""`runyard_sse_streams`: open `/v1/runs/{id}/events` streams (incremented when one starts)."""
RUNS_ACTIVE = Gauge("runyard_runs_active", "Runs in an active status, across the database.", ["status"])
"""`runyard_runs_active{status}`: pending, running, waiting; one COUNT … GROUP BY when `/metrics` is scraped."""
WEBHOOK_DELIVERIES = Counter(
    "runyard_webhook_deliveries", "Webhook delivery attempts this process made, by outcome.", ["outcome"]
)
"""`runyard_webhook_deliveries_total{outcome}`: `succeeded`, `retrying` (failed, will retry) or `failed`
(retries spent, 410, or the endpoint disabled)."""
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "runyard_webhook_delivery_seconds",
    "Time one webhook delivery attempt takes, from connect to the receiver's answer.",
    buckets=BUCKETS_FAST + (5.0, 10.0),
)
"""`runyard_webhook_delivery_seconds`: each attempt that reached the network, answered or not."""
DB_POOL_IN_USE = Gauge("runyard_db_pool_in_use", "Database connections checked out of this process's pool.")
"""`runyard_db_pool_in_use`: PostgreSQL pool `checkedout()`; SQLite (one inline connection): 1 while a
transaction or read holds it, else 0. Read when scraped."""

_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
_created = Children(lambda v: RUNS_CREATED.labels(*v))
_finished = Children(lambda v: RUNS_FINISHED.labels(*v), fold=lambda v: (v[0], OTHER))
_durations = {s: RUN_DURATION_SECONDS.labels(s) for s in ("completed", "failed", "cancelled")}
_usage = Children(lambda v: (tuple(TOKENS.labels(v[0], k) for k in _TOKEN_KINDS), COST_USD.labels(v[0])))


def run_created(model: str) -> None:
    _created.get((model,)).inc()


def run_finished(status: str, model: str, *, started_at: datetime | None = None, now: datetime | None = None) -> None:
    """Count a run's terminal outcome; with `started_at` and `now`, observe its duration too."""
    _finished.get((status, model)).inc()
    seconds = _seconds(started_at, now)
    if seconds is not None:
        _durations[status].observe(seconds)


def time_to_first_event(created_at: datetime | None, now: datetime) -> None:
    seconds = _seconds(created_at, now)
    if seconds is not None:
        TIME_TO_FIRST_EVENT_SECONDS.observe(seconds)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    """`end - start` in seconds, at least 0; None when unknown (a metric never fails the caller)."""
    if start is None or end is None:
        return None
    try:
        return max(0.0, (end - start).total_seconds())
    except TypeError:  # naive and aware datetimes
        return None


def add_usage(model: str | None, tokens: tuple[int, int, int, int, int], cost: float | None) -> None:
    """One model response's usage: tokens in `_TOKEN_KINDS` order, and its cost if priced."""
    counters, cost_counter = _usage.get((model or "unknown",))
    for counter, amount in zip(counters, tokens, strict=True):
        if amount:
            counter.inc(amount)
    if cost:
        cost_counter.inc(cost)


def pool_in_use(store: Any) -> int:
    """Connections `store` holds now: the engine pool's checked-out count, or SQLite's inline lock."""
    engine = getattr(store.engine, "sync_engine", store.engine)
    checkedout = getattr(engine.pool, "checkedout", None)
    if checkedout is not None and not store.is_sqlite:
        return int(checkedout())
    return 1 if store._inline_lock.locked() else 0
