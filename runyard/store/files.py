"""Files: a thread's workspace (what its runs write, one row per path) and uploads (no thread yet).

Every function takes the org (invariant 9). Content lives in a `blobs` backend under a
content-addressed key; a row names its key, and a blob goes when no row refers to it any more
(`_release`). Workspace changes of one thread serialise on the thread's row, so its limits
(bytes, files) hold under concurrent writers. `attach` makes uploads workspace files that share
the upload's blob: nothing is copied (an S3 copy could not happen before the transaction).
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import events
from .blobs import Blobs, key_for, scope_prefix
from .db import Conn, Tx, utcnow
from .errors import InvalidInput, NotFound, PayloadTooLarge
from .ids import new_id
from .pages import finish, page
from .schema import file_blobs, files, run_files, threads

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_PATH_BYTES",
    "WORKSPACE_LINES",
    "Change",
    "FileLimits",
    "attach",
    "content_type_of",
    "delete",
    "delete_by_path",
    "delete_for_thread",
    "event_data",
    "get",
    "get_by_path",
    "list_for_run",
    "list_for_thread",
    "locate",
    "locate_by_path",
    "normalise_path",
    "sha256_of",
    "to_dict",
    "unreferenced",
    "upload",
    "workspace_block",
    "write",
]

MAX_COMPONENT_BYTES = 255
"""Longest name of one path component, in UTF-8 bytes (what common file systems allow)."""
MAX_PATH_BYTES = 255
"""Longest whole path, in UTF-8 bytes."""
WORKSPACE_LINES = 100
"""Files listed in the model's instructions at most: the rest is one "and N more" line."""

Change = Literal["created", "updated"]


@dataclass(frozen=True)
class FileLimits:
    max_bytes: int
    """Largest single file."""
    max_thread_bytes: int
    """Total size of one thread's files."""
    max_thread_files: int
    """Files in one thread's workspace."""

    @classmethod
    def of(cls, settings: Any) -> FileLimits:
        return cls(settings.files_max_bytes, settings.files_max_thread_bytes, settings.files_max_thread_files)


