"""Routes: retries with backoff and Retry-After, fallback, timeouts, stream cuts, max_concurrency.

A real server runs with a routes file pointing at a FakeProvider (the OpenAI and Anthropic wire
protocols on 127.0.0.1), which answers from its script: errors with headers, streams that break
off mid-body, slow answers. Each test drives runs over HTTP and reads the run's event log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.fake_provider import FakeProvider
from support.servers import ADMIN_KEY, ServerInThread

from runyard import _events
from runyard.client.accumulator import RunAccumulator
from runyard.config import Settings
from runyard.worker.routing import load_routes

ROUTES = """\
[routes.primary]
model = "openai:gpt-4o-mini"
base_url = "{base}/v1"
api_key_env = "FAKE_KEY"
prices = {{input_mtok = 1.0, output_mtok = 2.0}}
max_retries = 2
backoff = 0.01
fallback = ["backup"]

[routes.backup]
model = "anthropic:claude-haiku-4-5"
base_url = "{base}"
api_key_env = "FAKE_KEY"
prices = {{input_mtok = 10.0, output_mtok = 20.0}}
max_retries = 0

[routes.lonely]
model = "openai:gpt-4o-mini"
base_url = "{base}/v1"
api_key_env = "FAKE_KEY"
max_retries = 1
backoff = 0.01

[routes.slow]
model = "openai:gpt-4o-mini"
base_url = "{base}/v1"
api_key_env = "FAKE_KEY"
timeout = 0.5
max_retries = 1
backoff = 0.01

