"""Crash recovery with real processes on PostgreSQL (issue 4, section 3).

- kill -9 a worker mid-run (in a model delay), mid-stream (while deltas are being committed)
  and mid-tool (while `http_get` waits on a slow server): a worker started afterwards resumes
  each run from its last checkpoint once the 2 s lease expires and completes it; completed
  tool calls are never executed again (a counting HTTP server proves it); logs stay gapless.
- Restart PostgreSQL while ~20 runs are in flight: every run ends exactly once, completed,
  within a bounded time; none is left running.
- The reaper fails a run whose worker died `max_attempts` times, with a clear error.

Event logs and run rows are read straight from PostgreSQL with asyncpg.
"""

from __future__ import annotations

import asyncio
import glob
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest

from support.cluster import Cluster
from test_queue import (
    TERMINAL,
    assert_gapless,
    create_run,
    dsn,
    log_of,
    logs,
    pid_of,
    run_row,
    run_rows,
    starts,
    tmp_cluster,  # noqa: F401 - the fixture
    wait_for,
)

LEASE = "2"
CHAOS_ENV = {"RUNYARD_LEASE_SECONDS": LEASE, "RUNYARD_HTTP_GET_ALLOW_PRIVATE": "1"}


class CountingServer(ThreadingHTTPServer):
    """Counts GETs per path and records their Idempotency-Key; `/slow` sleeps on its first hit."""

    daemon_threads = True

    def __init__(self, slow_first_hit: float = 8.0) -> None:
        self.hits: Counter[str] = Counter()
        self.keys: dict[str, list[str | None]] = {}
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805 - the handler, not the server
                with self.lock:
                    self.hits[handler.path] += 1
                    nth = self.hits[handler.path]
                    self.keys.setdefault(handler.path, []).append(handler.headers.get("Idempotency-Key"))
                if handler.path == "/slow" and nth == 1:
                    time.sleep(slow_first_hit)  # the worker calling us is killed meanwhile
                body = f"hello from {handler.path}".encode()
                try:
                    handler.send_response(200)
                    handler.send_header("Content-Type", "text/plain; charset=utf-8")
                    handler.send_header("Content-Length", str(len(body)))
                    handler.end_headers()
                    handler.wfile.write(body)
                except OSError:  # the caller died
                    pass

            def log_message(handler, *args: Any) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def counter() -> Iterator[CountingServer]:
    srv = CountingServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def types_of(log: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in log]


def texts(log: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["text"] for e in log if e["type"] == "message.completed"]


def second_start(log: list[dict[str, Any]]) -> int:
    """Index of the attempt-2 `run.started`."""
    return [i for i, e in enumerate(log) if e["type"] == "run.started"][1]


def assert_resumed_once(log: list[dict[str, Any]], before: list[dict[str, Any]], killed_pid: int, new_pid: int) -> None:
    """The common shape of a run resumed once after a kill -9: one expired lease, one takeover."""
    types = types_of(log)
    assert_gapless(log)
    assert log[: len(before)] == before  # what was committed before the crash is unchanged
    assert [s["attempt"] for s in starts(log)] == [1, 2]
    assert [pid_of(s["worker_id"]) for s in starts(log)] == [killed_pid, new_pid]
    [requeued] = [e for e in log if e["type"] == "run.requeued"]
    assert requeued["data"]["reason"] == "lease expired" and requeued["data"]["attempt"] == 1
    assert types.index("run.requeued") + 1 == second_start(log)
    assert types.count("tools.declared") == 1  # declared at the first start only: the resume used the checkpoint
    assert sum(t in TERMINAL for t in types) == 1 and types[-1] == "run.completed"


# --- kill -9 mid-run, mid-stream, mid-tool ---------------------------------------------------------


