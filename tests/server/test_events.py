"""A run's event log over HTTP: SSE format, resume, JSON pages, event types, and a client that
drops its connection at random points (issue 2, §6; invariant 1 of DESIGN.md).

The offline `scripted` model makes the runs: `metadata.script` decides the deltas, tool calls and
delays, so the expected events are known exactly.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

SSE_HEADERS = {"Accept": "text/event-stream"}
ENVELOPE_KEYS = {"seq", "run_id", "type", "data", "created_at"}
TOOL_SCRIPT = [
    {"reasoning": "add them", "tool_calls": [{"name": "calculator", "args": {"expression": "2+3"}}]},
    {"text": ["It is ", "5."]},
]


def create(http: httpx.Client, script: list[dict[str, Any]] | None = None, **body: Any) -> dict[str, Any]:
    body = {"name": f"events-{uuid.uuid4().hex[:12]}", "instructions": "x", "message": "go", **body}
    if script is not None:
        body["metadata"] = {"script": script}
    r = http.post("/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def finished(http: httpx.Client, run_id: str) -> dict[str, Any]:
    run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30}).json()
    assert run["status"] in {"completed", "failed", "cancelled"}, run
    return run


def sse(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Parse a text/event-stream body into {field: value} events (comments skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def stream(http: httpx.Client, run_id: str, headers: dict[str, str] | None = None, **params: Any) -> list[dict[str, str]]:
    with http.stream("GET", f"/v1/runs/{run_id}/events", params=params,
                     headers={**SSE_HEADERS, **(headers or {})}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(sse(r))


def envelopes(raw: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [json.loads(e["data"]) for e in raw]


def stored(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = http.get(f"/v1/runs/{run_id}/events", params={"after_seq": len(out), "limit": 1000}).json()
        out += page["data"]
        if not page["has_more"]:
            return out


def test_sse_format_and_gapless_seqs_ending_after_the_terminal_event(http: httpx.Client) -> None:
    run = create(http, TOOL_SCRIPT, tools=["calculator"])
    raw = stream(http, run["id"])  # returns only because the server ends the stream
    events = envelopes(raw)
    for fields, event in zip(raw, events):
        assert set(event) == ENVELOPE_KEYS
        assert fields["id"] == str(event["seq"])
        assert fields["event"] == event["type"]
        assert event["run_id"] == run["id"]
        datetime.fromisoformat(event["created_at"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run.completed"
    assert [e["type"] for e in events].count("run.completed") == 1
    assert events == stored(http, run["id"])


def test_a_typical_tool_run_emits_every_event_type(http: httpx.Client) -> None:
    run = create(http, TOOL_SCRIPT, tools=["calculator"])
    events = envelopes(stream(http, run["id"]))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e["data"])
    for kind in ("run.queued", "run.started", "tools.declared", "message.delta", "message.completed",
                 "reasoning.delta", "tool.call", "tool.result", "usage", "run.completed"):
        assert kind in by_type, f"no {kind} event in {[e['type'] for e in events]}"
    types = [e["type"] for e in events]
    assert types[:3] == ["run.queued", "run.started", "tools.declared"]

    (declared,) = by_type["tools.declared"]
    (tool,) = declared["tools"]
    assert tool["name"] == "calculator"
    assert tool["parameters"]["type"] == "object"
    assert tool["parameters"]["properties"]["expression"]["type"] == "string"

    (call,) = by_type["tool.call"]
    (result,) = by_type["tool.result"]
    assert call["name"] == "calculator" and call["args"] == {"expression": "2+3"}
    assert result["tool_call_id"] == call["tool_call_id"] and result["result"] == "5"
    assert types.index("tool.call") < types.index("tool.result")
    assert "".join(d["delta"] for d in by_type["message.delta"]) == "It is 5."
    assert by_type["message.completed"][-1]["text"] == "It is 5."
    assert len(by_type["usage"]) == 2
    assert by_type["run.completed"][0]["output"] == "It is 5."


def test_resume_after_seq_and_last_event_id(http: httpx.Client) -> None:
    run = create(http, TOOL_SCRIPT, tools=["calculator"])
    finished(http, run["id"])
    everything = stored(http, run["id"])
    assert envelopes(stream(http, run["id"], after_seq=4)) == everything[4:]
    assert envelopes(stream(http, run["id"], headers={"Last-Event-ID": "6"})) == everything[6:]
    assert envelopes(stream(http, run["id"], after_seq=len(everything) - 1)) == everything[-1:]


def test_an_eventsource_reconnect_resumes_from_last_event_id_not_the_urls_after_seq(http: httpx.Client) -> None:
    # A browser EventSource keeps its URL and adds Last-Event-ID when it reconnects: the header,
    # being the later position, must win, or the client sees events twice.
    run = create(http, TOOL_SCRIPT, tools=["calculator"])
    finished(http, run["id"])
    everything = stored(http, run["id"])
    assert envelopes(stream(http, run["id"], after_seq=2, headers={"Last-Event-ID": "7"})) == everything[7:]


def test_json_pages_without_the_sse_accept_header(http: httpx.Client) -> None:
    run = create(http, TOOL_SCRIPT, tools=["calculator"])
    total = finished(http, run["id"])["last_seq"]
    r = http.get(f"/v1/runs/{run['id']}/events", params={"after_seq": 2, "limit": 3})
    assert r.headers["content-type"].startswith("application/json")
    page = r.json()
    assert set(page) >= {"data", "has_more", "next_cursor"}
    assert [e["seq"] for e in page["data"]] == [3, 4, 5]
    assert page["has_more"] is True
    assert all(set(e) == ENVELOPE_KEYS for e in page["data"])

    seqs, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4} if cursor is None else {"limit": 4, "after_seq": cursor}
        page = http.get(f"/v1/runs/{run['id']}/events", params=params).json()
        seqs += [e["seq"] for e in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seqs == list(range(1, total + 1))
    tail = http.get(f"/v1/runs/{run['id']}/events", params={"after_seq": total}).json()
    assert tail == {"data": [], "has_more": False, "next_cursor": None}
    assert http.get("/v1/runs/run_unknown/events").status_code == 404


def test_many_deltas_arrive_complete_on_a_live_stream(http: httpx.Client) -> None:
    run = create(http, [{"text": ["x"], "repeat": 2000}])
    events = envelopes(stream(http, run["id"]))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    deltas = [e["data"]["delta"] for e in events if e["type"] == "message.delta"]
    assert "".join(deltas) == "x" * 2000
    assert events[-1]["type"] == "run.completed"
    assert finished(http, run["id"])["output"] == "x" * 2000


def read_with_random_cuts(
    base_url: str, headers: dict[str, str], run_id: str, rng: random.Random
) -> tuple[list[dict[str, Any]], list[float]]:
    """Read the run's SSE, closing the connection after a random number of events each time and
    reconnecting with Last-Event-ID, until the terminal event. Returns the events and cut times."""
    got: list[dict[str, Any]] = []
    cuts: list[float] = []
    with httpx.Client(base_url=base_url, headers={**headers, **SSE_HEADERS}, timeout=30) as client:
        while not got or got[-1]["type"] not in {"run.completed", "run.failed", "run.cancelled"}:
            budget = rng.randint(0, 12)
            resume = {"Last-Event-ID": str(got[-1]["seq"])} if got else {}
            with client.stream("GET", f"/v1/runs/{run_id}/events", headers=resume) as r:
                assert r.status_code == 200
                for fields in sse(r):
                    if budget == 0:
                        break
                    got.append(json.loads(fields["data"]))
                    budget -= 1
                else:
                    continue  # the server ended the stream: the terminal event is in
            cuts.append(time.time())  # leaving the block drops the connection mid-stream
    return got, cuts


def test_random_disconnects_and_last_event_id_reconnects_lose_and_repeat_nothing(
    http: httpx.Client, server: Any
) -> None:
    # Two concurrent runs of 25 model steps (30 one-char deltas and a tool call, 50 ms apart):
    # ~900 events each, written live while a client per run keeps cutting and reconnecting.
    step = {"delay": 0.05, "text": ["y"], "repeat": 30,
            "tool_calls": [{"name": "calculator", "args": {"expression": "1+1"}}]}
    script = [step] * 25 + [{"text": "end"}]
    runs = [create(http, script, tools=["calculator"]) for _ in range(2)]

    def consume(i: int) -> tuple[list[dict[str, Any]], list[float]]:
        return read_with_random_cuts(server.base_url, server.headers(), runs[i]["id"], random.Random(2024 + i))

    with ThreadPoolExecutor(len(runs)) as pool:
        results = list(pool.map(consume, range(len(runs))))
    total_cuts = live_cuts = 0
    for run, (got, cuts) in zip(runs, results):
        assert got == stored(http, run["id"])  # exactly the log: in order, none missing, none twice
        assert [e["seq"] for e in got] == list(range(1, len(got) + 1))
        assert got[-1]["type"] == "run.completed"
        assert "".join(e["data"]["delta"] for e in got if e["type"] == "message.delta") == "y" * 750 + "end"
        done = datetime.fromisoformat(finished(http, run["id"])["completed_at"]).timestamp()
        total_cuts += len(cuts)
        live_cuts += sum(cut < done for cut in cuts)
    assert total_cuts >= 200
    assert live_cuts >= total_cuts // 2, f"only {live_cuts} of {total_cuts} cuts happened while the run was live"
