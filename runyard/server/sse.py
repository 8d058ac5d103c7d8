"""Server-sent events of one run: backlog from the store, then live from the bus.

Order matters: subscribe first, then read the backlog after the cursor, then go live,
dropping seq ≤ last sent. On overflow or a gap the handler re-reads the store, so the
client sees every event exactly once, in order, whatever the bus does.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from .. import metrics
from .._events import TERMINAL_EVENT_TYPES
from ..domain import RunStatus
from ..store import events, runs
from ..store.db import Store

__all__ = ["HEARTBEAT_SECONDS", "event_stream", "format_events", "sse_response"]

HEARTBEAT_SECONDS = 15.0
READ_BATCH = 1000


def format_events(batch: list[dict[str, Any]]) -> bytes:
    # Envelopes fresh from an append carry their JSON already (`events.Envelope`); read ones do not.
    return "".join(
        f"id: {e['seq']}\nevent: {e['type']}\ndata: {getattr(e, 'json', None) or events.dumps(e)}\n\n" for e in batch
    ).encode()


async def event_stream(
    store: Store, org_id: str, run_id: str, after_seq: int, *, heartbeat: float = HEARTBEAT_SECONDS
) -> AsyncIterator[bytes]:
    sub = store.bus.subscribe(f"run:{run_id}", maxsize=4096)
    metrics.SSE_STREAMS.inc()
    try:
        last = after_seq
        terminal = False

        async def catch_up() -> AsyncIterator[list[dict[str, Any]]]:
            nonlocal last, terminal
            while True:
                async with store.read() as conn:
                    batch = await events.read(conn, org_id, run_id, after_seq=last, limit=READ_BATCH)
                if batch:
                    last = batch[-1]["seq"]
                    terminal = batch[-1]["type"] in TERMINAL_EVENT_TYPES
                    yield batch
                if len(batch) < READ_BATCH or terminal:
                    return

        async def ended() -> bool:
            # A cursor past the run's last seq sees no new events, but must still end with the run.
            nonlocal terminal
            async with store.read() as conn:
                run = await runs.get(conn, org_id, run_id)
            terminal = RunStatus(run["status"]).is_terminal and run["last_seq"] <= last
            return terminal

        async for batch in catch_up():
            yield format_events(batch)
        if terminal or await ended():
            return
        while not terminal:
            message = await sub.get(timeout=heartbeat)
            if message is None:
                yield b": ping\n\n"
                # Quiet for a while: a lost wake-up must not stall the stream, so read the store.
                found = False
                async for stored in catch_up():
                    found = True
                    yield format_events(stored)
                if not found:
                    await ended()
                continue
            messages = [message, *sub.drain()]
            batch = [e for m in messages if isinstance(m, list) for e in m]
            fresh = [e for e in batch if e["seq"] > last]
            # Anything but a contiguous list of envelopes (a hint from another node, a resync,
            # an overflow, a gap): read the store from the last seq sent.
            if (
                sub.overflowed
                or len(batch) != sum(len(m) if isinstance(m, list) else 1 for m in messages)
                or (fresh and fresh[0]["seq"] != last + 1)
                or not _contiguous(fresh)
            ):
                sub.overflowed = False
                found = False
                async for stored in catch_up():
                    found = True
                    yield format_events(stored)
                if not found:
                    await ended()
                continue
            if fresh:
                last = fresh[-1]["seq"]
                terminal = fresh[-1]["type"] in TERMINAL_EVENT_TYPES
                yield format_events(fresh)
            elif any(e["type"] in TERMINAL_EVENT_TYPES for e in batch):
                terminal = True  # the run ended below the caller's cursor
    finally:
        metrics.SSE_STREAMS.dec()
        sub.close()


def _contiguous(batch: list[dict[str, Any]]) -> bool:
    return all(b["seq"] == a["seq"] + 1 for a, b in itertools.pairwise(batch))


def sse_response(stream: AsyncIterator[bytes], *, run_id: str, status_code: int = 200) -> StreamingResponse:
    return StreamingResponse(
        stream,
        status_code=status_code,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Run-Id": run_id},
    )
