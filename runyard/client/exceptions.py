"""Every exception the SDK raises.

```
RunyardError
├── APIConnectionError              no HTTP response (DNS, refused, reset, dropped stream)
│   └── APITimeoutError             the request timed out
├── APIStatusError                  the server answered 4xx/5xx
│   ├── BadRequestError             400  malformed JSON, bad cursor
│   ├── AuthenticationError         401  missing or wrong API key
│   ├── NotFoundError               404
│   ├── ConflictError               409  illegal transition, idempotency conflict
│   ├── PayloadTooLargeError        413
│   ├── ValidationError             422  a field failed validation (`.field` names it)
│   ├── RateLimitError              429
│   └── InternalServerError         >= 500
├── RunFailedError                  a waited-for run ended `failed` (`.run` holds it)
└── TimeoutError                    a wait passed its deadline (also a builtins.TimeoutError)

StreamClosedError (RuntimeError)    misuse: reading a stream after closing it
```

`runyard.ValidationError` is the HTTP 422 error, not pydantic's class of the same name.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ..domain import Run

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "RunFailedError",
    "RunyardError",
    "StreamClosedError",
    "TimeoutError",
    "ValidationError",
]


class RunyardError(Exception):
    """Base class of every error the Runyard SDK raises at run time."""


class APIConnectionError(RunyardError):
    """The request got no HTTP response: the server is unreachable or the connection dropped."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """The request timed out before the server answered."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APIStatusError(RunyardError):
    """The server answered with a 4xx or 5xx status.

    Attributes:
        status_code: the HTTP status.
        request_id: the `x-request-id` response header, to quote when reporting a problem.
        body: the decoded JSON body (or the raw text when it is not JSON).
        code: `error.code` from the body, e.g. `"not_found"`.
        field: `error.field` from the body: the request field at fault, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        body: Any,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.response = response
        self.status_code = response.status_code
        self.request_id = response.headers.get("x-request-id")
        self.body = body
        self.code = code
        self.field = field


class BadRequestError(APIStatusError):
    """400: the request was malformed (bad JSON, bad cursor)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class NotFoundError(APIStatusError):
    """404: no such resource (or it belongs to another organisation)."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the resource's state (e.g. cancelling a finished run)."""


class PayloadTooLargeError(APIStatusError):
    """413: the request body is over the server's size limit."""


class ValidationError(APIStatusError):
    """422: a field failed validation; `.field` names it."""


class RateLimitError(APIStatusError):
    """429: too many requests; the SDK already retried with backoff."""


class InternalServerError(APIStatusError):
    """A 5xx status; the SDK already retried with backoff."""


class RunFailedError(RunyardError):
    """A run the SDK waited for ended with status `failed`; `.run` is the failed run."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"run {run.id} failed: {run.error}")
        self.run = run


class TimeoutError(RunyardError, builtins.TimeoutError):
    """A wait passed its `timeout` before the run finished; `.run` is the run as last seen."""

    def __init__(self, message: str, *, run: Run | None = None) -> None:
        super().__init__(message)
        self.run = run


class StreamClosedError(RuntimeError):
    """A stream was read after it was closed.

    Open a new one, e.g. `client.runs.stream_events(run_id, after_seq=...)`.
    """
