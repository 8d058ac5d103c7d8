"""The run queue (`runyard.store.queue`): claim, renew, release, reap — on SQLite and PostgreSQL.

Invariant 3: a worker owns a run through `(worker_id, attempt, lease_until)`; concurrent
claimers never take the same run; an expired lease makes the run claimable again at
`attempt + 1` (or fails it past `max_attempts`); the older attempt's writes are refused.
Leases here are 0.05 s on the database clock, and the tests move the reaper's clock past them
(`now=`) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update
from support.postgres import create_database, drop_database, url_of

from runyard.bus import LocalBus
from runyard.domain import RunStatus
from runyard.store import agents, events, keys, queue, runs
from runyard.store.db import Store, create_engine, utcnow
from runyard.store.errors import LeaseLost
from runyard.store.events import Fence
from runyard.store.migrate import upgrade
from runyard.store.schema import runs as runs_table

TINY = 0.05  # seconds: a lease that has expired by the time the test looks again


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    """A migrated, empty database for this module: a SQLite file, or a fresh PostgreSQL database."""
    database = ""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'queue.db'}"
    else:
        database = await create_database()
        url = url_of(database)
    store = Store(create_engine(url), LocalBus())
    await upgrade(store.engine)
    yield store
    await store.close()
    if database:
        await drop_database(database)


@pytest.fixture
async def queue_store(store: Store) -> Store:
    """The module's store with an empty queue: runs left by earlier tests are closed first."""
    async with store.tx() as tx:
        await tx.conn.execute(
            update(runs_table)
            .where(runs_table.c.status.in_(["pending", "running", "waiting"]))
            .values(status="cancelled", cancelled_at=utcnow(), worker_id=None, lease_until=None)
        )
    return store


async def new_runs(store: Store, n: int = 1) -> list[str]:
    """`n` pending runs in a fresh org, oldest first."""
    async with store.tx() as tx:
        org = await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        agent = await agents.create(tx.conn, org, {"name": "a", "instructions": "x"})
        created = [
            await runs.create(
                tx,
                org,
                agent=agent,
                message=f"task {i}",
                thread_id=None,
                tools=None,
                model=None,
                user_id=None,
                metadata={},
            )
            for i in range(n)
        ]
    return [r["id"] for r in created]


async def claim(store: Store, worker_id: str, *, limit: int = 10, lease: float = 30.0) -> list[tuple[Any, Fence]]:
    async with store.tx() as tx:
        return await queue.claim(tx, worker_id, limit=limit, lease_seconds=lease)


async def reap(store: Store, max_attempts: int = 3, *, later: bool = False) -> tuple[int, int]:
    """Reap now, or (`later`) as if an hour had passed: every short lease has expired by then."""
    async with store.tx() as tx:
        return await queue.reap_expired(tx, max_attempts=max_attempts, now=time.time() + 3600 if later else None)


async def renew(tx: Any, run_id: str, fence: Fence, *, lease_seconds: float) -> bool:
    """One run's renewal as the worker reads it: cancel requested, or LeaseLost when no longer held."""
    held = await queue.renew_many(tx, {run_id: fence}, lease_seconds=lease_seconds)
    if run_id not in held:
        raise LeaseLost(f"run {run_id}: lease of attempt {fence.attempt} lost")
    return held[run_id]


async def row_of(store: Store, run_id: str) -> Any:
    async with store.read() as conn:
        return (await conn.execute(select(runs_table).where(runs_table.c.id == run_id))).one()


async def types_of(store: Store, run_id: str) -> list[str]:
    org = (await row_of(store, run_id)).org_id
    async with store.read() as conn:
        return [e["type"] for e in await events.read(conn, org, run_id)]


async def test_concurrent_claimers_claim_each_run_exactly_once(queue_store: Store) -> None:
    run_ids = await new_runs(queue_store, 40)

    async def claimer(worker_id: str) -> list[str]:
        mine: list[str] = []
        while batch := await claim(queue_store, worker_id, limit=3):
            mine += [row.id for row, fence in batch]
            assert all(fence == Fence(worker_id, 1) for _, fence in batch)
            await asyncio.sleep(0)
        return mine

    claimed = await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
    everything = [run_id for mine in claimed for run_id in mine]
    assert Counter(everything) == Counter(run_ids)  # all of them, none twice
    for worker, mine in enumerate(claimed):
        for run_id in mine[:3]:
            row = await row_of(queue_store, run_id)
            assert (row.status, row.attempt, row.worker_id) == ("running", 1, f"w{worker}")
    org = (await row_of(queue_store, run_ids[0])).org_id
    async with queue_store.read() as conn:
        for run_id in run_ids:
            started = [e for e in await events.read(conn, org, run_id) if e["type"] == "run.started"]
            assert len(started) == 1 and started[0]["data"]["attempt"] == 1


