"""On SQLite a `Store.read()` takes no write lock (a deferred BEGIN), so another process, such
as the CLI or a migration, can write while a server is reading; `Store.tx()` still begins
IMMEDIATE, so writers queue on the busy timeout instead of failing mid-transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, text

from runyard.bus import LocalBus
from runyard.store.db import Store, create_engine
from runyard.store.migrate import upgrade
from runyard.store.schema import orgs


async def test_a_read_leaves_other_writers_free_and_a_transaction_does_not(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = Store(create_engine(f"sqlite+aiosqlite:///{path}"), LocalBus())
    try:
        await upgrade(store.engine)
        other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        async with store.read() as conn:
            await conn.execute(select(orgs.c.id))
            other.execute("INSERT INTO orgs (id, name, created_at) VALUES ('org_a', 'a', '2026-01-01')")
        async with store.tx() as tx:
            await tx.conn.execute(select(orgs.c.id))
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO orgs (id, name, created_at) VALUES ('org_b', 'b', '2026-01-01')")
            await tx.conn.execute(text("SELECT 1"))
        other.close()
    finally:
        await store.close()
