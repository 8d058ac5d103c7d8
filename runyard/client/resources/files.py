"""`client.files`, `client.runs.files` and `client.threads.files`: uploads, and the files of a
thread's workspace that runs read and write (with the `files` tools).

An upload (`files.upload`) is attached to no thread until a run takes it (`runs.create(files=[...])`
or `runs.reply(..., files=[...])`): it is then put into the thread's workspace at its path,
before the run starts. The module functions build the requests and name the downloads without
I/O; the classes hold only the calls.
"""

from __future__ import annotations

import email.message
import mimetypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from ...domain import File
from ..base_client import RequestOptions, map_transport_error
from ..pagination import AsyncPaginator, SyncPage
from ..paths import file_path_for, path_for
from ..types import NOT_GIVEN, NotGiven, NotGivenOr

if TYPE_CHECKING:
    from ..client import AsyncRunyard, Runyard

__all__ = [
    "AsyncFiles",
    "AsyncRunFiles",
    "AsyncThreadFiles",
    "FileDeleted",
    "FileInput",
    "Files",
    "Resume",
    "RunFiles",
    "ThreadFiles",
    "download_target",
    "upload_options",
]

FileInput = str | os.PathLike[str] | bytes | IO[bytes]
"""What `files.upload` takes: a local path, the content itself, or a binary file object."""

DEFAULT_UPLOAD_NAME = "upload"
"""The filename of bytes uploaded without one."""


class FileDeleted(BaseModel):
    """The answer to `client.files.delete(...)`."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["file"] = "file"
    deleted: bool


# --------------------------------------------------------------------------- pure helpers


def _content_and_name(file: FileInput, filename: str | None) -> tuple[bytes, str]:
    if isinstance(file, bytes):
        return file, filename or DEFAULT_UPLOAD_NAME
    if isinstance(file, (str, os.PathLike)):
        local = Path(file)
        return local.read_bytes(), filename or local.name
    content = file.read()
    name = getattr(file, "name", None)
    return content, filename or (Path(name).name if isinstance(name, str) else DEFAULT_UPLOAD_NAME)


def upload_options(file: FileInput, *, filename: str | None, path: NotGivenOr[str]) -> RequestOptions:
    """The multipart `POST /v1/files`: the file as field `file`, and `path` when given.

    The body is built in memory once, so that a retry sends the same bytes.
    """
    content, name = _content_and_name(file, filename)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    form = {} if isinstance(path, NotGiven) else {"path": path}
    encoded = httpx.Request("POST", "/", files={"file": (name, content, media_type)}, data=form)
    return RequestOptions(
        "POST", "/v1/files", content=encoded.read(), headers={"Content-Type": encoded.headers["Content-Type"]}
    )


def _safe_name(name: str | None) -> str | None:
    # Only the last part of a name the server sent: a download must not escape its directory.
    if not name:
        return None
    base = PurePosixPath(name.replace("\\", "/")).name
    return base if base not in ("", ".", "..") else None


def filename_of(response: httpx.Response) -> str | None:
    """The file name in a response's `Content-Disposition` (RFC 6266, `filename*` too), if any."""
    header = response.headers.get("content-disposition")
    if not header:
        return None
    message = email.message.Message()
    message["content-disposition"] = header
    return _safe_name(message.get_filename())


def download_target(dest: str | os.PathLike[str], response: httpx.Response, file_id: str) -> Path:
    """Where a download goes: `dest`, or inside it (named as the server says) when it is a directory."""
    target = Path(dest)
    if target.is_dir():
        return target / (filename_of(response) or file_id)
    return target


@contextmanager
def _writing(target: Path) -> Iterator[IO[bytes]]:
    # Written beside the target, then moved over it: a failed download leaves no half file.
    partial = target.with_name(f".{target.name}.part")
    try:
        with partial.open("wb") as out:
            yield out
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


