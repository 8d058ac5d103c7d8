"""The one writer of a running run's events: buffers token deltas, flushes in batches.

Deltas are held at most `flush_interval` (10 ms) and committed together; every other write
(checkpoint, tool journal, the run's outcome) takes the buffer into its own transaction, so
seq order is always the order things happened in. One writer per run keeps invariant 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..store import events
from ..store.db import Store, Tx
from ..store.events import Fence, NewEvent

__all__ = ["EventWriter"]

T = TypeVar("T")

Write = Callable[[Tx, list[NewEvent]], Awaitable[T]]
"""A transaction's work, given the buffered events it must append (fenced) before anything else."""


def _retrieve(task: asyncio.Future[Any]) -> None:
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
        self._inflight: set[asyncio.Future[Any]] = set()

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
        changes: dict[str, Any] | None = None,
        also: Callable[[Tx], Awaitable[None]] | None = None,
    ) -> None:
        """Commit the buffer plus `extra` events and run changes, then `also`'s writes, fenced, in one transaction."""
        if not self._buffer and not extra and not changes and also is None:
            return

        async def write(tx: Tx, buffered: list[NewEvent]) -> None:
            # Always appended, even with nothing new: the append is the fence check `also` relies on.
            await events.append(tx, self.run_id, [*buffered, *extra], changes=changes, fence=self.fence)
            if also is not None:
                await also(tx)

        await self.commit(write)

    async def commit(self, write: Write[T]) -> T:
        """Run `write(tx, buffered events)` in one transaction; the buffer is dropped once it commits."""
        if self._error is not None:
            raise self._error
        # Shielded: a cancel arriving mid-commit must not tear the transaction in half;
        # the caller sees the CancelledError at once, and `settle` waits for the commit.
        task = asyncio.ensure_future(self._commit(write))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _commit(self, write: Write[T]) -> T:
        async with self._lock:
            taken = len(self._buffer)
            async with self.store.tx() as tx:
                result = await write(tx, self._buffer[:taken])
            # Only drop what was committed: a failed commit leaves the buffer for the next try.
            del self._buffer[:taken]
            return result

    async def settle(self) -> None:
        """Wait for commits a cancel left running, so the run's outcome is written after them."""
        if self._inflight:
            await asyncio.wait(list(self._inflight))

    def discard(self) -> None:
        """Drop buffered events that could not be written (the caller is failing the run)."""
        self._buffer.clear()
        self._error = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
