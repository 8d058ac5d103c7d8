"""The `runyard` command: server commands (serve, worker, migrate, keys) and client commands."""

from __future__ import annotations

import typer

from . import server

__all__ = ["app", "main"]

app = typer.Typer(help="Runyard: a self-hostable service for agent runs.", no_args_is_help=True)
server.register(app)
try:
    from . import client
except ImportError:  # pragma: no cover - client commands need the SDK
    client = None  # type: ignore[assignment]
else:
    client.register(app)


def main() -> None:
    app()
