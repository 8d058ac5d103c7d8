"""Agent versions: every change of what an agent runs makes an immutable version; a run executes
the version it was created with, or the one it asks for (`agent_version`, `persona_id`)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from support.runs import create, error_of, events, finished, of_type, until_status

CALC = {"tool_calls": [{"name": "calculator", "args": {"expression": "2*3"}}]}


def agent(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    r = http.post("/v1/agents", json={"name": f"versioned-{uuid.uuid4().hex[:8]}", **fields})
    assert r.status_code == 201, r.text
    return r.json()


def patch(http: httpx.Client, agent_id: str, **fields: Any) -> dict[str, Any]:
    r = http.patch(f"/v1/agents/{agent_id}", json=fields)
    assert r.status_code == 200, r.text
    return r.json()


def test_each_change_of_what_an_agent_runs_makes_a_version(http: httpx.Client) -> None:
    a = agent(http, instructions="Be brief.", tools=["calculator"])
    assert a["version"] == 1
    assert patch(http, a["id"], metadata={"team": "ops"}, name=a["name"] + "-x")["version"] == 1  # not versioned
    assert patch(http, a["id"], instructions="Be thorough.")["version"] == 2
    assert patch(http, a["id"], instructions="Be thorough.")["version"] == 2  # the same value: no change
    assert patch(http, a["id"], tools=[], limits={"max_requests": 3})["version"] == 3

    page = http.get(f"/v1/agents/{a['id']}/versions").json()
    assert [v["version"] for v in page["data"]] == [3, 2, 1] and page["has_more"] is False
    first = http.get(f"/v1/agents/{a['id']}/versions/1").json()
    assert first["object"] == "agent_version" and first["agent_id"] == a["id"]
    assert first["instructions"] == "Be brief." and first["tools"] == ["calculator"] and first["name"] == a["name"]
    assert page["data"][0]["limits"]["max_requests"] == 3 and page["data"][0]["tools"] == []
    older = http.get(f"/v1/agents/{a['id']}/versions", params={"limit": 1, "before": 3}).json()
    assert [v["version"] for v in older["data"]] == [2] and older["has_more"] is True
    assert http.get(f"/v1/agents/{a['id']}/versions/9").status_code == 404


def test_a_run_keeps_executing_its_version_when_the_agent_changes(http: httpx.Client) -> None:
    a = agent(http, tools=["calculator"])
    run = create(http, [{"delay": 1.0, **CALC}, {"text": "six"}], agent_id=a["id"])
    assert run["agent_version"] == 1
    until_status(http, run["id"], "running")
    assert patch(http, a["id"], tools=[])["version"] == 2  # while the run is in its first step
    run = finished(http, run["id"])
    assert run["status"] == "completed" and run["tools"] == ["calculator"] and run["agent_version"] == 1
    [result] = of_type(events(http, run["id"]), "tool.result")
    assert result["result"] in (6, "6")
    assert create(http, agent_id=a["id"])["agent_version"] == 2


def test_a_run_may_ask_for_an_earlier_version_or_a_persona(http: httpx.Client) -> None:
    a = agent(http, instructions="v1", tools=["calculator"])
    patch(http, a["id"], instructions="v2", tools=[])
    old = create(http, agent_id=a["id"], agent_version=1)
    assert old["agent_version"] == 1 and old["tools"] == ["calculator"]
    by_persona = create(http, persona_id=f"{a['name']}@1")
    assert by_persona["agent_id"] == a["id"] and by_persona["agent_version"] == 1
    newest = create(http, persona_id=a["name"])
    assert newest["agent_version"] == 2 and newest["tools"] == []

    for body, status, field in [
        ({"persona_id": f"{a['name']}@9"}, 404, "agent_version"),
        ({"agent_id": a["id"], "agent_version": 7}, 404, "agent_version"),
        ({"persona_id": "nobody-at-all"}, 404, "persona_id"),
        ({"persona_id": f"{a['name']}@one"}, 422, "persona_id"),
        ({"persona_id": f"{a['name']}@1", "agent_version": 2}, 422, "agent_version"),
        ({"agent_id": a["id"], "agent_version": 0}, 422, "agent_version"),
    ]:
        r = http.post("/v1/runs", json={"message": "go", **body})
        assert r.status_code == status, (body, r.text)
        assert error_of(r)["field"] == field, (body, error_of(r))


def test_the_sdk_lists_versions_and_runs_an_earlier_one(server: Any) -> None:
    from runyard import AgentVersion, Runyard

    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        a = client.agents.create(f"sdk-versions-{uuid.uuid4().hex[:8]}", instructions="one", tools=["calculator"])
        client.agents.update(a.id, instructions="two")
        client.agents.update(a.id, instructions="three")
        assert [v.version for v in client.agents.versions(a.id, limit=1)] == [3, 2, 1]  # pages of one
        first = client.agents.version(a.id, 1)
        assert isinstance(first, AgentVersion) and first.instructions == "one"
        run = client.runs.create(persona_id=f"{a.name}@2", message="go")
        assert run.agent_version == 2 and run.agent_id == a.id
