"""Errors are classified once: a lost database is a 503 to retry (and `/readyz` says so
without echoing the driver's text); bad stored data or a bug is a 500 with an error id that the
log line repeats."""

from __future__ import annotations

import asyncio
import logging
import secrets

import asyncpg
import httpx
import pytest
from sqlalchemy import insert

from support.servers import ADMIN_KEY, ServerInThread
from runyard.config import Settings
from runyard.store import keys
from runyard.store.db import Store, create_engine, utcnow
from runyard.store.migrate import upgrade
from runyard.store.schema import agents

PG = "postgresql://postgres@127.0.0.1:5432"


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(f"{PG}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def test_a_database_that_refuses_connections_is_503_and_readyz_leaks_nothing() -> None:
    database = f"runyard_t_{secrets.token_hex(6)}"
    # Not a superuser: a connection limit binds only ordinary roles.
    role = database
    _admin(f'CREATE ROLE "{role}" LOGIN')
    _admin(f'CREATE DATABASE "{database}" OWNER "{role}"')
    url = f"postgresql+asyncpg://{role}@127.0.0.1:5432/{database}"

    async def migrate() -> None:
        store = Store(create_engine(url), None)  # type: ignore[arg-type]
        await upgrade(store.engine)
        await store.close()

    asyncio.run(migrate())
    server = ServerInThread(Settings(database_url=url, api_key=ADMIN_KEY, db_pool_size=1, db_max_overflow=0)).start()
    try:
        headers = server.headers()
        assert httpx.get(f"{server.base_url}/readyz").status_code == 200
        # No new connection may open, and the open ones are gone: PostgreSQL answers 53300.
        _admin(f'ALTER DATABASE "{database}" CONNECTION LIMIT 0')
        _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
        ready = httpx.get(f"{server.base_url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable" and ready.json()["database"] == "down"
        assert "53300" not in ready.text and "connection" not in ready.text.lower()
        r = httpx.get(f"{server.base_url}/v1/agents", headers=headers)
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert r.headers["Retry-After"] == "1"
    finally:
        _admin(f'ALTER DATABASE "{database}" CONNECTION LIMIT -1')
        server.stop()
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        _admin(f'DROP ROLE IF EXISTS "{role}"')


def test_bad_stored_data_is_a_500_with_an_error_id_in_the_log(
    server: ServerInThread, caplog: pytest.LogCaptureFixture
) -> None:
    async def corrupt() -> str:
        async with server.app.state.store.tx() as tx:
            org = await keys.org_for_key(tx.conn, ADMIN_KEY)
            now = utcnow()
            await tx.conn.execute(insert(agents).values(
                id="agt_corrupt0000000000000000", org_id=org, name=f"bad-{secrets.token_hex(4)}",
                instructions="x", model="scripted", tools="not a list", metadata={}, created_at=now,
                updated_at=now,
            ))
        return "agt_corrupt0000000000000000"

    agent_id = server.call(corrupt())
    with caplog.at_level(logging.ERROR, logger="runyard.server"):
        r = httpx.get(f"{server.base_url}/v1/agents/{agent_id}", headers=server.headers())
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "internal_error" and "error id" in error["message"]
    error_id = error["message"].rsplit(" ", 1)[-1].rstrip(")")
    assert any(error_id in record.getMessage() for record in caplog.records)
    # The corrupt row is this test's own: remove it so list pages of the shared server stay valid.
    async def clean() -> None:
        async with server.app.state.store.tx() as tx:
            await tx.conn.execute(agents.delete().where(agents.c.id == agent_id))

    server.call(clean())
