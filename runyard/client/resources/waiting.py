"""How `runs.wait` waits, as pure decisions: long-poll lengths, timeouts, deadlines and pauses.

`runs.wait` has one path: it repeats the long poll `GET /v1/runs/{id}/wait?timeout=…`, which
returns once the run has ended or waits for a human, or after the timeout. At a pause it answers
the open waits through the caller's callbacks and polls again.
"""

from __future__ import annotations

import httpx

from ...domain import Run, Wait, WaitStatus
from .. import exceptions as _exc

__all__ = [
    "EARLY_RETURN_SLACK",
    "LONG_POLL_READ_MARGIN",
    "LONG_POLL_SECONDS",
    "long_poll_seconds",
    "long_poll_timeout",
    "next_poll_pause",
    "open_waits",
    "wait_deadline",
]

LONG_POLL_SECONDS = 30.0
"""How long one `GET /v1/runs/{id}/wait` may hold the connection (the server caps it at 60 s);
shorter than the cap so that proxies with idle timeouts do not cut it."""
LONG_POLL_READ_MARGIN = 15.0
"""Extra read timeout over the long poll itself, for a slow server or network."""
EARLY_RETURN_SLACK = 0.05
"""A long poll that came back this much earlier than asked, without a settled run, returned early."""


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
    """Seconds to pause before polling a run that is not settled; raise `TimeoutError` once past the deadline.

    A long poll that held for the time asked needs no pause; one that came back early
    (a server with a shorter cap, or a pause with nothing left to answer) pauses `poll_interval`.
    """
    if deadline is not None and now >= deadline:
        raise _exc.TimeoutError(f"run {run.id} is still {run.status.value} after the wait timeout", run=run)
    pause = poll_interval if now - started < asked - EARLY_RETURN_SLACK else 0.0
    if deadline is not None:
        pause = min(pause, deadline - now)
    return max(pause, 0.0)


def open_waits(waits: list[Wait]) -> list[Wait]:
    """The open waits, oldest first (the order `/input` answers them in)."""
    return sorted((w for w in waits if w.status is WaitStatus.OPEN), key=lambda w: w.id)
