"""`runyard agents list | get | create | delete`."""

from __future__ import annotations

from itertools import islice
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from runyard import Agent

from .options import LIST_PAGE_SIZE, ApiKey, AsJson, BaseUrl, connect, split_list
from .output import details, err, out, print_json, reporting, when

__all__ = ["agents_app"]

agents_app = typer.Typer(help="Create, list, inspect and delete agents.", no_args_is_help=True)


def _agent_rows(a: Agent) -> list[tuple[str, Any]]:
    return [
        ("id", a.id),
        ("name", a.name),
        ("model", a.model),
        ("tools", ", ".join(a.tools)),
        ("instructions", a.instructions),
        ("input", a.input_description),
        ("output", a.output_description),
        ("input schema", a.input_schema),
        ("output schema", a.output_schema),
        ("message template", a.message_template),
        ("mcp servers", ", ".join(s.name for s in a.mcp_servers)),
        ("client tools", ", ".join(t.name for t in a.client_tools)),
        ("metadata", a.metadata),
        ("created", when(a.created_at)),
        ("updated", when(a.updated_at)),
    ]


@agents_app.command("list")
def agents_list(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many agents.")] = 50,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List agents, newest first."""
    client = connect(base_url, api_key)
    with reporting(client):
        found = list(islice(client.agents.list(limit=min(limit, LIST_PAGE_SIZE)), limit))
    if as_json:
        print_json([a.model_dump(mode="json") for a in found])
        return
    if not found:
        err.print(Text("no agents yet: create one with `runyard agents create --name NAME`", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "name", "model", "tools", "created"):
        table.add_column(column, no_wrap=column != "tools")
    for a in found:
        table.add_row(a.id, a.name, a.model, ", ".join(a.tools), when(a.created_at))
    out.print(table)


@agents_app.command("get")
def agents_get(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show one agent."""
    client = connect(base_url, api_key)
    with reporting(client, f"agent {agent_id}"):
        a = client.agents.get(agent_id)
    if as_json:
        print_json(a.model_dump(mode="json"))
    else:
        details(_agent_rows(a))


@agents_app.command("create")
def agents_create(
    name: Annotated[str, typer.Option("--name", help="The agent's name (unique in your org).")],
    instructions: Annotated[str | None, typer.Option("--instructions", "-i", help="The system prompt.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model or route id (default: scripted).")] = None,
    tools: Annotated[str | None, typer.Option("--tools", help="Built-in tools, comma-separated.")] = None,
    message_template: Annotated[
        str | None,
        typer.Option("--message-template", help="Jinja2 template of a run's task: `runyard run --var` fills it."),
    ] = None,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Create an agent and print its id."""
    client = connect(base_url, api_key)
    fields: dict[str, Any] = {}
    if instructions is not None:
        fields["instructions"] = instructions
    if model is not None:
        fields["model"] = model
    if tools is not None:
        fields["tools"] = split_list(tools)
    if message_template is not None:
        fields["message_template"] = message_template
    with reporting(client):
        a = client.agents.create(name, **fields)
    if as_json:
        print_json(a.model_dump(mode="json"))
    else:
        out.print(Text(f"created agent {a.id} ({a.name})"))


@agents_app.command("delete")
def agents_delete(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Delete an agent."""
    client = connect(base_url, api_key)
    with reporting(client, f"agent {agent_id}"):
        client.agents.delete(agent_id)
    out.print(Text(f"deleted agent {agent_id}"))
