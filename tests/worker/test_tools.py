"""Built-in tools, driven through real runs of the `scripted` model on a real server.

Covers `calculator` (a good and a bad expression: a recoverable error is a `tool.error`
event and the loop goes on), `current_time`, `http_get` (private addresses refused by
default; size and time limits, on a server process started with small limits),
the `tools.declared` event, and unknown tool names rejected with a 422.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

# tests/ has no __init__.py: pytest's `prepend` import mode put tests/ on sys.path for its conftest.
from support.servers import ADMIN_KEY, ServerProcess


def run_script(
    http: httpx.Client, tools: list[str], script: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Create a run of the scripted model with `tools`, wait for its end; return it and its events."""
    r = http.post("/v1/runs", json={"name": "tools-tests", "instructions": "Use tools.", "message": "go",
                                    "tools": tools, "metadata": {"script": script}})
    assert r.status_code == 201, r.text
    run = http.get(f"/v1/runs/{r.json()['id']}/wait", params={"timeout": 20}).json()
    page = http.get(f"/v1/runs/{run['id']}/events", params={"limit": 1000}).json()
    assert not page["has_more"]
    return run, page["data"]


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == type_]


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args}


def test_calculator_good_and_bad_expression(http: httpx.Client) -> None:
    run, events = run_script(http, ["calculator"], [
        {"tool_calls": [call("calculator", expression="2 * (3 + 4) ** 2"), call("calculator", expression="2 +* ")]},
        {"tool_calls": [call("calculator", expression="__import__('os').getcwd()")]},
        {"text": "recovered"},
    ])
    assert run["status"] == "completed", run
    assert run["output"] == "recovered"

    [result] = of_type(events, "tool.result")
    assert result["name"] == "calculator" and result["result"] == "98"
    # Each bad expression is one tool.error; the model sees it and the loop goes on.
    errors = sorted(of_type(events, "tool.error"), key=lambda e: e["tool_call_id"])
    assert [e["tool_call_id"] for e in errors] == ["call_0_2", "call_1_1"]
    assert all("cannot evaluate" in str(e["error"]) for e in errors), errors
    assert run["usage"]["tool_calls"] == 3


def test_bad_tool_arguments_are_a_recoverable_tool_error(http: httpx.Client) -> None:
    # Arguments that fail the tool's schema never reach the tool: pydantic-ai asks the model to retry.
    run, events = run_script(http, ["calculator"], [
        {"tool_calls": [call("calculator", formula="1 + 1")]},
        {"tool_calls": [call("calculator", expression="1 + 1")]},
        {"text": "two"},
    ])
    assert run["status"] == "completed", run
    [error] = of_type(events, "tool.error")
    assert error["tool_call_id"] == "call_0_1" and error["name"] == "calculator"
    assert "expression" in str(error["error"])
    assert [r["result"] for r in of_type(events, "tool.result")] == ["2"]


def test_current_time(http: httpx.Client) -> None:
    before = datetime.now(UTC)
    run, events = run_script(http, ["current_time"], [
        {"tool_calls": [call("current_time"), call("current_time", timezone_name="Mars/Olympus")]},
        {"text": "ok"},
    ])
    assert run["status"] == "completed", run
    [result] = of_type(events, "tool.result")
    stamp = datetime.fromisoformat(result["result"])
    assert stamp.tzinfo is not None
    assert before <= stamp <= datetime.now(UTC)
    [error] = of_type(events, "tool.error")
    assert "unsupported timezone" in str(error["error"])


def test_http_get_refuses_private_addresses(http: httpx.Client, server: Any) -> None:
    # The session server does not set RUNYARD_HTTP_GET_ALLOW_PRIVATE: loopback and friends are refused.
    port = server.base_url.rsplit(":", 1)[1]
    private = [f"http://127.0.0.1:{port}/healthz", f"http://localhost:{port}/healthz", f"http://[::1]:{port}/",
               "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0/"]
    run, events = run_script(http, ["http_get"], [
        {"tool_calls": [call("http_get", url=url) for url in [*private, "file:///etc/passwd"]]},
        {"text": "could not fetch"},
    ])
    assert run["status"] == "completed", run
    assert of_type(events, "tool.result") == []
    # Calls of one turn run concurrently: order their errors by call id.
    errors = sorted(of_type(events, "tool.error"), key=lambda e: int(e["tool_call_id"].rsplit("_", 1)[1]))
    assert len(errors) == len(private) + 1
    for url, error in zip(private, errors[:-1], strict=True):
        assert "private" in str(error["error"]), (url, error)
    assert "http" in str(errors[-1]["error"])


