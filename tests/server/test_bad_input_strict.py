"""Bad input at the edges, on SQLite and on PostgreSQL (DESIGN invariant 8): JSON nested too deep,
non-finite numbers, NUL characters, integers past 64 bits, cursors, SSE cursors past the end,
unknown query parameters, JSON Schemas the server cannot check, scripted-model bounds and huge
headers. Each is a 4xx with `{"error": {code, message, field}}` naming the field, never a 500,
and a refused request writes nothing.

Every test runs against two real servers (uvicorn in a thread): one on a fresh SQLite file and
one on a fresh PostgreSQL database (`runyard_t_<hex>`, migrated first, dropped WITH (FORCE)).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from support.servers import QuietClient, ServerInThread, server_on

from runyard.store import schema

SSE = {"Accept": "text/event-stream"}
TERMINAL = {"completed", "failed", "cancelled"}
INT64_MAX = 2**63 - 1


# Servers on both databases


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    """A running server on a fresh database of each dialect."""
    with server_on(request.param, tmp_path_factory.mktemp("strict")) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: ServerInThread) -> Iterator[httpx.Client]:
    with QuietClient(base_url=server.base_url, headers=server.headers(), timeout=30) as client:
        yield client


# Helpers


def unique(prefix: str = "strict") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def names(actual: str | None, field: str) -> bool:
    """`actual` names `field` or a place inside it (`metadata`, `metadata.x`, `metadata[0]`, `metadata key`)."""
    return actual is not None and (actual == field or re.match(re.escape(field) + r"[.\[ ]", actual) is not None)


def assert_error(r: httpx.Response, status: int | tuple[int, ...], field: str | None = None) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.request.method, str(r.request.url)[:200], r.status_code, r.text[:500])
    error = r.json()["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert "field" in error, error
    if field is not None:
        assert names(error["field"], field), (field, error)
    return error


def row_counts(server: ServerInThread) -> dict[str, int]:
    tables = (schema.agents, schema.runs, schema.threads, schema.idempotency_keys, schema.orgs)

    async def count() -> dict[str, int]:
        async with server.app.state.store.read() as conn:
            return {t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one() for t in tables}

    return server.call(count())


def assert_unchanged(http: httpx.Client, agent_id: str, before: dict[str, Any]) -> None:
    """The agent reads back as it was. Compared outside pytest's assertion diff: a diff of a
    300-level value would recurse in the test process."""
    now = http.get(f"/v1/agents/{agent_id}").json()
    unchanged = now == before
    assert unchanged, f"agent {agent_id} changed: {json.dumps(now)[:500]}"


def lists_answer(http: httpx.Client) -> None:
    """Whatever was (not) stored, the list endpoints still read every row."""
    for path in ("/v1/agents", "/v1/runs", "/v1/threads"):
        r = http.get(path, params={"limit": 100})
        assert r.status_code == 200, (path, r.text[:500])


def nested(levels: int, kind: str) -> Any:
    """A value with `levels` levels of objects (`{"a": {"a": …}}`) or arrays (`[[…]]`)."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value} if kind == "dict" else [value]
    return value


def finished(http: httpx.Client, run_id: str) -> dict[str, Any]:
    run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30}).json()
    assert run["status"] in TERMINAL, run
    return run


