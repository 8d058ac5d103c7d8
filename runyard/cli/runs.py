"""`runyard run` and `runyard runs list | get | cancel | events`: start, follow and inspect runs.

`runs answer | approve | reply` join this group from `waits.py`, with the other pause commands,
and `runs files` from `files.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.table import Table
from rich.text import Text

import runyard
from runyard import Event, RunStatus
from runyard.domain import PermissionMode

from .files import upload_all
from .options import LIST_PAGE_SIZE, ApiKey, AsJson, BaseUrl, connect, split_list
from .output import (
    EXIT_INTERRUPTED,
    Transcript,
    details,
    dump,
    err,
    fail,
    out,
    print_json,
    reporting,
    status_text,
    usage_line,
    when,
)
from .waits import follow_run

__all__ = ["parse_vars", "run", "runs_app"]

DEFAULT_AGENT = "cli"
"""The agent `runyard run` finds or creates when given no --agent."""
DEFAULT_INSTRUCTIONS = "You are a helpful assistant. Answer briefly."
"""Instructions of that agent when --instructions is not given."""
EVENTS_PAGE_SIZE = 1000
"""Events fetched per request by `runs events` (the server's maximum)."""
PERMISSION_MODES: tuple[str, ...] = get_args(PermissionMode)

# --------------------------------------------------------------------------- runyard run


def _run_params(
    agent: str | None, instructions: str | None, name: str | None, tools: str | None, model: str | None
) -> dict[str, Any]:
    if agent is not None and (instructions is not None or name is not None):
        raise typer.BadParameter("--agent cannot be combined with --instructions or --name", param_hint="--agent")
    params: dict[str, Any]
    if agent is None:
        params = {"name": name or DEFAULT_AGENT, "instructions": instructions or DEFAULT_INSTRUCTIONS}
    elif agent.startswith("agt_"):
        params = {"agent_id": agent}
    else:
        params = {"name": agent}  # the server finds it by name, or says there is none
    if tools is not None:
        params["tools"] = split_list(tools)
    if model is not None:
        params["model"] = model
    return params


def parse_vars(values: list[str]) -> dict[str, Any]:
    """`--var key=value` values as the run's variables: a value that parses as JSON is that JSON
    (`days=3` is a number, `tags=["a"]` a list), any other is the text itself; a later key wins."""
    variables: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--var")
        try:
            variables[key.strip()] = json.loads(raw)
        except ValueError:
            variables[key.strip()] = raw
    return variables


def run(
    task: Annotated[
        str | None, typer.Argument(help="The task (the run's message); optional for an agent with a message template.")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Run this agent (a name, or an agt_ id).")] = None,
    instructions: Annotated[
        str | None,
        typer.Option("--instructions", "-i", help="Instructions of the quick-start agent (used when it is created)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help=f"Name of the quick-start agent (default: {DEFAULT_AGENT}).")
    ] = None,
    tools: Annotated[str | None, typer.Option("--tools", help="Tools for this run, comma-separated.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model or route id for this run.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each event as one JSON line, and nothing else.")
    ] = False,
    hitl: Annotated[
        bool, typer.Option("--hitl", help="Let the run ask questions and approvals; answer them here.")
    ] = False,
    permission_mode: Annotated[
        str | None,
        typer.Option("--permission-mode", help="With --hitl: autonomous, approve_writes, approve_all or plan."),
    ] = None,
    file: Annotated[
        list[Path] | None,
        typer.Option(
            "--file",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Upload this file into the run's workspace first (repeatable); read it with the files tools.",
        ),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="A variable for the agent's message template, key=value (repeatable; JSON values)."),
    ] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Start a run and stream it: text as it arrives, tool calls as lines, then status and usage.

    Without --agent, runs the quick-start agent (--name, default "cli"), created with --instructions on first use.
    --var values fill the agent's message template (then TASK may be left out); --file uploads
    each file into the run's workspace first (the agent reads it with the `files` tools).
    With --hitl, the run's questions (a numbered picker, or free text) and approvals (allow, deny
    or always, and a reason) are asked on stderr and read from stdin, and the stream goes on.

    Exits 0 when the run completed, 1 when it failed, was cancelled or was left waiting; Ctrl-C cancels the run
    and exits 130.
    """
    params = _run_params(agent, instructions, name, tools, model)
    if var:
        params["variables"] = parse_vars(var)
    elif task is None:
        raise typer.BadParameter("give the TASK, or --var values for an agent with a message template")
    if permission_mode is not None:
        if permission_mode not in PERMISSION_MODES:
            raise typer.BadParameter(f"one of {', '.join(PERMISSION_MODES)}", param_hint="--permission-mode")
        if permission_mode != "autonomous" and not hitl:
            raise typer.BadParameter("needs --hitl: someone must answer the approvals", param_hint="--permission-mode")
        params["permission_mode"] = permission_mode
    if hitl:
        params["human_in_the_loop"] = True
    client = connect(base_url, api_key)
    with reporting(client, f"agent {agent}" if agent and agent.startswith("agt_") else None):
        spinner = None if as_json else Transcript()
        if spinner is not None:
            spinner.wait("starting the run…")
        try:
            if file:
                if spinner is not None:
                    spinner.wait(f"uploading {len(file)} file(s)…")
                params["files"] = upload_all(client, file)
            # Created first, then streamed: the run id is known before any wait, for Ctrl-C.
            created = client.runs.create(task, **params)
        except runyard.ValidationError as exc:
            if "agent_id" in params or exc.field != "instructions":
                raise
            raise fail(
                f"no agent named {agent!r}: create it with `runyard agents create --name {agent}`"
                f" or run with --name {agent} --instructions TEXT"
            ) from None
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            if spinner is not None:
                spinner.pause()
        final = follow_run(client, created.id, hitl=hitl, as_json=as_json)
    raise typer.Exit(0 if final.status is RunStatus.COMPLETED else 1)


# --------------------------------------------------------------------------- runyard runs …

runs_app = typer.Typer(help="List, inspect, cancel, answer and reply to runs.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(
    status: Annotated[
        list[RunStatus] | None, typer.Option("--status", "-s", help="Only runs in this status (repeatable).")
    ] = None,
    agent_id: Annotated[str | None, typer.Option("--agent-id", help="Only runs of this agent.")] = None,
    thread_id: Annotated[str | None, typer.Option("--thread-id", help="Only runs of this thread.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many runs.")] = 20,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List runs, newest first."""
    client = connect(base_url, api_key)
    filters: dict[str, Any] = {"limit": min(limit, LIST_PAGE_SIZE)}
    if status:
        filters["status"] = status
    if agent_id is not None:
        filters["agent_id"] = agent_id
    if thread_id is not None:
        filters["thread_id"] = thread_id
    with reporting(client):
        found = list(islice(client.runs.list(**filters), limit))
    if as_json:
        print_json([r.model_dump(mode="json") for r in found])
        return
    if not found:
        err.print(Text("no runs found", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "status", "agent", "model", "tokens in/out", "created"):
        table.add_column(column, no_wrap=True)
    for r in found:
        tokens = f"{r.usage.input_tokens}/{r.usage.output_tokens}"
        table.add_row(r.id, status_text(r.status), r.agent_id, r.model, tokens, when(r.created_at))
    out.print(table)


@runs_app.command("get")
def runs_get(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show one run."""
    client = connect(base_url, api_key)
    with reporting(client, f"run {run_id}"):
        r = client.runs.get(run_id)
    if as_json:
        print_json(r.model_dump(mode="json"))
        return
    finished = r.completed_at or r.failed_at or r.cancelled_at
    details(
        [
            ("id", r.id),
            ("status", status_text(r.status)),
            ("agent", r.agent_id),
            ("thread", r.thread_id),
            ("model", r.model),
            ("tools", ", ".join(r.tools)),
            ("user", r.user_id),
            ("prompt", r.original_prompt),
            ("variables", r.variables),
            ("output", r.output if isinstance(r.output, str) or r.output is None else dump(r.output)),
            ("error", r.error),
            ("usage", usage_line(r)),
            ("created", when(r.created_at)),
            ("started", when(r.started_at)),
            ("finished", when(finished)),
            ("attempt", str(r.attempt)),
            ("events", str(r.last_seq)),
            ("metadata", r.metadata),
        ]
    )


@runs_app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Cancel a pending or running run (a finished run cannot be cancelled: exit 1)."""
    client = connect(base_url, api_key)
    with reporting(client, f"run {run_id}"):
        r = client.runs.cancel(run_id)
    line = Text(f"cancel requested for {r.id}: ")
    line.append_text(status_text(r.status))
    out.print(line)


def _event_line(event: Event, width: int | None) -> Text:
    line = Text(f"{event.seq:>5}  {event.created_at.astimezone().strftime('%H:%M:%S.%f')[:-3]}  ", style="dim")
    style = "red" if event.type in ("run.failed", "tool.error") else "bold" if event.is_terminal else "cyan"
    line.append(f"{event.type:<20}", style=style)
    data = dump(event.data)
    if width is not None and len(line) + 1 + len(data) > width:
        data = data[: max(width - len(line) - 2, 20)] + "…"
    line.append(" " + data)
    return line


@runs_app.command("events")
def runs_events(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new events (SSE) until the run ends.")] = False,
    after_seq: Annotated[int, typer.Option("--after-seq", min=0, help="Only events after this seq.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print each event as one JSON line.")] = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Print a run's events: the stored ones, or with --follow, live until the run ends."""
    client = connect(base_url, api_key)
    width = out.width if out.is_terminal else None
    with reporting(client, f"run {run_id}"):
        try:
            if follow:
                with client.runs.stream_events(run_id, after_seq=after_seq) as stream:
                    _print_events(stream, as_json, width)
            else:
                stored = client.runs.list_events(run_id, after_seq=after_seq, limit=EVENTS_PAGE_SIZE)
                _print_events(stored, as_json, width)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None


def _print_events(events: Iterable[Event], as_json: bool, width: int | None) -> None:
    for event in events:
        if as_json:
            out.file.write(event.model_dump_json() + "\n")
            out.file.flush()
        else:
            out.print(_event_line(event, width))
