"""PostgreSQL ends a transaction left idle past the lease, so a frozen process cannot keep a
run's row lock (and block its new owner) longer than the lease it lost."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import select, text
from support.postgres import create_database, drop_database, url_of

from runyard.bus import LocalBus
from runyard.config import Settings
from runyard.store.db import Store
from runyard.store.migrate import upgrade
from runyard.store.schema import orgs


@pytest.fixture
async def pg_url() -> object:
    database = await create_database()
    yield url_of(database)
    await drop_database(database)


async def test_an_idle_transaction_loses_its_locks_after_the_lease(pg_url: str) -> None:
    store = Store.open(Settings(database_url=pg_url, lease_seconds=0.5), LocalBus())
    try:
        await upgrade(store.engine)
        async with store.tx() as tx:
            await tx.conn.execute(text("INSERT INTO orgs (id, name, created_at) VALUES ('org_x', 'x', now())"))
        async with store.engine.connect() as frozen:
            await frozen.begin()
            await frozen.execute(select(orgs).where(orgs.c.id == "org_x").with_for_update())
            await asyncio.sleep(1.5)  # the frozen holder: idle in its transaction past the lease
            other = await asyncpg.connect(pg_url.replace("+asyncpg", ""))
            try:
                await other.execute("SET lock_timeout = '2s'")
                # Would wait for the lock (and fail after 2 s) if the idle transaction still held it.
                await other.execute("SELECT * FROM orgs WHERE id = 'org_x' FOR UPDATE")
            finally:
                await other.close()
            with pytest.raises(Exception):
                await frozen.execute(text("SELECT 1"))  # the server ended that session
    finally:
        await store.close()
