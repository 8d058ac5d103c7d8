"""Input variables: an agent's `input_schema` checks a run's `variables`, its `message_template`
(Jinja2, sandboxed, strict) renders them into the task; `output_schema` may be set per run."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from support.runs import create, error_of, finished

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"],
    "additionalProperties": False,
}


def agent(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    r = http.post("/v1/agents", json={"name": f"var-{uuid.uuid4().hex[:10]}", **fields})
    assert r.status_code == 201, r.text
    return r.json()


def run_count(http: httpx.Client, agent_id: str) -> int:
    return len(http.get("/v1/runs", params={"agent_id": agent_id, "limit": 100}).json()["data"])


def test_variables_render_the_task_and_are_kept(http: httpx.Client) -> None:
    a = agent(http, input_schema=SCHEMA,
              message_template="Forecast for {{ city }}{% if days %} over {{ days }} days{% endif %}.")
    assert a["message_template"].startswith("Forecast")
    run = http.post("/v1/runs", json={"agent_id": a["id"], "variables": {"city": "Oslo", "days": 3}}).json()
    assert run["original_prompt"] == "Forecast for Oslo over 3 days."
    assert run["variables"] == {"city": "Oslo", "days": 3}
    done = finished(http, run["id"])
    assert done["output"] == "You said: Forecast for Oslo over 3 days."  # the scripted model echoes its task
    assert http.get(f"/v1/runs/{run['id']}").json()["variables"] == {"city": "Oslo", "days": 3}


def test_the_template_may_use_the_message_too(http: httpx.Client) -> None:
    a = agent(http, message_template="{{ message }} (city: {{ city }})")
    run = http.post("/v1/runs", json={"agent_id": a["id"], "message": "Pack for a trip",
                                      "variables": {"city": "Rome"}}).json()
    assert run["original_prompt"] == "Pack for a trip (city: Rome)"


@pytest.mark.parametrize(("variables", "field"), [
    ({"city": 5}, "variables.city"),
    ({"city": "Oslo", "days": 0}, "variables.days"),
    ({"days": 2}, "variables"),
    ({"city": "Oslo", "extra": 1}, "variables"),
])
def test_variables_outside_the_schema_are_422_with_their_path_and_write_nothing(
    http: httpx.Client, variables: dict[str, Any], field: str
) -> None:
    a = agent(http, input_schema=SCHEMA, message_template="{{ city }}")
    r = http.post("/v1/runs", json={"agent_id": a["id"], "variables": variables})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field
    assert run_count(http, a["id"]) == 0


def test_a_template_variable_not_given_is_422(http: httpx.Client) -> None:
    a = agent(http, message_template="Hello {{ name }}")
    r = http.post("/v1/runs", json={"agent_id": a["id"], "variables": {}})
    assert r.status_code == 422 and error_of(r)["field"] == "variables"
    assert "name" in error_of(r)["message"]
    assert run_count(http, a["id"]) == 0


def test_a_template_using_message_needs_one(http: httpx.Client) -> None:
    a = agent(http, message_template="{{ message }} in {{ city }}")
    r = http.post("/v1/runs", json={"agent_id": a["id"], "variables": {"city": "Oslo"}})
    assert r.status_code == 422 and "message" in error_of(r)["message"]
    assert run_count(http, a["id"]) == 0


def test_message_is_required_without_a_template(http: httpx.Client) -> None:
    a = agent(http)
    r = http.post("/v1/runs", json={"agent_id": a["id"]})
    assert r.status_code == 422 and error_of(r)["field"] == "message"


def test_a_template_that_does_not_parse_is_refused_when_saved(http: httpx.Client) -> None:
    r = http.post("/v1/agents", json={"name": f"var-{uuid.uuid4().hex[:8]}", "message_template": "{{ city "})
    assert r.status_code == 422 and error_of(r)["field"] == "message_template"
    a = agent(http, message_template="{{ city }}")
    r = http.patch(f"/v1/agents/{a['id']}", json={"message_template": "{% for %}"})
    assert r.status_code == 422 and error_of(r)["field"] == "message_template"
    assert http.get(f"/v1/agents/{a['id']}").json()["message_template"] == "{{ city }}"


def test_the_sandbox_refuses_reaching_into_python(http: httpx.Client) -> None:
    a = agent(http, message_template="{{ city.__class__.__mro__[1].__subclasses__() }}")
    r = http.post("/v1/runs", json={"agent_id": a["id"], "variables": {"city": "x"}})
    assert r.status_code == 422, r.text
    assert run_count(http, a["id"]) == 0


def test_output_schema_per_run_makes_the_output_a_validated_object(http: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    script = [{"tool_calls": [{"name": "final_result", "args": {"answer": "x"}}]},
              {"tool_calls": [{"name": "final_result", "args": {"answer": 42}}]}]
    run = create(http, script, output_schema=schema)
    assert run["output_schema"] == schema
    done = finished(http, run["id"])
    assert done["status"] == "completed", done
    assert done["output"] == {"answer": 42}
    r = http.post("/v1/runs", json={"name": "v-bad", "instructions": "x", "message": "m",
                                    "output_schema": {"type": "nope"}})
    assert r.status_code == 422 and error_of(r)["field"] == "output_schema"
