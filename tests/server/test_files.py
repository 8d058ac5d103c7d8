"""Run files over HTTP: uploads, metadata, downloads (ETag, ranges), the files of a run and of a
thread, tenancy, and the `files` tools of a scripted run (through the real server).

Limits are exercised on a second server with small ones, so a 413 needs no 10 MB body.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.servers import ADMIN_KEY, ServerInThread

from runyard.config import Settings

TERMINAL = {"completed", "failed", "cancelled"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def upload(http: httpx.Client, name: str, content: bytes, **data: str) -> httpx.Response:
    return http.post("/v1/files", files={"file": (name, content, "application/octet-stream")}, data=data)


def uploaded(http: httpx.Client, name: str, content: bytes, **data: str) -> dict[str, Any]:
    r = upload(http, name, content, **data)
    assert r.status_code == 201, r.text
    return r.json()


def error_of(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    return r.json()["error"]


def agent(http: httpx.Client, script: list[dict[str, Any]] | None = None) -> str:
    body: dict[str, Any] = {"name": unique("files-agent"), "instructions": "Work with files.", "tools": ["files"]}
    if script is not None:
        body["metadata"] = {"script": script}
    r = http.post("/v1/agents", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def run_script(http: httpx.Client, script: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    """A scripted run with the `files` tools, waited for until it ends."""
    body.setdefault("agent_id", agent(http))
    r = http.post("/v1/runs", json={"message": "go", "tools": ["files"], "metadata": {"script": script}, **body})
    assert r.status_code == 201, r.text
    return finished(http, r.json()["id"])


def finished(http: httpx.Client, run_id: str) -> dict[str, Any]:
    run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": 20}).json()
    assert run["status"] in TERMINAL, run
    return run


def events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()["data"]


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "args": args}]}


# --- uploads, metadata, downloads ----------------------------------------------------------


def test_upload_then_metadata_and_download(http: httpx.Client) -> None:
    content = b'{"a": 1}\n'
    file = uploaded(http, "dir/../data.json", content)  # a client's directories are dropped
    assert file["id"].startswith("file_") and file["object"] == "file"
    assert file["path"] == "data.json" and file["thread_id"] is None and file["run_id"] is None
    assert file["size"] == len(content) and file["sha256"] == hashlib.sha256(content).hexdigest()
    assert file["content_type"] == "application/json"
    assert http.get(f"/v1/files/{file['id']}").json() == file
    r = http.get(f"/v1/files/{file['id']}/content")
    assert r.status_code == 200 and r.content == content
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["content-length"] == str(len(content))
    assert r.headers["etag"] == f'"{file["sha256"]}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-disposition"] == "attachment; filename=\"data.json\"; filename*=UTF-8''data.json"


def test_upload_path_field_and_unicode_file_names(http: httpx.Client) -> None:
    placed = uploaded(http, "ignored.txt", b"x", path="./inputs//notes.txt")
    assert placed["path"] == "inputs/notes.txt"
    named = uploaded(http, "résumé 2024.txt", b"cv")
    disposition = http.get(f"/v1/files/{named['id']}/content").headers["content-disposition"]
    assert disposition == "attachment; filename=\"r_sum_ 2024.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.txt"


@pytest.mark.parametrize(
    ("send", "field"),
    [
        ({"json": {"file": "not multipart"}}, "file"),
        ({"files": {"other": ("a.txt", b"x")}}, "other"),
        ({"data": {"path": "a.txt"}}, "file"),
        ({"files": {"file": ("a.txt", b"x")}, "data": {"path": "../escape.txt"}}, "path"),
        ({"files": {"file": ("a.txt", b"x")}, "data": {"path": "/abs.txt"}}, "path"),
        ({"files": {"file": ("..", b"x")}}, "file"),
        ({"content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=B"}}, "file"),
        ({"content": b"--B\r\nnot a part", "headers": {"Content-Type": "multipart/form-data; boundary=B"}}, "file"),
    ],
)
def test_bad_uploads_are_4xx_naming_the_field(http: httpx.Client, send: dict[str, Any], field: str) -> None:
    r = http.post("/v1/files", **send)
    assert 400 <= r.status_code < 500, r.text
    assert error_of(r)["field"] == field


def multipart(filename: bytes, content: bytes, boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    """A raw multipart body (httpx would percent-encode a control character in the file name)."""
    head = b'--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n\r\n' % (boundary.encode(), filename)
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_control_characters_in_the_file_name_are_refused(http: httpx.Client) -> None:
    body, headers = multipart(b"bad\x01name.txt", b"x")
    r = http.post("/v1/files", content=body, headers=headers)
    assert r.status_code == 422 and error_of(r)["field"] == "file"
    assert "control character" in error_of(r)["message"]


def test_etag_if_none_match_is_304(http: httpx.Client) -> None:
    file = uploaded(http, "cached.txt", b"same bytes")
    url = f"/v1/files/{file['id']}/content"
    etag = http.get(url).headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = http.get(url, headers={"If-None-Match": header})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag, header
    assert http.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_ranges_are_206_and_unsatisfiable_ones_416(http: httpx.Client) -> None:
    content = bytes(range(256)) * 4
    file = uploaded(http, "blob.bin", content)
    url = f"/v1/files/{file['id']}/content"
    for header, start, end in (
        ("bytes=0-9", 0, 10),
        ("bytes=1000-", 1000, 1024),
        ("bytes=-24", 1000, 1024),
        ("bytes=1020-5000", 1020, 1024),
        ("bytes=5-5", 5, 6),
    ):
        r = http.get(url, headers={"Range": header})
        assert r.status_code == 206, (header, r.text)
        assert r.content == content[start:end], header
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/1024"
        assert r.headers["content-length"] == str(end - start)
    for header in ("bytes=1024-", "bytes=5000-6000", "bytes=-0"):
        r = http.get(url, headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == "bytes */1024"
        assert error_of(r)["field"] == "Range"
    # A malformed range, several ranges, or an If-Range for other content: the whole file.
    for headers in (
        {"Range": "bytes=9-2"},
        {"Range": "lines=1-2"},
        {"Range": "bytes=0-1,5-6"},
        {"Range": "bytes=0-9", "If-Range": '"stale"'},
    ):
        r = http.get(url, headers=headers)
        assert r.status_code == 200 and r.content == content, headers


def test_delete_upload(http: httpx.Client) -> None:
    file = uploaded(http, "gone.txt", b"bye")
    r = http.delete(f"/v1/files/{file['id']}")
    assert r.status_code == 200 and r.json() == {"id": file["id"], "object": "file", "deleted": True}
    assert http.get(f"/v1/files/{file['id']}").status_code == 404
    assert http.get(f"/v1/files/{file['id']}/content").status_code == 404
    assert http.delete(f"/v1/files/{file['id']}").status_code == 404


def test_other_orgs_see_nothing(http: httpx.Client, server: ServerInThread) -> None:
    file = uploaded(http, "mine.txt", b"private")
    run = run_script(http, [call("write_file", path="w.txt", content="ws"), {"text": "done"}])
    other = server.headers(server.create_key(unique("other")))
    for url in (
        f"/v1/files/{file['id']}",
        f"/v1/files/{file['id']}/content",
        f"/v1/runs/{run['id']}/files",
        f"/v1/runs/{run['id']}/files/w.txt",
        f"/v1/threads/{run['thread_id']}/files",
    ):
        r = http.get(url, headers=other)
        assert r.status_code == 404, url
        assert error_of(r)["code"] == "not_found"
    assert http.delete(f"/v1/files/{file['id']}", headers=other).status_code == 404
    assert http.get(f"/v1/files/{file['id']}").status_code == 200  # still there for its owner
    # Another org cannot hand this org's upload to its own run either.
    their_agent = http.post("/v1/agents", json={"name": unique("theirs")}, headers=other).json()["id"]
    r = http.post("/v1/runs", json={"agent_id": their_agent, "message": "x", "files": [file["id"]]}, headers=other)
    assert r.status_code == 404 and error_of(r)["field"] == "files"


# --- the files of runs and threads -----------------------------------------------------------


def test_input_files_are_in_the_workspace_with_a_file_created_event(http: httpx.Client) -> None:
    up = uploaded(http, "input.csv", b"a,b\n1,2\n")
    script = [call("read_file", path="input.csv"), {"text": "read it"}]
    run = run_script(http, script, files=[up["id"]])
    assert run["status"] == "completed", run
    log = events(http, run["id"])
    created = [e["data"] for e in log if e["type"] == "file.created"]
    assert len(created) == 1 and created[0]["path"] == "input.csv" and created[0]["sha256"] == up["sha256"]
    assert created[0]["size"] == 8 and created[0]["file_id"] != up["id"]
    [result] = [e["data"]["result"] for e in log if e["type"] == "tool.result"]
    assert result == "a,b\n1,2\n"
    listed = http.get(f"/v1/threads/{run['thread_id']}/files").json()
    assert [f["path"] for f in listed["data"]] == ["input.csv"] and listed["has_more"] is False
    r = http.get(f"/v1/runs/{run['id']}/files/input.csv")
    assert r.status_code == 200 and r.content == b"a,b\n1,2\n"


def test_read_file_bounds_text_and_describes_binary(http: httpx.Client) -> None:
    text = ("line of text é\n" * 10_000).encode()  # 160,000 bytes: past the 100 KB read_file returns
    small_bin = bytes(range(256))
    big_bin = b"\x00\xff" * 4096
    given = [
        uploaded(http, name, content)["id"]
        for name, content in (("long.txt", text), ("small.bin", small_bin), ("big.bin", big_bin))
    ]
    script = [call("read_file", path=p) for p in ("long.txt", "small.bin", "big.bin")] + [{"text": "done"}]
    run = run_script(http, script, files=given)
    long, small_result, big_result = [
        e["data"]["result"] for e in events(http, run["id"]) if e["type"] == "tool.result"
    ]
    body, note = long.rsplit("\n", 1)
    assert text.decode().startswith(body) and len(body.encode()) <= 100 * 1024
    assert note == f"[truncated: showing the first {100 * 1024} of {len(text)} bytes of long.txt]"
    assert "binary" in small_result and small_result.endswith(base64.b64encode(small_bin).decode())
    assert "binary" in big_result and f"{len(big_bin)} bytes" in big_result and "too large" in big_result


def test_uploads_past_the_json_body_limit_up_to_files_max_bytes_are_accepted(http: httpx.Client) -> None:
    content = b"x" * (2 * 1024 * 1024)  # the default files_max_bytes is 10 MB
    r = upload(http, "two-megabytes.bin", content)
    assert r.status_code == 201, r.text
    assert http.get(f"/v1/files/{r.json()['id']}/content").content == content


def test_unknown_input_file_is_404_naming_files_and_makes_no_run(http: httpx.Client) -> None:
    agent_id = agent(http)
    r = http.post("/v1/runs", json={"agent_id": agent_id, "message": "x", "files": ["file_0000nope"]})
    assert r.status_code == 404 and error_of(r)["field"] == "files"
    assert http.get("/v1/runs", params={"agent_id": agent_id}).json()["data"] == []


def test_a_run_writes_updates_and_deletes_files(http: httpx.Client) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()
    script = [
        call("write_file", path="report.md", content="# hi"),
        call("write_file", path="report.md", content="# hi again"),
        call("write_file", path="img/logo.png", content=png, encoding="base64"),
        call("write_file", path="tmp.txt", content="scratch"),
        call("delete_file", path="tmp.txt"),
        call("list_files"),
        {"text": "done"},
    ]
    run = run_script(http, script)
    assert run["status"] == "completed", run
    log = events(http, run["id"])
    file_events = [(e["type"], e["data"]["path"]) for e in log if e["type"].startswith("file.")]
    assert file_events == [
        ("file.created", "report.md"),
        ("file.updated", "report.md"),
        ("file.created", "img/logo.png"),
        ("file.created", "tmp.txt"),
        ("file.deleted", "tmp.txt"),
    ]
    updated = [e["data"] for e in log if e["type"] == "file.updated"][0]
    assert updated["size"] == len("# hi again") and updated["sha256"] == hashlib.sha256(b"# hi again").hexdigest()
    listing = [e["data"]["result"] for e in log if e["type"] == "tool.result" and e["data"]["name"] == "list_files"]
    assert "- report.md (10 bytes)" in listing[0] and "tmp.txt" not in listing[0]

    page = http.get(f"/v1/runs/{run['id']}/files").json()
    assert sorted(f["path"] for f in page["data"]) == ["img/logo.png", "report.md"]
    assert all(f["run_id"] == run["id"] and f["thread_id"] == run["thread_id"] for f in page["data"])
    first = http.get(f"/v1/runs/{run['id']}/files", params={"limit": 1}).json()
    assert first["has_more"] is True
    second = http.get(f"/v1/runs/{run['id']}/files", params={"limit": 1, "before": first["next_cursor"]}).json()
    assert [f["id"] for f in first["data"] + second["data"]] == [f["id"] for f in page["data"]]

    r = http.get(f"/v1/runs/{run['id']}/files/report.md")
    assert r.status_code == 200 and r.content == b"# hi again"
    assert http.get(f"/v1/runs/{run['id']}/files/img/logo.png").content == base64.b64decode(png)
    by_id = {f["path"]: f for f in page["data"]}
    assert http.get(f"/v1/files/{by_id['report.md']['id']}/content").content == b"# hi again"
    missing = http.get(f"/v1/runs/{run['id']}/files/tmp.txt")
    assert missing.status_code == 404 and error_of(missing)["field"] == "path"
    assert http.get(f"/v1/runs/{run['id']}/files/../x").status_code in (404, 422)


def test_tool_errors_are_seen_by_the_model_and_write_nothing(http: httpx.Client) -> None:
    script = [
        call("write_file", path="../escape.txt", content="x"),
        call("write_file", path="bin.dat", content="not base64!", encoding="base64"),
        call("read_file", path="nothing-here.txt"),
        call("delete_file", path="nothing-here.txt"),
        {"text": "done"},
    ]
    run = run_script(http, script)
    assert run["status"] == "completed", run
    log = events(http, run["id"])
    errors = [e["data"]["error"] for e in log if e["type"] == "tool.error"]
    assert len(errors) == 4, errors
    assert "'..'" in errors[0] and "base64" in errors[1] and "no file" in errors[2] and "no file" in errors[3]
    assert not [e for e in log if e["type"].startswith("file.")]
    assert http.get(f"/v1/threads/{run['thread_id']}/files").json()["data"] == []


def test_a_reply_in_the_same_thread_sees_earlier_files(http: httpx.Client) -> None:
    # The reply runs the agent's own script; the first run overrides it with its own.
    agent_id = agent(http, [call("read_file", path="notes/plan.txt"), {"text": "read"}])
    first = run_script(
        http, [call("write_file", path="notes/plan.txt", content="step 1"), {"text": "wrote"}], agent_id=agent_id
    )
    assert first["status"] == "completed", first
    r = http.post(f"/v1/runs/{first['id']}/reply", json={"message": "what was the plan?"})
    assert r.status_code in (200, 201), r.text
    reply = finished(http, r.json()["id"])
    assert reply["thread_id"] == first["thread_id"] and reply["id"] != first["id"]
    results = [e["data"]["result"] for e in events(http, reply["id"]) if e["type"] == "tool.result"]
    assert results == ["step 1"]
    # The reply changed nothing: its own list is empty, the thread's holds the first run's file.
    assert http.get(f"/v1/runs/{reply['id']}/files").json()["data"] == []
    assert [f["run_id"] for f in http.get(f"/v1/threads/{first['thread_id']}/files").json()["data"]] == [first["id"]]


def test_deleting_a_thread_deletes_its_files(http: httpx.Client) -> None:
    run = run_script(http, [call("write_file", path="a.txt", content="a"), {"text": "done"}])
    [file] = http.get(f"/v1/runs/{run['id']}/files").json()["data"]
    assert http.delete(f"/v1/threads/{run['thread_id']}").status_code == 200
    assert http.get(f"/v1/files/{file['id']}").status_code == 404
    assert http.get(f"/v1/threads/{run['thread_id']}/files").status_code == 404
    assert http.get(f"/v1/runs/{run['id']}/files").status_code == 404


def test_unknown_run_or_thread_is_404(http: httpx.Client) -> None:
    assert http.get("/v1/runs/run_0000nope/files").status_code == 404
    assert http.get("/v1/runs/run_0000nope/files/a.txt").status_code == 404
    assert http.get("/v1/threads/thr_0000nope/files").status_code == 404


# --- limits --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db = tmp_path_factory.mktemp("files-small") / "small.db"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        api_key=ADMIN_KEY,
        files_max_bytes=1000,
        files_max_thread_bytes=1500,
        files_max_thread_files=3,
    )
    srv = ServerInThread(settings).start()
    try:
        with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as client:
            yield client
    finally:
        srv.stop()


def test_uploads_past_the_limit_are_413_and_store_nothing(small: httpx.Client) -> None:
    assert upload(small, "fits.bin", b"x" * 1000).status_code == 201
    r = upload(small, "big.bin", b"x" * 1001)
    assert r.status_code == 413 and error_of(r)["field"] == "file"
    # Far past it, and without a Content-Length (chunked): refused while reading.
    r = small.post("/v1/files", files={"file": ("huge.bin", b"x" * 200_000)})
    assert r.status_code == 413
    payload, headers = multipart(b"c.bin", b"x" * 200_000)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 8192):
            yield payload[i : i + 8192]

    r = small.post("/v1/files", content=chunks(), headers=headers)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413


def test_a_run_past_the_thread_limits_gets_tool_errors(small: httpx.Client) -> None:
    agent_id = small.post("/v1/agents", json={"name": unique("small"), "tools": ["files"]}).json()["id"]
    script = [
        call("write_file", path="a", content="x" * 1001),  # one file too large
        call("write_file", path="a", content="x" * 800),
        call("write_file", path="b", content="x" * 701),  # 1501 bytes in the thread
        call("write_file", path="a", content="x" * 799),  # replacing: 799 + 700 fits
        call("write_file", path="b", content="x" * 700),
        call("write_file", path="c", content=""),
        call("write_file", path="d", content=""),  # a fourth file
        {"text": "done"},
    ]
    r = small.post(
        "/v1/runs", json={"agent_id": agent_id, "message": "go", "tools": ["files"], "metadata": {"script": script}}
    )
    assert r.status_code == 201, r.text
    run = finished(small, r.json()["id"])
    assert run["status"] == "completed", run
    log = events(small, run["id"])
    outcomes = [(e["type"], e["data"].get("error", "")) for e in log if e["type"] in ("tool.result", "tool.error")]
    assert [t for t, _ in outcomes] == [
        "tool.error",
        "tool.result",
        "tool.error",
        "tool.result",
        "tool.result",
        "tool.result",
        "tool.error",
    ]
    assert "at most 1000" in outcomes[0][1] and "at most 1500" in outcomes[2][1] and "3 files" in outcomes[6][1]
    files_now = small.get(f"/v1/threads/{run['thread_id']}/files").json()["data"]
    assert sorted((f["path"], f["size"]) for f in files_now) == [("a", 799), ("b", 700), ("c", 0)]


@pytest.mark.parametrize("value", ["disk", "s3://", "s3:///prefix", "S3://bucket"])
def test_a_files_backend_that_is_neither_db_nor_s3_is_refused_at_start(value: str) -> None:
    from pydantic import ValidationError

    from runyard.config import Settings

    with pytest.raises(ValidationError, match="RUNYARD_FILES"):
        Settings(files=value)


def test_a_download_longer_than_one_read_chunk_is_whole_and_ranges_cross_chunks(http: httpx.Client) -> None:
    from runyard.store.blobs import CHUNK

    content = os.urandom(2 * CHUNK + 12345)
    r = upload(http, "big.bin", content)
    assert r.status_code == 201, r.text
    url = f"/v1/files/{r.json()['id']}/content"
    whole = http.get(url)
    assert whole.headers["Content-Length"] == str(len(content)) and whole.content == content
    start, end = CHUNK - 10, 2 * CHUNK + 10  # spans three reads
    part = http.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
    assert part.status_code == 206 and part.content == content[start:end]
