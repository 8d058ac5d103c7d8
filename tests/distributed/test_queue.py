"""The queue on PostgreSQL with real processes: claims, leases, fencing, graceful shutdown.

- 2,000 runs created through two API nodes and executed by four worker processes: each run
  is claimed once (one `run.started`, attempt 1), ends once, and has a gapless log.
- Fencing: a worker frozen with SIGSTOP past its lease loses the run to another worker;
  thawed with SIGCONT, its writes are refused and the log stays intact.
- Graceful SIGTERM: a worker hands its run back at once (`run.requeued`, "worker shutdown")
  and another worker resumes it from its checkpoint long before the lease would expire.

Event logs are read straight from PostgreSQL with asyncpg (the store is the source of truth).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from support.cluster import Cluster, Proc
from support.servers import ADMIN_KEY

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
TERMINAL = ("run.completed", "run.failed", "run.cancelled")


@pytest.fixture
def tmp_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(**env: str) -> Cluster:
        made.append(Cluster(tmp_path, env=env))
        return made[-1]

    yield make
    for c in made:
        c.stop()


def dsn(cluster: Cluster) -> str:
    return cluster.url.replace("postgresql+asyncpg://", "postgresql://")


def _data(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _logs(cluster: Cluster, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    conn = await asyncpg.connect(dsn(cluster))
    try:
        rows = await conn.fetch(
            "SELECT run_id, seq, type, data FROM events WHERE run_id = ANY($1::text[]) ORDER BY run_id, seq",
            run_ids,
        )
    finally:
        await conn.close()
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in run_ids}
    for r in rows:
        out[r["run_id"]].append({"seq": r["seq"], "type": r["type"], "data": _data(r["data"])})
    return out


def logs(cluster: Cluster, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    return asyncio.run(_logs(cluster, run_ids))


def log_of(cluster: Cluster, run_id: str) -> list[dict[str, Any]]:
    return logs(cluster, [run_id])[run_id]


def run_rows(cluster: Cluster, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    async def fetch() -> dict[str, dict[str, Any]]:
        conn = await asyncpg.connect(dsn(cluster))
        try:
            rows = await conn.fetch("SELECT * FROM runs WHERE id = ANY($1::text[])", run_ids)
        finally:
            await conn.close()
        json_columns = ("output", "usage", "config", "metadata")
        return {r["id"]: {k: _data(v) if k in json_columns else v for k, v in dict(r).items()} for r in rows}

    return asyncio.run(fetch())


def run_row(cluster: Cluster, run_id: str) -> dict[str, Any]:
    return run_rows(cluster, [run_id])[run_id]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def create_run(api: Proc, script: list[dict[str, Any]], **extra: Any) -> str:
    body = {"name": "queue-tests", "instructions": "Follow the script.", "message": "go",
            "metadata": {"script": script}, **extra}
    r = httpx.post(f"{api.base_url}/v1/runs", json=body, headers=HEADERS, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def pid_of(worker_id: str) -> int:
    """Worker ids are `host:pid:object`."""
    return int(worker_id.split(":")[1])


def assert_gapless(log: list[dict[str, Any]], last_seq: int | None = None) -> None:
    seqs = [e["seq"] for e in log]
    assert seqs == list(range(1, len(log) + 1)), seqs
    if last_seq is not None:
        assert last_seq == len(log)


def starts(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in log if e["type"] == "run.started"]


# --- 2,000 runs, 4 workers, 2 API nodes ------------------------------------------------------------


async def _create_many(apis: list[Proc], agent_id: str, n: int, in_flight: int = 16) -> list[str]:
    gate = asyncio.Semaphore(in_flight)
    body = {"agent_id": agent_id, "message": "go", "metadata": {"script": [{"text": ["a", "b"]}]}}
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)

    async with httpx.AsyncClient(headers=HEADERS, timeout=30, limits=limits) as client:

        async def one(i: int) -> str:
            async with gate:
                r = await client.post(f"{apis[i % len(apis)].base_url}/v1/runs", json=body)
            assert r.status_code == 201, r.text
            return r.json()["id"]

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_2000_runs_on_4_workers_each_run_executed_once(tmp_cluster: Callable[..., Cluster]) -> None:
    cluster = tmp_cluster()
    apis = [cluster.api(), cluster.api()]
    workers = [cluster.worker("--concurrency", "50") for _ in range(4)]
    pids = {w.popen.pid for w in workers if w.popen is not None}

    first = httpx.post(f"{apis[0].base_url}/v1/runs", headers=HEADERS, timeout=10, json={
        "name": "bulk", "instructions": "Say ab.", "message": "go", "metadata": {"script": [{"text": ["a", "b"]}]}})
    assert first.status_code == 201, first.text
    started = time.monotonic()
    ids = [first.json()["id"], *asyncio.run(_create_many(apis, first.json()["agent_id"], 1999))]
    created = time.monotonic() - started
    assert len(set(ids)) == 2000

    async def count_open() -> int:
        conn = await asyncpg.connect(dsn(cluster))
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM runs WHERE id = ANY($1::text[]) AND status NOT IN ('completed', 'failed', 'cancelled')",
                ids)
        finally:
            await conn.close()

    # Bounded, not timed: on 2 cores this takes about a minute, longer when the machine is busy.
    wait_for(lambda: asyncio.run(count_open()) == 0, 300, "2,000 runs finished", interval=0.5)
    elapsed = time.monotonic() - started

    rows = run_rows(cluster, ids)
    assert Counter(r["status"] for r in rows.values()) == {"completed": 2000}
    assert {r["attempt"] for r in rows.values()} == {1}
    assert {json.dumps(r["output"]) for r in rows.values()} == {'"ab"'}

    by_run = logs(cluster, ids)
    per_worker: Counter[int] = Counter()
    for run_id in ids:
        log = by_run[run_id]
        assert_gapless(log, rows[run_id]["last_seq"])
        types = [e["type"] for e in log]
        assert types[0] == "run.queued", (run_id, types)
        [start] = starts(log)  # claimed exactly once
        assert start["attempt"] == 1, (run_id, start)
        assert sum(t in TERMINAL for t in types) == 1 and types[-1] == "run.completed", (run_id, types)
        assert types.count("message.completed") == 1 and "run.requeued" not in types, (run_id, types)
        per_worker[pid_of(start["worker_id"])] += 1
    # The work was spread over the worker processes (and only they executed runs).
    assert set(per_worker) <= pids
    assert len(per_worker) > 1, per_worker
    print(f"\n2,000 runs: created in {created:.1f} s, all done in {elapsed:.1f} s; per worker {dict(per_worker)}")


# --- fencing: SIGSTOP past the lease, SIGCONT after a takeover -------------------------------------


def test_stale_worker_writes_are_refused_after_sigstop(tmp_cluster: Callable[..., Cluster]) -> None:
    cluster = tmp_cluster(RUNYARD_LEASE_SECONDS="2")
    api = cluster.api()
    w1 = cluster.worker()
    delay = 4.0
    run_id = create_run(api, [{"delay": delay, "text": ["slow ", "answer"]}])

    wait_for(lambda: run_row(cluster, run_id)["status"] == "running", 10, "W1 claims the run")
    claimed_at = time.monotonic()
    time.sleep(0.2)  # W1 committed `tools.declared` and sleeps in the model's delay
    w1.signal(signal.SIGSTOP)
    try:
        before = log_of(cluster, run_id)
        assert [e["type"] for e in before] == ["run.queued", "run.started", "tools.declared"]
        assert pid_of(before[1]["data"]["worker_id"]) == w1.popen.pid  # type: ignore[union-attr]

        w2 = cluster.worker()
        wait_for(lambda: run_row(cluster, run_id)["attempt"] == 2, 10, "W2 reaps the expired lease and claims")
        takeover = run_row(cluster, run_id)
        assert takeover["status"] == "running" and pid_of(takeover["worker_id"]) == w2.popen.pid  # type: ignore[union-attr]
        # Thaw W1 once its own model delay is over, while W2 still executes attempt 2: W1 now
        # holds a finished model response for a run it no longer owns, and tries to write it.
        time.sleep(max(0.0, claimed_at + delay + 0.3 - time.monotonic()))
        assert run_row(cluster, run_id)["status"] == "running"
    finally:
        w1.signal(signal.SIGCONT)

    wait_for(lambda: run_row(cluster, run_id)["status"] == "completed", 15, "W2 completes the run")
    time.sleep(1.0)  # room for any stale write of W1 to land (it must not)
    run = run_row(cluster, run_id)
    log = log_of(cluster, run_id)
    types = [e["type"] for e in log]

    assert run["status"] == "completed" and run["output"] == "slow answer" and run["attempt"] == 2
    assert_gapless(log, run["last_seq"])
    assert [s["attempt"] for s in starts(log)] == [1, 2]
    assert [pid_of(s["worker_id"]) for s in starts(log)] == [w1.popen.pid, w2.popen.pid]  # type: ignore[union-attr]
    requeue = types.index("run.requeued")
    assert log[requeue]["data"] == {"reason": "lease expired", "attempt": 1}
    second = [i for i, t in enumerate(types) if t == "run.started"][1]
    assert requeue < second
    # Nothing of W1's model response ever reached the log: everything after the takeover is
    # one attempt's worth of events, and only one of each.
    assert types[: second + 1] == ["run.queued", "run.started", "tools.declared", "run.requeued", "run.started"]
    after = types[second + 1:]
    assert after.count("message.completed") == 1 and after.count("usage") == 1 and after.count("run.completed") == 1
    assert after[-1] == "run.completed"
    assert "".join(e["data"]["delta"] for e in log if e["type"] == "message.delta") == "slow answer"

    # W1 survived the lost lease and keeps working: with W2 gone, it executes a new run.
    w2.stop()
    assert w1.popen is not None and w1.popen.poll() is None
    fresh = create_run(api, [{"text": ["still ", "alive"]}])
    wait_for(lambda: run_row(cluster, fresh)["status"] == "completed", 10, "W1 executes a new run")
    assert pid_of(starts(log_of(cluster, fresh))[0]["worker_id"]) == w1.popen.pid
    # The stale run was not touched by W1's recovery either.
    assert log_of(cluster, run_id) == log and run_row(cluster, run_id)["status"] == "completed"


# --- graceful SIGTERM ----------------------------------------------------------------------------


def test_sigterm_releases_run_at_once_and_another_worker_resumes_it(tmp_cluster: Callable[..., Cluster]) -> None:
    lease = 30.0  # long: a takeover that waited for the lease would blow every bound below
    cluster = tmp_cluster(RUNYARD_LEASE_SECONDS=str(lease))
    api = cluster.api()
    w1 = cluster.worker("--grace", "1")
    script = [
        {"text": ["checking"], "tool_calls": [{"name": "calculator", "args": {"expression": "6 * 7"}}]},
        {"delay": 6, "text": ["the answer ", "is 42"]},
    ]
    run_id = create_run(api, script, tools=["calculator"])

    # W1 ran step 1 and its tool, checkpointed, and now sleeps in step 2's delay.
    wait_for(lambda: "tool.result" in [e["type"] for e in log_of(cluster, run_id)], 10, "W1 runs the tool")
    w2 = cluster.worker()  # idle until W1 lets go of the run
    before = log_of(cluster, run_id)
    assert run_row(cluster, run_id)["attempt"] == 1

    stopped = time.monotonic()
    w1.signal(signal.SIGTERM)
    wait_for(lambda: run_row(cluster, run_id)["attempt"] == 2, 4, "W2 claims the released run")
    takeover = time.monotonic() - stopped
    assert w1.popen is not None and w1.popen.wait(10) == 0  # W1 exits cleanly after its grace
    wait_for(lambda: run_row(cluster, run_id)["status"] == "completed", 15, "W2 completes the run")
    done = time.monotonic() - stopped

    run = run_row(cluster, run_id)
    log = log_of(cluster, run_id)
    types = [e["type"] for e in log]
    assert run["output"] == "the answer is 42" and run["attempt"] == 2
    assert takeover < 3 and done < lease, (takeover, done)
    assert_gapless(log, run["last_seq"])
    assert log[: len(before)] == before  # nothing committed before the shutdown changed

    [requeued] = [e for e in log if e["type"] == "run.requeued"]
    assert requeued["data"] == {"reason": "worker shutdown", "attempt": 1}
    assert [s["attempt"] for s in starts(log)] == [1, 2]
    assert [pid_of(s["worker_id"]) for s in starts(log)] == [w1.popen.pid, w2.popen.pid]  # type: ignore[union-attr]
    assert types.index("run.requeued") + 1 == [i for i, t in enumerate(types) if t == "run.started"][1]

    # Resumed from the checkpoint: step 1 and its tool are not redone, the task is not re-sent,
    # and the tools are declared once.
    assert [e["data"]["text"] for e in log if e["type"] == "message.completed"] == ["checking", "the answer is 42"]
    assert types.count("tool.result") == 1 and types.count("tool.call") == 1
    assert types.count("tools.declared") == 1 and types.count("usage") == 2
    assert types.count("run.completed") == 1 and types[-1] == "run.completed"
    assert run["usage"]["requests"] == 2 and run["usage"]["tool_calls"] == 1