@pytest.fixture(scope="module")
def agent_id(server: ServerInThread) -> str:
    with QuietClient(base_url=server.base_url, headers=server.headers(), timeout=30) as client:
        r = client.post("/v1/agents", json={"name": unique("agent"), "metadata": {"keep": "me"}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def run(server: ServerInThread, agent_id: str) -> dict[str, Any]:
    """A completed run (on a thread, with a user)."""
    with QuietClient(base_url=server.base_url, headers=server.headers(), timeout=40) as client:
        r = client.post("/v1/runs", json={"agent_id": agent_id, "message": "hi", "user_id": "u-strict"})
        assert r.status_code == 201, r.text
        return finished(client, r.json()["id"])


def send(http: httpx.Client, method: str, path: str, agent_id: str, body: Any) -> httpx.Response:
    return http.request(method, path.format(agent=agent_id), json=body)


# 1. JSON nesting depth


DEEP_CASES = {
    "agent-metadata-value": ("POST", "/v1/agents", lambda a, deep: {"name": unique(), "metadata": {"x": deep}},
                             "metadata"),
    "agent-input-schema": ("POST", "/v1/agents", lambda a, deep: {"name": unique(), "input_schema": {"a": deep}},
                           "input_schema"),
    "agent-output-schema": ("POST", "/v1/agents",
                            lambda a, deep: {"name": unique(), "output_schema": {"type": "object", "default": deep}},
                            "output_schema"),
    "agent-script-args": ("POST", "/v1/agents", lambda a, deep: {
        "name": unique(), "metadata": {"script": [{"tool_calls": [{"name": "calculator", "args": {"x": deep}}]}]}},
        "metadata"),
    "run-metadata": ("POST", "/v1/runs", lambda a, deep: {"agent_id": a, "message": "hi", "metadata": {"x": deep}},
                     "metadata"),
    "run-quickstart-metadata": ("POST", "/v1/runs", lambda a, deep: {
        "name": unique(), "instructions": "x", "message": "hi", "metadata": {"x": deep}}, "metadata"),
    "run-script-args": ("POST", "/v1/runs", lambda a, deep: {
        "agent_id": a, "message": "hi",
        "metadata": {"script": [{"tool_calls": [{"name": "calculator", "args": {"x": deep}}]}]}}, "metadata"),
    "thread-metadata": ("POST", "/v1/threads", lambda a, deep: {"metadata": {"x": deep}}, "metadata"),
    "patch-agent-metadata": ("PATCH", "/v1/agents/{agent}", lambda a, deep: {"metadata": {"x": deep}}, "metadata"),
    "patch-agent-output-schema": ("PATCH", "/v1/agents/{agent}", lambda a, deep: {"output_schema": {"a": deep}},
                                  "output_schema"),
}


@pytest.mark.parametrize("levels", [40, 300])
@pytest.mark.parametrize("kind", ["dict", "list"])
@pytest.mark.parametrize("case", list(DEEP_CASES))
def test_json_nested_too_deep_is_422_and_writes_nothing(server, http, agent_id, case, kind, levels):
    method, path, body, field = DEEP_CASES[case]
    agent_before = http.get(f"/v1/agents/{agent_id}").json()
    before = row_counts(server)
    r = send(http, method, path, agent_id, body(agent_id, nested(levels, kind)))
    assert_error(r, 422, field)
    assert row_counts(server) == before
    assert_unchanged(http, agent_id, agent_before)
    lists_answer(http)


@pytest.mark.parametrize("kind", ["dict", "list"])
@pytest.mark.parametrize("path", ["/v1/agents", "/v1/runs", "/v1/threads"])
def test_json_nested_30_levels_is_accepted_and_reads_back(http, agent_id, path, kind):
    metadata = {"x": nested(29, kind)}  # the metadata object plus 29 levels inside it
    body: dict[str, Any] = {"metadata": metadata}
    if path == "/v1/agents":
        body["name"] = unique()
    elif path == "/v1/runs":
        body.update(agent_id=agent_id, message="hi")
    r = http.post(path, json=body)
    assert r.status_code == 201, r.text[:500]
    assert r.json()["metadata"] == metadata
    got = http.get(f"{path}/{r.json()['id']}")
    assert got.status_code == 200, got.text[:500]
    assert got.json()["metadata"] == metadata
    if path == "/v1/runs":
        finished(http, r.json()["id"])
    lists_answer(http)


def test_patch_with_30_levels_is_accepted(http):
    agent = http.post("/v1/agents", json={"name": unique()}).json()
    metadata = {"x": nested(29, "dict")}
    r = http.patch(f"/v1/agents/{agent['id']}", json={"metadata": metadata})
    assert r.status_code == 200, r.text[:500]
    assert http.get(f"/v1/agents/{agent['id']}").json()["metadata"] == metadata


# 2. Non-finite numbers (NaN, Infinity, 1e400) in raw JSON


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
RAW_BODIES = {
    "agent": ("POST", "/v1/agents", '{{"name": "{name}", "metadata": {{"x": {token}}}}}'),
    "agent-nested": ("POST", "/v1/agents", '{{"name": "{name}", "metadata": {{"x": {{"y": [1, {token}]}}}}}}'),
    "run": ("POST", "/v1/runs", '{{"agent_id": "{agent}", "message": "hi", "metadata": {{"x": {token}}}}}'),
    "run-quickstart": ("POST", "/v1/runs",
                       '{{"name": "{name}", "instructions": "x", "message": "hi", "metadata": {{"x": {token}}}}}'),
    "thread": ("POST", "/v1/threads", '{{"metadata": {{"x": {token}}}}}'),
    "patch-agent": ("PATCH", "/v1/agents/{agent}", '{{"metadata": {{"x": {token}}}}}'),
}


@pytest.mark.parametrize("token", NON_FINITE)
@pytest.mark.parametrize("case", list(RAW_BODIES))
def test_non_finite_number_in_metadata_is_422_and_stores_nothing(server, http, agent_id, case, token):
    method, path, template = RAW_BODIES[case]
    raw = template.format(name=unique(), agent=agent_id, token=token).encode()
    agent_before = http.get(f"/v1/agents/{agent_id}").json()
    before = row_counts(server)
    r = http.request(method, path.format(agent=agent_id), content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 422, "metadata")
    assert row_counts(server) == before
    assert_unchanged(http, agent_id, agent_before)
    for listing in ("/v1/runs", "/v1/threads"):
        r = http.get(listing, params={"metadata[x]": "1"})
        assert r.status_code == 200, r.text[:500]
    lists_answer(http)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "1e400"])