def test_tools_declared_lists_names_and_schemas(http: httpx.Client) -> None:
    run, events = run_script(http, ["calculator", "current_time", "http_get"], [{"text": "hi"}])
    assert run["status"] == "completed"
    assert [e["type"] for e in events[:3]] == ["run.queued", "run.started", "tools.declared"]
    declared = {t["name"]: t for t in of_type(events, "tools.declared")[0]["tools"]}
    assert list(declared) == ["calculator", "current_time", "http_get"]
    calc = declared["calculator"]["parameters"]
    assert calc["type"] == "object"
    assert calc["properties"]["expression"]["type"] == "string"
    assert calc["required"] == ["expression"]
    assert declared["http_get"]["parameters"]["required"] == ["url"]
    assert "timezone_name" in declared["current_time"]["parameters"]["properties"]
    assert all(t["description"] for t in declared.values())
    assert declared["http_get"]["side_effects"] is True
    assert declared["calculator"]["side_effects"] is False


def test_unknown_tool_names_are_rejected(http: httpx.Client) -> None:
    name = f"bad-tools-{uuid.uuid4().hex[:8]}"
    r = http.post("/v1/agents", json={"name": name, "instructions": "x", "tools": ["calculator", "rm_rf"]})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "tools"
    assert "rm_rf" in r.json()["error"]["message"]
    assert name not in [a["name"] for a in http.get("/v1/agents", params={"limit": 100}).json()["data"]]

    agent = http.post("/v1/agents", json={"name": name, "instructions": "x", "tools": ["calculator"]}).json()
    r = http.patch(f"/v1/agents/{agent['id']}", json={"tools": ["teleport"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "tools"
    assert http.get(f"/v1/agents/{agent['id']}").json()["tools"] == ["calculator"]

    r = http.post("/v1/runs", json={"agent_id": agent["id"], "message": "go", "tools": ["teleport"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "tools"


class SlowBigServer(ThreadingHTTPServer):
    """/big answers 10 KB at once; /slow waits 3 s before answering; /drip sends 1 byte every 0.2 s for 4 s."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/slow":
                    time.sleep(8)
                body = b"x" * (40 if self.path == "/drip" else 10_000)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if self.path != "/drip":
                        self.wfile.write(body)
                        return
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.2)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def slow_big() -> Iterator[SlowBigServer]:
    srv = SlowBigServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_http_get_size_and_time_limits(tmp_path: Path, slow_big: SlowBigServer) -> None:
    env = {"RUNYARD_HTTP_GET_ALLOW_PRIVATE": "1", "RUNYARD_HTTP_GET_MAX_BYTES": "64", "RUNYARD_HTTP_GET_TIMEOUT": "2"}
    proc = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}", env).start(tmp_path)
    try:
        with httpx.Client(base_url=proc.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as http:
            run, events = run_script(http, ["http_get"], [
                {"tool_calls": [call("http_get", url=f"{slow_big.url}/{path}") for path in ("big", "slow", "drip")]},
                {"text": "done"},
            ])
    finally:
        proc.stop()
    assert run["status"] == "completed", run
    outcome = {e["data"]["tool_call_id"]: e for e in events if e["type"] in ("tool.result", "tool.error")}
    big, slow, drip = (outcome[f"call_0_{n}"] for n in (1, 2, 3))
    assert big["type"] == "tool.result"
    assert big["data"]["result"] == "HTTP 200 (truncated)\n" + "x" * 64
    # The time limit bounds the whole request: a server that never answers, and one that
    # trickles its body (each read well inside 2 s, 8 s in all), are both cut off. The limit
    # is generous so a loaded machine still fetches the fast body in time.
    assert slow["type"] == "tool.error" and "time" in str(slow["data"]["error"]).lower()
    assert drip["type"] == "tool.error", drip
    assert "time" in str(drip["data"]["error"]).lower()
