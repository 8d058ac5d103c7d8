"""Threads and per-user memory over HTTP (issue 3, §4 threads and §5; invariant 9 of DESIGN.md).

Threads: create, get, list (by `user_id`, `metadata[key]`), delete (409 while a run is
active), and the conversation in order with the run each message came from. Memories: CRUD
under `/v1/users/{user_id}/memories`, scoped by org; a run with a `user_id` gets the user's
memories in its instructions and the `save_memory` / `forget_memory` tools (unless `memory`
is false). What the model is sent is read on the wire from a FakeProvider.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
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
def srv(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    tmp: Path = tmp_path_factory.mktemp("threads-memories")
    mp = pytest.MonkeyPatch()
    mp.setenv("RUNYARD_TEST_FAKE_KEY", "sk-fake")
    routes = tmp / "routes.toml"
    routes.write_text(ROUTES.format(base=fake.base_url))
    server = ServerInThread(Settings(database_url=f"sqlite+aiosqlite:///{tmp / 'tm.db'}", api_key=ADMIN_KEY,
                                     routes=routes)).start()
    try:
        yield server
    finally:
        server.stop()
        mp.undo()


@pytest.fixture(scope="module")
def client(srv: ServerInThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http:
        yield http


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create(http: httpx.Client, script: list[dict[str, Any]] | None = None, *, path: str = "/v1/runs",
           **body: Any) -> dict[str, Any]:
    body = {"name": uid("tm"), "instructions": "You are terse.", "message": "go", **body}
    if script is not None:
        body.setdefault("metadata", {})["script"] = script
    r = http.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()


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


def events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()["data"]


def of_type(log: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in log if e["type"] == type_]


def declared(http: httpx.Client, run_id: str) -> list[str]:
    [tools] = of_type(events(http, run_id), "tools.declared")
    return [t["name"] for t in tools["tools"]]


def memories(http: httpx.Client, user: str) -> list[dict[str, Any]]:
    r = http.get(f"/v1/users/{user}/memories")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def request_for(fake: FakeProvider, message: str) -> dict[str, Any]:
    """The first model request whose latest user message is `message`."""
    for body in fake.requests:
        users = [m for m in body["messages"] if m["role"] == "user"]
        if users and users[-1]["content"] == message:
            return body
    raise AssertionError(f"no model request for {message!r}")


def system_text(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools", [])]


# --- Threads -------------------------------------------------------------------------------------


def test_thread_create_get_list_delete(client: httpx.Client) -> None:
    user, team = uid("user"), uid("team")
    r = client.post("/v1/threads", json={"user_id": user, "metadata": {"team": team, "n": 1}})
    assert r.status_code == 201, r.text
    thread = r.json()
    assert thread["id"].startswith("thr_") and thread["object"] == "thread"
    assert thread["user_id"] == user and thread["metadata"] == {"team": team, "n": 1} and thread["created_at"]
    other = client.post("/v1/threads", json={"user_id": user}).json()
    unrelated = client.post("/v1/threads", json={"metadata": {"team": uid("team")}}).json()

    fetched = client.get(f"/v1/threads/{thread['id']}").json()
    assert {k: fetched[k] for k in ("id", "user_id", "metadata", "created_at")} == {
        k: thread[k] for k in ("id", "user_id", "metadata", "created_at")}
    by_user = client.get("/v1/threads", params={"user_id": user}).json()
    assert [t["id"] for t in by_user["data"]] == [other["id"], thread["id"]]  # newest first
    by_meta = client.get("/v1/threads", params={"metadata[team]": team}).json()["data"]
    assert [t["id"] for t in by_meta] == [thread["id"]]
    assert client.get("/v1/threads", params={"metadata[team]": team, "user_id": uid("nobody")}
                      ).json()["data"] == []
    page = client.get("/v1/threads", params={"user_id": user, "limit": 1}).json()
    assert len(page["data"]) == 1 and page["has_more"] is True
    assert unrelated["id"] not in [t["id"] for t in by_user["data"]]

    r = client.delete(f"/v1/threads/{thread['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": thread["id"], "object": "thread", "deleted": True}
    assert client.get(f"/v1/threads/{thread['id']}").status_code == 404
    assert client.delete(f"/v1/threads/{thread['id']}").status_code == 404
    assert [t["id"] for t in client.get("/v1/threads", params={"user_id": user}).json()["data"]] == [other["id"]]
    assert client.get("/v1/threads/thr_doesnotexist/messages").status_code == 404
    assert client.post("/v1/threads", json={"user_id": ""}).status_code == 422
    assert client.post("/v1/threads", json={"bogus": 1}).status_code == 422
    # The created thread is the same object GET returns: no internal fields (the org's id) in it.
    assert "org_id" not in thread, thread
    assert thread == fetched


def test_thread_messages_in_order_with_their_runs(client: httpx.Client) -> None:
    thread = client.post("/v1/threads", json={}).json()
    path = f"/v1/threads/{thread['id']}/runs"
    script = [{"text": "Let me add.", "tool_calls": [{"name": "calculator", "args": {"expression": "2+3"}}]},
              {"text": "It is 5."}]
    first = create(client, script, path=path, tools=["calculator"], message="add 2 and 3")
    finished(client, first["id"])
    second = create(client, path=path, agent_id=first["agent_id"], message="thanks")  # the scripted echo
    assert finished(client, second["id"])["output"] == "You said: thanks"
    r = client.get(f"/v1/threads/{thread['id']}/messages")
    assert r.status_code == 200, r.text
    got = [(m["run_id"], m["role"], m.get("tool_name"), m["content"]) for m in r.json()]
    assert got == [
        (first["id"], "user", None, "add 2 and 3"),
        (first["id"], "assistant", None, "Let me add."),
        (first["id"], "assistant", "calculator", {"expression": "2+3"}),
        (first["id"], "tool", "calculator", "5"),
        (first["id"], "assistant", None, "It is 5."),
        (second["id"], "user", None, "thanks"),
        (second["id"], "assistant", None, "You said: thanks"),
    ]
    stamps = [m["created_at"] for m in r.json()]
    assert all(stamps) and stamps == sorted(stamps)
    assert [run["id"] for run in client.get(f"{path}").json()["data"]] == [second["id"], first["id"]]


def test_delete_thread_with_an_active_run_is_409(client: httpx.Client) -> None:
    run = create(client, [{"tool_calls": [{"name": "ask_user_question", "args": {"questions": [{"question": "?"}]}}]}],
                 human_in_the_loop=True)
    wait_until(lambda: client.get(f"/v1/runs/{run['id']}").json()["status"] == "waiting")
    r = client.delete(f"/v1/threads/{run['thread_id']}")
    assert r.status_code == 409, r.text
    assert run["id"] in r.json()["error"]["message"]
    assert client.get(f"/v1/threads/{run['thread_id']}").status_code == 200
    assert client.get(f"/v1/runs/{run['id']}").json()["status"] == "waiting"

    assert client.post(f"/v1/runs/{run['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/threads/{run['thread_id']}").status_code == 200
    # The thread's runs and their records went with it.
    assert client.get(f"/v1/runs/{run['id']}").status_code == 404
    assert client.get(f"/v1/runs/{run['id']}/waits").status_code == 404


def test_threads_are_scoped_by_org(srv: ServerInThread, client: httpx.Client) -> None:
    thread = client.post("/v1/threads", json={"user_id": "shared-user"}).json()
    with httpx.Client(base_url=srv.base_url, headers=srv.headers(srv.create_key(uid("org"))), timeout=30) as other:
        assert other.get(f"/v1/threads/{thread['id']}").status_code == 404
        assert other.get(f"/v1/threads/{thread['id']}/messages").status_code == 404
        assert other.delete(f"/v1/threads/{thread['id']}").status_code == 404
        assert other.get("/v1/threads", params={"user_id": "shared-user"}).json()["data"] == []
    assert client.get(f"/v1/threads/{thread['id']}").status_code == 200


# --- Memories ------------------------------------------------------------------------------------


def test_memories_create_list_delete(client: httpx.Client) -> None:
    user = uid("user")
    r = client.post(f"/v1/users/{user}/memories", json={"text": "Prefers metric units", "metadata": {"src": "ui"}})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["id"].startswith("mem_") and first["object"] == "memory" and first["user_id"] == user
    assert first["text"] == "Prefers metric units" and first["metadata"] == {"src": "ui"} and first["created_at"]
    second = client.post(f"/v1/users/{user}/memories", json={"text": "Lives in Lyon"}).json()
    assert {m["id"] for m in memories(client, user)} == {first["id"], second["id"]}
    assert memories(client, uid("someone-else")) == []

    r = client.delete(f"/v1/users/{user}/memories/{first['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": first["id"], "object": "memory", "deleted": True}
    assert [m["id"] for m in memories(client, user)] == [second["id"]]
    assert client.delete(f"/v1/users/{user}/memories/{first['id']}").status_code == 404
    # A memory is only reachable under its own user.
    assert client.delete(f"/v1/users/{uid('other')}/memories/{second['id']}").status_code == 404

    client.post(f"/v1/users/{user}/memories", json={"text": "Has a cat"})
    r = client.delete(f"/v1/users/{user}/memories")
    assert r.status_code == 200 and r.json()["deleted"] == 2, r.text
    assert memories(client, user) == []

    assert client.post(f"/v1/users/{user}/memories", json={"text": ""}).status_code == 422
    assert client.post(f"/v1/users/{user}/memories", json={"text": "x" * 4001}).status_code == 422
    assert client.post(f"/v1/users/{user}/memories", json={}).status_code == 422


def test_memories_are_scoped_by_org(srv: ServerInThread, client: httpx.Client) -> None:
    user = uid("user")
    mine = client.post(f"/v1/users/{user}/memories", json={"text": "org A knows this"}).json()
    with httpx.Client(base_url=srv.base_url, headers=srv.headers(srv.create_key(uid("org"))), timeout=30) as other:
        assert other.get(f"/v1/users/{user}/memories").json()["data"] == []
        assert other.delete(f"/v1/users/{user}/memories/{mine['id']}").status_code == 404
        assert other.delete(f"/v1/users/{user}/memories").json()["deleted"] == 0
        theirs = other.post(f"/v1/users/{user}/memories", json={"text": "org B knows that"}).json()
        assert [m["id"] for m in other.get(f"/v1/users/{user}/memories").json()["data"]] == [theirs["id"]]
    assert [m["id"] for m in memories(client, user)] == [mine["id"]]


def test_a_run_with_user_id_gets_the_memories_and_tools(client: httpx.Client, fake: FakeProvider) -> None:
    user = uid("user")
    fact = client.post(f"/v1/users/{user}/memories", json={"text": f"Favourite colour is teal ({user})"}).json()
    other_fact = client.post(f"/v1/users/{uid('user')}/memories", json={"text": "Somebody else's fact"}).json()

    message = uid("with-memory")
    run = create(client, model="fake", user_id=user, message=message)
    assert finished(client, run["id"])["status"] == "completed"
    body = request_for(fake, message)
    system = system_text(body)
    assert "You are terse." in system
    assert fact["text"] in system and fact["id"] in system  # the id lets the model forget it
    assert other_fact["text"] not in system
    assert {"save_memory", "forget_memory"} <= set(tool_names(body))
    assert declared(client, run["id"]) == ["save_memory", "forget_memory"]
    assert [t["side_effects"] for t in of_type(events(client, run["id"]), "tools.declared")[0]["tools"]] == [
        True, True]

    # memory: false → neither the memories nor the tools.
    message = uid("memory-off")
    run = create(client, model="fake", user_id=user, message=message, memory=False)
    finished(client, run["id"])
    body = request_for(fake, message)
    assert fact["text"] not in system_text(body)
    assert not {"save_memory", "forget_memory"} & set(tool_names(body))
    assert declared(client, run["id"]) == []

    # No user_id → nothing to remember about.
    message = uid("anonymous")
    run = create(client, model="fake", message=message)
    finished(client, run["id"])
    body = request_for(fake, message)
    assert not {"save_memory", "forget_memory"} & set(tool_names(body))
    assert "Favourite colour" not in system_text(body)
    assert declared(client, run["id"]) == []


def test_save_and_forget_memory_from_a_run(client: httpx.Client) -> None:
    user = uid("user")
    old = client.post(f"/v1/users/{user}/memories", json={"text": "Uses imperial units"}).json()
    script = [
        {"tool_calls": [{"name": "save_memory", "args": {"text": "Prefers metric units"}}]},
        {"tool_calls": [{"name": "forget_memory", "args": {"memory_id": old["id"]}}]},
        {"text": "noted"},
    ]
    run = create(client, script, user_id=user)
    done = finished(client, run["id"])
    assert done["status"] == "completed" and done["output"] == "noted"
    log = events(client, run["id"])
    [saved] = of_type(log, "memory.saved")
    assert saved["user_id"] == user and saved["text"] == "Prefers metric units"
    [deleted] = of_type(log, "memory.deleted")
    assert deleted == {"memory_id": old["id"], "user_id": user}
    listed = memories(client, user)
    assert [(m["id"], m["text"], m["run_id"]) for m in listed] == [(saved["memory_id"], "Prefers metric units",
                                                                      run["id"])]

    # The next run of that user starts with what was saved.
    follow = create(client, [{"tool_calls": [{"name": "forget_memory", "args": {"memory_id": "mem_nope"}}]},
                             {"text": "ok"}], user_id=user)
    assert finished(client, follow["id"])["status"] == "completed"
    log = events(client, follow["id"])
    assert of_type(log, "memory.deleted") == []
    assert [e["name"] for e in of_type(log, "tool.error")] == ["forget_memory"]
    assert [m["id"] for m in memories(client, user)] == [saved["memory_id"]]


def test_memory_tools_are_not_offered_without_user_id(client: httpx.Client) -> None:
    run = create(client, [{"tool_calls": [{"name": "save_memory", "args": {"text": "sneaky"}}]}, {"text": "ok"}])
    assert finished(client, run["id"])["status"] == "completed"
    log = events(client, run["id"])
    assert of_type(log, "memory.saved") == []
    assert [e["name"] for e in of_type(log, "tool.error")] == ["save_memory"]  # unknown tool: the model retries