[routes.narrow]
model = "openai:gpt-4o-mini"
base_url = "{base}/v1"
api_key_env = "FAKE_KEY"
max_concurrency = 1
"""


class Env:
    def __init__(self, fake: FakeProvider, http: httpx.Client):
        self.fake, self.http = fake, http

    def script(self, *entries: dict[str, Any]) -> None:
        self.fake._script[:] = list(entries)

    def start(self, **body: Any) -> str:
        r = self.http.post("/v1/runs", json={"name": "routed", "instructions": "Answer.", "message": "Hi", **body})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def finish(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        run = self.http.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30}).json()
        events = self.http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()["data"]
        return run, events

    def run(self, **body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return self.finish(self.start(**body))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("FAKE_KEY", "sk-fake-test")
    with FakeProvider([]) as fake:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(base=fake.base_url))
        settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'routes.db'}", api_key=ADMIN_KEY,
                            routes=routes)
        srv = ServerInThread(settings).start()
        try:
            with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http:
                yield Env(fake, http)
        finally:
            srv.stop()


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == type_]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_a_429_is_retried_after_the_providers_retry_after(env: Env) -> None:
    env.script({"status": 429, "headers": {"Retry-After": "1"}}, {"text": "Hello after the wait."})
    started = time.monotonic()
    run, events = env.run(route_id="primary")
    elapsed = time.monotonic() - started

    assert run["status"] == "completed" and run["output"] == "Hello after the wait."
    assert run["route_id"] == "primary" and run["model"] == "openai:gpt-4o-mini"
    assert of_type(events, "run.route.selected") == [{"route_id": "primary", "model": "openai:gpt-4o-mini"}]
    [retry] = of_type(events, "run.llm.retry")
    assert (retry["route_id"], retry["attempt"], retry["status"], retry["delay_s"]) == ("primary", 1, 429, 1.0)
    assert "429" in retry["error"]
    assert elapsed >= 1.0  # it waited as long as the provider asked
    assert len(env.fake.requests) == 2  # Runyard's retry, not the SDK's: one request per attempt
    assert types(events).index("run.llm.retry") < types(events).index("message.delta")


def test_server_errors_spend_the_retries_then_fall_back(env: Env) -> None:
    env.script({"status": 500}, {"status": 502}, {"status": 503}, {"text": "From the backup."})
    run, events = env.run(route_id="primary")

    assert run["status"] == "completed" and run["output"] == "From the backup."
    retries = of_type(events, "run.llm.retry")
    assert [(r["attempt"], r["status"]) for r in retries] == [(1, 500), (2, 502)]
    assert all(0 < r["delay_s"] <= 0.02 * r["attempt"] for r in retries)  # backoff 0.01 s, doubling, jittered
    [fallback] = of_type(events, "run.provider_fallback")
    assert (fallback["from"], fallback["to"]) == ("primary", "backup") and "503" in fallback["error"]
    assert of_type(events, "run.route.selected") == [
        {"route_id": "primary", "model": "openai:gpt-4o-mini"},
        {"route_id": "backup", "model": "anthropic:claude-haiku-4-5"},
    ]
    # The backup answered over the Anthropic protocol, and its own prices apply.
    assert [r.get("max_tokens") is not None for r in env.fake.requests] == [False, False, False, True]
    [usage] = of_type(events, "usage")
    assert usage["route_id"] == "backup"
    assert usage["cost_usd"] == pytest.approx((10 * 10.0 + 5 * 20.0) / 1e6)


def test_a_rejected_request_is_not_retried(env: Env) -> None:
    env.script({"status": 400}, {"text": "never sent"})
    run, events = env.run(route_id="lonely")

    assert run["status"] == "failed" and run["stop_reason"] == "error"
    assert "400" in run["error"]
    assert of_type(events, "run.llm.retry") == [] and len(env.fake.requests) == 1


def test_retries_run_out_and_the_run_fails_naming_the_error(env: Env) -> None:
    env.script({"status": 500}, {"status": 500}, {"text": "never sent"})
    run, events = env.run(route_id="lonely")

    assert run["status"] == "failed" and "500" in run["error"]
    assert [r["attempt"] for r in of_type(events, "run.llm.retry")] == [1]
    assert len(env.fake.requests) == 2


def test_a_timed_out_attempt_is_retried(env: Env) -> None:
    env.script({"text": "too late", "delay": 2.0}, {"text": "In time."})
    run, events = env.run(route_id="slow")

    assert run["status"] == "completed" and run["output"] == "In time."
    [retry] = of_type(events, "run.llm.retry")
    assert retry["status"] is None and retry["error"]


def test_a_stream_cut_mid_response_is_reset_then_retried(env: Env) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    env.script({"text": text, "cut_after": 3}, {"text": text})
    run, events = env.run(route_id="primary")

    assert run["status"] == "completed" and run["output"] == text
    order = types(events)
    reset = order.index("message.reset")
    # The broken response's deltas reached the log (clients saw them), then the reset, then the retry's.
    cut_text = "".join(d["delta"] for d in of_type(events[:reset], "message.delta"))
    assert cut_text and text.startswith(cut_text) and cut_text != text
    assert order[reset + 1] == "run.llm.retry"
    assert "".join(d["delta"] for d in of_type(events[reset:], "message.delta")) == text
    assert of_type(events, "message.completed") == [{"text": text}]
    assert len(of_type(events, "usage")) == 1 and run["usage"]["requests"] == 1

    # A client folding the log (the SDK's accumulator) ends with the text once, not twice.
    acc = RunAccumulator()
    for event in events:
        acc.add(_events.parse_event(event))
    assert acc.text == text


def test_max_concurrency_queues_requests_per_worker(env: Env) -> None:
    env.script({"text": "first", "delay": 1.0}, {"text": "second"})
    first = env.start(route_id="narrow")
    # The second run starts once the first one's request holds the route's only slot.
    deadline = time.monotonic() + 10
    while not env.fake.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    second = env.start(route_id="narrow")
    (run1, events1), (run2, events2) = env.finish(first), env.finish(second)

    assert run1["output"] == "first" and run2["output"] == "second"
    assert of_type(events1, "run.route.queued") == []
    assert of_type(events2, "run.route.queued") == [{"route_id": "narrow", "max_concurrency": 1}]
    assert types(events2).index("run.route.queued") < types(events2).index("message.delta")


def test_route_id_on_agents_and_runs(env: Env) -> None:
    http = env.http
    agent = http.post("/v1/agents", json={"name": "routed-agent", "route_id": "lonely"}).json()
    assert agent["route_id"] == "lonely" and agent["version"] == 1

    env.script({"text": "via the agent's route"}, {"text": "via the run's route"})
    run, _ = env.run(agent_id=agent["id"])
    assert (run["route_id"], run["model"], run["output"]) == ("lonely", "openai:gpt-4o-mini", "via the agent's route")
    run, _ = env.run(agent_id=agent["id"], route_id="backup")  # the run's route wins
    assert (run["route_id"], run["model"]) == ("backup", "anthropic:claude-haiku-4-5")
    run, _ = env.run(agent_id=agent["id"], model="scripted")  # so does the run's own model
    assert (run["route_id"], run["model"], run["output"]) == (None, "scripted", "You said: Hi")

    # A new route is a new version of what the agent runs.
    changed = http.patch(f"/v1/agents/{agent['id']}", json={"route_id": "primary"}).json()
    assert changed["version"] == 2
    assert http.get(f"/v1/agents/{agent['id']}/versions/1").json()["route_id"] == "lonely"

    by_route = http.get("/v1/usage", params={"group_by": "route"}).json()
    assert {g["key"]: g["runs"] for g in by_route["data"]} == {"lonely": 1, "backup": 1, None: 1}

    for body in ({"route_id": "nowhere", "name": "x"}, {"route_id": ""}):
        r = http.post("/v1/agents", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == "route_id", r.text
    r = http.post("/v1/runs", json={"agent_id": agent["id"], "message": "Hi", "route_id": "nowhere"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "route_id"


def test_get_routes_shows_fallbacks_and_limits_but_no_keys(env: Env) -> None:
    routes = {r["id"]: r for r in env.http.get("/v1/routes").json()["data"]}
    assert list(routes) == ["primary", "backup", "lonely", "slow", "narrow"]
    assert routes["primary"]["fallback"] == ["backup"] and routes["primary"]["max_retries"] == 2
    assert routes["slow"]["timeout"] == 0.5 and routes["narrow"]["max_concurrency"] == 1
    assert all("api_key_env" not in r and "FAKE_KEY" not in str(r) for r in routes.values())


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('[routes.a]\nmodel = "openai:x"\nfallback = ["b"]\n', "routes.a.fallback"),
        ('[routes.a]\nmodel = "openai:x"\nmax_retries = -1\n', "routes.a.max_retries"),
        ('[routes.a]\nmodel = "openai:x"\nretries = 3\n', "routes.a.retries"),
        ("[routes.a]\nbase_url = 'http://x'\n", "routes.a.model"),
    ],
)
def test_a_bad_routes_file_is_refused_naming_the_key(tmp_path: Path, table: str, named: str) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(table)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        load_routes(str(path))


def test_concurrent_runs_on_one_route_all_finish(env: Env) -> None:
    """A smoke test of the slot under load: every run gets through, in its own order."""
    env.script(*({"text": f"answer {i}", "delay": 0.05} for i in range(6)))
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(env.start(route_id="narrow"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = sorted(env.finish(i)[0]["output"] for i in ids)
    assert outputs == sorted(f"answer {i}" for i in range(6))
