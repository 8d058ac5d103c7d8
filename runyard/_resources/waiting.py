"""How `runs.wait` waits, as pure decisions: long-poll lengths, timeouts, deadlines and pauses.

A run without `human_in_the_loop` is waited for with the long poll `GET /v1/runs/{id}/wait`,
which returns once the run has ended. A run that may pause is watched on its event stream
instead, since the long poll does not return for a `waiting` run.
"""

from __future__ import annotations

import httpx

from .. import _exceptions as _exc
from ..domain import TERMINAL_EVENT_TYPES, Run, Wait

__all__ = [
    "EARLY_RETURN_SLACK",
    "LONG_POLL_READ_MARGIN",
    "LONG_POLL_SECONDS",
    "SETTLING_EVENTS",
    "WATCH_READ_TIMEOUT",
    "long_poll_seconds",
    "long_poll_timeout",
    "next_poll_pause",
    "open_waits",
    "past_deadline",
    "wait_deadline",
    "watch_timeout",
]

LONG_POLL_SECONDS = 30.0
"""How long one `GET /v1/runs/{id}/wait` may hold the connection (the server caps it at 60 s);
shorter than the cap so that proxies with idle timeouts do not cut it."""
LONG_POLL_READ_MARGIN = 15.0
"""Extra read timeout over the long poll itself, for a slow server or network."""
EARLY_RETURN_SLACK = 0.05
"""A long poll that came back this much earlier than asked, without a finished run, returned early."""

WATCH_READ_TIMEOUT = 60.0
"""Read timeout of the event stream `wait` watches a run with; the server pings every 15 s."""
SETTLING_EVENTS = TERMINAL_EVENT_TYPES | {"run.waiting"}
"""Events after which a run needs no worker: it ended, or it waits for a human."""


def wait_deadline(timeout: float | None, now: float) -> float | None:
    """The monotonic time a wait gives up at, or `None` to wait for ever."""
    return None if timeout is None else now + timeout


def long_poll_seconds(deadline: float | None, now: float) -> float:
    """How long the next long poll should ask the server to hold on."""
    if deadline is None:
        return LONG_POLL_SECONDS
    return max(0.0, min(LONG_POLL_SECONDS, deadline - now))


def long_poll_timeout(seconds: float) -> httpx.Timeout:
    """The HTTP timeout of a long poll of `seconds`: the read must outlast the server's wait."""
    return httpx.Timeout(seconds + LONG_POLL_READ_MARGIN, connect=5.0)


def next_poll_pause(
    run: Run, *, deadline: float | None, asked: float, started: float, now: float, poll_interval: float
) -> float:
    """Seconds to pause before polling a run that is not finished; raise `TimeoutError` once past the deadline.

    A long poll that held for the time asked needs no pause; one that came back early
    (a server with a shorter cap, or an older server) pauses `poll_interval`.
    """
    if deadline is not None and now >= deadline:
        raise _exc.TimeoutError(f"run {run.id} is still {run.status.value} after the wait timeout", run=run)
    pause = poll_interval if now - started < asked - EARLY_RETURN_SLACK else 0.0
    if deadline is not None:
        pause = min(pause, deadline - now)
    return max(pause, 0.0)


def watch_timeout(deadline: float | None, now: float) -> httpx.Timeout:
    """The HTTP timeout of the event stream `wait` watches: no read outlasts the deadline."""
    read = WATCH_READ_TIMEOUT if deadline is None else max(0.01, min(WATCH_READ_TIMEOUT, deadline - now))
    return httpx.Timeout(read, connect=5.0)


def past_deadline(run: Run, deadline: float | None, now: float) -> None:
    """Raise `TimeoutError` when a run that is not settled is past the wait's deadline."""
    if deadline is not None and now >= deadline:
        raise _exc.TimeoutError(f"run {run.id} is still {run.status.value} after the wait timeout", run=run)


def open_waits(waits: list[Wait]) -> list[Wait]:
    """The open waits, oldest first (the order `/input` answers them in)."""
    return sorted((w for w in waits if w.status == "open"), key=lambda w: w.id)

