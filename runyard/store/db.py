"""Engine setup per dialect and the transaction helper that publishes to the bus after commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import Engine as SyncEngine
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event, literal_column, pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from ..bus import Bus
    from ..config import Settings

__all__ = ["Conn", "Engine", "InlineConnection", "Row", "Store", "Tx", "create_engine", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Row(dict[str, Any]):
    """A row the store built itself (just inserted, or as a claim left it), read by attribute
    like a result row, so no SELECT follows the write."""

    __getattr__ = dict.__getitem__


Engine = AsyncEngine | SyncEngine
READ_ONLY = "runyard_read_only"
"""Execution option of `Store.read()` connections on SQLite: their BEGIN is deferred."""


def create_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, idle_in_transaction_timeout: float | None = None
) -> Engine:
    """An async engine for PostgreSQL; for SQLite, a sync engine used directly on the event loop.

    Why not aiosqlite for SQLite: every statement hops to its thread and back (~80 µs here,
    several hops per statement), which made a small transaction cost ~3 ms; the same
    transaction on the loop costs ~50 µs, and SQLite statements on a local WAL file are short
    enough that running them inline blocks the loop less than the hops did.
    """
    if url.startswith("sqlite"):
        sync_url = make_url(url).set(drivername="sqlite")
        database = sync_url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # One process, one connection: SQLite serialises writers anyway, and several
        # connections only add busy back-off (measured p99 ~450 ms).
        engine = sa_create_engine(
            sync_url,
            poolclass=pool.StaticPool,
            connect_args={"timeout": 30, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let the "begin" hook issue BEGIN IMMEDIATE, so a second process (the CLI, a
            # migration) waits on the busy timeout instead of failing mid-transaction.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Reads take no write lock: a deferred BEGIN sees one WAL snapshot and blocks no writer.
            # On the driver's connection: through SQLAlchemy, BEGIN cost as much as a whole statement.
            begin = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
            conn.connection.driver_connection.execute(begin)

        return engine
    # Bounded: every API node and worker holds up to pool_size + max_overflow connections,
    # and PostgreSQL's own limit (100 by default) is shared by all of them.
    connect_args: dict[str, Any] = {}
    if idle_in_transaction_timeout is not None:
        # A frozen process (SIGSTOP, a GC pause, a hung await) must not hold a run's row lock
        # past its lease: PostgreSQL ends a transaction left idle longer than this.
        ms = max(int(idle_in_transaction_timeout * 1000), 1)
        connect_args["server_settings"] = {"idle_in_transaction_session_timeout": str(ms)}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=10,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


class InlineConnection:
    """The part of `AsyncConnection` the store uses, over a sync connection (SQLite)."""

    def __init__(self, conn: SyncConnection) -> None:
        self.sync_connection = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync_connection.execute(statement, parameters)

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> Any:
        return self.sync_connection.exec_driver_sql(statement, parameters)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        with self.sync_connection.begin_nested():
            yield

    async def run_sync(self, fn: Any, *args: Any) -> Any:
        return fn(self.sync_connection, *args)


Conn = AsyncConnection | InlineConnection
"""What store functions take: a PostgreSQL async connection or an inline SQLite one."""


@dataclass
class Tx:
    """An open transaction and what to publish once it commits."""

    conn: Conn
    store: Store
    outbox: list[tuple[str, Any]] = field(default_factory=list)

    def publish_after_commit(self, topic: str, message: Any) -> None:
        self.outbox.append((topic, message))


class Store:
    """The database plus the bus: every write goes through `tx()`, which publishes after commit.

    Publishing only after commit is what lets a reader trust that a message it sees refers
    to rows it can read; losing one costs latency, never data.
    """

    def __init__(self, engine: Engine, bus: Bus) -> None:
        self.engine = engine
        self.bus = bus
        self.dialect = engine.dialect.name
        # SQLite runs inline on one connection: transactions take turns through this lock.
        self._inline_lock = asyncio.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def db_now(self) -> Any:
        """The database clock as epoch seconds: leases are measured against it, never a worker's."""
        if self.is_sqlite:
            return literal_column("((julianday('now') - 2440587.5) * 86400.0)")
        return literal_column("extract(epoch from clock_timestamp())")

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        if isinstance(self.engine, AsyncEngine):
            async with self.engine.begin() as conn:
                tx = Tx(conn, self)
                yield tx
        else:
            async with self._inline_lock:
                with self.engine.begin() as sync_conn:
                    tx = Tx(InlineConnection(sync_conn), self)
                    yield tx
        for topic, message in tx.outbox:
            self.bus.publish(topic, message)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        if isinstance(self.engine, AsyncEngine):
            async with self.engine.connect() as conn:
                yield conn
        else:
            async with self._inline_lock:
                with self.engine.connect() as sync_conn:
                    yield InlineConnection(sync_conn.execution_options(**{READ_ONLY: True}))

    async def run_sync(self, fn: Any) -> Any:
        """Run `fn(sync_connection)` in a transaction (Alembic needs a sync connection)."""
        async with self.tx() as tx:
            return await tx.conn.run_sync(fn)

    async def close(self) -> None:
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
        else:
            self.engine.dispose()

    @classmethod
    def open(cls, settings: Settings, bus: Bus) -> Store:
        """The store a server or worker process uses, sized by its settings."""
        engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            idle_in_transaction_timeout=settings.lease_seconds,
        )
        return cls(engine, bus)
