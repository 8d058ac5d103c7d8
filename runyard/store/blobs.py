"""Where file content lives: in the database (`file_blobs`) or in an S3-compatible bucket.

S3 goes through obstore rather than boto3: obstore is async (no thread hop per request), small and
Rust-backed, while boto3 is sync-only and heavy.

Keys are content-addressed inside a scope: `{org_id}/{thread_id}/{sha256}` for a thread's
workspace, `{org_id}/uploads/{sha256}` for uploads, so a write re-executed after a crash writes the
same key. The two backends differ in when content is written and deleted:

- `db`: `put_in_tx` writes the content inside the transaction that records the file's row, and
  rows of `file_blobs` are deleted inside the transaction that drops their last reference.
- S3: `put` uploads the content before that transaction (an orphan left by a crash is harmless:
  the retry writes the same key), and `delete` runs after the transaction that dropped the last
  reference committed (never before: a rollback would leave a row pointing at nothing).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .db import Conn, utcnow
from .errors import InvalidInput
from .schema import file_blobs

if TYPE_CHECKING:
    from .db import Store

__all__ = ["CHUNK", "Blobs", "DbBlobs", "S3Blobs", "for_url", "key_for", "scope_prefix"]

CHUNK = 4 * 1024 * 1024
"""Bytes per read when content is streamed out (a download holds one chunk at a time)."""


def scope_prefix(org_id: str, thread_id: str | None) -> str:
    """The key prefix of a thread's workspace (`None`: the org's uploads), ending in `/`."""
    return f"{org_id}/{thread_id or 'uploads'}/"


def key_for(org_id: str, thread_id: str | None, sha256: str) -> str:
    return scope_prefix(org_id, thread_id) + sha256


class Blobs(ABC):
    """One content backend. Every method is safe to call on both: each does nothing where the
    other backend does the work, so callers follow one sequence (put, tx: put_in_tx, delete)."""

    deletes_after_commit = False
    """True when `delete` does the deleting (S3): callers then re-check the keys are still unused."""

    async def put(self, key: str, content: bytes) -> None:  # noqa: B027 - a no-op where the other backend acts
        """Before the transaction that records the file: S3 uploads here."""

    async def put_in_tx(self, conn: Conn, key: str, content: bytes) -> None:  # noqa: B027 - a no-op where the other backend acts
        """Inside that transaction: the database backend writes here."""

    async def delete(self, keys: Sequence[str]) -> None:  # noqa: B027 - a no-op where the other backend acts
        """After the transaction that dropped the keys' last references committed (S3)."""

    async def delete_scope(self, org_id: str, thread_id: str) -> None:  # noqa: B027 - a no-op where the other backend acts
        """After a thread is deleted: whatever is left under its prefix (S3; db rows went with the thread)."""

    async def read(self, store: Store, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes `[start, end)` of the content (`end` None: to its end)."""
        return b"".join([chunk async for chunk in self.stream(store, key, start, end)])

    @abstractmethod
    def stream(self, store: Store, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes `[start, end)` of the content, a chunk (at most `CHUNK`) at a time."""


class DbBlobs(Blobs):
    """Content in `file_blobs`, written and deleted in the caller's transaction."""

    async def put_in_tx(self, conn: Conn, key: str, content: bytes) -> None:
        # Content-addressed: a row with this key already holds these bytes, so a duplicate is a no-op.
        dialect_insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        stmt = dialect_insert(file_blobs).values(key=key, content=content, created_at=utcnow())
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))

    async def stream(self, store: Store, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        position = start
        while end is None or position < end:
            length = CHUNK if end is None else min(CHUNK, end - position)
            # One short read per chunk: a slow client never holds a connection (or SQLite's lock).
            async with store.read() as conn:
                chunk = (
                    await conn.execute(
                        # SQL substr counts from 1, on bytes of a BLOB (SQLite) or a bytea (PostgreSQL).
                        select(func.substr(file_blobs.c.content, position + 1, length)).where(file_blobs.c.key == key)
                    )
                ).scalar_one_or_none()
            if chunk is None:
                raise FileNotFoundError(f"no content stored under {key}")
            if not chunk:
                return
            yield bytes(chunk)
            position += len(chunk)
            if len(chunk) < length:
                return


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT")


class S3Blobs(Blobs):
    """Content in an S3-compatible bucket, under the URL's prefix.

    Credentials, endpoint and region come from the usual `AWS_*` variables (obstore reads them);
    a plain-http endpoint (a local MinIO or moto) is allowed when that is what is configured.
    """

    deletes_after_commit = True

    def __init__(self, url: str) -> None:
        from obstore.store import S3Store

        endpoint = _endpoint()
        options: dict[str, Any] = {"allow_http": True} if endpoint and endpoint.startswith("http://") else {}
        try:
            self.s3 = S3Store.from_url(url, client_options=options or None)  # type: ignore[arg-type]
        except Exception as exc:  # obstore raises its own errors for bad URLs and configuration
            raise InvalidInput(f"RUNYARD_FILES={url!r} is not a usable S3 URL: {exc}", field="files") from None

    async def put(self, key: str, content: bytes) -> None:
        import obstore

        # One PUT: files are bounded (files_max_bytes), and a multipart upload a crash aborts would linger.
        await obstore.put_async(self.s3, key, content, use_multipart=False)

    async def delete(self, keys: Sequence[str]) -> None:
        import obstore

        if keys:
            # S3 deletes in batches of up to 1000 keys; a key already gone is not an error.
            await obstore.delete_async(self.s3, list(keys))

    async def delete_scope(self, org_id: str, thread_id: str) -> None:
        import obstore

        # Listing the prefix also finds blobs a tool's replace or delete left behind (a tool has no after-commit step).
        # Collected first: deleting while paging through a listing could skip keys.
        keys = [
            meta["path"]
            async for batch in obstore.list(self.s3, scope_prefix(org_id, thread_id), chunk_size=1000)
            for meta in batch
        ]
        await self.delete(keys)

    async def stream(self, store: Store, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        import obstore

        if end is not None and end <= start:
            return
        options: dict[str, Any] = {}
        if start or end is not None:
            options["range"] = (start, end) if end is not None else {"offset": start}
        result = await obstore.get_async(self.s3, key, options=options or None)  # type: ignore[arg-type]
        async for chunk in result.stream(min_chunk_size=CHUNK):
            yield bytes(chunk)


@lru_cache(maxsize=8)
def for_url(url: str) -> Blobs:
    """The backend for a `RUNYARD_FILES` value (`db` or `s3://bucket/prefix`), one per value."""
    if url == "db":
        return DbBlobs()
    if url.startswith(("s3://", "s3a://")):
        return S3Blobs(url)
    raise InvalidInput(f"RUNYARD_FILES must be 'db' or 's3://bucket/prefix', not {url!r}", field="files")
