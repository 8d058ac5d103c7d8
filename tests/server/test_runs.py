"""Creating, reading, waiting for and listing runs over plain HTTP (issue 2, §3, §4 and §7).

Every test talks to the session's real server, which runs the offline `scripted` model:
`metadata.script` decides what the "model" says. The server is shared by the whole session,
so each test tags its runs with a unique metadata value (or agent name) and only looks at those.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

USAGE_KEYS = {"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
              "requests", "tool_calls", "cost_usd", "cost_known", "cache_hit_rate", "credits_used"}
RUN_KEYS = {"id", "agent_id", "thread_id", "status", "original_prompt", "output", "error", "user_id", "metadata",
            "model", "usage", "steps", "duration_ms", "created_at", "started_at", "completed_at", "failed_at",
            "cancelled_at", "attempt", "trace_id", "last_seq"}
TERMINAL = {"completed", "failed", "cancelled"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    body.setdefault("message", "hi")
    if "agent_id" not in body:
        body.setdefault("name", unique("runs-agent"))
        body.setdefault("instructions", "Be brief.")
    r = http.post("/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def wait(http: httpx.Client, run_id: str, timeout: float = 20) -> dict[str, Any]:
    run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": timeout}).json()
    assert run["status"] in TERMINAL, run
    return run


def events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()["data"]


def tagged(http: httpx.Client, tag: str, **params: Any) -> list[dict[str, Any]]:
    r = http.get("/v1/runs", params={"metadata[tag]": tag, "limit": 100, **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def ids(runs: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in runs]


# --- creating runs -------------------------------------------------------------------------


def test_create_run_with_agent_id(http: httpx.Client) -> None:
    agent = http.post("/v1/agents", json={"name": unique("agent"), "instructions": "Echo."}).json()
    run = create(http, agent_id=agent["id"], message="hello there")
    assert run["id"].startswith("run_")
    assert run["agent_id"] == agent["id"]
    assert run["original_prompt"] == "hello there"
    assert run["status"] in {"pending", "running", "completed"}
    done = wait(http, run["id"])
    assert done["status"] == "completed"
    assert done["output"] == "You said: hello there"


def test_quick_start_finds_or_creates_the_agent_by_name(http: httpx.Client) -> None:
    name = unique("quick")
    first = create(http, name=name, instructions="Be kind.")
    second = create(http, name=name, instructions="Be kind.")
    assert first["agent_id"] == second["agent_id"]
    agent = http.get(f"/v1/agents/{first['agent_id']}").json()
    assert (agent["name"], agent["instructions"]) == (name, "Be kind.")
    # An existing agent is found by name alone, too.
    assert create(http, name=name, instructions=None)["agent_id"] == first["agent_id"]


def test_message_is_required(http: httpx.Client) -> None:
    tag = unique("tag")
    r = http.post("/v1/runs", json={"name": unique("agent"), "instructions": "x", "metadata": {"tag": tag}})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "message"
    assert tagged(http, tag) == []


def test_threads_new_when_absent_and_reused_when_given(http: httpx.Client) -> None:
    first = create(http)
    second = create(http, agent_id=first["agent_id"])
    assert first["thread_id"].startswith("thr_")
    assert second["thread_id"] != first["thread_id"]
    wait(http, first["id"])  # a thread takes one active run at a time (multitask=reject)
    third = create(http, agent_id=first["agent_id"], thread_id=first["thread_id"])
    assert third["thread_id"] == first["thread_id"]
    r = http.post("/v1/runs", json={"agent_id": first["agent_id"], "message": "x", "thread_id": "thr_nope"})
    assert r.status_code == 404, r.text


def test_tools_and_model_overrides_are_visible_on_the_run(http: httpx.Client) -> None:
    agent = http.post("/v1/agents", json={"name": unique("agent"), "model": "test", "tools": ["current_time"]}).json()
    run = create(http, agent_id=agent["id"], tools=["calculator"], model="scripted", message="sum")
    assert run["model"] == "scripted"
    assert run["tools"] == ["calculator"]
    done = wait(http, run["id"])
    assert done["output"] == "You said: sum"  # the scripted model ran, not the agent's `test` model
    declared = next(e for e in events(http, run["id"]) if e["type"] == "tools.declared")
    assert [t["name"] for t in declared["data"]["tools"]] == ["calculator"]


def test_user_id_and_metadata_are_stored(http: httpx.Client) -> None:
    metadata = {"tag": unique("tag"), "nested": {"n": 1, "ok": True}}
    run = create(http, user_id="user-42", metadata=metadata)
    again = http.get(f"/v1/runs/{run['id']}").json()
    for r in (run, again):
        assert r["user_id"] == "user-42"
        assert r["metadata"] == metadata


def test_stream_true_returns_the_new_runs_event_stream(http: httpx.Client) -> None:
    tag = unique("tag")
    body = {"name": unique("agent"), "instructions": "x", "message": "stream me", "stream": True,
            "metadata": {"tag": tag, "script": [{"text": ["a", "b", "c"]}]}}
    with http.stream("POST", "/v1/runs", json=body) as r:
        assert r.status_code == 201
        assert r.headers["content-type"].startswith("text/event-stream")
        envelopes = [json.loads(line[len("data:"):]) for line in r.iter_lines() if line.startswith("data:")]
    (run,) = tagged(http, tag)
    assert {e["run_id"] for e in envelopes} == {run["id"]}
    assert [e["seq"] for e in envelopes] == list(range(1, len(envelopes) + 1))
    assert envelopes[-1]["type"] == "run.completed"
    assert "".join(e["data"]["delta"] for e in envelopes if e["type"] == "message.delta") == "abc"


def test_thread_runs_create_and_list(http: httpx.Client) -> None:
    first = create(http)
    thread = first["thread_id"]
    made = [first["id"]]
    for text in ("two", "three"):
        # multitask=enqueue: the thread already has an active run, this one starts after it.
        r = http.post(f"/v1/threads/{thread}/runs",
                      json={"agent_id": first["agent_id"], "message": text, "multitask": "enqueue"})
        assert r.status_code == 201, r.text
        assert r.json()["thread_id"] == thread
        made.append(r.json()["id"])
    create(http, agent_id=first["agent_id"])  # another thread: not listed
    page = http.get(f"/v1/threads/{thread}/runs", params={"limit": 2}).json()
    assert ids(page["data"]) == made[::-1][:2]
    assert page["has_more"] is True
    everything = http.get(f"/v1/threads/{thread}/runs", params={"limit": 100}).json()
    assert ids(everything["data"]) == made[::-1]
    assert everything["has_more"] is False
    r = http.post("/v1/threads/thr_unknown/runs", json={"agent_id": first["agent_id"], "message": "x"})
    assert r.status_code == 404, r.text
    assert http.get("/v1/threads/thr_unknown/runs").status_code == 404


def test_idempotency_key_same_body_returns_the_same_run(http: httpx.Client) -> None:
    tag = unique("tag")
    body = {"name": unique("agent"), "instructions": "x", "message": "once", "metadata": {"tag": tag}}
    headers = {"Idempotency-Key": unique("key")}
    first = http.post("/v1/runs", json=body, headers=headers)
    second = http.post("/v1/runs", json=body, headers=headers)
    assert first.status_code in (200, 201) and second.status_code in (200, 201), second.text
    assert second.json()["id"] == first.json()["id"]
    assert ids(tagged(http, tag)) == [first.json()["id"]]


def test_idempotency_key_concurrent_requests_make_one_run(http: httpx.Client, server: Any) -> None:
    tag = unique("tag")
    name = unique("agent")
    http.post("/v1/agents", json={"name": name})
    body = {"name": name, "message": "once", "metadata": {"tag": tag}}
    headers = {**server.headers(), "Idempotency-Key": unique("key")}

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{server.base_url}/v1/runs", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(tagged(http, tag)) == 1


def test_idempotency_key_with_another_body_is_a_conflict(http: httpx.Client) -> None:
    tag = unique("tag")
    body = {"name": unique("agent"), "instructions": "x", "message": "once", "metadata": {"tag": tag}}
    headers = {"Idempotency-Key": unique("key")}
    assert http.post("/v1/runs", json=body, headers=headers).status_code == 201
    r = http.post("/v1/runs", json={**body, "message": "twice"}, headers=headers)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"]
    assert len(tagged(http, tag)) == 1


# --- the run object ------------------------------------------------------------------------


def test_run_object_has_every_field(http: httpx.Client) -> None:
    run = wait(http, create(http, message="fields")["id"])
    assert RUN_KEYS <= run.keys()
    assert set(run["usage"]) == USAGE_KEYS
    assert run["status"] == "completed" and run["error"] is None
    assert run["attempt"] == 1
    assert isinstance(run["trace_id"], str) and run["trace_id"]
    assert run["last_seq"] == len(events(http, run["id"]))
    assert isinstance(run["duration_ms"], int) and run["duration_ms"] >= 0
    created, started, completed = (datetime.fromisoformat(run[k]) for k in ("created_at", "started_at", "completed_at"))
    assert created.utcoffset() is not None  # timestamps carry their UTC offset
    assert created <= started <= completed
    assert run["failed_at"] is None and run["cancelled_at"] is None


def test_a_model_error_fails_the_run_with_a_plain_error(http: httpx.Client) -> None:
    run = wait(http, create(http, metadata={"script": [{"error": "boom"}]})["id"])
    assert run["status"] == "failed"
    assert isinstance(run["error"], str) and "boom" in run["error"]
    assert run["failed_at"] is not None and run["completed_at"] is None
    last = events(http, run["id"])[-1]
    assert last["type"] == "run.failed" and "boom" in last["data"]["error"]


def test_recoverable_tool_errors_become_events_and_the_run_goes_on(http: httpx.Client) -> None:
    script = [
        {"tool_calls": [{"name": "calculator", "args": {"expression": "1/0"}}]},
        {"tool_calls": [{"name": "calculator", "args": {"expression": "foo("}}]},
        {"tool_calls": [{"name": "calculator", "args": {"expression": "2+3"}}]},
        {"text": "five"},
    ]
    run = wait(http, create(http, tools=["calculator"], metadata={"script": script})["id"])
    assert run["status"] == "completed" and run["output"] == "five"
    log = events(http, run["id"])
    errors = [e["data"] for e in log if e["type"] == "tool.error"]
    assert len(errors) == 2 and all(e["name"] == "calculator" and e["error"] for e in errors)
    assert [e["data"]["result"] for e in log if e["type"] == "tool.result"] == ["5"]
    assert run["usage"]["tool_calls"] == 3
    assert run["usage"]["requests"] == 4


def test_usage_counts_tool_calls_and_model_requests(http: httpx.Client) -> None:
    script = [
        {"tool_calls": [{"name": "calculator", "args": {"expression": "1+1"}},
                        {"name": "calculator", "args": {"expression": "2*3"}}]},
        {"text": "done"},
    ]
    run = wait(http, create(http, tools=["calculator"], metadata={"script": script})["id"])
    assert run["status"] == "completed"
    assert run["usage"]["tool_calls"] == 2
    assert run["usage"]["requests"] == 2
    assert run["usage"]["input_tokens"] > 0 and run["usage"]["output_tokens"] > 0
    usage_events = [e for e in events(http, run["id"]) if e["type"] == "usage"]
    assert len(usage_events) == 2


# --- waiting -------------------------------------------------------------------------------


def test_wait_returns_the_terminal_run(http: httpx.Client) -> None:
    run = create(http, metadata={"script": [{"delay": 0.3, "text": "late"}]})
    done = http.get(f"/v1/runs/{run['id']}/wait", params={"timeout": 10}).json()
    assert done["status"] == "completed" and done["output"] == "late"


def test_wait_returns_the_unfinished_run_after_the_timeout(http: httpx.Client) -> None:
    run = create(http, metadata={"script": [{"delay": 3, "text": "late"}]})
    early = http.get(f"/v1/runs/{run['id']}/wait", params={"timeout": 0.5})
    assert early.status_code == 200
    assert early.json()["id"] == run["id"]
    assert early.json()["status"] in {"pending", "running"}
    assert wait(http, run["id"])["status"] == "completed"
    assert http.get("/v1/runs/run_unknown/wait", params={"timeout": 0}).status_code == 404


# --- listing -------------------------------------------------------------------------------


def test_list_filters(http: httpx.Client) -> None:
    tag = unique("tag")
    agent_a = create(http, metadata={"tag": tag, "kind": "a"}, user_id="alice")
    a2 = create(http, agent_id=agent_a["agent_id"], thread_id=agent_a["thread_id"],
                metadata={"tag": tag, "kind": "a"}, user_id="bob", multitask="enqueue")
    b1 = create(http, metadata={"tag": tag, "kind": "b", "script": [{"error": "boom"}]}, user_id="alice")
    b2 = create(http, agent_id=b1["agent_id"], metadata={"tag": tag, "kind": "b", "script": [{"delay": 10}]})
    made = [agent_a, a2, b1, b2]
    for run in made[:3]:
        wait(http, run["id"])
    assert http.post(f"/v1/runs/{b2['id']}/cancel").status_code == 200
    wait(http, b2["id"])

    newest_first = ids(made)[::-1]
    assert ids(tagged(http, tag)) == newest_first
    assert ids(tagged(http, tag, agent_id=agent_a["agent_id"])) == [a2["id"], agent_a["id"]]
    assert ids(tagged(http, tag, thread_id=agent_a["thread_id"])) == [a2["id"], agent_a["id"]]
    assert ids(tagged(http, tag, user_id="alice")) == [b1["id"], agent_a["id"]]
    assert ids(tagged(http, tag, status="failed")) == [b1["id"]]
    assert ids(tagged(http, tag, status=["completed", "failed"])) == [b1["id"], a2["id"], agent_a["id"]]
    assert ids(tagged(http, tag, status="cancelled")) == [b2["id"]]
    assert ids(tagged(http, tag, **{"metadata[kind]": "b"})) == [b2["id"], b1["id"]]
    assert tagged(http, tag, **{"metadata[kind]": "c"}) == []

    # A point strictly between the second and the third run's creation.
    t1, t2 = (datetime.fromisoformat(r["created_at"]) for r in (a2, b1))
    middle = (t1 + (t2 - t1) / 2).isoformat()
    assert ids(tagged(http, tag, created_after=middle)) == [b2["id"], b1["id"]]
    assert ids(tagged(http, tag, created_before=middle)) == [a2["id"], agent_a["id"]]

    assert http.get("/v1/runs", params={"limit": 100}).status_code == 200
    r = http.get("/v1/runs", params={"limit": 101})
    assert r.status_code == 422, r.text


def test_list_pages_walk_every_run_once_in_both_directions(http: httpx.Client) -> None:
    tag = unique("tag")
    first = create(http, metadata={"tag": tag})
    made = [first["id"]] + [create(http, agent_id=first["agent_id"], metadata={"tag": tag})["id"] for _ in range(6)]
    newest_first = made[::-1]

    seen, cursors, params = [], [], {"metadata[tag]": tag, "limit": 3}
    while True:
        page = http.get("/v1/runs", params=params).json()
        seen += ids(page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursors.append(page["next_cursor"])
        params = {**params, "before": page["next_cursor"]}
    assert seen == newest_first
    assert len(cursors) == 2

    # `after` pages towards newer runs: from the second page's cursor (the 6th newest run) up.
    newer, params = [], {"metadata[tag]": tag, "limit": 2, "after": cursors[1]}
    while True:
        page = http.get("/v1/runs", params=params).json()
        assert ids(page["data"]) == sorted(ids(page["data"]), reverse=True)  # newest first within a page
        newer += ids(page["data"])
        if not page["has_more"]:
            break
        params = {**params, "after": page["next_cursor"]}
    assert sorted(newer, reverse=True) == newest_first[:5]
    assert len(newer) == len(set(newer))

    page = http.get("/v1/runs", params={"metadata[tag]": tag, "limit": 3, "after": cursors[0]}).json()
    assert ids(page["data"]) == newest_first[:2]
