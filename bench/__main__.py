"""`make bench`: Runyard's hot paths against the bare agent loop it drives. Not tests.

Each scenario starts `runyard serve` on a fresh SQLite file (embedded mode, the offline
`scripted` model), drives it from a separate process with a lean keep-alive client
(`bench/load.py`), and reads the server's own CPU time from /proc: the figure a noisy shared
machine disturbs least. In the same run, `bench/floor.py` does the same work with the bare
pydantic-ai loop (no HTTP, no database); overhead = server CPU per run − floor CPU per run.

    python -m bench [scenario ...]      (default: all; `python -m bench.scale` for 1 M runs)
    RUNYARD_BENCH_AGAINST=../old python -m bench    (the same table for another checkout's server)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.servers import ADMIN_KEY, ServerProcess  # noqa: E402

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
AGAINST = os.environ.get("RUNYARD_BENCH_AGAINST", "")
"""A path to another checkout of Runyard: its server is measured instead of this one's."""


class Row:
    def __init__(self, name: str, measured: str, floor: str, ratio: str, target: str, ok: bool | None) -> None:
        self.cells = (name, measured, floor, ratio, target, "—" if ok is None else ("met" if ok else "MISSED"))


ROWS: list[Row] = []


def report(name: str, measured: str, floor: str, ratio: str, target: str, ok: bool | None) -> None:
    ROWS.append(Row(name, measured, floor, ratio, target, ok))
    print(f"  {name}: {measured} | floor {floor} | ratio {ratio} (target {target})", flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _child(module: str, spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)], check=True, capture_output=True, text=True, timeout=600
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def floor(**spec: Any) -> dict[str, Any]:
    return _child("bench.floor", spec)


class Server:
    """A fresh `runyard serve` on SQLite, and the load generator pointed at it."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="runyard-bench-"))
        env = dict(env or {})
        here = Path.cwd()
        if AGAINST:
            # Another checkout's server (before/after figures in one run): its package first on the
            # path, started outside this checkout so the current directory does not shadow it.
            env["PYTHONPATH"] = AGAINST
            os.chdir(tmp)
        try:
            self.proc = ServerProcess(f"sqlite+aiosqlite:///{tmp}/bench.db", env=env).start(tmp)
        finally:
            os.chdir(here)
        assert self.proc.proc is not None
        self.pid = self.proc.proc.pid
        self.agents = 0

    def agent(self, script: list[dict[str, Any]] | None, **extra: Any) -> str:
        self.agents += 1
        body: dict[str, Any] = {"name": f"bench-{self.agents}", "instructions": "bench", **extra}
        if script is not None:
            body["metadata"] = {"script": script}
        r = httpx.post(f"{self.proc.base_url}/v1/agents", json=body, headers=HEADERS, timeout=10)
        r.raise_for_status()
        return r.json()["id"]

    def load(self, **spec: Any) -> tuple[dict[str, Any], float]:
        """Run the load generator; returns its result and the server's CPU seconds meanwhile."""
        before = cpu_seconds(self.pid)
        result = _child("bench.load", {"port": self.proc.port, "key": ADMIN_KEY, **spec})
        return result, cpu_seconds(self.pid) - before

    def cpu(self) -> float:
        """The server's CPU seconds so far."""
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        self.proc.stop()


def with_server(fn: Callable[[Server], None], env: dict[str, str] | None = None) -> None:
    server = Server(env)
    try:
        fn(server)
    finally:
        server.stop()


def _ms(x: float) -> str:
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def bench_create_and_wait(srv: Server) -> None:
    """(a) create + long-poll wait of a one-step run, one at a time."""
    agent_id = srv.agent([{"text": "ok"}])
    srv.load(scenario="create_wait", agent_id=agent_id, n=50)  # warm-up
    n = 300
    result, cpu = srv.load(scenario="create_wait", agent_id=agent_id, n=n)
    base = floor(scenario="sequential", n=n)
    med, p95, fmed = statistics.median(result["ms"]), pct(result["ms"], 95), statistics.median(base["ms"])
    cpu_ms = cpu / n * 1000
    report(
        "(a) create + wait, one at a time",
        f"median {_ms(med)}, p95 {_ms(p95)}; server CPU {_ms(cpu_ms)}/run (n={n})",
        f"median {_ms(fmed)}; CPU {_ms(base['cpu_per_run_ms'])}/run",
        f"{med / fmed:.1f}×",
        "median ≤ 6 ms",
        med <= 6,
    )


