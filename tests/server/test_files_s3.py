"""Run files kept in S3 (`RUNYARD_FILES=s3://bucket/prefix`), against moto's S3 server on 127.0.0.1.

Content goes to the bucket under `prefix/{org}/{thread}/{sha256}` (uploads: `prefix/{org}/uploads/{sha256}`),
never into the database; downloads and ranges read it back; deleting a file or a thread deletes
its objects (verified by listing the bucket), including the ones a replaced file left behind.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from support.s3 import S3Server, s3_server
from support.servers import ADMIN_KEY, ServerInThread

from runyard.config import Settings
from runyard.store.schema import file_blobs

PREFIX = "runyard/files"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def srv(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    mp = pytest.MonkeyPatch()
    for name, value in s3.env.items():
        mp.setenv(name, value)
    db = tmp_path_factory.mktemp("files-s3") / "s3.db"
    server = ServerInThread(
        Settings(database_url=f"sqlite+aiosqlite:///{db}", api_key=ADMIN_KEY, files=s3.url(PREFIX))
    ).start()
    try:
        yield server
    finally:
        server.stop()
        mp.undo()


@pytest.fixture(scope="module")
def client(srv: ServerInThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http:
        yield http


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def objects(s3: S3Server, *, ending: str = "") -> list[str]:
    return [k for k in s3.keys(PREFIX + "/") if k.endswith(ending)]


def db_blobs(srv: ServerInThread) -> int:
    async def count() -> int:
        async with srv.app.state.store.read() as conn:
            return (await conn.execute(select(func.count()).select_from(file_blobs))).scalar_one()

    return srv.call(count())


def scripted(client: httpx.Client, script: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    agent = client.post("/v1/agents", json={"name": f"s3-{uuid.uuid4().hex[:8]}", "tools": ["files"]}).json()
    r = client.post(
        "/v1/runs",
        json={"agent_id": agent["id"], "message": "go", "tools": ["files"], "metadata": {"script": script}, **body},
    )
    assert r.status_code == 201, r.text
    run = client.get(f"/v1/runs/{r.json()['id']}/wait", params={"timeout": 20}).json()
    assert run["status"] == "completed", run
    return run


def write(path: str, content: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "write_file", "args": {"path": path, "content": content}}]}


def test_upload_goes_to_the_bucket_and_downloads_with_ranges(
    client: httpx.Client, s3: S3Server, srv: ServerInThread
) -> None:
    content = b"0123456789" * 30
    r = client.post("/v1/files", files={"file": ("digits.txt", content)})
    assert r.status_code == 201, r.text
    file = r.json()
    [key] = objects(s3, ending=f"/uploads/{sha(content)}")
    assert key.startswith(f"{PREFIX}/org_")
    assert db_blobs(srv) == 0  # the content is in S3 only
    url = f"/v1/files/{file['id']}/content"
    full = client.get(url)
    assert full.status_code == 200 and full.content == content
    part = client.get(url, headers={"Range": "bytes=295-"})
    assert part.status_code == 206 and part.content == b"56789" and part.headers["content-range"] == "bytes 295-299/300"
    assert client.get(url, headers={"Range": "bytes=10-19"}).content == b"0123456789"
    assert client.get(url, headers={"Range": "bytes=300-"}).status_code == 416
    assert client.get(url, headers={"If-None-Match": full.headers["etag"]}).status_code == 304

    assert client.delete(f"/v1/files/{file['id']}").status_code == 200
    assert objects(s3, ending=f"/uploads/{sha(content)}") == []


def test_run_writes_to_the_bucket_and_thread_delete_empties_its_prefix(client: httpx.Client, s3: S3Server) -> None:
    upload = client.post("/v1/files", files={"file": ("given.txt", b"given to the run")}).json()
    run = scripted(
        client,
        [
            write("a.txt", "first"),
            write("a.txt", "second"),
            write("b.txt", "bee"),
            {"tool_calls": [{"name": "read_file", "args": {"path": "given.txt"}}]},
            {"text": "done"},
        ],
        files=[upload["id"]],
    )
    thread = run["thread_id"]
    in_thread = sorted(k.rsplit("/", 1)[1] for k in objects(s3) if f"/{thread}/" in k)
    # The replaced content ("first") is still there: a tool has no after-commit step to delete it.
    assert in_thread == sorted([sha(b"first"), sha(b"second"), sha(b"bee")])
    r = client.get(f"/v1/runs/{run['id']}/files/a.txt")
    assert r.status_code == 200 and r.content == b"second"
    assert client.get(f"/v1/runs/{run['id']}/files/b.txt", headers={"Range": "bytes=1-"}).content == b"ee"
    events = client.get(f"/v1/runs/{run['id']}/events", params={"limit": 1000}).json()["data"]
    assert [e["data"]["result"] for e in events if e["type"] == "tool.result"][-1] == "given to the run"
    assert client.get(f"/v1/runs/{run['id']}/files/given.txt").content == b"given to the run"

    assert client.delete(f"/v1/threads/{thread}").status_code == 200
    assert [k for k in objects(s3) if f"/{thread}/" in k] == []
    # The upload itself was not deleted, so its content stays.
    assert objects(s3, ending=f"/uploads/{sha(b'given to the run')}") != []
    assert client.get(f"/v1/files/{upload['id']}/content").content == b"given to the run"


def test_deleting_a_workspace_file_deletes_its_object_once_unused(client: httpx.Client, s3: S3Server) -> None:
    run = scripted(client, [write("one.txt", "same"), write("two.txt", "same"), {"text": "done"}])
    listed = {f["path"]: f for f in client.get(f"/v1/runs/{run['id']}/files").json()["data"]}
    ending = f"/{run['thread_id']}/{sha(b'same')}"
    assert len(objects(s3, ending=ending)) == 1  # one object for both paths
    assert client.delete(f"/v1/files/{listed['one.txt']['id']}").status_code == 200
    assert len(objects(s3, ending=ending)) == 1  # two.txt still uses it
    assert client.delete(f"/v1/files/{listed['two.txt']['id']}").status_code == 200
    assert objects(s3, ending=ending) == []
