"""`make bench`: Runyard's hot paths, measured against a real server process. Not tests.

Each scenario starts `runyard serve` on a fresh SQLite file (embedded mode, the offline
`scripted` model) and drives it over HTTP from this process. Prints one table.
Usage: python -m bench [scenario ...]   (default: all)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ADMIN_KEY, ServerProcess  # noqa: E402

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
ROWS: list[tuple[str, str, str, str]] = []


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def report(name: str, measured: str, target: str, ok: bool | None) -> None:
    ROWS.append((name, measured, target, "—" if ok is None else ("met" if ok else "MISSED")))
    print(f"  {name}: {measured}  (target {target})", flush=True)


def with_server(fn: Callable[[ServerProcess], Any], env: dict[str, str] | None = None) -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="runyard-bench-"))
    srv = ServerProcess(f"sqlite+aiosqlite:///{tmp}/bench.db", env=env or {}).start(tmp)
    try:
        return fn(srv)
    finally:
        srv.stop()


def agent(client: httpx.Client, script: list[dict[str, Any]] | None, name: str) -> str:
    body: dict[str, Any] = {"name": name, "instructions": "bench"}
    if script is not None:
        body["metadata"] = {"script": script}
    return client.post("/v1/agents", json=body).json()["id"]


def bench_create_and_wait(srv: ServerProcess) -> None:
    """(a) create + long-poll wait of a one-step run, one at a time."""
    with httpx.Client(base_url=srv.base_url, headers=HEADERS) as client:
        agent_id = agent(client, [{"text": "ok"}], "a")
        samples = []
        for i in range(230):
            t0 = time.perf_counter()
            run = client.post("/v1/runs", json={"agent_id": agent_id, "message": "hi"}).json()
            done = client.get(f"/v1/runs/{run['id']}/wait", params={"timeout": 30}).json()
            elapsed = (time.perf_counter() - t0) * 1000
            assert done["status"] == "completed", done
            if i >= 30:  # warm-up
                samples.append(elapsed)
    med = statistics.median(samples)
    report("(a) create_and_wait, 1 step", f"median {med:.1f} ms, p95 {pct(samples, 95):.1f} ms (n={len(samples)})",
           "median ≤ 5 ms", med <= 5)


async def _create_many(srv: ServerProcess, n: int, agent_id: str, concurrency: int) -> list[str]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=srv.base_url, headers=HEADERS, limits=limits, timeout=60) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> str:
            async with sem:
                r = await client.post("/v1/runs", json={"agent_id": agent_id, "message": "hi"})
                return r.json()["id"]

        return await asyncio.gather(*(one() for _ in range(n)))


async def _wait_all(srv: ServerProcess, ids: list[str], concurrency: int) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=srv.base_url, headers=HEADERS, limits=limits, timeout=120) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(run_id: str) -> dict[str, Any]:
            async with sem:
                while True:
                    run = (await client.get(f"/v1/runs/{run_id}/wait", params={"timeout": 60})).json()
                    if run["status"] in ("completed", "failed", "cancelled"):
                        return run

        return await asyncio.gather(*(one(i) for i in ids))


def bench_concurrent(srv: ServerProcess) -> None:
    """(b) 200 concurrent runs: created at once, wall time until all completed."""
    with httpx.Client(base_url=srv.base_url, headers=HEADERS) as client:
        agent_id = agent(client, [{"text": "ok"}], "b")

    async def main() -> float:
        t0 = time.perf_counter()
        ids = await _create_many(srv, 200, agent_id, 50)
        runs = await _wait_all(srv, ids, 100)
        assert all(r["status"] == "completed" for r in runs)
        return time.perf_counter() - t0

    walls = [asyncio.run(main()) for _ in range(3)]
    wall = statistics.median(walls)
    rate = 200 / wall
    report("(b) 200 concurrent runs", f"{rate:.0f} runs/s (median of 3, {wall * 1000:.0f} ms)", "≥ 1,000 runs/s",
           rate >= 1000)


def bench_stream(srv: ServerProcess) -> None:
    """(c) one run emitting 10,000 message.delta events to one SSE client."""
    with httpx.Client(base_url=srv.base_url, headers=HEADERS, timeout=60) as client:
        agent_id = agent(client, [{"text": ["tok "], "repeat": 10_000}], "c")
        firsts, rates = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            first = None
            deltas = 0
            body = {"agent_id": agent_id, "message": "go", "stream": True}
            with client.stream("POST", "/v1/runs", json=body, headers={"Accept": "text/event-stream"}) as r:
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        if first is None:
                            first = time.perf_counter()
                        if line == "event: message.delta":
                            deltas += 1
            end = time.perf_counter()
            assert deltas == 10_000, deltas
            firsts.append(((first or end) - t0) * 1000)
            rates.append(deltas / (end - t0))
    first_ms, rate = statistics.median(firsts), statistics.median(rates)
    report("(c) 10,000 deltas → SSE: first event", f"{first_ms:.1f} ms (median of 5)", "≤ 5 ms", first_ms <= 5)
    report("(c) 10,000 deltas → SSE: throughput", f"{rate:,.0f} events/s (median of 5)", "≥ 50,000/s", rate >= 50_000)


def bench_waiting(srv: ServerProcess) -> None:
    """(d) 1,000 concurrent runs each waiting 1 s in the model: wall time and peak RSS."""
    with httpx.Client(base_url=srv.base_url, headers=HEADERS) as client:
        agent_id = agent(client, [{"delay": 1.0, "text": "ok"}], "d")

    async def main() -> float:
        t0 = time.perf_counter()
        ids = await _create_many(srv, 1000, agent_id, 100)
        runs = await _wait_all(srv, ids, 200)
        assert all(r["status"] == "completed" for r in runs), {r["status"] for r in runs}
        return time.perf_counter() - t0

    wall = asyncio.run(main())
    rss = _peak_rss_mb(srv.proc.pid)  # type: ignore[union-attr]
    report("(d) 1,000 runs waiting 1 s: wall", f"{wall:.2f} s", "≤ 1.5 s", wall <= 1.5)
    report("(d) 1,000 runs waiting 1 s: peak RSS", f"{rss:.0f} MB", "≤ 400 MB", rss <= 400)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_cancel(srv: ServerProcess) -> None:
    """(e) cancel → run.cancelled seen by an SSE client, for runs parked in a long model delay."""
    with httpx.Client(base_url=srv.base_url, headers=HEADERS, timeout=30) as client:
        # Text first, then a long tool call: the cancel lands while the run is busy.
        agent_id = client.post("/v1/agents", json={
            "name": "e", "instructions": "bench", "tools": ["sleep"],
            "metadata": {"script": [{"text": "working", "tool_calls": [{"name": "sleep", "args": {"seconds": 30}}]}]},
        }).json()["id"]
        samples = []
        for _ in range(100):
            run = client.post("/v1/runs", json={"agent_id": agent_id, "message": "x"}).json()
            headers = {"Accept": "text/event-stream"}
            with client.stream("GET", f"/v1/runs/{run['id']}/events", headers=headers) as r:
                lines = r.iter_lines()
                for line in lines:
                    if line == "event: message.delta":
                        break
                t0 = time.perf_counter()
                client.post(f"/v1/runs/{run['id']}/cancel")
                for line in lines:
                    if line == "event: run.cancelled":
                        samples.append((time.perf_counter() - t0) * 1000)
                        break
    p50, p99 = statistics.median(samples), pct(samples, 99)
    report("(e) cancel → run.cancelled on SSE", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(samples)})",
           "p99 ≤ 50 ms", p99 <= 50)


def bench_answer_resume(srv: ServerProcess) -> None:
    """Answer → run resumed, seen by an SSE client (bench/hitl.py)."""
    from bench.hitl import bench_answer_resume as run

    run(srv)


SCENARIOS = {
    "create_and_wait": bench_create_and_wait,
    "concurrent": bench_concurrent,
    "stream": bench_stream,
    "waiting": bench_waiting,
    "cancel": bench_cancel,
    "answer_resume": bench_answer_resume,
}


def bench_distributed() -> None:
    """Two API nodes + workers on PostgreSQL (bench/distributed.py): its own processes."""
    from bench.distributed import run

    run(report, pct)


CLUSTER_SCENARIOS = {"distributed": bench_distributed}


def main(argv: list[str]) -> None:
    names = argv or [*SCENARIOS, *CLUSTER_SCENARIOS]
    print(f"Runyard benchmarks — embedded SQLite and distributed PostgreSQL, scripted model, {os.cpu_count()} cores",
          flush=True)
    for name in names:
        print(f"[{name}]", flush=True)
        if name in CLUSTER_SCENARIOS:
            CLUSTER_SCENARIOS[name]()
        else:
            with_server(SCENARIOS[name])
    width = max(len(r[0]) for r in ROWS)
    print("\n| scenario | measured | target | |\n|---|---|---|---|")
    for name, measured, target, verdict in ROWS:
        print(f"| {name:<{width}} | {measured} | {target} | {verdict} |")
    Path(".runyard").mkdir(exist_ok=True)
    Path(".runyard/bench.json").write_text(json.dumps(ROWS, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
