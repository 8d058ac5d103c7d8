"""`/v1/files` (uploads, metadata, downloads) and the files of a run and of a thread's workspace."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ...domain import File
from ...store import blobs, files, runs, threads
from ...store.errors import InvalidInput, NotFound, PayloadTooLarge
from ..auth import org_id
from ..errors import ERRORS, error_response
from ..queries import After, Before, Limit
from ..schemas import Deleted, Page

__all__ = ["FileList", "discard", "router"]

log = logging.getLogger("runyard.server")

router = APIRouter(tags=["files"], responses=ERRORS)


class FileList(Page[File]):
    pass


MULTIPART_OVERHEAD = 64 * 1024
"""Bytes a multipart body may hold beyond the file itself (boundaries, part headers, `path`)."""

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The file's content."},
                        "path": {
                            "type": "string",
                            "maxLength": files.MAX_PATH_BYTES,
                            "description": "Its path in a workspace (default: the file name).",
                        },
                    },
                }
            }
        },
    }
}

CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"*/*": {}}, "description": "The file's content"},
    206: {"content": {"*/*": {}}, "description": "The requested byte range (`Range: bytes=a-b`)"},
    304: {"description": "Not modified (`If-None-Match` matched the ETag)"},
    416: {"description": "The range is outside the file (`Content-Range: bytes */size`)"},
}


def _backend(request: Request) -> blobs.Blobs:
    return blobs.for_url(request.app.state.settings.files)


async def discard(request: Request, org: str, keys: list[str], *, thread_id: str | None = None) -> None:
    """After commit, delete blobs the transaction left unreferenced (and, for a deleted thread,
    whatever else is under its prefix). Best effort: the rows are gone, an orphan blob is harmless."""
    backend = _backend(request)
    try:
        if keys and backend.deletes_after_commit:
            # Re-checked: a concurrent writer of the same content may refer to the key again by now.
            async with request.app.state.store.read() as conn:
                keys = await files.unreferenced(conn, org, keys)
        await backend.delete(keys)
        if thread_id is not None:
            await backend.delete_scope(org, thread_id)
    except Exception:
        log.warning("could not delete %d blob(s) of org %s after commit", len(keys), org, exc_info=True)


async def _bounded(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    # Counted as it arrives: a chunked body has no Content-Length to refuse up front.
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"the upload is larger than {limit} bytes", field="file")
        yield chunk


def _file_name(filename: str | None) -> str:
    """The part's file name without any directories a client put in it."""
    name = re.split(r"[/\\]", filename or "")[-1].strip()
    if name in ("", ".", ".."):
        raise InvalidInput("the file part has no usable file name: give one, or pass a 'path' field", field="file")
    return name


