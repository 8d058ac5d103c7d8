"""OpenTelemetry traces (issue: tracing): a real `runyard serve` exporting over OTLP/HTTP to a real
receiver on 127.0.0.1, one trace from the create request to the run's completion.

The tree checked: the caller's span → `POST /v1/runs` (SERVER) → `run.attempt` (the worker's span for
the attempt: the create request's server span is its parent) → pydantic-ai's `invoke_agent …` →
`chat …` model requests and `execute_tool calculator`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.otlp import OtlpReceiver, ReceivedSpan
from support.servers import ADMIN_KEY, ServerProcess, wait_until

from runyard import tracing
from runyard.config import Settings
from runyard.server.app import create_app

SCRIPT = [{"tool_calls": [{"name": "calculator", "args": {"expression": "2+2"}}]}, {"text": "done"}]
SERVER_KIND, CONSUMER_KIND = 2, 5  # opentelemetry.proto.trace.v1.Span.SpanKind


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[httpx.Client]:
    tmp: Path = tmp_path_factory.mktemp("tracing")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_SERVICE_NAME": "runyard-test", "OTEL_SDK_DISABLED": "false"}
    srv = ServerProcess(f"sqlite+aiosqlite:///{tmp / 'tracing.db'}", env).start(tmp)
    try:
        with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          timeout=30) as client:
            yield client
    finally:
        srv.stop()


def create(http: httpx.Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = http.post("/v1/runs", headers=headers, json={
        "name": f"traced-{secrets.token_hex(6)}", "instructions": "Add.", "message": "2+2?",
        "tools": ["calculator"], "metadata": {"script": SCRIPT},
    })
    assert r.status_code == 201, r.text
    return r.json()


def completed(http: httpx.Client, run_id: str) -> dict[str, Any]:
    run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": 20}).json()
    assert run["status"] == "completed", run
    return run


def tree(spans: list[ReceivedSpan]) -> str:
    """The spans as an indented tree (for failure messages and the report)."""
    children: dict[str, list[ReceivedSpan]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        children.setdefault(s.parent_span_id if s.parent_span_id in ids else "", []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in children.get(parent, []):
            lines.append(f"{'  ' * depth}{s.name} (parent {s.parent_span_id or '-'})")
            walk(s.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


def descends(span: ReceivedSpan, ancestor: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> bool:
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        if span.span_id == ancestor.span_id:
            return True
    return False


def test_one_trace_from_create_to_completion(traced: httpx.Client, receiver: OtlpReceiver) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    run = create(traced, {"traceparent": f"00-{trace_id}-{caller_span}-01"})
    assert run["trace_id"] == trace_id
    run = completed(traced, run["id"])
    assert run["trace_id"] == trace_id

    def spans() -> list[ReceivedSpan] | None:
        got = receiver.of_trace(trace_id)
        names = [s.name for s in got]
        done = "run.attempt" in names and any(n.startswith("execute_tool") for n in names)
        return got if done and any(n.startswith("POST") for n in names) else None

    got = wait_until(spans, timeout=15)
    shown = tree(got)
    by_id = {s.span_id: s for s in got}
    assert all(s.trace_id == trace_id for s in got)
    assert all(s.resource.get("service.name") == "runyard-test" for s in got), got[0].resource

    [api] = [s for s in got if s.name == "POST /v1/runs"]
    assert api.kind == SERVER_KIND and api.parent_span_id == caller_span, shown
    assert api.attributes["http.request.method"] == "POST"
    assert api.attributes["http.route"] == "/v1/runs" and api.attributes["url.path"] == "/v1/runs"
    assert api.attributes["http.response.status_code"] == 201

    [attempt] = [s for s in got if s.name == "run.attempt"]
    assert attempt.kind == CONSUMER_KIND and attempt.parent_span_id == api.span_id, shown
    assert attempt.attributes["runyard.run.id"] == run["id"]
    assert attempt.attributes["runyard.agent.id"] == run["agent_id"]
    assert attempt.attributes["runyard.run.model"] == run["model"]
    assert attempt.attributes["runyard.run.status"] == "completed"
    assert attempt.attributes["runyard.run.attempt"] == 1

    chats = [s for s in got if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 2, shown  # the tool call, then the answer
    for chat in chats:
        assert descends(chat, attempt, by_id), shown
        assert chat.attributes.get("gen_ai.request.model"), chat.attributes
    [tool] = [s for s in got if s.attributes.get("gen_ai.tool.name") == "calculator"]
    assert tool.name == "execute_tool calculator" and descends(tool, attempt, by_id), shown
    assert tool.attributes.get("gen_ai.operation.name") == "execute_tool"
    assert tool.attributes.get("gen_ai.tool.call.id")
    # No content unless OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.
    assert "gen_ai.tool.call.arguments" not in tool.attributes
    print(shown)


def test_invalid_traceparent_starts_a_fresh_trace(traced: httpx.Client, receiver: OtlpReceiver) -> None:
    bad_trace = "0" * 32
    run = create(traced, {"traceparent": f"00-{bad_trace}-{secrets.token_hex(8)}-01"})
    trace_id = run["trace_id"]
    assert len(trace_id) == 32 and trace_id != bad_trace
    completed(traced, run["id"])
    got = wait_until(lambda: (s := receiver.of_trace(trace_id)) and any(x.name == "run.attempt" for x in s) and s,
                     timeout=15)
    [api] = [s for s in got if s.name == "POST /v1/runs"]
    assert api.parent_span_id == ""  # the request's span starts the run's trace
    [attempt] = [s for s in got if s.name == "run.attempt"]
    assert attempt.parent_span_id == api.span_id


def test_off_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:")
    assert not tracing.wanted(settings)
    assert tracing.configure(settings) is False
    assert not tracing.enabled() and tracing.instrumentation() is None and tracing.current_traceparent() is None
    app = create_app(settings, run_worker=False)
    assert not any(m.cls is tracing.TracingMiddleware for m in app.user_middleware)
    assert tracing.wanted(settings.model_copy(update={"otel": True}))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    assert tracing.wanted(settings)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.wanted(settings)


@pytest.mark.parametrize("value", [
    None, "", "garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "00-" + "1" * 32 + "-" + "0" * 16 + "-01",
    "ff-" + "1" * 32 + "-" + "1" * 16 + "-01", "00-" + "A" * 32 + "-" + "1" * 16 + "-01",
    "00-" + "1" * 32 + "-" + "1" * 16 + "-01-extra",
])
def test_invalid_traceparents_are_refused(value: str | None) -> None:
    assert tracing.parse_traceparent(value) is None


def test_traceparent_parsing() -> None:
    assert tracing.parse_traceparent("00-" + "a" * 32 + "-" + "b" * 16 + "-01") == ("a" * 32, "b" * 16, 1)
    # A later version may add fields after the flags.
    assert tracing.parse_traceparent("01-" + "a" * 32 + "-" + "b" * 16 + "-00-more") == ("a" * 32, "b" * 16, 0)


def test_untraced_server_still_follows_the_callers_trace(http: httpx.Client) -> None:
    """Tracing off (the session's server): a valid traceparent still names the run's trace, an invalid one not."""
    trace_id = secrets.token_hex(16)
    assert create(http, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})["trace_id"] == trace_id
    fresh = create(http, {"traceparent": f"00-{trace_id}-zz-01"})["trace_id"]
    assert len(fresh) == 32 and fresh != trace_id
