"""`GET /v1/usage`: totals and groups add up to what each run reports, over a time range."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.runs import create, error_of, finished, until_status
from support.servers import ServerInThread, server_on

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens", "requests", "tool_calls")


@pytest.fixture
def org(server: ServerInThread) -> Iterator[httpx.Client]:
    key = server.create_key(f"usage-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=server.base_url, headers=server.headers(key), timeout=30) as client:
        yield client


def usage(http: httpx.Client, **params: Any) -> dict[str, Any]:
    r = http.get("/v1/usage", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def summed(runs: list[dict[str, Any]], field: str) -> int:
    return sum(r["usage"][field] for r in runs)


def test_totals_and_groups_add_up_the_runs(org: httpx.Client) -> None:
    calc = [{"tool_calls": [{"name": "calculator", "args": {"expression": "1+1"}}]}, {"text": "2"}]
    a = [finished(org, create(org, calc, name="usage-a", tools=["calculator"])["id"]) for _ in range(3)]
    b = [finished(org, create(org, [{"error": "boom"}], name="usage-b", user_id="u1")["id"])]
    runs = a + b
    assert [r["status"] for r in runs] == ["completed"] * 3 + ["failed"]

    report = usage(org)
    totals = report["totals"]
    assert report["object"] == "usage_report" and report["group_by"] is None and report["data"] == []
    assert totals["runs"] == 4
    assert totals["runs_by_status"]["completed"] == 3 and totals["runs_by_status"]["failed"] == 1
    for field in TOKEN_FIELDS:
        assert totals[field] == summed(runs, field), field
    assert totals["tool_calls"] == 3 and totals["requests"] >= 6
    assert totals["total_tokens"] == totals["input_tokens"] + totals["output_tokens"]
    # The scripted model is priced at 0: known, and no credits.
    assert totals["cost_usd"] == 0 and totals["cost_known"] is True and totals["credits_used"] == 0
    durations = sorted(r["duration_ms"] for r in runs)
    # Nearest rank: the 2nd and the 4th of four (SQLite's julianday may differ by a millisecond).
    assert abs(totals["duration_ms_p50"] - durations[1]) <= 1 and abs(totals["duration_ms_p95"] - durations[3]) <= 1

    by_agent = usage(org, group_by="agent")
    assert [(g["key"], g["runs"]) for g in by_agent["data"]] == [(a[0]["agent_id"], 3), (b[0]["agent_id"], 1)]
    assert by_agent["data"][0]["input_tokens"] == summed(a, "input_tokens")
    assert by_agent["data"][1]["runs_by_status"]["failed"] == 1 and by_agent["totals"] == totals

    by_user = {g["key"]: g["runs"] for g in usage(org, group_by="user")["data"]}
    assert by_user == {None: 3, "u1": 1}
    [day] = usage(org, group_by="day")["data"]
    assert day["key"] == runs[0]["created_at"][:10] and day["runs"] == 4
    [model] = usage(org, group_by="model")["data"]
    assert model["key"] == "scripted" and model["runs"] == 4

    only_b = usage(org, agent_id=b[0]["agent_id"])["totals"]
    assert only_b["runs"] == 1 and only_b["input_tokens"] == summed(b, "input_tokens")
    assert usage(org, user_id="u1")["totals"]["runs"] == 1
    first = datetime.fromisoformat(runs[0]["created_at"].replace("Z", "+00:00"))
    earlier = usage(org, **{"to": first.isoformat(), "from": (first - timedelta(days=1)).isoformat()})
    assert earlier["totals"]["runs"] == 0 and earlier["totals"]["duration_ms_p50"] is None
    later = usage(org, **{"from": datetime.fromisoformat(runs[1]["created_at"].replace("Z", "+00:00")).isoformat()})
    assert later["totals"]["runs"] == 3
    assert usage(org, group_by="agent", limit=1)["has_more"] is True


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_whole_days_come_from_the_daily_rollup_and_agree_with_the_runs(dialect: str, tmp_path: Path) -> None:
    """A range of whole UTC days reads `usage_daily` (written as each run ends) plus the runs still
    in flight; a range inside a day scans the runs. Both must report the same runs."""
    with server_on(dialect, tmp_path) as srv, httpx.Client(base_url=srv.base_url, headers=srv.headers(),
                                                          timeout=30) as http:
        calc = [{"tool_calls": [{"name": "calculator", "args": {"expression": "1+1"}}]}, {"text": "2"}]
        ended = [finished(http, create(http, calc, name="rollup-a", tools=["calculator"], user_id="u1")["id"])
                 for _ in range(3)]
        ended.append(finished(http, create(http, [{"error": "boom"}], name="rollup-b")["id"]))
        waiting = create(http, [{"delay": 30, "text": "late"}], name="rollup-b")  # still running
        until_status(http, waiting["id"], "running")
        today = datetime.fromisoformat(ended[0]["created_at"].replace("Z", "+00:00")).replace(
            hour=0, minute=0, second=0, microsecond=0)
        whole = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
        narrow = {"from": (today + timedelta(microseconds=1)).isoformat(),
                  "to": (today + timedelta(days=1, microseconds=-1)).isoformat()}
        for group_by in (None, "agent", "user", "day", "route"):
            params = {"group_by": group_by} if group_by else {}
            a, b = usage(http, **whole, **params), usage(http, **narrow, **params)
            for left, right in zip([a["totals"], *a["data"]], [b["totals"], *b["data"]], strict=True):
                for field in ("key", "runs", "runs_by_status", *TOKEN_FIELDS, "cost_usd", "credits_used"):
                    assert left[field] == right[field], (group_by, field)
                for pct in ("duration_ms_p50", "duration_ms_p95"):
                    # Whole days read a 5 % histogram: its buckets' middles are within 2.5 %.
                    assert left[pct] == pytest.approx(right[pct], rel=0.03, abs=1), (group_by, pct)
        totals = usage(http, **whole)["totals"]
        assert totals["runs"] == 5 and totals["runs_by_status"]["running"] == 1
        assert totals["runs_by_status"]["completed"] == 3 and totals["runs_by_status"]["failed"] == 1
        assert totals["tool_calls"] == summed(ended, "tool_calls") == 3
        http.post(f"/v1/runs/{waiting['id']}/cancel")
        finished(http, waiting["id"])
        # Its end adds it to the rollup once: still five runs, now none in flight.
        after = usage(http, **whole)["totals"]
        assert after["runs"] == 5 and after["runs_by_status"]["running"] == 0
        assert after["runs_by_status"]["cancelled"] == 1


def test_another_orgs_runs_are_not_counted(org: httpx.Client, http: httpx.Client) -> None:
    finished(http, create(http, [{"text": "elsewhere"}])["id"])
    assert usage(org)["totals"]["runs"] == 0


def test_bad_usage_queries_name_the_parameter(org: httpx.Client) -> None:
    now = datetime.now(UTC)
    cases = [
        ({"group_by": "week"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()}, "from"),
        ({"limit": 0}, "limit"),
        ({"colour": "red"}, "colour"),
    ]
    for params, field in cases:
        r = org.get("/v1/usage", params=params)
        assert r.status_code == 422, (params, r.text)
        assert error_of(r)["field"] == field, (params, error_of(r))


ROUTES = """
[routes.priced]
model = "test"
prices = {input_mtok = 1000.0, output_mtok = 2000.0}

