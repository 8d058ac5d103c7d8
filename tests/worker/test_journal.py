"""The tool journal is read with its arguments' hash (invariant 5), through real runs on a real server.

A run pauses for approval of `calculator` (call id `call_0_1`: the scripted model's ids are
deterministic); while it waits, the test journals that call id itself. On approval the resumed
run finds the entry: with the same arguments its result is replayed (the tool never runs);
with other arguments the run fails loudly, naming the call, instead of replaying a wrong result.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from support.servers import ServerInThread, wait_until
from sqlalchemy import select

from runyard.store import journal
from runyard.store.schema import runs as runs_table
from runyard.store.schema import tool_calls

CALL_ID = "call_0_1"  # step 0's first tool call


def paused_for_approval(http: httpx.Client, expression: str) -> dict[str, Any]:
    script = [{"tool_calls": [{"name": "calculator", "args": {"expression": expression}}]}, {"text": "done"}]
    r = http.post("/v1/runs", json={"name": "journal-tests", "instructions": "x", "message": "go",
                                    "tools": ["calculator"], "human_in_the_loop": True,
                                    "permission_mode": "approve_all", "metadata": {"script": script}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    wait_until(lambda: http.get(f"/v1/runs/{run_id}").json()["status"] == "waiting", timeout=15)
    return http.get(f"/v1/runs/{run_id}").json()


def journal_call(server: ServerInThread, run_id: str, args: dict[str, Any], result: Any) -> None:
    store = server.app.state.store

    async def write() -> None:
        async with store.tx() as tx:
            org_id = (await tx.conn.execute(select(runs_table.c.org_id).where(runs_table.c.id == run_id))).scalar_one()
            await journal.record(tx.conn, org_id, run_id, journal.Entry.of(CALL_ID, "calculator", args, result,
                                                                           is_error=False))

    server.call(write())


def approve_and_finish(http: httpx.Client, run_id: str) -> dict[str, Any]:
    r = http.post(f"/v1/runs/{run_id}/approve", json={"decision": "allow"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 15
    while (run := http.get(f"/v1/runs/{run_id}/wait", params={"timeout": 5}).json())["status"] not in (
            "completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, run
    return run


def log_of(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    page = http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()
    assert not page["has_more"]
    return page["data"]


def test_a_journaled_call_with_the_same_arguments_is_replayed(server: ServerInThread, http: httpx.Client) -> None:
    run = paused_for_approval(http, "6*7")
    journal_call(server, run["id"], {"expression": "6*7"}, "journaled 42")
    done = approve_and_finish(http, run["id"])
    assert done["status"] == "completed", done
    # The model got the journal's result; the tool did not run again (no result event of its own).
    messages = http.get(f"/v1/threads/{done['thread_id']}/messages").json()
    assert [m["content"] for m in messages if m["role"] == "tool"] == ["journaled 42"]
    assert [e for e in log_of(http, run["id"]) if e["type"] == "tool.result"] == []


def test_a_journaled_call_with_other_arguments_fails_the_run(server: ServerInThread, http: httpx.Client) -> None:
    run = paused_for_approval(http, "6*7")
    journal_call(server, run["id"], {"expression": "1+1"}, "2")
    done = approve_and_finish(http, run["id"])
    assert done["status"] == "failed", done
    assert done["error"] == f"tool call {CALL_ID} was journaled with other arguments: refusing to replay its result"
    log = log_of(http, run["id"])
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert log[-1]["type"] == "run.failed" and log[-1]["data"]["error"] == done["error"]
    assert [e for e in log if e["type"] in ("tool.result", "tool.error")] == []

    # Neither replayed nor executed: the journal still holds only the entry the test wrote.
    async def entries() -> list[Any]:
        async with server.app.state.store.read() as conn:
            rows = await conn.execute(select(tool_calls.c.tool_call_id, tool_calls.c.result)
                                      .where(tool_calls.c.run_id == run["id"]))
            return [tuple(r) for r in rows]

    assert server.call(entries()) == [(CALL_ID, "2")]


def test_journal_reads_are_scoped_by_org(server: ServerInThread, http: httpx.Client) -> None:
    run = paused_for_approval(http, "2+3")
    journal_call(server, run["id"], {"expression": "2+3"}, "5")
    store = server.app.state.store

    async def look(org_id: str | None) -> journal.Entry | None:
        async with store.read() as conn:
            if org_id is None:
                org_id = (await conn.execute(select(runs_table.c.org_id)
                                             .where(runs_table.c.id == run["id"]))).scalar_one()
            return await journal.lookup(conn, org_id, run["id"], CALL_ID)

    entry = server.call(look(None))
    assert entry is not None and entry.result == "5" and entry.name == "calculator"
    assert server.call(look("org_someone_else")) is None
    http.post(f"/v1/runs/{run['id']}/cancel")
