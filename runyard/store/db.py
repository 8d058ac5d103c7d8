"""Engine setup per dialect and the transaction helper that publishes to the bus after commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, literal_column, pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from ..bus import Bus

__all__ = ["Store", "Tx", "create_engine", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # One process, one connection: SQLite serialises writers anyway, and several
        # connections only add busy back-off (measured p99 ~450 ms).
        engine = create_async_engine(
            url,
            poolclass=pool.AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=300,
            connect_args={"timeout": 30, "check_same_thread": False},
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" hook issue BEGIN IMMEDIATE, so a second process
            # (the CLI, a migration) waits on the busy timeout instead of failing mid-transaction.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


@dataclass
class Tx:
    """An open transaction and what to publish once it commits."""

    conn: AsyncConnection
    store: "Store"
    outbox: list[tuple[str, Any]] = field(default_factory=list)

    def publish_after_commit(self, topic: str, message: Any) -> None:
        self.outbox.append((topic, message))


class Store:
    """The database plus the bus: every write goes through `tx()`, which publishes after commit.

    Publishing only after commit is what lets a reader trust that a message it sees refers
    to rows it can read; losing one costs latency, never data.
    """

    def __init__(self, engine: AsyncEngine, bus: "Bus") -> None:
        self.engine = engine
        self.bus = bus
        self.dialect = engine.dialect.name

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
        async with self.engine.begin() as conn:
            tx = Tx(conn, self)
            yield tx
        for topic, message in tx.outbox:
            self.bus.publish(topic, message)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()
