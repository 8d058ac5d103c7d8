"""`runyard run --hitl`, `runyard waits list` and `runyard runs answer | approve | reply` as a user
runs them: a subprocess against the real server of the `server` fixture, answering on stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runyard import RunStatus, Runyard



def cli_env(server: Any) -> dict[str, str]:
    env = {**os.environ, "RUNYARD_BASE_URL": server.base_url, "RUNYARD_API_KEY": server.api_key}
    env.pop("COLUMNS", None)
    return env


def runyard_cli(server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runyard", *args], env=cli_env(server), capture_output=True,
                          text=True, timeout=60)

QUESTION = {"tool_calls": [{"name": "ask_user_question",
                            "args": {"questions": [{"question": "Color?", "options": ["red", "blue"]}]}}]}
CALC = {"tool_calls": [{"name": "calculator", "args": {"expression": "2+2"}}]}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: Any) -> Iterator[Runyard]:
    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


def agent(client: Runyard, script: list[dict[str, Any]]) -> str:
    name = unique("hitl")
    client.agents.create(name, instructions="Ask.", tools=["calculator"], metadata={"script": script})
    return name


def paused(client: Runyard, script: list[dict[str, Any]], **extra: Any) -> str:
    run = client.runs.create("Help", name=unique("p"), instructions="x", tools=["calculator"],
                             human_in_the_loop=True, metadata={"script": script}, **extra)
    assert client.runs.wait(run.id, timeout=10).status is RunStatus.WAITING
    return run.id


def test_run_hitl_asks_a_picker_and_an_approval_on_the_terminal(server: Any, client: Runyard) -> None:
    name = agent(client, [QUESTION, CALC, {"text": "done"}])
    result = subprocess.run(
        [sys.executable, "-m", "runyard", "run", "help me", "--agent", name, "--hitl",
         "--permission-mode", "approve_all"],
        env=cli_env(server), input="7\n2\ndeny\nnot today\n", capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # The picker numbers the options, re-asks after a bad pick, then the approval asks allow/deny + reason.
    assert "1) red" in result.stderr and "2) blue" in result.stderr and "pick one of 1-2" in result.stderr
    assert "allow calculator" in result.stderr
    assert "⏸ waiting for question" in result.stdout and "⏸ waiting for approval" in result.stdout
    assert "denied calculator: not today" in result.stdout
    assert result.stdout.rstrip().endswith("done")
    assert result.stderr.strip().splitlines()[-1].startswith("✓ completed")
    run = client.runs.list(limit=1).data[0]
    answers = [w.answer for w in client.runs.waits(run.id)]
    assert answers == [{"answers": {"Color?": "blue"}}, {"decision": "deny", "reason": "not today"}]


def test_run_hitl_with_stdin_closed_leaves_the_run_waiting(server: Any, client: Runyard) -> None:
    name = agent(client, [QUESTION, {"text": "done"}])
    result = subprocess.run(
        [sys.executable, "-m", "runyard", "run", "help me", "--agent", name, "--hitl"],
        env=cli_env(server), input="", capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "stdin closed" in result.stderr and "⏸ waiting for question: answer with" in result.stderr


def test_permission_mode_needs_hitl(server: Any) -> None:
    result = runyard_cli(server, "run", "x", "--permission-mode", "approve_all")
    assert result.returncode == 2 and "--hitl" in result.stderr


def test_waits_list_and_runs_answer(server: Any, client: Runyard) -> None:
    user = unique("user")
    run_id = paused(client, [QUESTION, {"text": "ok"}], user_id=user)
    listed = runyard_cli(server, "waits", "list", "--status", "open", "--user-id", user, "--json")
    assert listed.returncode == 0, listed.stderr
    [wait] = json.loads(listed.stdout)
    assert (wait["run_id"], wait["kind"], wait["status"]) == (run_id, "question", "open")
    table = runyard_cli(server, "waits", "list", "--user-id", user)
    assert wait["id"] in table.stdout and "Color?" in table.stdout

    bad = runyard_cli(server, "runs", "answer", run_id, "--answer", "Color?=green")
    assert bad.returncode == 1 and "answer_schema" in bad.stderr and "(422)" in bad.stderr
    ok = runyard_cli(server, "runs", "answer", run_id, "--answer", "Color?=blue")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"answered {wait['id']} of {run_id}"
    assert client.runs.wait(run_id, timeout=10).output == "ok"

    other = paused(client, [QUESTION, {"text": "ok"}])
    assert runyard_cli(server, "runs", "answer", other, "--json", '{"Color?": "red"}').returncode == 0
    assert client.runs.waits(other)[0].answer == {"answers": {"Color?": "red"}}
    again = runyard_cli(server, "runs", "answer", other, "--json", '{"Color?": "blue"}')
    assert again.returncode == 1 and "(409)" in again.stderr


def test_runs_approve(server: Any, client: Runyard) -> None:
    run_id = paused(client, [CALC, {"text": "done"}], permission_mode="approve_all")
    assert runyard_cli(server, "runs", "approve", run_id).returncode == 2  # neither --allow nor --deny
    [wait] = client.runs.waits(run_id)
    result = runyard_cli(server, "runs", "approve", run_id, "--wait-id", wait.id, "--allow", "--remember")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"allowed {wait.id} of {run_id}"
    assert client.runs.waits(run_id)[0].answer == {"decision": "allow", "remember": True}
    assert client.runs.wait(run_id, timeout=10).output == "done"


def test_runs_reply(server: Any, client: Runyard) -> None:
    first = client.runs.create_and_wait("hello", name=unique("r"), instructions="Echo.", timeout=10)
    result = runyard_cli(server, "runs", "reply", first.id, "tell me more", "--follow")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: tell me more\n"
    runs = client.threads.runs.list(first.thread_id).data
    assert [r.original_prompt for r in runs] == ["tell me more", "hello"]

    plain = runyard_cli(server, "runs", "reply", first.id, "once more")
    assert plain.returncode == 0 and plain.stdout.strip().startswith("run_")

    waiting = paused(client, [{"tool_calls": [{"name": "request_user_input", "args": {"prompt": "Name?"}}]},
                              {"text": "thanks"}])
    answered = runyard_cli(server, "runs", "reply", waiting, "Ada", "--follow")
    assert answered.returncode == 0, answered.stderr
    assert f"answered {waiting}" in answered.stderr and "thanks" in answered.stdout
