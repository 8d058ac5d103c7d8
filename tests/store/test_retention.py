"""Retention (`runyard.store.retention.purge`, run by `Worker.reap`), on SQLite and PostgreSQL.

An ended run (completed, failed, cancelled) that ended before the cutoff goes, with its events,
checkpoint, tool journal and waits; a pending, running or waiting run stays whatever its age,
and so do its thread and agent. One purge deletes at most `batch` runs. Idempotency keys past
their TTL are ignored and deleted, and the key then makes a new run. Without
`RUNYARD_RETENTION_DAYS` nothing of a run is ever deleted.

Cutoffs here are "now" taken between making the old runs and the recent ones, instead of
finish stamps moved days back: purge bounds its index scan by the run id's creation time
(a run ends after it was created), so a run made just now with a stamp from last week is not
a run that exists.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, update
from support.postgres import create_database, drop_database, url_of
from support.servers import server_on, wait_until

from runyard.bus import LocalBus
from runyard.config import Settings
from runyard.domain import RunStatus
from runyard.store import agents, events, keys, retention, runs, waits
from runyard.store import schema as s
from runyard.store.db import Store, create_engine, utcnow
from runyard.store.ids import new_id
from runyard.store.migrate import upgrade
from runyard.worker.loop import Worker

RUN_TABLES = (s.runs, s.events, s.checkpoints, s.tool_calls, s.waits, s.run_files)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, empty database per test (old pending runs must not leak into the next test)."""
    database = ""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}"
    else:
        database = await create_database()
        url = url_of(database)
    store = Store(create_engine(url), LocalBus())
    await upgrade(store.engine)
    yield store
    await store.close()
    if database:
        await drop_database(database)


async def new_agent(store: Store) -> tuple[str, dict[str, Any]]:
    async with store.tx() as tx:
        org = await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        return org, await agents.create(tx.conn, org, {"name": "a", "instructions": "x"})


async def new_run(store: Store, org: str, agent: dict[str, Any], *, key: str | None = None) -> str:
    async with store.tx() as tx:
        run = await runs.create(
            tx, org, agent=agent, message="hi", thread_id=None, tools=None, model=None, user_id=None,
            metadata={}, idempotency_key=key, request_body={"message": "hi"} if key else None,
        )
    return run["id"]


async def move(store: Store, run_id: str, *path: RunStatus) -> None:
    """Walk a run through the state machine (unfenced: no worker holds these runs)."""
    for to in path:
        changes = {"waiting_for": "input"} if to is RunStatus.WAITING else None
        async with store.tx() as tx:
            await events.append(tx, run_id, [(f"run.{to.value}", {})], to=to, changes=changes)


PATHS = {
    RunStatus.PENDING: (),
    RunStatus.RUNNING: (RunStatus.RUNNING,),
    RunStatus.WAITING: (RunStatus.RUNNING, RunStatus.WAITING),
    RunStatus.COMPLETED: (RunStatus.RUNNING, RunStatus.COMPLETED),
    RunStatus.FAILED: (RunStatus.RUNNING, RunStatus.FAILED),
    RunStatus.CANCELLED: (RunStatus.CANCELLED,),
}


async def run_with_rows(store: Store, org: str, agent: dict[str, Any], status: RunStatus) -> str:
    """A run in `status` with a row in every table keyed by its id."""
    run_id = await new_run(store, org, agent)
    now = utcnow()
    async with store.tx() as tx:
        await tx.conn.execute(insert(s.checkpoints).values(
            run_id=run_id, attempt=1, messages="[]", history_len=0, updated_at=now))
        await tx.conn.execute(insert(s.tool_calls).values(
            run_id=run_id, tool_call_id="call_1", name="calculator", args_hash="0" * 64, result={"v": 2},
            is_error=False, created_at=now))
        await tx.conn.execute(insert(s.run_files).values(run_id=run_id, file_id=new_id("file")))
        await waits.insert_many(tx.conn, [{
            "id": new_id("wait"), "org_id": org, "run_id": run_id, "user_id": None, "kind": "input",
            "tool_call_id": None, "request": {"prompt": "?"}, "answer_schema": waits.INPUT_SCHEMA,
            "status": "open" if status is RunStatus.WAITING else "resolved", "answer": None, "resolved_by": None,
            "created_at": now, "resolved_at": None, "expires_at": None, "timeout_action": None,
        }])
    await move(store, run_id, *PATHS[status])
    return run_id


