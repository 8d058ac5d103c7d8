"""`runyard usage` as a user runs it: a subprocess against the real server, in its own org."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

from test_cli import runyard_cli

from runyard import Runyard


def test_usage_prints_a_table_by_agent_and_the_same_figures_as_json(server: Any) -> None:
    key = server.create_key(f"cli-usage-{uuid.uuid4().hex[:8]}")
    org = SimpleNamespace(base_url=server.base_url, api_key=key)
    with Runyard(base_url=server.base_url, api_key=key) as client:
        runs = [
            client.runs.create_and_wait("go", name=name, instructions="x", metadata={"script": [{"text": "ok"}]})
            for name in ("cli-usage-a", "cli-usage-a", "cli-usage-b")
        ]
    table = runyard_cli(org, "usage", "--by", "agent", "--since", "1h")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("runs created since")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows[runs[0].agent_id][1] == "2" and rows[runs[2].agent_id][1] == "1" and rows["total"][1] == "3"

    as_json = runyard_cli(org, "usage", "--by", "day", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["totals"]["runs"] == 3
    assert report["totals"]["input_tokens"] == sum(r.usage.input_tokens for r in runs)
    assert [g["key"] for g in report["data"]] == [runs[0].created_at.strftime("%Y-%m-%d")]

    bad = runyard_cli(org, "usage", "--since", "last tuesday")
    assert bad.returncode == 1 and "--since" in bad.stderr
    bad = runyard_cli(org, "usage", "--by", "week")
    assert bad.returncode == 1 and "--by" in bad.stderr
