"""Webhook endpoints, their deliveries, and the org's default signing secret.

An endpoint's secret is shown once (on create and on rotation); after a rotation the previous
one keeps signing for `ROTATION_OVERLAP`, so receivers can switch without dropping anything.
Deliveries are queued by the outbox (`store.outbox`) and sent by workers (`worker.deliveries`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update

from .._webhooks import WEBHOOK_EVENT_TYPES, matches, new_secret, secret_key
from . import outbox
from .db import Conn, Row, Tx, utcnow
from .errors import Conflict, InvalidInput, NotFound
from .ids import new_id
from .pages import finish, page
from .schema import orgs, webhook_deliveries, webhooks

__all__ = [
    "MAX_SUBSCRIPTIONS",
    "ROTATION_OVERLAP",
    "check_events",
    "check_secret",
    "create",
    "delete_",
    "deliveries",
    "delivery_to_dict",
    "disable",
    "get",
    "get_delivery",
    "list_",
    "org_secret",
    "retry",
    "rotate_org_secret",
    "rotate_secret",
    "send_test",
    "signing_secrets",
    "to_dict",
    "update_",
]

ROTATION_OVERLAP = timedelta(hours=24)
MAX_SUBSCRIPTIONS = 64
_PREFIXES = frozenset(t.split(".", 1)[0] for t in WEBHOOK_EVENT_TYPES if "." in t)


def check_events(events: Any, field: str = "events") -> list[str]:
    """Subscriptions as given: event types, `prefix.*` (`run.*`, `tool.*`, …) or `*`."""
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_SUBSCRIPTIONS:
        raise InvalidInput(f"{field} must list 1 to {MAX_SUBSCRIPTIONS} event types", field=field)
    for i, pattern in enumerate(events):
        known = pattern == "*" or pattern in WEBHOOK_EVENT_TYPES
        known = known or (isinstance(pattern, str) and pattern.endswith(".*") and pattern[:-2] in _PREFIXES)
        if not known:
            raise InvalidInput(
                f"{pattern!r} is not an event type a webhook can subscribe to: one of "
                f"{', '.join(WEBHOOK_EVENT_TYPES)}, a prefix such as 'run.*', or '*'",
                field=f"{field}[{i}]",
            )
    return list(dict.fromkeys(events))


def check_secret(secret: str) -> str:
    try:
        secret_key(secret)
    except ValueError as exc:
        raise InvalidInput(f"not a signing secret: {exc}", field="secret") from None
    return secret


def to_dict(row: Any, *, secret: bool = False) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "webhook",
        "url": row.url,
        "events": row.events,
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "failing_since": row.failing_since,
        "secret": row.secret if secret else None,
        "previous_secret_expires_at": _overlap_end(row.previous_secret_until),
        "metadata": row.metadata,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _overlap_end(until: datetime | None) -> datetime | None:
    return until if until is not None and until > utcnow() else None


def signing_secrets(secret: str, previous: str | None, until: datetime | None) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous during its overlap."""
    return [secret, previous] if previous and _overlap_end(until) else [secret]


async def create(
    conn: Conn,
    org_id: str,
    *,
    url: str,
    events: list[str],
    description: str = "",
    enabled: bool = True,
    secret: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Save an endpoint (`url` already checked); the answer is the only one that shows its secret."""
    now = utcnow()
    values = {
        "id": new_id("whk"),
        "org_id": org_id,
        "url": url,
        "events": check_events(events),
        "description": description,
        "enabled": enabled,
        "secret": check_secret(secret) if secret is not None else new_secret(),
        "previous_secret": None,
        "previous_secret_until": None,
        "failing_since": None,
        "disabled_reason": None,
        "metadata": metadata or {},
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(insert(webhooks).values(values))
    return to_dict(Row(values), secret=True)


async def _row(conn: Conn, org_id: str, webhook_id: str) -> Any:
    row = (
        await conn.execute(select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.org_id == org_id))
    ).one_or_none()
    if row is None:
        raise NotFound.of("webhook", webhook_id)
    return row


async def get(conn: Conn, org_id: str, webhook_id: str) -> dict[str, Any]:
    return to_dict(await _row(conn, org_id, webhook_id))


async def list_(
    conn: Conn, org_id: str, *, limit: int, before: str | None = None, after: str | None = None
) -> tuple[list[dict[str, Any]], bool, str | None]:
    query, ascending = page(
        select(webhooks).where(webhooks.c.org_id == org_id), webhooks, limit=limit, before=before, after=after
    )
    rows, has_more, cursor = finish(list((await conn.execute(query)).all()), limit=limit, ascending=ascending)
    return [to_dict(r) for r in rows], has_more, cursor


async def update_(conn: Conn, org_id: str, webhook_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change `url`, `events`, `description`, `enabled` or `metadata`; enabling an endpoint
    Runyard disabled clears why, and its failures start counting afresh."""
    await _row(conn, org_id, webhook_id)
    values = dict(changes)
    if "events" in values:
        values["events"] = check_events(values["events"])
    if values.get("enabled") is True:
        values |= {"disabled_reason": None, "failing_since": None}
    values["updated_at"] = utcnow()
    await conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(values))
    return await get(conn, org_id, webhook_id)