def normalise_path(path: str, field: str = "path") -> str:
    """A workspace path in its one spelling (`a/./b//c` → `a/b/c`), or `InvalidInput` saying why not."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidInput(f"{field} must be a non-empty relative path such as 'notes/todo.md'", field=field)
    bad = next((c for c in path if ord(c) < 32 or 127 <= ord(c) < 160), None)
    if bad is not None:
        raise InvalidInput(f"{field} contains a control character (U+{ord(bad):04X})", field=field)
    if "\\" in path:
        raise InvalidInput(f"{field} contains a backslash: separate directories with '/'", field=field)
    if path.startswith("/"):
        raise InvalidInput(f"{field} must be relative to the workspace, not absolute: {path!r}", field=field)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"{field} must not contain '..' segments: {path!r}", field=field)
    if not parts:
        raise InvalidInput(f"{field} names no file: {path!r}", field=field)
    try:
        sizes = [len(p.encode("utf-8")) for p in parts]
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} is not valid Unicode (a lone surrogate)", field=field) from None
    if max(sizes) > MAX_COMPONENT_BYTES:
        raise InvalidInput(f"{field} has a component longer than {MAX_COMPONENT_BYTES} bytes", field=field)
    normal = "/".join(parts)
    if len(normal.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidInput(f"{field} is longer than {MAX_PATH_BYTES} bytes", field=field)
    return normal


def content_type_of(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "text/plain"


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


_PUBLIC = ("id", "thread_id", "run_id", "path", "size", "content_type", "sha256", "created_at", "updated_at")


def to_dict(row: Any) -> dict[str, Any]:
    return {"object": "file", **{f: getattr(row, f) if not isinstance(row, dict) else row[f] for f in _PUBLIC}}


def event_data(file: dict[str, Any]) -> dict[str, Any]:
    """What `file.created` / `file.updated` / `file.deleted` carry."""
    return {k if k != "id" else "file_id": file[k] for k in ("id", "path", "size", "content_type", "sha256")}


async def _row(conn: Conn, org_id: str, file_id: str) -> Any:
    row = (await conn.execute(select(files).where(files.c.id == file_id, files.c.org_id == org_id))).one_or_none()
    if row is None:
        raise NotFound.of("file", file_id)
    return row


async def _row_by_path(conn: Conn, org_id: str, thread_id: str, path: str) -> Any:
    query = select(files).where(files.c.org_id == org_id, files.c.thread_id == thread_id, files.c.path == path)
    return (await conn.execute(query)).one_or_none()


async def get(conn: Conn, org_id: str, file_id: str) -> dict[str, Any]:
    return to_dict(await _row(conn, org_id, file_id))


async def locate(conn: Conn, org_id: str, file_id: str) -> tuple[dict[str, Any], str]:
    """The file and the blob key of its content (which never leaves the server)."""
    row = await _row(conn, org_id, file_id)
    return to_dict(row), row.blob_key


async def get_by_path(conn: Conn, org_id: str, thread_id: str, path: str) -> dict[str, Any]:
    return (await locate_by_path(conn, org_id, thread_id, path))[0]


async def locate_by_path(conn: Conn, org_id: str, thread_id: str, path: str) -> tuple[dict[str, Any], str]:
    normal = normalise_path(path)
    row = await _row_by_path(conn, org_id, thread_id, normal)
    if row is None:
        raise NotFound(f"no file {normal!r} in thread {thread_id}", field="path")
    return to_dict(row), row.blob_key


async def list_for_thread(
    conn: Conn, org_id: str, thread_id: str, *, limit: int, before: str | None = None, after: str | None = None
) -> tuple[list[dict[str, Any]], bool, str | None]:
    query = select(files).where(files.c.org_id == org_id, files.c.thread_id == thread_id)
    query, ascending = page(query, files, limit=limit, before=before, after=after)
    rows, has_more, cursor = finish(list(await conn.execute(query)), limit=limit, ascending=ascending)
    return [to_dict(r) for r in rows], has_more, cursor


async def list_for_run(
    conn: Conn, org_id: str, run_id: str, *, limit: int, before: str | None = None, after: str | None = None
) -> tuple[list[dict[str, Any]], bool, str | None]:
    """The files the run created or changed (and that still exist), newest first."""
    query = (
        select(files)
        .join(run_files, run_files.c.file_id == files.c.id)
        .where(run_files.c.run_id == run_id, files.c.org_id == org_id)
    )
    query, ascending = page(query, files, limit=limit, before=before, after=after)
    rows, has_more, cursor = finish(list(await conn.execute(query)), limit=limit, ascending=ascending)
    return [to_dict(r) for r in rows], has_more, cursor


async def _lock_thread(conn: Conn, org_id: str, thread_id: str) -> None:
    # The thread's row serialises its workspace changes: limit checks and path upserts never race.
    query = select(threads.c.id).where(threads.c.id == thread_id, threads.c.org_id == org_id).with_for_update()
    if (await conn.execute(query)).one_or_none() is None:
        raise NotFound.of("thread", thread_id)


async def unreferenced(conn: Conn, org_id: str, keys: Sequence[str], thread_id: str | None = None) -> list[str]:
    """Those of `keys` no file row refers to any more."""
    out = []
    for key in dict.fromkeys(keys):
        query = select(files.c.id).where(files.c.org_id == org_id, files.c.blob_key == key).limit(1)
        if thread_id is not None and key.startswith(scope_prefix(org_id, thread_id)):
            query = query.where(files.c.thread_id == thread_id)  # only its own thread can refer to it: use the index
        if (await conn.execute(query)).first() is None:
            out.append(key)
    return out


async def _release(conn: Conn, org_id: str, keys: Sequence[str], thread_id: str | None = None) -> list[str]:
    """Drop the blobs of `keys` nothing refers to: database rows now, the rest (S3) by the caller after commit."""
    gone = await unreferenced(conn, org_id, keys, thread_id)
    if gone:
        await conn.execute(sql_delete(file_blobs).where(file_blobs.c.key.in_(gone)))
    return gone


async def _record_run(conn: Conn, run_id: str, file_id: str) -> None:
    dialect_insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(dialect_insert(run_files).values(run_id=run_id, file_id=file_id).on_conflict_do_nothing())


async def _put(
    conn: Conn,
    org_id: str,
    thread_id: str,
    path: str,
    *,
    size: int,
    sha256: str,
    key: str,
    run_id: str,
    limits: FileLimits,
    file_id: str | None = None,
) -> tuple[dict[str, Any], Change, list[str]]:
    """Create or replace the file at `path` (the thread's row already locked), checking every limit:
    (file, created|updated, blob keys released)."""
    if size > limits.max_bytes:
        raise PayloadTooLarge(f"{path} is {size} bytes: a file may hold at most {limits.max_bytes}", field="content")
    existing = await _row_by_path(conn, org_id, thread_id, path)
    count, total = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(files.c.size), 0)).where(
                files.c.org_id == org_id, files.c.thread_id == thread_id
            )
        )
    ).one()
    if existing is None and count >= limits.max_thread_files:
        raise PayloadTooLarge(
            f"thread {thread_id} already holds {count} files, the most a workspace may hold", field="path"
        )
    # A replaced file's old size no longer counts.
    after = int(total) - (existing.size if existing is not None else 0) + size
    if after > limits.max_thread_bytes:
        raise PayloadTooLarge(
            f"writing {path} would make thread {thread_id}'s files {after} bytes: at most "
            f"{limits.max_thread_bytes} are allowed",
            field="content",
        )
    now = utcnow()
    values = {"run_id": run_id, "size": size, "content_type": content_type_of(path), "sha256": sha256}
    values |= {"blob_key": key, "updated_at": now}
    released: list[str] = []
    row: dict[str, Any]
    if existing is not None:
        await conn.execute(update(files).where(files.c.id == existing.id).values(**values))
        row = {**existing._asdict(), **values}
        if existing.blob_key != key:
            released = await _release(conn, org_id, [existing.blob_key], thread_id)
        change: Change = "updated"
    else:
        row = {"id": file_id or new_id("file"), "org_id": org_id, "thread_id": thread_id, "path": path}
        row |= values | {"created_at": now}
        await conn.execute(insert(files), [row])
        change = "created"
    await _record_run(conn, run_id, row["id"])
    return to_dict(row), change, released


async def write(
    tx: Tx,
    blobs: Blobs,
    org_id: str,
    thread_id: str,
    path: str,
    content: bytes,
    run_id: str,
    *,
    limits: FileLimits,
    file_id: str | None = None,
) -> tuple[dict[str, Any], Change, list[str]]:
    """A run writes a workspace file: `(file, "created"|"updated", blob keys to delete after commit)`.

    The content goes into the database here (db backend); an S3 caller put it under
    `key_for(org_id, thread_id, sha256_of(content))` before this transaction. `file_id` names a
    new file (the caller announced it in an event already); an existing one keeps its id."""
    path = normalise_path(path)
    if len(content) > limits.max_bytes:  # before hashing or storing anything
        raise PayloadTooLarge(
            f"{path} is {len(content)} bytes: a file may hold at most {limits.max_bytes}", field="content"
        )
    await _lock_thread(tx.conn, org_id, thread_id)
    sha = sha256_of(content)
    key = key_for(org_id, thread_id, sha)
    file, change, released = await _put(
        tx.conn,
        org_id,
        thread_id,
        path,
        size=len(content),
        sha256=sha,
        key=key,
        run_id=run_id,
        limits=limits,
        file_id=file_id,
    )
    await blobs.put_in_tx(tx.conn, key, content)
    return file, change, released


async def upload(tx: Tx, blobs: Blobs, org_id: str, *, path: str, content: bytes, limits: FileLimits) -> dict[str, Any]:
    """A caller's upload (no thread): `path` is the sanitised file name. S3 content was put before."""
    path = normalise_path(path)
    if len(content) > limits.max_bytes:
        raise PayloadTooLarge(f"the file is {len(content)} bytes: at most {limits.max_bytes} are allowed", field="file")
    sha = sha256_of(content)
    key = key_for(org_id, None, sha)
    now = utcnow()
    row = {"id": new_id("file"), "org_id": org_id, "thread_id": None, "run_id": None, "path": path}
    row |= {"size": len(content), "content_type": content_type_of(path), "sha256": sha, "blob_key": key}
    row |= {"created_at": now, "updated_at": now}
    await blobs.put_in_tx(tx.conn, key, content)
    await tx.conn.execute(insert(files), [row])
    return to_dict(row)


async def _remove(conn: Conn, org_id: str, row: Any) -> list[str]:
    await conn.execute(sql_delete(run_files).where(run_files.c.file_id == row.id))
    await conn.execute(sql_delete(files).where(files.c.id == row.id))
    return await _release(conn, org_id, [row.blob_key], row.thread_id)


async def delete(conn: Conn, org_id: str, file_id: str) -> tuple[dict[str, Any], list[str]]:
    """Delete a file (an upload or a workspace file): `(file, blob keys to delete after commit)`."""
    row = await _row(conn, org_id, file_id)
    if row.thread_id is not None:
        await _lock_thread(conn, org_id, row.thread_id)
    return to_dict(row), await _remove(conn, org_id, row)


async def delete_by_path(conn: Conn, org_id: str, thread_id: str, path: str) -> tuple[dict[str, Any], list[str]]:
    """Delete a workspace file by its path (`NotFound` naming `path` if there is none)."""
    path = normalise_path(path)
    await _lock_thread(conn, org_id, thread_id)
    row = await _row_by_path(conn, org_id, thread_id, path)
    if row is None:
        raise NotFound(f"no file {path!r} in thread {thread_id}", field="path")
    return to_dict(row), await _remove(conn, org_id, row)


async def attach(
    tx: Tx, org_id: str, *, file_ids: Sequence[str], thread_id: str, run_id: str, limits: FileLimits
) -> list[dict[str, Any]]:
    """Put uploads into the thread's workspace at their paths, as written by the new run `run_id`
    (its row exists and is locked), and announce each with `file.created` / `file.updated`."""
    await _lock_thread(tx.conn, org_id, thread_id)
    new: list[events.NewEvent] = []
    out = []
    for i, file_id in enumerate(dict.fromkeys(file_ids)):
        row = (
            await tx.conn.execute(select(files).where(files.c.id == file_id, files.c.org_id == org_id))
        ).one_or_none()
        if row is None:
            raise NotFound(f"file {file_id} not found", field=f"files[{i}]" if len(file_ids) > 1 else "files")
        if row.thread_id is not None:
            raise InvalidInput(
                f"file {file_id} is in thread {row.thread_id}'s workspace: only uploads (POST /v1/files) can be "
                "given to a run",
                field="files",
            )
        file, change, _ = await _put(
            tx.conn,
            org_id,
            thread_id,
            row.path,
            size=row.size,
            sha256=row.sha256,
            key=row.blob_key,
            run_id=run_id,
            limits=limits,
        )
        new.append((f"file.{change}", event_data(file)))
        out.append(file)
    if new:
        await events.append(tx, run_id, new)
    return out


async def delete_for_thread(conn: Conn, org_id: str, thread_id: str) -> list[str]:
    """Delete the thread's files and their `run_files` rows: the blob keys to delete after commit
    (the database's own blobs are gone already)."""
    rows = (
        await conn.execute(
            select(files.c.id, files.c.blob_key).where(files.c.org_id == org_id, files.c.thread_id == thread_id)
        )
    ).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        await conn.execute(sql_delete(run_files).where(run_files.c.file_id.in_(chunk)))
        await conn.execute(sql_delete(files).where(files.c.id.in_(chunk)))
    keys = list(dict.fromkeys(r.blob_key for r in rows))
    # Only the thread's own rows can name its scope's keys (attach shares upload keys, never these): no check needed.
    prefix = scope_prefix(org_id, thread_id)
    own = [k for k in keys if k.startswith(prefix)]
    gone = own + await unreferenced(conn, org_id, [k for k in keys if not k.startswith(prefix)])
    for start in range(0, len(gone), 500):
        await conn.execute(sql_delete(file_blobs).where(file_blobs.c.key.in_(gone[start : start + 500])))
    return gone


async def workspace_block(conn: Conn, org_id: str, thread_id: str) -> str | None:
    """The thread's files for the model's instructions (path and size, at most `WORKSPACE_LINES`); None when empty."""
    query = (
        select(files.c.path, files.c.size)
        .where(files.c.org_id == org_id, files.c.thread_id == thread_id)
        .order_by(files.c.path)
        .limit(WORKSPACE_LINES + 1)
    )
    rows = (await conn.execute(query)).all()
    if not rows:
        return None
    lines = ["Files in this thread's workspace (read them with read_file, list them all with list_files):"]
    lines += [f"- {r.path} ({r.size} bytes)" for r in rows[:WORKSPACE_LINES]]
    if len(rows) > WORKSPACE_LINES:
        total = (
            await conn.execute(select(func.count()).where(files.c.org_id == org_id, files.c.thread_id == thread_id))
        ).scalar_one()
        lines.append(f"- … and {total - WORKSPACE_LINES} more")
    return "\n".join(lines)
