"""Cancelling runs over HTTP (issue 2, §7; invariant 7 of DESIGN.md): pending and running runs end
`cancelled` with `run.cancel_requested` then `run.cancelled` last, partial output and usage are
kept, and a run that already ended cannot be cancelled.

A pending run is made deterministic with a second server whose worker runs one run at a time:
while a slow run holds that worker, the next one stays queued.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from support.servers import ADMIN_KEY, ServerInThread, wait_until
from runyard.config import Settings

TERMINAL = {"completed", "failed", "cancelled"}
CANCEL_PATHS = ["/v1/runs/{id}/cancel", "/v1/runs/{id}:cancel"]


def create(http: httpx.Client, script: list[dict[str, Any]] | None = None, **body: Any) -> dict[str, Any]:
    body = {"name": f"cancel-{uuid.uuid4().hex[:12]}", "instructions": "x", "message": "go", **body}
    if script is not None:
        body["metadata"] = {"script": script}
    r = http.post("/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def get(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return http.get(f"/v1/runs/{run_id}").json()


def wait(http: httpx.Client, run_id: str, timeout: float = 10) -> dict[str, Any]:
    return http.get(f"/v1/runs/{run_id}/wait", params={"timeout": timeout}).json()


def types(http: httpx.Client, run_id: str) -> list[str]:
    return [e["type"] for e in http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()["data"]]


def sse_types(http: httpx.Client, run_id: str) -> list[str]:
    """Event types of the run's SSE stream, read until the server ends it."""
    with http.stream("GET", f"/v1/runs/{run_id}/events", headers={"Accept": "text/event-stream"}) as r:
        return [line.split(":", 1)[1].strip() for line in r.iter_lines() if line.startswith("event:")]


def has_event(http: httpx.Client, run_id: str, kind: str) -> bool:
    return kind in types(http, run_id)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of a second real server whose worker executes one run at a time."""
    db = tmp_path_factory.mktemp("one-worker") / "runyard.db"
    srv = ServerInThread(Settings(database_url=f"sqlite+aiosqlite:///{db}", api_key=ADMIN_KEY,
                                  worker_concurrency=1)).start()
    with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as client:
        yield client
    srv.stop()


def test_cancel_a_pending_run(one_worker: httpx.Client) -> None:
    http = one_worker
    blocker = create(http, [{"delay": 30}])
    wait_until(lambda: get(http, blocker["id"])["status"] == "running")
    queued = create(http, [{"text": "never"}])
    assert get(http, queued["id"])["status"] == "pending"

    with ThreadPoolExecutor(1) as pool:  # a live SSE reader of the queued run sees the cancel
        watcher = pool.submit(sse_types, http, queued["id"])
        wait_until(lambda: watcher.running())
        time.sleep(0.1)
        r = http.post(f"/v1/runs/{queued['id']}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        assert watcher.result(timeout=10) == ["run.queued", "run.cancel_requested", "run.cancelled"]
    run = wait(http, queued["id"])
    assert run["status"] == "cancelled" and run["cancelled_at"] is not None
    assert run["output"] is None and run["usage"]["requests"] == 0
    assert types(http, queued["id"]) == ["run.queued", "run.cancel_requested", "run.cancelled"]

    # Free the worker: it must run the next queued run and never pick up the cancelled one.
    assert http.post(f"/v1/runs/{blocker['id']}:cancel").status_code == 200
    assert wait(http, blocker["id"])["status"] == "cancelled"
    after = create(http, [{"text": "next"}])
    assert wait(http, after["id"])["status"] == "completed"
    assert types(http, queued["id"]) == ["run.queued", "run.cancel_requested", "run.cancelled"]


@pytest.mark.parametrize("path", CANCEL_PATHS)
def test_cancel_a_running_run_quickly(http: httpx.Client, path: str) -> None:
    run = create(http, [{"delay": 10}])
    wait_until(lambda: has_event(http, run["id"], "tools.declared"))  # the worker is in the model call
    assert get(http, run["id"])["status"] == "running"

    start = time.monotonic()
    r = http.post(path.format(id=run["id"]))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == run["id"]
    done = wait(http, run["id"], timeout=8)
    elapsed = time.monotonic() - start
    assert done["status"] == "cancelled"
    assert done["cancelled_at"] is not None and done["completed_at"] is None
    assert elapsed < 2.0, f"cancel took {elapsed:.2f} s"
    log = types(http, run["id"])
    assert log[-2:] == ["run.cancel_requested", "run.cancelled"]
    assert log.count("run.cancelled") == 1


def test_cancel_right_after_create(http: httpx.Client) -> None:
    runs = [create(http, [{"delay": 10}]) for _ in range(5)]
    for run in runs:
        assert http.post(f"/v1/runs/{run['id']}/cancel").status_code == 200
    for run in runs:
        assert wait(http, run["id"], timeout=5)["status"] == "cancelled"
        log = types(http, run["id"])
        assert log[-1] == "run.cancelled" and log.count("run.cancelled") == 1
        assert log.index("run.cancel_requested") < log.index("run.cancelled")


def test_cancel_keeps_partial_output_and_usage(http: httpx.Client) -> None:
    script = [
        {"text": ["Hel", "lo ", "wor"], "tool_calls": [{"name": "calculator", "args": {"expression": "2+3"}}]},
        {"delay": 10},
    ]
    run = create(http, script, tools=["calculator"])
    wait_until(lambda: has_event(http, run["id"], "tool.result"))
    assert http.post(f"/v1/runs/{run['id']}/cancel").status_code == 200
    done = wait(http, run["id"])
    assert done["status"] == "cancelled"
    assert "Hello wor" in done["output"]
    usage = done["usage"]
    assert usage["requests"] == 1 and usage["tool_calls"] == 1
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0

    events = http.get(f"/v1/runs/{run['id']}/events", params={"limit": 1000}).json()["data"]
    assert events[-1]["type"] == "run.cancelled"
    assert events[-1]["data"]["output"] == done["output"]
    assert events[-1]["data"]["usage"] == usage


def test_cancelling_a_finished_run_is_a_conflict(http: httpx.Client) -> None:
    completed = create(http)
    failed = create(http, [{"error": "boom"}])
    cancelled = create(http, [{"delay": 10}])
    assert http.post(f"/v1/runs/{cancelled['id']}/cancel").status_code == 200
    for run, status in ((completed, "completed"), (failed, "failed"), (cancelled, "cancelled")):
        assert wait(http, run["id"])["status"] == status
        before = get(http, run["id"])
        for path in CANCEL_PATHS:
            r = http.post(path.format(id=run["id"]))
            assert r.status_code == 409, r.text
            assert r.json()["error"]["code"] and status in r.json()["error"]["message"]
        assert get(http, run["id"]) == before  # nothing changed, no event added
    assert http.post("/v1/runs/run_unknown/cancel").status_code == 404
