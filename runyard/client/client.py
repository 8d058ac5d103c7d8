"""`Runyard` and `AsyncRunyard`: the clients users construct."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .base_client import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    AsyncAPIClient,
    RequestOptions,
    SyncAPIClient,
)
from .paths import path_for
from .resources import (
    Agents,
    AsyncAgents,
    AsyncFiles,
    AsyncRuns,
    AsyncThreads,
    AsyncUsageReports,
    AsyncUsers,
    AsyncWaits,
    AsyncWebhooks,
    Files,
    Runs,
    Threads,
    UsageReports,
    Users,
    Waits,
    Webhooks,
)
from .resources.run_params import SSE_HEADERS

if TYPE_CHECKING:
    from .aiohttp_transport import AiohttpTransport

__all__ = ["AsyncRunyard", "DefaultAioHttpClient", "Runyard"]

_HTTPX_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own default pool limits, the default of `DefaultAioHttpClient` too."""


def _event_stream_options(run_id: str, after_seq: int) -> RequestOptions:
    # `after_seq` is what the server reads; `Last-Event-ID` says the same for SSE-aware proxies.
    headers = dict(SSE_HEADERS)
    if after_seq:
        headers["Last-Event-ID"] = str(after_seq)
    path = path_for("/v1/runs/{}/events", run_id)
    return RequestOptions("GET", path, params={"after_seq": after_seq}, headers=headers)


class Runyard(SyncAPIClient):
    """Blocking client of a Runyard server.

    ```python
    from runyard import Runyard

    with Runyard(api_key="ry_...") as client:
        agent = client.agents.create("greeter", instructions="Greet the user.")
        run = client.runs.create_and_wait("Hi!", agent_id=agent.id)
        print(run.output)
    ```

    Args:
        api_key: the bearer key; `RUNYARD_API_KEY` when left out.
        base_url: the server's URL; `RUNYARD_BASE_URL`, else `http://127.0.0.1:8321`.
        timeout: per-request timeout in seconds (or an `httpx.Timeout`); default 60 s, 5 s to connect.
        max_retries: retries with backoff of 429, 5xx and connection errors (after the request went
            out, only of GETs and calls with an idempotency key); default 2. An idempotent call
            whose pooled connection turns out closed is also retried once at once.
        default_headers: extra headers sent on every request.
        http_client: an `httpx.Client` to use instead of a new one.
    """

    agents: Agents
    """Create, read, list, update and delete agents."""
    runs: Runs
    """Start, stream, wait for, list and cancel runs."""
    threads: Threads
    """Conversation threads, their messages, runs and files."""
    files: Files
    """Upload files for runs, and read the files runs wrote."""
    waits: Waits
    """What needs a human, across runs."""
    users: Users
    """What the org keeps about its end users (`client.users.memories`)."""
    webhooks: Webhooks
    """Endpoints Runyard calls when events happen, and their delivery log."""
    usage: UsageReports
    """What the org's runs used: tokens, cost, credits, runs by status, durations."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            http_client=http_client,
        )
        self.agents = Agents(self)
        self.runs = Runs(self)
        self.threads = Threads(self, self.runs)
        self.files = Files(self)
        self.waits = Waits(self)
        self.users = Users(self)
        self.webhooks = Webhooks(self)
        self.usage = UsageReports(self)

    def _open_event_stream(self, run_id: str, *, after_seq: int) -> httpx.Response:
        return self.request(_event_stream_options(run_id, after_seq), stream=True)

    def __repr__(self) -> str:
        return f"Runyard(base_url={str(self.base_url)!r})"


class AsyncRunyard(AsyncAPIClient):
    """Asyncio client of a Runyard server; the same resources as `Runyard`, with coroutine methods.

    ```python
    from runyard import AsyncRunyard

    async with AsyncRunyard() as client:
        run = await client.runs.create_and_wait("Hi!", agent_id="agt_...")
    ```

    The arguments are those of `Runyard` (`http_client` is an `httpx.AsyncClient`). With many
    calls in flight, `http_client=DefaultAioHttpClient()` costs less CPU per call.
    """

    agents: AsyncAgents
    """Create, read, list, update and delete agents."""
    runs: AsyncRuns
    """Start, stream, wait for, list and cancel runs."""
    threads: AsyncThreads
    """Conversation threads, their messages, runs and files."""
    files: AsyncFiles
    """Upload files for runs, and read the files runs wrote."""
    waits: AsyncWaits
    """What needs a human, across runs."""
    users: AsyncUsers
    """What the org keeps about its end users (`client.users.memories`)."""
    webhooks: AsyncWebhooks
    """Endpoints Runyard calls when events happen, and their delivery log."""
    usage: AsyncUsageReports
    """What the org's runs used: tokens, cost, credits, runs by status, durations."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            http_client=http_client,
        )
        self.agents = AsyncAgents(self)
        self.runs = AsyncRuns(self)
        self.threads = AsyncThreads(self, self.runs)
        self.files = AsyncFiles(self)
        self.waits = AsyncWaits(self)
        self.users = AsyncUsers(self)
        self.webhooks = AsyncWebhooks(self)
        self.usage = AsyncUsageReports(self)

    async def _open_event_stream(self, run_id: str, *, after_seq: int) -> httpx.Response:
        return await self.request(_event_stream_options(run_id, after_seq), stream=True)

    def __repr__(self) -> str:
        return f"AsyncRunyard(base_url={str(self.base_url)!r})"


def _aiohttp_transport() -> type[AiohttpTransport]:
    # Imported when a `DefaultAioHttpClient` is made, so that `import runyard` does not load aiohttp.
    try:
        from .aiohttp_transport import AiohttpTransport
    except ImportError as exc:
        raise RuntimeError(
            "DefaultAioHttpClient needs aiohttp: install the extra with `pip install 'runyard[aiohttp]'`"
        ) from exc
    return AiohttpTransport


class DefaultAioHttpClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that sends over aiohttp: the cheaper transport with many calls in flight.

    It needs the `aiohttp` extra (`pip install 'runyard[aiohttp]'`). Pass it as `http_client`:

    ```python
    from runyard import AsyncRunyard, DefaultAioHttpClient

    async with AsyncRunyard(http_client=DefaultAioHttpClient()) as client:
        run = await client.runs.create_and_wait("Hi!", agent_id="agt_...")
    ```

    It takes the arguments of `httpx.AsyncClient`, with the SDK's defaults (a 60 s timeout,
    5 s to connect, and redirects followed). Of `limits`, aiohttp uses `max_connections`
    (default 100) and `keepalive_expiry`. HTTP/2 is not available over aiohttp.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("follow_redirects", True)
        super().__init__(**kwargs)

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _HTTPX_LIMITS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.AsyncBaseTransport:
        if transport is not None:
            return transport
        return _aiohttp_transport()(
            verify=verify, cert=cert, trust_env=trust_env, http1=http1, http2=http2, limits=limits
        )

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _HTTPX_LIMITS,
    ) -> httpx.AsyncBaseTransport:
        return _aiohttp_transport()(
            verify=verify, cert=cert, trust_env=trust_env, http1=http1, http2=http2, limits=limits, proxy=proxy
        )