[routes.unpriced]
model = "test"
"""


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_cost_credits_and_unpriced_runs_on_both_databases(dialect: str, tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    with server_on(dialect, tmp_path, routes=routes) as srv:
        with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http:
            priced = [finished(http, create(http, model="priced")["id"]) for _ in range(2)]
            unpriced = finished(http, create(http, model="unpriced")["id"])
            scripted = finished(http, create(http, [{"text": "ok"}])["id"])
            report = usage(http, group_by="route")
    totals = report["totals"]
    known = [*priced, scripted]
    assert all(r["usage"]["cost_usd"] > 0 for r in priced) and unpriced["usage"]["cost_known"] is False
    assert totals["runs"] == 4 and totals["unpriced_runs"] == 1 and totals["cost_known"] is False
    assert totals["cost_usd"] == pytest.approx(sum(r["usage"]["cost_usd"] for r in known))
    assert totals["credits_used"] == sum(r["usage"]["credits_used"] for r in known)
    groups = {g["key"]: g for g in report["data"]}
    assert set(groups) == {"priced", "unpriced", None}  # the scripted run has no route
    assert groups["priced"]["runs"] == 2 and groups["priced"]["cost_known"] is True
    assert groups["priced"]["credits_used"] == sum(r["usage"]["credits_used"] for r in priced)
    assert groups["unpriced"]["cost_usd"] is None and groups["unpriced"]["credits_used"] is None
    assert groups["unpriced"]["input_tokens"] == unpriced["usage"]["input_tokens"] > 0
    durations = sorted(r["duration_ms"] for r in [*known, unpriced])
    assert abs(totals["duration_ms_p95"] - durations[-1]) <= 1


def test_the_sdk_reads_the_report(server: ServerInThread) -> None:
    from runyard import Runyard, UsageReport

    key = server.create_key(f"usage-sdk-{uuid.uuid4().hex[:8]}")
    with Runyard(base_url=server.base_url, api_key=key) as client:
        run = client.runs.create_and_wait("go", name="usage-sdk", instructions="x", metadata={"script": [{"text": "ok"}]})
        report = client.usage.retrieve(group_by="agent", since=run.created_at - timedelta(seconds=1))
        assert isinstance(report, UsageReport)
        assert report.totals.runs == 1 and report.data[0].key == run.agent_id
        assert report.totals.input_tokens == run.usage.input_tokens
        assert client.usage.retrieve(until=run.created_at).totals.runs == 0


def test_routes_are_listed_without_their_keys(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        ROUTES
        + """
[routes.hosted]
model = "openai:gpt-4.1-mini"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "HOSTED_KEY"
fallback = ["priced"]
"""
    )
    with server_on("sqlite", tmp_path, routes=routes) as srv:
        r = httpx.get(f"{srv.base_url}/v1/routes", headers=srv.headers())
        assert httpx.get(f"{srv.base_url}/v1/routes").status_code == 401
    assert r.status_code == 200, r.text
    listed = {route["id"]: route for route in r.json()["data"]}
    assert list(listed) == ["priced", "unpriced", "hosted"]
    assert listed["priced"]["prices"] == {"input_mtok": 1000.0, "output_mtok": 2000.0, "cache_read_mtok": 0.0}
    assert listed["hosted"]["fallback"] == ["priced"] and listed["hosted"]["base_url"] == "http://127.0.0.1:9/v1"
    assert "HOSTED_KEY" not in r.text and "api_key_env" not in r.text
