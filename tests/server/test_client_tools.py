"""Tools the caller executes (`client_tools`, OpenAI's `requires_action`), over HTTP.

When the model calls one, the run emits `tool.call`, opens a `tool_result` wait and releases its
worker (`waiting`, `waiting_for: "tool_result"`); `POST /v1/runs/{id}/tool_results` resumes it.
Outputs are checked against the tool's `output_schema`; posting is idempotent like every wait.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from support.runs import create, error_of, events, finished, of_type, tool_returns, types, until_status
from support.servers import ServerInThread

LOOKUP = {
    "name": "lookup_order",
    "description": "Find an order by its id.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    "output_schema": {
        "type": "object",
        "properties": {"status": {"type": "string"}, "total": {"type": "number"}},
        "required": ["status"],
    },
}


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "args": args}]}


def waiting_run(http: httpx.Client, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    run = create(http, [call("lookup_order", order_id="A1"), {"text": "done"}], client_tools=[LOOKUP], **body)
    run = until_status(http, run["id"], "waiting")
    [wait] = [w for w in http.get(f"/v1/runs/{run['id']}/waits").json()["data"] if w["status"] == "open"]
    return run, wait


def test_a_client_tool_call_waits_for_the_caller_and_its_output_resumes_the_run(http: httpx.Client) -> None:
    run, wait = waiting_run(http)
    assert run["waiting_for"] == "tool_result"
    assert wait["kind"] == "tool_result"
    assert wait["request"] == {"tool_call_id": wait["tool_call_id"], "name": "lookup_order", "args": {"order_id": "A1"}}
    log = events(http, run["id"])
    assert of_type(log, "tool.call") == [wait["request"]]
    [declared] = of_type(log, "tools.declared")
    [entry] = [t for t in declared["tools"] if t["name"] == "lookup_order"]
    assert entry["client"] is True and entry["parameters"] == LOOKUP["parameters"]
    [paused] = of_type(log, "run.waiting")
    assert paused["waiting_for"] == "tool_result" and paused["waits"][0]["id"] == wait["id"]

    output = {"status": "shipped", "total": 12.5}
    r = http.post(f"/v1/runs/{run['id']}/tool_results",
                  json={"results": [{"tool_call_id": wait["tool_call_id"], "output": output}]})
    assert r.status_code == 200, r.text
    done = finished(http, run["id"])
    assert done["status"] == "completed" and done["output"] == "done"
    log = events(http, run["id"])
    assert {"tool_call_id": wait["tool_call_id"], "name": "lookup_order", "result": output} in of_type(
        log, "tool.result"
    )
    assert types(log).index("run.input_received") < types(log).index("tool.result")
    # The model saw the caller's output as the tool's return.
    [returned] = tool_returns(http, done, "lookup_order")
    assert (json.loads(returned) if isinstance(returned, str) else returned) == output


def test_a_posted_error_is_the_tools_error_and_the_run_goes_on(http: httpx.Client) -> None:
    run, wait = waiting_run(http)
    r = http.post(f"/v1/runs/{run['id']}/tool_results",
                  json={"results": [{"tool_call_id": wait["tool_call_id"], "error": "database is down"}]})
    assert r.status_code == 200, r.text
    done = finished(http, run["id"])
    assert done["status"] == "completed"
    [error] = [e for e in of_type(events(http, run["id"]), "tool.error") if e.get("tool_call_id")]
    assert error["name"] == "lookup_order" and "database is down" in str(error["error"])


def test_an_output_outside_the_schema_is_422_naming_its_path_and_changes_nothing(http: httpx.Client) -> None:
    run, wait = waiting_run(http)
    before = http.get(f"/v1/runs/{run['id']}").json()["last_seq"]
    r = http.post(f"/v1/runs/{run['id']}/tool_results",
                  json={"results": [{"tool_call_id": wait["tool_call_id"], "output": {"status": 7}}]})
    assert r.status_code == 422
    assert error_of(r)["field"] == "results[0].output.status"
    after = http.get(f"/v1/runs/{run['id']}").json()
    assert after["status"] == "waiting" and after["last_seq"] == before
    for body in ({"results": [{"tool_call_id": wait["tool_call_id"]}]},
                 {"results": [{"tool_call_id": wait["tool_call_id"], "output": {}, "error": "x"}]},
                 {"results": []}):
        assert http.post(f"/v1/runs/{run['id']}/tool_results", json=body).status_code == 422
    assert http.get(f"/v1/runs/{run['id']}").json()["last_seq"] == before


def test_posting_is_idempotent_and_a_conflicting_result_is_409(http: httpx.Client) -> None:
    run, wait = waiting_run(http)
    body = {"results": [{"tool_call_id": wait["tool_call_id"], "output": {"status": "open"}}]}
    assert http.post(f"/v1/runs/{run['id']}/tool_results", json=body).status_code == 200
    assert http.post(f"/v1/runs/{run['id']}/tool_results", json=body).status_code == 200
    finished(http, run["id"])
    assert http.post(f"/v1/runs/{run['id']}/tool_results", json=body).status_code == 200
    other = {"results": [{"tool_call_id": wait["tool_call_id"], "output": {"status": "lost"}}]}
    r = http.post(f"/v1/runs/{run['id']}/tool_results", json=other)
    assert r.status_code == 409, r.text
    assert len(of_type(events(http, run["id"]), "run.input_received")) == 1


def test_an_unknown_call_is_404_and_a_run_not_waiting_for_results_is_409(http: httpx.Client) -> None:
    run, wait = waiting_run(http)
    r = http.post(f"/v1/runs/{run['id']}/tool_results", json={"results": [{"tool_call_id": "nope", "output": 1}]})
    assert r.status_code == 404 and error_of(r)["field"] == "results[0].tool_call_id"
    plain = finished(http, create(http, [{"text": "hi"}])["id"])
    r = http.post(f"/v1/runs/{plain['id']}/tool_results", json={"results": [{"tool_call_id": "x", "output": 1}]})
    assert r.status_code == 409, r.text


def test_free_text_input_answers_a_tool_result_wait_as_its_output(http: httpx.Client) -> None:
    run = create(http, [call("lookup_order", order_id="A1"), {"text": "done"}],
                 client_tools=[{k: v for k, v in LOOKUP.items() if k != "output_schema"}])
    until_status(http, run["id"], "waiting")
    assert http.post(f"/v1/runs/{run['id']}/input", json={"content": "shipped"}).status_code == 200
    done = finished(http, run["id"])
    assert [r["result"] for r in of_type(events(http, run["id"]), "tool.result")] == ["shipped"]
    assert tool_returns(http, done, "lookup_order") == ["shipped"]


def test_a_reply_keeps_the_runs_client_tools_and_calls_count_in_usage(http: httpx.Client) -> None:
    import uuid

    # The script lives on the agent, so the reply (a new run of it) follows it too.
    script = [call("lookup_order", order_id="A1"), {"text": "done"}]
    agent = http.post("/v1/agents", json={"name": f"ct-{uuid.uuid4().hex[:8]}", "metadata": {"script": script}})
    run = create(http, agent_id=agent.json()["id"], client_tools=[LOOKUP])
    run = until_status(http, run["id"], "waiting")
    [wait] = http.get(f"/v1/runs/{run['id']}/waits").json()["data"]
    assert wait["id"] in [w["id"] for w in http.get(
        "/v1/waits", params={"status": "open"}).json()["data"]]
    assert run["id"] in [r["id"] for r in http.get("/v1/runs", params={"status": "waiting_for_input",
                                                                         "limit": 100}).json()["data"]]
    http.post(f"/v1/runs/{run['id']}/tool_results",
              json={"results": [{"tool_call_id": wait["tool_call_id"], "output": {"status": "a"}}]})
    done = finished(http, run["id"])
    assert done["usage"]["tool_calls"] == 1
    r = http.post(f"/v1/runs/{run['id']}/reply", json={"message": "again"})
    assert r.status_code == 201, r.text
    # The reply follows the same script from its start: it calls lookup_order again, a client tool still.
    follow = until_status(http, r.json()["id"], "waiting")
    assert follow["waiting_for"] == "tool_result"


def test_two_calls_at_once_resume_only_when_both_results_are_in(http: httpx.Client) -> None:
    step = {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A"}},
                           {"name": "lookup_order", "args": {"order_id": "B"}}]}
    run = create(http, [step, {"text": "done"}], client_tools=[LOOKUP])
    until_status(http, run["id"], "waiting")
    waits = [w for w in http.get(f"/v1/runs/{run['id']}/waits").json()["data"] if w["status"] == "open"]
    assert sorted(w["request"]["args"]["order_id"] for w in waits) == ["A", "B"]
    first, second = waits
    http.post(f"/v1/runs/{run['id']}/tool_results",
              json={"results": [{"tool_call_id": first["tool_call_id"], "output": {"status": "a"}}]})
    assert http.get(f"/v1/runs/{run['id']}").json()["status"] == "waiting"
    http.post(f"/v1/runs/{run['id']}/tool_results",
              json={"results": [{"tool_call_id": second["tool_call_id"], "output": {"status": "b"}}]})
    assert finished(http, run["id"])["status"] == "completed"


def test_a_client_tool_beside_a_built_in_in_one_step_gets_its_result_to_the_model(http: httpx.Client) -> None:
    # The built-in's result is saved after the response; the client call is still the pending one.
    step = {"tool_calls": [{"name": "calculator", "args": {"expression": "2+2"}},
                           {"name": "lookup_order", "args": {"order_id": "B2"}}]}
    run = create(http, [step, {"text": "done"}], client_tools=[LOOKUP], tools=["calculator"])
    until_status(http, run["id"], "waiting")
    [wait] = http.get(f"/v1/runs/{run['id']}/waits").json()["data"]
    assert wait["request"]["name"] == "lookup_order"
    http.post(f"/v1/runs/{run['id']}/tool_results",
              json={"results": [{"tool_call_id": wait["tool_call_id"], "output": {"status": "late"}}]})
    done = finished(http, run["id"])
    results = of_type(events(http, run["id"]), "tool.result")
    assert [(r["name"], r["result"]) for r in results] == [("calculator", "4"), ("lookup_order", {"status": "late"})]
    [returned] = tool_returns(http, done, "lookup_order")
    assert (json.loads(returned) if isinstance(returned, str) else returned) == {"status": "late"}
    assert tool_returns(http, done, "calculator") == ["4"]


def test_agent_client_tools_and_reserved_names(http: httpx.Client) -> None:
    import uuid

    agent = http.post("/v1/agents", json={"name": f"ct-{uuid.uuid4().hex[:8]}", "client_tools": [LOOKUP]})
    assert agent.status_code == 201, agent.text
    assert agent.json()["client_tools"][0]["name"] == "lookup_order"
    run = create(http, [call("lookup_order", order_id="Z"), {"text": "ok"}], agent_id=agent.json()["id"])
    assert until_status(http, run["id"], "waiting")["waiting_for"] == "tool_result"
    for tools, field in (([{**LOOKUP, "name": "calculator"}], "client_tools[0].name"),
                         ([LOOKUP, LOOKUP], "client_tools[1].name"),
                         ([{**LOOKUP, "name": "bad name!"}], "client_tools[0].name"),
                         ([{**LOOKUP, "parameters": {"type": 3}}], "client_tools[0].parameters")):
        r = http.post("/v1/runs", json={"name": "ct-bad", "instructions": "x", "message": "m",
                                        "client_tools": tools})
        assert r.status_code == 422, r.text
        assert error_of(r)["field"] == field, error_of(r)


def test_tool_results_are_scoped_by_org(server: ServerInThread, http: httpx.Client) -> None:
    run, wait = waiting_run(http)
    other = httpx.Client(base_url=server.base_url, headers=server.headers(server.create_key("ct-other")))
    body = {"results": [{"tool_call_id": wait["tool_call_id"], "output": {"status": "x"}}]}
    assert other.post(f"/v1/runs/{run['id']}/tool_results", json=body).status_code == 404
    assert http.get(f"/v1/runs/{run['id']}").json()["status"] == "waiting"
