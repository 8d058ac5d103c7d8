"""The transport core shared by `Runyard` and `AsyncRunyard`.

`BaseClient` holds everything that does no I/O: configuration, URL and header building,
the mapping of HTTP statuses and httpx errors to SDK errors, and the retry decisions.
`SyncAPIClient` and `AsyncAPIClient` add only the send loop, written line for line alike.

Every attempt of a call sends the same request, so the same `Idempotency-Key`. After a failed
attempt, `Retries` decides whether to try again, and when:

- a 429 or 5xx response (unless `x-should-retry` says otherwise), and a connection that could
  not be opened, are retried with backoff, up to `max_retries` times, for any request;
- a failure after the request went out (a reset, a read timeout) is retried the same way only
  when the request is idempotent: a GET, or a call that carries an `Idempotency-Key`;
- an idempotent request whose connection fails before any response byte (a pooled keep-alive
  connection the server just closed) is retried once at once, outside `max_retries`.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel

from .._version import __version__
from . import exceptions as _exc
from .pagination import AsyncPage, AsyncPaginator, SyncPage
from .types import NOT_GIVEN, NotGiven

__all__ = ["AsyncAPIClient", "BaseClient", "RequestOptions", "Retries", "SyncAPIClient"]

DEFAULT_BASE_URL = "http://127.0.0.1:8321"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# openai-python's: httpx's (100, 20) made 200 calls in flight cost 23 ms of CPU each, not 7.
CONNECTION_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
"""Per-request timeout; long polls raise the read timeout above their own wait."""
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
"""Seconds before the first retry; it doubles on each further attempt."""
MAX_RETRY_DELAY = 8.0
"""Cap of the doubling delay: past a few seconds a retry is more likely to hit a deadline than help."""
MAX_RETRY_AFTER = 60.0
"""A `Retry-After` longer than this is ignored in favour of our own backoff."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods safe to send twice; any other needs an `Idempotency-Key` to be retried after it went out."""

_ModelT = TypeVar("_ModelT", bound=BaseModel)
_T = TypeVar("_T")


@dataclass
class RequestOptions:
    """One logical API call, before it becomes an `httpx.Request`."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None  # a raw body instead of `json` (an upload), its Content-Type in `headers`
    headers: dict[str, str] = field(default_factory=dict)
    timeout: httpx.Timeout | float | None | NotGiven = NOT_GIVEN
    idempotency_key: str | None = None
    """Sent as `Idempotency-Key` on every attempt of this call."""


def new_idempotency_key() -> str:
    """A fresh key for one logical create call; retries of the call reuse it."""
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- retry decisions

# The request never left: it is safe to send again whatever it does.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
# How a keep-alive connection the server closed fails: EOF, reset, or a broken pipe.
_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
# Our own request is at fault: another attempt fails the same way.
_NEVER_RETRIED = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def is_idempotent(request: httpx.Request) -> bool:
    """Whether sending `request` twice does what sending it once does.

    A safe method, or any call that carries an `Idempotency-Key` (the server replays the first
    answer); Go's net/http draws the same line for its own retry of a stale connection.
    """
    return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers


def should_retry(response: httpx.Response) -> bool:
    """Whether a failed response is worth another attempt: 429 and 5xx, unless the server says no."""
    override = response.headers.get("x-should-retry")
    if override == "true":
        return True
    if override == "false":
        return False
    return response.status_code == 429 or response.status_code >= 500


def should_retry_error(exc: httpx.TransportError, request: httpx.Request) -> bool:
    """Whether a transport error is worth another attempt with backoff."""
    if isinstance(exc, _NOT_SENT):
        return True
    if isinstance(exc, _NEVER_RETRIED):
        return False
    return is_idempotent(request)


def is_stale_connection(exc: httpx.TransportError, *, responded: bool) -> bool:
    """Whether `exc` looks like a pooled connection the server closed: it failed before any response byte."""
    return not responded and isinstance(exc, _STALE)


def parse_retry_after(headers: httpx.Headers | None) -> float | None:
    """Seconds the server asked us to wait (`Retry-After` as seconds or HTTP date), if any."""
    if headers is None:
        return None
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.timestamp() - time.time()


def retry_delay(attempt: int, retry_after: float | None, *, jitter: float | None = None) -> float:
    """Seconds to sleep before retry number `attempt` (0-based).

    A sensible `Retry-After` wins. Otherwise the delay doubles from `INITIAL_RETRY_DELAY` up to
    `MAX_RETRY_DELAY`, minus up to 25 % jitter so that many clients do not retry in step.
    """
    if retry_after is not None and 0 < retry_after <= MAX_RETRY_AFTER:
        return retry_after
    if jitter is None:
        jitter = random.random()
    delay = min(INITIAL_RETRY_DELAY * 2**attempt, MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * jitter)


@dataclass
class Retries:
    """The retries one logical call has left: the only code that counts them, and that gives up."""

    max_retries: int
    """Retries with backoff allowed: the client's `max_retries`."""
    used: int = 0
    """Retries with backoff made so far."""
    stale_retried: bool = False
    """Whether the one immediate retry after a stale connection was made."""

    def after_error(self, exc: httpx.TransportError, request: httpx.Request, *, responded: bool) -> float:
        """Seconds to wait before the next attempt after `exc`; raises the SDK's error when there is none."""
        if not self.stale_retried and is_stale_connection(exc, responded=responded) and is_idempotent(request):
            self.stale_retried = True
            return 0.0
        if should_retry_error(exc, request) and self.used < self.max_retries:
            return self._consume(None)
        raise map_transport_error(exc, request) from exc

    def after_response(self, response: httpx.Response) -> float:
        """Seconds to wait before the next attempt after an error response (body read); raises when there is none."""
        if should_retry(response) and self.used < self.max_retries:
            return self._consume(parse_retry_after(response.headers))
        raise make_status_error(response)

    def _consume(self, retry_after: float | None) -> float:
        delay = retry_delay(self.used, retry_after)
        self.used += 1
        return delay