def test_kill_9_mid_run_resumes_from_checkpoint(tmp_cluster: Callable[..., Cluster]) -> None:
    cluster = tmp_cluster(**CHAOS_ENV)
    api = cluster.api()
    w1 = cluster.worker()
    script = [
        {"text": ["step one"], "tool_calls": [{"name": "calculator", "args": {"expression": "2 + 3"}}]},
        {"delay": 3, "text": ["step ", "two"]},
    ]
    run_id = create_run(api, script, tools=["calculator"])

    # Killed in step 2's model delay, after the checkpoint holding the tool's result.
    wait_for(lambda: "tool.result" in types_of(log_of(cluster, run_id)), 15, "step 1 and its tool done")
    time.sleep(0.5)
    before = log_of(cluster, run_id)
    assert run_row(cluster, run_id)["status"] == "running"
    w1.kill()
    killed = time.monotonic()

    w2 = cluster.worker()
    wait_for(lambda: run_row(cluster, run_id)["status"] == "completed", 20, "W2 completes the run")
    recovered = time.monotonic() - killed

    run = run_row(cluster, run_id)
    log = log_of(cluster, run_id)
    assert run["output"] == "step two" and run["attempt"] == 2
    assert_resumed_once(log, before, w1.popen.pid, w2.popen.pid)  # type: ignore[union-attr]
    assert run["last_seq"] == len(log)
    # Step 1 was not asked again and its tool not re-run; step 2 was answered once.
    assert texts(log) == ["step one", "step two"]
    assert types_of(log).count("tool.result") == 1 and types_of(log).count("usage") == 2
    assert run["usage"]["requests"] == 2 and run["usage"]["tool_calls"] == 1
    assert recovered < 15, recovered


def test_kill_9_mid_stream_resumes_and_restreams_the_step(tmp_cluster: Callable[..., Cluster]) -> None:
    cluster = tmp_cluster(**CHAOS_ENV)
    api = cluster.api()
    w1 = cluster.worker()
    chunks = 4000  # ~1-2 s of streaming here: a wide window to land the kill in
    script = [
        {"text": ["warming up"], "tool_calls": [{"name": "calculator", "args": {"expression": "1 + 1"}}]},
        {"delay": 0.5, "text": ["x"], "repeat": chunks},
    ]
    run_id = create_run(api, script, tools=["calculator"])

    async def kill_mid_stream() -> int:
        """Poll the committed deltas of step 2 and kill W1 as soon as some (not all) are in."""
        conn = await asyncpg.connect(dsn(cluster))
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                n = await conn.fetchval(
                    "SELECT count(*) FROM events WHERE run_id = $1 AND type = 'message.delta' AND data->>'delta' = 'x'",
                    run_id)
                if n:
                    w1.signal(signal.SIGKILL)
                    w1.popen.wait(10)  # type: ignore[union-attr]
                    return n
                await asyncio.sleep(0.005)
            raise AssertionError("step 2 never started streaming")
        finally:
            await conn.close()

    asyncio.run(kill_mid_stream())
    before = log_of(cluster, run_id)
    partial = [e for e in before if e["type"] == "message.delta" and e["data"]["delta"] == "x"]
    # The kill landed mid-stream: part of the step's deltas are committed, its end is not.
    assert 0 < len(partial) < chunks, len(partial)
    assert "x" * chunks not in texts(before) and run_row(cluster, run_id)["status"] == "running"

    w2 = cluster.worker()
    wait_for(lambda: run_row(cluster, run_id)["status"] == "completed", 25, "W2 completes the run")
    run = run_row(cluster, run_id)
    log = log_of(cluster, run_id)
    assert run["output"] == "x" * chunks and run["attempt"] == 2
    assert_resumed_once(log, before, w1.popen.pid, w2.popen.pid)  # type: ignore[union-attr]
    # Resumed from the checkpoint before step 2: step 1 is not redone, step 2 streams again in
    # full under attempt 2 and completes once.
    assert texts(log) == ["warming up", "x" * chunks]
    after = log[second_start(log):]
    assert "".join(e["data"]["delta"] for e in after if e["type"] == "message.delta") == "x" * chunks
    assert types_of(log).count("tool.result") == 1
    assert run["usage"]["requests"] == 2


