"""Auth and tenancy (issue 2 §9, DESIGN invariant 9).

Every /v1 call needs a valid bearer key (401 otherwise, with the standard error body);
another org's agents, threads and runs look exactly like ids that do not exist (404),
lists only ever show the caller's rows, and keys are stored hashed.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from runyard.store.schema import api_keys

FAKE = {"agent_id": "agt_00000000000000000000000000", "run_id": "run_00000000000000000000000000",
        "thread_id": "thr_00000000000000000000000000", "wait_id": "wait_00000000000000000000000000",
        "user_id": "user-1", "memory_id": "mem_00000000000000000000000000",
        "file_id": "file_00000000000000000000000000", "path": "a.txt",
        "webhook_id": "whk_00000000000000000000000000", "delivery_id": "msg_00000000000000000000000000",
        "version": "1"}


def v1_operations(server) -> list[tuple[str, str]]:
    """(method, path) of every /v1 operation the server's OpenAPI schema lists, ids filled in."""
    schema = httpx.get(f"{server.base_url}/openapi.json").json()
    ops = [(method.upper(), path.format(**FAKE))
           for path, item in schema["paths"].items() if path.startswith("/v1")
           for method in item if method in ("get", "post", "patch", "delete", "put")]
    return ops + [("POST", f"/v1/runs/{FAKE['run_id']}:cancel")]


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, (r.request.method, r.request.url, r.text)
    error = r.json()["error"]
    assert error["code"] == "unauthorized" and error["message"]


@pytest.fixture
def org_b(server):
    """A client for a second org."""
    key = server.create_key(f"org-b-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=server.base_url, headers=server.headers(key), timeout=30) as client:
        yield client


@pytest.fixture
def a_things(http):
    """An agent, a run and its thread in the admin's org (org A)."""
    agent = http.post("/v1/agents", json={"name": f"a-{uuid.uuid4().hex[:8]}", "instructions": "x"}).json()
    r = http.post("/v1/runs", json={"agent_id": agent["id"], "message": "hi", "user_id": "u1"})
    assert r.status_code == 201, r.text
    return {"agent": agent, "run": r.json()}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer ryk_wrong"}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"},
     {"Authorization": "ryk_test_admin_key"}],
    ids=["none", "wrong-key", "empty", "basic", "no-scheme"],
)
def test_every_v1_call_needs_a_valid_key(server, headers):
    ops = v1_operations(server)
    assert len(ops) >= 10
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        for method, path in ops:
            body = {} if method in ("POST", "PATCH") else None
            assert_401(client.request(method, path, json=body))


def test_valid_key_is_accepted(server):
    r = httpx.get(f"{server.base_url}/v1/agents", headers=server.headers())
    assert r.status_code == 200, r.text


def test_another_orgs_agent_is_404(org_b, a_things):
    agent_url = f"/v1/agents/{a_things['agent']['id']}"
    for r in (org_b.get(agent_url), org_b.patch(agent_url, json={"instructions": "mine"}), org_b.delete(agent_url)):
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
    r = org_b.post("/v1/runs", json={"agent_id": a_things["agent"]["id"], "message": "hi"})
    assert r.status_code == 404, r.text


def test_another_orgs_agent_is_untouched(http, org_b, a_things):
    agent = a_things["agent"]
    org_b.patch(f"/v1/agents/{agent['id']}", json={"instructions": "mine"})
    org_b.delete(f"/v1/agents/{agent['id']}")
    assert http.get(f"/v1/agents/{agent['id']}").json() == agent


def test_another_orgs_run_is_404(org_b, a_things):
    run_id = a_things["run"]["id"]
    for r in (
        org_b.get(f"/v1/runs/{run_id}"),
        org_b.get(f"/v1/runs/{run_id}/wait", params={"timeout": 0}),
        org_b.get(f"/v1/runs/{run_id}/events"),
        org_b.get(f"/v1/runs/{run_id}/events", headers={"Accept": "text/event-stream"}),
        org_b.post(f"/v1/runs/{run_id}/cancel"),
        org_b.post(f"/v1/runs/{run_id}:cancel"),
    ):
        assert r.status_code == 404, (r.request.url, r.text)
        assert r.json()["error"]["code"] == "not_found"


def test_another_orgs_thread_is_404(http, org_b, a_things):
    thread_id = a_things["run"]["thread_id"]
    for r in (
        org_b.get(f"/v1/threads/{thread_id}/runs"),
        org_b.post(f"/v1/threads/{thread_id}/runs", json={"name": "b", "instructions": "x", "message": "hi"}),
        org_b.post("/v1/runs", json={"name": "b", "instructions": "x", "message": "hi", "thread_id": thread_id}),
    ):
        assert r.status_code == 404, (r.request.url, r.text)
    runs = http.get(f"/v1/threads/{thread_id}/runs").json()["data"]
    assert [r["id"] for r in runs] == [a_things["run"]["id"]]


def test_lists_are_scoped_to_the_org(org_b, a_things):
    agent, run = a_things["agent"], a_things["run"]
    assert org_b.get("/v1/agents").json()["data"] == []
    assert org_b.get("/v1/runs").json()["data"] == []
    for params in ({"agent_id": agent["id"]}, {"thread_id": run["thread_id"]}, {"user_id": "u1"}):
        assert org_b.get("/v1/runs", params=params).json()["data"] == [], params

    mine = org_b.post("/v1/runs", json={"name": agent["name"], "instructions": "b's own", "message": "hi"})
    assert mine.status_code == 201, mine.text
    assert mine.json()["agent_id"] != agent["id"]
    assert [r["id"] for r in org_b.get("/v1/runs").json()["data"]] == [mine.json()["id"]]
    assert [a["name"] for a in org_b.get("/v1/agents").json()["data"]] == [agent["name"]]


def test_org_a_does_not_see_org_b(http, org_b):
    b_agent = org_b.post("/v1/agents", json={"name": f"b-{uuid.uuid4().hex[:8]}"}).json()
    assert http.get(f"/v1/agents/{b_agent['id']}").status_code == 404
    listed = http.get("/v1/agents", params={"limit": 100}).json()["data"]
    assert b_agent["id"] not in [a["id"] for a in listed]


def test_keys_are_stored_hashed(server):
    key = server.create_key(f"org-h-{uuid.uuid4().hex[:8]}")
    assert httpx.get(f"{server.base_url}/v1/agents", headers=server.headers(key)).status_code == 200

    async def rows():
        async with server.app.state.store.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(api_keys))]

    stored = server.call(rows())
    assert len(stored) >= 2
    for secret in (key, server.api_key):
        for row in stored:
            for value in row.values():
                assert secret not in str(value), f"plain key stored in api_keys: {row}"


def test_idempotency_keys_are_scoped_to_the_org(http, org_b):
    body = {"name": f"idem-{uuid.uuid4().hex[:8]}", "instructions": "x", "message": "hi"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    a_run = http.post("/v1/runs", json=body, headers=key)
    b_run = org_b.post("/v1/runs", json=body, headers=key)
    assert a_run.status_code == b_run.status_code == 201, (a_run.text, b_run.text)
    assert b_run.json()["id"] != a_run.json()["id"]
    assert org_b.get(f"/v1/runs/{b_run.json()['id']}").status_code == 200
