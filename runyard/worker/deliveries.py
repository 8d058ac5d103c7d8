"""The deliverer: sends webhook deliveries from the outbox, at least once, signed.

Each worker process runs one. It leases due deliveries through the queue (`queue.claim_jobs`,
the same lease as runs), sends them concurrently, and writes their outcomes in batches, each
fenced by its lease: a delivery whose lease expired (a worker killed mid-send) is sent again by
whoever claims it next, with the same `webhook-id`, so receivers drop the duplicate.

    2xx → succeeded · 410 → failed, endpoint disabled · other answer, network error, timeout →
    retried after `webhooks_retry_delays` (with jitter), then failed · an endpoint failing for
    `webhooks_disable_after` is disabled, and `webhook.disabled` goes to the org's other endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import yarl
from sqlalchemy import func, select, update

from .. import metrics
from .._version import __version__
from .._webhooks import sign
from ..config import Settings
from ..store import outbox, queue, webhooks
from ..store.db import Row, Store, Tx, utcnow
from ..store.schema import webhook_deliveries
from ..store.schema import webhooks as endpoints_table
from .tools import net

__all__ = ["PRIVATE_FLAG", "Deliverer"]

log = logging.getLogger("runyard.webhooks")

PRIVATE_FLAG = "RUNYARD_WEBHOOKS_ALLOW_PRIVATE"
CLAIM_BATCH = 100
BODY_KEPT = 1024  # bytes of each response body kept in the delivery log
JITTER = 0.2


class Deliverer:
    def __init__(self, store: Store, settings: Settings, worker_id: str) -> None:
        self.store = store
        self.settings = settings
        self.worker_id = worker_id
        # Never renewed: one send is bounded by the timeout, well inside this.
        self.lease_seconds = 2 * settings.webhooks_timeout + 10
        self.client: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._done: list[tuple[dict[str, Any], Any]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, *, recover_all: bool = False) -> None:
        """Start the loops. `recover_all`: every delivery marked as being sent is sent again
        (an embedded SQLite server knows it holds them all)."""
        if recover_all:
            async with self.store.tx() as tx:
                await queue.reap_jobs(tx, webhook_deliveries, all_running=True)
        # aiohttp, not httpx: at 64 connections httpx's pool sent 365 POSTs/s here, aiohttp 9,871.
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.webhooks_concurrency),
            timeout=aiohttp.ClientTimeout(total=self.settings.webhooks_timeout),
            skip_auto_headers=("User-Agent",),
        )
        self._sub = self.store.bus.subscribe(outbox.TOPIC, maxsize=1000)
        for loop in (self._claim_loop, self._wake_loop, self._flush_loop):
            self._tasks.append(asyncio.create_task(loop(), name=f"runyard-deliveries-{loop.__name__}"))

    async def stop(self) -> None:
        """Stop claiming, let sends in flight end (they are bounded by the timeout), write their outcomes."""
        self._stopping = True
        self._wake.set()
        if self._sending:
            await asyncio.wait(self._sending, timeout=self.settings.webhooks_timeout + 1)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._write()
        except Exception:
            log.exception("could not write delivery outcomes at shutdown; their leases will expire")
        self._sub.close()
        if self.client is not None:
            await self.client.close()

    async def reap(self) -> int:
        async with self.store.tx() as tx:
            return await queue.reap_jobs(tx, webhook_deliveries)

    async def _wake_loop(self) -> None:
        while True:
            await self._sub.get()
            self._sub.drain()
            self._wake.set()

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = min(self.settings.webhooks_concurrency - len(self._sending), CLAIM_BATCH)
            claimed: list[tuple[Row, Any]] = []
            if free > 0:
                try:
                    async with self.store.tx() as tx:
                        rows = await queue.claim_jobs(
                            tx, webhook_deliveries, self.worker_id, limit=free, lease_seconds=self.lease_seconds
                        )
                        claimed = list(zip(rows, await _targets(tx, rows), strict=True))
                except Exception:
                    log.exception("claiming deliveries failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
            for row, target in claimed:
                task = asyncio.create_task(self._send(row, target), name=f"delivery-{row.id}")
                self._sending.add(task)
                task.add_done_callback(self._sent)
            if claimed and len(claimed) == free:
                continue  # there may be more due
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            except TimeoutError:
                pass

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._wake.set()  # a slot is free

    async def _send(self, row: Row, target: _Target | None) -> None:
        result: dict[str, Any] = {"id": row.id, "attempt": row.attempt}
        if target is None or not target.enabled:
            why = "deleted" if target is None else f"disabled: {target.disabled_reason or 'by a user'}"
            reason = f"endpoint {why}"
            self._finish(result | {"status": "failed", "error": reason}, target, "failed")
            return
        began = time.perf_counter()
        response_status, asked_wait = None, None
        try:
            response_status, body, asked_wait = await self._post(target.url, row, target.secrets)
            result |= {"response_status": response_status, "response_body": body, "error": None}
        except _Refused as exc:
            result |= {"response_status": None, "response_body": None, "error": str(exc)}
        except TimeoutError:
            result |= {"response_status": None, "response_body": None}
            result["error"] = f"no answer within {self.settings.webhooks_timeout:g} s"
        except (aiohttp.ClientError, ValueError) as exc:
            result |= {"response_status": None, "response_body": None, "error": f"{type(exc).__name__}: {exc}"}
        elapsed = time.perf_counter() - began
        metrics.WEBHOOK_DELIVERY_SECONDS.observe(elapsed)
        result["latency_ms"] = round(elapsed * 1000, 2)
        if response_status is not None and 200 <= response_status < 300:
            self._finish(result | {"status": "succeeded", "delivered_at": utcnow()}, target, "succeeded")
        elif response_status == 410:
            self._finish(result | {"status": "failed", "error": "the endpoint answered 410 Gone"}, target, "gone")
        elif row.attempt <= len(self.settings.webhooks_retry_delays):
            delay = self.settings.webhooks_retry_delays[row.attempt - 1]
            delay *= random.uniform(1 - JITTER, 1 + JITTER)  # receivers coming back are not hit all at once
            if asked_wait is not None:
                delay = max(delay, asked_wait)  # a 429's or 503's Retry-After, up to a day
            if result["error"] is None:
                result["error"] = f"the endpoint answered {response_status}"
            self._finish(result | {"status": "pending", "retry_in": delay}, target, "retrying")
        else:
            if result["error"] is None:
                result["error"] = f"the endpoint answered {response_status}"
            self._finish(result | {"status": "failed"}, target, "failed")

    async def _post(self, url: str, row: Row, secrets: list[str]) -> tuple[int, str, float | None]:
        """Send one attempt: the answer's status, the start of its body, and the wait its
        `Retry-After` asks for (429 and 503 only)."""
        body = row.payload.encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": f"Runyard-Webhooks/{__version__}",
            "webhook-id": row.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secrets, row.id, timestamp, body),
        }
        assert self.client is not None, "started"
        target, server_hostname = yarl.URL(url), None
        if not self.settings.webhooks_allow_private:
            host = target.raw_host or ""
            try:  # checked again now: DNS may have changed since the URL was saved
                addresses = await asyncio.to_thread(net.public_addresses, host, PRIVATE_FLAG)
            except ValueError as exc:
                raise _Refused(str(exc)) from None
            # No DNS rebinding: connect to the checked address, with the name as Host and TLS SNI.
            headers["host"] = target.raw_authority
            if target.scheme == "https":
                server_hostname = host
            target = target.with_host(addresses[0])
        async with self.client.post(
            target,
            data=body,
            headers=headers,
            allow_redirects=False,  # a redirect could point at an address never checked
            server_hostname=server_hostname,
        ) as response:
            kept = b""
            while len(kept) < BODY_KEPT and (chunk := await response.content.read(BODY_KEPT - len(kept))):
                kept += chunk
            asked = _retry_after(response.headers.get("Retry-After")) if response.status in (429, 503) else None
            return response.status, kept.decode("utf-8", errors="replace"), asked

    def _finish(self, result: dict[str, Any], target: _Target | None, outcome: str) -> None:
        metrics.WEBHOOK_DELIVERIES.labels("failed" if outcome == "gone" else outcome).inc()
        self._done.append((result, (target.webhook_id if target else None, outcome)))
        self._flush.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush.wait()
            # A short gather window: outcomes that end together commit together.
            await asyncio.sleep(self.settings.flush_interval)
            self._flush.clear()
            try:
                await self._write()
            except Exception:
                log.exception("writing delivery outcomes failed; retrying")
                await asyncio.sleep(1.0)
                self._flush.set()

    async def _write(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        try:
            async with self.store.tx() as tx:
                written = await queue.finish_jobs(tx, webhook_deliveries, self.worker_id, [r for r, _ in done])
                await _endpoint_health(tx, [meta for r, meta in done if r["id"] in written], self.settings)
        except Exception:
            self._done[:0] = done  # kept for the next try; the leases bound how long
            raise


class _Refused(Exception):
    """The URL resolves to a private or reserved address and the operator did not allow those."""


@dataclass(frozen=True)
class _Target:
    webhook_id: str | None
    url: str
    secrets: list[str]
    enabled: bool
    disabled_reason: str | None


async def _targets(tx: Tx, rows: list[Row]) -> list[_Target | None]:
    """Where each delivery goes and what signs it, as the endpoint is now (its URL may have
    changed, its secret rotated); a run's own `webhook_url` is signed with the org's secret."""
    ids = sorted({r.webhook_id for r in rows if r.webhook_id is not None})
    found = {}
    if ids:
        found = {e.id: e for e in await tx.conn.execute(select(endpoints_table).where(endpoints_table.c.id.in_(ids)))}
    org_secrets: dict[str, list[str]] = {}
    targets: list[_Target | None] = []
    for row in rows:
        if row.webhook_id is None:
            if row.org_id not in org_secrets:
                s = await webhooks.org_secret(tx.conn, row.org_id)
                until = s["previous_secret_expires_at"]
                org_secrets[row.org_id] = webhooks.signing_secrets(s["secret"], s["previous_secret"], until)
            targets.append(_Target(None, row.url, org_secrets[row.org_id], True, None))
            continue
        endpoint = found.get(row.webhook_id)
        if endpoint is None:
            targets.append(None)
            continue
        secrets = webhooks.signing_secrets(endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_until)
        targets.append(_Target(endpoint.id, endpoint.url, secrets, endpoint.enabled, endpoint.disabled_reason))
    return targets


async def _endpoint_health(tx: Tx, outcomes: list[tuple[str | None, str]], settings: Settings) -> None:
    """A success clears an endpoint's failing streak; a failure starts one (if none); a streak
    longer than `webhooks_disable_after`, or a 410, disables the endpoint."""
    ok = sorted({w for w, o in outcomes if w is not None and o == "succeeded"})
    failing = sorted({w for w, o in outcomes if w is not None and o in ("retrying", "failed")} - set(ok))
    gone = sorted({w for w, o in outcomes if w is not None and o == "gone"})
    table = endpoints_table
    if ok:
        await tx.conn.execute(
            update(table).where(table.c.id.in_(ok), table.c.failing_since.is_not(None)).values(failing_since=None)
        )
    if failing:
        now = utcnow()
        await tx.conn.execute(
            update(table).where(table.c.id.in_(failing)).values(failing_since=func.coalesce(table.c.failing_since, now))
        )
        since = now.timestamp() - settings.webhooks_disable_after
        stale = await tx.conn.execute(
            select(table.c.id, table.c.failing_since).where(table.c.id.in_(failing), table.c.enabled.is_(True))
        )
        for endpoint in stale:
            if endpoint.failing_since.timestamp() <= since:
                reason = f"every delivery failed for {_span(settings.webhooks_disable_after)}"
                await webhooks.disable(tx, endpoint.id, reason)
    for webhook_id in gone:
        await webhooks.disable(tx, webhook_id, "the endpoint answered 410 Gone")


def _span(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g} s"


MAX_RETRY_AFTER = 86_400.0


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds or an HTTP date, capped at a day; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
