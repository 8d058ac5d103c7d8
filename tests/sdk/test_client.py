"""Client behaviour that a healthy server cannot show: retries, idempotency keys, stream drops.

These use `httpx.MockTransport`, so they need no server.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import runyard
from runyard import AsyncRunyard, Runyard, _events
from runyard.client.base_client import RequestOptions

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()


def run_json(status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {
        "id": "run_1", "object": "run", "agent_id": "agt_1", "thread_id": "thr_1", "status": status,
        "original_prompt": "hi", "model": "scripted", "created_at": NOW, "trace_id": "t", "last_seq": 4, **extra,
    }


def sse(*events: tuple[int, str, dict[str, Any]]) -> bytes:
    out = ""
    for seq, type_, data in events:
        envelope = {"seq": seq, "run_id": "run_1", "type": type_, "data": data, "created_at": NOW}
        out += f"id: {seq}\nevent: {type_}\ndata: {json.dumps(envelope)}\n\n"
    return out.encode()


EVENTS = [
    (1, "run.queued", {}),
    (2, "message.delta", {"delta": "Hel"}),
    (3, "message.delta", {"delta": "lo"}),
    (4, "run.completed", {"output": "Hello", "usage": {}}),
]


def make_client(handler: Any, **kwargs: Any) -> Runyard:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return Runyard(base_url="http://test", api_key="ry_key", http_client=http, **kwargs)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runyard.client.base_client.time.sleep", lambda s: None)
    monkeypatch.setattr("runyard.client.streams.time.sleep", lambda s: None)
    monkeypatch.setattr("runyard.client.resources.runs.time.sleep", lambda s: None)


def test_auth_header_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=run_json())

    monkeypatch.setenv("RUNYARD_API_KEY", "ry_env")
    monkeypatch.setenv("RUNYARD_BASE_URL", "http://env-host:1234/")
    client = Runyard(http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    client.runs.get("run_1")
    assert seen[0].headers["authorization"] == "Bearer ry_env"
    assert str(seen[0].url) == "http://env-host:1234/v1/runs/run_1"


def test_retries_5xx_and_reuses_the_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) < 3:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "busy", "field": None}})
        return httpx.Response(201, json=run_json("pending"))

    run = make_client(handler).runs.create("hi", agent_id="agt_1")
    assert run.status is runyard.RunStatus.PENDING
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1
    assert json.loads(seen[0].content) == {"message": "hi", "agent_id": "agt_1", "stream": False}


def test_each_logical_create_gets_its_own_key_unless_given() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=run_json("pending"))

    client = make_client(handler)
    client.runs.create("a", agent_id="agt_1")
    client.runs.create("b", agent_id="agt_1")
    client.runs.create("c", agent_id="agt_1", idempotency_key="mine")
    keys = [r.headers["idempotency-key"] for r in seen]
    assert keys[0] != keys[1] and keys[2] == "mine"


def test_gives_up_after_max_retries() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500, json={"error": {"code": "internal_error", "message": "x", "field": None}},
                              headers={"x-request-id": "req_9"})

    with pytest.raises(runyard.InternalServerError) as info:
        make_client(handler, max_retries=1).runs.get("run_1")
    assert calls == 2 and info.value.request_id == "req_9"


def test_4xx_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(409, json={"error": {"code": "conflict", "message": "done", "field": None}})

    with pytest.raises(runyard.ConflictError):
        make_client(handler).runs.cancel("run_1")
    assert calls == 1


def test_connection_errors_are_retried_then_mapped() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(runyard.APITimeoutError) as info:
        make_client(handler, max_retries=1).runs.get("run_1")
    assert calls == 2 and isinstance(info.value.__cause__, httpx.ReadTimeout)


def test_stream_reconnects_with_after_seq_and_drops_duplicates() -> None:
    seen: list[httpx.Request] = []

    class Dropping(httpx.SyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield sse(*EVENTS[:2])
            raise httpx.RemoteProtocolError("peer closed connection")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(201, stream=Dropping(), headers={"content-type": "text/event-stream"})
        # The server replays from after_seq; send one duplicate too, which must be dropped.
        return httpx.Response(200, content=sse(*EVENTS[1:]), headers={"content-type": "text/event-stream"})

    client = make_client(handler)
    with client.runs.stream("hi", agent_id="agt_1") as stream:
        assert stream.run_id == "run_1"
        events = list(stream)
        assert stream.text == "Hello"
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert seen[1].method == "GET" and seen[1].url.params["after_seq"] == "2"
    assert seen[1].headers["last-event-id"] == "2" and seen[1].headers["accept"] == "text/event-stream"
    assert seen[0].headers["accept"] == "text/event-stream"
    assert json.loads(seen[0].content)["stream"] is True


def test_stream_gives_up_after_bounded_reconnects() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=b": ping\n\n", headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=run_json("running"))

    stream = make_client(handler).runs.stream_events("run_1")
    with pytest.raises(runyard.APIConnectionError):
        list(stream)


def test_stream_ends_when_the_run_already_finished_before_the_cursor() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=b"", headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=run_json("completed", last_seq=4))

    assert list(make_client(handler).runs.stream_events("run_1", after_seq=4)) == []


def test_reading_a_closed_stream_says_how_to_fix_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse(*EVENTS), headers={"content-type": "text/event-stream"})

    stream = make_client(handler).runs.stream_events("run_1")
    next(stream)
    stream.close()
    with pytest.raises(runyard.StreamClosedError, match="stream_events"):
        next(stream)
    assert isinstance(runyard.StreamClosedError("x"), RuntimeError)


def test_wait_loops_on_the_long_poll_until_terminal() -> None:
    answers = iter([run_json("running"), run_json("running"), run_json("running"), run_json("completed", output="ok")])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=next(answers))

    run = make_client(handler).runs.wait("run_1", timeout=100)
    assert run.output == "ok" and len(seen) == 4
    assert all(r.url.path == "/v1/runs/run_1/wait" for r in seen)
    assert 0 < float(seen[0].url.params["timeout"]) <= 60


def wait_json(wait_id: str, kind: str, request: dict[str, Any], status: str = "open") -> dict[str, Any]:
    return {"id": wait_id, "object": "wait", "run_id": "run_1", "kind": kind, "request": request,
            "answer_schema": {}, "status": status, "created_at": NOW}


def test_wait_answers_a_pause_through_callbacks_on_the_long_poll_alone() -> None:
    # The long poll returns for a waiting run too, so a pause needs no event stream.
    polls = iter([run_json("waiting", human_in_the_loop=True, waiting_for="question"), run_json("completed")])
    question = {"questions": [{"question": "Color?", "options": ["red", "blue"]}]}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path.endswith("/wait"):
            return httpx.Response(200, json=next(polls))
        if path.endswith("/waits"):
            return httpx.Response(200, json={"data": [wait_json("wait_2", "question", question),
                                                      wait_json("wait_1", "input", {}, status="resolved")]})
        assert path.endswith("/answer"), path
        return httpx.Response(200, json=wait_json("wait_2", "question", question, status="resolved"))

    asked: list[str] = []
    run = make_client(handler).runs.wait("run_1", timeout=100, on_question=lambda w: asked.append(w.id) or "blue")
    assert run.status is runyard.RunStatus.COMPLETED and asked == ["wait_2"]
    assert [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in seen] == [
        ("GET", "wait"), ("GET", "waits"), ("POST", "answer"), ("GET", "wait"),
    ]
    assert json.loads(seen[2].content) == {"answers": {"Color?": "blue"}, "wait_id": "wait_2"}


def test_wait_returns_a_waiting_run_without_a_callback_and_times_out_on_an_unsettled_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/waits"):
            return httpx.Response(200, json={"data": [wait_json("wait_1", "approval", {"name": "calculator"})]})
        run_id = request.url.path.split("/")[3]
        return httpx.Response(200, json=run_json("waiting" if run_id == "run_w" else "running", id=run_id))

    client = make_client(handler)
    assert client.runs.wait("run_w", timeout=5, on_question=lambda w: "x").status is runyard.RunStatus.WAITING
    with pytest.raises(runyard.TimeoutError) as info:
        client.runs.wait("run_r", timeout=0)
    assert info.value.run is not None and info.value.run.status is runyard.RunStatus.RUNNING


def test_list_pages_follow_next_cursor_lazily() -> None:
    seen: list[httpx.Request] = []
    pages = {
        None: {"data": [run_json(id="run_3"), run_json(id="run_2")], "has_more": True, "next_cursor": "c2"},
        "c2": {"data": [run_json(id="run_1")], "has_more": False, "next_cursor": None},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=pages[request.url.params.get("before")])

    page = make_client(handler).runs.list(status=["completed", "failed"], metadata={"k": "v"}, limit=2)
    assert len(seen) == 1
    assert seen[0].url.params.get_list("status") == ["completed", "failed"]
    assert seen[0].url.params["metadata[k]"] == "v"
    assert [r.id for r in page] == ["run_3", "run_2", "run_1"]
    assert seen[1].url.params["before"] == "c2" and seen[1].url.params["limit"] == "2"


async def test_async_paginator_is_awaitable_and_async_iterable() -> None:
    pages = {
        None: {"data": [run_json(id="run_2")], "has_more": True, "next_cursor": "c"},
        "c": {"data": [run_json(id="run_1")], "has_more": False, "next_cursor": None},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("before")])

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncRunyard(base_url="http://test", api_key="k", http_client=http) as client:
        first = await client.runs.list()
        assert [r.id for r in first.data] == ["run_2"] and first.has_next_page()
        assert [r.id async for r in client.runs.list()] == ["run_2", "run_1"]


async def test_async_stream_reconnects() -> None:
    seen: list[httpx.Request] = []

    class Dropping(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield sse(*EVENTS[:2])
            raise httpx.ReadError("reset")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(200, stream=Dropping(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=sse(*EVENTS[2:]), headers={"content-type": "text/event-stream"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncRunyard(base_url="http://test", api_key="k", http_client=http) as client:
        async with client.runs.stream_events("run_1") as stream:
            events = [e async for e in stream]
            assert stream.text == "Hello"
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert seen[1].url.params["after_seq"] == "2"


def test_request_options_drop_not_given_params() -> None:
    client = Runyard(base_url="http://test", api_key="k")
    request = client._build_request(client._http, RequestOptions("GET", "/v1/agents", params={"limit": runyard.NOT_GIVEN, "before": "x"}))
    assert str(request.url) == "http://test/v1/agents?before=x"


def test_requests_follow_a_changed_api_key_and_base_url() -> None:
    # The headers of every call and the URL prefix are built once, and again when these change.
    client = Runyard(base_url="http://test/prefix", api_key="k1", default_headers={"X-Team": "a"})
    first = client._build_request(client._http, RequestOptions("GET", "/v1/runs/run_1"))
    assert str(first.url) == "http://test/prefix/v1/runs/run_1"
    assert (first.headers["authorization"], first.headers["x-team"]) == ("Bearer k1", "a")

    client.api_key, client.base_url = "k2", httpx.URL("http://other/")
    options = RequestOptions("POST", "/v1/runs", headers={"Accept": "text/event-stream"}, idempotency_key="key")
    second = client._build_request(client._http, options)
    assert str(second.url) == "http://other/v1/runs"
    assert (second.headers["authorization"], second.headers["idempotency-key"]) == ("Bearer k2", "key")
    assert second.headers["accept"] == "text/event-stream"

    client.api_key = None
    third = client._build_request(client._http, RequestOptions("GET", "/v1/runs"))
    assert "authorization" not in third.headers and "idempotency-key" not in third.headers  # nothing leaked
    assert third.headers["accept"] == "application/json"


def test_streamed_events_are_the_domain_models() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse(*EVENTS, (5, "some.future_event", {})),
                              headers={"content-type": "text/event-stream"})

    with make_client(handler).runs.stream_events("run_1") as stream:
        events = list(stream)
    assert [type(e) for e in events] == [_events.RunQueued, _events.MessageDelta, _events.MessageDelta,
                                         _events.RunCompleted]
    assert all(isinstance(e, runyard.Event) for e in events)
    assert runyard.RunWaiting is _events.RunWaiting
    assert type(_events.parse_event({**events[0].model_dump(), "type": "some.future_event"})) is runyard.Event


def test_list_events_pages_on_after_seq() -> None:
    seen: list[httpx.Request] = []

    def envelope(seq: int, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"seq": seq, "run_id": "run_1", "type": type_, "data": data, "created_at": NOW}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        after = int(request.url.params["after_seq"])
        batch = [envelope(*e) for e in EVENTS if e[0] > after][:2]
        has_more = batch[-1]["seq"] < 4
        return httpx.Response(200, json={"data": batch, "has_more": has_more,
                                         "next_cursor": str(batch[-1]["seq"]) if has_more else None})

    events = list(make_client(handler).runs.list_events("run_1", after_seq=0, limit=2))
    assert [e.seq for e in events] == [1, 2, 3, 4] and isinstance(events[-1], _events.RunCompleted)
    assert [r.url.params["after_seq"] for r in seen] == ["0", "2"]
    assert all(r.url.params["limit"] == "2" and r.headers["accept"] == "application/json" for r in seen)


def test_an_unknown_run_argument_is_refused_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with pytest.raises(TypeError, match="agnet_id"):
        make_client(handler).runs.create("hi", agnet_id="agt_1")  # type: ignore[call-arg]
