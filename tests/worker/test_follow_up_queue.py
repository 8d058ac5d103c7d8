"""Messages appended to a run in flight, one per step: each reaches the model exactly once.

A checkpoint drops the follow-ups it took in from the run's queue; a message appended after
that must still be delivered at the next step (not skipped, not dropped by a later checkpoint).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from support.servers import wait_until


def events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    page = http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()
    assert not page["has_more"]
    return page["data"]


def requests_made(http: httpx.Client, run_id: str) -> int:
    return sum(e["type"] == "usage" for e in events(http, run_id))


def test_a_message_per_step_reaches_the_model_once(http: httpx.Client) -> None:
    calc = {"name": "calculator", "args": {"expression": "1+1"}}
    script = [{"delay": 0.6, "tool_calls": [calc]}, {"delay": 0.6, "tool_calls": [calc]},
              {"delay": 0.6, "tool_calls": [calc]}, {"text": "done"}]
    r = http.post("/v1/runs", json={"name": "follow-up-queue", "instructions": "x", "message": "go",
                                    "tools": ["calculator"], "metadata": {"script": script}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    sent = []
    for step in (1, 2, 3):
        # Appended while the model works on step `step`: the request of step `step + 1` carries it.
        wait_until(lambda step=step: requests_made(http, run_id) == step - 1, timeout=15)
        time.sleep(0.2)
        message = f"note {step}"
        assert http.post(f"/v1/runs/{run_id}/messages", json={"message": message}).status_code == 200
        sent.append(message)
        wait_until(lambda step=step: requests_made(http, run_id) >= step, timeout=15)
    run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": 20}).json()
    assert run["status"] == "completed", run
    users = [m["content"] for m in http.get(f"/v1/threads/{run['thread_id']}/messages").json()
             if m["role"] == "user"]
    assert users == ["go", *sent]
