"""Follow-ups over HTTP (issue 3, §4): replies, messages appended to a run in flight, the
`history` option and `multitask` on a thread with an active run.

What the model is sent is checked on the wire: runs on the `fake` route go to a FakeProvider
(the real OpenAI protocol on 127.0.0.1) which records every request. Runs without a model
override use the offline `scripted` model.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.servers import ADMIN_KEY, ServerInThread, wait_until
from support.fake_provider import FakeProvider
from runyard.config import Settings

TERMINAL = {"completed", "failed", "cancelled"}
ROUTES = """\
[routes.fake]
model = "openai:gpt-4o-mini"
base_url = "{base}/v1"
api_key_env = "RUNYARD_TEST_FAKE_KEY"
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider([]) as provider:  # every request is answered "done"
        yield provider


@pytest.fixture(scope="module")
def client(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp: Path = tmp_path_factory.mktemp("followups")
    mp = pytest.MonkeyPatch()
    mp.setenv("RUNYARD_TEST_FAKE_KEY", "sk-fake")
    routes = tmp / "routes.toml"
    routes.write_text(ROUTES.format(base=fake.base_url))
    srv = ServerInThread(Settings(database_url=f"sqlite+aiosqlite:///{tmp / 'f.db'}", api_key=ADMIN_KEY,
                                  routes=routes)).start()
    try:
        with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http:
            yield http
    finally:
        srv.stop()
        mp.undo()


def create(http: httpx.Client, script: list[dict[str, Any]] | None = None, *, path: str = "/v1/runs",
           **body: Any) -> dict[str, Any]:
    body = {"name": f"fu-{uuid.uuid4().hex[:12]}", "instructions": "be brief", "message": "go", **body}
    if script is not None:
        body.setdefault("metadata", {})["script"] = script
    r = http.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def get(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return http.get(f"/v1/runs/{run_id}").json()


def finished(http: httpx.Client, run_id: str, timeout: float = 15) -> dict[str, Any]:
    """The run once terminal (the long-poll also returns when the run waits for a human: poll on)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": min(remaining, 60)}).json()
        if run["status"] in TERMINAL or remaining <= 0:
            break
        time.sleep(0.05)
    assert run["status"] in TERMINAL, run
    return run


def until_status(http: httpx.Client, run_id: str, *statuses: str) -> dict[str, Any]:
    return wait_until(lambda: (run := get(http, run_id))["status"] in statuses and run)


def events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()["data"]


def types(http: httpx.Client, run_id: str) -> list[str]:
    return [e["type"] for e in events(http, run_id)]


def event_time(http: httpx.Client, run_id: str, *types_: str) -> datetime:
    [found] = [e for e in events(http, run_id) if e["type"] in types_]
    return datetime.fromisoformat(found["created_at"].replace("Z", "+00:00"))


def messages(http: httpx.Client, thread_id: str) -> list[dict[str, Any]]:
    r = http.get(f"/v1/threads/{thread_id}/messages")
    assert r.status_code == 200, r.text
    return r.json()


def error_of(r: httpx.Response) -> dict[str, Any]:
    return r.json()["error"]


def sent_for(fake: FakeProvider, last_user_message: str) -> list[dict[str, Any]]:
    """The chat messages of the (first) model request whose latest user message is this one."""
    for body in fake.requests:
        users = [m for m in body["messages"] if m["role"] == "user"]
        if users and users[-1]["content"] == last_user_message:
            return body["messages"]
    raise AssertionError(f"no model request ended with the user message {last_user_message!r}")


def chat(sent: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in sent if m["role"] != "system"]


# --- reply ---------------------------------------------------------------------------------------


def test_reply_to_a_completed_run_continues_the_thread(client: httpx.Client, fake: FakeProvider) -> None:
    tag = uuid.uuid4().hex[:8]
    first = create(client, model="fake", message=f"My name is Ada ({tag}).")
    assert finished(client, first["id"])["output"] == "done"

    r = client.post(f"/v1/runs/{first['id']}/reply", json={"message": f"What is my name? ({tag})"})
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["id"] != first["id"] and second["object"] == "run"
    assert second["thread_id"] == first["thread_id"] and second["agent_id"] == first["agent_id"]
    assert second["model"] == "fake" and second["original_prompt"] == f"What is my name? ({tag})"
    assert finished(client, second["id"])["status"] == "completed"

    # The model got the earlier conversation first, then the reply.
    assert chat(sent_for(fake, f"What is my name? ({tag})")) == [
        ("user", f"My name is Ada ({tag})."), ("assistant", "done"), ("user", f"What is my name? ({tag})")]
    # And the thread's conversation lists both runs in order.
    assert [(m["run_id"], m["role"], m["content"]) for m in messages(client, first["thread_id"])] == [
        (first["id"], "user", f"My name is Ada ({tag})."), (first["id"], "assistant", "done"),
        (second["id"], "user", f"What is my name? ({tag})"), (second["id"], "assistant", "done")]

    # A reply to the reply sees both earlier exchanges.
    r = client.post(f"/v1/runs/{second['id']}/reply", json={"message": f"And again? ({tag})"})
    assert r.status_code == 201, r.text
    finished(client, r.json()["id"])
    assert [c for _, c in chat(sent_for(fake, f"And again? ({tag})"))] == [
        f"My name is Ada ({tag}).", "done", f"What is my name? ({tag})", "done", f"And again? ({tag})"]


def test_reply_keeps_the_run_options(client: httpx.Client) -> None:
    first = create(client, [{"text": "hello"}], user_id="u-reply", human_in_the_loop=True, memory=False)
    finished(client, first["id"])
    r = client.post(f"/v1/runs/{first['id']}/reply", json={"message": "again"})
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["user_id"] == "u-reply" and second["human_in_the_loop"] is True and second["memory"] is False
    finished(client, second["id"])


def test_history_false_starts_clean_on_the_same_thread(client: httpx.Client, fake: FakeProvider) -> None:
    tag = uuid.uuid4().hex[:8]
    first = create(client, model="fake", message=f"remember {tag}")
    finished(client, first["id"])
    thread = first["thread_id"]
    clean = create(client, path=f"/v1/threads/{thread}/runs", agent_id=first["agent_id"], model="fake",
                   message=f"clean slate {tag}", history=False)
    assert clean["history"] is False and clean["thread_id"] == thread
    finished(client, clean["id"])
    assert chat(sent_for(fake, f"clean slate {tag}")) == [("user", f"clean slate {tag}")]
    # With history (the default) the same thread gives the earlier runs as context.
    full = create(client, path=f"/v1/threads/{thread}/runs", agent_id=first["agent_id"], model="fake",
                  message=f"full context {tag}")
    assert full["history"] is True
    finished(client, full["id"])
    assert [c for _, c in chat(sent_for(fake, f"full context {tag}"))] == [
        f"remember {tag}", "done", f"clean slate {tag}", "done", f"full context {tag}"]
    # A reply to the clean run keeps history=false.
    r = client.post(f"/v1/runs/{clean['id']}/reply", json={"message": f"still clean {tag}"})
    assert r.status_code == 201 and r.json()["history"] is False
    finished(client, r.json()["id"])
    assert chat(sent_for(fake, f"still clean {tag}")) == [("user", f"still clean {tag}")]


def test_reply_to_a_waiting_run_answers_it(client: httpx.Client) -> None:
    ask = {"tool_calls": [{"name": "ask_user_question",
                           "args": {"questions": [{"question": "Color?", "options": ["red", "blue"]}]}}]}
    run = create(client, [ask, {"text": "painted"}], human_in_the_loop=True)
    until_status(client, run["id"], "waiting")
    r = client.post(f"/v1/runs/{run['id']}/reply", json={"message": "blue"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == run["id"]
    assert r.json()["status"] != "waiting"
    done = finished(client, run["id"])
    assert done["status"] == "completed" and done["output"] == "painted"
    [wait] = client.get(f"/v1/runs/{run['id']}/waits").json()["data"]
    assert wait["status"] == "resolved" and wait["answer"] == {"answers": {"Color?": "blue"}}
    # No new run: the reply was the answer.
    assert [x["id"] for x in client.get(f"/v1/threads/{run['thread_id']}/runs").json()["data"]] == [run["id"]]
    tool = [m for m in messages(client, run["thread_id"]) if m["role"] == "tool"]
    assert len(tool) == 1 and "blue" in tool[0]["content"]


def test_reply_to_a_run_cancelled_while_waiting(client: httpx.Client, fake: FakeProvider) -> None:
    """The earlier run ended with an unanswered tool call: the follow-up still starts cleanly."""
    tag = uuid.uuid4().hex[:8]
    ask = {"tool_calls": [{"name": "ask_user_question", "args": {"questions": [{"question": "Color?"}]}}]}
    run = create(client, [ask], human_in_the_loop=True, message=f"paint it ({tag})")
    until_status(client, run["id"], "waiting")
    assert client.post(f"/v1/runs/{run['id']}/cancel").json()["status"] == "cancelled"
    r = client.post(f"/v1/runs/{run['id']}/reply", json={"message": f"never mind ({tag})"})
    assert r.status_code == 201, r.text
    done = finished(client, r.json()["id"])
    assert done["status"] == "completed", done
    assert done["output"] == f"You said: never mind ({tag})"
    # On the wire too: the earlier conversation, then the reply.
    r = client.post(f"/v1/runs/{done['id']}/reply", json={"message": f"on the wire ({tag})"})
    assert r.status_code == 201, r.text
    r = client.post("/v1/runs", json={"agent_id": run["agent_id"], "thread_id": run["thread_id"], "model": "fake",
                                      "message": f"fake ({tag})", "multitask": "enqueue"})
    assert r.status_code == 201, r.text
    assert finished(client, r.json()["id"])["status"] == "completed"
    users = [c for role, c in chat(sent_for(fake, f"fake ({tag})")) if role == "user"]
    assert users == [f"paint it ({tag})", f"never mind ({tag})", f"on the wire ({tag})", f"fake ({tag})"]


def test_reply_to_a_running_run_is_409(client: httpx.Client) -> None:
    run = create(client, [{"delay": 1.0, "text": "slow"}])
    until_status(client, run["id"], "running")
    r = client.post(f"/v1/runs/{run['id']}/reply", json={"message": "hurry"})
    assert r.status_code == 409, r.text
    assert "/messages" in error_of(r)["message"]
    assert finished(client, run["id"])["output"] == "slow"
    assert len(client.get(f"/v1/threads/{run['thread_id']}/runs").json()["data"]) == 1
    assert client.post("/v1/runs/run_doesnotexist/reply", json={"message": "x"}).status_code == 404
    assert client.post(f"/v1/runs/{run['id']}/reply", json={"message": ""}).status_code == 422
    assert client.post(f"/v1/runs/{run['id']}/reply", json={"message": "x" * (32 * 1024 + 1)}).status_code == 413


# --- messages to a run in flight ------------------------------------------------------------------


def test_message_to_a_running_run_reaches_the_model_at_its_next_step(client: httpx.Client) -> None:
    script = [{"text": "first", "tool_calls": [{"name": "sleep", "args": {"seconds": 1}}]}, {"text": "ok"}]
    run = create(client, script, tools=["sleep"])
    # tool.call is committed before the tool runs: the model's first step is over, the tool sleeps.
    wait_until(lambda: "tool.call" in types(client, run["id"]))
    r = client.post(f"/v1/runs/{run['id']}/messages", json={"message": "also, use metric units"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == run["id"]
    done = finished(client, run["id"])
    assert done["status"] == "completed" and done["output"] == "ok"
    log = events(client, run["id"])
    [appended] = [e for e in log if e["type"] == "message.appended"]
    assert appended["data"] == {"message": "also, use metric units"}
    t = [e["type"] for e in log]
    assert t.index("tool.call") < t.index("message.appended")
    # The model got it at its next request, with the tool's result.
    convo = [(m["run_id"], m["role"], m.get("tool_name"), m["content"]) for m in messages(client, run["thread_id"])]
    assert convo == [
        (run["id"], "user", None, "go"),
        (run["id"], "assistant", None, "first"),
        (run["id"], "assistant", "sleep", {"seconds": 1}),
        (run["id"], "tool", "sleep", "slept 1.0 s"),
        (run["id"], "user", None, "also, use metric units"),
        (run["id"], "assistant", None, "ok"),
    ]


def test_message_during_the_last_step_starts_one_more_turn(client: httpx.Client) -> None:
    script = [{"tool_calls": [{"name": "sleep", "args": {"seconds": 0}}]}, {"delay": 1.5, "text": "first answer"}]
    run = create(client, script, tools=["sleep"])
    wait_until(lambda: "tool.result" in types(client, run["id"]))
    time.sleep(0.3)  # the model is now in its last step's delay
    assert client.post(f"/v1/runs/{run['id']}/messages", json={"message": "one more thing"}).status_code == 200
    done = finished(client, run["id"])
    # Not the answer given before the message arrived: the model was asked again with it.
    assert done["status"] == "completed" and done["output"] == "done"
    convo = [(m["role"], m["content"]) for m in messages(client, run["thread_id"]) if m["role"] != "tool"]
    assert convo[-3:] == [("assistant", "first answer"), ("user", "one more thing"), ("assistant", "done")]


def test_message_to_an_ended_run_is_409_pointing_to_reply(client: httpx.Client) -> None:
    run = create(client, [{"text": "hi"}])
    finished(client, run["id"])
    r = client.post(f"/v1/runs/{run['id']}/messages", json={"message": "hello?"})
    assert r.status_code == 409, r.text
    assert "reply" in error_of(r)["message"]
    assert "message.appended" not in types(client, run["id"])
    assert client.post(f"/v1/runs/{run['id']}/messages", json={"message": "x" * (32 * 1024 + 1)}).status_code == 413
    assert client.post("/v1/runs/run_doesnotexist/messages", json={"message": "x"}).status_code == 404


# --- multitask --------------------------------------------------------------------------------------


def test_multitask_reject_is_the_default(client: httpx.Client) -> None:
    first = create(client, [{"delay": 1.0, "text": "slow"}])
    thread = first["thread_id"]
    for path, body in [(f"/v1/threads/{thread}/runs", {}), ("/v1/runs", {"thread_id": thread}),
                       (f"/v1/threads/{thread}/runs", {"multitask": "reject"})]:
        r = client.post(path, json={"agent_id": first["agent_id"], "message": "second", **body})
        assert r.status_code == 409, (path, r.text)
        assert error_of(r)["field"] == "multitask" and first["id"] in error_of(r)["message"]
    assert finished(client, first["id"])["status"] == "completed"
    assert len(client.get(f"/v1/threads/{thread}/runs").json()["data"]) == 1
    # Once it ended the thread takes new runs again.
    later = create(client, path=f"/v1/threads/{thread}/runs", agent_id=first["agent_id"], message="later")
    assert finished(client, later["id"])["status"] == "completed"


def test_multitask_enqueue_starts_after_the_active_run(client: httpx.Client) -> None:
    first = create(client, [{"delay": 1.0, "text": "first"}])
    until_status(client, first["id"], "running")
    second = create(client, path=f"/v1/threads/{first['thread_id']}/runs", agent_id=first["agent_id"],
                    message="second", multitask="enqueue")
    assert get(client, second["id"])["status"] == "pending"
    assert finished(client, first["id"])["status"] == "completed"
    assert finished(client, second["id"])["status"] == "completed"
    assert event_time(client, second["id"], "run.started") >= event_time(client, first["id"], "run.completed")
    assert "run.cancelled" not in types(client, first["id"])


def test_multitask_enqueue_waits_for_a_waiting_run(client: httpx.Client) -> None:
    ask = {"tool_calls": [{"name": "ask_user_question", "args": {"questions": [{"question": "Go?"}]}}]}
    first = create(client, [ask, {"text": "went"}], human_in_the_loop=True)
    until_status(client, first["id"], "waiting")
    second = create(client, path=f"/v1/threads/{first['thread_id']}/runs", agent_id=first["agent_id"],
                    message="next", multitask="enqueue")
    # A run waiting for a human is still the thread's active run.
    time.sleep(0.5)
    assert get(client, second["id"])["status"] == "pending"
    assert client.post(f"/v1/runs/{first['id']}/answer", json={"answers": {"Go?": "yes"}}).status_code == 200
    assert finished(client, second["id"])["status"] == "completed"
    assert event_time(client, second["id"], "run.started") >= event_time(client, first["id"], "run.completed")


def test_multitask_interrupt_cancels_the_active_run(client: httpx.Client) -> None:
    first = create(client, [{"delay": 5.0, "text": "never"}])
    until_status(client, first["id"], "running")
    second = create(client, path=f"/v1/threads/{first['thread_id']}/runs", agent_id=first["agent_id"],
                    message="instead", multitask="interrupt")
    assert finished(client, first["id"], timeout=5)["status"] == "cancelled"
    done = finished(client, second["id"])
    assert done["status"] == "completed"
    assert event_time(client, second["id"], "run.started") >= event_time(client, first["id"], "run.cancelled")
    assert types(client, first["id"])[-1] == "run.cancelled"


def test_multitask_interrupt_cancels_a_waiting_run(client: httpx.Client) -> None:
    ask = {"tool_calls": [{"name": "ask_user_question", "args": {"questions": [{"question": "Go?"}]}}]}
    first = create(client, [ask], human_in_the_loop=True)
    until_status(client, first["id"], "waiting")
    second = create(client, path=f"/v1/threads/{first['thread_id']}/runs", agent_id=first["agent_id"],
                    message="instead", multitask="interrupt")
    assert finished(client, second["id"])["status"] == "completed"
    assert get(client, first["id"])["status"] == "cancelled"
    assert [w["status"] for w in client.get(f"/v1/runs/{first['id']}/waits").json()["data"]] == ["cancelled"]


def test_multitask_is_validated(client: httpx.Client) -> None:
    r = client.post("/v1/runs", json={"name": "mt", "instructions": "x", "message": "m", "multitask": "later"})
    assert r.status_code == 422, r.text