def test_kill_9_mid_tool_replays_done_tools_and_retries_the_interrupted_one(
    tmp_cluster: Callable[..., Cluster], counter: CountingServer
) -> None:
    cluster = tmp_cluster(**CHAOS_ENV)
    api = cluster.api()
    w1 = cluster.worker()
    script = [
        {"text": ["fetch fast"], "tool_calls": [{"name": "http_get", "args": {"url": f"{counter.url}/fast"}}]},
        {"text": ["fetch slow"], "tool_calls": [{"name": "http_get", "args": {"url": f"{counter.url}/slow"}}]},
        {"text": ["all done"]},
    ]
    run_id = create_run(api, script, tools=["http_get"])

    # W1 is inside the second http_get (the server holds the request) when it dies.
    wait_for(lambda: counter.hits["/slow"] == 1, 15, "W1 calls /slow")
    time.sleep(0.2)
    before = log_of(cluster, run_id)
    assert [e["data"]["result"] for e in before if e["type"] == "tool.result"] == ["HTTP 200\nhello from /fast"]
    w1.kill()

    w2 = cluster.worker()
    wait_for(lambda: run_row(cluster, run_id)["status"] in ("completed", "failed", "cancelled"), 20,
             "W2 finishes the run")
    run = run_row(cluster, run_id)
    log = log_of(cluster, run_id)
    types = types_of(log)
    assert run["status"] == "completed", run["error"]
    assert_resumed_once(log, before, w1.popen.pid, w2.popen.pid)  # type: ignore[union-attr]

    # The completed call to /fast was journaled: replayed, never executed again. The call to
    # /slow never finished, so it ran again, with the same idempotency key as the first time.
    assert counter.hits == {"/fast": 1, "/slow": 2}
    calls = [e["data"] for e in log if e["type"] == "tool.call"]
    assert [c["args"]["url"] for c in calls] == [f"{counter.url}/fast", f"{counter.url}/slow"]
    assert counter.keys["/slow"] == [f"{run_id}:{calls[1]['tool_call_id']}"] * 2
    results = [e["data"] for e in log if e["type"] == "tool.result"]
    assert [r["tool_call_id"] for r in results] == [c["tool_call_id"] for c in calls]
    assert [r["result"] for r in results] == ["HTTP 200\nhello from /fast", "HTTP 200\nhello from /slow"]
    # The model was asked each step once (step 2's answer came from the checkpoint), and the
    # run ends with step 3's answer, not with the text of the interrupted step.
    assert texts(log) == ["fetch fast", "fetch slow", "all done"]
    assert run["output"] == "all done"
    assert types.count("usage") == 3 and run["usage"]["requests"] == 3 and run["usage"]["tool_calls"] == 2


# --- restart PostgreSQL under load ----------------------------------------------------------------


def _pg_ctl(action: str) -> subprocess.CompletedProcess[str]:
    version = sorted(p.rsplit("/", 1)[1] for p in glob.glob("/etc/postgresql/*"))[-1]
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                          capture_output=True, text=True, timeout=60)


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], timeout=10).returncode == 0


