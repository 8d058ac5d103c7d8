"""(g) Distributed mode: two API nodes (`runyard serve --no-worker`) and `runyard worker`
processes on one fresh PostgreSQL database with the PostgreSQL bus, all on this machine. Not
tests: `python -m bench distributed`.

- throughput: ~1,000 one-step runs, half driven at each API node by its own load-generator
  process (`python -m bench.load`, scenario `concurrent`, the lean keep-alive client); runs/s
  (median of 3) and the CPU of every Runyard process (API nodes + workers, from /proc) per run,
  against the bare agent loop (`bench.floor` concurrent);
- cross-node latency: runs created on node A, executed by a worker, followed live by an SSE
  client on node B: each event's `created_at` (stamped by the worker's process as it appends the
  batch, this machine's clock) against the client's receive time; the floor is a bare
  PostgreSQL NOTIFY → LISTEN between two connections;
- cross-node cancel: cancel sent to node B → `run.cancelled` on an SSE client of node A;
- scaling: the throughput with 1 worker against 2 (on a 2-core machine more workers only
  share the same cores, so there is no 4-worker round);
- recovery: kill -9 of a worker with runs in flight → each run's next `run.started` on
  another worker, on the same cluster with workers leasing for RUNYARD_LEASE_SECONDS=3.

PostgreSQL's max_connections is 100. Each Runyard process holds up to DB_POOL + DB_OVERFLOW
pooled connections plus 2 for the bus: at most 5 processes at once here, under 60.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from support.cluster import Cluster, Proc
from support.servers import ADMIN_KEY

from bench.lean import Connection

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
LEASE = 3.0
DB_POOL, DB_OVERFLOW = 5, 5
POOL_ENV = {"RUNYARD_DB_POOL_SIZE": str(DB_POOL), "RUNYARD_DB_MAX_OVERFLOW": str(DB_OVERFLOW)}
WORKER_CONCURRENCY = 32
N, ROUNDS, CLIENT_CONCURRENCY = 1000, 3, 32  # per round; in flight per load process (two of them)
SCALE_N = 300  # one round with 1 worker
KILLS = 3
TERMINAL = ("run.completed", "run.failed", "run.cancelled")
Report = Callable[[str, str, str, str, str, "bool | None"], None]
Pct = Callable[[list[float], float], float]


def _ms(x: float) -> str:
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def _agent(node: Proc, name: str, script: list[dict[str, Any]], tools: list[str] | None = None) -> str:
    body: dict[str, Any] = {"name": name, "instructions": "bench", "metadata": {"script": script}}
    if tools:
        body["tools"] = tools
    r = httpx.post(f"{node.base_url}/v1/agents", json=body, headers=HEADERS, timeout=10)
    r.raise_for_status()
    return r.json()["id"]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _alive(cluster: Cluster) -> list[Proc]:
    return [p for p in cluster.procs if p.popen is not None and p.popen.poll() is None]


def _workers(cluster: Cluster) -> int:
    return sum(1 for p in _alive(cluster) if p.args[0] == "worker")


def _cpu(cluster: Cluster) -> dict[int, float]:
    """CPU seconds of each live Runyard process of the cluster (API nodes + workers), by pid."""
    from bench.__main__ import cpu_seconds

    return {p.popen.pid: cpu_seconds(p.popen.pid) for p in _alive(cluster)}  # type: ignore[union-attr]


# --- throughput -------------------------------------------------------------------------------


def _load_round(cluster: Cluster, nodes: list[Proc], agent_id: str, n: int) -> tuple[float, float, float]:
    """n runs, split over the API nodes, each driven by its own `bench.load` process at once.
    Returns (runs/s, Runyard CPU ms per run, load-generator CPU ms per run)."""
    share = [n // len(nodes) + (i < n % len(nodes)) for i in range(len(nodes))]
    specs = [
        {
            "scenario": "concurrent",
            "port": node.port,
            "key": ADMIN_KEY,
            "agent_id": agent_id,
            "n": k,
            "concurrency": min(CLIENT_CONCURRENCY, k),
        }
        for node, k in zip(nodes, share, strict=True)
    ]
    cpu0 = _cpu(cluster)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.load", json.dumps(s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in specs
    ]
    outputs = [child.communicate(timeout=300) for child in children]  # both, even if one failed
    for child, (_, err) in zip(children, outputs, strict=True):
        if child.returncode:
            raise RuntimeError(f"bench.load failed ({child.returncode}): {err[-2000:]}")
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    cpu1 = _cpu(cluster)
    cpu = sum(cpu1[pid] - cpu0[pid] for pid in cpu1.keys() & cpu0.keys())
    # The two generators start together; the round lasts as long as the slower one.
    wall = max(r["wall"] for r in results)
    return n / wall, cpu / n * 1000, sum(r["client_cpu"] for r in results) / n * 1000


def bench_throughput(
    cluster: Cluster, nodes: list[Proc], agent_id: str, n: int, rounds: int, warm: int
) -> tuple[float, float, float, int]:
    """`rounds` rounds of n runs (after `warm` warm-up runs: pools, prepared statements, new
    workers). Returns the medians (runs/s, Runyard CPU ms/run, load-generator CPU ms/run) of the
    rounds that completed (NaN if none did), and how many failed (a run not completed, a 5xx)."""
    samples, failed = [], 0
    for i in range(rounds + bool(warm)):
        try:
            sample = _load_round(cluster, nodes, agent_id, warm if warm and i == 0 else n)
        except RuntimeError as exc:
            print(f"  … round FAILED (logs in {cluster.tmp}): {str(exc).strip().splitlines()[-1][:400]}", flush=True)
            failed += not (warm and i == 0)
            continue
        if not (warm and i == 0):
            samples.append(sample)
    if not samples:
        return math.nan, math.nan, math.nan, failed
    rate, cpu, client = (statistics.median(s[i] for s in samples) for i in range(3))
    print(
        f"  … {_workers(cluster)} worker(s): {', '.join(f'{s[0]:.0f}' for s in samples)} runs/s; "
        f"Runyard CPU {', '.join(_ms(s[1]) for s in samples)}/run; load generators {_ms(client)}/run",
        flush=True,
    )
    return rate, cpu, client, failed


# --- cross-node latency -----------------------------------------------------------------------


async def _latency(a: Proc, b: Proc, agent_id: str, runs: int) -> list[float]:
    """Runs created on A whose worker events are read live on B: created_at → received (ms)."""
    control = Connection("127.0.0.1", a.port, ADMIN_KEY)  # type: ignore[arg-type]
    samples: list[float] = []
    for _ in range(runs):
        run = await control.request("POST", "/v1/runs", {"agent_id": agent_id, "message": "go"})
        watcher = Connection("127.0.0.1", b.port, ADMIN_KEY)  # type: ignore[arg-type]
        received: list[tuple[str, bytes, float]] = []
        async for kind, data in watcher.sse("GET", f"/v1/runs/{run['id']}/events"):
            received.append((kind, data, time.time()))
            if kind in TERMINAL:
                break
        watcher.close()
        assert received and received[-1][0] == "run.completed", received[-1:]
        # The first step's 0.3 s model delay lets the stream go live: skip what came before it
        # (run.queued and run.started may be read from the backlog, not live).
        for kind, data, at in received:
            if kind not in ("run.queued", "run.started"):
                samples.append((at - _epoch(json.loads(data)["created_at"])) * 1000)
    control.close()
    return samples


async def _notify_floor(dsn: str, n: int) -> list[float]:
    """The bare transport under the PostgreSQL bus: NOTIFY on one connection → LISTEN on another."""
    listener, sender = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    got: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener("bench_floor", lambda *_: got.put_nowait(time.perf_counter()))
    samples = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            await sender.execute("NOTIFY bench_floor, 'x'")
            samples.append((await asyncio.wait_for(got.get(), 5) - t0) * 1000)
            await asyncio.sleep(0.005)
    finally:
        await listener.close()
        await sender.close()
    return samples


def bench_latency(cluster: Cluster, a: Proc, b: Proc, report: Report, pct: Pct) -> None:
    steps: list[dict[str, Any]] = [{"delay": 0.3, "text": ["s0"], "tool_calls": [{"name": "current_time"}]}]
    steps += [{"delay": 0.02, "text": [f"s{i}"], "tool_calls": [{"name": "current_time"}]} for i in range(1, 10)]
    steps.append({"delay": 0.02, "text": ["end"]})
    agent_id = _agent(a, "dist-latency", steps, ["current_time"])
    asyncio.run(_latency(a, b, agent_id, 1))  # warm-up
    samples = asyncio.run(_latency(a, b, agent_id, 8))
    base = asyncio.run(_notify_floor(cluster.url.replace("postgresql+asyncpg://", "postgresql://"), 200))
    p50, p95, f50 = statistics.median(samples), pct(samples, 95), statistics.median(base)
    report(
        "(g) worker event → SSE on the other API node",
        f"p50 {_ms(p50)}, p95 {_ms(p95)} (n={len(samples)}, event created_at → received)",
        f"p50 {_ms(f50)}, p95 {_ms(pct(base, 95))} (bare PostgreSQL NOTIFY → LISTEN)",
        f"{p50 / f50:.0f}×",
        "p50 ≤ 10 ms",
        p50 <= 10,
    )


# --- cross-node cancel ------------------------------------------------------------------------


async def _cancel(a: Proc, b: Proc, agent_id: str, runs: int) -> list[float]:
    """Runs streamed from A, parked in a 30 s model delay; cancel sent to B."""
    creator = Connection("127.0.0.1", a.port, ADMIN_KEY)  # type: ignore[arg-type]
    canceller = Connection("127.0.0.1", b.port, ADMIN_KEY)  # type: ignore[arg-type]
    samples: list[float] = []
    for _ in range(runs):
        run = await creator.request("POST", "/v1/runs", {"agent_id": agent_id, "message": "go"})
        watcher = Connection("127.0.0.1", a.port, ADMIN_KEY)  # type: ignore[arg-type]
        t0 = 0.0
        async for kind, _ in watcher.sse("GET", f"/v1/runs/{run['id']}/events"):
            if kind == "tool.result":
                await asyncio.sleep(0.02)  # the worker sits in the next model request's delay
                t0 = time.perf_counter()
                await canceller.request("POST", f"/v1/runs/{run['id']}/cancel")
            elif kind in TERMINAL:
                assert kind == "run.cancelled", kind
                samples.append((time.perf_counter() - t0) * 1000)
                break
        watcher.close()
    creator.close()
    canceller.close()
    return samples


def bench_cancel(a: Proc, b: Proc, report: Report, pct: Pct) -> None:
    from bench.__main__ import floor

    script = [{"text": ["working"], "tool_calls": [{"name": "current_time"}]}, {"delay": 30, "text": "never"}]
    agent_id = _agent(a, "dist-cancel", script, ["current_time"])
    asyncio.run(_cancel(a, b, agent_id, 2))  # warm-up
    samples = asyncio.run(_cancel(a, b, agent_id, 40))
    base = floor(scenario="cancel", n=40)
    p50, p99, f50 = statistics.median(samples), pct(samples, 99), statistics.median(base["ms"])
    report(
        "(g) cancel on B → run.cancelled on A's SSE",
        f"p50 {_ms(p50)}, p99 {_ms(p99)} (n={len(samples)})",
        f"p50 {_ms(f50)}, p99 {_ms(pct(base['ms'], 99))} (task.cancel)",
        f"{p50 / f50:.0f}×",
        "p99 ≤ 100 ms",
        p99 <= 100,
    )


# --- recovery ---------------------------------------------------------------------------------


def _events(node: Proc, run_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{node.base_url}/v1/runs/{run_id}/events", params={"limit": 1000}, headers=HEADERS, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def _started_by(node: Proc, run_id: str, pid: int) -> bool:
    """The run's latest run.started belongs to the worker process `pid`."""
    started = [e for e in _events(node, run_id) if e["type"] == "run.started"]
    return bool(started) and f":{pid}:" in started[-1]["data"]["worker_id"]


