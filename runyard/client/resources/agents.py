"""`client.agents`: create, read, list, update and delete agents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ..._versions import AgentVersion
from ...domain import Agent, ClientTool, MCPServer, RunLimits
from ..client_tools import client_tool_json
from ..pagination import AsyncPaginator, SyncPage
from ..paths import path_for
from ..types import NOT_GIVEN, NotGiven, NotGivenOr, strip_not_given

if TYPE_CHECKING:
    from ..client import AsyncRunyard, Runyard

__all__ = ["AgentDeleted", "Agents", "AsyncAgents"]


class AgentDeleted(BaseModel):
    """The answer to `client.agents.delete(...)`."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["agent"] = "agent"
    deleted: bool


def mcp_server_json(server: MCPServer | Mapping[str, Any]) -> dict[str, Any]:
    """An MCP server as the request body carries it: the fields the caller set."""
    model = server if isinstance(server, MCPServer) else MCPServer.model_validate(server)
    return model.model_dump(mode="json", exclude_unset=True, exclude_none=True)


def agent_body(
    *,
    name: NotGivenOr[str],
    instructions: NotGivenOr[str],
    model: NotGivenOr[str],
    route_id: NotGivenOr[str | None],
    tools: NotGivenOr[list[str]],
    input_description: NotGivenOr[str | None],
    output_description: NotGivenOr[str | None],
    input_schema: NotGivenOr[dict[str, Any] | None],
    output_schema: NotGivenOr[dict[str, Any] | None],
    message_template: NotGivenOr[str | None],
    mcp_servers: NotGivenOr[Sequence[MCPServer | Mapping[str, Any]]],
    client_tools: NotGivenOr[Sequence[ClientTool | Mapping[str, Any]]],
    limits: NotGivenOr[RunLimits | Mapping[str, Any] | None],
    metadata: NotGivenOr[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON body of an agent create or update: every field the caller passed, and no other."""
    if not isinstance(mcp_servers, NotGiven):
        mcp_servers = [mcp_server_json(server) for server in mcp_servers]
    if not isinstance(client_tools, NotGiven):
        client_tools = [client_tool_json(tool) for tool in client_tools]
    if isinstance(limits, RunLimits):
        limits = limits.model_dump(exclude_none=True)
    return strip_not_given(
        {
            "name": name,
            "instructions": instructions,
            "model": model,
            "route_id": route_id,
            "tools": tools,
            "input_description": input_description,
            "output_description": output_description,
            "input_schema": input_schema,
            "output_schema": output_schema,
            "message_template": message_template,
            "mcp_servers": mcp_servers,
            "client_tools": client_tools,
            "limits": limits,
            "metadata": metadata,
        }
    )


class Agents:
    """Agents: an LLM with instructions and tools, the thing a run executes."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def create(
        self,
        name: str,
        *,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        route_id: NotGivenOr[str | None] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        input_description: NotGivenOr[str | None] = NOT_GIVEN,
        output_description: NotGivenOr[str | None] = NOT_GIVEN,
        input_schema: NotGivenOr[dict[str, Any] | None] = NOT_GIVEN,
        output_schema: NotGivenOr[dict[str, Any] | None] = NOT_GIVEN,
        message_template: NotGivenOr[str | None] = NOT_GIVEN,
        mcp_servers: NotGivenOr[Sequence[MCPServer | Mapping[str, Any]]] = NOT_GIVEN,
        client_tools: NotGivenOr[Sequence[ClientTool | Mapping[str, Any]]] = NOT_GIVEN,
        limits: NotGivenOr[RunLimits | Mapping[str, Any] | None] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> Agent:
        """Create an agent.

        Args:
            name: a name, unique enough for you to find it again (runs can find-or-create by name).
            instructions: the system prompt.
            model: a model or route id; the offline `scripted` model when left out.
            route_id: a route (`GET /v1/routes`): it picks the model, its retries and fallbacks.
            tools: names of built-in tools the agent may call.
            input_description / output_description: what the agent takes and returns, in words.
            input_schema / output_schema: JSON Schemas of the input and the structured output;
                a run's `variables` are checked against `input_schema`.
            message_template: a Jinja2 template (sandboxed, rendered by the server) that makes a
                run's task from its `variables`: `"Summarise {{ url }} in {{ words }} words."`.
            mcp_servers: MCP servers whose tools the agent may call (`MCPServer`s or dicts):
                streamable HTTP (`url`, `headers`) or stdio (`command`, `args`) if the operator allows.
            client_tools: definitions of tools the caller executes (`ClientTool`s or dicts with
                `name`, `description`, `parameters`, `output_schema`); see `runs.tool_results`.
            limits: budgets of the agent's runs (`RunLimits` or a dict); a run's own and the org's
                apply too, the smallest winning.
            metadata: free-form JSON; the `scripted` model reads its `script` here.
        """
        body = agent_body(
            name=name,
            instructions=instructions,
            model=model,
            route_id=route_id,
            tools=tools,
            input_description=input_description,
            output_description=output_description,
            input_schema=input_schema,
            output_schema=output_schema,
            message_template=message_template,
            mcp_servers=mcp_servers,
            client_tools=client_tools,
            limits=limits,
            metadata=metadata,
        )
        return self._client._request_model("POST", "/v1/agents", Agent, json=body)

    def get(self, agent_id: str) -> Agent:
        """Fetch one agent. Raises `NotFoundError` when there is no such agent."""
        return self._client._request_model("GET", path_for("/v1/agents/{}", agent_id), Agent)

    def versions(self, agent_id: str, *, limit: NotGivenOr[int] = NOT_GIVEN) -> SyncPage[AgentVersion]:
        """The agent's versions, newest first; iterating the page walks all of them."""
        path = path_for("/v1/agents/{}/versions", agent_id)
        return self._client._request_page(path, AgentVersion.model_validate, {"limit": limit})

    def version(self, agent_id: str, version: int) -> AgentVersion:
        """The agent as it was at `version`. Raises `NotFoundError` when it has no such version."""
        path = path_for("/v1/agents/{}/versions/{}", agent_id, str(version))
        return self._client._request_model("GET", path, AgentVersion)

    def list(self, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN) -> SyncPage[Agent]:
        """List agents, newest first.

        Returns the first page; iterating it yields every agent, fetching older pages as needed.

        Args:
            limit: page size (at most 100).
            before: a cursor (`next_cursor` of an earlier page) to start after.
        """
        return self._client._request_page("/v1/agents", Agent.model_validate, {"limit": limit, "before": before})

    def update(
        self,
        agent_id: str,
        *,
        name: NotGivenOr[str] = NOT_GIVEN,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        route_id: NotGivenOr[str | None] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        input_description: NotGivenOr[str | None] = NOT_GIVEN,
        output_description: NotGivenOr[str | None] = NOT_GIVEN,
        input_schema: NotGivenOr[dict[str, Any] | None] = NOT_GIVEN,
        output_schema: NotGivenOr[dict[str, Any] | None] = NOT_GIVEN,
        message_template: NotGivenOr[str | None] = NOT_GIVEN,
        mcp_servers: NotGivenOr[Sequence[MCPServer | Mapping[str, Any]]] = NOT_GIVEN,
        client_tools: NotGivenOr[Sequence[ClientTool | Mapping[str, Any]]] = NOT_GIVEN,
        limits: NotGivenOr[RunLimits | Mapping[str, Any] | None] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> Agent:
        """Change some fields of an agent; fields not passed keep their value (pass `None` to clear one)."""
        body = agent_body(
            name=name,
            instructions=instructions,
            model=model,
            route_id=route_id,
            tools=tools,
            input_description=input_description,
            output_description=output_description,
            input_schema=input_schema,
            output_schema=output_schema,
            message_template=message_template,
            mcp_servers=mcp_servers,
            client_tools=client_tools,
            limits=limits,
            metadata=metadata,
        )
        return self._client._request_model("PATCH", path_for("/v1/agents/{}", agent_id), Agent, json=body)

    def delete(self, agent_id: str) -> AgentDeleted:
        """Delete an agent."""
        return self._client._request_model("DELETE", path_for("/v1/agents/{}", agent_id), AgentDeleted)


class AsyncAgents:
    """Agents: an LLM with instructions and tools, the thing a run executes."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        *,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        route_id: NotGivenOr[str | None] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        input_description: NotGivenOr[str | None] = NOT_GIVEN,
        output_description: NotGivenOr[str | None] = NOT_GIVEN,
        input_schema: NotGivenOr[dict[str, Any] | None] = NOT_GIVEN,
        output_schema: NotGivenOr[dict[str, Any] | None] = NOT_GIVEN,
        message_template: NotGivenOr[str | None] = NOT_GIVEN,
        mcp_servers: NotGivenOr[Sequence[MCPServer | Mapping[str, Any]]] = NOT_GIVEN,
        client_tools: NotGivenOr[Sequence[ClientTool | Mapping[str, Any]]] = NOT_GIVEN,
        limits: NotGivenOr[RunLimits | Mapping[str, Any] | None] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> Agent:
        """Create an agent. The arguments are those of `Runyard.agents.create`."""
        body = agent_body(
            name=name,
            instructions=instructions,
            model=model,
            route_id=route_id,
            tools=tools,
            input_description=input_description,
            output_description=output_description,
            input_schema=input_schema,
            output_schema=output_schema,
            message_template=message_template,
            mcp_servers=mcp_servers,
            client_tools=client_tools,
            limits=limits,
            metadata=metadata,
        )
        return await self._client._request_model("POST", "/v1/agents", Agent, json=body)

    async def get(self, agent_id: str) -> Agent:
        """Fetch one agent. Raises `NotFoundError` when there is no such agent."""
        return await self._client._request_model("GET", path_for("/v1/agents/{}", agent_id), Agent)

    def versions(self, agent_id: str, *, limit: NotGivenOr[int] = NOT_GIVEN) -> AsyncPaginator[AgentVersion]:
        """The agent's versions, newest first: `await` for the first page or `async for` over all."""
        path = path_for("/v1/agents/{}/versions", agent_id)
        return self._client._request_page(path, AgentVersion.model_validate, {"limit": limit})

    async def version(self, agent_id: str, version: int) -> AgentVersion:
        """The agent as it was at `version`. Raises `NotFoundError` when it has no such version."""
        path = path_for("/v1/agents/{}/versions/{}", agent_id, str(version))
        return await self._client._request_model("GET", path, AgentVersion)

    def list(self, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN) -> AsyncPaginator[Agent]:
        """List agents, newest first: `await` it for the first page, or `async for` over every agent."""
        return self._client._request_page("/v1/agents", Agent.model_validate, {"limit": limit, "before": before})

    async def update(
        self,
        agent_id: str,
        *,
        name: NotGivenOr[str] = NOT_GIVEN,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        route_id: NotGivenOr[str | None] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        input_description: NotGivenOr[str | None] = NOT_GIVEN,
        output_description: NotGivenOr[str | None] = NOT_GIVEN,
        input_schema: NotGivenOr[dict[str, Any] | None] = NOT_GIVEN,
        output_schema: NotGivenOr[dict[str, Any] | None] = NOT_GIVEN,
        message_template: NotGivenOr[str | None] = NOT_GIVEN,
        mcp_servers: NotGivenOr[Sequence[MCPServer | Mapping[str, Any]]] = NOT_GIVEN,
        client_tools: NotGivenOr[Sequence[ClientTool | Mapping[str, Any]]] = NOT_GIVEN,
        limits: NotGivenOr[RunLimits | Mapping[str, Any] | None] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> Agent:
        """Change some fields of an agent; fields not passed keep their value (pass `None` to clear one)."""
        body = agent_body(
            name=name,
            instructions=instructions,
            model=model,
            route_id=route_id,
            tools=tools,
            input_description=input_description,
            output_description=output_description,
            input_schema=input_schema,
            output_schema=output_schema,
            message_template=message_template,
            mcp_servers=mcp_servers,
            client_tools=client_tools,
            limits=limits,
            metadata=metadata,
        )
        return await self._client._request_model("PATCH", path_for("/v1/agents/{}", agent_id), Agent, json=body)

    async def delete(self, agent_id: str) -> AgentDeleted:
        """Delete an agent."""
        return await self._client._request_model("DELETE", path_for("/v1/agents/{}", agent_id), AgentDeleted)
