"""Agents over HTTP (issue 2 §2): create, read, update, delete, and the paginated list.

Every test talks to the real server. Tests that look at a whole list use a fresh org
(`server.create_key`), so other tests' agents never show up in it.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest


def unique(prefix: str = "agent") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create(client: httpx.Client, **fields) -> dict:
    fields.setdefault("name", unique())
    r = client.post("/v1/agents", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def assert_error(r: httpx.Response, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert error["field"] == field, error
    return error


def parse_utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timezone.utc.utcoffset(None), value
    return parsed


@pytest.fixture
def org_client(server):
    """A client for a brand-new org: its lists hold only what the test creates."""
    key = server.create_key(unique("org"))
    with httpx.Client(base_url=server.base_url, headers=server.headers(key), timeout=30) as client:
        yield client


def test_create_returns_every_field(http):
    schema = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}
    body = {
        "name": unique(),
        "instructions": "Summarise the topic.",
        "model": "scripted",
        "tools": ["calculator", "current_time"],
        "input_description": "a topic",
        "output_description": "a summary",
        "input_schema": schema,
        "output_schema": {"type": "object", "properties": {"summary": {"type": "string"}}},
        "metadata": {"team": "docs", "n": 3},
    }
    agent = create(http, **body)
    assert agent["id"].startswith("agt_")
    for field, value in body.items():
        assert agent[field] == value, field
    created, updated = parse_utc(agent["created_at"]), parse_utc(agent["updated_at"])
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 60
    assert updated >= created


def test_defaults(http):
    agent = create(http)
    assert agent["model"] == "scripted"
    assert agent["tools"] == []
    assert agent["instructions"] == ""
    assert agent["metadata"] == {}
    assert agent["input_schema"] is None and agent["output_schema"] is None


def test_get_returns_the_created_agent(http):
    agent = create(http, instructions="hello")
    r = http.get(f"/v1/agents/{agent['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == agent


def test_name_is_unique_per_org(http, server):
    agent = create(http)
    assert_error(http.post("/v1/agents", json={"name": agent["name"]}), 409, "name")
    other = server.create_key(unique("org"))
    r = httpx.post(f"{server.base_url}/v1/agents", json={"name": agent["name"]}, headers=server.headers(other))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("model", ["no-such-model", "testing", "function", "gpt-4o"])
def test_unknown_model_is_rejected(http, model):
    """Models a run could never resolve are refused on write, not discovered as a failed run later."""
    name = unique()
    assert_error(http.post("/v1/agents", json={"name": name, "model": model}), 422, "model")
    create(http, name=name)  # the rejected request wrote nothing under that name


def test_unknown_tool_is_rejected(http):
    error = assert_error(http.post("/v1/agents", json={"name": unique(), "tools": ["calculator", "rm_rf"]}), 422, "tools")
    assert "rm_rf" in error["message"]


@pytest.mark.parametrize("field", ["input_schema", "output_schema"])
def test_invalid_json_schema_is_rejected(http, field):
    error = assert_error(http.post("/v1/agents", json={"name": unique(), field: {"type": 12}}), 422, field)
    assert "schema" in error["message"].lower()


def test_patch_changes_given_fields_and_updated_at(http):
    agent = create(http, instructions="v1", metadata={"a": 1})
    time.sleep(0.01)
    r = http.patch(f"/v1/agents/{agent['id']}", json={"instructions": "v2", "tools": ["calculator"]})
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["instructions"] == "v2"
    assert patched["tools"] == ["calculator"]
    assert patched["name"] == agent["name"] and patched["metadata"] == {"a": 1}
    assert patched["created_at"] == agent["created_at"]
    assert parse_utc(patched["updated_at"]) > parse_utc(agent["updated_at"])
    assert http.get(f"/v1/agents/{agent['id']}").json() == patched


def test_patch_validates_like_create(http):
    agent = create(http)
    other = create(http)
    url = f"/v1/agents/{agent['id']}"
    assert_error(http.patch(url, json={"name": other["name"]}), 409, "name")
    assert_error(http.patch(url, json={"model": "no-such-model"}), 422, "model")
    assert_error(http.patch(url, json={"tools": ["nope"]}), 422, "tools")
    assert_error(http.patch(url, json={"output_schema": {"type": 12}}), 422, "output_schema")
    assert_error(http.patch(url, json={"name": None}), 422, "name")
    assert http.get(url).json() == agent


def test_delete_then_404(http):
    agent = create(http)
    url = f"/v1/agents/{agent['id']}"
    r = http.delete(url)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == agent["id"] and r.json()["deleted"] is True
    assert_error(http.get(url), 404)
    assert_error(http.patch(url, json={"instructions": "x"}), 404)
    assert_error(http.delete(url), 404)
    # The name is free again.
    create(http, name=agent["name"])


def test_list_pages_newest_first(org_client):
    made = [create(org_client) for _ in range(5)]
    newest_first = [a["id"] for a in reversed(made)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"before": cursor} if cursor else {})
        r = org_client.get("/v1/agents", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        assert len(page["data"]) <= 2
        seen += [a["id"] for a in page["data"]]
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == newest_first
    assert pages == 3


def test_list_after_goes_to_newer_items(org_client):
    made = [create(org_client)["id"] for _ in range(5)]
    first = org_client.get("/v1/agents", params={"limit": 4}).json()
    assert [a["id"] for a in first["data"]] == made[:0:-1]
    cursor = first["next_cursor"]  # points at made[1]

    newer = org_client.get("/v1/agents", params={"limit": 2, "after": cursor}).json()
    assert [a["id"] for a in newer["data"]] == [made[3], made[2]]
    assert newer["has_more"] is True
    rest = org_client.get("/v1/agents", params={"limit": 2, "after": newer["next_cursor"]}).json()
    assert [a["id"] for a in rest["data"]] == [made[4]]
    assert rest["has_more"] is False and rest["next_cursor"] is None


def test_list_default_page_and_limit_bounds(org_client):
    assert org_client.get("/v1/agents").json() == {"data": [], "has_more": False, "next_cursor": None}
    assert_error(org_client.get("/v1/agents", params={"limit": 101}), 422, "limit")
    assert_error(org_client.get("/v1/agents", params={"limit": 0}), 422, "limit")


@pytest.mark.parametrize("param", ["before", "after"])
def test_list_bad_cursor_is_400(http, param):
    assert_error(http.get("/v1/agents", params={param: "not-a-cursor"}), 400, param)
