"""Tools the caller executes, through the SDK: `tools={name: function}` runs Python functions
when the run calls them, and `runs.tool_results` posts results by hand.

Against the real server of the `server` fixture; the offline `scripted` model calls the tools
its `metadata.script` names.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

import runyard
from runyard import AsyncRunyard, RunStatus, RunWaiting, Runyard
from runyard.client.client_tools import LocalTools

LOOKUP_A1 = [{"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A1"}}]}, {"text": "done"}]
LOOKUP_SCHEMA = {
    "name": "lookup_order",
    "description": "Find an order by its id.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    "output_schema": {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]},
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def quick(script: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": unique("ct"), "instructions": "Use the tools.", "metadata": {"script": script}, **extra}


@pytest.fixture
def client(server: Any) -> Iterator[Runyard]:
    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
async def aclient(server: Any) -> AsyncIterator[AsyncRunyard]:
    async with AsyncRunyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


def of_type(client: Runyard, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in client.runs.list_events(run_id) if e.type == kind]


class Order(BaseModel):
    status: str
    total: float


def test_create_and_wait_runs_the_function_and_the_run_completes(client: Runyard) -> None:
    calls: list[dict[str, Any]] = []

    def lookup_order(order_id: Annotated[str, Field(description="The order's id")], verbose: bool = False) -> Order:
        """Find an order by its id."""
        calls.append({"order_id": order_id, "verbose": verbose})
        return Order(status="shipped", total=12.5)

    run = client.runs.create_and_wait(
        "Where is A1?", tools={"lookup_order": lookup_order}, timeout=20, **quick(LOOKUP_A1)
    )
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == "done"
    assert calls == [{"order_id": "A1", "verbose": False}]
    [result] = of_type(client, run.id, "tool.result")
    assert result["name"] == "lookup_order" and result["result"] == {"status": "shipped", "total": 12.5}
    [declared] = of_type(client, run.id, "tools.declared")
    [entry] = [t for t in declared["tools"] if t["name"] == "lookup_order"]
    assert entry["client"] is True
    assert entry["parameters"]["required"] == ["order_id"]
    assert entry["parameters"]["properties"]["order_id"]["description"] == "The order's id"


def test_an_exception_in_the_function_is_the_tools_error_and_the_run_goes_on(client: Runyard) -> None:
    def lookup_order(order_id: str) -> dict[str, Any]:
        raise LookupError(f"no order {order_id}")

    run = client.runs.create_and_wait(
        "Where is A1?", tools={"lookup_order": lookup_order}, timeout=20, **quick(LOOKUP_A1)
    )
    assert run.status is RunStatus.COMPLETED, run.error
    [error] = [e for e in of_type(client, run.id, "tool.error") if e.get("tool_call_id")]
    assert error["name"] == "lookup_order" and "no order A1" in str(error["error"])


def test_arguments_are_validated_into_the_parameters(client: Runyard) -> None:
    seen: list[Any] = []

    def add(a: int, b: int = 1, mode: Literal["sum", "concat"] = "sum") -> int:
        """Add two numbers."""
        seen.append((a, b, mode))
        return a + b

    script = [
        {
            "tool_calls": [
                {"name": "add", "args": {"a": "2", "b": 3}},
                {"name": "add", "args": {"a": "x"}},
                {"name": "add", "args": {"a": 1, "mode": "divide"}},
            ]
        },
        {"text": "done"},
    ]
    run = client.runs.create_and_wait("Add", tools={"add": add}, timeout=20, **quick(script))
    assert run.status is RunStatus.COMPLETED, run.error
    assert seen == [(2, 3, "sum")]  # "2" was coerced; the two bad calls never reached the function
    assert [r["result"] for r in of_type(client, run.id, "tool.result") if r.get("name") == "add"] == [5]
    errors = [str(e["error"]) for e in of_type(client, run.id, "tool.error") if e.get("name") == "add"]
    assert len(errors) == 2 and all("invalid arguments for add" in e for e in errors)


def test_a_stream_runs_the_functions_and_goes_on_past_the_pause(client: Runyard) -> None:
    def lookup_order(order_id: str) -> dict[str, str]:
        return {"status": f"{order_id} shipped"}

    with client.runs.stream("Where?", tools={"lookup_order": lookup_order}, **quick(LOOKUP_A1)) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[-1] == "run.completed"
    waiting = next(e for e in events if isinstance(e, RunWaiting))
    assert waiting.waiting_for == "tool_result" and waiting.waits[0].request["name"] == "lookup_order"
    assert kinds.index("run.waiting") < kinds.index("run.input_received") < kinds.index("tool.result")
    assert not stream.waiting
    assert stream.final_run().status is RunStatus.COMPLETED


def test_a_tool_without_a_function_leaves_the_run_waiting_for_tool_results(client: Runyard) -> None:
    run = client.runs.create_and_wait("Where?", client_tools=[LOOKUP_SCHEMA], timeout=20, **quick(LOOKUP_A1))
    assert (run.status, run.waiting_for) == (RunStatus.WAITING, "tool_result")
    [wait] = [w for w in client.runs.waits(run.id) if w.status == "open"]
    assert wait.kind == "tool_result" and wait.request["args"] == {"order_id": "A1"}
    result = {"tool_call_id": wait.tool_call_id, "output": {"status": "open"}}
    with pytest.raises(runyard.ValidationError) as refused:
        client.runs.tool_results(run.id, [{**result, "output": {"status": 7}}])
    assert refused.value.field == "results[0].output.status"
    resumed = client.runs.tool_results(run.id, [result])
    assert resumed.status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPLETED)
    assert client.runs.tool_results(run.id, [result]).id == run.id  # the same results again: harmless
    assert client.runs.wait(run.id, timeout=20).status is RunStatus.COMPLETED


def test_an_output_outside_the_tools_output_schema_is_posted_as_its_error(client: Runyard) -> None:
    # The definition with an output_schema was sent at create; the function runs in `wait`.
    run = client.runs.create("Where?", client_tools=[LOOKUP_SCHEMA], **quick(LOOKUP_A1))
    run = client.runs.wait(run.id, tools={"lookup_order": lambda order_id: {"status": 7}}, timeout=20)
    assert run.status is RunStatus.COMPLETED, run.error
    [error] = [e for e in of_type(client, run.id, "tool.error") if e.get("name") == "lookup_order"]
    assert "refused" in str(error["error"]) and "status" in str(error["error"])


def test_functions_are_client_tools_beside_the_agents_built_ins(client: Runyard) -> None:
    agent = client.agents.create(unique("ct"), tools=["calculator"])
    script = [
        {
            "tool_calls": [
                {"name": "calculator", "args": {"expression": "2+2"}},
                {"name": "lookup_order", "args": {"order_id": "B2"}},
            ]
        },
        {"text": "done"},
    ]
    run = client.runs.create_and_wait(
        "Both",
        agent_id=agent.id,
        tools={"lookup_order": lambda order_id: "ok"},
        metadata={"script": script},
        timeout=20,
    )
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.tools == ["calculator"]
    results = of_type(client, run.id, "tool.result")
    assert [(r["name"], r["result"]) for r in results] == [("calculator", "4"), ("lookup_order", "ok")]
    [answered] = of_type(client, run.id, "run.input_received")
    assert (answered["kind"], answered["answer"]) == ("tool_result", {"output": "ok"})


def test_misuse_is_refused_before_any_request(client: Runyard) -> None:
    async def lookup_order(order_id: str) -> str:
        return "x"

    with pytest.raises(TypeError, match="AsyncRunyard"):
        client.runs.create_and_wait("x", tools={"lookup_order": lookup_order}, **quick(LOOKUP_A1))
    with pytest.raises(TypeError, match="both in client_tools and as functions"):
        client.runs.create(
            "x", client_tools=[LOOKUP_SCHEMA], tools={"lookup_order": lambda order_id: 1}, **quick(LOOKUP_A1)
        )
    with pytest.raises(TypeError, match=r"\*args"):
        client.runs.create("x", tools={"f": lambda *values: 1}, **quick(LOOKUP_A1))


async def test_async_functions_are_awaited_and_plain_ones_run_in_a_thread(aclient: AsyncRunyard) -> None:
    threads: list[str] = []

    async def lookup_order(order_id: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"status": f"{order_id} async"}

    def track(parcel: str) -> str:
        threads.append(threading.current_thread().name)
        return f"{parcel} in transit"

    script = [
        {
            "tool_calls": [
                {"name": "lookup_order", "args": {"order_id": "A1"}},
                {"name": "track", "args": {"parcel": "P9"}},
            ]
        },
        {"text": "done"},
    ]
    run = await aclient.runs.create_and_wait(
        "Where?", tools={"lookup_order": lookup_order, "track": track}, timeout=20, **quick(script)
    )
    assert run.status is RunStatus.COMPLETED, run.error
    results = {
        e.data["name"]: e.data["result"] async for e in aclient.runs.list_events(run.id) if e.type == "tool.result"
    }
    assert results == {"lookup_order": {"status": "A1 async"}, "track": "P9 in transit"}
    assert threads and threads[0] != threading.current_thread().name


async def test_async_errors_and_streams(aclient: AsyncRunyard) -> None:
    async def lookup_order(order_id: str) -> str:
        raise RuntimeError("backend down")

    async with aclient.runs.stream("Where?", tools={"lookup_order": lookup_order}, **quick(LOOKUP_A1)) as stream:
        kinds = [event.type async for event in stream]
    assert kinds[-1] == "run.completed" and "tool.error" in kinds
    errors = [e.data async for e in aclient.runs.list_events(stream.run_id or "") if e.type == "tool.error"]
    assert any("backend down" in str(e.get("error")) for e in errors)


# --------------------------------------------------------------------------- without a server


def test_definitions_come_from_the_signature_and_the_docstring() -> None:
    def search(query: str, limit: int = 10, tags: list[str] | None = None) -> list[str]:
        """Search the catalogue.

        Returns matching item names.
        """
        return []

    [definition] = LocalTools({"search": search}).definitions()
    assert definition["name"] == "search"
    assert definition["description"] == "Search the catalogue.\n\nReturns matching item names."
    parameters = definition["parameters"]
    assert parameters["required"] == ["query"] and parameters["additionalProperties"] is False
    assert parameters["properties"]["limit"] == {"default": 10, "title": "Limit", "type": "integer"}
    assert set(parameters["properties"]) == {"query", "limit", "tags"}


def test_parameters_named_like_model_attributes_work() -> None:
    def fetch(json: str, model_config: int = 0) -> str:
        return f"{json}:{model_config}"

    tool = LocalTools({"fetch": fetch}).tools["fetch"]
    assert tool.bind({"json": "a", "model_config": "2"}) == {"json": "a", "model_config": 2}