def _restarted(node: Proc, run_id: str, pid: int) -> float | None:
    """When the run was next started by another worker (epoch seconds), if it was."""
    events = _events(node, run_id)
    mine = [i for i, e in enumerate(events) if e["type"] == "run.started" and f":{pid}:" in e["data"]["worker_id"]]
    later = [e for e in events[mine[-1] + 1 :] if e["type"] == "run.started"] if mine else []
    return _epoch(later[0]["created_at"]) if later else None


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def bench_recovery(cluster: Cluster, a: Proc, report: Report) -> None:
    """kill -9 a worker holding runs; another worker resumes them once the lease has expired.
    On the throughput cluster, once its workers have stopped: these workers (alone) lease for
    LEASE seconds, and a worker reaps expired leases every lease / 3."""
    for proc in _alive(cluster):
        if proc.args[0] == "worker":
            proc.stop()
    lease = {"RUNYARD_LEASE_SECONDS": str(LEASE)}
    script = [{"text": ["working"], "tool_calls": [{"name": "current_time"}]}, {"delay": 30, "text": "end"}]
    agent_id = _agent(a, "dist-recovery", script, ["current_time"])
    samples: list[float] = []
    lost = 0
    victim = cluster.worker(**lease)
    all_runs: list[str] = []
    try:
        for _ in range(KILLS):
            runs = []
            for _ in range(10):
                r = httpx.post(
                    f"{a.base_url}/v1/runs", json={"agent_id": agent_id, "message": "go"}, headers=HEADERS, timeout=10
                )
                r.raise_for_status()
                runs.append(r.json()["id"])
            all_runs += runs
            pid = victim.popen.pid  # type: ignore[union-attr]
            _wait(lambda: all(_started_by(a, r, pid) for r in runs), 10)  # noqa: B023
            survivor = cluster.worker(**lease)
            time.sleep(0.2)
            # Only this round's runs (earlier rounds' would reach max_attempts and fail, by design).
            t_kill = time.time()
            victim.kill()
            try:
                _wait(lambda: all(_restarted(a, r, pid) for r in runs), 4 * LEASE + 5)  # noqa: B023
            except RuntimeError:
                pass
            resumed = [t for t in (_restarted(a, r, pid) for r in runs) if t is not None]
            samples += [t - t_kill for t in resumed]
            lost += len(runs) - len(resumed)
            victim = survivor
    finally:
        for r in all_runs:  # end them so the workers stop at once
            httpx.post(f"{a.base_url}/v1/runs/{r}/cancel", headers=HEADERS, timeout=10)
    p50, worst = statistics.median(samples), max(samples)
    missing = f", {lost} NOT resumed within {4 * LEASE + 5:.0f} s" if lost else ""
    report(
        "(g) kill -9 worker → run.started elsewhere",
        f"p50 {p50:.2f} s, max {worst:.2f} s (n={len(samples)}, {KILLS} kills){missing}",
        f"lease {LEASE:.0f} s (a dead worker's runs wait out its lease)",
        f"{worst / LEASE:.1f}× (max)",
        f"max ≤ lease + 1 s = {LEASE + 1:.0f} s",
        worst <= LEASE + 1 and not lost,
    )