def test_non_finite_number_in_an_output_schema_is_422(server, http, token):
    raw = f'{{"name": "{unique()}", "output_schema": {{"type": "number", "maximum": {token}}}}}'.encode()
    before = row_counts(server)
    r = http.post("/v1/agents", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 422, "output_schema")
    assert row_counts(server) == before


# 3. NUL characters


NUL = "a\u0000b"
NUL_CASES = {
    "run-message": ("POST", "/v1/runs", lambda a: {"agent_id": a, "message": NUL}, "message"),
    "run-name": ("POST", "/v1/runs", lambda a: {"name": NUL, "instructions": "x", "message": "hi"}, "name"),
    "run-instructions": ("POST", "/v1/runs", lambda a: {"name": unique(), "instructions": NUL, "message": "hi"},
                         "instructions"),
    "run-user-id": ("POST", "/v1/runs", lambda a: {"agent_id": a, "message": "hi", "user_id": NUL}, "user_id"),
    "run-metadata-value": ("POST", "/v1/runs", lambda a: {"agent_id": a, "message": "hi", "metadata": {"k": NUL}},
                           "metadata"),
    "run-metadata-key": ("POST", "/v1/runs", lambda a: {"agent_id": a, "message": "hi", "metadata": {NUL: "v"}},
                         "metadata"),
    "run-metadata-nested": ("POST", "/v1/runs",
                            lambda a: {"agent_id": a, "message": "hi", "metadata": {"k": [{"j": NUL}]}}, "metadata"),
    "agent-name": ("POST", "/v1/agents", lambda a: {"name": NUL}, "name"),
    "agent-instructions": ("POST", "/v1/agents", lambda a: {"name": unique(), "instructions": NUL}, "instructions"),
    "agent-metadata-value": ("POST", "/v1/agents", lambda a: {"name": unique(), "metadata": {"k": NUL}}, "metadata"),
    "agent-metadata-key": ("POST", "/v1/agents", lambda a: {"name": unique(), "metadata": {NUL: 1}}, "metadata"),
    "thread-user-id": ("POST", "/v1/threads", lambda a: {"user_id": NUL}, "user_id"),
    "thread-metadata-value": ("POST", "/v1/threads", lambda a: {"metadata": {"k": NUL}}, "metadata"),
    "thread-metadata-key": ("POST", "/v1/threads", lambda a: {"metadata": {NUL: "v"}}, "metadata"),
    "patch-agent-name": ("PATCH", "/v1/agents/{agent}", lambda a: {"name": NUL}, "name"),
    "patch-agent-instructions": ("PATCH", "/v1/agents/{agent}", lambda a: {"instructions": NUL}, "instructions"),
    "patch-agent-metadata-key": ("PATCH", "/v1/agents/{agent}", lambda a: {"metadata": {NUL: "v"}}, "metadata"),
}


