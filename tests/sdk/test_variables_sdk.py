"""Input variables through the SDK: an agent's `message_template` and `input_schema`, a run's
`variables` and `output_schema`, and the agent fields that came with them (`mcp_servers`,
`client_tools`). Against the real server of the `server` fixture (the `scripted` model echoes
its task when it has no script).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from support.servers import ADMIN_KEY, ServerInThread

import runyard
from runyard import AsyncRunyard, ClientTool, MCPServer, RunStatus, Runyard
from runyard.config import Settings

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"],
    "additionalProperties": False,
}
TEMPLATE = "Forecast for {{ city }}{% if days is defined %} over {{ days }} days{% endif %}."


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: Any) -> Iterator[Runyard]:
    with Runyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
async def aclient(server: Any) -> AsyncIterator[AsyncRunyard]:
    async with AsyncRunyard(base_url=server.base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture(scope="module")
def mcp_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runyard]:
    # MCP servers on loopback addresses are refused unless the operator allows private ones.
    db = tmp_path_factory.mktemp("mcp-db") / "runyard.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{db}", api_key=ADMIN_KEY, mcp_allow_private=True)
    srv = ServerInThread(settings).start()
    try:
        with Runyard(base_url=srv.base_url, api_key=srv.api_key) as client:
            yield client
    finally:
        srv.stop()


@pytest.fixture
def forecaster(client: Runyard) -> runyard.Agent:
    return client.agents.create(unique("vars"), input_schema=SCHEMA, message_template=TEMPLATE)


def test_variables_render_the_task_without_a_message(client: Runyard, forecaster: runyard.Agent) -> None:
    assert forecaster.message_template == TEMPLATE
    run = client.runs.create(agent_id=forecaster.id, variables={"city": "Oslo", "days": 3})
    assert run.original_prompt == "Forecast for Oslo over 3 days."
    assert run.variables == {"city": "Oslo", "days": 3}
    done = client.runs.wait(run.id, timeout=20)
    assert done.output == "You said: Forecast for Oslo over 3 days."
    assert client.runs.get(run.id).variables == {"city": "Oslo", "days": 3}


def test_create_and_wait_and_stream_take_variables(client: Runyard, forecaster: runyard.Agent) -> None:
    run = client.runs.create_and_wait(agent_id=forecaster.id, variables={"city": "Rome"}, timeout=20)
    assert (run.status, run.original_prompt) == (RunStatus.COMPLETED, "Forecast for Rome.")
    with client.runs.stream(agent_id=forecaster.id, variables={"city": "Lima"}) as stream:
        stream.until_done()
    assert stream.text == "You said: Forecast for Lima."
    thread_run = client.threads.runs.create(run.thread_id, agent_id=forecaster.id, variables={"city": "Kyiv"})
    assert thread_run.original_prompt == "Forecast for Kyiv."
    client.runs.wait(thread_run.id, timeout=20)


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"city": 5}, "variables.city"),
        ({"city": "Oslo", "days": 0}, "variables.days"),
        ({"days": 2}, "variables"),
    ],
)
def test_bad_variables_raise_the_typed_422(
    client: Runyard, forecaster: runyard.Agent, variables: dict[str, Any], field: str
) -> None:
    with pytest.raises(runyard.ValidationError) as raised:
        client.runs.create(agent_id=forecaster.id, variables=variables)
    assert raised.value.status_code == 422 and raised.value.field == field


def test_a_message_is_needed_without_a_template(client: Runyard) -> None:
    with pytest.raises(runyard.ValidationError) as raised:
        client.runs.create(name=unique("plain"), instructions="x")
    assert raised.value.field == "message"


def test_a_run_may_override_the_output_schema(client: Runyard) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    script = [{"tool_calls": [{"name": "final_result", "args": {"answer": "42"}}]}]
    run = client.runs.create_and_wait(
        "Answer", name=unique("out"), instructions="x", output_schema=schema, metadata={"script": script}, timeout=20
    )
    assert run.output_schema == schema
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == {"answer": "42"}


def test_agents_take_templates_mcp_servers_and_client_tools(mcp_client: Runyard) -> None:
    client = mcp_client
    tool = ClientTool(
        name="lookup_order",
        description="Find an order.",
        parameters={"type": "object", "properties": {"order_id": {"type": "string"}}},
    )
    agent = client.agents.create(
        unique("full"),
        message_template="Hello {{ name }}",
        mcp_servers=[MCPServer(name="docs", url="http://127.0.0.1:9/mcp", allowed_tools=["search"])],
        client_tools=[tool, {"name": "track", "parameters": {"type": "object", "properties": {}}}],
    )
    assert agent.message_template == "Hello {{ name }}"
    assert [(s.name, s.url, s.allowed_tools) for s in agent.mcp_servers] == [
        ("docs", "http://127.0.0.1:9/mcp", ["search"])
    ]
    assert [t.name for t in agent.client_tools] == ["lookup_order", "track"]
    assert agent.client_tools[0].description == "Find an order."

    updated = client.agents.update(agent.id, message_template=None, client_tools=[])
    assert (updated.message_template, updated.client_tools) == (None, [])
    assert [s.name for s in updated.mcp_servers] == ["docs"]  # not passed: kept
    with pytest.raises(runyard.ValidationError) as raised:
        client.agents.update(agent.id, message_template="{% if %}")
    assert raised.value.field == "message_template"


def test_the_operator_may_refuse_an_mcp_server(client: Runyard) -> None:
    with pytest.raises(runyard.ValidationError) as raised:
        client.agents.create(unique("mcp"), mcp_servers=[{"name": "docs", "url": "http://127.0.0.1:9/mcp"}])
    assert raised.value.field == "mcp_servers[0].url"


async def test_async_variables(aclient: AsyncRunyard) -> None:
    agent = await aclient.agents.create(unique("avars"), input_schema=SCHEMA, message_template=TEMPLATE)
    run = await aclient.runs.create_and_wait(agent_id=agent.id, variables={"city": "Bern", "days": 2}, timeout=20)
    assert (run.original_prompt, run.variables) == ("Forecast for Bern over 2 days.", {"city": "Bern", "days": 2})
    with pytest.raises(runyard.ValidationError) as raised:
        await aclient.runs.create(agent_id=agent.id, variables={"city": ["x"]})
    assert raised.value.field == "variables.city"


def test_the_sdks_run_keywords_are_the_servers_run_fields() -> None:
    from runyard.client.resources.run_params import RunCreateParams
    from runyard.server.schemas import RunCreate

    keywords = RunCreateParams.__required_keys__ | RunCreateParams.__optional_keys__
    # `message` is positional, `stream` is which call you make, the key is a header.
    assert keywords - {"idempotency_key"} == set(RunCreate.model_fields) - {"message", "stream"}
