"""Buses that cross processes: PostgreSQL LISTEN/NOTIFY and Redis pub/sub.

Both deliver to this process's subscribers at once (with full event envelopes) and send
a compact hint to other nodes: for `run:<id>` only the last seq, since NOTIFY payloads are
capped at 8000 bytes and a reader re-reads the store anyway. A node ignores its own hints.
When the connection drops, every subscriber is told it may have missed messages (it
re-reads the store), and the bus reconnects with backoff.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import os
import uuid
from typing import Any

from .local import RESYNC, LocalBus

__all__ = ["PostgresBus", "RedisBus"]

log = logging.getLogger("runyard.bus")

CHANNEL = "runyard"
MAX_PAYLOAD = 7000  # NOTIFY's limit is 8000 bytes
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)


def _compact(topic: str, message: Any) -> Any:
    if topic.startswith("run:") and isinstance(message, list) and message:
        return message[-1]["seq"]
    return message


class RemoteBus(LocalBus, abc.ABC):
    def __init__(self) -> None:
        super().__init__()
        self.node_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._outbox: asyncio.Queue[list[list[Any]]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnect_lock = asyncio.Lock()
        self._closing = False
        self.connected = False

    def publish(self, topic: str, message: object) -> None:
        super().publish(topic, message)
        if self._outbox is not None:
            self._outbox.put_nowait([[topic, _compact(topic, message)]])

    async def start(self) -> None:
        self._outbox = asyncio.Queue()
        await self._connect()
        self.connected = True
        self._tasks = [asyncio.create_task(self._sender(), name="runyard-bus-sender")]

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._disconnect()
        await super().close()

    async def ping(self) -> bool:
        return self.connected

    def _on_payload(self, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if data.get("n") == self.node_id:
            return
        for topic, message in data.get("m", []):
            super().publish(topic, message)

    def _on_lost(self) -> None:
        """The connection dropped: hints may be lost, so every reader re-reads the store."""
        self.connected = False
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.overflowed = True
                sub.put(RESYNC)

    async def _sender(self) -> None:
        assert self._outbox is not None
        while True:
            batch = await self._outbox.get()
            while not self._outbox.empty() and len(batch) < 200:
                batch.extend(self._outbox.get_nowait())
            for chunk in _chunks(batch):
                payload = json.dumps({"n": self.node_id, "m": chunk}, separators=(",", ":"))
                for attempt in range(3):
                    try:
                        await self._send(payload)
                        break
                    except Exception as exc:  # lost connection: reconnect; a late wake-up is fine
                        if attempt == 2:
                            log.warning("bus: dropping a wake-up after retries: %s", exc)
                            break
                        await self._reconnect()

    async def _reconnect(self) -> None:
        """Reconnect once, whoever asks (the sender, the listener): concurrent callers wait for it."""
        async with self._reconnect_lock:
            if self._healthy():
                return
            self._on_lost()
            for delay in (*RECONNECT_DELAYS, *([5.0] * 1000)):
                if self._closing:
                    return
                await asyncio.sleep(delay)
                try:
                    await self._disconnect()
                    await self._connect()
                except Exception as exc:
                    log.warning("bus: reconnect failed: %s", exc)
                    continue
                self.connected = True
                self._on_lost()  # wake readers once more: they catch up from the store
                return

    # What each transport provides:

    @abc.abstractmethod
    def _healthy(self) -> bool: ...

    @abc.abstractmethod
    async def _connect(self) -> None: ...

    @abc.abstractmethod
    async def _disconnect(self) -> None: ...

    @abc.abstractmethod
    async def _send(self, payload: str) -> None: ...


def _chunks(batch: list[list[Any]]) -> list[list[list[Any]]]:
    chunks: list[list[list[Any]]] = [[]]
    size = 0
    for item in batch:
        item_size = len(json.dumps(item)) + 1
        if chunks[-1] and size + item_size > MAX_PAYLOAD:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += item_size
    return chunks


class PostgresBus(RemoteBus):
    """LISTEN/NOTIFY on one asyncpg connection for listening and one for sending."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://")
        self._listen_conn: Any = None
        self._send_conn: Any = None

    async def _connect(self) -> None:
        import asyncpg

        listen = await asyncpg.connect(self.dsn)
        try:
            listen.add_termination_listener(self._on_terminated)
            await listen.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: self._on_payload(payload))
            send = await asyncpg.connect(self.dsn)
        except BaseException:
            listen.terminate()
            raise
        self._listen_conn, self._send_conn = listen, send

    def _on_terminated(self, conn: Any) -> None:
        # Fired for any close, ours included: only the loss of the current listener counts.
        if conn is not self._listen_conn or self._closing:
            return
        self.connected = False
        if not self._reconnect_lock.locked():
            self._tasks.append(asyncio.create_task(self._reconnect(), name="runyard-bus-reconnect"))

    def _healthy(self) -> bool:
        return all(c is not None and not c.is_closed() for c in (self._listen_conn, self._send_conn))

    async def _disconnect(self) -> None:
        conns = (self._listen_conn, self._send_conn)
        self._listen_conn = self._send_conn = None  # before closing: the termination listener ignores them
        for conn in conns:
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), 2)
                except Exception:
                    conn.terminate()

    async def _send(self, payload: str) -> None:
        if self._send_conn is None or self._send_conn.is_closed():
            raise ConnectionError("bus connection closed")
        await self._send_conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def ping(self) -> bool:
        return self.connected and self._listen_conn is not None and not self._listen_conn.is_closed()


class RedisBus(RemoteBus):
    """Redis pub/sub on one channel: for more fan-out than NOTIFY offers."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._client: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def _connect(self) -> None:
        import redis.asyncio as redis

        self._client = redis.from_url(self.url)
        self._pubsub = self._client.pubsub()
        await self._pubsub.subscribe(CHANNEL)
        self._reader = asyncio.create_task(self._read(), name="runyard-bus-redis")

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("bus: Redis connection lost: %s", exc)
                self.connected = False
                self._tasks.append(asyncio.create_task(self._reconnect(), name="runyard-bus-reconnect"))
                return
            if message is not None:
                data = message["data"]
                self._on_payload(data.decode() if isinstance(data, bytes) else data)

    async def _disconnect(self) -> None:
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:
                pass
        if self._client is not None:
            try:
                await self._client.aclose()
            except Exception:
                pass
        self._client = self._pubsub = None

    async def _send(self, payload: str) -> None:
        if self._client is None:
            raise ConnectionError("bus connection closed")
        await self._client.publish(CHANNEL, payload)

    def _healthy(self) -> bool:
        return self.connected and self._client is not None and self._reader is not None and not self._reader.done()

    async def ping(self) -> bool:
        if not self._healthy():
            return False
        try:
            return bool(await self._client.ping())
        except Exception:
            return False
