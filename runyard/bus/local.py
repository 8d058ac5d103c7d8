"""The in-process bus of embedded mode: a dict of topic → subscriber queues."""

from __future__ import annotations

import asyncio
from collections import defaultdict

__all__ = ["RESYNC", "LocalBus", "Subscription"]

RESYNC = "resync"
"""Sent to subscribers when messages may have been lost: re-read the store."""


class Subscription:
    """Messages of one topic, in publish order. `overflowed` tells the reader it missed some."""

    def __init__(self, bus: LocalBus, topic: str, maxsize: int) -> None:
        self._bus = bus
        self.topic = topic
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
        self.overflowed = False

    def put(self, message: object) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Drop rather than block the publisher; the reader re-reads the store.
            self.overflowed = True

    async def get(self, timeout: float | None = None) -> object | None:
        """The next message, or None when `timeout` passes first."""
        if timeout is None:
            return await self.queue.get()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def drain(self) -> list[object]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    def close(self) -> None:
        self._bus._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

    def publish(self, topic: str, message: object) -> None:
        for sub in tuple(self._subscribers.get(topic, ())):
            sub.put(message)

    def subscribe(self, topic: str, *, maxsize: int = 1024) -> Subscription:
        sub = Subscription(self, topic, maxsize)
        self._subscribers[topic].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.topic]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._subscribers.clear()

    async def ping(self) -> bool:
        return True
