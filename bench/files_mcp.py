"""Benchmarks of run files and MCP tools (`python -m bench files mcp`).

files: upload and download of one 10 MB file through `POST /v1/files` and `GET /v1/files/{id}/content`,
on the `db` backend and on S3 (moto's S3 server on 127.0.0.1, in this process, so its CPU is not
the server's). The floor is the same bytes written and read straight to the backend, without
Runyard: one SQLite INSERT and SELECT of the blob, or one obstore put and get.

mcp: one-step runs that call a tool 10 times, through an MCP server over streamable HTTP (in
this process) against the built-in `calculator`; the difference per call is what a journaled MCP
call costs over a built-in one, and a run with the server but no call shows the connection's cost.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support.mcp_servers import MCPHttpServer
from support.s3 import s3_server

MB = 1024 * 1024
SIZE = 10 * MB
ROUNDS = 5
CALLS = 10


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _direct_db(payload: bytes) -> tuple[float, float]:
    """Seconds to write and read the blob in a SQLite file with no server: the db backend's floor."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE blobs (key TEXT PRIMARY KEY, content BLOB)")
        writes, reads = [], []
        for i in range(ROUNDS):
            writes.append(_timed(lambda i=i: db.execute("INSERT INTO blobs VALUES (?, ?)", (str(i), payload))))
            reads.append(_timed(lambda i=i: db.execute("SELECT content FROM blobs WHERE key = ?", (str(i),)).fetchone()))
        db.close()
    return statistics.median(writes), statistics.median(reads)


def _direct_s3(env: dict[str, str], bucket: str, payload: bytes) -> tuple[float, float]:
    """Seconds for one obstore put and get of the blob: the S3 backend's floor."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=env["AWS_ENDPOINT_URL"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_REGION"],
        client_options={"allow_http": True},
    )
    writes, reads = [], []
    for i in range(ROUNDS):
        writes.append(_timed(lambda i=i: obstore.put(store, f"floor/{i}", payload)))
        reads.append(_timed(lambda i=i: obstore.get(store, f"floor/{i}").bytes()))
    return statistics.median(writes), statistics.median(reads)


def _transfer(srv: Any, payload: bytes) -> dict[str, float]:
    """Median seconds and server CPU seconds of uploading and downloading `payload`, ROUNDS times."""
    from bench.__main__ import HEADERS, cpu_seconds

    ups, downs, up_cpu, down_cpu = [], [], [], []
    with httpx.Client(base_url=srv.proc.base_url, headers=HEADERS, timeout=120) as http:
        for i in range(ROUNDS + 1):
            # Each round a new name and content: a re-upload of the same bytes would cost the same anyway.
            body = payload[:-8] + i.to_bytes(8, "big")
            cpu0, t0 = cpu_seconds(srv.pid), time.perf_counter()
            r = http.post("/v1/files", files={"file": (f"big-{i}.bin", body, "application/octet-stream")})
            t1, cpu1 = time.perf_counter(), cpu_seconds(srv.pid)
            r.raise_for_status()
            file_id = r.json()["id"]
            content = http.get(f"/v1/files/{file_id}/content")
            t2, cpu2 = time.perf_counter(), cpu_seconds(srv.pid)
            assert content.status_code == 200 and len(content.content) == SIZE, content.status_code
            if i == 0:
                continue  # warm-up
            ups.append(t1 - t0)
            downs.append(t2 - t1)
            up_cpu.append(cpu1 - cpu0)
            down_cpu.append(cpu2 - cpu1)
    return {
        "up_s": statistics.median(ups),
        "down_s": statistics.median(downs),
        "up_cpu": statistics.median(up_cpu),
        "down_cpu": statistics.median(down_cpu),
    }


def bench_files(report: Callable[..., None]) -> None:
    """(i) 10 MB upload and download on both storage backends."""
    from bench.__main__ import Server

    payload = os.urandom(SIZE)
    with s3_server() as s3:
        backends: list[tuple[str, dict[str, str], tuple[float, float]]] = [
            ("db", {}, _direct_db(payload)),
            ("s3", {**s3.env, "RUNYARD_FILES": s3.url("bench")}, _direct_s3(s3.env, s3.bucket, payload)),
        ]
        for name, env, (floor_up, floor_down) in backends:
            srv = Server(env)
            try:
                got = _transfer(srv, payload)
            finally:
                srv.stop()
            for what, seconds, cpu, floor_s in (
                ("upload", got["up_s"], got["up_cpu"], floor_up),
                ("download", got["down_s"], got["down_cpu"], floor_down),
            ):
                report(
                    f"(i) 10 MB {what}, RUNYARD_FILES={name}",
                    f"{SIZE / MB / seconds:.0f} MB/s; server CPU {cpu * 1000:.0f} ms (median of {ROUNDS})",
                    f"{SIZE / MB / floor_s:.0f} MB/s straight to the backend",
                    f"{seconds / floor_s:.1f}× time",
                    "—",
                    None,
                )


def bench_mcp(report: Callable[..., None]) -> None:
    """(j) a journaled MCP tool call over a built-in one, and the MCP connection per run attempt."""
    from bench.__main__ import Server

    mcp = MCPHttpServer().start()
    srv = Server({"RUNYARD_MCP_ALLOW_PRIVATE": "true"})
    try:
        server = [{"name": "calc", "url": mcp.url}]
        calls_builtin = [{"tool_calls": [{"name": "calculator", "args": {"expression": "2+3"}}]}] * CALLS
        calls_mcp = [{"tool_calls": [{"name": "calc_add", "args": {"a": 2, "b": 3}}]}] * CALLS
        agents = {
            "builtin": srv.agent([*calls_builtin, {"text": "ok"}], tools=["calculator"]),
            "mcp": srv.agent([*calls_mcp, {"text": "ok"}], mcp_servers=server),
            "plain": srv.agent([{"text": "ok"}]),
            "mcp_idle": srv.agent([{"text": "ok"}], mcp_servers=server),
        }
        n = 30
        got: dict[str, tuple[float, float]] = {}
        for name, agent_id in agents.items():
            srv.load(scenario="create_wait", agent_id=agent_id, n=3)  # warm-up
            result, cpu = srv.load(scenario="create_wait", agent_id=agent_id, n=n)
            got[name] = (statistics.median(result["ms"]), cpu / n * 1000)
    finally:
        srv.stop()
        mcp.stop()
    (b_ms, b_cpu), (m_ms, m_cpu) = got["builtin"], got["mcp"]
    (p_ms, p_cpu), (i_ms, i_cpu) = got["plain"], got["mcp_idle"]
    connect_ms, connect_cpu = i_ms - p_ms, i_cpu - p_cpu
    per_call_ms = (m_ms - b_ms - connect_ms) / CALLS
    per_call_cpu = (m_cpu - b_cpu - connect_cpu) / CALLS
    report(
        "(j) journaled MCP tool call over a built-in one",
        f"+{per_call_ms:.2f} ms wall, +{per_call_cpu:.2f} ms server CPU per call (runs of {CALLS} calls, n={n})",
        f"built-in: {b_ms / CALLS:.2f} ms per call-step",
        f"{(m_ms - connect_ms) / b_ms:.2f}× run time",
        "—",
        None,
    )
    report(
        "(j) MCP connection per run attempt",
        f"+{connect_ms:.1f} ms wall, +{connect_cpu:.1f} ms server CPU (median run {i_ms:.1f} ms)",
        f"{p_ms:.1f} ms: the same run without MCP servers",
        f"{i_ms / p_ms:.1f}×",
        "—",
        None,
    )
