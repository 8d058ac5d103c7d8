"""The one writer of a running run's events: buffers token deltas, flushes in batches.

Deltas are held at most `flush_interval` (10 ms) and committed together; every other write
(checkpoint, tool journal, status change) flushes the buffer first in the same transaction,
so seq order is always the order things happened in. One writer per run keeps invariant 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..domain import RunStatus
from ..store import events
from ..store.db import Store, Tx
from ..store.events import Fence, NewEvent

__all__ = ["EventWriter"]


def _retrieve(task: "asyncio.Future[Any]") -> None:
    # A cancelled caller never awaits the shielded write; its error (e.g. LeaseLost) is
    # expected then, so read it here instead of letting asyncio log it as unretrieved.
    if not task.cancelled():
        task.exception()


class EventWriter:
    def __init__(self, store: Store, run_id: str, fence: Fence, *, flush_interval: float) -> None:
        self.store = store
        self.run_id = run_id
        self.fence = fence
        self.flush_interval = flush_interval
        self._buffer: list[NewEvent] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Queue an event; it is committed within `flush_interval`."""
        if self._error is not None:
            raise self._error
        self._buffer.append((type_, data))
        if self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_interval)
        self._timer = None
        try:
            await self.flush()
        except BaseException as exc:  # surfaced on the executor's next emit or flush
            self._error = exc

    async def flush(
        self,
        *extra: NewEvent,
        to: RunStatus | None = None,
        changes: dict[str, Any] | None = None,
        also: Callable[[Tx], Awaitable[None]] | None = None,
    ) -> list[dict[str, Any]]:
        """Commit the buffer plus `extra` events, a status change and `also`'s writes, fenced."""
        if self._error is not None:
            raise self._error
        # Shielded: a cancel arriving mid-commit must not tear the transaction in half;
        # the caller sees the CancelledError once the commit is done.
        task = asyncio.ensure_future(self._flush(list(extra), to, changes, also))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _flush(
        self,
        extra: list[NewEvent],
        to: RunStatus | None,
        changes: dict[str, Any] | None,
        also: Callable[[Tx], Awaitable[None]] | None,
    ) -> list[dict[str, Any]]:
        async with self._lock:
            taken = len(self._buffer)
            new = self._buffer[:taken] + extra
            if not new and to is None and not changes and also is None:
                return []
            async with self.store.tx() as tx:
                written = await events.append(tx, self.run_id, new, to=to, changes=changes, fence=self.fence)
                if also is not None:
                    await also(tx)
            # Only drop what was committed: a failed commit leaves the buffer for the next try.
            del self._buffer[:taken]
            return written

    def discard(self) -> None:
        """Drop buffered events that could not be written (the caller is failing the run)."""
        self._buffer.clear()
        self._error = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
