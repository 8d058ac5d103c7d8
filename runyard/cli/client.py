"""`runyard run | runs … | agents …`: the client commands, over the Python SDK.

The commands for humans in the loop (`run --hitl`'s prompts, `waits list`, `runs answer |
approve | reply`) live in `hitl.py`, which `register` adds.

stdout carries what was asked for: the streamed transcript, tables, JSON. stderr carries the
rest: the spinner (on a terminal only), the final status line and `error: …` lines. Every
command exits 0 on success and 1 on an error; `run` also exits 1 when the run did not complete,
and 130 after Ctrl-C.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

import runyard
from runyard import Agent, Event, Run, RunStatus, Runyard

# The SDK has no call for the JSON page of a run's stored events yet; `runs events` sends it by hand.
from .._base_client import RequestOptions, path_for

__all__ = ["register"]

DEFAULT_AGENT = "cli"
"""The agent `runyard run` finds or creates when given no --agent."""
DEFAULT_INSTRUCTIONS = "You are a helpful assistant. Answer briefly."
"""Instructions of that agent when --instructions is not given."""
EVENTS_PAGE_SIZE = 1000
"""Events fetched per request by `runs events` (the server's maximum)."""
LIST_PAGE_SIZE = 100
"""Runs and agents fetched per request by the `list` commands (the server's maximum)."""
EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C, as shells report a SIGINT death (128 + 2)."""

STATUS_STYLES = {
    RunStatus.PENDING: "yellow",
    RunStatus.RUNNING: "cyan",
    RunStatus.WAITING: "magenta",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "red",
    RunStatus.CANCELLED: "yellow",
}
STATUS_MARKS = {RunStatus.COMPLETED: "✓", RunStatus.FAILED: "✗", RunStatus.CANCELLED: "■", RunStatus.WAITING: "⏸"}
PERMISSION_MODES = ("autonomous", "approve_writes", "approve_all", "plan")


def _console(*, stderr: bool = False) -> Console:
    # Not a terminal (a pipe, a file, a test): do not wrap tables at 80 columns, and bind the
    # real stream now, so that a live spinner's stdout redirect never captures our output.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(file=stream, width=width, highlight=False, emoji=False, soft_wrap=True)


out = _console()
err = _console(stderr=True)

# --------------------------------------------------------------------------- options and errors

BaseUrl = Annotated[
    Optional[str],
    typer.Option("--base-url", envvar="RUNYARD_BASE_URL", help="Server URL (default: http://127.0.0.1:8321)."),
]
ApiKey = Annotated[Optional[str], typer.Option("--api-key", envvar="RUNYARD_API_KEY", help="API key.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a human-readable view.")]


def _connect(base_url: str | None, api_key: str | None) -> Runyard:
    return Runyard(base_url=base_url, api_key=api_key)


def _fail(message: str) -> typer.Exit:
    err.print(Text(f"error: {message}", style="red"))
    return typer.Exit(1)


def server_message(exc: runyard.APIStatusError) -> str:
    """The server's own words for an error response, with the field at fault when it names one."""
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not message:
        return exc.message
    if exc.field and exc.field not in message:
        message = f"{message} [{exc.field}]"
    return str(message)


def describe_error(exc: runyard.RunyardError, client: Runyard, subject: str | None = None) -> str:
    """One line saying what went wrong; `subject` (e.g. "run run_…") names the resource asked for."""
    if isinstance(exc, runyard.NotFoundError) and subject:
        return f"{subject} not found (404)"
    if isinstance(exc, runyard.AuthenticationError):
        if not client.api_key:
            return "no API key: pass --api-key or set RUNYARD_API_KEY (401)"
        return "the API key was refused: check --api-key or RUNYARD_API_KEY (401)"
    if isinstance(exc, runyard.APIStatusError):
        return f"{server_message(exc)} ({exc.status_code})"
    if isinstance(exc, runyard.APITimeoutError):
        return f"the Runyard server at {str(client.base_url).rstrip('/')} did not answer in time"
    if isinstance(exc, runyard.APIConnectionError):
        return f"cannot reach the Runyard server at {str(client.base_url).rstrip('/')} (is `runyard serve` running?)"
    return str(exc)


@contextmanager
def _reporting(client: Runyard, subject: str | None = None) -> Iterator[None]:
    """Turn an SDK error into one `error: …` line on stderr and exit code 1, never a traceback."""
    try:
        yield
    except runyard.RunyardError as exc:
        raise _fail(describe_error(exc, client, subject)) from None


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _print_json(value: Any) -> None:
    out.file.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _duration(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _status(status: RunStatus) -> Text:
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def usage_line(run: Run) -> str:
    """`12 in / 5 out tokens · 1 request · 0 tool calls · $0.0000 · 35 ms`."""
    u = run.usage
    parts = [
        f"{u.input_tokens} in / {u.output_tokens} out tokens",
        _plural(u.requests, "request"),
        _plural(u.tool_calls, "tool call"),
        "cost n/a" if u.cost_usd is None else f"${u.cost_usd:.4f}",
    ]
    if run.duration_ms is not None:
        parts.append(_duration(run.duration_ms))
    return " · ".join(parts)


def _details(rows: list[tuple[str, Any]]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        if value in (None, "", {}, []):
            continue
        if not isinstance(value, (str, Text)):
            value = _dump(value)
        grid.add_row(key, value)
    out.print(grid)


# --------------------------------------------------------------------------- runyard run


class Transcript:
    """Prints a run's events as they arrive: text inline, tool calls as lines, reasoning dimmed.

    A spinner (stderr, terminal only) fills the waits that start at the beginning of a line.
    """

    def __init__(self) -> None:
        self.at_line_start = True
        self.mode: str | None = None  # "text" or "reasoning": what the current line is made of
        self.streamed = False  # deltas seen since the last message.completed
        self.spinner: Status | None = err.status("starting the run…") if err.is_terminal else None

    def wait(self, message: str) -> None:
        if self.spinner is not None and self.at_line_start:
            self.spinner.update(message)
            self.spinner.start()

    def pause(self) -> None:
        if self.spinner is not None:
            self.spinner.stop()

    def show(self, event: Event) -> None:
        self.pause()
        data = event.data
        if event.type in ("message.delta", "reasoning.delta"):
            mode = "text" if event.type == "message.delta" else "reasoning"
            if self.mode != mode:
                self._end_line()
                self.mode = mode
            self._write(str(data.get("delta", "")), "dim italic" if mode == "reasoning" else None)
            self.streamed = True
        elif event.type == "message.completed":
            if not self.streamed:  # a model that does not stream sends only the whole text
                self._write(str(data.get("text", "")))
            self.streamed = False
            self._end_line()
            self.wait("thinking…")
        elif event.type == "tool.call":
            self._line(f"→ {data.get('name')} {_dump(data.get('args', {}))}", "cyan")
            self.wait(f"running {data.get('name')}…")
        elif event.type == "tool.result":
            result = data.get("result")
            self._line(f"← {result if isinstance(result, str) else _dump(result)}", "green")
            self.wait("thinking…")
        elif event.type == "tool.error":
            self._line(f"✗ {data.get('name')}: {data.get('error')}", "red")
            self.wait("thinking…")
        elif event.type == "run.cancel_requested":
            self._line("cancel requested", "yellow")
        elif event.type == "run.waiting":
            self._line(f"⏸ waiting for {data.get('waiting_for')}", "magenta")
        elif event.type == "run.input_received":
            answer = "(expired)" if data.get("expired") else _dump(data.get("answer"))
            self._line(f"↳ {data.get('kind')} answered: {answer}", "magenta")
            self.wait("resuming…")
        elif event.type in ("tool.approved", "tool.denied"):
            verb = "allowed" if event.type == "tool.approved" else "denied"
            reason = f": {data['reason']}" if data.get("reason") else ""
            self._line(f"{verb} {data.get('name')}{reason}", "green" if verb == "allowed" else "yellow")
        elif event.type == "message.appended":
            self._line(f"+ {data.get('message')}", "bold")
        elif event.type == "memory.saved":
            self._line(f"✎ remembered: {data.get('text')}", "dim")
        elif event.type == "memory.deleted":
            self._line(f"✎ forgot {data.get('memory_id')}", "dim")
        elif event.type == "run.queued":
            self.wait("queued…")
        elif event.type in ("run.started", "tools.declared", "usage", "run.requeued"):
            self.wait("thinking…")

    def interrupted(self) -> None:
        self.pause()
        self._end_line()

    def finish(self, run: Run) -> None:
        self.pause()
        self._end_line()
        mark = STATUS_MARKS.get(run.status, "·")
        line = Text(f"{mark} ")
        line.append(run.status.value, style=STATUS_STYLES.get(run.status, ""))
        if run.error:
            line.append(f": {run.error}")
        if run.status is RunStatus.WAITING:
            line.append(f" for {run.waiting_for}: answer with `runyard runs answer|approve {run.id}`")
        line.append(f" · {usage_line(run)}", style="dim")
        err.print(line)

    def _write(self, text: str, style: str | None = None) -> None:
        if text:
            out.print(Text(text, style=style or ""), end="")
            self.at_line_start = text.endswith("\n")

    def _end_line(self) -> None:
        if not self.at_line_start:
            out.file.write("\n")
            out.file.flush()
            self.at_line_start = True
        self.mode = None

    def _line(self, text: str, style: str) -> None:
        self._end_line()
        out.print(Text(text, style=style))


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
        params["tools"] = _split(tools)
    if model is not None:
        params["model"] = model
    return params


def _cancel_after_interrupt(client: Runyard, run_id: str) -> None:
    err.print(Text(f"interrupted: cancelling {run_id}", style="yellow"))
    try:
        client.runs.cancel(run_id)
    except runyard.ConflictError:
        pass  # it finished in the meantime
    except runyard.RunyardError as exc:
        err.print(Text(f"error: could not cancel {run_id}: {describe_error(exc, client)}", style="red"))


def run(
    task: Annotated[str, typer.Argument(help="The task (the run's message).")],
    agent: Annotated[
        Optional[str], typer.Option("--agent", "-a", help="Run this agent (a name, or an agt_ id).")
    ] = None,
    instructions: Annotated[
        Optional[str],
        typer.Option("--instructions", "-i", help="Instructions of the quick-start agent (used when it is created)."),
    ] = None,
    name: Annotated[
        Optional[str], typer.Option("--name", help=f"Name of the quick-start agent (default: {DEFAULT_AGENT}).")
    ] = None,
    tools: Annotated[Optional[str], typer.Option("--tools", help="Tools for this run, comma-separated.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model or route id for this run.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each event as one JSON line, and nothing else.")
    ] = False,
    hitl: Annotated[
        bool, typer.Option("--hitl", help="Let the run ask questions and approvals; answer them here.")
    ] = False,
    permission_mode: Annotated[
        Optional[str],
        typer.Option("--permission-mode", help="With --hitl: autonomous, approve_writes, approve_all or plan."),
    ] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Start a run and stream it: text as it arrives, tool calls as lines, then status and usage.

    Without --agent, runs the quick-start agent (--name, default "cli"), created with --instructions on first use.
    With --hitl, the run's questions (a numbered picker, or free text) and approvals (allow, deny
    or always, and a reason) are asked on stderr and read from stdin, and the stream goes on.

    Exits 0 when the run completed, 1 when it failed, was cancelled or was left waiting; Ctrl-C cancels the run
    and exits 130.
    """
    params = _run_params(agent, instructions, name, tools, model)
    if permission_mode is not None:
        if permission_mode not in PERMISSION_MODES:
            raise typer.BadParameter(f"one of {', '.join(PERMISSION_MODES)}", param_hint="--permission-mode")
        if permission_mode != "autonomous" and not hitl:
            raise typer.BadParameter("needs --hitl: someone must answer the approvals", param_hint="--permission-mode")
        params["permission_mode"] = permission_mode
    if hitl:
        params["human_in_the_loop"] = True
    client = _connect(base_url, api_key)
    with _reporting(client, f"agent {agent}" if agent and agent.startswith("agt_") else None):
        spinner = None if as_json else Transcript()
        if spinner is not None:
            spinner.wait("starting the run…")
        try:
            # Created first, then streamed: the run id is known before any wait, for Ctrl-C.
            created = client.runs.create(task, **params)
        except runyard.ValidationError as exc:
            if "agent_id" in params or exc.field != "instructions":
                raise
            raise _fail(
                f"no agent named {agent!r}: create it with `runyard agents create --name {agent}`"
                f" or run with --name {agent} --instructions TEXT"
            ) from None
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            if spinner is not None:
                spinner.pause()
        from .hitl import follow_run

        final = follow_run(client, created.id, hitl=hitl, as_json=as_json)
    raise typer.Exit(0 if final.status is RunStatus.COMPLETED else 1)


# --------------------------------------------------------------------------- runyard runs …

runs_app = typer.Typer(help="List, inspect, cancel, answer and reply to runs.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(
    status: Annotated[
        Optional[list[RunStatus]], typer.Option("--status", "-s", help="Only runs in this status (repeatable).")
    ] = None,
    agent_id: Annotated[Optional[str], typer.Option("--agent-id", help="Only runs of this agent.")] = None,
    thread_id: Annotated[Optional[str], typer.Option("--thread-id", help="Only runs of this thread.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many runs.")] = 20,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List runs, newest first."""
    client = _connect(base_url, api_key)
    filters: dict[str, Any] = {"limit": min(limit, LIST_PAGE_SIZE)}
    if status:
        filters["status"] = status
    if agent_id is not None:
        filters["agent_id"] = agent_id
    if thread_id is not None:
        filters["thread_id"] = thread_id
    with _reporting(client):
        found = list(islice(client.runs.list(**filters), limit))
    if as_json:
        _print_json([r.model_dump(mode="json") for r in found])
        return
    if not found:
        err.print(Text("no runs found", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "status", "agent", "model", "tokens in/out", "created"):
        table.add_column(column, no_wrap=True)
    for r in found:
        tokens = f"{r.usage.input_tokens}/{r.usage.output_tokens}"
        table.add_row(r.id, _status(r.status), r.agent_id, r.model, tokens, _when(r.created_at))
    out.print(table)


@runs_app.command("get")
def runs_get(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show one run."""
    client = _connect(base_url, api_key)
    with _reporting(client, f"run {run_id}"):
        r = client.runs.get(run_id)
    if as_json:
        _print_json(r.model_dump(mode="json"))
        return
    finished = r.completed_at or r.failed_at or r.cancelled_at
    _details(
        [
            ("id", r.id),
            ("status", _status(r.status)),
            ("agent", r.agent_id),
            ("thread", r.thread_id),
            ("model", r.model),
            ("tools", ", ".join(r.tools)),
            ("user", r.user_id),
            ("prompt", r.original_prompt),
            ("output", r.output if isinstance(r.output, str) or r.output is None else _dump(r.output)),
            ("error", r.error),
            ("usage", usage_line(r)),
            ("created", _when(r.created_at)),
            ("started", _when(r.started_at)),
            ("finished", _when(finished)),
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
    client = _connect(base_url, api_key)
    with _reporting(client, f"run {run_id}"):
        r = client.runs.cancel(run_id)
    line = Text(f"cancel requested for {r.id}: ")
    line.append_text(_status(r.status))
    out.print(line)


def _event_line(event: Event, width: int | None) -> Text:
    line = Text(f"{event.seq:>5}  {event.created_at.astimezone().strftime('%H:%M:%S.%f')[:-3]}  ", style="dim")
    style = "red" if event.type in ("run.failed", "tool.error") else "bold" if event.is_terminal else "cyan"
    line.append(f"{event.type:<20}", style=style)
    data = _dump(event.data)
    if width is not None and len(line) + 1 + len(data) > width:
        data = data[: max(width - len(line) - 2, 20)] + "…"
    line.append(" " + data)
    return line


def _stored_events(client: Runyard, run_id: str, after_seq: int) -> Iterator[Event]:
    while True:
        options = RequestOptions(
            "GET", path_for("/v1/runs/{}/events", run_id), params={"after_seq": after_seq, "limit": EVENTS_PAGE_SIZE}
        )
        page = client.request(options).json()
        events = [Event.model_validate(item) for item in page.get("data", [])]
        yield from events
        if not page.get("has_more") or not events:
            return
        after_seq = events[-1].seq


@runs_app.command("events")
def runs_events(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream new events (SSE) until the run ends.")
    ] = False,
    after_seq: Annotated[int, typer.Option("--after-seq", min=0, help="Only events after this seq.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print each event as one JSON line.")] = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Print a run's events: the stored ones, or with --follow, live until the run ends."""
    client = _connect(base_url, api_key)
    width = out.width if out.is_terminal else None
    with _reporting(client, f"run {run_id}"):
        try:
            if follow:
                with client.runs.stream_events(run_id, after_seq=after_seq) as stream:
                    _print_events(stream, as_json, width)
            else:
                _print_events(_stored_events(client, run_id, after_seq), as_json, width)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None


def _print_events(events: Iterator[Event], as_json: bool, width: int | None) -> None:
    for event in events:
        if as_json:
            out.file.write(event.model_dump_json() + "\n")
            out.file.flush()
        else:
            out.print(_event_line(event, width))


# --------------------------------------------------------------------------- runyard agents …

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
        ("metadata", a.metadata),
        ("created", _when(a.created_at)),
        ("updated", _when(a.updated_at)),
    ]


@agents_app.command("list")
def agents_list(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many agents.")] = 50,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List agents, newest first."""
    client = _connect(base_url, api_key)
    with _reporting(client):
        found = list(islice(client.agents.list(limit=min(limit, LIST_PAGE_SIZE)), limit))
    if as_json:
        _print_json([a.model_dump(mode="json") for a in found])
        return
    if not found:
        err.print(Text("no agents yet: create one with `runyard agents create --name NAME`", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "name", "model", "tools", "created"):
        table.add_column(column, no_wrap=column != "tools")
    for a in found:
        table.add_row(a.id, a.name, a.model, ", ".join(a.tools), _when(a.created_at))
    out.print(table)


@agents_app.command("get")
def agents_get(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show one agent."""
    client = _connect(base_url, api_key)
    with _reporting(client, f"agent {agent_id}"):
        a = client.agents.get(agent_id)
    if as_json:
        _print_json(a.model_dump(mode="json"))
    else:
        _details(_agent_rows(a))


@agents_app.command("create")
def agents_create(
    name: Annotated[str, typer.Option("--name", help="The agent's name (unique in your org).")],
    instructions: Annotated[Optional[str], typer.Option("--instructions", "-i", help="The system prompt.")] = None,
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Model or route id (default: scripted).")
    ] = None,
    tools: Annotated[Optional[str], typer.Option("--tools", help="Built-in tools, comma-separated.")] = None,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Create an agent and print its id."""
    client = _connect(base_url, api_key)
    fields: dict[str, Any] = {}
    if instructions is not None:
        fields["instructions"] = instructions
    if model is not None:
        fields["model"] = model
    if tools is not None:
        fields["tools"] = _split(tools)
    with _reporting(client):
        a = client.agents.create(name, **fields)
    if as_json:
        _print_json(a.model_dump(mode="json"))
    else:
        out.print(Text(f"created agent {a.id} ({a.name})"))


@agents_app.command("delete")
def agents_delete(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Delete an agent."""
    client = _connect(base_url, api_key)
    with _reporting(client, f"agent {agent_id}"):
        client.agents.delete(agent_id)
    out.print(Text(f"deleted agent {agent_id}"))


def register(app: typer.Typer) -> None:
    from . import hitl

    app.command()(run)
    hitl.register(app, runs_app)
    app.add_typer(runs_app, name="runs")
    app.add_typer(agents_app, name="agents")
