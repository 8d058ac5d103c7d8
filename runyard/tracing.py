"""OpenTelemetry traces: a span per API request, per run attempt, and (from pydantic-ai's own
instrumentation) per model request and tool call, exported over OTLP/HTTP.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `RUNYARD_OTEL=true`
is set, and always off with `OTEL_SDK_DISABLED=true`. Everything else comes from the standard
`OTEL_*` variables (exporter endpoint, headers, timeouts, `OTEL_BSP_*` batching, `OTEL_TRACES_SAMPLER`,
`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`). When off, callers check `enabled()` (one flag)
and nothing else happens: no provider, no exporter thread, no span objects.

A run's `trace_id` is its OTel trace id. Creating a run inside a traced request makes the run's
trace that request's, and the worker's attempt spans children of the `POST …/runs` server span (its
span context is kept in the run's `config["traceparent"]`). With tracing off on the API node, a
valid caller's `traceparent` still sets the run's trace id and the attempt's parent (the caller's
span). With no parent at all, the attempt span is a root span whose trace id is the run's: the
provider's id generator takes it from a context variable set only while that span starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from .config import Settings
    from .store.outcomes import ClaimedRun

__all__ = [
    "TracingMiddleware",
    "attempt_span",
    "configure",
    "current_traceparent",
    "enabled",
    "end_attempt",
    "instrumentation",
    "parse_traceparent",
    "shutdown",
    "wanted",
]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

_enabled = False
_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_instrumentation: Any = None
_root_trace_id: ContextVar[int | None] = ContextVar("runyard_root_trace_id", default=None)


def enabled() -> bool:
    """Whether tracing is on in this process (the one flag every hot path checks)."""
    return _enabled


def wanted(settings: Settings) -> bool:
    """Whether `configure(settings)` would turn tracing on (read from the settings and the environment)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(settings.otel or endpoint)


def configure(settings: Settings) -> bool:
    """Turn tracing on if wanted: a TracerProvider exporting in batches over OTLP/HTTP. Returns True
    when this call did it (its caller then calls `shutdown()` on exit); False when off or already on."""
    global _enabled, _provider, _tracer, _instrumentation
    if _enabled or not wanted(settings):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from pydantic_ai.models.instrumented import InstrumentationSettings

    from ._version import __version__

    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "runyard"}))
    provider = TracerProvider(resource=resource, id_generator=_run_trace_ids())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider, _tracer = provider, provider.get_tracer("runyard", __version__)
    # Prompts, answers and tool arguments only with the GenAI conventions' opt-in variable.
    content = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() == "true"
    _instrumentation = InstrumentationSettings(tracer_provider=provider, include_content=content)
    _enabled = True
    return True


def shutdown() -> None:
    """Export what is buffered and stop the exporter (tracing is off afterwards)."""
    global _enabled, _provider, _tracer, _instrumentation
    provider, _provider = _provider, None
    _enabled, _tracer, _instrumentation = False, None, None
    if provider is not None:
        provider.shutdown()


def instrumentation() -> Any:
    """pydantic-ai's `InstrumentationSettings` for agents while tracing is on, else None (not instrumented)."""
    return _instrumentation


def parse_traceparent(value: str | None) -> tuple[str, str, int] | None:
    """A valid W3C `traceparent` as (trace id, parent span id, trace flags), else None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, int(flags, 16)


def current_traceparent() -> str | None:
    """The current span's context as a `traceparent` (None when tracing is off or no span is current)."""
    if not _enabled:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@contextmanager
def attempt_span(run: ClaimedRun, trace_id: str | None) -> Iterator[Span]:
    """The span of one run attempt, current while it runs: in the run's trace, under the span its
    `config["traceparent"]` names (the create request's, or the caller's), else a root span.
    Only call it with tracing on."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

    assert _tracer is not None
    parent = parse_traceparent(run.config.get("traceparent"))
    if trace_id is None or len(trace_id) != 32:
        trace_id = parent[0] if parent else None
    context = None
    if parent is not None and parent[0] == trace_id:
        remote = SpanContext(int(parent[0], 16), int(parent[1], 16), is_remote=True, trace_flags=TraceFlags(parent[2]))
        context = trace.set_span_in_context(NonRecordingSpan(remote))
    attributes = {
        "runyard.run.id": run.id,
        "runyard.run.attempt": run.attempt,
        "runyard.agent.id": run.agent_id,
        "runyard.thread.id": run.thread_id,
        "runyard.run.model": run.model,
        "gen_ai.agent.id": run.agent_id,
    }
    token = _root_trace_id.set(int(trace_id, 16) if trace_id and context is None else None)
    try:
        span = _tracer.start_span("run.attempt", context=context, kind=SpanKind.CONSUMER, attributes=attributes)
    finally:
        _root_trace_id.reset(token)
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


def end_attempt(span: Span, status: str, error: str | None = None) -> None:
    """Record how the attempt ended on its span: the run's status (`failed` also marks the span an error)."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("runyard.run.status", status)
    if status == "failed":
        span.set_status(Status(StatusCode.ERROR, error))


def _run_trace_ids() -> Any:
    """Random ids, except a root attempt span's trace id: the run's (see `attempt_span`)."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunTraceIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            chosen = _root_trace_id.get()
            return chosen if chosen is not None else super().generate_trace_id()

    return RunTraceIds()


class TracingMiddleware:
    """A SERVER span per HTTP request (continuing a caller's `traceparent`), named by the route template."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not _enabled or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        assert _tracer is not None
        headers: dict[str, str] = {}
        for name, value in scope.get("headers") or []:
            if name in (b"traceparent", b"tracestate"):
                headers[name.decode()] = value.decode("latin-1")
        parent = TraceContextTextMapPropagator().extract(headers) if headers else None
        method = scope.get("method", "GET")
        attributes = {"http.request.method": method, "url.path": scope.get("path", ""), "url.scheme": "http"}
        status_code = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        with _tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes, end_on_exit=True
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status_code)
                if status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
