"""The file and variable commands as a user runs them: `runyard files upload | download`,
`runyard runs files`, and `runyard run --file | --var`, each a subprocess against the real
server of the `server` fixture (the offline `scripted` model follows the agent's script).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import cli_env, runyard_cli

from runyard import RunStatus, Runyard
from runyard.cli.files import human_size
from runyard.cli.runs import parse_vars

READ_NOTES = [{"tool_calls": [{"name": "read_file", "args": {"path": "notes.txt"}}]}, {"text": "read it"}]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: Any) -> Iterator[Runyard]:
    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("remember the milk\n")
    return path


def run_id_of(stdout: str) -> str:
    return json.loads(stdout.splitlines()[0])["run_id"]


def test_files_upload_prints_the_id(server: Any, client: Runyard, notes: Path) -> None:
    result = runyard_cli(server, "files", "upload", str(notes))
    assert result.returncode == 0, result.stderr
    file_id = result.stdout.strip()
    uploaded = client.files.retrieve(file_id)
    assert (uploaded.path, uploaded.size) == ("notes.txt", notes.stat().st_size)
    placed = runyard_cli(server, "files", "upload", str(notes), "--path", "in/n.txt", "--json")
    assert json.loads(placed.stdout)["path"] == "in/n.txt"
    missing = runyard_cli(server, "files", "upload", str(notes.parent / "nope.txt"))
    # Click's error box wraps long paths across lines: compare the words, not the layout.
    assert missing.returncode == 2 and "does not exist" in " ".join(missing.stderr.replace("│", " ").split())


def test_run_with_a_file_then_list_and_download_it(server: Any, client: Runyard, notes: Path, tmp_path: Path) -> None:
    agent = unique("cli-files")
    client.agents.create(agent, tools=["files"], metadata={"script": READ_NOTES})
    result = runyard_cli(server, "run", "Read my notes", "--agent", agent, "--file", str(notes))
    assert result.returncode == 0, result.stderr
    assert "← remember the milk" in result.stdout
    assert "created notes.txt" in result.stdout  # the upload, put into the workspace

    as_json = runyard_cli(server, "run", "Again", "--agent", agent, "--file", str(notes), "--json")
    run_id = run_id_of(as_json.stdout)
    listed = runyard_cli(server, "runs", "files", run_id)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["path", "size", "type", "id", "updated"]
    [workspace_file] = client.runs.files.list(run_id)
    assert row.split()[:5] == ["notes.txt", str(notes.stat().st_size), "B", "text/plain", workspace_file.id]
    as_list = json.loads(runyard_cli(server, "runs", "files", run_id, "--json").stdout)
    assert [f["id"] for f in as_list] == [workspace_file.id]

    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    into_dir = runyard_cli(server, "files", "download", workspace_file.id, "-o", str(out_dir))
    assert into_dir.returncode == 0, into_dir.stderr
    assert Path(into_dir.stdout.strip()) == out_dir / "notes.txt"
    assert (out_dir / "notes.txt").read_bytes() == notes.read_bytes()
    named = runyard_cli(server, "files", "download", workspace_file.id, "--output", str(tmp_path / "copy.txt"))
    assert named.returncode == 0 and (tmp_path / "copy.txt").read_bytes() == notes.read_bytes()
    here = subprocess.run(
        [sys.executable, "-m", "runyard", "files", "download", workspace_file.id],
        env=cli_env(server),
        cwd=out_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert here.returncode == 0, here.stderr
    assert Path(here.stdout.strip()).resolve() == (out_dir / "notes.txt").resolve()


def test_a_file_enables_no_tool_by_itself(server: Any, client: Runyard, notes: Path) -> None:
    agent = unique("cli-plain")
    client.agents.create(agent, metadata={"script": [{"text": "ok"}]})
    result = runyard_cli(server, "run", "x", "--agent", agent, "--file", str(notes), "--json")
    assert result.returncode == 0, result.stderr
    run = client.runs.get(run_id_of(result.stdout))
    assert run.tools == [] and run.status is RunStatus.COMPLETED
    assert [f.path for f in client.runs.files.list(run.id)] == ["notes.txt"]


def test_unknown_file_ids_and_runs(server: Any) -> None:
    result = runyard_cli(server, "files", "download", "file_nope")
    assert result.returncode == 1 and "file file_nope not found (404)" in result.stderr
    result = runyard_cli(server, "runs", "files", "run_nope")
    assert result.returncode == 1 and "run run_nope not found (404)" in result.stderr


def test_run_with_variables_fills_the_template(server: Any, client: Runyard) -> None:
    agent = unique("cli-vars")
    created = runyard_cli(
        server,
        "agents",
        "create",
        "--name",
        agent,
        "--message-template",
        "Forecast for {{ city }} over {{ days + 1 }} days.",
    )
    assert created.returncode == 0, created.stderr
    agent_id = created.stdout.split()[2]  # "created agent agt_… (name)"
    result = runyard_cli(server, "run", "--agent", agent, "--var", "city=Oslo", "--var", "days=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: Forecast for Oslo over 3 days.\n"
    [run] = client.runs.list(agent_id=agent_id, limit=1).data
    assert run.variables == {"city": "Oslo", "days": 2}


def test_bad_variables_are_refused(server: Any, client: Runyard) -> None:
    agent = unique("cli-vars")
    client.agents.create(
        agent,
        message_template="{{ city }}",
        input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
    )
    refused = runyard_cli(server, "run", "--agent", agent, "--var", "city=5")
    assert refused.returncode == 1 and "variables.city" in refused.stderr
    malformed = runyard_cli(server, "run", "--agent", agent, "--var", "city")
    assert malformed.returncode == 2 and "key=value" in malformed.stderr
    nothing = runyard_cli(server, "run", "--agent", agent)
    assert nothing.returncode == 2 and "TASK" in nothing.stderr


def test_parse_vars_and_sizes() -> None:
    assert parse_vars(["a=1", "b=x", 'c=["y"]', "d=", "e=a=b", "a=true"]) == {
        "a": True,
        "b": "x",
        "c": ["y"],
        "d": "",
        "e": "a=b",
    }
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.5 KB",
        "5.0 MB",
        "3.0 GB",
    ]
