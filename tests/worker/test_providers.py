"""Real model adapters end to end: routes from a TOML file, a fake provider on 127.0.0.1.

Each test writes a routes file pointing at a FakeProvider (which speaks the real OpenAI
chat-completions and Anthropic Messages streaming wire formats), starts a real server with
`Settings(routes=…)`, and drives a run through HTTP: a streamed `calculator` call, then
text. It checks the events Runyard records and the usage it sums, including the cost
computed from the route's own prices.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# tests/ has no __init__.py: pytest's `prepend` import mode put tests/ on sys.path for its conftest.
from support.servers import ADMIN_KEY, ServerInThread
from support.fake_provider import FakeProvider

from runyard.config import Settings

SCRIPT = [
    {"tool_call": {"id": "call_calc_1", "name": "calculator", "args": {"expression": "6 * 7"}},
     "usage": {"input_tokens": 120, "output_tokens": 30}},
    {"text": "Six times seven is 42.", "usage": {"input_tokens": 180, "output_tokens": 12}},
]

ROUTES = """\
[routes.fake-openai]
model = "openai:gpt-4o-mini"
base_url = "{base}/v1"
api_key_env = "FAKE_KEY"
prices = {{input_mtok = 1.0, output_mtok = 2.0}}

[routes.fake-anthropic]
model = "anthropic:claude-haiku-4-5"
base_url = "{base}"
api_key_env = "FAKE_KEY"

[routes.fake-local]
model = "openai-chat:my-own-local-model"
base_url = "{base}/v1"
api_key_env = "FAKE_KEY"
"""


@pytest.fixture
def provider_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeProvider, httpx.Client]]:
    monkeypatch.setenv("FAKE_KEY", "sk-fake-test")
    with FakeProvider(list(SCRIPT)) as fake:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(base=fake.base_url))
        settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'providers.db'}", api_key=ADMIN_KEY,
                            routes=routes)
        srv = ServerInThread(settings).start()
        try:
            with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http:
                yield fake, http
        finally:
            srv.stop()


def run_on_route(http: httpx.Client, route: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    r = http.post("/v1/runs", json={"name": f"calc-{route}", "instructions": "Use the calculator.",
                                    "message": "What is 6 * 7?", "model": route, "tools": ["calculator"]})
    assert r.status_code == 201, r.text
    run = http.get(f"/v1/runs/{r.json()['id']}/wait", params={"timeout": 20}).json()
    page = http.get(f"/v1/runs/{run['id']}/events", params={"limit": 1000}).json()
    return run, page["data"]


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == type_]


def check_run(run: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """What both adapters must record for SCRIPT."""
    assert run["status"] == "completed", run
    assert run["output"] == "Six times seven is 42."
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run.completed"

    # The text arrived as several deltas that add up to the final message.
    deltas = [d["delta"] for d in of_type(events, "message.delta")]
    assert len(deltas) >= 2
    assert "".join(deltas) == "Six times seven is 42."
    assert of_type(events, "message.completed") == [{"text": "Six times seven is 42."}]

    # The tool call's arguments were streamed in fragments and reassembled.
    [tool_call] = of_type(events, "tool.call")
    assert tool_call == {"tool_call_id": "call_calc_1", "name": "calculator", "args": {"expression": "6 * 7"}}
    [result] = of_type(events, "tool.result")
    assert result == {"tool_call_id": "call_calc_1", "name": "calculator", "result": "42"}

    # One usage event per model request, with the provider's token counts.
    usage = of_type(events, "usage")
    assert [(u["input_tokens"], u["output_tokens"]) for u in usage] == [(120, 30), (180, 12)]
    totals = run["usage"]
    assert (totals["input_tokens"], totals["output_tokens"]) == (300, 42)
    assert totals["requests"] == 2
    assert totals["tool_calls"] == 1
    assert of_type(events, "run.completed")[0]["usage"] == totals


def test_openai_chat_route(provider_server: tuple[FakeProvider, httpx.Client]) -> None:
    fake, http = provider_server
    run, events = run_on_route(http, "fake-openai")
    check_run(run, events)
    assert run["model"] == "fake-openai"

    # The route's prices, not genai-prices: (300 × $1 + 42 × $2) per million tokens.
    usage = of_type(events, "usage")
    assert usage[0]["cost_usd"] == pytest.approx((120 * 1.0 + 30 * 2.0) / 1e6)
    assert usage[1]["cost_usd"] == pytest.approx((180 * 1.0 + 12 * 2.0) / 1e6)
    assert run["usage"]["cost_usd"] == pytest.approx((300 * 1.0 + 42 * 2.0) / 1e6)

    # Both requests reached the chat-completions endpoint; the second carried the tool result.
    assert [r["model"] for r in fake.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert all(r["stream"] for r in fake.requests)
    tool_messages = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_messages == [{"role": "tool", "tool_call_id": "call_calc_1", "content": "42"}]


def test_anthropic_messages_route(provider_server: tuple[FakeProvider, httpx.Client]) -> None:
    fake, http = provider_server
    run, events = run_on_route(http, "fake-anthropic")
    check_run(run, events)

    assert [r["model"] for r in fake.requests] == ["claude-haiku-4-5", "claude-haiku-4-5"]
    tool_results = [block for m in fake.requests[1]["messages"] if isinstance(m["content"], list)
                    for block in m["content"] if block.get("type") == "tool_result"]
    assert [(b["tool_use_id"], b["content"]) for b in tool_results] == [
        ("call_calc_1", [{"type": "text", "text": "42"}])]
    # No route prices: the cost comes from genai-prices' offline snapshot, summed over requests.
    costs = [u["cost_usd"] for u in of_type(events, "usage")]
    assert all(isinstance(c, float) and c > 0 for c in costs)
    assert run["usage"]["cost_usd"] == pytest.approx(sum(costs))


def test_route_prices_give_credits_and_the_cache_hit_rate(provider_server: tuple[FakeProvider, httpx.Client]) -> None:
    _, http = provider_server
    run, _ = run_on_route(http, "fake-openai")
    usage = run["usage"]
    cost = (300 * 1.0 + 42 * 2.0) / 1e6
    assert usage["cost_known"] is True and usage["cost_usd"] == pytest.approx(cost)
    assert usage["credits_used"] == 1  # 0.384 credits at the default 1000 per USD, rounded up
    assert usage["cache_hit_rate"] == 0.0  # 300 input tokens, none read from a cache
    assert run["steps"] == 2


def test_an_unpriced_model_has_no_cost_never_a_silent_zero(provider_server: tuple[FakeProvider, httpx.Client]) -> None:
    _, http = provider_server
    run, events = run_on_route(http, "fake-local")
    assert run["status"] == "completed", run
    assert [u["cost_usd"] for u in of_type(events, "usage")] == [None, None]
    usage = run["usage"]
    assert usage["cost_known"] is False
    assert usage["cost_usd"] is None and usage["credits_used"] is None
    assert of_type(events, "run.completed")[0]["usage"] == usage
