"""Fresh PostgreSQL databases for tests (127.0.0.1:5432, trust auth), one per module or test,
dropped afterwards, so runs of different tests never meet."""

from __future__ import annotations

import secrets

import asyncpg

__all__ = ["PG_ADMIN", "create_database", "drop_database", "url_of"]

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def create_database(prefix: str = "runyard_test") -> str:
    """A new empty database; returns its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def url_of(name: str) -> str:
    """The SQLAlchemy URL Runyard takes for that database."""
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
