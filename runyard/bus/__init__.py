"""The bus wakes readers and workers up; it never carries the only copy of anything.

Topics: `run:<id>` (new events of one run; the message is the list of committed event
envelopes), `queue` (a run became claimable), `cancel` (the message is a run id).
A subscriber that falls behind or misses a message re-reads the store from its last seq.
"""

from __future__ import annotations

from typing import Protocol

from .local import LocalBus, Subscription

__all__ = ["Bus", "LocalBus", "Subscription", "create_bus"]


class Bus(Protocol):
    def publish(self, topic: str, message: object) -> None: ...

    def subscribe(self, topic: str, *, maxsize: int = 1024) -> Subscription: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def create_bus(url: str | None = None) -> Bus:
    if not url or url == "local":
        return LocalBus()
    raise ValueError(f"unknown bus {url!r}: expected 'local'")
