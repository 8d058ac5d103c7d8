"""Humans-in-the-loop benchmark: answer → run resumed (issue 3, §8). Not a test.

(f) Runs that ask one question after another (`ask_user_question`, human_in_the_loop). For
each pause an SSE client follows the run; the clock starts just before `POST /answer` and
stops when that client sees the first event after `run.input_received` (the worker having
claimed the run again: `run.started`). p50/p99 over ≥ 200 pauses; target p50 ≤ 10 ms embedded.

    python -m bench.hitl                 # this scenario alone, on a fresh server process
    python -m bench answer_resume        # once wired into bench/__main__.py's SCENARIOS
"""

from __future__ import annotations

import importlib
import json
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ADMIN_KEY, ServerProcess  # noqa: E402

__all__ = ["bench_answer_resume"]

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
RUNS = 25
QUESTIONS_PER_RUN = 10
WARMUP = 20
"""Pauses left out of the figures (the first runs warm up imports, caches and connections)."""


def _bench_main() -> Any:
    """bench/__main__.py's module: the running one under `python -m bench` (its ROWS make the
    table), else imported."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "bench.__main__":
        return main
    return importlib.import_module("bench.__main__")


def _follow(base_url: str, run_id: str, out: "queue.Queue[tuple[str, dict[str, Any], float]]",
            ready: threading.Event) -> None:
    """Read the run's SSE stream to its end; queue (type, data, arrival time) per event."""
    headers = {**HEADERS, "Accept": "text/event-stream"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            ready.set()
            type_, data = None, ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    type_ = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data += line.split(":", 1)[1].strip()
                elif line == "" and type_ is not None:
                    # Each SSE data is the event envelope {seq, run_id, type, data, created_at}.
                    out.put((type_, json.loads(data)["data"] if data else {}, time.perf_counter()))
                    type_, data = None, ""
    out.put(("stream.closed", {}, time.perf_counter()))


def _next(events: "queue.Queue[tuple[str, dict[str, Any], float]]", *types: str) -> tuple[str, dict[str, Any], float]:
    while True:
        type_, data, at = events.get(timeout=30)
        if type_ == "stream.closed" and "stream.closed" not in types:
            raise RuntimeError("the run's stream ended early")
        if not types or type_ in types:
            return type_, data, at


def bench_answer_resume(srv: ServerProcess) -> list[float]:
    """(f) answer → first event after run.input_received on SSE, over RUNS × QUESTIONS_PER_RUN pauses."""
    questions = [{"question": f"Q{i}?", "options": ["yes", "no"]} for i in range(QUESTIONS_PER_RUN)]
    script = [{"tool_calls": [{"name": "ask_user_question", "args": {"questions": [q]}}]} for q in questions]
    script.append({"text": "answered"})
    samples: list[float] = []
    with httpx.Client(base_url=srv.base_url, headers=HEADERS, timeout=30) as client:
        agent_id = client.post("/v1/agents", json={"name": "hitl-bench", "instructions": "bench",
                                                   "metadata": {"script": script}}).json()["id"]
        for _ in range(RUNS):
            run = client.post("/v1/runs", json={"agent_id": agent_id, "message": "ask me",
                                                "human_in_the_loop": True}).json()
            events: queue.Queue[tuple[str, dict[str, Any], float]] = queue.Queue()
            ready = threading.Event()
            reader = threading.Thread(target=_follow, args=(srv.base_url, run["id"], events, ready), daemon=True)
            reader.start()
            ready.wait(30)
            for q in questions:
                _, waiting, _ = _next(events, "run.waiting")
                [wait] = waiting["waits"]
                assert wait["request"]["questions"][0]["question"] == q["question"], wait
                t0 = time.perf_counter()
                r = client.post(f"/v1/runs/{run['id']}/answer",
                                json={"wait_id": wait["id"], "answers": {q["question"]: "yes"}})
                assert r.status_code == 200, r.text
                _next(events, "run.input_received")
                _, _, resumed = _next(events)
                samples.append((resumed - t0) * 1000)
            type_, data, _ = _next(events, "run.completed", "run.failed", "run.cancelled")
            assert type_ == "run.completed", data
            reader.join(30)
    measured = samples[WARMUP:]
    p50, p99 = statistics.median(measured), _bench_main().pct(measured, 99)
    _bench_main().report("(f) answer → run resumed on SSE",
                         f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(measured)})", "p50 ≤ 10 ms", p50 <= 10)
    return measured


if __name__ == "__main__":
    _bench_main().with_server(bench_answer_resume)
