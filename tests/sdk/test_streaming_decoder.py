"""The SSE decoder, the run accumulator and the retry/wait decisions: pure, no server."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest

from runyard import Event, RunAccumulator, RunStatus, ServerSentEvent, SSEDecoder, Usage
from runyard.client import exceptions as exc
from runyard.client.base_client import make_status_error, parse_retry_after, retry_delay, should_retry
from runyard.client.pagination import BasePage
from runyard.client.resources.run_params import run_body, run_list_params
from runyard.client.resources.waiting import long_poll_seconds, next_poll_pause
from runyard.client.streams import event_from_sse, reconnect_delay
from runyard.client.types import NOT_GIVEN
from runyard.domain import Run


def decode_all(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events


# --------------------------------------------------------------------------- decoder


def test_one_event() -> None:
    [event] = decode_all(b'id: 1\nevent: run.queued\ndata: {"a": 1}\n\n')
    assert event == ServerSentEvent(event="run.queued", data='{"a": 1}', id="1", retry=None)


def test_default_event_type_is_message() -> None:
    [event] = decode_all(b"data: x\n\n")
    assert event.event == "message"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_chunks_split_anywhere(size: int) -> None:
    raw = "id: 1\r\nevent: a\r\ndata: héllo\r\n\r\nid: 2\nevent: b\ndata: wörld\n\n".encode()
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
    events = decode_all(*chunks)
    assert [(e.id, e.event, e.data) for e in events] == [("1", "a", "héllo"), ("2", "b", "wörld")]


def test_crlf_split_between_chunks_is_one_line_ending() -> None:
    events = decode_all(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n")
    assert [e.data for e in events] == ["a", "b"]


def test_cr_only_line_endings() -> None:
    events = decode_all(b"data: a\r\rdata: b\r\r")
    assert [e.data for e in events] == ["a", "b"]


def test_multi_line_data_joined_with_newline() -> None:
    [event] = decode_all(b"data: first\ndata: second\ndata:\ndata:  indented\n\n")
    assert event.data == "first\nsecond\n\n indented"


def test_comments_are_ignored_and_dispatch_nothing() -> None:
    events = decode_all(b": ping\n\n: ping\n\ndata: x\n: mid-event comment\n\n")
    assert [e.data for e in events] == ["x"]


def test_id_is_kept_across_events() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 7\ndata: a\n\ndata: b\n\n")
    assert [e.id for e in events] == ["7", "7"]
    assert decoder.last_event_id == "7"
    decoder.feed(b": ping\n\n")
    assert decoder.last_event_id == "7"
    [event] = decoder.feed(b"id: 8\ndata: c\n\n")
    assert event.id == "8" and decoder.last_event_id == "8"


def test_id_with_nul_is_ignored() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n")
    assert decoder.last_event_id == "1"


def test_retry_field() -> None:
    decoder = SSEDecoder()
    [event] = decoder.feed(b"retry: 1500\ndata: a\n\n")
    assert event.retry == 1500 and decoder.retry == 1500
    decoder.feed(b"retry: soon\ndata: b\n\n")
    assert decoder.retry == 1500  # not all digits: ignored


def test_field_without_colon_and_unknown_fields() -> None:
    events = decode_all(b"data\nfoo: bar\n\n")
    assert [e.data for e in events] == [""]
    events = decode_all(b"data\ndata: x\n\n")
    assert [e.data for e in events] == ["\nx"]


def test_value_keeps_colons_and_only_one_space_is_stripped() -> None:
    [event] = decode_all(b'data:  {"a": "b:c"}\n\n')
    assert event.data == ' {"a": "b:c"}'


def test_event_without_blank_line_at_eof_is_dropped() -> None:
    events = decode_all(b"data: a\n\ndata: b\n")
    assert [e.data for e in events] == ["a"]


def test_event_type_resets_after_dispatch() -> None:
    events = decode_all(b"event: x\ndata: 1\n\ndata: 2\n\n")
    assert [e.event for e in events] == ["x", "message"]


def test_bom_is_stripped() -> None:
    [event] = decode_all(b"\xef\xbb\xbfdata: a\n\n")
    assert event.data == "a"


def test_decode_line_by_line() -> None:
    decoder = SSEDecoder()
    assert decoder.decode("event: run.started") is None
    assert decoder.decode("data: {}") is None
    event = decoder.decode("")
    assert event is not None and event.event == "run.started"


# --------------------------------------------------------------------------- events and accumulator

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ev(seq: int, type_: str, **data: object) -> Event:
    return Event(seq=seq, run_id="run_1", type=type_, data=data, created_at=NOW)


def test_parse_event_envelope() -> None:
    envelope = {"seq": 3, "run_id": "run_1", "type": "message.delta", "data": {"delta": "Hi"}, "created_at": NOW.isoformat()}
    event = event_from_sse(ServerSentEvent(event="message.delta", data=json.dumps(envelope), id="3"))
    assert event is not None and event.seq == 3 and event.data == {"delta": "Hi"}
    assert event_from_sse(ServerSentEvent(data="")) is None


def test_accumulator_folds_text_status_and_output() -> None:
    acc = RunAccumulator()
    events = [
        ev(1, "run.queued"),
        ev(2, "run.started"),
        ev(3, "message.delta", delta="Hel"),
        ev(4, "message.delta", delta="lo"),
        ev(5, "message.completed", text="Hello"),
        ev(6, "run.completed", output="Hello", usage={"input_tokens": 3, "output_tokens": 2, "requests": 1}),
    ]
    statuses = []
    for event in events:
        assert acc.add(event)
        statuses.append(acc.status)
    assert statuses[:2] == [RunStatus.PENDING, RunStatus.RUNNING]
    assert acc.run_id == "run_1"
    assert acc.text == "Hello"
    assert acc.status is RunStatus.COMPLETED and acc.is_done
    assert acc.output == "Hello"
    assert acc.usage == Usage(input_tokens=3, output_tokens=2, requests=1)
    assert acc.last_seq == 6


def test_accumulator_ignores_replayed_events() -> None:
    acc = RunAccumulator()
    acc.add(ev(1, "run.queued"))
    acc.add(ev(2, "message.delta", delta="a"))
    assert not acc.add(ev(2, "message.delta", delta="a"))
    assert not acc.add(ev(1, "run.queued"))
    assert acc.text == "a" and acc.last_seq == 2


def test_accumulator_resumes_after_seq() -> None:
    acc = RunAccumulator(run_id="run_1", after_seq=3)
    assert not acc.add(ev(3, "message.delta", delta="old"))
    assert acc.add(ev(4, "message.delta", delta="new"))
    assert acc.text == "new"


def test_accumulator_keeps_completed_text_of_a_model_that_does_not_stream() -> None:
    acc = RunAccumulator()
    acc.add(ev(1, "message.completed", text="Whole"))
    acc.add(ev(2, "message.delta", delta=" more"))
    acc.add(ev(3, "message.completed", text=" more"))
    assert acc.text == "Whole more"


def test_accumulator_failure_tools_and_cancel() -> None:
    acc = RunAccumulator()
    acc.add(ev(1, "tool.call", tool_call_id="c1", name="calculator", args={"expression": "2+3"}))
    acc.add(ev(2, "reasoning.delta", delta="thinking"))
    acc.add(ev(3, "run.cancel_requested"))
    acc.add(ev(4, "run.failed", error="boom"))
    assert acc.tool_calls == [{"tool_call_id": "c1", "name": "calculator", "args": {"expression": "2+3"}}]
    assert acc.reasoning == "thinking"
    assert acc.cancel_requested
    assert acc.status is RunStatus.FAILED and acc.error == "boom" and acc.is_done


# --------------------------------------------------------------------------- retry, wait and paging decisions


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "http://test/v1/runs/x")
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, exc.BadRequestError),
        (401, exc.AuthenticationError),
        (404, exc.NotFoundError),
        (409, exc.ConflictError),
        (413, exc.PayloadTooLargeError),
        (422, exc.ValidationError),
        (429, exc.RateLimitError),
        (500, exc.InternalServerError),
        (503, exc.InternalServerError),
        (418, exc.APIStatusError),
    ],
)
def test_status_mapping(status: int, error_class: type[exc.APIStatusError]) -> None:
    body = {"error": {"code": "some_code", "message": "it went wrong", "field": "message"}}
    error = make_status_error(response(status, body, {"x-request-id": "req_1"}))
    assert type(error) is error_class
    assert (error.status_code, error.code, error.field, error.request_id) == (status, "some_code", "message", "req_1")
    assert error.body == body and "it went wrong" in str(error)


def test_status_error_with_non_json_body() -> None:
    request = httpx.Request("GET", "http://test/")
    error = make_status_error(httpx.Response(502, text="bad gateway", request=request))
    assert isinstance(error, exc.InternalServerError) and error.body == "bad gateway" and error.code is None


def test_should_retry() -> None:
    assert should_retry(response(429)) and should_retry(response(500)) and should_retry(response(503))
    assert not should_retry(response(400)) and not should_retry(response(409)) and not should_retry(response(404))
    assert not should_retry(response(500, headers={"x-should-retry": "false"}))
    assert should_retry(response(409, headers={"x-should-retry": "true"}))


def test_retry_delay_and_retry_after() -> None:
    assert retry_delay(0, None, jitter=0) == 0.5
    assert retry_delay(1, None, jitter=0) == 1.0
    assert retry_delay(10, None, jitter=0) == 8.0
    assert retry_delay(0, None, jitter=1) == 0.375
    assert retry_delay(0, 3.0) == 3.0
    assert retry_delay(0, 3600.0, jitter=0) == 0.5  # absurd Retry-After ignored
    assert parse_retry_after(httpx.Headers({"retry-after": "2"})) == 2.0
    assert parse_retry_after(httpx.Headers({"retry-after": "nonsense"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


def test_reconnect_delay() -> None:
    assert reconnect_delay(1, None) == 0.25
    assert reconnect_delay(2, None) == 0.5
    assert reconnect_delay(20, None) == 5.0
    assert reconnect_delay(1, 100) == 0.1


def run(status: RunStatus = RunStatus.RUNNING) -> Run:
    return Run(
        id="run_1", agent_id="agt_1", thread_id="thr_1", status=status, original_prompt="x",
        model="scripted", created_at=NOW, trace_id="t",
    )


def test_wait_decisions() -> None:
    assert long_poll_seconds(None, 0.0) == 30.0
    assert long_poll_seconds(10.0, 4.0) == 6.0
    assert long_poll_seconds(10.0, 12.0) == 0.0
    # Held the full time: poll again at once. Came back early: pause poll_interval.
    assert next_poll_pause(run(), deadline=None, asked=30, started=0, now=30, poll_interval=1) == 0
    assert next_poll_pause(run(), deadline=None, asked=30, started=0, now=2, poll_interval=1) == 1
    assert next_poll_pause(run(), deadline=2.5, asked=2.5, started=0, now=2, poll_interval=1) == 0.5
    with pytest.raises(exc.TimeoutError) as info:
        next_poll_pause(run(), deadline=5, asked=5, started=0, now=5, poll_interval=1)
    assert info.value.run is not None and isinstance(info.value, TimeoutError)


def test_run_body_and_list_params() -> None:
    body = run_body("hi", {"agent_id": "agt_1", "model": NOT_GIVEN, "idempotency_key": "k"}, stream=True)
    assert body == {"message": "hi", "agent_id": "agt_1", "stream": True}
    params = run_list_params(
        agent_id=NOT_GIVEN, thread_id="thr_1", user_id=NOT_GIVEN, status=["completed", RunStatus.FAILED],
        metadata={"team": "a"}, created_after=NOW, created_before=NOT_GIVEN, limit=5, before=NOT_GIVEN, after=NOT_GIVEN,
    )
    assert params == {
        "thread_id": "thr_1", "status": ["completed", "failed"], "metadata[team]": "a",
        "created_after": NOW.isoformat(), "limit": 5,
    }


def test_next_page_cursor() -> None:
    page = BasePage(data=[run()], has_more=True, next_cursor="cur_1")
    assert page.next_page_params() == {"before": "cur_1"}
    assert BasePage(data=[run()], has_more=True, next_cursor=None).next_page_params() == {"before": "run_1"}
    assert BasePage(data=[run()], has_more=False, next_cursor="x").next_page_params() is None