# --------------------------------------------------------------------------- error mapping

_STATUS_ERRORS: dict[int, type[_exc.APIStatusError]] = {
    400: _exc.BadRequestError,
    401: _exc.AuthenticationError,
    404: _exc.NotFoundError,
    409: _exc.ConflictError,
    413: _exc.PayloadTooLargeError,
    422: _exc.ValidationError,
    429: _exc.RateLimitError,
}


def make_status_error(response: httpx.Response) -> _exc.APIStatusError:
    """The one mapping from an error response to the SDK exception that describes it.

    The response body must have been read.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    code = field_name = None
    message = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, field_name = error.get("code"), error.get("field")
        message = error.get("message")
    elif isinstance(body, dict) and "detail" in body:  # a framework-level error body
        message = str(body["detail"])
    text = f"{response.status_code} {code or response.reason_phrase}: {message or body or '(empty body)'}"
    if response.status_code >= 500:
        error_class: type[_exc.APIStatusError] = _exc.InternalServerError
    else:
        error_class = _STATUS_ERRORS.get(response.status_code, _exc.APIStatusError)
    return error_class(text, response=response, body=body, code=code, field=field_name)


def map_transport_error(exc: httpx.TransportError, request: httpx.Request | None) -> _exc.APIConnectionError:
    """The one mapping from an httpx transport error to the SDK's connection errors."""
    if isinstance(exc, httpx.TimeoutException):
        return _exc.APITimeoutError(f"Request timed out: {exc!r}", request=request)
    return _exc.APIConnectionError(f"Connection error: {exc!r}", request=request)


# --------------------------------------------------------------------------- clients


class BaseClient:
    """Configuration and request building shared by the sync and async clients."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: httpx.Timeout | float | None,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("RUNYARD_BASE_URL") or DEFAULT_BASE_URL
        if api_key is None:
            api_key = os.environ.get("RUNYARD_API_KEY")
        self._default_headers = dict(default_headers or {})
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self.api_key = api_key  # after `_default_headers`: setting it builds the headers of every call
        self.timeout = timeout
        """The default per-request timeout."""
        self.max_retries = max_retries
        """How many times a failed call is retried with backoff (default 2); see the module docstring."""

    @property
    def base_url(self) -> httpx.URL:
        """The server's root URL (without `/v1`)."""
        return self._base_url

    @base_url.setter
    def base_url(self, value: httpx.URL) -> None:
        self._base_url = value
        # Joined to a base ending in "/", a relative path is appended: concatenating skips `URL.join`'s parses.
        self._url_prefix = str(value).rstrip("/") + "/"

    @property
    def api_key(self) -> str | None:
        """The bearer key sent on every call (`RUNYARD_API_KEY` when not given)."""
        return self._api_key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        self._api_key = value
        self._headers = self._base_headers()

    def _base_headers(self) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {
            "Accept": "application/json",
            "User-Agent": f"runyard-python/{__version__}",
            **auth,
            **self._default_headers,
        }

    def _build_request(self, client: httpx.Client | httpx.AsyncClient, options: RequestOptions) -> httpx.Request:
        headers = self._headers  # built once, and again when `api_key` changes
        if options.idempotency_key is not None:
            headers = {**headers, **options.headers, "Idempotency-Key": options.idempotency_key}
        elif options.headers:
            headers = {**headers, **options.headers}
        params = {key: value for key, value in (options.params or {}).items() if value is not NOT_GIVEN}
        timeout = self.timeout if isinstance(options.timeout, NotGiven) else options.timeout
        return client.build_request(
            options.method,
            self._url_prefix + options.path.lstrip("/"),
            params=params or None,
            json=options.json,
            content=options.content,
            headers=headers,
            timeout=timeout,
        )

    @staticmethod
    def _parse(response: httpx.Response, model: type[_ModelT]) -> _ModelT:
        return model.model_validate_json(response.content)

    @staticmethod
    def _parse_page(response: httpx.Response, parse: Callable[[Any], _T]) -> dict[str, Any]:
        raw = response.json()
        return {
            "data": [parse(item) for item in raw.get("data", [])],
            "has_more": bool(raw.get("has_more")),
            "next_cursor": raw.get("next_cursor"),
        }