# --- all of (g) -------------------------------------------------------------------------------


def run(report: Report, pct: Pct) -> None:
    """All of (g); rows go through bench's `report(name, measured, floor, ratio, target, ok)`."""
    from bench.__main__ import floor

    t0 = time.monotonic()
    base = floor(scenario="concurrent", n=N, concurrency=2 * CLIENT_CONCURRENCY)
    floor_cpu = base["cpu_per_run_ms"]
    floor_cell = f"{base['runs_per_s']:.0f} runs/s; CPU {_ms(floor_cpu)}/run"
    worker = ("--concurrency", str(WORKER_CONCURRENCY))
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="runyard-bench-dist-")), env=POOL_ENV)
    try:
        a, b = cluster.api(), cluster.api()
        agent_id = _agent(a, "dist-throughput", [{"text": "ok"}])
        first = cluster.worker(*worker)
        cluster.worker(*worker)
        rate, cpu, client, failed = bench_throughput(cluster, [a, b], agent_id, N, ROUNDS, warm=100)
        note = f"; {failed} of {ROUNDS} rounds FAILED (logs in {cluster.tmp})" if failed else ""
        report(
            "(g) distributed: 2 API nodes + 2 workers, PostgreSQL",
            f"{rate:.0f} runs/s; Runyard CPU {_ms(cpu)}/run, all 4 processes (median of {ROUNDS - failed} × {N}, "
            f"{2 * CLIENT_CONCURRENCY} in flight; load generators {_ms(client)}/run){note}",
            floor_cell,
            f"{cpu / floor_cpu:.1f}× CPU",
            "≥ 60 runs/s",
            rate >= 60 and not failed,
        )
        _took("throughput", t0)
        _guard("(g) worker event → SSE on the other API node", report, bench_latency, cluster, a, b, report, pct)
        _guard("(g) cancel on B → run.cancelled on A's SSE", report, bench_cancel, a, b, report, pct)
        _took("latency and cancel", t0)
        first.stop()
        one, one_cpu, _, _ = bench_throughput(cluster, [a, b], agent_id, SCALE_N, 1, warm=0)
        report(
            "(g) scaling: 1 → 2 workers",
            f"{_rate(one)} → {_rate(rate)} runs/s; Runyard CPU {_ms(one_cpu)} → {_ms(cpu)}/run "
            f"({SCALE_N} runs with 1, median of {ROUNDS} × {N} with 2; --concurrency {WORKER_CONCURRENCY} each)",
            floor_cell,
            f"{one_cpu / floor_cpu:.1f}× → {cpu / floor_cpu:.1f}× CPU",
            "—",
            None,
        )
        _took("scaling", t0)
        _guard("(g) kill -9 worker → run.started elsewhere", report, bench_recovery, cluster, a, report)
    finally:
        cluster.stop()
    _took("all of (g)", t0)


def _rate(x: float) -> str:
    return "FAILED" if math.isnan(x) else f"{x:.0f}"


def _guard(name: str, report: Report, fn: Callable[..., None], *args: Any) -> None:
    """Run one sub-scenario; if it breaks (the server may be mid-edit), a FAILED row, and on."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        report(name, f"FAILED: {type(exc).__name__}: {str(exc)[:300]}", "—", "—", "—", False)


def _took(what: str, t0: float) -> None:
    print(f"  … {what} done at {time.monotonic() - t0:.0f} s", flush=True)
