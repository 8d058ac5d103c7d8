"""Migrations on both dialects: `runyard migrate` reaches head and `alembic check` is clean.

Each dialect gets a fresh database (a new SQLite file; a new PostgreSQL database dropped
afterwards). `runyard migrate` and `alembic` run as real processes, configured only through
`RUNYARD_DATABASE_URL`, the way CI and an operator run them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from runyard.store.migrate import alembic_config
from runyard.store.schema import metadata

ROOT = Path(__file__).resolve().parents[2]  # where alembic.ini is
ALEMBIC = Path(sys.executable).parent / "alembic"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _run(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNYARD_DATABASE_URL": url}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _pg(sql: str, database: str = "postgres") -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def pg_database() -> Iterator[str]:
    name = f"runyard_mig_{uuid.uuid4().hex[:10]}"
    _pg(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _check_migrate_and_alembic_check(url: str) -> None:
    # A database with no schema is not up to date: `alembic check` must say so (it is not a no-op).
    before = _run([str(ALEMBIC), "check"], url)
    assert before.returncode != 0, before.stdout + before.stderr
    assert "not up to date" in (before.stdout + before.stderr).lower(), before.stdout + before.stderr

    migrated = _run([sys.executable, "-m", "runyard", "migrate"], url)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "migrated" in migrated.stdout

    check = _run([str(ALEMBIC), "check"], url)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr

    # Migrating again is a no-op and stays at head.
    again = _run([sys.executable, "-m", "runyard", "migrate"], url)
    assert again.returncode == 0, again.stdout + again.stderr


def test_sqlite_fresh_file_reaches_head_and_check_is_clean(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    url = f"sqlite+aiosqlite:///{db}"
    _check_migrate_and_alembic_check(url)
    with sqlite3.connect(db) as conn:
        versions = {r[0] for r in conn.execute("SELECT version_num FROM alembic_version")}
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert versions == _heads()
    assert set(metadata.tables) <= tables


def test_postgres_fresh_database_reaches_head_and_check_is_clean(pg_database: str) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_database}"
    _check_migrate_and_alembic_check(url)
    versions = {r["version_num"] for r in _pg("SELECT version_num FROM alembic_version", pg_database)}
    tables = {r["tablename"] for r in _pg("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", pg_database)}
    assert versions == _heads()
    assert set(metadata.tables) <= tables
    # JSON columns are JSONB on PostgreSQL (the same MetaData, the dialect's best type).
    kinds = {r["data_type"] for r in _pg(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'data'",
        pg_database)}
    assert kinds == {"jsonb"}
