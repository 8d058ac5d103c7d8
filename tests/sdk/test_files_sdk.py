"""Run files through the SDK: uploads, runs given them, the files a run wrote, and downloads.

Against the real server of the `server` fixture, with the offline `scripted` model calling the
`files` tools; the resumed download and the naming rules use `httpx.MockTransport`.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import runyard
from runyard import AsyncRunyard, File, RunStatus, Runyard
from runyard.client.resources.files import download_target, filename_of, upload_options

NOTES = "line one\nline two: ü\n".encode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: Any) -> Iterator[Runyard]:
    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
async def aclient(server: Any) -> AsyncIterator[AsyncRunyard]:
    async with AsyncRunyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


def files_run(script: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": unique("files"),
        "instructions": "Use the files.",
        "tools": ["files"],
        "metadata": {"script": script},
        **extra,
    }


READ_NOTES = [{"tool_calls": [{"name": "read_file", "args": {"path": "notes.txt"}}]}, {"text": "read it"}]
WRITE_REPORT = [
    {"tool_calls": [{"name": "write_file", "args": {"path": "out/report.md", "content": "# Report\nall good\n"}}]},
    {"text": "written"},
]


def tool_results(client: Runyard, run_id: str) -> list[Any]:
    return [e.data.get("result") for e in client.runs.list_events(run_id) if e.type == "tool.result"]


def test_upload_run_with_the_file_list_read_and_download(client: Runyard, tmp_path: Path) -> None:
    upload = client.files.upload(NOTES, filename="notes.txt")
    assert isinstance(upload, File) and upload.id.startswith("file")
    assert (upload.path, upload.size, upload.thread_id) == ("notes.txt", len(NOTES), None)
    assert upload.content_type.startswith("text/plain")
    assert client.files.retrieve(upload.id) == upload
    assert client.files.content(upload.id) == NOTES

    run = client.runs.create_and_wait("Read my notes", files=[upload], timeout=20, **files_run(READ_NOTES))
    assert run.status is RunStatus.COMPLETED, run.error
    assert tool_results(client, run.id) == [NOTES.decode()]

    listed = list(client.runs.files.list(run.id))
    assert [f.path for f in listed] == ["notes.txt"]
    [notes] = listed
    assert (notes.thread_id, notes.run_id, notes.sha256) == (run.thread_id, run.id, upload.sha256)
    assert [f.id for f in client.threads.files.list(run.thread_id)] == [notes.id]
    assert client.runs.files.content(run.id, "notes.txt") == NOTES
    assert client.files.content(notes.id) == NOTES

    into_dir = client.files.download(notes.id, tmp_path)
    assert into_dir == tmp_path / "notes.txt" and into_dir.read_bytes() == NOTES
    named = client.files.download(notes.id, tmp_path / "copy.txt")
    assert named == tmp_path / "copy.txt" and named.read_bytes() == NOTES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.txt", "notes.txt"]  # no partial file left

    deleted = client.files.delete(upload.id)
    assert (deleted.id, deleted.deleted) == (upload.id, True)
    with pytest.raises(runyard.NotFoundError):
        client.files.retrieve(upload.id)


def test_files_a_run_wrote_and_uploads_from_a_path_or_a_file_object(client: Runyard, tmp_path: Path) -> None:
    local = tmp_path / "data.csv"
    local.write_bytes(b"a,b\n1,2\n")
    from_path = client.files.upload(local, path="in/data.csv")
    assert (from_path.path, from_path.content_type) == ("in/data.csv", "text/csv")
    from_object = client.files.upload(io.BytesIO(b"\x00\x01binary"), filename="blob.bin")
    assert from_object.path == "blob.bin" and from_object.size == 8

    run = client.runs.create_and_wait(
        "Write a report", files=[from_path.id, from_object.id], timeout=20, **files_run(WRITE_REPORT)
    )
    assert run.status is RunStatus.COMPLETED, run.error
    paths = sorted(f.path for f in client.runs.files.list(run.id))
    assert paths == ["blob.bin", "in/data.csv", "out/report.md"]
    assert client.runs.files.content(run.id, "out/report.md") == b"# Report\nall good\n"
    with pytest.raises(runyard.NotFoundError):
        client.runs.files.content(run.id, "out/missing.md")

    # A follow-up sees the thread's workspace, and can bring files of its own.
    extra = client.files.upload(b"more", filename="more.txt")
    follow = client.runs.wait(client.runs.reply(run.id, "And this one", files=[extra]).id, timeout=20)
    assert follow.thread_id == run.thread_id and follow.id != run.id
    assert [f.path for f in client.runs.files.list(follow.id)] == ["more.txt"]
    assert "out/report.md" in {f.path for f in client.threads.files.list(run.thread_id)}


def test_a_page_of_files_walks_on(client: Runyard) -> None:
    uploads = [client.files.upload(f"{i}".encode(), filename=f"f{i}.txt") for i in range(3)]
    run = client.runs.create_and_wait("x", files=uploads, timeout=20, **files_run([{"text": "ok"}]))
    page = client.runs.files.list(run.id, limit=2)
    assert len(page.data) == 2 and page.has_more
    assert sorted(f.path for f in page) == ["f0.txt", "f1.txt", "f2.txt"]


def test_unknown_files_are_refused(client: Runyard) -> None:
    with pytest.raises(runyard.NotFoundError):
        client.runs.create("x", files=["file_nope"], **files_run([{"text": "ok"}]))
    with pytest.raises(TypeError, match="list of file ids"):
        client.runs.create("x", files="file_nope", **files_run([{"text": "ok"}]))  # type: ignore[arg-type]


async def test_async_upload_run_and_download(aclient: AsyncRunyard, tmp_path: Path) -> None:
    upload = await aclient.files.upload(NOTES, filename="notes.txt")
    assert await aclient.files.content(upload.id) == NOTES
    run = await aclient.runs.create_and_wait("Read", files=[upload.id], timeout=20, **files_run(READ_NOTES))
    assert run.status is RunStatus.COMPLETED, run.error
    page = await aclient.runs.files.list(run.id)
    [notes] = page.data
    assert [f.id async for f in aclient.threads.files.list(run.thread_id)] == [notes.id]
    assert await aclient.runs.files.content(run.id, "notes.txt") == NOTES
    path = await aclient.files.download(notes.id, tmp_path)
    assert path.read_bytes() == NOTES
    assert (await aclient.files.retrieve(notes.id)).path == "notes.txt"
    assert (await aclient.files.delete(upload.id)).deleted


# --------------------------------------------------------------------------- without a server


def test_upload_body_is_multipart_with_the_path() -> None:
    options = upload_options(b"hi", filename="a.md", path="docs/a.md")
    assert options.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert options.content is not None
    assert b'name="path"\r\n\r\ndocs/a.md' in options.content
    assert b'filename="a.md"\r\nContent-Type: text/markdown' in options.content


def test_download_names_come_from_content_disposition_without_directories(tmp_path: Path) -> None:
    def response(header: str | None) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Disposition": header} if header else {})

    assert filename_of(response("attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt")) in (
        "résumé.txt",
        "r_sum_.txt",
    )
    assert filename_of(response('attachment; filename="../../etc/passwd"')) == "passwd"
    assert filename_of(response('attachment; filename=".."')) is None
    assert download_target(tmp_path, response(None), "file_1") == tmp_path / "file_1"
    assert download_target(tmp_path / "x.bin", response('attachment; filename="y"'), "file_1") == tmp_path / "x.bin"


def test_a_download_that_drops_resumes_with_a_range(tmp_path: Path) -> None:
    content = b"0123456789" * 1000
    seen: list[dict[str, str]] = []

    class Dropping(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield content[:4000]
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append({k: v for k, v in request.headers.items() if k in ("range", "if-range")})
        headers = {"ETag": '"abc"', "Content-Disposition": 'attachment; filename="digits.txt"'}
        if "range" not in request.headers:
            return httpx.Response(200, headers=headers, stream=Dropping())
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        return httpx.Response(206, headers=headers, content=content[start:])

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Runyard(base_url="http://test", api_key="k", http_client=http) as client:
        path = client.files.download("file_1", tmp_path)
    assert path == tmp_path / "digits.txt" and path.read_bytes() == content
    assert seen == [{}, {"range": "bytes=4000-", "if-range": '"abc"'}]


def test_a_download_that_keeps_dropping_raises_and_leaves_nothing(tmp_path: Path) -> None:
    class Dropping(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"partial"
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200 if "range" not in request.headers else 206, headers={"ETag": '"e"'}, stream=Dropping()
        )

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Runyard(base_url="http://test", api_key="k", http_client=http, max_retries=1) as client:
        with pytest.raises(runyard.APIConnectionError):
            client.files.download("file_1", tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []
