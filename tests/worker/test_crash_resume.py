"""Crash resume: kill -9 the server mid-run, start it again on the same database.

The run must resume from its last checkpoint (invariant 4), replay journaled tool calls
instead of re-executing them (invariant 5), and keep its event log gapless with no
duplicate (invariant 1). A counting HTTP server on 127.0.0.1 tells how often `http_get`
really reached it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

# tests/ has no __init__.py: pytest's `prepend` import mode put tests/ on sys.path for its conftest.
from support.servers import ADMIN_KEY, ServerProcess, wait_until


class CountingServer(ThreadingHTTPServer):
    """Answers every GET with a short body and counts hits per path."""

    daemon_threads = True

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805 - the handler, not the server
                with self.lock:
                    self.hits[handler.path] += 1
                body = f"hello from {handler.path}".encode()
                handler.send_response(200)
                handler.send_header("Content-Type", "text/plain; charset=utf-8")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

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


def events_of(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """The whole event log, page by page, through the JSON polling endpoint."""
    out: list[dict[str, Any]] = []
    while True:
        after = out[-1]["seq"] if out else 0
        page = client.get(f"/v1/runs/{run_id}/events", params={"after_seq": after, "limit": 1000})
        page.raise_for_status()
        out += page.json()["data"]
        if not page.json()["has_more"]:
            return out


def test_kill_9_mid_run_resumes_from_checkpoint(tmp_path: Path, counter: CountingServer) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    env = {"RUNYARD_HTTP_GET_ALLOW_PRIVATE": "1"}
    script = [
        {"text": "Fetching a.", "tool_calls": [{"name": "http_get", "args": {"url": f"{counter.url}/a"}}]},
        # A text-only response would end the run, so step 2 pairs its text with the call to /b.
        {"delay": 3, "text": "Got a; fetching b.",
         "tool_calls": [{"name": "http_get", "args": {"url": f"{counter.url}/b"}}]},
        {"text": "All done."},
    ]
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    first = ServerProcess(db_url, env).start(tmp_path)
    try:
        with httpx.Client(base_url=first.base_url, headers=headers, timeout=10) as client:
            r = client.post("/v1/runs", json={
                "name": "crash-resume", "instructions": "Fetch things.", "message": "fetch a then b",
                "tools": ["http_get"], "metadata": {"script": script},
            })
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
            # The first tool result is committed; the model is now sleeping in step 2's delay.
            wait_until(lambda: any(e["type"] == "tool.result" for e in events_of(client, run_id)), timeout=15)
            time.sleep(0.5)  # past the checkpoint that follows the tool result, well inside the 3 s delay
            before = events_of(client, run_id)
            assert client.get(f"/v1/runs/{run_id}").json()["status"] == "running"
    finally:
        first.kill()

    second = ServerProcess(db_url, env).start(tmp_path)
    try:
        with httpx.Client(base_url=second.base_url, headers=headers, timeout=30) as client:
            run = client.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30}).json()
            log = events_of(client, run_id)
    finally:
        second.stop()

    assert run["status"] == "completed", run
    assert run["output"] == "All done."
    assert run["attempt"] == 2

    # Tool effects happen once: /a was journaled before the crash and replayed, never re-fetched.
    assert counter.hits == {"/a": 1, "/b": 1}

    # The log is gapless and duplicate-free across the crash, and what was committed before it is unchanged.
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert run["last_seq"] == len(log)
    assert log[: len(before)] == before

    types = [e["type"] for e in log]
    started = [e["data"] for e in log if e["type"] == "run.started"]
    assert [s["attempt"] for s in started] == [1, 2]
    assert types.count("run.requeued") == 1
    assert types.count("run.completed") == 1 and types[-1] == "run.completed"
    assert types.count("tools.declared") == 1  # declared once, at the first start only

    # The model was not re-asked for step 1: its text and its tool call appear once, and every
    # step's text is logged once, in order.
    completed = [e["data"]["text"] for e in log if e["type"] == "message.completed"]
    assert completed == ["Fetching a.", "Got a; fetching b.", "All done."]
    calls = [e["data"] for e in log if e["type"] == "tool.call"]
    assert [c["args"]["url"] for c in calls] == [f"{counter.url}/a", f"{counter.url}/b"]
    results = [e["data"] for e in log if e["type"] == "tool.result"]
    assert [r["tool_call_id"] for r in results] == [c["tool_call_id"] for c in calls]
    assert results[0]["result"] == "HTTP 200\nhello from /a"

    # Three model requests in all (one before the crash, two after), with usage carried across.
    usage_events = [e["data"] for e in log if e["type"] == "usage"]
    assert len(usage_events) == 3
    assert run["usage"]["requests"] == 3
    assert run["usage"]["tool_calls"] == 2
    assert run["usage"]["input_tokens"] == sum(u["input_tokens"] for u in usage_events)
    assert run["usage"]["output_tokens"] == sum(u["output_tokens"] for u in usage_events)

    # The saved conversation holds the task once (not re-sent on resume) and one response per step.
    with sqlite3.connect(tmp_path / "crash.db") as db:
        [(saved,)] = db.execute("SELECT messages FROM checkpoints WHERE run_id = ?", (run_id,)).fetchall()
    messages = json.loads(saved)
    prompts = [p["content"] for m in messages for p in m["parts"] if p["part_kind"] == "user-prompt"]
    assert prompts == ["fetch a then b"]
    assert [m["kind"] for m in messages] == ["request", "response"] * 3