@router.post("/v1/files", response_model=File, status_code=201, openapi_extra=UPLOAD_BODY)
async def upload_file(request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Upload a file (multipart field `file`, optional `path`) to give to a run with `files: [id]`."""
    settings = request.app.state.settings
    limits = files.FileLimits.of(settings)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidInput("send the file as multipart/form-data with a 'file' part", field="file")
    limit = limits.max_bytes + MULTIPART_OVERHEAD
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"the upload is larger than {limits.max_bytes} bytes", field="file")
    parser = MultiPartParser(
        request.headers, _bounded(request, limit), max_files=1, max_fields=1, max_part_size=files.MAX_PATH_BYTES * 4
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(f"the multipart body is malformed: {exc.message}", field="file") from None
    try:
        unknown = sorted(set(form.keys()) - {"file", "path"})
        if unknown:
            raise InvalidInput(f"unknown form field {unknown[0]!r} (this endpoint takes: file, path)", field=unknown[0])
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise InvalidInput("the 'file' part is missing (or is not a file)", field="file")
        raw_path = form.get("path")
        if raw_path is not None and not isinstance(raw_path, str):
            raise InvalidInput("path must be a text field", field="path")
        path = files.normalise_path(raw_path, "path") if raw_path is not None else None
        path = path or files.normalise_path(_file_name(part.filename), "file")
        content = await part.read(limits.max_bytes + 1)
    finally:
        await form.close()
    if len(content) > limits.max_bytes:
        raise PayloadTooLarge(f"the file is larger than {limits.max_bytes} bytes", field="file")
    backend = _backend(request)
    # S3: the content is stored before the row that names it (an orphan after a crash is harmless).
    await backend.put(blobs.key_for(org, None, files.sha256_of(content)), content)
    async with request.app.state.store.tx() as tx:
        return await files.upload(tx, backend, org, path=path, content=content, limits=limits)


@router.get("/v1/files/{file_id}", response_model=File)
async def get_file(file_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        return await files.get(conn, org, file_id)


@router.get("/v1/files/{file_id}/content", response_class=Response, responses=CONTENT)
async def download_file(file_id: str, request: Request, org: str = Depends(org_id)) -> Response:
    """The file's content, with its ETag (`If-None-Match` → 304) and byte ranges (`Range` → 206)."""
    async with request.app.state.store.read() as conn:
        file, key = await files.locate(conn, org, file_id)
    return await _content(request, file, key)


@router.delete("/v1/files/{file_id}", response_model=Deleted)
async def delete_file(file_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Delete an upload or a workspace file (its content goes once nothing refers to it)."""
    async with request.app.state.store.tx() as tx:
        _, keys = await files.delete(tx.conn, org, file_id)
    await discard(request, org, keys)
    return {"id": file_id, "object": "file", "deleted": True}


@router.get("/v1/runs/{run_id}/files", response_model=FileList, tags=["runs"])
async def run_files(
    run_id: str,
    request: Request,
    org: str = Depends(org_id),
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
) -> dict[str, Any]:
    """The files this run created or changed (that still exist), newest first."""
    async with request.app.state.store.read() as conn:
        await runs.get(conn, org, run_id)
        data, has_more, cursor = await files.list_for_run(conn, org, run_id, limit=limit, before=before, after=after)
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/v1/runs/{run_id}/files/{path:path}", response_class=Response, responses=CONTENT, tags=["runs"])
async def download_run_file(run_id: str, path: str, request: Request, org: str = Depends(org_id)) -> Response:
    """A file of the run's thread workspace, by its path (as it is now, whichever run wrote it last)."""
    async with request.app.state.store.read() as conn:
        run = await runs.get(conn, org, run_id)
        file, key = await files.locate_by_path(conn, org, run["thread_id"], path)
    return await _content(request, file, key)


@router.get("/v1/threads/{thread_id}/files", response_model=FileList, tags=["threads"])
async def thread_files(
    thread_id: str,
    request: Request,
    org: str = Depends(org_id),
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
) -> dict[str, Any]:
    """The thread's workspace: every file its runs wrote (or were given), newest first."""
    async with request.app.state.store.read() as conn:
        await threads.get(conn, org, thread_id)
        data, has_more, cursor = await files.list_for_thread(
            conn, org, thread_id, limit=limit, before=before, after=after
        )
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


def content_disposition(path: str) -> str:
    """`attachment` with the file's name (RFC 6266): an ASCII fallback and the exact UTF-8 `filename*`."""
    name = path.rsplit("/", 1)[-1]
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _etag_matches(header: str, etag: str) -> bool:
    # Weak comparison (RFC 9110 §13.1.2): W/ prefixes do not matter for If-None-Match.
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """`[start, end)` of a single `bytes=` range; None to ignore the header (malformed or several
    ranges: serving the whole file is allowed); False when it cannot be satisfied (416)."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # bytes=-n: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return False
        return max(size - suffix, 0), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, min(int(last) + 1, size) if last else size


async def _content(request: Request, file: dict[str, Any], key: str) -> Response:
    size, etag = file["size"], f'"{file["sha256"]}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(file["path"]),
        # Served as a download, never rendered: an agent's .html must not run as this origin's page.
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-cache",
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    start, end, status = 0, size, 200
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header is not None and (if_range is None or if_range.strip() == etag):
        wanted = byte_range(range_header, size)
        if wanted is False:
            return error_response(
                416,
                "range_not_satisfiable",
                f"the file is {size} bytes: {range_header!r} asks for none of them",
                "Range",
                headers={**headers, "Content-Range": f"bytes */{size}"},
            )
        if isinstance(wanted, tuple):
            (start, end), status = wanted, 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if end <= start:
        return Response(b"", status_code=status, headers=headers, media_type=file["content_type"])
    chunks = _backend(request).stream(request.app.state.store, key, start, end)
    try:
        # The first chunk before any header goes out: content deleted meanwhile is a clean 404.
        first = await anext(chunks)
    except (FileNotFoundError, StopAsyncIteration):
        raise NotFound(f"the content of file {file['id']} is gone (deleted meanwhile)") from None

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(body(), status_code=status, headers=headers, media_type=file["content_type"])
