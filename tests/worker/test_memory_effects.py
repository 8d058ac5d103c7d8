"""Memory tools happen once (invariant 5): a memory's row, its `memory.saved` event, the call's
`tool.result` and its journal entry commit in one transaction, on SQLite and PostgreSQL.

The executor runs in-process on a real store. A lost lease in the middle of a commit (raised
from inside the transaction, as a fenced write would) stands for a crash at that point: the
attempt writes nothing more, the lease is reaped, and a second attempt resumes the run.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select

from runyard.bus import LocalBus
from runyard.config import Settings
from runyard.store import agents, checkpoints, events, journal, keys, queue, runs
from runyard.store.db import Store, create_engine
from runyard.store.errors import LeaseLost
from runyard.store.migrate import upgrade
from runyard.store.outcomes import ClaimedRun
from runyard.store.schema import memories, tool_calls
from runyard.worker.executor import RunHandle, execute

PG = "postgresql://postgres@127.0.0.1:5432"
USER = "user-1"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    database = f"runyard_test_{secrets.token_hex(6)}"
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('memory') / 'memory.db'}"
    else:
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    store = Store(create_engine(url), LocalBus())
    await upgrade(store.engine)
    yield store
    await store.close()
    if request.param == "postgresql":
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


async def new_run(store: Store, script: list[dict[str, Any]]) -> tuple[str, str]:
    async with store.tx() as tx:
        org = await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        agent = await agents.create(tx.conn, org, {"name": "a", "instructions": "x"})
        run = await runs.create(tx, org, agent=agent, message="remember things", thread_id=None, tools=None,
                                model=None, user_id=USER, metadata={"script": script})
    return org, run["id"]


async def attempt(store: Store, run_id: str) -> None:
    """Claim the run (requeueing it first if an earlier attempt left it running) and execute it."""
    async with store.tx() as tx:
        await queue.reap_expired(tx, max_attempts=10, all_running=True)
    async with store.tx() as tx:
        [(row, fence)] = await queue.claim(tx, f"worker-{secrets.token_hex(3)}", limit=1, lease_seconds=30)
    assert row.id == run_id
    await execute(store, Settings(), RunHandle(ClaimedRun.of(row, fence)))


async def state_of(store: Store, org: str, run_id: str) -> tuple[str, list[dict[str, Any]], list[Any], list[Any]]:
    """The run's status, its log, its user's memories (id, text) and its journal (call id, result)."""
    async with store.read() as conn:
        run = await runs.get(conn, org, run_id)
        log = await events.read(conn, org, run_id)
        saved = [tuple(r) for r in await conn.execute(
            select(memories.c.id, memories.c.text).where(memories.c.org_id == org).order_by(memories.c.id))]
        entries = [tuple(r) for r in await conn.execute(
            select(tool_calls.c.tool_call_id, tool_calls.c.result).where(tool_calls.c.run_id == run_id))]
    return run["status"], log, saved, entries


def of_type(log: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in log if e["type"] == type_]


SAVE = [{"tool_calls": [{"name": "save_memory", "args": {"text": "likes green tea"}}]}, {"text": "noted"}]


async def test_a_crash_inside_the_commit_leaves_neither_the_memory_nor_its_entry(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, run_id = await new_run(store, SAVE)

    async def lost(*args: Any, **kwargs: Any) -> None:
        raise LeaseLost("the attempt lost the run while journaling")  # after the memory's INSERT, same transaction

    monkeypatch.setattr(journal, "record", lost)
    await attempt(store, run_id)
    status, log, saved, entries = await state_of(store, org, run_id)
    assert status == "running"  # abandoned: the lease decides what happens next
    assert saved == [] and entries == []  # together or not at all: here, not at all
    assert of_type(log, "memory.saved") == [] and of_type(log, "tool.result") == []

    monkeypatch.undo()
    await attempt(store, run_id)
    status, log, saved, entries = await state_of(store, org, run_id)
    assert status == "completed"
    [(memory_id, text)] = saved
    assert text == "likes green tea"
    assert entries == [("call_0_1", f"saved as {memory_id}")]
    assert of_type(log, "memory.saved") == [{"memory_id": memory_id, "user_id": USER, "text": "likes green tea"}]
    # The memory's event and the call's result are neighbours: one commit announced both.
    kinds = [e["type"] for e in log]
    assert kinds[kinds.index("memory.saved") + 1] == "tool.result"
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))


async def test_a_resume_after_the_commit_replays_the_call_without_a_second_memory(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, run_id = await new_run(store, SAVE)
    real_save = checkpoints.save
    calls = 0

    async def save_then_crash(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the checkpoint that would hold the tool's result: the attempt dies first
            raise LeaseLost("the attempt lost the run before checkpointing the result")
        await real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "save", save_then_crash)
    await attempt(store, run_id)
    status, _, saved, entries = await state_of(store, org, run_id)
    assert status == "running" and len(saved) == 1 and len(entries) == 1

    monkeypatch.undo()
    await attempt(store, run_id)  # resumes from the response that made the call: the call comes again
    status, log, after, entries_after = await state_of(store, org, run_id)
    assert status == "completed"
    assert after == saved and entries_after == entries  # replayed from the journal, not executed again
    assert len(of_type(log, "memory.saved")) == 1 and len(of_type(log, "tool.result")) == 1
    assert [s["attempt"] for s in of_type(log, "run.started")] == [1, 2]


async def test_forget_memory_deletes_once_and_a_missing_id_is_a_tool_error(store: Store) -> None:
    org, first = await new_run(store, SAVE)
    await attempt(store, first)
    _, _, [(memory_id, _)], _ = await state_of(store, org, first)

    script = [{"tool_calls": [{"name": "forget_memory", "args": {"memory_id": memory_id}},
                              {"name": "forget_memory", "args": {"memory_id": "mem_missing"}}]},
              {"text": "forgotten"}]
    async with store.tx() as tx:
        agent = await agents.create(tx.conn, org, {"name": "b", "instructions": "x"})
        run = await runs.create(tx, org, agent=agent, message="forget", thread_id=None, tools=None, model=None,
                                user_id=USER, metadata={"script": script})
    await attempt(store, run["id"])
    status, log, saved, entries = await state_of(store, org, run["id"])
    assert status == "completed" and saved == []
    assert of_type(log, "memory.deleted") == [{"memory_id": memory_id, "user_id": USER}]
    [error] = of_type(log, "tool.error")
    assert error["tool_call_id"] == "call_0_2" and "no memory mem_missing" in error["error"]
    assert sorted(entries) == [("call_0_1", f"forgot {memory_id}"), ("call_0_2", "no memory mem_missing for this user")]