class SyncAPIClient(BaseClient):
    """The blocking send path (over `httpx.Client`)."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: httpx.Timeout | float | None,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
        http_client: httpx.Client | None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )
        self._http = http_client or httpx.Client(timeout=timeout, follow_redirects=True, limits=CONNECTION_LIMITS)

    def request(self, options: RequestOptions, *, stream: bool = False) -> httpx.Response:
        """Send `options`, retrying as the module docstring says; return a successful response.

        With `stream=True` the body is not read; the caller must close the response.
        """
        request = self._build_request(self._http, options)
        retries = Retries(self.max_retries)
        while True:
            response: httpx.Response | None = None
            try:
                # Always streamed, so an error before the response head is told apart from one in the body.
                response = self._http.send(request, stream=True)
                if not (stream and response.is_success):
                    response.read()
            except httpx.TransportError as exc:
                if response is not None:
                    response.close()
                delay = retries.after_error(exc, request, responded=response is not None)
            else:
                if response.is_success:
                    return response
                delay = retries.after_response(response)
            time.sleep(delay)

    def _request_model(
        self,
        method: str,
        path: str,
        model: type[_ModelT],
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        timeout: httpx.Timeout | float | None | NotGiven = NOT_GIVEN,
    ) -> _ModelT:
        options = RequestOptions(
            method, path, params=params, json=json, idempotency_key=idempotency_key, timeout=timeout
        )
        return self._parse(self.request(options), model)

    def _request_json(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        return self.request(RequestOptions(method, path, params=params, json=json)).json()

    def _request_page(
        self, path: str, parse: Callable[[Any], _T], params: Mapping[str, Any], *, cursor_param: str = "before"
    ) -> SyncPage[_T]:
        def fetch(cursor: dict[str, Any]) -> SyncPage[_T]:
            response = self.request(RequestOptions("GET", path, params={**params, **cursor}))
            return SyncPage(**self._parse_page(response, parse), fetch=fetch, cursor_param=cursor_param)

        return fetch({})

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncAPIClient(BaseClient):
    """The asyncio send path (over `httpx.AsyncClient`)."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: httpx.Timeout | float | None,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
        http_client: httpx.AsyncClient | None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )
        self._http = http_client or httpx.AsyncClient(timeout=timeout, follow_redirects=True, limits=CONNECTION_LIMITS)

    async def request(self, options: RequestOptions, *, stream: bool = False) -> httpx.Response:
        """Send `options`, retrying as the module docstring says; return a successful response.

        With `stream=True` the body is not read; the caller must close the response.
        """
        request = self._build_request(self._http, options)
        retries = Retries(self.max_retries)
        while True:
            response: httpx.Response | None = None
            try:
                # Always streamed, so an error before the response head is told apart from one in the body.
                response = await self._http.send(request, stream=True)
                if not (stream and response.is_success):
                    await response.aread()
            except httpx.TransportError as exc:
                if response is not None:
                    await response.aclose()
                delay = retries.after_error(exc, request, responded=response is not None)
            else:
                if response.is_success:
                    return response
                delay = retries.after_response(response)
            await asyncio.sleep(delay)

    async def _request_model(
        self,
        method: str,
        path: str,
        model: type[_ModelT],
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        timeout: httpx.Timeout | float | None | NotGiven = NOT_GIVEN,
    ) -> _ModelT:
        options = RequestOptions(
            method, path, params=params, json=json, idempotency_key=idempotency_key, timeout=timeout
        )
        return self._parse(await self.request(options), model)

    async def _request_json(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        return (await self.request(RequestOptions(method, path, params=params, json=json))).json()

    def _request_page(
        self, path: str, parse: Callable[[Any], _T], params: Mapping[str, Any], *, cursor_param: str = "before"
    ) -> AsyncPaginator[_T]:
        async def fetch(cursor: dict[str, Any]) -> AsyncPage[_T]:
            response = await self.request(RequestOptions("GET", path, params={**params, **cursor}))
            return AsyncPage(**self._parse_page(response, parse), fetch=fetch, cursor_param=cursor_param)

        return AsyncPaginator(fetch)

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
