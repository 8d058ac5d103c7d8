"""A file write happens once across a crash (invariant 5): kill -9 the server right after a
`write_file` committed, start it again on the same database, and the resumed run replays the
journaled call instead of writing again.

The model asks for `write_file` and a 3 s `sleep` in the same response. The write commits (file
row, `file.created`, `tool.result`, journal entry) while the sleep still runs, and the checkpoint
after the tool results waits for both: a kill then leaves a journaled write whose call the
resumed run must make again from the checkpoint before it, and so finds in the journal.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx

# tests/ has no __init__.py: pytest's `prepend` import mode put tests/ on sys.path for its conftest.
from support.servers import ADMIN_KEY, ServerProcess, wait_until


def events_of(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(100):  # bounded: 100 pages of 1000 events
        page = client.get(
            f"/v1/runs/{run_id}/events", params={"after_seq": out[-1]["seq"] if out else 0, "limit": 1000}
        )
        page.raise_for_status()
        out += page.json()["data"]
        if not page.json()["has_more"]:
            return out
    raise AssertionError("event log did not end")


def test_kill_9_after_a_write_file_commit_does_not_write_again(tmp_path: Path) -> None:
    db = tmp_path / "files-crash.db"
    db_url = f"sqlite+aiosqlite:///{db}"
    script = [
        {
            "tool_calls": [
                {"name": "write_file", "args": {"path": "out/report.md", "content": "# written once"}},
                {"name": "sleep", "args": {"seconds": 3}},
            ]
        },
        {"text": "All done."},
    ]
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    first = ServerProcess(db_url).start(tmp_path)
    try:
        with httpx.Client(base_url=first.base_url, headers=headers, timeout=10) as client:
            r = client.post(
                "/v1/runs",
                json={
                    "name": "file-crash",
                    "instructions": "Write a report.",
                    "message": "write it",
                    "tools": ["files", "sleep"],
                    "metadata": {"script": script},
                },
            )
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
            wait_until(lambda: any(e["type"] == "file.created" for e in events_of(client, run_id)), timeout=15)
            before = events_of(client, run_id)
            assert client.get(f"/v1/runs/{run_id}").json()["status"] == "running"
    finally:
        first.kill()  # the sleep is still running: no checkpoint holds the write's result yet
    assert [e["type"] for e in before].count("tool.result") == 1  # the write's, not the sleep's

    second = ServerProcess(db_url).start(tmp_path)
    try:
        with httpx.Client(base_url=second.base_url, headers=headers, timeout=30) as client:
            run = client.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30}).json()
            log = events_of(client, run_id)
            listed = client.get(f"/v1/runs/{run_id}/files").json()["data"]
            content = client.get(f"/v1/runs/{run_id}/files/out/report.md")
    finally:
        second.stop()

    assert run["status"] == "completed", run
    assert run["attempt"] == 2 and run["output"] == "All done."
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert log[: len(before)] == before
    types = [e["type"] for e in log]
    assert types.count("file.created") == 1 and "file.updated" not in types
    assert types.count("run.requeued") == 1
    writes = [e["data"] for e in log if e["type"] == "tool.result" and e["data"]["name"] == "write_file"]
    assert len(writes) == 1  # the replay answered the call from the journal, with no second effect
    assert [(f["path"], f["size"]) for f in listed] == [("out/report.md", len("# written once"))]
    assert content.status_code == 200 and content.content == b"# written once"

    with sqlite3.connect(db) as conn:
        journal = conn.execute("SELECT name FROM tool_calls WHERE run_id = ? ORDER BY name", (run_id,)).fetchall()
        rows = conn.execute("SELECT count(*) FROM files").fetchone()
        blob_rows = conn.execute("SELECT count(*) FROM file_blobs").fetchone()
    assert journal == [("sleep",), ("write_file",)]
    assert rows == (1,) and blob_rows == (1,)