def bench_concurrent(srv: Server) -> None:
    """(b) 200 one-step runs in flight at once: runs/s, server CPU per run, Runyard's overhead per run."""
    agent_id = srv.agent([{"text": "ok"}])
    srv.load(scenario="concurrent", agent_id=agent_id, n=200, concurrency=200)  # warm-up
    n, rounds = 1000, 3
    rates, cpus, client = [], [], []
    for _ in range(rounds):
        result, cpu = srv.load(scenario="concurrent", agent_id=agent_id, n=n, concurrency=200)
        rates.append(n / result["wall"])
        cpus.append(cpu / n * 1000)
        client.append(result["client_cpu"] / n * 1000)
    base = floor(scenario="concurrent", n=n, concurrency=200)
    rate, cpu_ms, floor_cpu = statistics.median(rates), statistics.median(cpus), base["cpu_per_run_ms"]
    report(
        "(b) 200 concurrent runs",
        f"{rate:.0f} runs/s; server CPU {_ms(cpu_ms)}/run (median of {rounds} × {n}; client {_ms(statistics.median(client))}/run)",
        f"{base['runs_per_s']:.0f} runs/s; CPU {_ms(floor_cpu)}/run",
        f"{cpu_ms / floor_cpu:.1f}× CPU",
        "≥ 180 runs/s",
        rate >= 180,
    )
    overhead = cpu_ms - floor_cpu
    report(
        "Runyard overhead per one-step run",
        f"{_ms(overhead)} (server CPU − floor CPU, at 200 concurrent)",
        f"{_ms(floor_cpu)}",
        f"{cpu_ms / floor_cpu:.1f}×",
        "≤ 1.5 ms",
        overhead <= 1.5,
    )


def bench_stream(srv: Server) -> None:
    """(c) one run emitting 10,000 message.delta events to one SSE client."""
    deltas = 10_000
    agent_id = srv.agent([{"text": ["tok "], "repeat": deltas}])
    one_step = srv.agent([{"text": "ok"}])
    srv.load(scenario="stream", agent_id=agent_id, deltas=deltas)  # warm-up
    _, cpu_step = srv.load(scenario="create_wait", agent_id=one_step, n=20)
    firsts, rates, per_delta = [], [], []
    for _ in range(5):
        result, cpu = srv.load(scenario="stream", agent_id=agent_id, deltas=deltas)
        firsts.append(result["first_ms"])
        rates.append(result["events_per_s"])
        per_delta.append((cpu - cpu_step / 20) / deltas * 1e6)
    base = floor(scenario="stream", deltas=deltas)
    rate, us = statistics.median(rates), statistics.median(per_delta)
    overhead = us - base["us_per_delta"]
    report(
        "(c) 10,000 deltas → SSE",
        f"{rate:,.0f} events/s; first event {_ms(statistics.median(firsts))}; server {us:.1f} µs/delta (median of 5)",
        f"{base['events_per_s']:,.0f} events/s; {base['us_per_delta']:.1f} µs/delta",
        f"{us / base['us_per_delta']:.1f}× CPU",
        "≥ 15,000 events/s",
        rate >= 15_000,
    )
    report(
        "(c) server overhead per delta",
        f"{overhead:.1f} µs (server − floor)",
        f"{base['us_per_delta']:.1f} µs",
        f"{us / base['us_per_delta']:.1f}×",
        "≤ 10 µs",
        overhead <= 10,
    )


def bench_waiting(srv: Server) -> None:
    """(d) 1,000 concurrent runs each waiting 1 s in the model: wall time and peak RSS."""
    agent_id = srv.agent([{"delay": 1.0, "text": "ok"}])
    n = 1000
    result, _ = srv.load(scenario="concurrent", agent_id=agent_id, n=n, concurrency=n)
    rss = peak_rss_mb(srv.pid)
    base = floor(scenario="concurrent", n=n, concurrency=n, script=[{"delay": 1.0, "text": "ok"}])
    report(
        "(d) 1,000 runs waiting 1 s",
        f"wall {result['wall']:.2f} s; peak RSS {rss:.0f} MB",
        f"wall {base['wall']:.2f} s; RSS {base['peak_rss_mb']:.0f} MB",
        f"{result['wall'] / base['wall']:.1f}× wall",
        "≤ 5 s, ≤ 250 MB",
        result["wall"] <= 5 and rss <= 250,
    )


def bench_cancel(srv: Server) -> None:
    """(e) cancel → run.cancelled at the SSE client, for runs busy in a long tool call."""
    agent_id = srv.agent(
        [{"text": "working", "tool_calls": [{"name": "sleep", "args": {"seconds": 30}}]}], tools=["sleep"]
    )
    srv.load(scenario="cancel", agent_id=agent_id, n=10)
    result, _ = srv.load(scenario="cancel", agent_id=agent_id, n=200)
    base = floor(scenario="cancel", n=200)
    p50, p99 = statistics.median(result["ms"]), pct(result["ms"], 99)
    fp50 = statistics.median(base["ms"])
    report(
        "(e) cancel → run.cancelled on SSE",
        f"p50 {_ms(p50)}, p99 {_ms(p99)} (n={len(result['ms'])})",
        f"p50 {_ms(fp50)}, p99 {_ms(pct(base['ms'], 99))} (task.cancel)",
        f"{p50 / fp50:.0f}×",
        "p99 ≤ 15 ms",
        p99 <= 15,
    )


