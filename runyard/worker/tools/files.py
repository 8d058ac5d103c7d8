"""`write_file`, `read_file`, `list_files`, `delete_file`: the thread's workspace, offered with the `files` group.

Like the memory tools, the two that change the workspace do not write on their own: each stages
its write on the call's context, and the journal commits it with its `file.*` event, the call's
`tool.result` and its journal entry in one fenced transaction (invariant 5: a resumed run replays
the entry, never writes again). With S3 the content is uploaded before staging, under its
content-addressed key, so a call re-made after a crash uploads the same object again, harmlessly.
A blob a replace or delete leaves unused on S3 waits for the thread's deletion (a tool has no
after-commit step); in the database it goes in the same transaction.
`ctx.deps` is the run's `RunDeps` (typed `Any` here: agents.py imports this module).
"""

from __future__ import annotations

import base64
import binascii
import codecs
from typing import Any, Literal

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ToolFailed

from ...store import blobs, files
from ...store.db import Tx
from ...store.errors import DomainError, NotFound
from ...store.ids import new_id
from .builtins import ToolSpec
from .context import ToolCallContext, current_tool_call

__all__ = ["FILE_TOOLS", "READ_MAX_BYTES", "delete_file", "list_files", "read_file", "write_file"]

READ_MAX_BYTES = 100 * 1024
"""Text `read_file` returns at most: results are journaled and sent as events, so they stay small."""
INLINE_BINARY_BYTES = 3 * 1024
"""Binary content `read_file` shows as base64 only up to this size; past it, only its size and type."""


def _call() -> ToolCallContext:
    call = current_tool_call.get()
    if call is None:
        raise RuntimeError("file tools stage their writes on the call: run them through the run's JournalToolset")
    return call


def _path(path: str) -> str:
    try:
        return files.normalise_path(path)
    except DomainError as exc:
        raise ToolFailed(exc.message) from None


async def _existing(ctx: RunContext[Any], path: str) -> dict[str, Any] | None:
    run = ctx.deps.run
    async with ctx.deps.writer.store.read() as conn:
        try:
            return await files.get_by_path(conn, run.org_id, run.thread_id, path)
        except NotFound:
            return None


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "utf-8":
        try:
            return content.encode("utf-8")
        except UnicodeEncodeError:
            raise ToolFailed("content is not valid Unicode text (a lone surrogate)") from None
    if encoding == "base64":
        try:
            return base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ToolFailed("content is not valid base64 (encoding='base64')") from None
    raise ToolFailed(f"encoding must be 'utf-8' or 'base64', not {encoding!r}")


async def write_file(
    ctx: RunContext[Any], path: str, content: str, encoding: Literal["utf-8", "base64"] = "utf-8"
) -> str:
    """Write a file to this thread's workspace, creating it or replacing its content.

    Args:
        path: A relative path such as `report.md` or `data/out.csv`.
        content: The whole new content: text, or base64 when `encoding` is `base64`.
        encoding: `utf-8` for text (the default), `base64` for binary content.
    """
    run, settings = ctx.deps.run, ctx.deps.settings
    normal = _path(path)
    data = _decode(content, encoding)
    limits = files.FileLimits.of(settings)
    if len(data) > limits.max_bytes:
        raise ToolFailed(f"{normal} would be {len(data)} bytes: a file may hold at most {limits.max_bytes}")
    existing = await _existing(ctx, normal)
    # Decided now: the event announcing the write is staged before the write runs.
    file_id = existing["id"] if existing is not None else new_id("file")
    change = "updated" if existing is not None else "created"
    sha = files.sha256_of(data)
    backend = blobs.for_url(settings.files)
    await backend.put(blobs.key_for(run.org_id, run.thread_id, sha), data)

    async def write(tx: Tx) -> None:
        try:
            file, done, _ = await files.write(
                tx, backend, run.org_id, run.thread_id, normal, data, run.id, limits=limits, file_id=file_id
            )
        except DomainError as exc:
            # Raised inside the journal's transaction: it rolls back, and the call is journaled as failed.
            raise ToolFailed(exc.message) from None
        if done != change or file["id"] != file_id:
            raise ToolFailed(f"{normal} was changed by someone else while being written: write it again")

    data_of = {"file_id": file_id, "path": normal, "size": len(data), "content_type": files.content_type_of(normal)}
    _call().write_with_result(write, (f"file.{change}", {**data_of, "sha256": sha}))
    return f"{'updated' if existing is not None else 'created'} {normal} ({len(data)} bytes)"


def _as_text(head: bytes, complete: bool) -> str | None:
    """The bytes as UTF-8 text (a character cut at the end of a partial read is dropped), or None if binary."""
    if b"\x00" in head:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return None


async def read_file(ctx: RunContext[Any], path: str) -> str:
    """Read a file of this thread's workspace: its text (the first 100 KB), or for binary content its size and type.

    Args:
        path: The file's relative path, as `list_files` shows it.
    """
    run, store = ctx.deps.run, ctx.deps.writer.store
    normal = _path(path)
    async with store.read() as conn:
        try:
            file, key = await files.locate_by_path(conn, run.org_id, run.thread_id, normal)
        except NotFound:
            raise ToolFailed(f"no file {normal!r} in this workspace (list_files shows what there is)") from None
    size, kind = file["size"], file["content_type"]
    try:
        head = await blobs.for_url(ctx.deps.settings.files).read(store, key, 0, min(size, READ_MAX_BYTES))
    except FileNotFoundError:
        raise ToolFailed(f"{normal} was deleted while being read") from None
    text = _as_text(head, complete=size <= READ_MAX_BYTES)
    if text is not None:
        if size > READ_MAX_BYTES:
            return f"{text}\n[truncated: showing the first {READ_MAX_BYTES} of {size} bytes of {normal}]"
        return text
    if size <= INLINE_BINARY_BYTES:
        return f"{normal} is binary ({kind}, {size} bytes); its content in base64:\n{base64.b64encode(head).decode()}"
    return f"{normal} is binary ({kind}, {size} bytes): too large to show here"


async def list_files(ctx: RunContext[Any]) -> str:
    """List the files in this thread's workspace, with their sizes."""
    run = ctx.deps.run
    async with ctx.deps.writer.store.read() as conn:
        block = await files.workspace_block(conn, run.org_id, run.thread_id)
    return block or "This thread's workspace has no files yet."


async def delete_file(ctx: RunContext[Any], path: str) -> str:
    """Delete a file from this thread's workspace.

    Args:
        path: The file's relative path, as `list_files` shows it.
    """
    run = ctx.deps.run
    normal = _path(path)
    existing = await _existing(ctx, normal)
    if existing is None:
        raise ToolFailed(f"no file {normal!r} in this workspace (list_files shows what there is)")

    async def remove(tx: Tx) -> None:
        try:
            file, _ = await files.delete_by_path(tx.conn, run.org_id, run.thread_id, normal)
        except DomainError as exc:
            raise ToolFailed(exc.message) from None
        if file["id"] != existing["id"]:
            raise ToolFailed(f"{normal} was replaced by someone else meanwhile: look again before deleting it")

    _call().write_with_result(remove, ("file.deleted", files.event_data(existing)))
    return f"deleted {normal}"


FILE_TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("write_file", write_file, side_effects=True),
        ToolSpec("read_file", read_file),
        ToolSpec("list_files", list_files),
        ToolSpec("delete_file", delete_file, side_effects=True),
    )
}
