"""One mapping from domain errors (and malformed requests) to `{"error": {...}}` responses."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..domain import ErrorResponse
from ..store.errors import Conflict, DomainError, InvalidCursor, InvalidInput, NotFound, PayloadTooLarge, is_unavailable

__all__ = ["ERRORS", "ApiError", "error_response", "install"]

log = logging.getLogger("runyard.server")

STATUS: dict[type[DomainError], int] = {
    InvalidCursor: 400,
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,
    PayloadTooLarge: 413,
}


class ApiError(DomainError):
    """An error that only exists at the HTTP edge (auth, malformed body, bad cursor)."""

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.code = code
        self.headers = headers


def error_response(status: int, code: str, message: str, field: str | None = None, headers: Any = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status, headers=headers)


def _status_of(exc: DomainError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Malformed request (bad JSON, bad cursor)"),
        (401, "Missing or invalid API key"),
        (404, "Not found in the caller's org"),
        (409, "Conflict (illegal transition, duplicate, idempotency)"),
        (413, "Payload too large"),
        (422, "Validation error naming the field"),
        (429, "Too many requests for this API key (Retry-After, RateLimit-*)"),
        (431, "Request headers too large"),
        (503, "The database is unavailable: retry (Retry-After)"),
    )
}
"""The error responses every /v1 operation documents in the OpenAPI schema."""


def _field_of(loc: tuple[Any, ...]) -> str:
    """A JSON path such as `client_tools[0].parameters`, the form the store's own errors use."""
    path = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "body"


async def _domain(request: Request, exc: DomainError) -> JSONResponse:
    return error_response(_status_of(exc), exc.code, exc.message, exc.field, headers=getattr(exc, "headers", None))


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(400, "invalid_json", f"request body is not valid JSON: {first.get('msg')}", "body")
    field = _field_of(tuple(first.get("loc", ())))
    message = f"{field}: {first.get('msg')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(422, "validation_error", message, field)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:  # FastAPI could not parse the body at all (e.g. not UTF-8)
        return error_response(400, "invalid_json", f"request body could not be parsed: {exc.detail}", "body")
    code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A lost database is a 503 to retry; anything else is a bug or bad stored data: a 500
    whose error id finds the log line with the traceback."""
    if is_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.__class__.__name__)
        return error_response(
            503, "unavailable", "the database is unavailable; retry shortly", headers={"Retry-After": "1"}
        )
    error_id = secrets.token_hex(8)
    log.error("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", f"internal server error (error id {error_id})")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