@pytest.mark.parametrize("case", list(NUL_CASES))
def test_nul_character_is_422_naming_the_field_and_writes_nothing(server, http, agent_id, case):
    method, path, body, field = NUL_CASES[case]
    agent_before = http.get(f"/v1/agents/{agent_id}").json()
    before = row_counts(server)
    assert_error(send(http, method, path, agent_id, body(agent_id)), 422, field)
    assert row_counts(server) == before
    assert_unchanged(http, agent_id, agent_before)
    lists_answer(http)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [("/v1/runs", {"user_id": NUL}, "user_id"), ("/v1/threads", {"user_id": NUL}, "user_id"),
     ("/v1/waits", {"user_id": NUL}, "user_id"), ("/v1/runs", {"metadata[k]": NUL}, None),
     ("/v1/threads", {"metadata[k]": NUL}, None)],
)
def test_nul_character_in_a_query_value_is_422(http, path, params, field):
    assert_error(http.get(path, params=params), 422, field)


@pytest.mark.parametrize("path", ["/v1/runs/run_{nul}", "/v1/agents/agt_{nul}", "/v1/threads/thr_{nul}",
                                  "/v1/users/u{nul}/memories", "/v1/runs/run_{nul}/events"])
def test_nul_character_in_a_path_is_a_4xx(http, path):
    r = http.get(path.format(nul="%00"))
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:500])
    assert r.json()["error"]["message"]


# 4. Integers past 64 bits, and cursors


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [({"after_seq": 2**70}, {}, "after_seq"), ({"after_seq": 2**64}, {}, "after_seq"),
     ({"after_seq": 2**63}, {}, "after_seq"), ({"limit": 2**70}, {}, "limit"),
     ({}, {"Last-Event-ID": "99999999999999999999999"}, "Last-Event-ID"),
     ({}, {"Last-Event-ID": str(2**64)}, "Last-Event-ID"), ({}, {"Last-Event-ID": str(2**63)}, "Last-Event-ID")],
    ids=["after_seq-2^70", "after_seq-2^64", "after_seq-2^63", "limit-2^70", "last-event-id-23-digits",
         "last-event-id-2^64", "last-event-id-2^63"],
)
def test_event_integers_past_64_bits_are_422(http, run, params, headers, field, accept):
    with http.stream("GET", f"/v1/runs/{run['id']}/events", params=params, headers={**headers, "Accept": accept},
                     timeout=httpx.Timeout(10)) as r:
        r.read()
    assert_error(r, 422, field)


def test_after_seq_at_int64_max_is_an_empty_page(http, run):
    r = http.get(f"/v1/runs/{run['id']}/events", params={"after_seq": INT64_MAX})
    assert r.status_code == 200, r.text[:500]
    assert r.json()["data"] == [] and r.json()["has_more"] is False


def test_sse_at_int64_max_on_an_ended_run_closes(http, run):
    started = time.monotonic()
    with http.stream("GET", f"/v1/runs/{run['id']}/events", params={"after_seq": INT64_MAX}, headers=SSE,
                     timeout=httpx.Timeout(10)) as r:
        assert r.status_code == 200, r.read()
        body = r.read()
    assert b"event:" not in body
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [("/v1/runs", {"limit": 2**70}, "limit"), ("/v1/agents", {"limit": 2**70}, "limit"),
     ("/v1/threads", {"limit": 2**70}, "limit"), ("/v1/waits", {"limit": 2**70}, "limit"),
     ("/v1/users/u-strict/memories", {"limit": 2**70}, "limit"), ("/v1/runs", {"limit": -(2**70)}, "limit"),
     ("/v1/runs", {"created_after": 2**70}, "created_after"),
     ("/v1/runs", {"created_before": 2**70}, "created_before")],
)
def test_list_integers_past_64_bits_are_422(http, path, params, field):
    assert_error(http.get(path, params=params), 422, field)


def test_thread_runs_limit_past_64_bits_is_422(http, run):
    assert_error(http.get(f"/v1/threads/{run['thread_id']}/runs", params={"limit": 2**70}), 422, "limit")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS = {
    "garbage": "garbage",
    "digits-200": "9" * 200,
    "digits-201": "9" * 201,
    "huge-int": str(2**200),
    "v1-too-long": _b64(b"v1:" + b"x" * 200),
    "v1-nul": _b64(b"v1:\x00"),
    "v1-id-with-nul": _b64(b"v1:run_\x00\x00\x00"),
    "not-utf8": _b64(b"v1:\xff\xfe"),
}


