"""Humans in the loop over HTTP (issue 3, §1-3 and §7; invariant 6 of DESIGN.md).

A pause is a typed wait (`question`, `approval`, `input`): the run goes `waiting`, emits
`run.waiting` with the wait, and an answer (`/answer`, `/approve`, `/input`) is a
`run.input_received` event that re-queues it. Resolving is idempotent (same answer → 200,
another → 409), answers are checked against the wait's `answer_schema` (422), and the model
sees the answer as the tool's result. Permission modes gate tool calls and plans.

Most tests use the shared in-thread server; the ones that need `http_get` to reach a local
counting server, or a fast reaper for wait timeouts, use one `runyard serve` child process with
`RUNYARD_HTTP_GET_ALLOW_PRIVATE=1` and `RUNYARD_LEASE_SECONDS=1` (settings are read per process).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.runs import create, error_of, events, finished, of_type, tool_returns, types, until_status
from support.servers import ADMIN_KEY, ServerInThread, ServerProcess, wait_until

COLOR = {"question": "Color?", "options": ["red", "blue"]}


def ask(*questions: dict[str, Any]) -> dict[str, Any]:
    """A script step: the model calls ask_user_question."""
    return {"tool_calls": [{"name": "ask_user_question", "args": {"questions": list(questions)}}]}


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "args": args}]}


def get(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return http.get(f"/v1/runs/{run_id}").json()


def waits_of(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    r = http.get(f"/v1/runs/{run_id}/waits")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def open_wait(http: httpx.Client, run_id: str) -> dict[str, Any]:
    """Wait until the run is waiting and return its (single) open wait."""
    until_status(http, run_id, "waiting")
    [wait] = [w for w in waits_of(http, run_id) if w["status"] == "open"]
    return wait


def gapless(log: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))


# --- Questions -----------------------------------------------------------------------------------


def test_question_pauses_the_run_and_the_answer_resumes_it(http: httpx.Client) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    run = create(http, [ask(COLOR), {"text": "painted"}], human_in_the_loop=True, user_id=user)
    wait = open_wait(http, run["id"])

    waiting = get(http, run["id"])
    assert waiting["status"] == "waiting" and waiting["waiting_for"] == "question"

    # The wait object, as listed for the run and across runs.
    assert wait["run_id"] == run["id"] and wait["kind"] == "question" and wait["status"] == "open"
    assert wait["request"] == {"questions": [COLOR]}
    assert wait["answer_schema"]["properties"]["answers"]["properties"]["Color?"] == {"enum": ["red", "blue"]}
    assert wait["answer"] is None and wait["resolved_at"] is None and wait["resolved_by"] is None
    assert wait["created_at"] and "expires_at" in wait and wait["expires_at"] is None
    assert wait["user_id"] == user
    listed = http.get("/v1/waits", params={"status": "open", "user_id": user}).json()["data"]
    assert [w["id"] for w in listed] == [wait["id"]]
    assert http.get(f"/v1/waits/{wait['id']}").json()["id"] == wait["id"]

    # run.waiting carries the wait object itself.
    log = events(http, run["id"])
    [announced] = of_type(log, "run.waiting")
    assert announced["waiting_for"] == "question"
    [in_event] = announced["waits"]
    for key in ("id", "run_id", "kind", "request", "answer_schema", "status", "created_at", "expires_at"):
        assert key in in_event, key
    assert in_event["id"] == wait["id"] and in_event["kind"] == "question" and in_event["status"] == "open"
    assert in_event["request"] == wait["request"] and in_event["answer_schema"] == wait["answer_schema"]
    assert types(log)[-1] == "run.waiting"

    r = http.post(f"/v1/runs/{run['id']}/answer", json={"wait_id": wait["id"], "answers": {"Color?": "blue"}})
    assert r.status_code == 200, r.text
    resolved = r.json()
    assert resolved["id"] == wait["id"] and resolved["status"] == "resolved"
    assert resolved["answer"] == {"answers": {"Color?": "blue"}}
    assert resolved["resolved_by"] and resolved["resolved_at"]

    done = finished(http, run["id"])
    assert done["status"] == "completed" and done["output"] == "painted" and done["waiting_for"] is None
    log = events(http, run["id"])
    gapless(log)
    t = types(log)
    i = t.index("run.input_received")
    assert log[i]["data"]["wait_id"] == wait["id"] and log[i]["data"]["answer"] == {"answers": {"Color?": "blue"}}
    # Back to pending, then a worker claims it again (a new attempt) and it completes.
    assert t[i + 1] == "run.started" and log[i + 1]["data"]["attempt"] == 2
    assert t[-1] == "run.completed"

    # The model saw the answer as ask_user_question's result (logged as that call's result too).
    [returned] = tool_returns(http, run, "ask_user_question")
    assert "blue" in returned
    [result] = [e for e in log if e["type"] == "tool.result"]
    assert result["seq"] > log[i]["seq"]
    assert result["data"]["name"] == "ask_user_question" and result["data"]["tool_call_id"] == wait["tool_call_id"]
    assert "blue" in str(result["data"]["result"])
    assert http.get("/v1/waits", params={"status": "open", "user_id": user}).json()["data"] == []
    assert [w["status"] for w in waits_of(http, run["id"])] == ["resolved"]


def test_a_question_beside_a_tool_in_one_step_gets_its_answer_to_the_model(http: httpx.Client) -> None:
    # The calculator's result is saved after the response: the question is still the pending call.
    step = {"tool_calls": [{"name": "calculator", "args": {"expression": "1+1"}},
                           {"name": "ask_user_question", "args": {"questions": [COLOR]}}]}
    run = create(http, [step, {"text": "done"}], human_in_the_loop=True, tools=["calculator"])
    wait = open_wait(http, run["id"])
    assert http.post(f"/v1/runs/{run['id']}/answer",
                     json={"wait_id": wait["id"], "answers": {"Color?": "red"}}).status_code == 200
    done = finished(http, run["id"])
    assert tool_returns(http, done, "calculator") == ["2"]
    [answer] = tool_returns(http, done, "ask_user_question")
    assert "red" in str(answer)
    assert [d["name"] for d in of_type(events(http, run["id"]), "tool.result")] == ["calculator", "ask_user_question"]


def test_multi_select_and_free_text_questions(http: httpx.Client) -> None:
    questions = [{"question": "Toppings?", "options": ["ham", "egg", "kale"], "multi_select": True},
                 {"question": "Name?"}]
    run = create(http, [ask(*questions), {"text": "ok"}], human_in_the_loop=True)
    wait = open_wait(http, run["id"])
    bad = http.post(f"/v1/runs/{run['id']}/answer",
                    json={"answers": {"Toppings?": ["ham", "tofu"], "Name?": "Ada"}})
    assert bad.status_code == 422, bad.text
    assert "tofu" in error_of(bad)["message"]
    missing = http.post(f"/v1/runs/{run['id']}/answer", json={"answers": {"Toppings?": ["ham"]}})
    assert missing.status_code == 422 and "Name?" in error_of(missing)["message"]
    ok = http.post(f"/v1/runs/{run['id']}/answer", json={"answers": {"Toppings?": ["ham", "egg"], "Name?": "Ada"}})
    assert ok.status_code == 200, ok.text
    assert finished(http, run["id"])["status"] == "completed"
    [returned] = tool_returns(http, run, "ask_user_question")
    assert "egg" in returned and "Ada" in returned
    assert waits_of(http, run["id"])[0]["id"] == wait["id"]


def test_the_same_answer_twice_is_200_and_another_is_409(http: httpx.Client) -> None:
    run = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True)
    wait = open_wait(http, run["id"])
    body = {"wait_id": wait["id"], "answers": {"Color?": "red"}}
    first = http.post(f"/v1/runs/{run['id']}/answer", json=body)
    again = http.post(f"/v1/runs/{run['id']}/answer", json=body)
    assert first.status_code == 200 and again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json()
    other = http.post(f"/v1/runs/{run['id']}/answer", json={**body, "answers": {"Color?": "blue"}})
    assert other.status_code == 409, other.text
    assert wait["id"] in error_of(other)["message"]

    assert finished(http, run["id"])["status"] == "completed"
    # Still idempotent once the run has ended; still a conflict with another answer.
    assert http.post(f"/v1/runs/{run['id']}/answer", json=body).json() == first.json()
    assert http.post(f"/v1/runs/{run['id']}/answer", json={**body, "answers": {"Color?": "blue"}}).status_code == 409
    # Recorded once.
    assert types(events(http, run["id"])).count("run.input_received") == 1


def test_a_retried_answer_without_wait_id_is_idempotent(http: httpx.Client) -> None:
    """`runs.answer(run_id, answers)` names no wait: a client retrying it (its first response lost)
    must get the same 200, not a 409 because the run already went back to pending."""
    run = create(http, [ask(COLOR), call("calculator", expression="1+1"), {"text": "ok"}], tools=["calculator"],
                 human_in_the_loop=True, permission_mode="approve_all")
    open_wait(http, run["id"])
    body = {"answers": {"Color?": "red"}}
    first = http.post(f"/v1/runs/{run['id']}/answer", json=body)
    assert first.status_code == 200, first.text
    again = http.post(f"/v1/runs/{run['id']}/answer", json=body)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert http.post(f"/v1/runs/{run['id']}/answer", json={"answers": {"Color?": "blue"}}).status_code == 409

    wait_until(lambda: len(waits_of(http, run["id"])) == 2 and get(http, run["id"])["status"] == "waiting")
    first = http.post(f"/v1/runs/{run['id']}/approve", json={"decision": "allow"})
    assert first.status_code == 200, first.text
    again = http.post(f"/v1/runs/{run['id']}/approve", json={"decision": "allow"})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert finished(http, run["id"])["status"] == "completed"
    assert types(events(http, run["id"])).count("run.input_received") == 2


def test_an_answer_outside_the_schema_is_422_naming_the_problem(http: httpx.Client) -> None:
    run = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True)
    wait = open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/answer", json={"wait_id": wait["id"], "answers": {"Color?": "green"}})
    assert r.status_code == 422, r.text
    error = error_of(r)
    assert "green" in error["message"] and "Color?" in error["message"]
    assert error["field"] and "Color?" in error["field"]
    r = http.post(f"/v1/runs/{run['id']}/answer", json={"answers": {"Shape?": "round"}})
    assert r.status_code == 422, r.text
    assert "Color?" in error_of(r)["message"] and "required" in error_of(r)["message"]  # the missing answer
    # Nothing changed: the run still waits on the same open wait.
    assert get(http, run["id"])["status"] == "waiting"
    assert [w["status"] for w in waits_of(http, run["id"])] == ["open"]
    assert "run.input_received" not in types(events(http, run["id"]))
    http.post(f"/v1/runs/{run['id']}/cancel")


def test_unknown_wait_404_and_not_waiting_409(http: httpx.Client) -> None:
    run = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True)
    open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/answer", json={"wait_id": "wait_doesnotexist", "answers": {"Color?": "red"}})
    assert r.status_code == 404, r.text
    assert error_of(r)["code"] == "not_found"
    assert http.post("/v1/runs/run_doesnotexist/answer", json={"answers": {"Color?": "red"}}).status_code == 404
    # An approval to a run that waits for a question is a conflict, not an answer.
    r = http.post(f"/v1/runs/{run['id']}/approve", json={"decision": "allow"})
    assert r.status_code == 409, r.text
    assert http.post(f"/v1/runs/{run['id']}/answer", json={"answers": {"Color?": "red"}}).status_code == 200
    assert finished(http, run["id"])["status"] == "completed"

    # A completed run waits for nothing.
    done = create(http, [{"text": "hi"}])
    finished(http, done["id"])
    for path, body in [("answer", {"answers": {"Color?": "red"}}), ("approve", {"decision": "allow"}),
                       ("input", {"content": "hello"})]:
        r = http.post(f"/v1/runs/{done['id']}/{path}", json=body)
        assert r.status_code == 409, (path, r.text)
        assert "not waiting" in error_of(r)["message"]

    # Nor does a running one.
    busy = create(http, [{"delay": 1.0, "text": "slow"}], human_in_the_loop=True)
    until_status(http, busy["id"], "running")
    r = http.post(f"/v1/runs/{busy['id']}/answer", json={"answers": {"Color?": "red"}})
    assert r.status_code == 409, r.text
    assert finished(http, busy["id"])["status"] == "completed"


def test_concurrent_conflicting_answers_exactly_one_wins(server: ServerInThread, http: httpx.Client) -> None:
    run = create(http, [ask({"question": "Name?"}), {"text": "ok"}], human_in_the_loop=True)
    wait = open_wait(http, run["id"])
    n = 8
    barrier = threading.Barrier(n)

    def answer(i: int) -> httpx.Response:
        with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=30) as client:
            barrier.wait()
            return client.post(f"/v1/runs/{run['id']}/answer",
                               json={"wait_id": wait["id"], "answers": {"Name?": f"name-{i}"}})

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(answer, range(n)))
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: n - 1}, [(r.status_code, r.text) for r in responses]
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert finished(http, run["id"])["status"] == "completed"
    [stored] = waits_of(http, run["id"])
    assert stored["answer"] == winner["answer"]
    assert of_type(events(http, run["id"]), "run.input_received") == [
        {"wait_id": wait["id"], "kind": "question", "answer": winner["answer"]}]
    [returned] = tool_returns(http, run, "ask_user_question")
    assert winner["answer"]["answers"]["Name?"] in returned


def test_concurrent_identical_answers_all_succeed(server: ServerInThread, http: httpx.Client) -> None:
    run = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True)
    wait = open_wait(http, run["id"])
    n = 8
    barrier = threading.Barrier(n)

    def answer(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=30) as client:
            barrier.wait()
            return client.post(f"/v1/runs/{run['id']}/answer",
                               json={"wait_id": wait["id"], "answers": {"Color?": "red"}})

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(answer, range(n)))
    assert [r.status_code for r in responses] == [200] * n, [r.text for r in responses]
    assert len({r.json()["resolved_at"] for r in responses}) == 1
    assert finished(http, run["id"])["status"] == "completed"
    assert types(events(http, run["id"])).count("run.input_received") == 1


def test_waits_are_scoped_by_org(server: ServerInThread, http: httpx.Client) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    run = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True, user_id=user)
    wait = open_wait(http, run["id"])
    other_key = server.create_key(f"org-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=server.base_url, headers=server.headers(other_key), timeout=30) as other:
        assert other.get("/v1/waits", params={"status": "open", "user_id": user}).json()["data"] == []
        assert wait["id"] not in [w["id"] for w in other.get("/v1/waits", params={"limit": 100}).json()["data"]]
        assert other.get(f"/v1/waits/{wait['id']}").status_code == 404
        assert other.get(f"/v1/runs/{run['id']}/waits").status_code == 404
        r = other.post(f"/v1/runs/{run['id']}/answer", json={"wait_id": wait["id"], "answers": {"Color?": "red"}})
        assert r.status_code == 404, r.text
        assert other.post(f"/v1/runs/{run['id']}/input", json={"content": "red"}).status_code == 404
    assert [w["status"] for w in waits_of(http, run["id"])] == ["open"]
    # A wait of another run is not this run's to answer.
    second = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True)
    open_wait(http, second["id"])
    r = http.post(f"/v1/runs/{second['id']}/answer", json={"wait_id": wait["id"], "answers": {"Color?": "red"}})
    assert r.status_code == 404, r.text
    for r_ in (run, second):
        http.post(f"/v1/runs/{r_['id']}/cancel")


# --- Approvals and permission modes ---------------------------------------------------------------


def test_approve_all_allow_runs_the_tool(http: httpx.Client) -> None:
    run = create(http, [call("calculator", expression="6*7"), {"text": "42"}], tools=["calculator"],
                 human_in_the_loop=True, permission_mode="approve_all")
    wait = open_wait(http, run["id"])
    assert get(http, run["id"])["waiting_for"] == "approval"
    assert wait["kind"] == "approval"
    assert wait["request"]["name"] == "calculator" and wait["request"]["args"] == {"expression": "6*7"}
    log = events(http, run["id"])
    t = types(log)
    assert t[-2:] == ["tool.approval_requested", "run.waiting"]
    assert log[-2]["data"]["name"] == "calculator" and log[-2]["data"]["wait_id"] == wait["id"]
    assert "tool.result" not in t  # nothing ran before the approval

    r = http.post(f"/v1/runs/{run['id']}/approve", json={"wait_id": wait["id"], "decision": "allow"})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == {"decision": "allow"}
    done = finished(http, run["id"])
    assert done["status"] == "completed" and done["output"] == "42"
    log = events(http, run["id"])
    t = types(log)
    assert t.index("run.input_received") < t.index("tool.approved") < t.index("tool.result")
    [approved] = of_type(log, "tool.approved")
    assert approved["wait_id"] == wait["id"] and approved["name"] == "calculator"
    assert of_type(log, "tool.result")[0]["result"] == "42"
    assert "tool.denied" not in t
    assert tool_returns(http, run, "calculator") == ["42"]


def test_deny_gives_the_model_the_reason_and_the_run_goes_on(http: httpx.Client) -> None:
    run = create(http, [call("calculator", expression="1+1"), {"text": "fine, no maths"}], tools=["calculator"],
                 human_in_the_loop=True, permission_mode="approve_all")
    wait = open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/approve",
                  json={"wait_id": wait["id"], "decision": "deny", "reason": "not today, thanks"})
    assert r.status_code == 200, r.text
    done = finished(http, run["id"])
    assert done["status"] == "completed" and done["output"] == "fine, no maths"
    log = events(http, run["id"])
    [denied] = of_type(log, "tool.denied")
    assert denied["reason"] == "not today, thanks" and denied["name"] == "calculator"
    assert "tool.result" not in types(log) and "tool.approved" not in types(log)
    [returned] = tool_returns(http, run, "calculator")
    assert "not today, thanks" in returned


def test_remember_allows_the_tool_for_the_rest_of_the_run(http: httpx.Client) -> None:
    script = [call("calculator", expression="2+2"), call("calculator", expression="3+3"), {"text": "ok"}]
    run = create(http, script, tools=["calculator"], human_in_the_loop=True, permission_mode="approve_all")
    wait = open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/approve", json={"wait_id": wait["id"], "decision": "allow",
                                                           "remember": True})
    assert r.status_code == 200, r.text
    assert finished(http, run["id"])["status"] == "completed"
    log = events(http, run["id"])
    assert [w["id"] for w in waits_of(http, run["id"])] == [wait["id"]]
    assert types(log).count("tool.approval_requested") == 1 and types(log).count("run.waiting") == 1
    assert [d["result"] for d in of_type(log, "tool.result")] == ["4", "6"]


def test_without_remember_every_call_asks(http: httpx.Client) -> None:
    script = [call("calculator", expression="2+2"), call("calculator", expression="3+3"), {"text": "ok"}]
    run = create(http, script, tools=["calculator"], human_in_the_loop=True, permission_mode="approve_all")
    for _ in range(2):
        wait = open_wait(http, run["id"])
        assert http.post(f"/v1/runs/{run['id']}/approve", json={"wait_id": wait["id"], "decision": "allow"}
                         ).status_code == 200
        wait_until(lambda: get(http, run["id"])["status"] != "pending")
    assert finished(http, run["id"])["status"] == "completed"
    assert len(waits_of(http, run["id"])) == 2


def test_approve_writes_asks_for_side_effects_only(http: httpx.Client) -> None:
    script = [call("calculator", expression="5*5"), call("http_get", url="http://127.0.0.1:9/x"), {"text": "ok"}]
    run = create(http, script, tools=["calculator", "http_get"], human_in_the_loop=True,
                 permission_mode="approve_writes")
    wait = open_wait(http, run["id"])
    assert wait["request"]["name"] == "http_get" and wait["request"]["args"] == {"url": "http://127.0.0.1:9/x"}
    log = events(http, run["id"])
    # The calculator (no side effects) ran without asking.
    assert [d["name"] for d in of_type(log, "tool.approval_requested")] == ["http_get"]
    assert of_type(log, "tool.result")[0] == {"tool_call_id": "call_0_1", "name": "calculator", "result": "25"}
    assert http.post(f"/v1/runs/{run['id']}/approve",
                     json={"wait_id": wait["id"], "decision": "deny", "reason": "no network"}).status_code == 200
    assert finished(http, run["id"])["status"] == "completed"
    assert [d["name"] for d in of_type(events(http, run["id"]), "tool.denied")] == ["http_get"]


@pytest.mark.parametrize("mode", ["approve_writes", "approve_all", "plan"])
def test_permission_modes_require_human_in_the_loop(http: httpx.Client, mode: str) -> None:
    body = {"name": "modes", "instructions": "x", "message": "go", "permission_mode": mode}
    r = http.post("/v1/runs", json=body)
    assert r.status_code == 422, r.text
    assert "human_in_the_loop" in error_of(r)["message"]
    r = http.post("/v1/runs", json={**body, "human_in_the_loop": False})
    assert r.status_code == 422
    r = http.post("/v1/runs", json={**body, "human_in_the_loop": True, "metadata": {"script": [{"text": "p"}]}})
    assert r.status_code == 201, r.text
    http.post(f"/v1/runs/{r.json()['id']}/cancel")
    assert http.post("/v1/runs", json={**body, "permission_mode": "yolo", "human_in_the_loop": True}
                     ).status_code == 422


def test_plan_mode_waits_for_the_plan_before_any_tool(http: httpx.Client) -> None:
    script = [{"text": "1. multiply 6 by 7"}, call("calculator", expression="6*7"), {"text": "42"}]
    run = create(http, script, tools=["calculator"], human_in_the_loop=True, permission_mode="plan")
    wait = open_wait(http, run["id"])
    assert get(http, run["id"])["waiting_for"] == "approval"
    assert wait["kind"] == "approval" and wait["request"] == {"plan": "1. multiply 6 by 7"}
    log = events(http, run["id"])
    assert not {"tool.call", "tool.result", "tool.approval_requested"} & set(types(log))
    assert [d["name"] for d in of_type(log, "tools.declared")[0]["tools"]] == ["calculator", "ask_user_question",
                                                                              "request_user_input"]

    r = http.post(f"/v1/runs/{run['id']}/approve", json={"wait_id": wait["id"], "decision": "allow"})
    assert r.status_code == 200, r.text
    done = finished(http, run["id"])
    assert done["status"] == "completed" and done["output"] == "42"
    log = events(http, run["id"])
    t = types(log)
    received = t.index("run.input_received")
    assert "tool.call" not in t[:received] and "tool.result" not in t[:received]
    assert received < t.index("tool.call") < t.index("tool.result")
    assert of_type(log, "tool.result")[0]["result"] == "42"
    # The plan was the only approval: the tool itself did not ask.
    assert len(waits_of(http, run["id"])) == 1


def test_plan_mode_rejected_plan_asks_again(http: httpx.Client) -> None:
    script = [{"text": "plan A"}, {"text": "plan B"}, call("calculator", expression="1+2"), {"text": "3"}]
    run = create(http, script, tools=["calculator"], human_in_the_loop=True, permission_mode="plan")
    first = open_wait(http, run["id"])
    assert first["request"] == {"plan": "plan A"}
    assert http.post(f"/v1/runs/{run['id']}/approve", json={"wait_id": first["id"], "decision": "deny",
                                                            "reason": "too vague"}).status_code == 200
    second = wait_until(lambda: [w for w in waits_of(http, run["id"]) if w["status"] == "open"])[0]
    assert second["request"] == {"plan": "plan B"}
    assert "tool.result" not in types(events(http, run["id"]))
    assert http.post(f"/v1/runs/{run['id']}/approve", json={"wait_id": second["id"], "decision": "allow"}
                     ).status_code == 200
    assert finished(http, run["id"])["output"] == "3"


# --- Free input ------------------------------------------------------------------------------------


def test_input_answers_a_question(http: httpx.Client) -> None:
    run = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True)
    wait = open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "blue"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == wait["id"] and r.json()["answer"] == {"answers": {"Color?": "blue"}}
    assert finished(http, run["id"])["status"] == "completed"
    assert "blue" in tool_returns(http, run, "ask_user_question")[0]


def test_input_approves_with_yes_and_denies_with_anything_else(http: httpx.Client) -> None:
    script = [call("calculator", expression="2*3"), call("calculator", expression="2*4"), {"text": "ok"}]
    run = create(http, script, tools=["calculator"], human_in_the_loop=True, permission_mode="approve_all")
    open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "yes"})
    assert r.status_code == 200 and r.json()["answer"] == {"decision": "allow"}, r.text
    wait_until(lambda: len(waits_of(http, run["id"])) == 2 and get(http, run["id"])["status"] == "waiting")
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "use your head instead"})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == {"decision": "deny", "reason": "use your head instead"}
    assert finished(http, run["id"])["status"] == "completed"
    log = events(http, run["id"])
    assert [d["result"] for d in of_type(log, "tool.result")] == ["6"]
    assert [d["reason"] for d in of_type(log, "tool.denied")] == ["use your head instead"]


def test_request_user_input_is_an_input_wait(http: httpx.Client) -> None:
    run = create(http, [call("request_user_input", prompt="Paste the text"), {"text": "thanks"}],
                 human_in_the_loop=True)
    wait = open_wait(http, run["id"])
    assert get(http, run["id"])["waiting_for"] == "input"
    assert wait["kind"] == "input" and wait["request"] == {"prompt": "Paste the text"}
    assert http.post(f"/v1/runs/{run['id']}/input", json={"content": "x" * (32 * 1024 + 1)}).status_code == 413
    assert get(http, run["id"])["status"] == "waiting"
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "lorem ipsum dolor"})
    assert r.status_code == 200 and r.json()["answer"] == {"content": "lorem ipsum dolor"}, r.text
    assert finished(http, run["id"])["output"] == "thanks"
    assert tool_returns(http, run, "request_user_input") == ["lorem ipsum dolor"]
    assert http.post(f"/v1/runs/{run['id']}/input", json={"content": "more"}).status_code == 409


def test_input_names_its_wait(http: httpx.Client) -> None:
    run = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True)
    wait = open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "red", "wait_id": "wait_doesnotexist"})
    assert r.status_code == 404, r.text
    assert get(http, run["id"])["status"] == "waiting"
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "purple", "wait_id": wait["id"]})
    assert r.status_code == 422 and "purple" in error_of(r)["message"], r.text
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "red", "wait_id": wait["id"]})
    assert r.status_code == 200 and r.json()["answer"] == {"answers": {"Color?": "red"}}, r.text
    assert finished(http, run["id"])["status"] == "completed"


def test_input_limits(http: httpx.Client) -> None:
    run = create(http, [ask({"question": "Text?"}), {"text": "ok"}], human_in_the_loop=True)
    open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "é" * (16 * 1024 + 1)})  # > 32 KB as UTF-8
    assert r.status_code == 413, r.text
    assert error_of(r)["field"] == "content"
    assert get(http, run["id"])["status"] == "waiting"
    r = http.post(f"/v1/runs/{run['id']}/input", json={"content": "y" * (32 * 1024)})  # exactly 32 KB is fine
    assert r.status_code == 200, r.text
    assert finished(http, run["id"])["status"] == "completed"


def test_cancel_while_waiting_cancels_the_wait(http: httpx.Client) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    run = create(http, [ask(COLOR), {"text": "ok"}], human_in_the_loop=True, user_id=user)
    wait = open_wait(http, run["id"])
    r = http.post(f"/v1/runs/{run['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["waiting_for"] is None
    [stored] = waits_of(http, run["id"])
    assert stored["id"] == wait["id"] and stored["status"] == "cancelled" and stored["resolved_at"]
    assert http.get("/v1/waits", params={"status": "open", "user_id": user}).json()["data"] == []
    assert [w["id"] for w in http.get("/v1/waits", params={"status": "cancelled", "user_id": user}).json()["data"]
            ] == [wait["id"]]
    log = events(http, run["id"])
    assert types(log)[-2:] == ["run.cancel_requested", "run.cancelled"]
    r = http.post(f"/v1/runs/{run['id']}/answer", json={"wait_id": wait["id"], "answers": {"Color?": "red"}})
    assert r.status_code == 409, r.text
    assert get(http, run["id"])["status"] == "cancelled"


def test_seed_status_names_filter_waiting_runs(http: httpx.Client) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    question = create(http, [ask(COLOR)], human_in_the_loop=True, user_id=user)
    approval = create(http, [call("calculator", expression="1")], tools=["calculator"], human_in_the_loop=True,
                      permission_mode="approve_all", user_id=user)
    entry = create(http, [call("request_user_input", prompt="?")], human_in_the_loop=True, user_id=user)
    done = create(http, [{"text": "x"}], user_id=user)
    for run in (question, approval, entry):
        until_status(http, run["id"], "waiting")
    finished(http, done["id"])

    def ids(*statuses: str) -> set[str]:
        r = http.get("/v1/runs", params={"user_id": user, "status": list(statuses)})
        assert r.status_code == 200, r.text
        return {run["id"] for run in r.json()["data"]}

    assert ids("awaiting_approval") == {approval["id"]}
    assert ids("waiting_for_input") == {question["id"], entry["id"]}
    assert ids("waiting") == {question["id"], approval["id"], entry["id"]}
    assert ids("awaiting_approval", "completed") == {approval["id"], done["id"]}
    assert http.get("/v1/runs", params={"status": "awaiting_nothing"}).status_code == 422
    for run in (question, approval, entry):
        http.post(f"/v1/runs/{run['id']}/cancel")


def test_ask_user_question_is_offered_only_with_human_in_the_loop(http: httpx.Client) -> None:
    run = create(http, [ask(COLOR), {"text": "ok"}])
    done = finished(http, run["id"])
    log = events(http, run["id"])
    assert of_type(log, "tools.declared")[0]["tools"] == []
    assert "run.waiting" not in types(log) and waits_of(http, run["id"]) == []
    assert done["status"] == "completed"  # the model was told the tool does not exist and went on
    assert "tool.error" in types(log)


# --- A server process: http_get to 127.0.0.1, a reaper every second ----------------------------------


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805
                with self.lock:
                    self.hits[handler.path] += 1
                body = f"hello from {handler.path}".encode()
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args: Any) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def counter() -> Iterator[CountingServer]:
    srv = CountingServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp: Path = tmp_path_factory.mktemp("waits-proc")
    env = {"RUNYARD_HTTP_GET_ALLOW_PRIVATE": "1", "RUNYARD_LEASE_SECONDS": "1"}
    srv = ServerProcess(f"sqlite+aiosqlite:///{tmp / 'waits.db'}", env).start(tmp)
    try:
        with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          timeout=30) as client:
            yield client
    finally:
        srv.stop()


def test_no_work_before_the_pause_is_repeated(proc: httpx.Client, counter: CountingServer) -> None:
    script = [call("http_get", url=f"{counter.url}/before"), ask(COLOR),
              call("http_get", url=f"{counter.url}/after"), {"text": "ok"}]
    run = create(proc, script, tools=["http_get"], human_in_the_loop=True)
    wait = open_wait(proc, run["id"])
    assert counter.hits == {"/before": 1}
    assert proc.post(f"/v1/runs/{run['id']}/answer", json={"wait_id": wait["id"], "answers": {"Color?": "red"}}
                     ).status_code == 200
    done = finished(proc, run["id"])
    assert done["status"] == "completed", done
    assert counter.hits == {"/before": 1, "/after": 1}
    log = events(proc, run["id"])
    gapless(log)
    assert [d["result"] for d in of_type(log, "tool.result") if d["name"] == "http_get"] == [
        "HTTP 200\nhello from /before", "HTTP 200\nhello from /after"]
    # The model is not re-asked for the steps before the pause either.
    assert [d["name"] for d in of_type(log, "tool.call")] == ["http_get", "ask_user_question", "http_get"]
    assert done["usage"]["requests"] == 4


def test_approved_http_get_runs_once(proc: httpx.Client, counter: CountingServer) -> None:
    run = create(proc, [call("http_get", url=f"{counter.url}/approved"), {"text": "ok"}], tools=["http_get"],
                 human_in_the_loop=True, permission_mode="approve_writes")
    wait = open_wait(proc, run["id"])
    assert counter.hits["/approved"] == 0
    assert proc.post(f"/v1/runs/{run['id']}/approve", json={"wait_id": wait["id"], "decision": "allow"}
                     ).status_code == 200
    assert finished(proc, run["id"])["status"] == "completed"
    assert counter.hits["/approved"] == 1
    assert of_type(events(proc, run["id"]), "tool.result")[0]["result"] == "HTTP 200\nhello from /approved"


def test_wait_timeout_deny_expires_the_wait_and_the_run_goes_on(proc: httpx.Client) -> None:
    question = create(proc, [ask(COLOR), {"text": "went on"}], human_in_the_loop=True, wait_timeout=1)
    approval = create(proc, [call("calculator", expression="9*9"), {"text": "went on"}], tools=["calculator"],
                      human_in_the_loop=True, permission_mode="approve_all", wait_timeout=1,
                      wait_timeout_action="deny")
    for run in (question, approval):
        wait = open_wait(proc, run["id"])
        assert wait["expires_at"] is not None and wait["timeout_action"] == "deny"
    for run in (question, approval):
        done = finished(proc, run["id"], timeout=10)
        assert done["status"] == "completed" and done["output"] == "went on", done
        [wait] = waits_of(proc, run["id"])
        assert wait["status"] == "expired" and wait["answer"] is None
        log = events(proc, run["id"])
        gapless(log)
        [received] = of_type(log, "run.input_received")
        assert received["wait_id"] == wait["id"] and received.get("expired") is True
    assert "tool.result" not in types(events(proc, approval["id"]))  # denied: the calculator never ran
    assert tool_returns(proc, question, "ask_user_question")[0]
    assert "time" in tool_returns(proc, approval, "calculator")[0]


def test_wait_timeout_fail_fails_the_run(proc: httpx.Client) -> None:
    run = create(proc, [ask(COLOR), {"text": "never"}], human_in_the_loop=True, wait_timeout=1,
                 wait_timeout_action="fail")
    wait = open_wait(proc, run["id"])
    assert wait["timeout_action"] == "fail"
    done = finished(proc, run["id"], timeout=10)
    assert done["status"] == "failed", done
    assert wait["id"] in done["error"] and "expired" in done["error"]
    assert waits_of(proc, run["id"])[0]["status"] == "expired"
    log = events(proc, run["id"])
    gapless(log)
    assert types(log)[-1] == "run.failed" and wait["id"] in log[-1]["data"]["error"]
    r = proc.post(f"/v1/runs/{run['id']}/answer", json={"wait_id": wait["id"], "answers": {"Color?": "red"}})
    assert r.status_code == 409, r.text