async def test_claim_takes_oldest_first_and_sets_a_lease(queue_store: Store) -> None:
    first = (await new_runs(queue_store))[0]
    await asyncio.sleep(0.005)  # ids are time-sortable to the millisecond
    second = (await new_runs(queue_store))[0]
    [(row, fence)] = await claim(queue_store, "w1", limit=1, lease=30)
    assert row.id == first and fence == Fence("w1", 1)
    assert row.started_at is not None and row.lease_until is not None
    assert [r.id for r, _ in await claim(queue_store, "w2")] == [second]
    assert await claim(queue_store, "w3") == []


async def test_renew_after_another_attempt_took_over_raises_lease_lost(queue_store: Store) -> None:
    [run_id] = await new_runs(queue_store)
    [(_, old)] = await claim(queue_store, "w1", lease=TINY)
    async with queue_store.tx() as tx:
        assert await renew(tx, run_id, old, lease_seconds=TINY) is False
    assert await reap(queue_store, later=True) == (1, 0)
    [(row, new)] = await claim(queue_store, "w2")
    assert new == Fence("w2", 2) and row.attempt == 2

    with pytest.raises(LeaseLost):
        async with queue_store.tx() as tx:
            await renew(tx, run_id, old, lease_seconds=30)
    with pytest.raises(LeaseLost):
        async with queue_store.tx() as tx:
            await events.append(tx, run_id, [("message.delta", {"delta": "late"})], fence=old)
    with pytest.raises(LeaseLost):
        async with queue_store.tx() as tx:
            await queue.release(tx, run_id, old, reason="late shutdown")

    # The new owner renews fine, and a renewal reports a cancel request.
    async with queue_store.tx() as tx:
        assert await renew(tx, run_id, new, lease_seconds=30) is False
    async with queue_store.tx() as tx:
        await runs.request_cancel(tx, row.org_id, run_id)
    async with queue_store.tx() as tx:
        assert await renew(tx, run_id, new, lease_seconds=30) is True
    assert await types_of(queue_store, run_id) == [
        "run.queued",
        "run.started",
        "run.requeued",
        "run.started",
        "run.cancel_requested",
    ]


async def test_reap_requeues_expired_runs_then_fails_them_past_max_attempts(queue_store: Store) -> None:
    [expiring] = await new_runs(queue_store)
    await claim(queue_store, "w1", lease=TINY)
    [healthy] = await new_runs(queue_store)
    await claim(queue_store, "w2", lease=7200)

    assert await reap(queue_store, max_attempts=2, later=True) == (1, 0)
    row = await row_of(queue_store, expiring)
    assert (row.status, row.attempt, row.worker_id, row.lease_until) == ("pending", 1, None, None)
    assert (await row_of(queue_store, healthy)).status == "running"  # its lease is still live

    [(row, fence)] = await claim(queue_store, "w3", lease=TINY)
    assert row.id == expiring and fence.attempt == 2
    assert await reap(queue_store, max_attempts=2, later=True) == (0, 1)
    row = await row_of(queue_store, expiring)
    assert row.status == "failed" and row.failed_at is not None
    assert "max_attempts (2)" in row.error
    assert await types_of(queue_store, expiring) == [
        "run.queued",
        "run.started",
        "run.requeued",
        "run.started",
        "run.failed",
    ]
    assert await reap(queue_store, max_attempts=2, later=True) == (0, 0)
    assert (await row_of(queue_store, healthy)).status == "running"


async def test_release_requeues_at_once(queue_store: Store) -> None:
    [run_id] = await new_runs(queue_store)
    [(_, fence)] = await claim(queue_store, "w1")
    async with queue_store.tx() as tx:
        await queue.release(tx, run_id, fence, reason="worker shutdown")
    row = await row_of(queue_store, run_id)
    assert (row.status, row.worker_id, row.lease_until) == (RunStatus.PENDING.value, None, None)
    [(row, fence)] = await claim(queue_store, "w2")
    assert row.id == run_id and fence == Fence("w2", 2)