@pytest.mark.parametrize("cursor", list(BAD_CURSORS))
@pytest.mark.parametrize("path", ["/v1/runs", "/v1/agents", "/v1/threads", "/v1/waits", "/v1/users/u-strict/memories",
                                  "/v1/threads/{thread}/runs"])
def test_garbage_or_huge_cursor_is_a_4xx(http, run, path, cursor):
    for direction in ("before", "after"):
        r = http.get(path.format(thread=run["thread_id"]), params={direction: BAD_CURSORS[cursor]})
        assert_error(r, (400, 422), direction)


# 5. SSE with a cursor past the end of a running run


@pytest.mark.parametrize("how", ["after_seq", "Last-Event-ID"])
def test_sse_past_the_end_closes_when_the_run_completes(http, how):
    agent = http.post("/v1/agents", json={"name": unique(), "metadata": {"script": [{"text": "a", "delay": 1.0}]}})
    assert agent.status_code == 201, agent.text
    created = http.post("/v1/runs", json={"agent_id": agent.json()["id"], "message": "go"})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    params = {"after_seq": 1000} if how == "after_seq" else {}
    headers = {**SSE, **({"Last-Event-ID": "1000"} if how == "Last-Event-ID" else {})}
    started = time.monotonic()
    chunks: list[bytes] = []
    closed = False
    with http.stream("GET", f"/v1/runs/{run_id}/events", params=params, headers=headers,
                     timeout=httpx.Timeout(10, read=12)) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_bytes():
            chunks.append(chunk)
            assert time.monotonic() - started < 12, f"stream still open after 12 s: {b''.join(chunks)[:300]!r}"
        closed = True  # the server ended the response: iter_bytes ran out without us breaking off
    elapsed = time.monotonic() - started
    assert closed and elapsed < 12, elapsed
    assert b"event:" not in b"".join(chunks), b"".join(chunks)[:300]
    # It stayed open while the run ran (the script waits 1 s) and ended because the run ended.
    ended = http.get(f"/v1/runs/{run_id}").json()
    assert ended["status"] == "completed", (ended["status"], ended.get("error"))
    assert elapsed >= 1.0, f"the stream closed after {elapsed:.2f} s, before the scripted 1 s delay ended"


# 6. Unknown query parameters


LIST_ROUTES = ["/v1/runs", "/v1/agents", "/v1/threads", "/v1/waits", "/v1/runs/{run}/events", "/v1/runs/{run}/waits",
               "/v1/threads/{thread}/runs", "/v1/threads/{thread}/messages", "/v1/users/u-strict/memories"]


@pytest.mark.parametrize("param", ["statuss", "limt", "after_id", "x"])
@pytest.mark.parametrize("path", LIST_ROUTES)
def test_unknown_query_parameter_is_422_naming_it(http, run, path, param):
    r = http.get(path.format(run=run["id"], thread=run["thread_id"]), params={param: "running"})
    assert_error(r, 422)
    assert r.json()["error"]["field"] == param, r.json()


def test_unknown_query_parameter_on_an_event_stream_is_422(http, run):
    with http.stream("GET", f"/v1/runs/{run['id']}/events", params={"after_seqq": 3}, headers=SSE,
                     timeout=httpx.Timeout(10)) as r:
        r.read()
    assert_error(r, 422)
    assert r.json()["error"]["field"] == "after_seqq"


def test_unknown_query_parameter_next_to_known_ones_is_422(http):
    r = http.get("/v1/runs", params={"status": "completed", "limit": 5, "statuss": "running"})
    assert_error(r, 422)
    assert r.json()["error"]["field"] == "statuss"


@pytest.mark.parametrize(("path", "param"), [("/v1/agents", "status"), ("/v1/agents", "user_id"),
                                             ("/v1/threads", "status"), ("/v1/waits", "agent_id")])
def test_a_parameter_of_another_endpoint_is_422(http, path, param):
    r = http.get(path, params={param: "x"})
    assert_error(r, 422)
    assert r.json()["error"]["field"] == param


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/threads"])
def test_metadata_filters_stay_allowed(http, run, path):
    r = http.get(path, params={"metadata[colour]": "red", "metadata[size]": "2"})
    assert r.status_code == 200, r.text[:500]
    assert r.json()["data"] == []


def test_metadata_filter_on_an_endpoint_without_them_is_422(http):
    r = http.get("/v1/agents", params={"metadata[colour]": "red"})
    assert_error(r, 422)
    assert r.json()["error"]["field"] == "metadata[colour]"


