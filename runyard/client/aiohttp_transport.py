"""The aiohttp transport behind `DefaultAioHttpClient` (the `runyard[aiohttp]` extra).

httpx-aiohttp sends an `httpx.AsyncClient`'s requests over an aiohttp session. With a few
hundred requests in flight it costs a fraction of httpcore's pool, which rescans every
connection on each request and response. Only `DefaultAioHttpClient` imports this module, so
`import runyard` does not load aiohttp.

httpx-aiohttp reports every aiohttp connection error as `httpx.ConnectTimeout`, but the retry
decisions of `base_client` need to tell a request that never left from one lost after it went
out. So this module maps aiohttp's errors again, at the boundary: on the response head and on
the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport as _HttpxAiohttpTransport

__all__ = ["AiohttpTransport", "map_aiohttp_error"]

# The first class `exc` is an instance of wins, so the more specific come first.
_AIOHTTP_ERRORS: tuple[tuple[type[aiohttp.ClientError], type[httpx.TransportError]], ...] = (
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    # Connecting, or waiting for a pooled connection: the request did not leave.
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    # Refused, DNS, TLS handshake: the request did not leave.
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerFingerprintMismatch, httpx.ConnectError),
    # Closed before (all of) the response, as a keep-alive connection the server dropped is.
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    # Reset, broken pipe: possibly after the request went out.
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
)


def map_aiohttp_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that says what `exc` says, as httpcore would have raised it."""
    error_class = next((to for frm, to in _AIOHTTP_ERRORS if isinstance(exc, frm)), httpx.TransportError)
    return error_class(str(exc) or type(exc).__name__, request=request)


@contextmanager
def _mapped_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        # httpx-aiohttp raises its own mapping `from` aiohttp's error, or lets an unmapped one through.
        cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
        if not isinstance(cause, aiohttp.ClientError):
            raise
        raise map_aiohttp_error(cause, request) from cause


class _MappedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _mapped_errors(self._request):
            await self._stream.aclose()


class AiohttpTransport(_HttpxAiohttpTransport):
    """httpx-aiohttp's transport, with aiohttp's errors mapped as httpcore's are."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` over the aiohttp session; the body streams as the caller reads it."""
        with _mapped_errors(request):
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _MappedStream(response.stream, request)
        return response