def test_postgres_restart_with_runs_in_flight(tmp_cluster: Callable[..., Cluster]) -> None:
    cluster = tmp_cluster(RUNYARD_LEASE_SECONDS=LEASE)
    api = cluster.api()
    workers = [cluster.worker(), cluster.worker()]
    scripts = []
    for i in range(20):
        delay = 1 + (i % 3)  # 1-3 s per step: every run is mid-flight when PostgreSQL goes away
        calc = [{"name": "calculator", "args": {"expression": f"{i} * 2"}}]
        scripts.append([
            {"delay": delay, "text": [f"run {i} "], "tool_calls": calc},
            {"delay": delay, "text": [f"run {i} again "], "tool_calls": calc},
            {"delay": delay, "text": [f"done {i}"]},
        ])
    ids = [create_run(api, script, tools=["calculator"]) for script in scripts]
    wait_for(lambda: all(r["status"] != "pending" for r in run_rows(cluster, ids).values()), 15, "20 runs claimed")
    time.sleep(0.5)
    in_flight = sum(r["status"] == "running" for r in run_rows(cluster, ids).values())
    assert in_flight >= 15, in_flight

    try:
        restarted = _pg_ctl("restart")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        wait_for(_pg_ready, 30, "PostgreSQL accepts connections again", interval=0.2)
    finally:
        if not _pg_ready():
            _pg_ctl("start")
            wait_for(_pg_ready, 60, "PostgreSQL is back", interval=0.5)

    def settled() -> bool:
        try:
            return all(r["status"] in ("completed", "failed", "cancelled") for r in run_rows(cluster, ids).values())
        except (OSError, asyncpg.PostgresError):
            return False

    wait_for(settled, 45, "every run ends after the restart", interval=0.5)
    rows = run_rows(cluster, ids)
    by_run = logs(cluster, ids)
    failures = {i: rows[i]["error"] for i in ids if rows[i]["status"] != "completed"}
    assert not failures, failures
    for n, run_id in enumerate(ids):
        log = by_run[run_id]
        types = types_of(log)
        assert_gapless(log, rows[run_id]["last_seq"])
        assert sum(t in TERMINAL for t in types) == 1 and types[-1] == "run.completed", (run_id, types)
        assert rows[run_id]["output"] == f"done {n}"
        assert texts(log)[-1] == f"done {n}"
        assert types.count("tool.result") == 2, (run_id, types)  # each tool call ran once, restart or not
    assert all(w.popen is not None and w.popen.poll() is None for w in workers)  # the workers rode it out


# --- the reaper: max_attempts ---------------------------------------------------------------------


def test_run_fails_after_max_attempts_lost_leases(tmp_cluster: Callable[..., Cluster]) -> None:
    cluster = tmp_cluster(RUNYARD_LEASE_SECONDS=LEASE, RUNYARD_MAX_ATTEMPTS="2")
    api = cluster.api()
    run_id = create_run(api, [{"delay": 60, "text": ["never"]}])

    killed = []
    for attempt in (1, 2):
        w = cluster.worker()
        wait_for(lambda: (lambda r: r["status"] == "running" and r["attempt"] == attempt)(run_row(cluster, run_id)),
                 15, f"attempt {attempt} claimed")
        assert pid_of(run_row(cluster, run_id)["worker_id"]) == w.popen.pid  # type: ignore[union-attr]
        w.kill()
        killed.append(w.popen.pid)  # type: ignore[union-attr]

    reaper = cluster.worker()  # its reaper finds the second expired lease
    wait_for(lambda: run_row(cluster, run_id)["status"] == "failed", 15, "the run fails")
    time.sleep(1.5)  # a failed run is not claimed again
    run = run_row(cluster, run_id)
    log = log_of(cluster, run_id)
    types = types_of(log)
    assert run["status"] == "failed" and run["attempt"] == 2
    assert "max_attempts" in run["error"] and "(2)" in run["error"], run["error"]
    assert "lease" in run["error"]
    assert_gapless(log, run["last_seq"])
    assert [s["attempt"] for s in starts(log)] == [1, 2]
    assert [pid_of(s["worker_id"]) for s in starts(log)] == killed
    assert [e["data"]["reason"] for e in log if e["type"] == "run.requeued"] == ["lease expired"]
    assert sum(t in TERMINAL for t in types) == 1 and types[-1] == "run.failed"
    assert log[-1]["data"]["error"] == run["error"]
    assert reaper.popen is not None and reaper.popen.poll() is None
