"""The worker's Flusher: many runs' buffered events in one transaction, each run fenced on its own
(invariants 1 and 3), on SQLite and PostgreSQL.

Two runs claimed by one worker share a Flusher; the second run's lease is then taken by another
worker. One flush must commit the first run's events with gapless seqs, write nothing for the
second, and hand the second run's writer its `LeaseLost`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update
from support.postgres import create_database, drop_database, url_of

from runyard.bus import LocalBus
from runyard.store import agents, events, keys, queue, runs, schema
from runyard.store.db import Store, create_engine
from runyard.store.errors import LeaseLost
from runyard.store.migrate import upgrade
from runyard.worker.writer import EventWriter, Flusher


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    database = await create_database() if request.param == "postgresql" else None
    if database is None:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('flusher') / 'flusher.db'}"
    else:
        url = url_of(database)
    store = Store(create_engine(url), LocalBus())
    await upgrade(store.engine)
    yield store
    await store.close()
    if database is not None:
        await drop_database(database)


async def two_claimed_runs(store: Store) -> tuple[str, list[tuple[str, events.Fence]]]:
    async with store.tx() as tx:
        org = await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        agent = await agents.create(tx.conn, org, {"name": "a", "instructions": "x"})
        for _ in range(2):
            await runs.create(
                tx, org, agent=agent, message="hi", thread_id=None, tools=None, model=None, user_id=None, metadata={}
            )
    async with store.tx() as tx:
        claimed = await queue.claim(tx, "worker-1", limit=2, lease_seconds=30)
    return org, [(row.id, fence) for row, fence in claimed]


async def test_one_flush_commits_every_held_run_and_fences_each_on_its_own(store: Store) -> None:
    org, [(kept, kept_fence), (lost, lost_fence)] = await two_claimed_runs(store)
    flusher = Flusher(store, interval=60)  # flushed by hand below, never by its timer
    writers = [
        EventWriter(store, kept, kept_fence, flusher=flusher),
        EventWriter(store, lost, lost_fence, flusher=flusher),
    ]
    for writer in writers:
        for n in range(3):
            writer.emit("message.delta", {"delta": f"d{n}"})
    # Another worker takes the second run over: its lease expired, it was reaped and claimed again.
    async with store.tx() as tx:
        await tx.conn.execute(update(schema.runs).where(schema.runs.c.id == lost).values(lease_until=0))
        assert await queue.reap_expired(tx, max_attempts=10) == (1, 0)
    async with store.tx() as tx:
        [(row, _)] = await queue.claim(tx, "worker-2", limit=2, lease_seconds=30)
    assert (row.id, row.worker_id) == (lost, "worker-2")
    flusher.close()

    await flusher.flush(writers)

    async with store.read() as conn:
        kept_log = await events.read(conn, org, kept)
        lost_log = await events.read(conn, org, lost)
    assert [e["type"] for e in kept_log][-3:] == ["message.delta"] * 3
    assert [e["data"]["delta"] for e in kept_log[-3:]] == ["d0", "d1", "d2"]
    for log in (kept_log, lost_log):
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert not [e for e in lost_log if e["type"] == "message.delta"], "a lost lease wrote nothing"
    assert writers[0]._buffer == []
    with pytest.raises(LeaseLost):
        writers[1].emit("message.delta", {"delta": "late"})