async def rows_of(store: Store, run_id: str) -> dict[str, int]:
    counts = {}
    async with store.read() as conn:
        for table in RUN_TABLES:
            column = table.c.id if table is s.runs else table.c.run_id
            counts[table.name] = (
                await conn.execute(select(func.count()).select_from(table).where(column == run_id))
            ).scalar_one()
    return counts


async def cutoff() -> datetime:
    """Now, a few ms clear of every id and stamp made before and after (ids have ms resolution)."""
    await asyncio.sleep(0.003)
    now = utcnow()
    await asyncio.sleep(0.003)
    return now


async def purge(store: Store, **kwargs: Any) -> dict[str, int]:
    kwargs.setdefault("runs_before", None)
    kwargs.setdefault("keys_before", None)
    async with store.tx() as tx:
        return await retention.purge(tx, **kwargs)


async def test_ended_runs_go_with_all_their_rows_and_nothing_else_does(store: Store) -> None:
    org, agent = await new_agent(store)
    old = {status: await run_with_rows(store, org, agent, status) for status in RunStatus}
    ended_late = await run_with_rows(store, org, agent, RunStatus.RUNNING)  # made before the cutoff
    before = await cutoff()
    await move(store, ended_late, RunStatus.COMPLETED)  # … but ended after it
    recent = await run_with_rows(store, org, agent, RunStatus.COMPLETED)
    ended = [old[RunStatus.COMPLETED], old[RunStatus.FAILED], old[RunStatus.CANCELLED]]
    expected_events = sum([(await rows_of(store, r))["events"] for r in ended])
    async with store.read() as conn:
        thread_ids = set((await conn.execute(select(s.runs.c.thread_id))).scalars())

    counts = await purge(store, runs_before=before)

    assert counts == {"runs": 3, "events": expected_events, "checkpoints": 3, "tool_calls": 3, "waits": 3,
                      "run_files": 3, "idempotency_keys": 0}
    for run_id in ended:
        assert await rows_of(store, run_id) == dict.fromkeys(counts.keys() - {"idempotency_keys"}, 0)
    for run_id in [old[RunStatus.PENDING], old[RunStatus.RUNNING], old[RunStatus.WAITING], ended_late, recent]:
        assert all(await rows_of(store, run_id)), run_id
    async with store.read() as conn:
        assert set((await conn.execute(select(s.threads.c.id))).scalars()) == thread_ids
        assert (await conn.execute(select(func.count()).select_from(s.agents))).scalar_one() == 1
    assert await purge(store, runs_before=before) == dict.fromkeys(counts, 0)


async def test_a_purge_deletes_at_most_batch_runs(store: Store) -> None:
    org, agent = await new_agent(store)
    statuses = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPLETED, RunStatus.FAILED]
    made = [await run_with_rows(store, org, agent, status) for status in statuses]
    before = await cutoff()
    deleted = [(await purge(store, runs_before=before, batch=2))["runs"] for _ in range(4)]
    assert deleted == [2, 2, 1, 0]
    assert [sum((await rows_of(store, r)).values()) for r in made] == [0] * 5
    with pytest.raises(ValueError, match="batch"):
        await purge(store, runs_before=before, batch=0)