def bench_answer(srv: Server) -> None:
    """(f) answer → the run's first event after `run.input_received`, at the SSE client."""
    questions = [{"question": f"Q{i}?", "options": ["yes", "no"]} for i in range(10)]
    script: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "ask_user_question", "args": {"questions": [q]}}]} for q in questions
    ]
    agent_id = srv.agent([*script, {"text": "answered"}])
    srv.load(scenario="answer", agent_id=agent_id, runs=2)
    result, _ = srv.load(scenario="answer", agent_id=agent_id, runs=25)
    base = floor(scenario="resume", n=100, turns=5)
    p50, fp50 = statistics.median(result["ms"]), statistics.median(base["ms"])
    report(
        "(f) answer → resumed on SSE",
        f"p50 {_ms(p50)}, p99 {_ms(pct(result['ms'], 99))} (n={len(result['ms'])})",
        f"p50 {_ms(fp50)} (resume a conversation to its first event)",
        f"{p50 / fp50:.0f}×",
        "p50 ≤ 5 ms",
        p50 <= 5,
    )


def bench_sdk(srv: Server) -> None:
    """(h) the Python SDK's own CPU per `create_and_wait`, 200 in flight, against the lean client's."""
    agent_id = srv.agent([{"text": "ok"}])
    n = 1000
    lean, _ = srv.load(scenario="concurrent", agent_id=agent_id, n=n, concurrency=200)
    lean_ms = lean["client_cpu"] / n * 1000
    for transport in ("httpx", "aiohttp"):
        result, _ = srv.load(scenario="sdk", agent_id=agent_id, n=n, concurrency=200, transport=transport)
        sdk_ms = result["sdk_cpu"] / n * 1000
        name = "(h) SDK CPU per create_and_wait" + (
            ", default transport" if transport == "httpx" else ", DefaultAioHttpClient"
        )
        report(
            name,
            f"{_ms(sdk_ms)} (200 in flight, n={n})",
            f"{_ms(lean_ms)} (the bench's lean client)",
            f"{sdk_ms / lean_ms:.1f}×",
            "≤ 3 ms",
            sdk_ms <= 3,
        )


SCENARIOS: dict[str, Callable[[Server], None]] = {
    "create_and_wait": bench_create_and_wait,
    "concurrent": bench_concurrent,
    "stream": bench_stream,
    "waiting": bench_waiting,
    "cancel": bench_cancel,
    "answer": bench_answer,
    "sdk": bench_sdk,
}


def bench_distributed() -> None:
    """(g) two API nodes + two workers on PostgreSQL (bench/distributed.py): its own processes."""
    from bench.distributed import run

    run(report, pct)


def bench_files() -> None:
    """(i) 10 MB upload and download on the db and S3 backends (bench/files_mcp.py)."""
    from bench.files_mcp import bench_files as run

    run(report)


def bench_mcp() -> None:
    """(j) a journaled MCP tool call over a built-in one (bench/files_mcp.py)."""
    from bench.files_mcp import bench_mcp as run

    run(report)


def bench_webhooks() -> None:
    """(k) webhook deliveries per second and commit → delivery latency (bench/webhooks.py)."""
    from bench.webhooks import bench_webhooks as run

    run(report, pct, Server)


CLUSTER_SCENARIOS = {
    "distributed": bench_distributed,
    "files": bench_files,
    "mcp": bench_mcp,
    "webhooks": bench_webhooks,
}
"""Scenarios that start their own servers (and the services they need)."""


def main(argv: list[str]) -> None:
    names = argv or [*SCENARIOS, *CLUSTER_SCENARIOS]
    unknown = set(names) - set(SCENARIOS) - set(CLUSTER_SCENARIOS)
    if unknown:
        sys.exit(f"unknown scenario(s) {sorted(unknown)}; choose from {[*SCENARIOS, *CLUSTER_SCENARIOS]}")
    against = f"; server from {AGAINST}" if AGAINST else ""
    print(f"Runyard benchmarks: scripted model, {os.cpu_count()} cores; server CPU from /proc{against}", flush=True)
    for name in names:
        print(f"[{name}]", flush=True)
        if name in CLUSTER_SCENARIOS:
            CLUSTER_SCENARIOS[name]()
        else:
            with_server(SCENARIOS[name])
    header = ("scenario", "Runyard", "floor (bare agent loop)", "ratio", "target", "")
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in ROWS:
        print("| " + " | ".join(row.cells) + " |")
    Path(".runyard").mkdir(exist_ok=True)
    Path(".runyard/bench.json").write_text(json.dumps([r.cells for r in ROWS], indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
