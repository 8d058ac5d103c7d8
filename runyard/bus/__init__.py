"""The bus wakes readers and workers up; it never carries the only copy of anything.

Topics: `run:<id>` (new events of one run; the message is the list of committed event
envelopes, or from another node just the last seq), `queue` (a run became claimable),
`cancel` (the message is a run id). `RESYNC` tells a subscriber it may have missed
messages. A subscriber that falls behind or misses a message re-reads the store.
"""

from __future__ import annotations

from typing import Protocol

from .local import RESYNC, LocalBus, Subscription

__all__ = ["RESYNC", "Bus", "LocalBus", "Subscription", "create_bus"]


class Bus(Protocol):
    def publish(self, topic: str, message: object) -> None: ...

    def subscribe(self, topic: str, *, maxsize: int = 1024) -> Subscription: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...


def create_bus(bus: str | None = None, database_url: str = "") -> Bus:
    """`RUNYARD_BUS`: unset picks `local` for SQLite and `postgres` for PostgreSQL."""
    if not bus:
        bus = "postgres" if database_url.startswith("postgresql") else "local"
    if bus == "local":
        return LocalBus()
    if bus == "postgres":
        if not database_url.startswith("postgresql"):
            raise ValueError("RUNYARD_BUS=postgres needs a PostgreSQL RUNYARD_DATABASE_URL")
        from .remote import PostgresBus

        return PostgresBus(database_url)
    if bus.startswith(("redis://", "rediss://", "unix://")):
        from .remote import RedisBus

        return RedisBus(bus)
    raise ValueError(f"unknown RUNYARD_BUS {bus!r}: expected local, postgres or redis://…")
