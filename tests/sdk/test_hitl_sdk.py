"""Humans in the loop through the SDK, against the real server of the `server` fixture.

The offline `scripted` model pauses when its script calls `ask_user_question` or
`request_user_input`, or calls any tool under `permission_mode="approve_all"`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import runyard
from runyard import AsyncRunyard, RunStatus, Runyard, RunWaiting, Wait

QUESTION = [
    {"tool_calls": [{"name": "ask_user_question",
                     "args": {"questions": [{"question": "Color?", "options": ["red", "blue"]}]}}]},
    {"text": "chosen"},
]
INPUT = [{"tool_calls": [{"name": "request_user_input", "args": {"prompt": "Your name?"}}]}, {"text": "thanks"}]
CALC = [{"tool_calls": [{"name": "calculator", "args": {"expression": "2+2"}}]}, {"text": "done"}]
BOTH = [QUESTION[0], *CALC]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: Any) -> Iterator[Runyard]:
    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
async def aclient(server: Any) -> AsyncIterator[AsyncRunyard]:
    async with AsyncRunyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


def hitl(script: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": unique("hitl"), "instructions": "Ask when unsure.",
                              "human_in_the_loop": True, "metadata": {"script": script}}
    if any(c.get("name") == "calculator" for step in script for c in step.get("tool_calls", [])):
        params.update(tools=["calculator"], permission_mode="approve_all")
    return {**params, **extra}


def paused(client: Runyard, script: list[dict[str, Any]], **extra: Any) -> runyard.Run:
    run = client.runs.create("Help me", **hitl(script, **extra))
    run = client.runs.wait(run.id, timeout=10)  # no callbacks: returns the waiting run
    assert run.status is RunStatus.WAITING
    return run


def test_create_sends_the_hitl_options(client: Runyard) -> None:
    run = client.runs.create("x", **hitl(CALC, history=False, memory=False, wait_timeout=60,
                                         wait_timeout_action="fail"))
    assert (run.human_in_the_loop, run.permission_mode, run.history, run.memory) == (True, "approve_all", False, False)
    assert (run.wait_timeout, run.wait_timeout_action) == (60, "fail")
    with pytest.raises(runyard.ValidationError):
        client.runs.create("x", name=unique("a"), instructions="x", permission_mode="approve_all")
    client.runs.cancel(run.id)


def test_answer_a_question(client: Runyard) -> None:
    run = paused(client, QUESTION)
    assert (run.waiting_for, run.seed_status) == ("question", "waiting_for_input")
    [wait] = client.runs.waits(run.id)
    assert isinstance(wait, Wait) and wait.status == "open"
    assert wait.request["questions"][0]["options"] == ["red", "blue"]
    with pytest.raises(runyard.ValidationError, match="Color"):
        client.runs.answer(run.id, {"Color?": "green"})
    resolved = client.runs.answer(run.id, {"Color?": "red"}, wait_id=wait.id)
    assert (resolved.status, resolved.answer) == ("resolved", {"answers": {"Color?": "red"}})
    assert client.runs.answer(run.id, {"Color?": "red"}, wait_id=wait.id).id == wait.id  # idempotent
    with pytest.raises(runyard.ConflictError):
        client.runs.answer(run.id, {"Color?": "blue"}, wait_id=wait.id)
    done = client.runs.wait(run.id, timeout=10)
    assert (done.status, done.output) == (RunStatus.COMPLETED, "chosen")
    assert client.waits.get(wait.id).status == "resolved"


def test_approve_deny_with_a_reason(client: Runyard) -> None:
    run = paused(client, CALC)
    assert (run.waiting_for, run.seed_status) == ("approval", "awaiting_approval")
    wait = client.runs.approve(run.id, decision=False, reason="not now")
    assert wait.answer == {"decision": "deny", "reason": "not now"}
    assert client.runs.wait(run.id, timeout=10).status is RunStatus.COMPLETED
    types = [e.type for e in client.runs.stream_events(run.id)]
    assert "tool.denied" in types and "tool.result" not in types


def test_input_and_reply_to_a_waiting_run(client: Runyard) -> None:
    run = paused(client, INPUT)
    assert client.runs.input(run.id, "Ada").answer == {"content": "Ada"}
    assert client.runs.wait(run.id, timeout=10).output == "thanks"
    with pytest.raises(runyard.ConflictError):
        client.runs.input(run.id, "again")

    other = paused(client, INPUT)
    answered = client.runs.reply(other.id, "Grace")  # a reply to a waiting run answers it
    assert answered.id == other.id
    assert client.runs.waits(other.id)[0].answer == {"content": "Grace"}


def test_reply_starts_a_follow_up_on_the_thread(client: Runyard) -> None:
    first = client.runs.create_and_wait("hello", name=unique("f"), instructions="Echo.", timeout=10)
    follow = client.runs.reply(first.id, "and again")
    assert follow.id != first.id and follow.thread_id == first.thread_id
    assert client.runs.wait(follow.id, timeout=10).status is RunStatus.COMPLETED
    messages = client.threads.messages(first.thread_id)
    assert [(m.role, m.run_id) for m in messages if m.role == "user"] == [("user", first.id), ("user", follow.id)]


def test_append_message_to_a_running_run(client: Runyard) -> None:
    run = client.runs.create("slow", name=unique("a"), instructions="x",
                             metadata={"script": [{"delay": 0.5, "text": "a"}, {"text": "b"}]})
    updated = client.runs.append_message(run.id, "also this")
    assert updated.id == run.id
    client.runs.wait(run.id, timeout=10)
    with client.runs.stream_events(run.id) as stream:
        assert any(e.type == "message.appended" and e.data["message"] == "also this" for e in stream)
    with pytest.raises(runyard.ConflictError, match="reply"):
        client.runs.append_message(run.id, "too late")


def test_wait_answers_a_question_and_an_approval_through_callbacks(client: Runyard) -> None:
    asked: list[Wait] = []

    def on_question(wait: Wait) -> dict[str, str]:
        asked.append(wait)
        return {"Color?": "blue"}

    def on_approval(wait: Wait) -> dict[str, Any]:
        asked.append(wait)
        assert wait.request["name"] == "calculator"
        return {"decision": "allow", "remember": True}

    run = client.runs.create_and_wait("Help", **hitl(BOTH), timeout=20,
                                      on_question=on_question, on_approval=on_approval)
    assert (run.status, run.output) == (RunStatus.COMPLETED, "done")
    assert [w.kind for w in asked] == ["question", "approval"]
    answers = [w.answer for w in client.runs.waits(run.id)]
    assert answers == [{"answers": {"Color?": "blue"}}, {"decision": "allow", "remember": True}]


def test_wait_returns_the_waiting_run_without_a_callback_for_its_kind(client: Runyard) -> None:
    run = client.runs.create("Help", **hitl(BOTH))
    run = client.runs.wait(run.id, timeout=10, on_question=lambda wait: "red")  # a bare answer to one question
    assert (run.status, run.waiting_for) == (RunStatus.WAITING, "approval")
    with pytest.raises(TypeError, match="on_approval"):
        client.runs.wait(run.id, timeout=10, on_approval=lambda wait: 42)
    assert client.runs.wait(run.id, timeout=10, on_approval=lambda wait: True).output == "done"


def test_stream_surfaces_the_pause_and_goes_on_after_the_answer(client: Runyard) -> None:
    with client.runs.stream("Help", **hitl(QUESTION)) as stream:
        pauses = [e for e in stream if isinstance(e, RunWaiting)]
        # Iteration ended at the pause: the run waits and the stream says for what.
        assert len(pauses) == 1 and pauses[0].waiting_for == "question"
        assert [w.kind for w in pauses[0].waits] == ["question"]
        assert stream.waiting and stream.waiting[0].id == pauses[0].waits[0].id
        assert stream.final_run().status is RunStatus.WAITING
        client.runs.answer(stream.run_id, {"Color?": "red"})
        rest = [e.type for e in stream]  # iterating again goes on
        assert rest[0] == "run.input_received" and rest[-1] == "run.completed"
        assert not stream.waiting and stream.text == "chosen"


def test_stream_answered_inside_the_loop_runs_through(client: Runyard) -> None:
    types = []
    with client.runs.stream("Help", **hitl(CALC)) as stream:
        for event in stream:
            types.append(event.type)
            if isinstance(event, RunWaiting):
                client.runs.approve(stream.run_id, decision="allow", wait_id=event.waits[0].id)
    assert types[-1] == "run.completed"
    assert types.index("tool.approval_requested") < types.index("run.waiting") < types.index("tool.approved")
    # A stream of a run that paused long ago does not stop at the old pause.
    replay = [e.type for e in client.runs.stream_events(stream.run_id)]
    assert replay == types


def test_waits_list_across_runs(client: Runyard) -> None:
    user = unique("user")
    run = paused(client, QUESTION, user_id=user)
    page = client.waits.list(status="open", user_id=user)
    assert [w.run_id for w in page] == [run.id]
    assert [w.run_id for w in client.waits.list(run_id=run.id)] == [run.id]
    with pytest.raises(runyard.NotFoundError):
        client.waits.get("wait_missing")
    client.runs.cancel(run.id)
    assert list(client.waits.list(status="open", user_id=user)) == []
    assert client.waits.list(run_id=run.id, status="cancelled").data[0].status == "cancelled"


def test_threads_and_memories(client: Runyard) -> None:
    user = unique("user")
    thread = client.threads.create(user_id=user, metadata={"topic": "sdk"})
    assert client.threads.get(thread.id).metadata == {"topic": "sdk"}
    assert [t.id for t in client.threads.list(user_id=user, metadata={"topic": "sdk"})] == [thread.id]
    run = client.runs.create("hi", name=unique("t"), instructions="x", thread_id=thread.id)
    client.runs.wait(run.id, timeout=10)
    assert [m.role for m in client.threads.messages(thread.id)] == ["user", "assistant"]
    assert [r.id for r in client.threads.runs.list(thread.id)] == [run.id]
    assert client.threads.delete(thread.id).deleted
    with pytest.raises(runyard.NotFoundError):
        client.threads.get(thread.id)

    memory = client.users.memories.create(user, "Likes tea", metadata={"source": "test"})
    assert isinstance(memory, runyard.Memory) and memory.user_id == user
    client.users.memories.create(user, "Lives in Lisbon")
    assert [m.text for m in client.users.memories.list(user)] == ["Lives in Lisbon", "Likes tea"]
    assert client.users.memories.delete(user, memory.id).deleted
    assert client.users.memories.clear(user) == 1
    assert list(client.users.memories.list(user)) == []


async def test_async_answer_approve_and_wait_with_callbacks(aclient: AsyncRunyard) -> None:
    run = await aclient.runs.create("Help", **hitl(QUESTION))
    run = await aclient.runs.wait(run.id, timeout=10)
    assert run.status is RunStatus.WAITING
    assert (await aclient.runs.answer(run.id, {"Color?": "blue"})).status == "resolved"
    assert (await aclient.runs.wait(run.id, timeout=10)).output == "chosen"

    async def on_approval(wait: Wait) -> str:
        return "deny"

    done = await aclient.runs.create_and_wait("Help", **hitl(BOTH), timeout=20,
                                              on_question=lambda w: {"Color?": "red"}, on_approval=on_approval)
    assert done.status is RunStatus.COMPLETED
    assert [w.answer["decision"] for w in await aclient.runs.waits(done.id) if w.kind == "approval"] == ["deny"]

    run = await aclient.runs.create("Help", **hitl(CALC))
    run = await aclient.runs.wait(run.id, timeout=10)
    assert (await aclient.runs.approve(run.id, decision=True)).answer == {"decision": "allow"}
    assert (await aclient.runs.wait(run.id, timeout=10)).status is RunStatus.COMPLETED
    follow = await aclient.runs.reply(run.id, "more")
    assert follow.id != run.id and follow.thread_id == run.thread_id
    assert [w.id async for w in aclient.waits.list(run_id=run.id)] == [w.id for w in await aclient.runs.waits(run.id)]


async def test_async_stream_surfaces_the_pause(aclient: AsyncRunyard) -> None:
    async with aclient.runs.stream("Help", **hitl(INPUT)) as stream:
        pauses = [e async for e in stream if isinstance(e, RunWaiting)]
        assert pauses[0].waiting_for == "input" and stream.waiting
        await aclient.runs.input(stream.run_id, "Ada")
        assert [e.type async for e in stream][-1] == "run.completed"
    assert (await stream.final_run()).output == "thanks"


async def test_async_threads_and_memories(aclient: AsyncRunyard) -> None:
    user = unique("user")
    thread = await aclient.threads.create(user_id=user)
    assert (await aclient.threads.get(thread.id)).user_id == user
    assert [t.id async for t in aclient.threads.list(user_id=user)] == [thread.id]
    assert await aclient.threads.messages(thread.id) == []
    assert (await aclient.threads.delete(thread.id)).deleted
    memory = await aclient.users.memories.create(user, "Prefers email")
    assert [m.id async for m in aclient.users.memories.list(user)] == [memory.id]
    assert (await aclient.users.memories.delete(user, memory.id)).deleted
    assert await aclient.users.memories.clear(user) == 0
