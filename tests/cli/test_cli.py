"""The client commands (`runyard run | runs … | agents …`) as a user runs them: a subprocess
against the real server of the `server` fixture, checking stdout, stderr and the exit code.

The server runs the offline `scripted` model; agents created through the API carry a
`metadata.script` that decides exactly what the "model" says and which tools it calls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runyard import RunStatus, Runyard

CALCULATOR_SCRIPT = [
    {
        "reasoning": "Add them.",
        "text": "Let me compute. ",
        "tool_calls": [{"name": "calculator", "args": {"expression": "2+3"}}],
    },
    {"text": ["The answer ", "is 5."]},
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def cli_env(server: Any, **overrides: str) -> dict[str, str]:
    env = {**os.environ, "RUNYARD_BASE_URL": server.base_url, "RUNYARD_API_KEY": server.api_key, **overrides}
    env.pop("COLUMNS", None)
    return env


def runyard_cli(server: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runyard", *args], env=cli_env(server, **env), capture_output=True, text=True, timeout=60
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def client(server: Any) -> Iterator[Runyard]:
    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def calc_agent(client: Runyard) -> str:
    name = unique("calc")
    script = {"script": CALCULATOR_SCRIPT}
    client.agents.create(name, instructions="Use the calculator.", tools=["calculator"], metadata=script)
    return name


# --------------------------------------------------------------------------- runyard run


def test_run_streams_text_and_prints_final_status(server: Any) -> None:
    result = runyard_cli(server, "run", "hello there", "--name", unique("cli"), "--instructions", "Echo.")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: hello there\n"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("✓ completed")
    assert "in /" in last and "1 request" in last and "0 tool calls" in last and "$0.0000" in last


def test_run_prints_tool_calls_and_results_as_lines(server: Any, calc_agent: str) -> None:
    result = runyard_cli(server, "run", "what is 2+3?", "--agent", calc_agent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Add them.",
        "Let me compute. ",
        '→ calculator {"expression": "2+3"}',
        "← 5",
        "The answer is 5.",
    ]
    assert "2 requests · 1 tool call" in result.stderr


def test_run_json_emits_only_event_envelopes(server: Any, calc_agent: str) -> None:
    result = runyard_cli(server, "run", "what is 2+3?", "--agent", calc_agent, "--json")
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(set(e) >= {"seq", "run_id", "type", "data", "created_at"} for e in events)
    assert len({e["run_id"] for e in events}) == 1
    types = [e["type"] for e in events]
    assert types[0] == "run.queued" and types[-1] == "run.completed"
    assert {"tool.call", "tool.result", "message.delta", "usage"} <= set(types)
    assert result.stderr == ""


def test_run_of_a_failing_agent_exits_1_with_the_error(server: Any, client: Runyard) -> None:
    name = unique("boom")
    client.agents.create(name, instructions="x", metadata={"script": [{"error": "model exploded"}]})
    result = runyard_cli(server, "run", "go", "--agent", name)
    assert result.returncode == 1
    assert "failed: model exploded" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_by_agent_id_and_tools_override(server: Any, client: Runyard) -> None:
    agent = client.agents.create(unique("byid"), instructions="x")
    result = runyard_cli(server, "run", "hi", "--agent", agent.id, "--tools", "calculator,current_time", "--json")
    assert result.returncode == 0, result.stderr
    declared = next(e for e in json_lines(result.stdout) if e["type"] == "tools.declared")
    assert sorted(t["name"] for t in declared["data"]["tools"]) == ["calculator", "current_time"]


def test_run_with_an_unknown_agent_name_explains_how_to_create_it(server: Any) -> None:
    name = unique("missing")
    result = runyard_cli(server, "run", "hi", "--agent", name)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: no agent named '{name}'")
    assert f"runyard agents create --name {name}" in result.stderr


def test_run_rejects_agent_with_instructions(server: Any) -> None:
    result = runyard_cli(server, "run", "hi", "--agent", "a", "--instructions", "b")
    assert result.returncode == 2
    assert "--agent cannot be combined" in result.stderr


def test_ctrl_c_cancels_the_run_and_exits_130(server: Any, client: Runyard) -> None:
    name = unique("slow")
    client.agents.create(name, instructions="x", metadata={"script": [{"delay": 30, "text": "late"}]})
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "run", "wait", "--agent", name, "--json"],
        env=cli_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert f"cancelling {first['run_id']}" in stderr
    run = client.runs.wait(first["run_id"], timeout=10)
    assert run.status is RunStatus.CANCELLED


# --------------------------------------------------------------------------- runyard runs …


@pytest.fixture
def finished_run(client: Runyard) -> str:
    agent = client.agents.create(unique("runs"), instructions="x")
    return client.runs.create_and_wait("list me", agent_id=agent.id, timeout=30).id


def test_runs_list_table_and_json(server: Any, client: Runyard, finished_run: str) -> None:
    agent_id = client.runs.get(finished_run).agent_id
    table = runyard_cli(server, "runs", "list", "--agent-id", agent_id)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["id", "status", "agent", "model", "tokens", "in/out", "created"]
    assert row.split()[:4] == [finished_run, "completed", agent_id, "scripted"]

    listed = runyard_cli(server, "runs", "list", "--status", "completed", "--limit", "3", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert 1 <= len(runs) <= 3 and all(r["status"] == "completed" for r in runs)

    none = runyard_cli(server, "runs", "list", "--agent-id", agent_id, "--status", "failed", "--json")
    assert json.loads(none.stdout) == []


def test_runs_get(server: Any, finished_run: str) -> None:
    shown = runyard_cli(server, "runs", "get", finished_run)
    assert shown.returncode == 0, shown.stderr
    assert finished_run in shown.stdout and "completed" in shown.stdout and "You said: list me" in shown.stdout

    as_json = runyard_cli(server, "runs", "get", finished_run, "--json")
    run = json.loads(as_json.stdout)
    assert (run["id"], run["status"], run["output"]) == (finished_run, "completed", "You said: list me")


def test_runs_get_unknown_is_a_one_line_404(server: Any) -> None:
    result = runyard_cli(server, "runs", "get", "run_doesnotexist")
    assert result.returncode == 1
    assert result.stderr == "error: run run_doesnotexist not found (404)\n"


def test_runs_events_stored_and_followed(server: Any, client: Runyard, finished_run: str) -> None:
    last_seq = client.runs.get(finished_run).last_seq
    stored = runyard_cli(server, "runs", "events", finished_run, "--json")
    assert stored.returncode == 0, stored.stderr
    events = json_lines(stored.stdout)
    assert [e["seq"] for e in events] == list(range(1, last_seq + 1))
    assert events[-1]["type"] == "run.completed"

    after = runyard_cli(server, "runs", "events", finished_run, "--after-seq", str(last_seq - 2), "--json")
    assert [e["seq"] for e in json_lines(after.stdout)] == [last_seq - 1, last_seq]

    human = runyard_cli(server, "runs", "events", finished_run)
    assert human.returncode == 0
    seq, _time, event_type, *_ = human.stdout.splitlines()[-1].split()
    assert (seq, event_type) == (str(last_seq), "run.completed")


def test_runs_events_follow_streams_a_live_run_to_its_end(server: Any, client: Runyard) -> None:
    agent = client.agents.create(unique("live"), instructions="x", metadata={"script": [{"delay": 0.5, "text": "ok"}]})
    run = client.runs.create("go", agent_id=agent.id)
    result = runyard_cli(server, "runs", "events", run.id, "--follow", "--json")
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run.completed"


def test_runs_cancel(server: Any, client: Runyard, finished_run: str) -> None:
    done = runyard_cli(server, "runs", "cancel", finished_run)
    assert done.returncode == 1
    assert done.stderr == f"error: run {finished_run} is completed: it cannot be cancelled (409)\n"

    agent = client.agents.create(unique("cancel"), instructions="x", metadata={"script": [{"delay": 30}]})
    live = client.runs.create("wait", agent_id=agent.id)
    cancelled = runyard_cli(server, "runs", "cancel", live.id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"cancel requested for {live.id}")
    assert client.runs.wait(live.id, timeout=10).status is RunStatus.CANCELLED


# --------------------------------------------------------------------------- runyard agents …


def test_agents_create_list_get_delete(server: Any) -> None:
    name = unique("crud")
    created = runyard_cli(
        server, "agents", "create", "--name", name, "--instructions", "Be kind.", "--tools", "calculator", "--json"
    )
    assert created.returncode == 0, created.stderr
    agent = json.loads(created.stdout)
    assert (agent["name"], agent["instructions"], agent["tools"]) == (name, "Be kind.", ["calculator"])

    listed = runyard_cli(server, "agents", "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:2] == [agent["id"], name] for line in listed.stdout.splitlines())

    shown = runyard_cli(server, "agents", "get", agent["id"])
    assert shown.returncode == 0 and "Be kind." in shown.stdout and "calculator" in shown.stdout

    deleted = runyard_cli(server, "agents", "delete", agent["id"])
    assert deleted.returncode == 0 and deleted.stdout == f"deleted agent {agent['id']}\n"

    gone = runyard_cli(server, "agents", "get", agent["id"])
    assert gone.returncode == 1
    assert gone.stderr == f"error: agent {agent['id']} not found (404)\n"


def test_agents_create_with_a_bad_field_names_it(server: Any) -> None:
    result = runyard_cli(server, "agents", "create", "--name", unique("bad"), "--tools", "no_such_tool")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "no_such_tool" in result.stderr and "(422)" in result.stderr


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("args", [["runs", "list"], ["agents", "list"], ["run", "hi"]])
def test_a_bad_key_is_an_auth_error(server: Any, args: list[str]) -> None:
    result = runyard_cli(server, *args, RUNYARD_API_KEY="ryk_wrong")
    assert result.returncode == 1
    assert result.stderr == "error: the API key was refused: check --api-key or RUNYARD_API_KEY (401)\n"


def test_options_override_the_environment(server: Any) -> None:
    options = ["--api-key", server.api_key, "--base-url", server.base_url]
    wrong = {"RUNYARD_API_KEY": "ryk_wrong", "RUNYARD_BASE_URL": "http://127.0.0.1:9"}
    result = runyard_cli(server, "agents", "list", *options, **wrong)
    assert result.returncode == 0, result.stderr


def test_an_unreachable_server_is_a_one_line_error(server: Any) -> None:
    result = runyard_cli(server, "runs", "list", RUNYARD_BASE_URL="http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr == (
        "error: cannot reach the Runyard server at http://127.0.0.1:9 (is `runyard serve` running?)\n"
    )
