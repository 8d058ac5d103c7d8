"""`runyard keys create`: API keys, written straight to the database of this machine's settings."""

from __future__ import annotations

import asyncio

import typer

from ..config import get_settings
from .server import admin_store

__all__ = ["keys_app"]

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    org: str = typer.Option(..., "--org", help="Org name (created if missing)."),
    name: str = typer.Option("cli", help="A label for the key."),
) -> None:
    """Create an API key for an org and print it (it is stored hashed: copy it now)."""
    from ..store import keys
    from ..store.migrate import upgrade

    settings = get_settings()

    async def main() -> str:
        store = admin_store(settings)
        if store.is_sqlite:
            await upgrade(store)
        async with store.tx() as tx:
            key = await keys.create_key(tx.conn, org, name=name)
        await store.close()
        return key

    typer.echo(asyncio.run(main()))
