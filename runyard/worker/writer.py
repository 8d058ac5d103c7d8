"""The one writer of a running run's events: buffers token deltas, flushes in batches.

Deltas are held at most `flush_interval` (10 ms), then the worker's `Flusher` commits the
buffers of all its runs together: one transaction (one locking read, one insert, one update)
for every run with something buffered, each fenced on its own. Every other write
(checkpoint, tool journal, the run's outcome) takes its run's buffer into its own transaction,
so seq order is always the order things happened in. One writer per run keeps invariant 1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .. import metrics
from ..store import events
from ..store.db import Store, Tx
from ..store.errors import LeaseLost
from ..store.events import Fence, NewEvent

__all__ = ["EventWriter", "Flusher"]

T = TypeVar("T")

Write = Callable[[Tx, list[NewEvent]], Awaitable[T]]
"""A transaction's work, given the buffered events it must append (fenced) before anything else."""


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A cancelled caller never awaits the shielded write; its error (e.g. LeaseLost) is
    # expected then, so read it here instead of letting asyncio log it as unretrieved.
    if not task.cancelled():
        task.exception()


class Flusher:
    """Commits the buffered events of many runs in one transaction, once per interval."""

    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._due: dict[EventWriter, None] = {}  # insertion-ordered set
        self._timer: asyncio.Task[None] | None = None

    def schedule(self, writer: EventWriter) -> None:
        self._due[writer] = None
        if self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    def forget(self, writer: EventWriter) -> None:
        self._due.pop(writer, None)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.interval)
        self._timer = None
        writers = list(self._due)
        self._due.clear()
        await self.flush(writers)

    async def flush(self, writers: list[EventWriter]) -> None:
        """One transaction for every writer's buffer; a writer busy committing waits for the next round."""
        held: list[tuple[EventWriter, int]] = []
        for writer in writers:
            if writer._error is not None or not writer._buffer:
                continue
            if writer._lock.locked():
                self.schedule(writer)  # its own commit is running: what it leaves goes next time
                continue
            await writer._lock.acquire()  # free: taken at once, nothing else runs meanwhile
            held.append((writer, len(writer._buffer)))
        if not held:
            return
        try:
            appends = [events.Append(w.run_id, w._buffer[:n], fence=w.fence) for w, n in held]
            began = time.perf_counter()
            async with self.store.tx() as tx:
                results = await events.append_many(tx, appends, lost_ok=True)
            metrics.EVENT_FLUSH_SECONDS.observe(time.perf_counter() - began)
            for (writer, taken), result in zip(held, results, strict=True):
                if isinstance(result, LeaseLost):
                    writer._error = result  # surfaced on the run's next emit or commit
                else:
                    del writer._buffer[:taken]
        except Exception as exc:
            # The batch failed as a whole: each run sees it, as if its own flush had failed.
            for writer, _ in held:
                writer._error = exc
        finally:
            for writer, _ in held:
                writer._lock.release()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class EventWriter:
    def __init__(self, store: Store, run_id: str, fence: Fence, *, flusher: Flusher) -> None:
        self.store = store
        self.run_id = run_id
        self.fence = fence
        self.flusher = flusher
        self._buffer: list[NewEvent] = []
        self._lock = asyncio.Lock()
        self._error: BaseException | None = None
        self._inflight: set[asyncio.Future[Any]] = set()

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Queue an event; it is committed within the flusher's interval."""
        if self._error is not None:
            raise self._error
        self._buffer.append((type_, data))
        self.flusher.schedule(self)

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
        self.flusher.forget(self)
