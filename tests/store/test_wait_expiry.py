"""A wait's deadline never overrides an answer (invariant 6): the reaper's expiry re-checks
the wait under its run's row lock and touches only a wait that is still `open`.

The race needs two connections, so it runs on PostgreSQL: an answer holds the run's row lock
while the reaper, which already found the wait past its deadline, waits for that lock.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from support.postgres import create_database, drop_database, url_of

from runyard.bus import LocalBus
from runyard.domain import RunStatus
from runyard.store import agents, events, keys, queue, runs, waits
from runyard.store.db import Store, create_engine, utcnow
from runyard.store.ids import new_id
from runyard.store.migrate import upgrade
from runyard.store.schema import runs as runs_table
from runyard.store.schema import waits as waits_table


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    database = await create_database()
    store = Store(create_engine(url_of(database)), LocalBus())
    await upgrade(store.engine)
    yield store
    await store.close()
    await drop_database(database)


async def waiting_run(store: Store, timeout_action: str) -> tuple[str, str, str]:
    """A run paused on one `input` wait whose deadline has passed: (org, run_id, wait_id)."""
    async with store.tx() as tx:
        org = await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        agent = await agents.create(tx.conn, org, {"name": "a", "instructions": "x"})
        run = await runs.create(tx, org, agent=agent, message="hi", thread_id=None, tools=None, model=None,
                                user_id=None, metadata={})
    async with store.tx() as tx:
        [(_, fence)] = await queue.claim(tx, "w1", limit=1, lease_seconds=30)
    wait_id = new_id("wait")
    now = utcnow()
    async with store.tx() as tx:
        await events.append(tx, run["id"], [("run.waiting", {"waiting_for": "input"})], to=RunStatus.WAITING,
                            changes={"waiting_for": "input", "worker_id": None, "lease_until": None}, fence=fence)
        await waits.insert_many(tx.conn, [{
            "id": wait_id, "org_id": org, "run_id": run["id"], "user_id": None, "kind": "input",
            "tool_call_id": None, "request": {"prompt": "?"}, "answer_schema": waits.INPUT_SCHEMA,
            "status": "open", "answer": None, "resolved_by": None, "created_at": now, "resolved_at": None,
            "expires_at": now - timedelta(seconds=5), "timeout_action": timeout_action,
        }])
    return org, run["id"], wait_id


async def blocked_on_a_lock(store: Store) -> bool:
    async with store.read() as conn:
        count = (await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ))).scalar_one()
    return count > 0


@pytest.mark.parametrize("timeout_action", ["fail", "deny"])
async def test_an_answer_committed_while_the_reaper_waits_wins(store: Store, timeout_action: str) -> None:
    org, run_id, wait_id = await waiting_run(store, timeout_action)

    async def reap() -> int:
        async with store.tx() as tx:
            return await waits.expire_due(tx)

    async with store.tx() as answer:
        await waits.resolve(answer, org, run_id, wait_id, {"content": "here you go"})
        reaper = asyncio.create_task(reap())
        for _ in range(500):  # until the reaper queues behind the answer's row lock
            if await blocked_on_a_lock(store) or reaper.done():
                break
            await asyncio.sleep(0.01)
        assert not reaper.done(), "the reaper must wait for the run's row lock"
    assert await reaper == 0

    async with store.read() as conn:
        wait = (await conn.execute(select(waits_table).where(waits_table.c.id == wait_id))).one()
        run = (await conn.execute(select(runs_table).where(runs_table.c.id == run_id))).one()
        types = [e["type"] for e in await events.read(conn, org, run_id)]
    assert (wait.status, wait.answer) == ("resolved", {"content": "here you go"})
    assert run.status == RunStatus.PENDING.value and run.error is None
    assert "run.failed" not in types and types.count("run.input_received") == 1


async def test_an_unanswered_wait_expires_with_its_action(store: Store) -> None:
    org, run_id, wait_id = await waiting_run(store, "fail")
    async with store.tx() as tx:
        assert await waits.expire_due(tx) == 1
    async with store.read() as conn:
        wait = (await conn.execute(select(waits_table).where(waits_table.c.id == wait_id))).one()
        run = (await conn.execute(select(runs_table).where(runs_table.c.id == run_id))).one()
    assert wait.status == "expired" and run.status == RunStatus.FAILED.value
