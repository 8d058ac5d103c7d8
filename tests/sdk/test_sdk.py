"""The SDK end to end against a real Runyard server (the `server` fixture of tests/conftest.py).

The server runs the offline `scripted` model: `metadata={"script": [...]}` on a run decides what
the "model" says, so every assertion here is exact.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import runyard
from runyard import AsyncRunyard, Event, Run, RunStatus, Runyard

HELLO = {"script": [{"text": ["Hel", "lo"]}]}
SLOW_HELLO = {"script": [{"delay": 0.5, "text": ["Hel", "lo"]}]}
SLOW = {"script": [{"delay": 5}]}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: Any) -> Iterator[Runyard]:
    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
async def aclient(server: Any) -> AsyncIterator[AsyncRunyard]:
    async with AsyncRunyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def agent_id(client: Runyard) -> str:
    return client.agents.create(unique("sdk-agent"), instructions="Answer briefly.").id


def assert_gapless(events: list[Event], *, after_seq: int = 0) -> None:
    assert [e.seq for e in events] == list(range(after_seq + 1, after_seq + 1 + len(events)))


# --------------------------------------------------------------------------- sync: agents


def test_agents_crud(client: Runyard) -> None:
    name = unique("crud")
    agent = client.agents.create(name, instructions="Be kind.", metadata={"team": "sdk"})
    assert isinstance(agent, runyard.Agent)
    assert (agent.name, agent.instructions, agent.metadata) == (name, "Be kind.", {"team": "sdk"})
    assert agent.id.startswith("agt_")

    assert client.agents.get(agent.id).id == agent.id

    updated = client.agents.update(agent.id, instructions="Be brief.")
    assert updated.instructions == "Be brief."
    assert updated.name == name and updated.metadata == {"team": "sdk"}  # fields not passed are kept

    deleted = client.agents.delete(agent.id)
    assert deleted.deleted is True and deleted.id == agent.id
    with pytest.raises(runyard.NotFoundError):
        client.agents.get(agent.id)


def test_agents_auto_pager_walks_every_page(client: Runyard) -> None:
    created = [client.agents.create(unique("page")).id for _ in range(5)]
    first = client.agents.list(limit=2)
    assert len(first.data) == 2 and first.has_more and first.next_cursor
    assert len(list(first.iter_pages())) >= 3
    seen = [agent.id for agent in client.agents.list(limit=2)]
    assert len(seen) == len(set(seen)), "a page repeated an agent"
    # Newest first: the five just created lead the list, in reverse creation order.
    assert seen[:5] == created[::-1]


# --------------------------------------------------------------------------- sync: runs


def test_create_and_wait_returns_completed_run_with_output(client: Runyard, agent_id: str) -> None:
    run = client.runs.create_and_wait("Say hello", agent_id=agent_id, metadata=HELLO, timeout=30)
    assert isinstance(run, Run)
    assert run.status is RunStatus.COMPLETED
    assert run.output == "Hello"
    assert run.original_prompt == "Say hello"


def test_create_by_name_then_get_and_wait(client: Runyard) -> None:
    name = unique("by-name")
    run = client.runs.create("Echo me", name=name, instructions="Echo.")
    assert run.status in (RunStatus.PENDING, RunStatus.RUNNING)
    assert client.runs.get(run.id).id == run.id
    done = client.runs.wait(run.id, timeout=30)
    assert done.status is RunStatus.COMPLETED and "Echo me" in str(done.output)
    again = client.runs.create("Echo me too", name=name)
    assert again.agent_id == run.agent_id  # found by name, not created twice


def test_stream_yields_gapless_events_ending_with_completed(client: Runyard, agent_id: str) -> None:
    with client.runs.stream("Say hello", agent_id=agent_id, metadata=HELLO) as stream:
        assert stream.run_id is not None and stream.run_id.startswith("run_")
        events = list(stream)
        assert stream.text == "Hello"
        run = stream.final_run()
    assert_gapless(events)
    assert events[0].type == "run.queued"
    assert events[-1].type == "run.completed"
    assert [e.data["delta"] for e in events if e.type == "message.delta"] == ["Hel", "lo"]
    assert all(e.run_id == run.id for e in events)
    assert run.status is RunStatus.COMPLETED and run.output == stream.text
    assert run.last_seq == events[-1].seq


def test_stream_events_resumes_after_seq(client: Runyard, agent_id: str) -> None:
    run = client.runs.create_and_wait("Say hello", agent_id=agent_id, metadata=HELLO, timeout=30)
    with client.runs.stream_events(run.id) as stream:
        everything = list(stream)
    assert_gapless(everything)
    middle = everything[len(everything) // 2].seq
    with client.runs.stream_events(run.id, after_seq=middle) as stream:
        rest = list(stream)
    assert_gapless(rest, after_seq=middle)
    assert [e.model_dump() for e in rest] == [e.model_dump() for e in everything if e.seq > middle]
    assert rest[-1].type == "run.completed"


class _CutAfterFirstChunk(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            yield chunk
            raise httpx.RemoteProtocolError("simulated: connection dropped mid-stream")

    def close(self) -> None:
        self._inner.close()


class DropFirstEventStream(httpx.BaseTransport):
    """A real transport that cuts the first SSE response after its first chunk."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.sse_requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return response
        self.sse_requests.append(request)
        if len(self.sse_requests) > 1:
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code, headers=response.headers, stream=_CutAfterFirstChunk(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


def test_stream_reconnects_by_itself_when_the_connection_drops(server: Any, agent_id: str) -> None:
    transport = DropFirstEventStream()
    with Runyard(base_url=server.base_url, api_key=server.api_key, http_client=httpx.Client(transport=transport)) as client:
        with client.runs.stream("Say hello", agent_id=agent_id, metadata=SLOW_HELLO) as stream:
            events = list(stream)
            assert stream.text == "Hello"
    assert_gapless(events)
    assert events[-1].type == "run.completed"
    assert len(transport.sse_requests) >= 2
    first, resumed = transport.sse_requests[:2]
    assert first.method == "POST"
    assert resumed.method == "GET" and resumed.url.path == f"/v1/runs/{events[0].run_id}/events"
    assert int(resumed.url.params["after_seq"]) >= 1


def test_stream_events_reconnects_by_itself(server: Any, client: Runyard, agent_id: str) -> None:
    run = client.runs.create("Say hello", agent_id=agent_id, metadata=SLOW_HELLO)
    transport = DropFirstEventStream()
    with Runyard(base_url=server.base_url, api_key=server.api_key, http_client=httpx.Client(transport=transport)) as flaky:
        events = list(flaky.runs.stream_events(run.id))
    assert_gapless(events)
    assert events[-1].type == "run.completed"
    assert len(transport.sse_requests) >= 2


def test_runs_list_filters_and_auto_pager(client: Runyard, agent_id: str) -> None:
    tag = unique("tag")
    ids = [client.runs.create_and_wait(f"task {i}", agent_id=agent_id, metadata={"tag": tag}, timeout=30).id for i in range(3)]
    page = client.runs.list(metadata={"tag": tag}, limit=1)
    assert len(page.data) == 1 and page.has_more
    assert [r.id for r in client.runs.list(metadata={"tag": tag}, limit=1)] == ids[::-1]
    assert [r.id for r in client.runs.list(metadata={"tag": tag}, status=["completed", "failed"])] == ids[::-1]
    assert list(client.runs.list(metadata={"tag": tag}, status="cancelled")) == []
    assert {r.id for r in client.runs.list(agent_id=agent_id, limit=100)} >= set(ids)


def test_threads_runs(client: Runyard, agent_id: str) -> None:
    first = client.runs.create_and_wait("first", agent_id=agent_id, timeout=30)
    second = client.threads.runs.create(first.thread_id, "second", agent_id=agent_id)
    assert second.thread_id == first.thread_id
    client.runs.wait(second.id, timeout=30)
    assert [r.id for r in client.threads.runs.list(first.thread_id, limit=1)] == [second.id, first.id]


def test_idempotency_key_returns_the_same_run(client: Runyard, agent_id: str) -> None:
    key = str(uuid.uuid4())
    a = client.runs.create("once", agent_id=agent_id, idempotency_key=key)
    b = client.runs.create("once", agent_id=agent_id, idempotency_key=key)
    assert a.id == b.id


def test_wait_times_out_then_cancel(client: Runyard, agent_id: str) -> None:
    run = client.runs.create("slow", agent_id=agent_id, metadata=SLOW)
    with pytest.raises(runyard.TimeoutError) as info:
        client.runs.wait(run.id, timeout=0.3)
    assert isinstance(info.value, TimeoutError) and info.value.run is not None
    assert client.runs.cancel(run.id).id == run.id
    assert client.runs.wait(run.id, timeout=30).status is RunStatus.CANCELLED


def test_raise_on_failure(client: Runyard, agent_id: str) -> None:
    failing = {"script": [{"error": "boom"}]}
    run = client.runs.create_and_wait("fail", agent_id=agent_id, metadata=failing, timeout=30)
    assert run.status is RunStatus.FAILED
    with pytest.raises(runyard.RunFailedError) as info:
        client.runs.create_and_wait("fail", agent_id=agent_id, metadata=failing, timeout=30, raise_on_failure=True)
    assert info.value.run.status is RunStatus.FAILED


# --------------------------------------------------------------------------- sync: errors


def test_bad_key_is_authentication_error(server: Any) -> None:
    with Runyard(base_url=server.base_url, api_key="ry_wrong") as bad:
        with pytest.raises(runyard.AuthenticationError) as info:
            bad.agents.list()
    assert info.value.status_code == 401 and info.value.code


def test_unknown_run_is_not_found(client: Runyard) -> None:
    with pytest.raises(runyard.NotFoundError) as info:
        client.runs.get("run_doesnotexist")
    assert info.value.status_code == 404 and info.value.code == "not_found"


def test_cancel_of_completed_run_is_conflict(client: Runyard, agent_id: str) -> None:
    run = client.runs.create_and_wait("done", agent_id=agent_id, timeout=30)
    with pytest.raises(runyard.ConflictError) as info:
        client.runs.cancel(run.id)
    assert info.value.status_code == 409


def test_oversized_message_is_rejected(client: Runyard, agent_id: str) -> None:
    with pytest.raises((runyard.PayloadTooLargeError, runyard.ValidationError)) as info:
        client.runs.create("x" * (33 * 1024), agent_id=agent_id)
    assert info.value.status_code in (413, 422) and info.value.field == "message"


def test_missing_agent_is_validation_error(client: Runyard) -> None:
    with pytest.raises(runyard.ValidationError) as info:
        client.runs.create("no agent")
    assert info.value.status_code == 422 and info.value.field


def test_unreachable_server_is_connection_error() -> None:
    with Runyard(base_url="http://127.0.0.1:9", api_key="x", max_retries=0) as client:
        with pytest.raises(runyard.APIConnectionError):
            client.runs.get("run_x")


# --------------------------------------------------------------------------- async


async def test_async_agents_crud_and_pager(aclient: AsyncRunyard) -> None:
    created = [(await aclient.agents.create(unique("apage"))).id for _ in range(3)]
    page = await aclient.agents.list(limit=2)
    assert isinstance(page, runyard.AsyncPage) and len(page.data) == 2 and page.has_more
    seen = [agent.id async for agent in aclient.agents.list(limit=2)]
    assert seen[:3] == created[::-1]
    updated = await aclient.agents.update(created[0], instructions="New.")
    assert updated.instructions == "New."
    assert (await aclient.agents.delete(created[0])).deleted
    with pytest.raises(runyard.NotFoundError):
        await aclient.agents.get(created[0])


async def test_async_create_and_wait(aclient: AsyncRunyard) -> None:
    agent = await aclient.agents.create(unique("async"), instructions="Hi.")
    run = await aclient.runs.create_and_wait("Say hello", agent_id=agent.id, metadata=HELLO, timeout=30)
    assert run.status is RunStatus.COMPLETED and run.output == "Hello"
    assert (await aclient.runs.get(run.id)).output == "Hello"
    runs = [r.id async for r in aclient.runs.list(agent_id=agent.id)]
    assert runs == [run.id]


async def test_async_stream(aclient: AsyncRunyard) -> None:
    agent = await aclient.agents.create(unique("async-stream"))
    async with aclient.runs.stream("Say hello", agent_id=agent.id, metadata=HELLO) as stream:
        assert stream.run_id is not None
        events = [event async for event in stream]
        assert stream.text == "Hello"
        run = await stream.final_run()
    assert_gapless(events)
    assert events[-1].type == "run.completed"
    assert run.output == "Hello"

    middle = events[len(events) // 2].seq
    async with aclient.runs.stream_events(run.id, after_seq=middle) as resumed:
        rest = [event async for event in resumed]
    assert_gapless(rest, after_seq=middle)
    assert rest[-1].type == "run.completed"


class _AsyncCutAfterFirstChunk(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk
            raise httpx.RemoteProtocolError("simulated: connection dropped mid-stream")

    async def aclose(self) -> None:
        await self._inner.aclose()


class AsyncDropFirstEventStream(httpx.AsyncBaseTransport):
    """A real async transport that cuts the first SSE response after its first chunk."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.sse_requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return response
        self.sse_requests.append(request)
        if len(self.sse_requests) > 1:
            return response
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code, headers=response.headers, stream=_AsyncCutAfterFirstChunk(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_async_stream_reconnects_by_itself(server: Any) -> None:
    transport = AsyncDropFirstEventStream()
    http_client = httpx.AsyncClient(transport=transport)
    async with AsyncRunyard(base_url=server.base_url, api_key=server.api_key, http_client=http_client) as client:
        agent = await client.agents.create(unique("async-drop"))
        async with client.runs.stream("Say hello", agent_id=agent.id, metadata=SLOW_HELLO) as stream:
            events = [event async for event in stream]
            assert stream.text == "Hello"
    assert_gapless(events)
    assert events[-1].type == "run.completed"
    assert len(transport.sse_requests) >= 2 and transport.sse_requests[1].method == "GET"


async def test_async_errors(server: Any, aclient: AsyncRunyard) -> None:
    async with AsyncRunyard(base_url=server.base_url, api_key="ry_wrong") as bad:
        with pytest.raises(runyard.AuthenticationError):
            await bad.runs.get("run_x")
    with pytest.raises(runyard.NotFoundError):
        await aclient.runs.get("run_doesnotexist")
    agent = await aclient.agents.create(unique("async-err"))
    run = await aclient.runs.create_and_wait("done", agent_id=agent.id, timeout=30)
    with pytest.raises(runyard.ConflictError):
        await aclient.runs.cancel(run.id)
    with pytest.raises((runyard.PayloadTooLargeError, runyard.ValidationError)):
        await aclient.runs.create("x" * (33 * 1024), agent_id=agent.id)


async def test_async_wait_timeout_and_cancel(aclient: AsyncRunyard) -> None:
    agent = await aclient.agents.create(unique("async-cancel"))
    run = await aclient.runs.create("slow", agent_id=agent.id, metadata=SLOW)
    with pytest.raises(runyard.TimeoutError):
        await aclient.runs.wait(run.id, timeout=0.3)
    await aclient.runs.cancel(run.id)
    assert (await aclient.runs.wait(run.id, timeout=30)).status is RunStatus.CANCELLED


async def test_async_threads(aclient: AsyncRunyard) -> None:
    agent = await aclient.agents.create(unique("async-thread"))
    first = await aclient.runs.create_and_wait("first", agent_id=agent.id, timeout=30)
    second = await aclient.threads.runs.create(first.thread_id, "second", agent_id=agent.id)
    await aclient.runs.wait(second.id, timeout=30)
    page = await aclient.threads.runs.list(first.thread_id)
    assert [r.id for r in page.data] == [second.id, first.id]
