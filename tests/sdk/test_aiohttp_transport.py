"""`DefaultAioHttpClient`: the SDK over aiohttp, against the real server and a stale keep-alive socket."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from test_base_client import KeepAliveServer

import runyard
from runyard import AsyncRunyard, DefaultAioHttpClient, RunStatus
from runyard.client.aiohttp_transport import AiohttpTransport, map_aiohttp_error

HELLO = {"script": [{"text": ["Hel", "lo"]}]}


@pytest.fixture
async def aioclient(server: Any) -> AsyncIterator[AsyncRunyard]:
    async with AsyncRunyard(base_url=server.base_url, api_key=server.api_key, http_client=DefaultAioHttpClient()) as c:
        yield c


@pytest.fixture(params=["reset", "close"])
def stale_server(request: pytest.FixtureRequest) -> Iterator[KeepAliveServer]:
    server = KeepAliveServer(drop=request.param).start()
    yield server
    server.stop()


def test_it_sends_over_aiohttp_with_the_sdk_defaults() -> None:
    client = DefaultAioHttpClient()
    assert isinstance(client._transport, AiohttpTransport)
    assert client.timeout == httpx.Timeout(60.0, connect=5.0) and client.follow_redirects


async def test_create_and_wait(aioclient: AsyncRunyard) -> None:
    agent = await aioclient.agents.create(f"aiohttp-{uuid.uuid4().hex[:10]}")
    runs = await asyncio.gather(
        *(aioclient.runs.create_and_wait("Say hello", agent_id=agent.id, metadata=HELLO, timeout=30) for _ in range(20))
    )
    assert {(run.status, run.output) for run in runs} == {(RunStatus.COMPLETED, "Hello")}
    assert len({run.id for run in runs}) == 20


async def test_stream(aioclient: AsyncRunyard) -> None:
    agent = await aioclient.agents.create(f"aiohttp-stream-{uuid.uuid4().hex[:10]}")
    async with aioclient.runs.stream("Say hello", agent_id=agent.id, metadata=HELLO) as stream:
        events = [event async for event in stream]
        assert stream.text == "Hello"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "run.completed"


async def test_error_responses_and_connection_errors(aioclient: AsyncRunyard) -> None:
    with pytest.raises(runyard.NotFoundError):
        await aioclient.runs.get("run_doesnotexist")
    refused = AsyncRunyard(
        base_url="http://127.0.0.1:9", api_key="k", max_retries=0, http_client=DefaultAioHttpClient()
    )
    async with refused:
        with pytest.raises(runyard.APIConnectionError) as info:
            await refused.runs.get("run_1")
    # Refused is a connection error, not a timeout (httpx-aiohttp alone reports a ConnectTimeout).
    assert not isinstance(info.value, runyard.APITimeoutError)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_a_stale_connection_is_retried_once_with_the_same_key(stale_server: KeepAliveServer) -> None:
    client = AsyncRunyard(base_url=stale_server.url, api_key="k", max_retries=0, http_client=DefaultAioHttpClient())
    async with client:
        await client.runs.get("run_1")
        await client.runs.create("hi", agent_id="agt_1", idempotency_key="mine")
    assert [(r.connection, r.headers.get("idempotency-key")) for r in stale_server.received] == [
        (1, None),
        (1, "mine"),
        (2, "mine"),
    ]


async def test_a_call_without_a_key_on_a_stale_connection_is_not_sent_again(stale_server: KeepAliveServer) -> None:
    # The server may have acted on the POST before the connection went; httpx-aiohttp alone would
    # call this a ConnectTimeout, which the retry loop takes for "never sent" and retries.
    async with AsyncRunyard(base_url=stale_server.url, api_key="k", http_client=DefaultAioHttpClient()) as client:
        await client.runs.get("run_1")
        with pytest.raises(runyard.APIConnectionError):
            await client.runs.cancel("run_1")
    assert [(r.connection, r.method) for r in stale_server.received] == [(1, "GET"), (1, "POST")]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (aiohttp.ClientPayloadError("truncated"), httpx.ReadError),
        (aiohttp.InvalidURL("ftp://x"), httpx.UnsupportedProtocol),
        (aiohttp.ClientError("other"), httpx.TransportError),
    ],
)
def test_aiohttp_errors_map_to_what_httpcore_raises(error: aiohttp.ClientError, expected: type) -> None:
    request = httpx.Request("GET", "http://test/v1/runs")
    mapped = map_aiohttp_error(error, request)
    assert type(mapped) is expected and mapped.request is request


def test_without_the_extra_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "runyard.client.aiohttp_transport", None)  # `import` raises ImportError
    with pytest.raises(RuntimeError, match=r"runyard\[aiohttp\]"):
        DefaultAioHttpClient()
