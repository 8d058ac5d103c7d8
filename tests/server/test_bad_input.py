"""Bad input (DESIGN invariant 8, issue 2 §12): a 4xx with `{"error": {code, message, field}}`
naming the field, never a 500, explicit limits, and nothing written on a rejected request."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from runyard.store import schema

MISSING = {"agent": "agt_00000000000000000000000000", "run": "run_00000000000000000000000000",
           "thread": "thr_00000000000000000000000000"}


def unique(prefix: str = "bad") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_error(r: httpx.Response, status: int, field: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, (r.request.method, r.request.url, r.text)
    error = r.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:  # "tools" or a path inside it, such as "tools[0]"
        assert error["field"] == field or error["field"].startswith((field + ".", field + "[")), error
    if code is not None:
        assert error["code"] == code, error
    return error


def row_counts(server) -> dict[str, int]:
    tables = (schema.agents, schema.runs, schema.threads, schema.idempotency_keys, schema.orgs)

    async def count():
        async with server.app.state.store.read() as conn:
            return {t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one() for t in tables}

    return server.call(count())


@pytest.fixture(scope="module")
def agent_id(server) -> str:
    r = httpx.post(f"{server.base_url}/v1/agents", json={"name": unique("agent")}, headers=server.headers())
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def run(server, agent_id) -> dict:
    r = httpx.post(f"{server.base_url}/v1/runs", json={"agent_id": agent_id, "message": "hi"}, headers=server.headers())
    assert r.status_code == 201, r.text
    return r.json()


# Malformed bodies


@pytest.mark.parametrize("raw", [b"{", b'{"message": "hi",}', b"{'message': 'hi'}", b"nope", b'{"message": "hi"} x'])
@pytest.mark.parametrize("path", ["/v1/runs", "/v1/agents"])
def test_malformed_json_is_400(http, raw, path):
    r = http.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, code="invalid_json")


def test_malformed_json_on_patch_is_400(http, agent_id):
    r = http.patch(f"/v1/agents/{agent_id}", content=b'{"name":', headers={"Content-Type": "application/json"})
    assert_error(r, 400, code="invalid_json")


def test_body_that_is_not_utf8_is_400(http):
    """JSON text must be UTF-8 (RFC 8259): other bytes are malformed JSON like any syntax error."""
    r = http.post("/v1/runs", content=b'{"message": "\xff\xfe"}', headers={"Content-Type": "application/json"})
    assert_error(r, 400, code="invalid_json")


@pytest.mark.parametrize("body", [[], "hi", 3, None])
def test_body_that_is_not_an_object_is_422(http, body):
    assert_error(http.post("/v1/runs", json=body), 422)


# Wrong types and unknown fields


@pytest.mark.parametrize(
    ("field", "value"),
    [("message", 5), ("message", ""), ("message", None), ("agent_id", ["a"]), ("tools", "calculator"), ("tools", [1]),
     ("metadata", []), ("metadata", "x"), ("stream", "maybe"), ("user_id", 7), ("thread_id", {}), ("model", "")],
)
def test_run_field_of_wrong_type_is_422(http, agent_id, field, value):
    body = {"agent_id": agent_id, "message": "hi", field: value}
    assert_error(http.post("/v1/runs", json=body), 422, field)


def test_run_without_message_is_422(http, agent_id):
    assert_error(http.post("/v1/runs", json={"agent_id": agent_id}), 422, "message")


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", 5), ("name", ""), ("instructions", 7), ("tools", [1]), ("tools", "calculator"), ("metadata", "x"),
     ("input_schema", "string"), ("output_schema", [1]), ("model", ["scripted"]), ("input_description", {})],
)
def test_agent_field_of_wrong_type_is_422(http, field, value):
    body = {"name": unique(), field: value}
    assert_error(http.post("/v1/agents", json=body), 422, field)


def test_unknown_fields_are_422(http, agent_id):
    assert_error(http.post("/v1/runs", json={"agent_id": agent_id, "message": "hi", "colour": "red"}), 422, "colour")
    assert_error(http.post("/v1/agents", json={"name": unique(), "temperature": 0.2}), 422, "temperature")
    assert_error(http.patch(f"/v1/agents/{agent_id}", json={"id": "agt_x"}), 422, "id")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 101}, "limit"), ({"limit": 0}, "limit"), ({"limit": "ten"}, "limit"), ({"status": "sleepy"}, "status"),
     ({"created_after": "yesterday"}, "created_after"), ({"created_before": "2024-13-45"}, "created_before")],
)
def test_bad_list_query_is_422(http, params, field):
    assert_error(http.get("/v1/runs", params=params), 422, field)


def test_bad_wait_and_events_query_is_422(http, run):
    assert_error(http.get(f"/v1/runs/{run['id']}/wait", params={"timeout": 61}), 422, "timeout")
    assert_error(http.get(f"/v1/runs/{run['id']}/wait", params={"timeout": "soon"}), 422, "timeout")
    assert_error(http.get(f"/v1/runs/{run['id']}/events", params={"after_seq": -1}), 422, "after_seq")
    assert_error(http.get(f"/v1/runs/{run['id']}/events", params={"limit": 1001}), 422, "limit")


# Cursors and Last-Event-ID


@pytest.mark.parametrize("cursor", ["garbage", "%%%", "bm90LWEtY3Vyc29y"])
@pytest.mark.parametrize("path", ["/v1/runs", "/v1/agents"])
def test_bad_cursor_is_400(http, path, cursor):
    assert_error(http.get(path, params={"before": cursor}), 400, "before")
    assert_error(http.get(path, params={"after": cursor}), 400, "after")


def test_bad_cursor_on_thread_runs_is_400(http, run):
    assert_error(http.get(f"/v1/threads/{run['thread_id']}/runs", params={"before": "garbage"}), 400, "before")


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
def test_non_numeric_last_event_id_is_422(http, run, accept):
    r = http.get(f"/v1/runs/{run['id']}/events", headers={"Last-Event-ID": "abc", "Accept": accept})
    assert_error(r, 422, "Last-Event-ID")


# Limits


def test_message_over_32_kb_of_utf8_is_413(http, agent_id):
    message = "é" * (16 * 1024 + 1)  # 16,385 characters, 32,770 bytes
    error = assert_error(http.post("/v1/runs", json={"agent_id": agent_id, "message": message}), 413, "message")
    assert "32 KB" in error["message"]


def test_message_of_exactly_32_kb_is_accepted(http, agent_id):
    r = http.post("/v1/runs", json={"agent_id": agent_id, "message": "a" * 32 * 1024})
    assert r.status_code == 201, r.text


def test_metadata_over_16_kb_is_413(http, agent_id):
    body = {"agent_id": agent_id, "message": "hi", "metadata": {"blob": "x" * 16 * 1024}}
    error = assert_error(http.post("/v1/runs", json=body), 413, "metadata")
    assert "16 KB" in error["message"]


def test_body_over_1_mb_is_413(http, agent_id):
    body = json.dumps({"agent_id": agent_id, "message": "hi"}).encode() + b" " * (1024 * 1024)
    r = http.post("/v1/runs", content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 413, code="payload_too_large")


def test_body_over_1_mb_without_content_length_is_413(http, agent_id):
    """The limit must hold for a chunked body too, not only when Content-Length announces it."""
    body = json.dumps({"agent_id": agent_id, "message": "hi"}).encode() + b" " * (1024 * 1024)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    r = http.post("/v1/runs", content=chunks, headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, code="payload_too_large")


# Unknown ids


def test_unknown_ids_are_404(http, agent_id):
    for r in (
        http.get(f"/v1/agents/{MISSING['agent']}"),
        http.patch(f"/v1/agents/{MISSING['agent']}", json={"instructions": "x"}),
        http.delete(f"/v1/agents/{MISSING['agent']}"),
        http.get(f"/v1/runs/{MISSING['run']}"),
        http.get(f"/v1/runs/{MISSING['run']}/wait", params={"timeout": 0}),
        http.get(f"/v1/runs/{MISSING['run']}/events"),
        http.get(f"/v1/runs/{MISSING['run']}/events", headers={"Accept": "text/event-stream"}),
        http.post(f"/v1/runs/{MISSING['run']}/cancel"),
        http.post(f"/v1/runs/{MISSING['run']}:cancel"),
        http.get(f"/v1/threads/{MISSING['thread']}/runs"),
        http.post(f"/v1/threads/{MISSING['thread']}/runs", json={"agent_id": agent_id, "message": "hi"}),
        http.post("/v1/runs", json={"agent_id": MISSING["agent"], "message": "hi"}),
        http.post("/v1/runs", json={"agent_id": agent_id, "message": "hi", "thread_id": MISSING["thread"]}),
        http.get("/v1/runs/not-even-an-id"),
    ):
        error = assert_error(r, 404, code="not_found")
        assert "not found" in error["message"]


def test_unknown_id_is_named_in_the_message(http):
    error = assert_error(http.get(f"/v1/runs/{MISSING['run']}"), 404)
    assert MISSING["run"] in error["message"]


# Nothing is written


def test_rejected_requests_write_nothing(server, http, agent_id, run):
    key = unique("idem")
    first = http.post("/v1/runs", json={"agent_id": agent_id, "message": "once"}, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    new_agent = unique("never")
    quick = {"name": new_agent, "instructions": "x", "message": "hi"}
    before = row_counts(server)

    rejected = [
        (http.post("/v1/runs", json={**quick, "thread_id": MISSING["thread"]}), 404),
        (http.post(f"/v1/threads/{MISSING['thread']}/runs", json=quick), 404),
        (http.post("/v1/runs", json={**quick, "stream": True, "thread_id": MISSING["thread"]}), 404),
        (http.post("/v1/runs", json={**quick, "message": "a" * (32 * 1024 + 1)}), 413),
        (http.post("/v1/runs", json={**quick, "metadata": {"x": "y" * 17_000}}), 413),
        (http.post("/v1/runs", json={**quick, "tools": ["no_such_tool"]}), 422),
        (http.post("/v1/runs", json={**quick, "model": "no-such-model"}), 422),
        (http.post("/v1/runs", json={**quick, "metadata": {"script": "not a list"}}), 422),
        (http.post("/v1/runs", json={"name": new_agent, "message": "hi"}), 422),
        (http.post("/v1/runs", json={**quick, "colour": "red"}, headers={"Idempotency-Key": unique()}), 422),
        (http.post("/v1/runs", content=b'{"message": ', headers={"Content-Type": "application/json"}), 400),
        (http.post("/v1/runs", json={"agent_id": agent_id, "message": "other"}, headers={"Idempotency-Key": key}), 409),
        (http.post("/v1/agents", json={"name": new_agent, "output_schema": {"type": 12}}), 422),
        (http.post("/v1/agents", json={"name": new_agent, "tools": ["nope"]}), 422),
        (http.patch(f"/v1/agents/{agent_id}", json={"model": "no-such-model"}), 422),
        (http.post(f"/v1/runs/{run['id']}/events"), 405),
        (httpx.post(f"{server.base_url}/v1/runs", json=quick, headers={"Authorization": "Bearer nope"}), 401),
    ]
    for r, status in rejected:
        assert_error(r, status)
    assert row_counts(server) == before
    assert http.get(f"/v1/agents/{agent_id}").json()["model"] == "scripted"


def test_rejected_requests_never_500(http, agent_id):
    """A grab bag of odd requests: every answer is a 4xx with the error envelope."""
    odd = [
        http.post("/v1/runs", content=b'{"message": "hi"}', headers={"Content-Type": "text/plain"}),
        http.post("/v1/runs", content=b"", headers={"Content-Type": "application/json"}),
        http.post("/v1/runs", json={"agent_id": "x" * 41, "message": "hi"}),
        http.post("/v1/runs", json={"agent_id": agent_id, "message": "hi", "metadata": {"script": [1]}}),
        http.post("/v1/runs", json={"agent_id": agent_id, "message": "hi", "metadata": {"script": [{"bogus": 1}]}}),
        http.post("/v1/runs", json={"agent_id": agent_id, "message": "hi"}, headers={"Idempotency-Key": ""}),
        http.get("/v1/runs", params={"metadata[]": "x"}),
        http.get(f"/v1/runs/{MISSING['run']}/events", headers={"Last-Event-ID": "9" * 25}),
        http.patch(f"/v1/agents/{agent_id}", json={"tools": None}),
        http.patch(f"/v1/agents/{agent_id}", json={"metadata": None}),
    ]
    for r in odd:
        assert 400 <= r.status_code < 500, (r.request.method, r.request.url, r.text)
        assert r.json()["error"]["message"]
