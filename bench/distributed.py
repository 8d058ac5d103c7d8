"""Distributed-mode benchmarks: two API nodes (`runyard serve --no-worker`) and workers
(`runyard worker`) on one PostgreSQL database with the PostgreSQL bus, all on this machine,
driven over HTTP from this process. Not tests. Run with `python -m bench distributed`.

(a) worker event → SSE client on the other API node: the event's `created_at` (stamped by the
    worker when it commits the batch, this machine's clock) against the client's receive time;
(b) 1,000 runs created across both API nodes, until all completed: runs/s;
(c) kill -9 of a worker with runs in flight: from the kill to each run's next `run.started`
    on another worker (RUNYARD_LEASE_SECONDS=3);
(d) the throughput of (b) with 1, 2 and 4 workers;
(e) cancel sent to one API node → `run.cancelled` on an SSE client of the other node.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from cluster import Cluster, Proc
from conftest import ADMIN_KEY

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
SSE_HEADERS = {**HEADERS, "Accept": "text/event-stream"}
LEASE = 3.0
# PostgreSQL's default max_connections is 100 and each Runyard process may open up to 42:
# bounded concurrency keeps 2 API nodes + 4 workers under it (see docs/deploy.md).
WORKER_CONCURRENCY = 16
CLIENT_CONCURRENCY = 16
Report = Callable[[str, str, str, "bool | None"], None]
Pct = Callable[[list[float], float], float]


def _agent(node: Proc, name: str, script: list[dict[str, Any]], tools: list[str] | None = None) -> str:
    body: dict[str, Any] = {"name": name, "instructions": "bench", "metadata": {"script": script}}
    if tools:
        body["tools"] = tools
    r = httpx.post(f"{node.base_url}/v1/agents", json=body, headers=HEADERS, timeout=10)
    r.raise_for_status()
    return r.json()["id"]


def _create(node: Proc, agent_id: str) -> str:
    r = httpx.post(f"{node.base_url}/v1/runs", json={"agent_id": agent_id, "message": "go"}, headers=HEADERS,
                   timeout=10)
    r.raise_for_status()
    return r.json()["id"]


def _events(node: Proc, run_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{node.base_url}/v1/runs/{run_id}/events", params={"limit": 1000}, headers=HEADERS, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _sse(url: str, on_event: Callable[[int, str, str, float], bool]) -> None:
    """Read an SSE stream; `on_event(seq, type, data, received_at)` returns True to stop."""
    with httpx.stream("GET", url, headers=SSE_HEADERS, timeout=60) as r:
        seq, type_ = 0, ""
        for line in r.iter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("event: "):
                type_ = line[7:]
            elif line.startswith("data: "):
                if on_event(seq, type_, line[6:], time.time()):
                    return


def bench_latency(a: Proc, b: Proc, report: Report, pct: Pct) -> None:
    """(a) Runs created on A whose worker events are read live on B: created_at → received."""
    steps = [{"delay": 0.3, "text": ["s0"], "tool_calls": [{"name": "current_time"}]}]
    steps += [{"delay": 0.02, "text": [f"s{i}"], "tool_calls": [{"name": "current_time"}]} for i in range(1, 20)]
    steps.append({"delay": 0.02, "text": ["end"]})
    agent_id = _agent(a, "dist-latency", steps, ["current_time"])
    samples: list[float] = []
    for _ in range(12):
        run_id = _create(a, agent_id)
        received: list[tuple[str, str, float]] = []

        def on_event(seq: int, type_: str, data: str, at: float) -> bool:
            received.append((type_, data, at))
            return type_ in ("run.completed", "run.failed", "run.cancelled")

        _sse(f"{b.base_url}/v1/runs/{run_id}/events", on_event)
        # Events the worker wrote after the model's first 0.3 s delay: the stream was live by then.
        for type_, data, at in received:
            if type_ in ("run.queued", "run.started"):
                continue
            samples.append((at - _epoch(json.loads(data)["created_at"])) * 1000)
    p50, p99 = statistics.median(samples), pct(samples, 99)
    report("dist (a) worker event → SSE on other node", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(samples)})",
           "p50 ≤ 10 ms", p50 <= 10)


def bench_cancel(a: Proc, b: Proc, report: Report, pct: Pct) -> None:
    """(e) Cancel sent to B for runs streamed from A, parked in a 30 s model delay."""
    script = [{"text": ["working"], "tool_calls": [{"name": "current_time"}]}, {"delay": 30, "text": "never"}]
    agent_id = _agent(a, "dist-cancel", script, ["current_time"])
    samples: list[float] = []
    with httpx.Client(headers=HEADERS, timeout=30) as client:
        for _ in range(40):
            run_id = _create(a, agent_id)
            with client.stream("GET", f"{a.base_url}/v1/runs/{run_id}/events", headers=SSE_HEADERS) as r:
                lines = r.iter_lines()
                for line in lines:
                    if line == "event: tool.result":
                        break
                time.sleep(0.02)  # the worker sits in the next model request's delay
                t0 = time.perf_counter()
                client.post(f"{b.base_url}/v1/runs/{run_id}/cancel").raise_for_status()
                for line in lines:
                    if line == "event: run.cancelled":
                        samples.append((time.perf_counter() - t0) * 1000)
                        break
    p50, p99 = statistics.median(samples), pct(samples, 99)
    report("dist (e) cancel on B → run.cancelled on A's SSE", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(samples)})",
           "p99 ≤ 100 ms", p99 <= 100)


async def _throughput(nodes: list[Proc], dsn: str, agent_id: str, n: int) -> tuple[float, int]:
    """Create n runs round-robin over the API nodes (CLIENT_CONCURRENCY in flight), until all
    ended; returns (runs/s, how many failed)."""
    conn = await asyncpg.connect(dsn)
    limits = httpx.Limits(max_connections=CLIENT_CONCURRENCY)
    ended = "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed') FROM runs"
    try:
        done0, failed0 = await conn.fetchrow(ended)
        async with httpx.AsyncClient(headers=HEADERS, limits=limits, timeout=60) as client:
            sem = asyncio.Semaphore(CLIENT_CONCURRENCY)
            retried: list[int] = []

            async def create(i: int) -> None:
                async with sem:
                    for attempt in range(3):  # a 5xx (e.g. the database refused a connection): retry
                        node = nodes[(i + attempt) % len(nodes)]
                        r = await client.post(f"{node.base_url}/v1/runs", json={"agent_id": agent_id, "message": "hi"})
                        if r.status_code < 500:
                            break
                        retried.append(r.status_code)
                        await asyncio.sleep(0.05)
                    r.raise_for_status()

            t0 = time.perf_counter()
            await asyncio.gather(*(create(i) for i in range(n)))
            # Completion observed in the database (an observer, not a client that loads the API).
            while True:
                done, failed = await conn.fetchrow(ended)
                if done - done0 + failed - failed0 >= n:
                    if retried:
                        print(f"  … {len(retried)} creates retried after {sorted(set(retried))}", flush=True)
                    return n / (time.perf_counter() - t0), failed - failed0
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError(f"only {done - done0}/{n} runs completed in 120 s")
                await asyncio.sleep(0.005)
    finally:
        await conn.close()


def bench_throughput(cluster: Cluster, a: Proc, b: Proc, agent_id: str, report: Report) -> None:
    """(b) and (d): 1,000 one-step runs across both API nodes with the workers running now."""
    dsn = cluster.url.replace("postgresql+asyncpg://", "postgresql://")
    count = sum(1 for p in cluster.procs if p.args[0] == "worker" and p.popen and p.popen.poll() is None)
    asyncio.run(_throughput([a, b], dsn, agent_id, 100))  # warm-up: pools, prepared statements, new workers
    rate, failed = asyncio.run(_throughput([a, b], dsn, agent_id, 1000))
    note = f", {failed} FAILED (see the workers' logs)" if failed else ""
    print(f"  … {count} worker(s): {rate:.0f} runs/s{note}", flush=True)
    if count == 2:
        report("dist (b) 1,000 runs, 2 API nodes + 2 workers", f"{rate:.0f} runs/s{note}", "≥ 500 runs/s",
               rate >= 500 and not failed)
    report(f"dist (d) 1,000 runs, {count} worker{'s' if count > 1 else ''}", f"{rate:.0f} runs/s{note}",
           f"scales with workers (--concurrency {WORKER_CONCURRENCY} each)", None)


def bench_recovery(report: Report, pct: Pct) -> None:
    """(c) kill -9 a worker holding runs; another worker resumes them after the lease."""
    tmp = Path(tempfile.mkdtemp(prefix="runyard-bench-dist-"))
    cluster = Cluster(tmp, env={"RUNYARD_LEASE_SECONDS": str(LEASE)})
    try:
        a = cluster.api()
        script = [{"text": ["working"], "tool_calls": [{"name": "current_time"}]}, {"delay": 30, "text": "end"}]
        agent_id = _agent(a, "dist-recovery", script, ["current_time"])
        samples: list[float] = []
        lost = 0
        victim = cluster.worker()
        all_runs: list[str] = []
        for _ in range(3):
            runs = [_create(a, agent_id) for _ in range(10)]
            all_runs += runs
            pid = victim.popen.pid  # type: ignore[union-attr]
            _wait(lambda: all(_started_by(a, r, pid) for r in runs), 10)
            survivor = cluster.worker()
            time.sleep(0.2)
            # This round's runs (earlier rounds' runs would reach max_attempts and fail, by design).
            held = runs
            t_kill = time.time()
            victim.kill()
            try:
                _wait(lambda: all(_restarted(a, r, pid) for r in held), 4 * LEASE + 5)
            except RuntimeError:
                pass
            resumed = [t for t in (_restarted(a, r, pid) for r in held) if t is not None]
            samples += [t - t_kill for t in resumed]
            lost += len(held) - len(resumed)
            victim = survivor
        for r in all_runs:  # end them so the workers stop at once
            httpx.post(f"{a.base_url}/v1/runs/{r}/cancel", headers=HEADERS, timeout=10)
        p50, worst = statistics.median(samples), max(samples)
        missing = f", {lost} NOT resumed within {4 * LEASE + 5:.0f} s" if lost else ""
        report("dist (c) kill -9 worker → run.started elsewhere",
               f"p50 {p50:.2f} s, max {worst:.2f} s (n={len(samples)}, 3 kills, lease {LEASE:.0f} s){missing}",
               f"≤ lease + 1 s = {LEASE + 1:.0f} s", worst <= LEASE + 1 and not lost)
    finally:
        cluster.stop()


def _started_by(node: Proc, run_id: str, pid: int) -> bool:
    """The run's latest run.started belongs to the worker process `pid`."""
    started = [e for e in _events(node, run_id) if e["type"] == "run.started"]
    return bool(started) and f":{pid}:" in started[-1]["data"]["worker_id"]


