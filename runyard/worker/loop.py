"""The worker: claims runs, executes them concurrently, renews leases, reaps expired ones.

Woken by the bus (`queue`, `cancel`) with a poll fallback, so a lost message costs at most
`poll_interval` of latency. Heartbeats renew every held lease at a third of its length and
catch cancel requests whose bus message was missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from .. import logs
from ..config import Settings
from ..store import queue, retention, waits
from ..store.db import Store
from ..store.events import Fence
from ..store.outcomes import ClaimedRun
from .deliveries import Deliverer
from .executor import CancelReason, RunHandle, execute
from .writer import Flusher

__all__ = ["Worker"]

log = logging.getLogger("runyard.worker")

CLAIM_BATCH = 50


class Worker:
    def __init__(self, store: Store, settings: Settings, *, concurrency: int | None = None) -> None:
        self.store = store
        self.settings = settings
        self.concurrency = concurrency or settings.worker_concurrency
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.active: dict[str, RunHandle] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._full = False
        # One flush per interval for all the runs this worker executes.
        self.flusher = Flusher(store, settings.flush_interval)
        self._tasks: list[asyncio.Task[None]] = []
        # Webhook deliveries: any worker process sends them, leased like runs.
        self.deliverer = Deliverer(store, settings, self.worker_id)

    async def start(self, *, recover_all: bool = False) -> None:
        """Start the loops. `recover_all`: requeue every running run first (embedded SQLite restart)."""
        if recover_all:
            async with self.store.tx() as tx:
                requeued, failed = await queue.reap_expired(
                    tx, max_attempts=self.settings.max_attempts, all_running=True
                )
            if requeued or failed:
                log.info("recovered %d runs, failed %d past max_attempts", requeued, failed)
        await self.deliverer.start(recover_all=recover_all)
        self._queue_sub = self.store.bus.subscribe("queue", maxsize=10_000)
        self._cancel_sub = self.store.bus.subscribe("cancel", maxsize=10_000)
        for loop in (self._claim_loop, self._wake_loop, self._cancel_loop, self._heartbeat_loop):
            self._tasks.append(asyncio.create_task(loop(), name=f"runyard-worker-{loop.__name__}"))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let running runs finish for `grace` seconds, then hand the rest back."""
        self._stopping = True
        self._wake.set()
        pending = [h.task for h in self.active.values() if h.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for handle in list(self.active.values()):
            handle.cancel(CancelReason.SHUTDOWN)
        pending = [h.task for h in self.active.values() if h.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=5)
        self.flusher.close()
        # After the runs: their last events' deliveries are queued, and sent if there is time.
        await self.deliverer.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._queue_sub.close()
        self._cancel_sub.close()

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self.active)
            claimed: list[Any] = []
            if free > 0:
                try:
                    async with self.store.tx() as tx:
                        claimed = await queue.claim(
                            tx,
                            self.worker_id,
                            limit=min(free, CLAIM_BATCH),
                            lease_seconds=self.settings.lease_seconds,
                            max_per_org=self.settings.max_concurrent_runs,
                        )
                except Exception:
                    log.exception("claim failed; retrying")
                    await asyncio.sleep(min(self.settings.poll_interval, 1.0))
                    continue
            # Full: runs may be left in the queue, so the next run to end must look again.
            self._full = free <= 0 or len(claimed) == free
            for row, fence in claimed:
                self._start(row, fence)
            if claimed and len(claimed) == min(free, CLAIM_BATCH):
                continue  # there may be more waiting
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            except TimeoutError:
                pass

    def _start(self, row: Any, fence: Fence) -> None:
        handle = RunHandle(ClaimedRun.of(row, fence))
        self.active[row.id] = handle
        # The run's row carries its trace id (ClaimedRun does not): bound for its log lines.
        trace_id = getattr(row, "trace_id", None)
        handle.task = asyncio.create_task(self._execute(handle, trace_id), name=f"run-{row.id}")

    async def _execute(self, handle: RunHandle, trace_id: str | None = None) -> None:
        # Inside the run's own task: the ids stay with this run's log lines, not the worker's.
        with logs.bind(run_id=handle.run.id, trace_id=trace_id, worker_id=self.worker_id):
            started = time.monotonic()
            log.debug("run %s: executing attempt %d", handle.run.id, handle.run.attempt)
            try:
                await execute(self.store, self.settings, handle, self.flusher, trace_id=trace_id)
            except Exception:
                log.exception("run %s: executor crashed", handle.run.id)
            finally:
                self.active.pop(handle.run.id, None)
                # Full, or an org at its limit: runs left pending may be claimable now.
                if self._full or self.settings.max_concurrent_runs is not None:
                    self._wake.set()
                log.debug("run %s: attempt ended after %.3f s", handle.run.id, time.monotonic() - started)

    async def _wake_loop(self) -> None:
        while True:
            await self._queue_sub.get()
            self._queue_sub.drain()
            self._wake.set()

    async def _cancel_loop(self) -> None:
        while True:
            run_id = await self._cancel_sub.get()
            handle = self.active.get(str(run_id))
            if handle is not None:
                handle.cancel(CancelReason.USER)

    async def _heartbeat_loop(self) -> None:
        # A third of the lease: a renewal can fail twice and still land in time. Reaping as
        # often bounds recovery of a dead worker's runs to about lease + lease / 3.
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat()
                await self.reap()
            except Exception:
                log.exception("heartbeat failed")

    async def heartbeat(self) -> None:
        """Renew every held lease in one statement; cancel runs that lost theirs or were asked to stop."""
        held = dict(self.active)
        async with self.store.tx() as tx:
            renewed = await queue.renew_many(
                tx, {run_id: h.fence for run_id, h in held.items()}, lease_seconds=self.settings.lease_seconds
            )
        for run_id, handle in held.items():
            if run_id not in renewed:
                # Finished meanwhile, or another attempt owns it now: either way, stop touching it.
                if self.active.get(run_id) is handle:
                    handle.cancel(CancelReason.LEASE_LOST)
            elif renewed[run_id]:
                handle.cancel(CancelReason.USER)

    async def reap(self) -> tuple[int, int]:
        """Requeue runs and webhook deliveries whose lease expired, apply the timeout of waits past
        their deadline, and purge what is past retention (a few bounded batches, each its own transaction)."""
        async with self.store.tx() as tx:
            await waits.expire_due(tx)
        async with self.store.tx() as tx:
            reaped = await queue.reap_expired(tx, max_attempts=self.settings.max_attempts)
        await self.deliverer.reap()
        runs_before, keys_before = retention.cutoffs(
            retention_days=self.settings.retention_days, idempotency_key_hours=self.settings.idempotency_key_hours
        )
        deleted: dict[str, int] = {}
        try:
            for _ in range(retention.BATCHES_PER_REAP):
                async with self.store.tx() as tx:
                    counts = await retention.purge(
                        tx, runs_before=runs_before, keys_before=keys_before, batch=retention.BATCH
                    )
                for table, n in counts.items():
                    deleted[table] = deleted.get(table, 0) + n
                if counts["runs"] < retention.BATCH and counts["idempotency_keys"] < retention.BATCH:
                    break  # nothing left past its cutoff
        except Exception:
            log.exception("retention purge failed; retrying at the next reap")
        if any(deleted.values()):
            log.info("retention: deleted %s", ", ".join(f"{n} {table}" for table, n in deleted.items() if n))
        return reaped