class Resume:
    """How a download goes on after its connection dropped: the only code that counts the drops."""

    def __init__(self, first: httpx.Response, max_retries: int) -> None:
        self.etag = first.headers.get("etag")
        """The version being downloaded; a resumed request asks for the rest of this one only."""
        self.left = max_retries
        """Resumes still allowed."""

    def after_drop(self, exc: httpx.TransportError, written: int, request: httpx.Request) -> dict[str, str]:
        """The headers that ask for the rest after `written` bytes; raises the SDK's error when out of resumes."""
        if self.left <= 0 or self.etag is None:
            raise map_transport_error(exc, request) from exc
        self.left -= 1
        # `If-Range`: when the file changed meanwhile, the server sends all of it (200), not a range.
        return {"Range": f"bytes={written}-", "If-Range": self.etag}

    def restarted(self, response: httpx.Response, out: IO[bytes]) -> None:
        """After the resumed request: a 200 (not 206) is the whole file again, so start over."""
        if response.status_code != 206:
            out.seek(0)
            out.truncate()
            self.etag = response.headers.get("etag")


def _list_params(limit: NotGivenOr[int], before: NotGivenOr[str], after: NotGivenOr[str]) -> dict[str, Any]:
    return {"limit": limit, "before": before, "after": after}


# --------------------------------------------------------------------------- sync


class Files:
    """Files: uploads for runs, and the files runs write into their thread's workspace."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def upload(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        path: NotGivenOr[str] = NOT_GIVEN,
    ) -> File:
        """Upload a file and return it; give its id (or the `File`) to `runs.create(files=[...])`.

        Args:
            file: a local path, the content as bytes, or a binary file object.
            filename: the file's name (default: the local file's name, or "upload" for bytes).
            path: where in the thread's workspace the run finds it (default: the filename); the
                server gives the file its content type from this name (`text/plain` if unknown).
        """
        options = upload_options(file, filename=filename, path=path)
        return self._client._parse(self._client.request(options), File)

    def retrieve(self, file_id: str) -> File:
        """Fetch a file's metadata. Raises `NotFoundError` when there is no such file."""
        return self._client._request_model("GET", path_for("/v1/files/{}", file_id), File)

    def content(self, file_id: str) -> bytes:
        """A file's content, in memory; `download` streams a large one to disk."""
        return self._client.request(RequestOptions("GET", path_for("/v1/files/{}/content", file_id))).content

    def download(self, file_id: str, dest: str | os.PathLike[str] = ".") -> Path:
        """Stream a file's content to `dest` and return the path written.

        When `dest` is a directory, the file goes into it under the name the server gives
        (its workspace name). An existing file at the path is replaced once the download is
        complete. A connection that drops midway is resumed where it stopped (a `Range` request
        for the same version), up to the client's `max_retries` times.
        """
        path = path_for("/v1/files/{}/content", file_id)
        response = self._client.request(RequestOptions("GET", path), stream=True)
        target = download_target(dest, response, file_id)
        resume = Resume(response, self._client.max_retries)
        with _writing(target) as out:
            while True:
                try:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                    break
                except httpx.TransportError as exc:
                    headers = resume.after_drop(exc, out.tell(), response.request)
                finally:
                    response.close()
                response = self._client.request(RequestOptions("GET", path, headers=headers), stream=True)
                resume.restarted(response, out)
        return target

    def delete(self, file_id: str) -> FileDeleted:
        """Delete a file (an upload, or a file of a workspace)."""
        return self._client._request_model("DELETE", path_for("/v1/files/{}", file_id), FileDeleted)


class RunFiles:
    """`client.runs.files`: the files a run wrote, and its workspace's files by path."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def list(
        self,
        run_id: str,
        *,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
        after: NotGivenOr[str] = NOT_GIVEN,
    ) -> SyncPage[File]:
        """The files this run created or changed (that still exist); iterating the page walks all of them."""
        path = path_for("/v1/runs/{}/files", run_id)
        return self._client._request_page(path, File.model_validate, _list_params(limit, before, after))

    def content(self, run_id: str, path: str) -> bytes:
        """The content of the file at `path` (e.g. `"out/report.md"`) in the run's workspace."""
        url = file_path_for("/v1/runs/{}/files/", run_id, path)
        return self._client.request(RequestOptions("GET", url)).content