async def delete_(conn: Conn, org_id: str, webhook_id: str) -> None:
    """Delete an endpoint and its delivery log; deliveries not yet sent are dropped."""
    await _row(conn, org_id, webhook_id)
    await conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id))
    await conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))


async def rotate_secret(conn: Conn, org_id: str, webhook_id: str, secret: str | None = None) -> dict[str, Any]:
    """A new secret (returned once); the old one signs too for `ROTATION_OVERLAP`."""
    row = await _row(conn, org_id, webhook_id)
    now = utcnow()
    await conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id)
        .values(
            secret=check_secret(secret) if secret is not None else new_secret(),
            previous_secret=row.secret,
            previous_secret_until=now + ROTATION_OVERLAP,
            updated_at=now,
        )
    )
    return to_dict(await _row(conn, org_id, webhook_id), secret=True)


async def disable(tx: Tx, webhook_id: str, reason: str) -> None:
    """Turn an endpoint off (it answered 410, or failed for too long) and tell the org's other
    endpoints that subscribe to `webhook.disabled`."""
    row = (
        await tx.conn.execute(
            update(webhooks)
            .where(webhooks.c.id == webhook_id, webhooks.c.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason, updated_at=utcnow())
            .returning(webhooks.c.org_id, webhooks.c.url)
        )
    ).one_or_none()
    if row is None:
        return  # deleted or disabled meanwhile
    others = await tx.conn.execute(
        select(webhooks.c.id, webhooks.c.url, webhooks.c.events).where(
            webhooks.c.org_id == row.org_id, webhooks.c.enabled.is_(True)
        )
    )
    data = {"webhook_id": webhook_id, "url": row.url, "reason": reason}
    targets = [(o.id, o.url) for o in others if matches(o.events, "webhook.disabled")]
    await outbox.enqueue(tx, row.org_id, "webhook.disabled", data, endpoints=targets)


async def send_test(tx: Tx, org_id: str, webhook_id: str) -> dict[str, Any]:
    """Queue a `webhook.test` delivery to the endpoint (enabled or not: it is how one checks a fix)."""
    row = await _row(tx.conn, org_id, webhook_id)
    data = {"webhook_id": webhook_id, "message": "A test delivery from Runyard."}
    [delivery_id] = await outbox.enqueue(tx, org_id, "webhook.test", data, endpoints=[(row.id, row.url)])
    return await get_delivery(tx.conn, org_id, webhook_id, delivery_id)


_ORG_SECRET = select(orgs.c.webhook_secret, orgs.c.webhook_previous_secret, orgs.c.webhook_previous_secret_until)


async def org_secret(conn: Conn, org_id: str) -> dict[str, Any]:
    """The org's default secret (made on first use) and when its previous one stops signing."""
    row = (await conn.execute(_ORG_SECRET.where(orgs.c.id == org_id))).one()
    if row.webhook_secret is None:
        # Two first uses at once: the second finds it set and keeps the first's.
        await conn.execute(
            update(orgs).where(orgs.c.id == org_id, orgs.c.webhook_secret.is_(None)).values(webhook_secret=new_secret())
        )
        row = (await conn.execute(_ORG_SECRET.where(orgs.c.id == org_id))).one()
    return {
        "object": "webhook_secret",
        "secret": row.webhook_secret,
        "previous_secret": row.webhook_previous_secret,
        "previous_secret_expires_at": _overlap_end(row.webhook_previous_secret_until),
    }


