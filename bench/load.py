"""The load generator: a separate process that drives a Runyard server with the lean client.

    python -m bench.load '{"scenario": "create_wait", "port": 8321, "key": "...", "agent_id": "...", ...}'

Prints one JSON object with what it measured (latencies in ms, walls in s) and its own CPU
seconds, so the bench can tell the client's cost from the server's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from .lean import Connection

TERMINAL = ("completed", "failed", "cancelled")


def _conn(spec: dict[str, Any]) -> Connection:
    return Connection("127.0.0.1", spec["port"], spec["key"])


async def _create_and_wait(conn: Connection, agent_id: str, **extra: Any) -> dict[str, Any]:
    run = await conn.request("POST", "/v1/runs", {"agent_id": agent_id, "message": "hi", **extra})
    while run["status"] not in TERMINAL:
        run = await conn.request("GET", f"/v1/runs/{run['id']}/wait?timeout=30")
    return run


async def create_wait(spec: dict[str, Any]) -> dict[str, Any]:
    """(a) one run at a time: create, then long-poll wait."""
    conn = _conn(spec)
    samples = []
    for _ in range(spec["n"]):
        t0 = time.perf_counter()
        run = await _create_and_wait(conn, spec["agent_id"])
        samples.append((time.perf_counter() - t0) * 1000)
        assert run["status"] == "completed", run
    conn.close()
    return {"ms": samples}


async def concurrent(spec: dict[str, Any]) -> dict[str, Any]:
    """(b) `n` runs with `concurrency` in flight at once, each created then waited on its connection."""
    n, width = spec["n"], spec["concurrency"]
    conns = [_conn(spec) for _ in range(width)]
    todo = iter(range(n))

    async def lane(conn: Connection) -> int:
        done = 0
        for _ in todo:
            run = await _create_and_wait(conn, spec["agent_id"], **spec.get("extra", {}))
            assert run["status"] == "completed", run
            done += 1
        return done

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(lane(c) for c in conns))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    assert sum(counts) == n
    return {"wall": wall}


async def stream(spec: dict[str, Any]) -> dict[str, Any]:
    """(c) one run streamed from its creation: first event, deltas/s."""
    conn = _conn(spec)
    t0 = time.perf_counter()
    first = None
    deltas = 0
    body = {"agent_id": spec["agent_id"], "message": "go", "stream": True}
    async for kind, _ in conn.sse("POST", "/v1/runs", body):
        if first is None:
            first = time.perf_counter()
        if kind == "message.delta":
            deltas += 1
    end = time.perf_counter()
    conn.close()
    assert deltas == spec["deltas"], deltas
    return {"first_ms": ((first or end) - t0) * 1000, "events_per_s": deltas / (end - t0), "wall": end - t0}


async def cancel(spec: dict[str, Any]) -> dict[str, Any]:
    """(e) a run busy in a tool: POST cancel on one connection, time until `run.cancelled` on its SSE."""
    control, watcher = _conn(spec), _conn(spec)
    samples = []
    for _ in range(spec["n"]):
        run = await control.request("POST", "/v1/runs", {"agent_id": spec["agent_id"], "message": "x"})
        t0 = 0.0
        async for kind, _ in watcher.sse("GET", f"/v1/runs/{run['id']}/events"):
            if kind == "tool.call":
                t0 = time.perf_counter()
                await control.request("POST", f"/v1/runs/{run['id']}/cancel")
            elif kind == "run.cancelled":
                samples.append((time.perf_counter() - t0) * 1000)
                break
        watcher.close()  # the stream is still open after run.cancelled: start the next one fresh
    control.close()
    return {"ms": samples}


async def answer(spec: dict[str, Any]) -> dict[str, Any]:
    """(f) a run asking question after question: POST answer → the first event after `run.input_received`."""
    control, watcher = _conn(spec), _conn(spec)
    samples = []
    for _ in range(spec["runs"]):
        body = {"agent_id": spec["agent_id"], "message": "ask me", "human_in_the_loop": True}
        run = await control.request("POST", "/v1/runs", body)
        t0 = None
        async for kind, data in watcher.sse("GET", f"/v1/runs/{run['id']}/events"):
            if kind == "run.waiting":
                [wait] = json.loads(data)["data"]["waits"]
                question = wait["request"]["questions"][0]["question"]
                t0 = time.perf_counter()
                await control.request(
                    "POST", f"/v1/runs/{run['id']}/answer", {"wait_id": wait["id"], "answers": {question: "yes"}}
                )
            elif kind == "run.input_received":
                continue
            elif t0 is not None:
                samples.append((time.perf_counter() - t0) * 1000)
                t0 = None
            if kind in ("run.completed", "run.failed"):
                break
        watcher.close()
    control.close()
    return {"ms": samples}


async def sdk(spec: dict[str, Any]) -> dict[str, Any]:
    """(h) the Python SDK's own cost: `create_and_wait` with `concurrency` in flight."""
    from runyard import AsyncRunyard, DefaultAioHttpClient

    n, width = spec["n"], spec["concurrency"]
    http = DefaultAioHttpClient() if spec.get("transport") == "aiohttp" else None
    async with AsyncRunyard(
        api_key=spec["key"], base_url=f"http://127.0.0.1:{spec['port']}", http_client=http
    ) as client:
        await client.runs.create_and_wait("warm", agent_id=spec["agent_id"])
        todo = iter(range(n))

        async def lane() -> None:
            for _ in todo:
                run = await client.runs.create_and_wait("hi", agent_id=spec["agent_id"])
                assert run.status == "completed", run

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(width)))
        return {"wall": time.perf_counter() - t0, "sdk_cpu": time.process_time() - cpu0}


SCENARIOS = {f.__name__: f for f in (create_wait, concurrent, stream, cancel, answer, sdk)}


def main() -> None:
    spec = json.loads(sys.argv[1])
    cpu0 = time.process_time()
    result = asyncio.run(SCENARIOS[spec["scenario"]](spec))
    result["client_cpu"] = time.process_time() - cpu0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
