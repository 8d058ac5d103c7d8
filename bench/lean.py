"""A lean keep-alive HTTP/1.1 client for the load generator: asyncio streams, nothing else.

The bench measures the server, so the client must cost little: no connection pool, no
header models, no retries. It speaks just enough HTTP/1.1 for Runyard's JSON routes
(Content-Length bodies) and its SSE streams (chunked), and fails loudly on anything else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["Connection", "HTTPError"]


class HTTPError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self._auth = f"Authorization: Bearer {key}\r\nHost: {host}:{port}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        assert self._reader is not None
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _send(self, method: str, path: str, body: Any, extra: bytes) -> asyncio.StreamReader:
        reader, writer = await self._open()
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nContent-Length: {len(payload)}\r\n".encode()
        if body is not None:
            head += b"Content-Type: application/json\r\n"
        writer.write(head + self._auth + extra + b"\r\n" + payload)
        return reader

    async def _head(self, reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send a request, read the whole JSON response; raises HTTPError on a status ≥ 400."""
        reader = await self._send(method, path, body, b"")
        status, headers = await self._head(reader)
        if b"content-length" in headers:
            data = await reader.readexactly(int(headers[b"content-length"]))
        else:
            data = b"".join([chunk async for chunk in _chunks(reader)])
        if headers.get(b"connection") == b"close":
            self.close()
        if status >= 400:
            raise HTTPError(status, data)
        return json.loads(data) if data else None

    async def sse(
        self, method: str, path: str, body: Any = None, *, last_event_id: int | None = None
    ) -> AsyncIterator[tuple[str, bytes]]:
        """Yield (event type, data line) for each SSE event until the server ends the stream."""
        extra = b"Accept: text/event-stream\r\n"
        if last_event_id is not None:
            extra += f"Last-Event-ID: {last_event_id}\r\n".encode()
        reader = await self._send(method, path, body, extra)
        status, headers = await self._head(reader)
        if status >= 400:
            raise HTTPError(status, await reader.read(4096))
        assert headers.get(b"transfer-encoding") == b"chunked", headers
        buffer = b""
        async for chunk in _chunks(reader):
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                kind, data = "message", b""
                for line in frame.split(b"\n"):
                    if line.startswith(b"event: "):
                        kind = line[7:].decode()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                if frame.startswith(b":"):
                    continue  # a keep-alive comment
                yield kind, data
        if headers.get(b"connection") == b"close":
            self.close()


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return
        chunk = await reader.readexactly(size + 2)
        yield chunk[:-2]