async def rotate_org_secret(conn: Conn, org_id: str) -> dict[str, Any]:
    current = await org_secret(conn, org_id)
    await conn.execute(
        update(orgs)
        .where(orgs.c.id == org_id)
        .values(
            webhook_secret=new_secret(),
            webhook_previous_secret=current["secret"],
            webhook_previous_secret_until=utcnow() + ROTATION_OVERLAP,
        )
    )
    return await org_secret(conn, org_id)


def delivery_to_dict(row: Any) -> dict[str, Any]:
    retrying = row.status == "pending" and row.attempt > 0
    return {
        "id": row.id,
        "object": "webhook_delivery",
        "webhook_id": row.webhook_id,
        "url": row.url,
        "run_id": row.run_id,
        "event_type": row.event_type,
        "status": row.status,
        "attempts": row.attempt,
        "response_status": row.response_status,
        "response_body": row.response_body,
        "latency_ms": row.latency_ms,
        "error": row.error,
        "next_retry_at": datetime.fromtimestamp(row.available_at, UTC) if retrying else None,
        "payload": json.loads(row.payload),
        "created_at": row.created_at,
        "delivered_at": row.delivered_at,
    }


async def deliveries(
    conn: Conn,
    org_id: str,
    webhook_id: str,
    *,
    limit: int,
    before: str | None = None,
    after: str | None = None,
    statuses: Iterable[str] | None = None,
) -> tuple[list[dict[str, Any]], bool, str | None]:
    """An endpoint's deliveries, newest first."""
    await _row(conn, org_id, webhook_id)
    query = select(webhook_deliveries).where(
        webhook_deliveries.c.webhook_id == webhook_id, webhook_deliveries.c.org_id == org_id
    )
    if statuses:
        query = query.where(webhook_deliveries.c.status.in_(list(statuses)))
    query, ascending = page(query, webhook_deliveries, limit=limit, before=before, after=after)
    rows, has_more, cursor = finish(list((await conn.execute(query)).all()), limit=limit, ascending=ascending)
    return [delivery_to_dict(r) for r in rows], has_more, cursor


async def _delivery(conn: Conn, org_id: str, webhook_id: str, delivery_id: str) -> Any:
    row = (
        await conn.execute(
            select(webhook_deliveries).where(
                webhook_deliveries.c.id == delivery_id,
                webhook_deliveries.c.webhook_id == webhook_id,
                webhook_deliveries.c.org_id == org_id,
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound.of("delivery", delivery_id)
    return row


async def get_delivery(conn: Conn, org_id: str, webhook_id: str, delivery_id: str) -> dict[str, Any]:
    return delivery_to_dict(await _delivery(conn, org_id, webhook_id, delivery_id))


_RETRY = (
    update(webhook_deliveries)
    .where(webhook_deliveries.c.id == bindparam("_id"), webhook_deliveries.c.status != "running")
    .values(status="pending", available_at=0.0, error=None)
)


async def retry(tx: Tx, org_id: str, webhook_id: str, delivery_id: str) -> dict[str, Any]:
    """Send a delivery again now (same `webhook-id`), whatever became of it; 409 while it is being
    sent, or while its endpoint is disabled."""
    endpoint = await _row(tx.conn, org_id, webhook_id)
    row = await _delivery(tx.conn, org_id, webhook_id, delivery_id)
    if not endpoint.enabled:
        raise Conflict(f"webhook {webhook_id} is disabled: enable it first (PATCH enabled: true)")
    if row.status == "running" or not (await tx.conn.execute(_RETRY, {"_id": delivery_id})).rowcount:
        raise Conflict(f"delivery {delivery_id} is being sent right now: retry after it ends")
    tx.publish_after_commit(outbox.TOPIC, None)
    return await get_delivery(tx.conn, org_id, webhook_id, delivery_id)