def test_known_query_parameters_still_work(http, run):
    assert http.get("/v1/runs", params={"status": "completed", "limit": 5}).status_code == 200
    assert http.get("/v1/waits", params={"status": "open", "user_id": "u-strict"}).status_code == 200
    assert http.get("/v1/threads", params={"user_id": "u-strict"}).status_code == 200
    assert http.get(f"/v1/runs/{run['id']}/events", params={"after_seq": 1, "limit": 2}).status_code == 200


# 7. JSON Schemas on agents


class _Counter(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits += 1
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def schema_host() -> Iterator[tuple[str, type[_Counter]]]:
    """An HTTP server on 127.0.0.1 that serves a schema and counts requests (it must see none)."""
    handler = type("Counter", (_Counter,), {"hits": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


BAD_SCHEMAS = {
    "bad-regex": {"type": "string", "pattern": "("},
    "bad-regex-nested": {"type": "object", "properties": {"a": {"type": "string", "pattern": "[a-"}}},
    "bad-regex-pattern-properties": {"type": "object", "patternProperties": {"(?P<": {"type": "string"}}},
    "remote-ref": {"$ref": "http://example.com/schema.json"},
    "remote-ref-nested": {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json#/x"}}},
    "local-host-ref": {"$ref": "{host}/schema.json"},
    "nonsense-type": {"type": "nonsense"},
    "type-list-nonsense": {"type": ["string", "nope"]},
    "required-not-a-list": {"type": "object", "required": "a"},
    "min-length-negative": {"type": "string", "minLength": -1},
}


def _schema(case: str, host: str) -> dict[str, Any]:
    return json.loads(json.dumps(BAD_SCHEMAS[case]).replace("{host}", host))


@pytest.mark.parametrize("field", ["input_schema", "output_schema"])
@pytest.mark.parametrize("case", list(BAD_SCHEMAS))
def test_json_schema_the_server_cannot_check_is_422(server, http, agent_id, schema_host, case, field):
    host, counter = schema_host
    before = row_counts(server)
    agent_before = http.get(f"/v1/agents/{agent_id}").json()
    assert_error(http.post("/v1/agents", json={"name": unique(), field: _schema(case, host)}), 422, field)
    assert_error(http.patch(f"/v1/agents/{agent_id}", json={field: _schema(case, host)}), 422, field)
    assert row_counts(server) == before
    assert_unchanged(http, agent_id, agent_before)
    assert counter.hits == 0, "the server fetched a remote $ref"


GOOD_SCHEMAS = [
    {"type": "object", "properties": {"q": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 20}},
     "required": ["q"], "additionalProperties": False},
    {"$defs": {"word": {"type": "string", "minLength": 1}}, "type": "array", "items": {"$ref": "#/$defs/word"}},
    {"type": ["string", "null"]},
    {},
]


@pytest.mark.parametrize("field", ["input_schema", "output_schema"])
@pytest.mark.parametrize("good", GOOD_SCHEMAS, ids=["object", "local-ref", "type-list", "empty"])
def test_a_normal_json_schema_is_accepted(http, field, good):
    r = http.post("/v1/agents", json={"name": unique(), field: good})
    assert r.status_code == 201, r.text[:500]
    assert http.get(f"/v1/agents/{r.json()['id']}").json()[field] == good
    patched = http.patch(f"/v1/agents/{r.json()['id']}", json={field: good})
    assert patched.status_code == 200, patched.text[:500]


# 8. Bounds of the scripted model, checked at create time


KB = 1024
BAD_SCRIPTS = {
    "repeat-over-10000": [{"text": "a", "repeat": 10_001}],
    "repeat-huge": [{"text": "a", "repeat": 2**70}],
    "repeat-negative": [{"text": "a", "repeat": -1}],
    "delay-over-60": [{"text": "a", "delay": 61}],
    "delay-huge": [{"text": "a", "delay": 1e300}],
    "delay-negative": [{"text": "a", "delay": -1}],
    "101-steps": [{"text": "a"}] * 101,
    "text-times-repeat-over-1mb": [{"text": "x" * KB, "repeat": KB + 1}],
    "chunks-times-repeat-over-1mb": [{"text": ["x" * KB, "y" * KB], "repeat": KB // 2 + 1}],
    "second-step-over-1mb": [{"text": "ok"}, {"text": "x" * KB, "repeat": KB + 1}],
    "text-number": [{"text": 5}],
    "text-object": [{"text": {"a": "b"}}],
    "text-list-with-number": [{"text": ["a", 5]}],
    "second-step-bad-delay": [{"text": "a"}, {"text": "b", "delay": 600}],
}

SCRIPT_TARGETS = {
    "create-agent": ("POST", "/v1/agents", lambda a, script: {"name": unique(), "metadata": {"script": script}}),
    "create-run": ("POST", "/v1/runs", lambda a, script: {
        "agent_id": a, "message": "hi", "metadata": {"script": script}}),
    "quick-start-run": ("POST", "/v1/runs", lambda a, script: {
        "name": unique(), "instructions": "x", "message": "hi", "metadata": {"script": script}}),
    "patch-agent": ("PATCH", "/v1/agents/{agent}", lambda a, script: {"metadata": {"script": script}}),
}


@pytest.mark.parametrize("target", list(SCRIPT_TARGETS))
@pytest.mark.parametrize("case", list(BAD_SCRIPTS))
def test_script_out_of_bounds_is_422_at_create_time(server, http, agent_id, case, target):
    method, path, body = SCRIPT_TARGETS[target]
    agent_before = http.get(f"/v1/agents/{agent_id}").json()
    before = row_counts(server)
    error = assert_error(send(http, method, path, agent_id, body(agent_id, BAD_SCRIPTS[case])), 422)
    assert error["field"].startswith("metadata.script"), error
    assert row_counts(server) == before
    assert_unchanged(http, agent_id, agent_before)


def test_script_field_names_the_step_and_key(http, agent_id):
    script = [{"text": "a"}, {"text": "b", "repeat": 10_001}]
    body = {"agent_id": agent_id, "message": "hi", "metadata": {"script": script}}
    error = assert_error(http.post("/v1/runs", json=body), 422)
    assert error["field"].startswith("metadata.script[1]"), error


@pytest.mark.parametrize(
    "script",
    [[{"text": "a", "repeat": 10_000, "delay": 60}] + [{"text": "b"}] * 99,
     [{"text": "x" * KB, "repeat": KB}],
     [{"text": ["x" * KB, "y" * KB], "repeat": KB // 2}],
     [{"text": "a", "delay": 0}, {"text": ["a", "b"], "repeat": 0}]],
    ids=["100-steps-at-the-bounds", "exactly-1mb", "chunks-exactly-1mb", "zeros"],
)
def test_script_at_the_bounds_is_accepted_on_an_agent(http, script):
    r = http.post("/v1/agents", json={"name": unique(), "metadata": {"script": script}})
    assert r.status_code == 201, r.text[:500]


def test_script_within_bounds_runs(http, agent_id):
    script = [{"text": ["o", "k"], "repeat": 2, "delay": 0.01}]
    body = {"agent_id": agent_id, "message": "hi", "metadata": {"script": script}}
    r = http.post("/v1/runs", json=body)
    assert r.status_code == 201, r.text[:500]
    run = finished(http, r.json()["id"])
    assert (run["status"], run["output"]) == ("completed", "okok"), run.get("error")


# 9. Request header size


@pytest.mark.parametrize("header", ["X-Padding", "Idempotency-Key", "Last-Event-ID"])
def test_64_kb_header_is_a_4xx_and_the_server_keeps_serving(server, http, agent_id, header):
    before = row_counts(server)
    with QuietClient(base_url=server.base_url, headers=server.headers(), timeout=10) as fresh:
        r = fresh.post("/v1/runs", json={"agent_id": agent_id, "message": "hi"}, headers={header: "a" * 64 * KB})
    assert r.status_code in (400, 431), (r.status_code, r.text[:300])
    assert row_counts(server) == before
    with QuietClient(base_url=server.base_url, timeout=10) as fresh:
        assert fresh.get("/healthz").status_code == 200
    lists_answer(http)


def test_64_kb_authorization_header_is_a_4xx(server, http):
    with QuietClient(base_url=server.base_url, timeout=10) as fresh:
        r = fresh.get("/v1/agents", headers={"Authorization": "Bearer " + "k" * 64 * KB})
    assert r.status_code in (400, 401, 431), (r.status_code, r.text[:300])
    lists_answer(http)