class ThreadFiles:
    """`client.threads.files`: the files of a thread's workspace."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def list(
        self,
        thread_id: str,
        *,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
        after: NotGivenOr[str] = NOT_GIVEN,
    ) -> SyncPage[File]:
        """The files of the thread's workspace; iterating the page walks all of them."""
        path = path_for("/v1/threads/{}/files", thread_id)
        return self._client._request_page(path, File.model_validate, _list_params(limit, before, after))


# --------------------------------------------------------------------------- async


class AsyncFiles:
    """Files: uploads for runs, and the files runs write into their thread's workspace."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    async def upload(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        path: NotGivenOr[str] = NOT_GIVEN,
    ) -> File:
        """Upload a file and return it; the arguments are those of `Runyard.files.upload`."""
        options = upload_options(file, filename=filename, path=path)
        return self._client._parse(await self._client.request(options), File)

    async def retrieve(self, file_id: str) -> File:
        """Fetch a file's metadata. Raises `NotFoundError` when there is no such file."""
        return await self._client._request_model("GET", path_for("/v1/files/{}", file_id), File)

    async def content(self, file_id: str) -> bytes:
        """A file's content, in memory; `download` streams a large one to disk."""
        return (await self._client.request(RequestOptions("GET", path_for("/v1/files/{}/content", file_id)))).content

    async def download(self, file_id: str, dest: str | os.PathLike[str] = ".") -> Path:
        """Stream a file's content to `dest` (a path, or a directory) and return the path written;
        see `Runyard.files.download`."""
        path = path_for("/v1/files/{}/content", file_id)
        response = await self._client.request(RequestOptions("GET", path), stream=True)
        target = download_target(dest, response, file_id)
        resume = Resume(response, self._client.max_retries)
        with _writing(target) as out:
            while True:
                try:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
                    break
                except httpx.TransportError as exc:
                    headers = resume.after_drop(exc, out.tell(), response.request)
                finally:
                    await response.aclose()
                response = await self._client.request(RequestOptions("GET", path, headers=headers), stream=True)
                resume.restarted(response, out)
        return target

    async def delete(self, file_id: str) -> FileDeleted:
        """Delete a file (an upload, or a file of a workspace)."""
        return await self._client._request_model("DELETE", path_for("/v1/files/{}", file_id), FileDeleted)


class AsyncRunFiles:
    """`client.runs.files`: the files a run wrote, and its workspace's files by path."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    def list(
        self,
        run_id: str,
        *,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
        after: NotGivenOr[str] = NOT_GIVEN,
    ) -> AsyncPaginator[File]:
        """The files this run created or changed: `await` for the first page or `async for` over all."""
        path = path_for("/v1/runs/{}/files", run_id)
        return self._client._request_page(path, File.model_validate, _list_params(limit, before, after))

    async def content(self, run_id: str, path: str) -> bytes:
        """The content of the file at `path` (e.g. `"out/report.md"`) in the run's workspace."""
        url = file_path_for("/v1/runs/{}/files/", run_id, path)
        return (await self._client.request(RequestOptions("GET", url))).content


class AsyncThreadFiles:
    """`client.threads.files`: the files of a thread's workspace."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    def list(
        self,
        thread_id: str,
        *,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
        after: NotGivenOr[str] = NOT_GIVEN,
    ) -> AsyncPaginator[File]:
        """The files of the thread's workspace: `await` for the first page or `async for` over all."""
        path = path_for("/v1/threads/{}/files", thread_id)
        return self._client._request_page(path, File.model_validate, _list_params(limit, before, after))