def _restarted(node: Proc, run_id: str, pid: int) -> float | None:
    """When the run was next started by another worker (epoch seconds), if it was."""
    events = _events(node, run_id)
    mine = [i for i, e in enumerate(events) if e["type"] == "run.started" and f":{pid}:" in e["data"]["worker_id"]]
    later = [e for e in events[mine[-1] + 1:] if e["type"] == "run.started"] if mine else []
    return _epoch(later[0]["created_at"]) if later else None


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def run(report: Report, pct: Pct) -> None:
    """All distributed scenarios; rows go through `report` into bench's table."""
    tmp = Path(tempfile.mkdtemp(prefix="runyard-bench-dist-"))
    cluster = Cluster(tmp)
    try:
        a, b = cluster.api(), cluster.api()
        agent_id = _agent(a, "dist-throughput", [{"text": "ok"}])
        worker = ("--concurrency", str(WORKER_CONCURRENCY))
        cluster.worker(*worker)
        bench_throughput(cluster, a, b, agent_id, report)  # (d) 1 worker
        cluster.worker(*worker)
        bench_latency(a, b, report, pct)
        bench_cancel(a, b, report, pct)
        bench_throughput(cluster, a, b, agent_id, report)  # (b) and (d) 2 workers
        cluster.worker(*worker)
        cluster.worker(*worker)
        bench_throughput(cluster, a, b, agent_id, report)  # (d) 4 workers
    finally:
        cluster.stop()
    bench_recovery(report, pct)
