"""The event log and the state machine (`runyard.store.events.append`), on SQLite and PostgreSQL.

Invariant 1: each run's seqs are 1, 2, 3 … with no gap and no duplicate, even when many
tasks (on PostgreSQL, many connections) append at once, and a status change commits with
the event that announces it. Invariant 2: illegal transitions raise `InvalidTransition`.
Invariant 3: a write fenced by a stale `(worker_id, attempt)` raises `LeaseLost`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from support.postgres import create_database, drop_database, url_of

from runyard.bus import LocalBus
from runyard.domain import RunStatus
from runyard.store import agents, events, keys, runs
from runyard.store.db import Store, create_engine
from runyard.store.errors import InvalidTransition, LeaseLost, NotFound
from runyard.store.events import Fence
from runyard.store.migrate import upgrade
from runyard.store.schema import events as events_table
from runyard.store.schema import runs as runs_table


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    """A migrated, empty database for this module: a SQLite file, or a fresh PostgreSQL database."""
    database = ""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'events.db'}"
    else:
        database = await create_database()
        url = url_of(database)
    store = Store(create_engine(url), LocalBus())
    await upgrade(store.engine)
    yield store
    await store.close()
    if database:
        await drop_database(database)


async def new_run(store: Store) -> str:
    """A pending run (with its `run.queued` event, seq 1) in a fresh org."""
    async with store.tx() as tx:
        org = await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        agent = await agents.create(tx.conn, org, {"name": "a", "instructions": "x"})
        run = await runs.create(
            tx, org, agent=agent, message="hi", thread_id=None, tools=None, model=None, user_id=None, metadata={}
        )
    return run["id"]


async def org_of(store: Store, run_id: str) -> str:
    async with store.read() as conn:
        return (await conn.execute(select(runs_table.c.org_id).where(runs_table.c.id == run_id))).scalar_one()


async def log_of(store: Store, run_id: str) -> list[dict]:
    org = await org_of(store, run_id)
    async with store.read() as conn:
        return await events.read(conn, org, run_id)


async def status_of(store: Store, run_id: str) -> tuple[str, int]:
    async with store.read() as conn:
        query = select(runs_table.c.status, runs_table.c.last_seq).where(runs_table.c.id == run_id)
        row = (await conn.execute(query)).one()
    return row.status, row.last_seq


async def append(store: Store, run_id: str, *new: tuple[str, dict], **kwargs: object) -> list[dict]:
    async with store.tx() as tx:
        return await events.append(tx, run_id, list(new), **kwargs)  # type: ignore[arg-type]


async def test_append_numbers_events_from_one_without_gaps(store: Store) -> None:
    run_id = await new_run(store)
    written = await append(store, run_id, ("message.delta", {"delta": "a"}), ("message.delta", {"delta": "b"}))
    assert [e["seq"] for e in written] == [2, 3]
    written = await append(store, run_id, ("usage", {"input_tokens": 1}))
    assert [e["seq"] for e in written] == [4]

    log = await log_of(store, run_id)
    assert [(e["seq"], e["type"]) for e in log] == [
        (1, "run.queued"),
        (2, "message.delta"),
        (3, "message.delta"),
        (4, "usage"),
    ]
    assert log[1]["data"] == {"delta": "a"} and log[1]["run_id"] == run_id
    assert await status_of(store, run_id) == ("pending", 4)
    org = await org_of(store, run_id)
    async with store.read() as conn:
        assert [e["seq"] for e in await events.read(conn, org, run_id, after_seq=1, limit=2)] == [2, 3]
        assert await events.read(conn, "org_someone_else", run_id) == []  # scoped by construction


async def test_concurrent_appends_stay_gapless_and_unique(store: Store) -> None:
    run_id = await new_run(store)
    tasks, per_task = 20, 5

    async def writer(t: int) -> list[int]:
        seqs = []
        for i in range(per_task):
            # A mix of one- and two-event appends, each in its own transaction (own connection on PG).
            new = [("message.delta", {"task": t, "i": i, "part": p}) for p in range(1 + i % 2)]
            seqs += [e["seq"] for e in await append(store, run_id, *new)]
        return seqs

    results = await asyncio.gather(*(writer(t) for t in range(tasks)))
    log = await log_of(store, run_id)
    total = 1 + tasks * sum(1 + i % 2 for i in range(per_task))
    assert [e["seq"] for e in log] == list(range(1, total + 1))
    assert await status_of(store, run_id) == ("pending", total)
    # Every append landed once, and what each task was told matches the log.
    payloads = [(e["data"]["task"], e["data"]["i"], e["data"]["part"]) for e in log[1:]]
    assert len(set(payloads)) == len(payloads) == total - 1
    for t, seqs in enumerate(results):
        assert seqs == sorted(seqs)
        assert all(log[s - 1]["data"]["task"] == t for s in seqs)


async def test_row_lock_is_held_until_commit(store: Store) -> None:
    """A second append waits for the first transaction to commit, so seq order is commit order."""
    run_id = await new_run(store)
    order: list[str] = []
    first_appended = asyncio.Event()

    async def slow() -> None:
        async with store.tx() as tx:
            await events.append(tx, run_id, [("message.delta", {"who": "slow"})])
            first_appended.set()
            await asyncio.sleep(0.3)
            order.append("slow")

    async def fast() -> None:
        await first_appended.wait()
        await append(store, run_id, ("message.delta", {"who": "fast"}))
        order.append("fast")

    await asyncio.gather(slow(), fast())
    assert order == ["slow", "fast"]
    assert [(e["seq"], e["data"].get("who")) for e in await log_of(store, run_id)][1:] == [(2, "slow"), (3, "fast")]


async def test_status_change_commits_with_its_event(store: Store) -> None:
    run_id = await new_run(store)
    with pytest.raises(RuntimeError):
        async with store.tx() as tx:
            await events.append(tx, run_id, [("run.started", {"attempt": 1})], to=RunStatus.RUNNING)
            raise RuntimeError("crash before commit")
    assert await status_of(store, run_id) == ("pending", 1)
    assert [e["type"] for e in await log_of(store, run_id)] == ["run.queued"]


async def test_illegal_transitions_raise_and_write_nothing(store: Store) -> None:
    run_id = await new_run(store)
    with pytest.raises(InvalidTransition, match="pending: it cannot become completed"):
        await append(store, run_id, ("run.completed", {}), to=RunStatus.COMPLETED)
    assert await status_of(store, run_id) == ("pending", 1)

    await append(store, run_id, ("run.started", {}), to=RunStatus.RUNNING)
    await append(store, run_id, ("run.completed", {}), to=RunStatus.COMPLETED)
    for to in (RunStatus.RUNNING, RunStatus.PENDING, RunStatus.CANCELLED, RunStatus.FAILED):
        with pytest.raises(InvalidTransition):
            await append(store, run_id, ("x", {}), to=to)
    assert await status_of(store, run_id) == ("completed", 3)
    async with store.read() as conn:
        count = len((await conn.execute(select(events_table.c.seq).where(events_table.c.run_id == run_id))).all())
    assert count == 3


async def test_fenced_append_with_stale_fence_raises_lease_lost(store: Store) -> None:
    run_id = await new_run(store)
    with pytest.raises(LeaseLost):  # nobody holds a pending run
        await append(store, run_id, ("message.delta", {}), fence=Fence("w1", 1))

    await append(store, run_id, ("run.started", {}), to=RunStatus.RUNNING, changes={"attempt": 1, "worker_id": "w1"})
    await append(store, run_id, ("message.delta", {"ok": True}), fence=Fence("w1", 1))
    # Another attempt takes the run over (as the reaper and the next claim would).
    await append(store, run_id, ("run.requeued", {}), to=RunStatus.PENDING, changes={"worker_id": None})
    await append(store, run_id, ("run.started", {}), to=RunStatus.RUNNING, changes={"attempt": 2, "worker_id": "w2"})

    for stale in (Fence("w1", 1), Fence("w2", 1), Fence("w1", 2)):
        with pytest.raises(LeaseLost):
            await append(store, run_id, ("message.delta", {"stale": True}), fence=stale)
    with pytest.raises(LeaseLost):
        await append(store, run_id, ("run.completed", {}), to=RunStatus.COMPLETED, fence=Fence("w1", 1))
    assert await status_of(store, run_id) == ("running", 5)
    await append(store, run_id, ("run.completed", {}), to=RunStatus.COMPLETED, fence=Fence("w2", 2))
    assert await status_of(store, run_id) == ("completed", 6)


async def test_append_is_scoped_to_an_org(store: Store) -> None:
    run_id = await new_run(store)
    with pytest.raises(NotFound):
        await append(store, run_id, ("message.delta", {}), org_id="org_someone_else")
    with pytest.raises(NotFound):
        await append(store, "run_missing", ("message.delta", {}))
    assert await status_of(store, run_id) == ("pending", 1)