async def test_the_reaper_purges_only_with_retention_set_and_in_bounded_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, agent = await new_agent(store)
    made = [await run_with_rows(store, org, agent, RunStatus.COMPLETED) for _ in range(6)]
    await asyncio.sleep(0.05)

    await Worker(store, Settings()).reap()  # RUNYARD_RETENTION_DAYS unset: keep forever
    assert all([all((await rows_of(store, r)).values()) for r in made])

    monkeypatch.setattr(retention, "BATCH", 1)
    keeper = Worker(store, Settings(retention_days=0.05 / 86400))  # 50 ms
    await keeper.reap()
    left = [r for r in made if (await rows_of(store, r))["runs"]]
    assert len(left) == 6 - retention.BATCHES_PER_REAP  # one run per batch, BATCHES_PER_REAP batches
    await keeper.reap()
    assert [sum((await rows_of(store, r)).values()) for r in made] == [0] * 6


async def test_idempotency_keys_past_their_ttl_are_ignored_deleted_and_make_a_new_run(store: Store) -> None:
    org, agent = await new_agent(store)
    first = await new_run(store, org, agent, key="expired")
    kept = await new_run(store, org, agent, key="fresh")
    await new_run(store, org, agent, key="purged")
    hours = Settings().idempotency_key_hours
    async with store.tx() as tx:
        await tx.conn.execute(update(s.idempotency_keys).where(s.idempotency_keys.c.key.in_(["expired", "purged"]))
                              .values(created_at=utcnow() - timedelta(hours=hours + 1)))

    # Past the TTL the lookup ignores the key even before the purge removed it.
    again = await new_run(store, org, agent, key="expired")
    assert again != first
    assert await new_run(store, org, agent, key="fresh") == kept

    _, keys_before = retention.cutoffs(retention_days=None, idempotency_key_hours=hours)
    assert (await purge(store, keys_before=keys_before))["idempotency_keys"] == 1
    async with store.read() as conn:
        left = {r.key: r.run_id for r in await conn.execute(select(s.idempotency_keys))}
    assert left == {"expired": again, "fresh": kept}
    assert await new_run(store, org, agent, key="purged") not in {first, kept, again}


async def test_a_key_whose_run_was_purged_makes_a_new_run(store: Store) -> None:
    org, agent = await new_agent(store)
    first = await new_run(store, org, agent, key="k")
    await move(store, first, RunStatus.CANCELLED)
    assert (await purge(store, runs_before=await cutoff()))["runs"] == 1
    second = await new_run(store, org, agent, key="k")  # not a 404 for the purged run
    assert second != first
    assert await new_run(store, org, agent, key="k") == second


RETENTION = 0.5
"""Seconds: long enough for the recent run to outlive the check, short for the test."""


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_over_http_an_ended_run_past_retention_is_gone(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNYARD_RETENTION_DAYS", repr(RETENTION / 86400))
    with server_on(dialect, tmp_path) as srv, httpx.Client(base_url=srv.base_url, headers=srv.headers()) as http:
        assert srv.app.state.settings.retention_days == RETENTION / 86400

        def finished(message: str) -> dict[str, Any]:
            r = http.post("/v1/runs", json={"name": "retained", "instructions": "x", "message": message})
            assert r.status_code == 201, r.text
            run = http.get(f"/v1/runs/{r.json()['id']}/wait", params={"timeout": 10}).json()
            assert run["status"] == "completed", run
            return run

        old = finished("old")
        made = time.monotonic()
        assert len(http.get(f"/v1/runs/{old['id']}/events").json()["data"]) >= 2
        wait_until(lambda: time.monotonic() - made > RETENTION + 0.05, timeout=5)
        recent = finished("recent")

        srv.call(srv.app.state.worker.reap())

        assert http.get(f"/v1/runs/{old['id']}").status_code == 404
        r = http.get(f"/v1/runs/{old['id']}/events")
        assert r.status_code == 404, r.text
        assert http.get(f"/v1/runs/{recent['id']}").status_code == 200
        assert http.get(f"/v1/runs/{recent['id']}/events").json()["data"]
        assert http.get(f"/v1/threads/{old['thread_id']}").status_code == 200
