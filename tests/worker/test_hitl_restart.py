"""Every pause survives a restart of the server (issue 3; invariants 1 and 6 of DESIGN.md).

A waiting run holds no worker and lives in the database: kill -9 the server while runs wait
for a question, a tool approval, free input and a plan approval, start a new server on the
same SQLite file, answer, and each run finishes with its answer used and a gapless log that
extends, unchanged, the one written before the crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from support.servers import ADMIN_KEY, ServerProcess, wait_until

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


def events_of(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/v1/runs/{run_id}/events", params={"after_seq": out[-1]["seq"] if out else 0,
                                                               "limit": 1000})
        page.raise_for_status()
        out += page.json()["data"]
        if not page.json()["has_more"]:
            return out


def create(client: httpx.Client, name: str, script: list[dict[str, Any]], **body: Any) -> str:
    r = client.post("/v1/runs", json={"name": name, "instructions": "x", "message": f"task {name}",
                                      "human_in_the_loop": True, "metadata": {"script": script}, **body})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def tool_returns(client: httpx.Client, run: dict[str, Any], name: str) -> list[Any]:
    messages = client.get(f"/v1/threads/{run['thread_id']}/messages").json()
    return [m["content"] for m in messages if m["role"] == "tool" and m["tool_name"] == name]


def test_every_kind_of_pause_survives_kill_9(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'hitl.db'}"
    question = [{"tool_calls": [{"name": "ask_user_question",
                                 "args": {"questions": [{"question": "Color?", "options": ["red", "blue"]}]}}]},
                {"text": "question done"}]
    approval = [{"tool_calls": [{"name": "calculator", "args": {"expression": "6*7"}}]}, {"text": "approval done"}]
    entry = [{"tool_calls": [{"name": "request_user_input", "args": {"prompt": "Paste it"}}]}, {"text": "input done"}]
    plan = [{"text": "1. add"}, {"tool_calls": [{"name": "calculator", "args": {"expression": "1+2"}}]},
            {"text": "plan done"}]

    first = ServerProcess(db_url).start(tmp_path)
    try:
        with httpx.Client(base_url=first.base_url, headers=HEADERS, timeout=10) as client:
            ids = {
                "question": create(client, "q", question),
                "approval": create(client, "a", approval, tools=["calculator"], permission_mode="approve_all"),
                "input": create(client, "i", entry),
                "plan": create(client, "p", plan, tools=["calculator"], permission_mode="plan"),
            }
            for run_id in ids.values():
                wait_until(lambda run_id=run_id: client.get(f"/v1/runs/{run_id}").json()["status"] == "waiting",
                           timeout=15)
            runs = {kind: client.get(f"/v1/runs/{run_id}").json() for kind, run_id in ids.items()}
            before = {kind: events_of(client, run_id) for kind, run_id in ids.items()}
            waits = {kind: client.get(f"/v1/runs/{run_id}/waits").json()["data"] for kind, run_id in ids.items()}
    finally:
        first.kill()

    assert {k: r["waiting_for"] for k, r in runs.items()} == {
        "question": "question", "approval": "approval", "input": "input", "plan": "approval"}
    assert all(len(w) == 1 and w[0]["status"] == "open" for w in waits.values()), waits

    second = ServerProcess(db_url).start(tmp_path)
    try:
        with httpx.Client(base_url=second.base_url, headers=HEADERS, timeout=30) as client:
            # Still waiting after the restart, with the same open waits.
            for kind, run_id in ids.items():
                assert client.get(f"/v1/runs/{run_id}").json()["status"] == "waiting", kind
                assert client.get(f"/v1/runs/{run_id}/waits").json()["data"] == waits[kind]
            answers = {
                "question": ("answer", {"wait_id": waits["question"][0]["id"], "answers": {"Color?": "blue"}}),
                "approval": ("approve", {"wait_id": waits["approval"][0]["id"], "decision": "allow"}),
                "input": ("input", {"content": "the pasted text"}),
                "plan": ("approve", {"wait_id": waits["plan"][0]["id"], "decision": "allow"}),
            }
            for kind, (path, body) in answers.items():
                r = client.post(f"/v1/runs/{ids[kind]}/{path}", json=body)
                assert r.status_code == 200, (kind, r.text)
            done = {kind: client.get(f"/v1/runs/{run_id}/wait", params={"timeout": 20}).json()
                    for kind, run_id in ids.items()}
            logs = {kind: events_of(client, run_id) for kind, run_id in ids.items()}
            returns = {
                "question": tool_returns(client, done["question"], "ask_user_question"),
                "approval": tool_returns(client, done["approval"], "calculator"),
                "input": tool_returns(client, done["input"], "request_user_input"),
                "plan": tool_returns(client, done["plan"], "calculator"),
            }
    finally:
        second.stop()

    for kind in ids:
        run, log = done[kind], logs[kind]
        assert run["status"] == "completed", (kind, run)
        assert run["output"] == f"{kind} done"
        # Gapless, duplicate-free, and what was written before the crash is unchanged.
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1)), kind
        assert log[: len(before[kind])] == before[kind], kind
        assert run["last_seq"] == len(log)
        types = [e["type"] for e in log]
        assert types.count("run.waiting") == 1 and types.count("run.input_received") == 1, (kind, types)
        assert types.count("tools.declared") == 1 and types[-1] == "run.completed"
        # A waiting run held no worker: nothing to requeue after the crash; the answer re-queued it.
        assert "run.requeued" not in types, kind
        received = types.index("run.input_received")
        assert types.index("run.started", received) <= received + 2  # after tool.approved, if any
        assert [e["data"]["attempt"] for e in log if e["type"] == "run.started"] == [1, 2]

    # Each answer reached the model as the tool's result.
    assert len(returns["question"]) == 1 and "blue" in returns["question"][0]
    assert returns["approval"] == ["42"]
    assert returns["input"] == ["the pasted text"]
    assert returns["plan"] == ["3"]
    plan_types = [e["type"] for e in logs["plan"]]
    assert "tool.result" not in plan_types[: plan_types.index("run.input_received")]
