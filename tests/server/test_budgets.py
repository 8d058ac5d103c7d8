"""Budgets (`limits`) and `stop_reason`, through the real server: a run past a limit ends failed
with `budget_exceeded`, its partial output and usage kept; the run's, the agent's and the org's
limits combine field by field, the smallest winning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from support.runs import create, error_of, events, finished, of_type, types, until_status
from support.servers import ADMIN_KEY, ServerInThread

from runyard.config import Settings

CALC = {"tool_calls": [{"name": "calculator", "args": {"expression": "1+1"}}]}


def test_a_run_past_max_requests_fails_with_budget_exceeded_and_keeps_its_usage(http: httpx.Client) -> None:
    run = create(
        http, [{"text": "half ", **CALC}, CALC, {"text": "done"}], tools=["calculator"], limits={"max_requests": 1}
    )
    assert run["limits"]["max_requests"] == 1
    run = finished(http, run["id"])
    assert run["status"] == "failed" and run["stop_reason"] == "budget_exceeded"
    assert run["error"] == "max_requests reached: 1 of 1"
    assert run["usage"]["requests"] == 1 and run["usage"]["tool_calls"] == 1
    assert run["output"] == "half "  # what the model wrote before the limit
    log = events(http, run["id"])
    assert types(log)[-2:] == ["run.budget_exceeded", "run.failed"]
    assert of_type(log, "run.budget_exceeded")[0]["error"] == run["error"]
    assert of_type(log, "run.failed")[0]["stop_reason"] == "budget_exceeded"


def test_max_tool_calls_is_checked_before_each_call(http: httpx.Client) -> None:
    run = create(http, [CALC, CALC, {"text": "done"}], tools=["calculator"], limits={"max_tool_calls": 1})
    run = finished(http, run["id"])
    assert run["stop_reason"] == "budget_exceeded" and run["error"] == "max_tool_calls reached: 1 of 1"
    assert len(of_type(events(http, run["id"]), "tool.result")) == 1  # the second call never ran


def test_max_duration_and_max_tokens(http: httpx.Client) -> None:
    slow = finished(http, create(http, [{"delay": 0.6, **CALC}, {"text": "late"}], tools=["calculator"],
                                 limits={"max_duration_s": 0.5})["id"])  # fmt: skip
    assert slow["stop_reason"] == "budget_exceeded" and slow["error"].startswith("max_duration_s reached: ")
    wordy = finished(http, create(http, [CALC, {"text": "done"}], tools=["calculator"], limits={"max_tokens": 1})["id"])
    assert wordy["stop_reason"] == "budget_exceeded" and wordy["error"].startswith("max_tokens reached: ")
    # Within its limits a run completes as usual.
    roomy = finished(
        http, create(http, [CALC, {"text": "done"}], tools=["calculator"], limits={"max_requests": 5})["id"]
    )
    assert roomy["status"] == "completed" and roomy["stop_reason"] == "completed"


def test_every_terminal_run_has_a_stop_reason(http: httpx.Client) -> None:
    assert finished(http, create(http, [{"text": "ok"}])["id"])["stop_reason"] == "completed"
    assert finished(http, create(http, [{"error": "boom"}])["id"])["stop_reason"] == "error"
    slow = create(http, [{"delay": 30, "text": "never"}])
    assert slow["stop_reason"] is None
    until_status(http, slow["id"], "running")
    http.post(f"/v1/runs/{slow['id']}/cancel")
    assert finished(http, slow["id"])["stop_reason"] == "cancelled"


def test_the_smallest_of_the_runs_the_agents_and_the_orgs_limits_applies(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'runyard.db'}",
        api_key=ADMIN_KEY,
        default_limits={"max_tokens": 10_000, "max_requests": 50},
    )
    srv = ServerInThread(settings).start()
    try:
        with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http:
            r = http.post("/v1/agents", json={"name": "budgeted", "limits": {"max_requests": 5, "max_cost_usd": 1.5}})
            assert r.status_code == 201, r.text
            agent = r.json()
            assert agent["limits"] == {**agent["limits"], "max_requests": 5, "max_cost_usd": 1.5}
            plain = create(http, agent_id=agent["id"])
            assert _set(plain["limits"]) == {"max_tokens": 10_000, "max_requests": 5, "max_cost_usd": 1.5}
            tight = create(http, agent_id=agent["id"], limits={"max_requests": 2, "max_tokens": 20_000})
            assert _set(tight["limits"]) == {"max_tokens": 10_000, "max_requests": 2, "max_cost_usd": 1.5}
            # The run keeps its limits when the agent changes afterwards.
            http.patch(f"/v1/agents/{agent['id']}", json={"limits": None})
            assert _set(http.get(f"/v1/runs/{tight['id']}").json()["limits"])["max_cost_usd"] == 1.5
            assert _set(create(http, agent_id=agent["id"])["limits"]) == {"max_tokens": 10_000, "max_requests": 50}
    finally:
        srv.stop()


def _set(limits: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in limits.items() if v is not None}


def test_bad_limits_are_refused_naming_the_field(http: httpx.Client) -> None:
    for limits, field in [
        ({"max_cost_usd": -1}, "limits.max_cost_usd"),
        ({"max_requests": 0}, "limits.max_requests"),
        ({"max_requests": 1.5}, "limits.max_requests"),
        ({"max_money": 3}, "limits.max_money"),
    ]:
        r = http.post("/v1/runs", json={"name": "bad-limits", "instructions": "x", "message": "go", "limits": limits})
        assert r.status_code == 422, (limits, r.text)
        assert error_of(r)["field"] == field, (limits, error_of(r))
        r = http.post("/v1/agents", json={"name": "bad-limits-agent", "limits": limits})
        assert r.status_code == 422 and error_of(r)["field"] == field


def test_the_sdk_sets_limits_on_agents_and_runs(server: ServerInThread) -> None:
    from runyard import RunLimits, Runyard

    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        agent = client.agents.create("sdk-budget", tools=["calculator"], limits=RunLimits(max_requests=3))
        assert agent.limits is not None and agent.limits.max_requests == 3
        script = {"script": [CALC, CALC, CALC, {"text": "done"}]}
        run = client.runs.create(agent_id=agent.id, message="go", metadata=script, limits={"max_tool_calls": 2})
        assert run.limits is not None and (run.limits.max_requests, run.limits.max_tool_calls) == (3, 2)
        run = client.runs.wait(run.id)
        assert run.stop_reason == "budget_exceeded" and run.error == "max_tool_calls reached: 2 of 2"
