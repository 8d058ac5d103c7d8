"""ASGI middleware: the request body limit (with or without Content-Length) and request ids."""

from __future__ import annotations

import json
import secrets
from typing import Any

from .limits import Limits

__all__ = ["EdgeMiddleware"]


class _BodyTooLarge(BaseException):
    """A BaseException so the body parser's `except Exception` cannot turn it into a 400."""


UPLOAD_PATH = "/v1/files"
MULTIPART_SLACK = 64 * 1024
"""Room for the multipart boundary and part headers around an upload's content."""


class EdgeMiddleware:
    """Refuses bodies over `Limits.BODY_BYTES` with 413 and tags responses with `x-request-id`.

    A file upload (`POST /v1/files`) may carry up to `max_upload` (the file limit plus the multipart
    framing); its route counts the file's own bytes."""

    def __init__(self, app: Any, max_body: int = Limits.BODY_BYTES, max_upload: int = Limits.BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max(max_upload, max_body)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_headers = scope.get("headers") or []
        headers = dict(raw_headers)
        request_id = headers.get(b"x-request-id") or secrets.token_hex(8).encode()
        if len(request_id) > 64 or sum(len(k) + len(v) for k, v in raw_headers) > Limits.HEADER_BYTES:
            await self._refuse(
                send,
                secrets.token_hex(8).encode(),
                431,
                "request_header_too_large",
                f"request headers are larger than {Limits.HEADER_BYTES // 1024} KB",
                "headers",
            )
            return
        limit = self.max_upload if scope["method"] == "POST" and scope["path"] == UPLOAD_PATH else self.max_body
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._too_large(send, request_id, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                # Chunked bodies have no Content-Length: count as they arrive.
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tagged_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id)]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tagged_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(send, request_id, limit)

    async def _too_large(self, send: Any, request_id: bytes, limit: int) -> None:
        await self._refuse(
            send, request_id, 413, "payload_too_large", f"request body is larger than {limit // 1024} KB", "body"
        )

    async def _refuse(self, send: Any, request_id: bytes, status: int, code: str, message: str, field: str) -> None:
        body = json.dumps({"error": {"code": code, "field": field, "message": message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
