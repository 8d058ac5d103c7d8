"""The transport core shared by `Runyard` and `AsyncRunyard`.

`BaseClient` holds everything that does no I/O: configuration, URL and header building,
the mapping of HTTP statuses and httpx errors to SDK errors, and the retry decisions.
`SyncAPIClient` and `AsyncAPIClient` add only the send loop, written line for line alike.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from . import _exceptions as _exc
from ._pagination import AsyncPage, AsyncPaginator, SyncPage
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__

__all__ = ["AsyncAPIClient", "BaseClient", "RequestOptions", "SyncAPIClient"]

DEFAULT_BASE_URL = "http://127.0.0.1:8321"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
"""Per-request timeout; long polls raise the read timeout above their own wait."""
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
"""Seconds before the first retry; it doubles on each further attempt."""
MAX_RETRY_DELAY = 8.0
"""Cap of the doubling delay: past a few seconds a retry is more likely to hit a deadline than help."""
MAX_RETRY_AFTER = 60.0
"""A `Retry-After` longer than this is ignored in favour of our own backoff."""

_ModelT = TypeVar("_ModelT", bound=BaseModel)


@dataclass
class RequestOptions:
    """One logical API call, before it becomes an `httpx.Request`."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: httpx.Timeout | float | None | NotGiven = NOT_GIVEN
    idempotency_key: str | None = None
    """Sent as `Idempotency-Key` on every attempt of this call."""


def path_for(template: str, *ids: str) -> str:
    """Fill `template`'s `{}` slots with URL-quoted ids."""
    return template.format(*(quote(str(value), safe="") for value in ids))


def new_idempotency_key() -> str:
    """A fresh key for one logical create call; retries of the call reuse it."""
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- retry decisions


def should_retry(response: httpx.Response) -> bool:
    """Whether a failed response is worth another attempt: 429 and 5xx, unless the server says no."""
    override = response.headers.get("x-should-retry")
    if override == "true":
        return True
    if override == "false":
        return False
    return response.status_code == 429 or response.status_code >= 500


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
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        """The server's root URL (without `/v1`)."""
        self.api_key = api_key
        """The bearer key sent on every call (`RUNYARD_API_KEY` when not given)."""
        self.timeout = timeout
        """The default per-request timeout."""
        self.max_retries = max_retries
        """How many times a connection error, 429 or 5xx is retried (default 2)."""
        self._default_headers = dict(default_headers or {})

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _base_headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "User-Agent": f"runyard-python/{__version__}",
            **self._auth_headers(),
            **self._default_headers,
        }

    def _build_request(self, client: httpx.Client | httpx.AsyncClient, options: RequestOptions) -> httpx.Request:
        headers = {**self._base_headers(), **options.headers}
        if options.idempotency_key is not None:
            headers["Idempotency-Key"] = options.idempotency_key
        params = {key: value for key, value in (options.params or {}).items() if value is not NOT_GIVEN}
        timeout = self.timeout if isinstance(options.timeout, NotGiven) else options.timeout
        return client.build_request(
            options.method,
            self.base_url.join(options.path.lstrip("/")),
            params=params or None,
            json=options.json,
            headers=headers,
            timeout=timeout,
        )

    @staticmethod
    def _parse(response: httpx.Response, model: type[_ModelT]) -> _ModelT:
        return model.model_validate_json(response.content)

    @staticmethod
    def _parse_page(response: httpx.Response, model: type[_ModelT]) -> dict[str, Any]:
        raw = response.json()
        return {
            "data": [model.model_validate(item) for item in raw.get("data", [])],
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
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, default_headers=default_headers
        )
        self._http = http_client or httpx.Client(timeout=timeout, follow_redirects=True)

    def request(self, options: RequestOptions, *, stream: bool = False) -> httpx.Response:
        """Send `options`, retrying connection errors, 429 and 5xx; return a successful response.

        With `stream=True` the body is not read; the caller must close the response.
        """
        request = self._build_request(self._http, options)
        for attempt in range(self.max_retries + 1):
            retries_left = self.max_retries - attempt
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if retries_left > 0:
                    time.sleep(retry_delay(attempt, None))
                    continue
                raise map_transport_error(exc, request) from exc
            if response.is_success:
                return response
            if retries_left > 0 and should_retry(response):
                response.close()
                time.sleep(retry_delay(attempt, parse_retry_after(response.headers)))
                continue
            response.read()
            response.close()
            raise make_status_error(response)
        raise AssertionError("unreachable")

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

    def _request_json(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None) -> Any:
        return self.request(RequestOptions(method, path, params=params, json=json)).json()

    def _request_page(self, path: str, model: type[_ModelT], params: Mapping[str, Any]) -> SyncPage[_ModelT]:
        def fetch(cursor: dict[str, Any]) -> SyncPage[_ModelT]:
            response = self.request(RequestOptions("GET", path, params={**params, **cursor}))
            return SyncPage(**self._parse_page(response, model), fetch=fetch)

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
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, default_headers=default_headers
        )
        self._http = http_client or httpx.AsyncClient(timeout=timeout, follow_redirects=True)

    async def request(self, options: RequestOptions, *, stream: bool = False) -> httpx.Response:
        """Send `options`, retrying connection errors, 429 and 5xx; return a successful response.

        With `stream=True` the body is not read; the caller must close the response.
        """
        request = self._build_request(self._http, options)
        for attempt in range(self.max_retries + 1):
            retries_left = self.max_retries - attempt
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if retries_left > 0:
                    await asyncio.sleep(retry_delay(attempt, None))
                    continue
                raise map_transport_error(exc, request) from exc
            if response.is_success:
                return response
            if retries_left > 0 and should_retry(response):
                await response.aclose()
                await asyncio.sleep(retry_delay(attempt, parse_retry_after(response.headers)))
                continue
            await response.aread()
            await response.aclose()
            raise make_status_error(response)
        raise AssertionError("unreachable")

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

    def _request_page(self, path: str, model: type[_ModelT], params: Mapping[str, Any]) -> AsyncPaginator[_ModelT]:
        async def fetch(cursor: dict[str, Any]) -> AsyncPage[_ModelT]:
            response = await self.request(RequestOptions("GET", path, params={**params, **cursor}))
            return AsyncPage(**self._parse_page(response, model), fetch=fetch)

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
