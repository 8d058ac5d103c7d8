"""`runyard keys create | list | revoke`: API keys, read and written straight in the database of
this machine's settings (no server needed, no key to manage keys)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from ..config import get_settings
from .options import AsJson
from .output import fail, out, print_json, when
from .server import admin_store

__all__ = ["keys_app"]

keys_app = typer.Typer(help="API keys: create, list and revoke them.", no_args_is_help=True)

T = TypeVar("T")
_SPAN = re.compile(r"(\d+)([hdw])")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def _with_store(work: Callable[[Any], Awaitable[T]]) -> T:
    from ..store.migrate import upgrade

    settings = get_settings()

    async def main() -> T:
        store = admin_store(settings)
        try:
            if store.is_sqlite:
                await upgrade(store)
            async with store.tx() as tx:
                return await work(tx.conn)
        finally:
            await store.close()

    return asyncio.run(main())


@keys_app.command("create")
def keys_create(
    org: str = typer.Option(..., "--org", help="Org name (created if missing)."),
    name: str = typer.Option("cli", help="A label for the key."),
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Refuse the key after this long: 12h, 30d, 8w.")
    ] = None,
) -> None:
    """Create an API key for an org and print it (it is stored hashed: copy it now)."""
    from ..store import keys
    from ..store.db import utcnow

    expires_at = None
    if expires_in is not None:
        span = _SPAN.fullmatch(expires_in.strip())
        if span is None or int(span[1]) == 0:
            raise fail(f"--expires-in {expires_in!r}: give a span like 12h, 30d or 8w")
        expires_at = utcnow() + timedelta(**{_UNITS[span[2]]: int(span[1])})
    typer.echo(_with_store(lambda conn: keys.create_key(conn, org, name=name, expires_at=expires_at)))


@keys_app.command("list")
def keys_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this org's keys.")] = None,
    as_json: AsJson = False,
) -> None:
    """List the keys (id, org, label, first characters; never the key), newest first."""
    from ..store import keys

    found = _with_store(lambda conn: keys.list_keys(conn, org))
    if as_json:
        print_json(found)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "org", "name", "key", "created", "last used", "expires", "revoked"):
        table.add_column(column)
    for k in found:
        table.add_row(
            k["id"],
            k["org"],
            k["name"],
            k["prefix"] + "…",
            when(k["created_at"]),
            when(k["last_used_at"]),
            when(k["expires_at"]),
            when(k["revoked_at"]),
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (`key_…`, from `runyard keys list`).")) -> None:
    """Refuse a key from now on: every API node stops accepting it within a second."""
    from ..store import keys
    from ..store.errors import NotFound

    try:
        _with_store(lambda conn: keys.revoke(conn, key_id))
    except NotFound:
        raise fail(f"no key {key_id}") from None
    typer.echo(f"revoked {key_id}")
