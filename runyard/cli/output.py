"""What the client commands print, and where.

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
from typing import Any

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

import runyard
from runyard import Event, Run, RunStatus, Runyard

__all__ = [
    "EXIT_INTERRUPTED",
    "STATUS_MARKS",
    "STATUS_STYLES",
    "Transcript",
    "describe_error",
    "details",
    "dump",
    "err",
    "fail",
    "out",
    "print_json",
    "reporting",
    "server_message",
    "status_text",
    "usage_line",
    "when",
]

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


def _console(*, stderr: bool = False) -> Console:
    # Not a terminal (a pipe, a file, a test): do not wrap tables at 80 columns, and bind the
    # real stream now, so that a live spinner's stdout redirect never captures our output.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(file=stream, width=width, highlight=False, emoji=False, soft_wrap=True)


out = _console()
err = _console(stderr=True)

# --------------------------------------------------------------------------- errors


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; return the exit (code 1) for the caller to raise."""
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
def reporting(client: Runyard, subject: str | None = None) -> Iterator[None]:
    """Turn an SDK error into one `error: …` line on stderr and exit code 1, never a traceback."""
    try:
        yield
    except runyard.RunyardError as exc:
        raise fail(describe_error(exc, client, subject)) from None


# --------------------------------------------------------------------------- values


def dump(value: Any) -> str:
    """`value` as one line of JSON."""
    return json.dumps(value, ensure_ascii=False, default=str)


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout."""
    out.file.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


def when(value: datetime | None) -> str:
    """A timestamp in local time, to the second; empty for `None`."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _duration(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def status_text(status: RunStatus) -> Text:
    """A run status in its colour."""
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


def details(rows: list[tuple[str, Any]]) -> None:
    """A two-column key/value view on stdout; empty values are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        if value in (None, "", {}, []):
            continue
        if not isinstance(value, (str, Text)):
            value = dump(value)
        grid.add_row(key, value)
    out.print(grid)


# --------------------------------------------------------------------------- transcript


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
        elif event.type == "message.reset":
            self.streamed = False
            self._end_line()
            self._line(f"↺ the response broke off ({data.get('error')}): it starts again", "yellow")
        elif event.type == "run.llm.retry":
            self._line(f"↻ model request failed ({data.get('error')}): retry in {data.get('delay_s')} s", "dim")
        elif event.type == "run.provider_fallback":
            self._line(f"↪ route {data.get('from')} failed: falling back to {data.get('to')}", "yellow")
        elif event.type == "tool.call":
            self._line(f"→ {data.get('name')} {dump(data.get('args', {}))}", "cyan")
            self.wait(f"running {data.get('name')}…")
        elif event.type == "tool.result":
            result = data.get("result")
            self._line(f"← {result if isinstance(result, str) else dump(result)}", "green")
            self.wait("thinking…")
        elif event.type == "tool.error":
            self._line(f"✗ {data.get('name')}: {data.get('error')}", "red")
            self.wait("thinking…")
        elif event.type == "run.cancel_requested":
            self._line("cancel requested", "yellow")
        elif event.type == "run.waiting":
            self._line(f"⏸ waiting for {data.get('waiting_for')}", "magenta")
        elif event.type == "run.input_received":
            answer = "(expired)" if data.get("expired") else dump(data.get("answer"))
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
        elif event.type in ("file.created", "file.updated", "file.deleted"):
            self._line(f"▤ {event.type.removeprefix('file.')} {data.get('path')} ({data.get('file_id')})", "dim")
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
        if run.status is RunStatus.WAITING and run.waiting_for == "tool_result":
            line.append(" for tool results: the program that defined its client tools posts them")
        elif run.status is RunStatus.WAITING:
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
