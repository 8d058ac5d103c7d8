"""The `runyard` command: one module per command group, wired into one Typer app here.

`server` and `keys` run or administer a server from this machine's settings; `runs`, `agents`,
`files`, `waits` and `usage` are clients of a running server, through the SDK's public API only.
"""

from __future__ import annotations

import typer

from . import agents, files, keys, runs, server, usage, waits

__all__ = ["app", "main"]

app = typer.Typer(help="Runyard: a self-hostable service for agent runs.", no_args_is_help=True)

# `runyard --help` lists the commands, then the groups, in the order they are added here.
app.command()(server.serve)
app.command()(server.worker)
app.command()(server.migrate)
app.command()(runs.run)
app.command()(usage.usage)
app.add_typer(keys.keys_app, name="keys")
waits.add_runs_commands(runs.runs_app)
files.add_runs_commands(runs.runs_app)
app.add_typer(waits.waits_app, name="waits")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(agents.agents_app, name="agents")
app.add_typer(files.files_app, name="files")


def main() -> None:
    """The console script's entry point."""
    app()
