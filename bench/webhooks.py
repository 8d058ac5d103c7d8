"""Benchmarks of webhook deliveries (`python -m bench webhooks`).

A receiver process on 127.0.0.1 (raw asyncio HTTP/1.1, answers 200 at once) records when each
delivery arrives. The server runs bench (b)'s load, 1,000 one-step runs 200 at a time, twice: once
with no endpoint, then with one subscribed to `*` (every run event but the deltas: about six per
run). Figures: deliveries per second while the load runs and its backlog drains, the time from an
event's append (its `created_at`, the transaction that commits it) to its arrival (p50, p99), and
the server's CPU per delivery (the second load's CPU over the first's). The commit → delivery time is
measured apart, on runs made one at a time (under the load above it is the backlog's age). The
floor is the same signed bodies POSTed straight to the receiver by a bare aiohttp client (the
deliverer's), 64 at a time (its concurrency), with no database.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

TARGET_PER_S = 500


async def _serve(port_file: Path, out_file: Path) -> None:
    records: list[tuple[float, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                records.append((time.time(), json.loads(body)["data"].get("created_at", "")))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    out_file.write_text(json.dumps(records))


class Receiver:
    """The receiver as a child process: its CPU is neither the server's nor the driver's."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="runyard-bench-hooks-"))
        port_file = self.dir / "port"
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.webhooks", str(port_file), str(self.dir / "out")])
        deadline = time.monotonic() + 10
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port_file.read_text()}/hook"

    def stop(self) -> list[tuple[float, str]]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        return [tuple(r) for r in json.loads((self.dir / "out").read_text())]  # type: ignore[misc]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _unsettled(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE status IN ('pending', 'running')"
        ).fetchone()[0]


async def _floor(url: str, bodies: list[bytes], concurrency: int) -> float:
    """Deliveries per second with no Runyard: the same bodies, signed, from a bare aiohttp client
    (the deliverer's), `concurrency` at a time."""
    import aiohttp

    from runyard._webhooks import new_secret, sign

    secret = [new_secret()]
    queue = list(enumerate(bodies))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:

        async def lane() -> None:
            while queue:
                i, body = queue.pop()
                ts = int(time.time())
                headers = {"webhook-id": f"msg_{i}", "webhook-timestamp": str(ts), "content-type": "application/json"}
                headers["webhook-signature"] = sign(secret, f"msg_{i}", ts, body)
                async with client.post(url, data=body, headers=headers) as response:
                    response.raise_for_status()
                    await response.read()

        began = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - began)


def _settle(db: Path) -> None:
    deadline = time.monotonic() + 120
    while _unsettled(db) and time.monotonic() < deadline:
        time.sleep(0.05)


def _lags(records: list[tuple[float, str]]) -> list[float]:
    return [(t - _epoch(created)) * 1000 for t, created in records if created]


def bench_webhooks(report: Callable[..., None], pct: Callable[[list[float], float], float], server: Any) -> None:
    from bench.__main__ import HEADERS

    light, loaded = Receiver(), Receiver()
    srv = server({"RUNYARD_WEBHOOKS_ALLOW_PRIVATE": "true"})
    n = 1000
    try:
        db = Path(srv.proc.db_url.split("///", 1)[1])
        agent_id = srv.agent([{"text": "ok"}])
        base = f"{srv.proc.base_url}/v1/webhooks"
        srv.load(scenario="concurrent", agent_id=agent_id, n=200, concurrency=200)  # warm-up
        _, cpu_without = srv.load(scenario="concurrent", agent_id=agent_id, n=n, concurrency=200)

        hook = httpx.post(base, json={"url": light.url, "events": ["*"]}, headers=HEADERS, timeout=10).json()
        srv.load(scenario="create_wait", agent_id=agent_id, n=200)  # one at a time: commit → delivery
        _settle(db)
        httpx.patch(f"{base}/{hook['id']}", json={"url": loaded.url}, headers=HEADERS, timeout=10).raise_for_status()

        before = srv.cpu()
        srv.load(scenario="concurrent", agent_id=agent_id, n=n, concurrency=200)
        _settle(db)
        cpu_with = srv.cpu() - before
        with sqlite3.connect(db) as conn:
            failed = conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status != 'succeeded'").fetchone()[0]
            bodies = [row[0].encode() for row in conn.execute("SELECT payload FROM webhook_deliveries LIMIT 5000")]
    finally:
        srv.stop()
        light_records, records = light.stop(), loaded.stop()
    arrivals = sorted(t for t, _ in records)
    rate = len(records) / (arrivals[-1] - arrivals[0])
    floor_receiver = Receiver()
    try:
        floor_rate = asyncio.run(_floor(floor_receiver.url, bodies, 64))
    finally:
        floor_receiver.stop()
    per_delivery_us = (cpu_with - cpu_without) / max(len(records), 1) * 1e6
    report(
        "(k) webhook deliveries to a local receiver",
        f"{rate:,.0f} deliveries/s ({len(records)} from {n} runs at 200 concurrent, {failed} not delivered); "
        f"server CPU {per_delivery_us:.0f} µs/delivery",
        f"{floor_rate:,.0f} POSTs/s (bare aiohttp, 64 at a time)",
        f"{floor_rate / rate:.1f}× slower",
        f"≥ {TARGET_PER_S}/s",
        rate >= TARGET_PER_S,
    )
    lags, loaded_lags = _lags(light_records), _lags(records)
    report(
        "(k) event commit → delivered",
        f"p50 {statistics.median(lags):.1f} ms, p99 {pct(lags, 99):.1f} ms (runs one at a time, "
        f"{len(lags)} deliveries); under the load: p50 {statistics.median(loaded_lags):.0f} ms",
        "—",
        "—",
        "—",
        None,
    )


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1]), Path(sys.argv[2])))
    os._exit(0)
