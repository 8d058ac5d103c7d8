"""The floor: the same work done by the bare agent loop, in-process, with no HTTP and no database.

    python -m bench.floor '{"scenario": "concurrent", "n": 1000, "concurrency": 200}'

pydantic-ai with Runyard's `scripted` model, driven node by node and streamed the way the
worker drives it (`worker/turns.py`), so what Runyard adds is the server's CPU per run minus
this process's. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage

from runyard.worker.models import scripted_model

AGENT: Agent[None, str] = Agent(instructions="bench")


@AGENT.tool_plain
async def sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


async def one_run(
    script: list[dict[str, Any]], *, history: list[ModelMessage] | None = None, on_event: Any = None
) -> list[ModelMessage]:
    """One run of the loop, every streamed event consumed, as the worker does."""
    async with AGENT.iter("hi", model=scripted_model(script, "hi"), message_history=history) as run:
        async for node in run:
            if Agent.is_model_request_node(node) or Agent.is_call_tools_node(node):
                async with node.stream(run.ctx) as events:
                    async for event in events:
                        if on_event is not None:
                            on_event(event)
    return run.all_messages()


async def sequential(spec: dict[str, Any]) -> dict[str, Any]:
    script = [{"text": "ok"}]
    for _ in range(20):
        await one_run(script)
    samples = []
    cpu0 = time.process_time()
    for _ in range(spec["n"]):
        t0 = time.perf_counter()
        await one_run(script)
        samples.append((time.perf_counter() - t0) * 1000)
    return {"ms": samples, "cpu_per_run_ms": (time.process_time() - cpu0) / spec["n"] * 1000}


async def concurrent(spec: dict[str, Any]) -> dict[str, Any]:
    script = spec.get("script", [{"text": "ok"}])
    n, width = spec["n"], spec["concurrency"]
    await asyncio.gather(*(one_run(script) for _ in range(width)))
    todo = iter(range(n))

    async def lane() -> None:
        for _ in todo:
            await one_run(script)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(width)))
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "runs_per_s": n / wall,
        "cpu_per_run_ms": (time.process_time() - cpu0) / n * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def stream(spec: dict[str, Any]) -> dict[str, Any]:
    deltas = spec["deltas"]
    await one_run([{"text": ["tok "], "repeat": 100}])
    seen = 0
    first: list[float] = []

    def count(_event: Any) -> None:
        nonlocal seen
        if not first:
            first.append(time.perf_counter())
        seen += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    await one_run([{"text": ["tok "], "repeat": deltas}], on_event=count)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {"first_ms": (first[0] - t0) * 1000, "events_per_s": deltas / wall, "us_per_delta": cpu / deltas * 1e6}


async def cancel(spec: dict[str, Any]) -> dict[str, Any]:
    """A run busy in a tool: task.cancel() until the task has ended."""
    samples = []
    for _ in range(spec["n"]):
        called = asyncio.Event()
        script = [{"text": "working", "tool_calls": [{"name": "sleep", "args": {"seconds": 30}}]}]
        task = asyncio.ensure_future(one_run(script, on_event=lambda e: called.set()))
        await called.wait()
        await asyncio.sleep(0.001)
        t0 = time.perf_counter()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        samples.append((time.perf_counter() - t0) * 1000)
    return {"ms": samples}


async def resume(spec: dict[str, Any]) -> dict[str, Any]:
    """Continue a conversation of `turns` exchanges: start until the first streamed event."""
    history = await one_run([{"text": "a"}])
    for _ in range(spec["turns"]):
        history = await one_run([{"text": "a"}], history=history)
    samples = []
    for _ in range(spec["n"]):
        t0 = time.perf_counter()
        first: list[float] = []
        await one_run([{"text": "b"}], history=history, on_event=lambda e: first or first.append(time.perf_counter()))
        samples.append((first[0] - t0) * 1000)
    return {"ms": samples}


SCENARIOS = {f.__name__: f for f in (sequential, concurrent, stream, cancel, resume)}


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(SCENARIOS[spec["scenario"]](spec))))


if __name__ == "__main__":
    main()
