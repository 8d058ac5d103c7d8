"""Small HTTP helpers for tests that drive runs through the real server: create, wait, read back."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from support.servers import wait_until

__all__ = ["TERMINAL", "create", "error_of", "events", "finished", "of_type", "tool_returns", "types", "until_status"]

TERMINAL = {"completed", "failed", "cancelled"}


def create(http: httpx.Client, script: list[dict[str, Any]] | None = None, **body: Any) -> dict[str, Any]:
    """A run on a quick-start agent of its own (or `agent_id`), following `script` on the scripted model."""
    if "agent_id" not in body:
        body = {"name": f"t-{uuid.uuid4().hex[:12]}", "instructions": "x", **body}
    body.setdefault("message", "go")
    if script is not None:
        body.setdefault("metadata", {})["script"] = script
    r = http.post("/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def until_status(http: httpx.Client, run_id: str, *statuses: str, timeout: float = 10) -> dict[str, Any]:
    return wait_until(lambda: (run := http.get(f"/v1/runs/{run_id}").json())["status"] in statuses and run,
                      timeout=timeout)


def finished(http: httpx.Client, run_id: str, timeout: float = 15) -> dict[str, Any]:
    """The run once terminal (the long-poll also returns when the run waits: poll on until the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": min(remaining, 60)}).json()
        if run["status"] in TERMINAL or remaining <= 0:
            break
        time.sleep(0.05)
    assert run["status"] in TERMINAL, run
    return run


def events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = http.get(f"/v1/runs/{run_id}/events",
                        params={"after_seq": out[-1]["seq"] if out else 0, "limit": 1000}).json()
        out += page["data"]
        if not page["has_more"]:
            return out


def types(log: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in log]


def of_type(log: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in log if e["type"] == type_]


def tool_returns(http: httpx.Client, run: dict[str, Any], name: str) -> list[Any]:
    """What the model got back from `name`, as the thread's conversation records it."""
    messages = http.get(f"/v1/threads/{run['thread_id']}/messages").json()
    return [m["content"] for m in messages
            if m["run_id"] == run["id"] and m["role"] == "tool" and m["tool_name"] == name]


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    return body["error"]
