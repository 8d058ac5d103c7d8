"""`/v1/webhooks`: endpoints Runyard calls when events happen, their delivery log, and the
org's default signing secret (`/v1/webhook_secret`) for runs' own `webhook_url`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from ..._webhooks import DeliveryStatus, Webhook, WebhookDelivery, WebhookSecret
from ...store import webhooks
from ...worker.deliveries import PRIVATE_FLAG
from ...worker.tools import net
from ..auth import org_id
from ..errors import ERRORS
from ..queries import After, Before, Limit
from ..schemas import Deleted, WebhookCreate, WebhookDeliveryList, WebhookList, WebhookRotate, WebhookUpdate

__all__ = ["check_webhook_url", "router"]

router = APIRouter(tags=["webhooks"], responses=ERRORS)


async def check_webhook_url(request: Request, url: str, field: str) -> str:
    """An http(s) URL whose host is public, unless the operator allows private ones (422 naming `field`)."""
    allow = request.app.state.settings.webhooks_allow_private
    return await asyncio.to_thread(net.check_url, url, field, allow_private=allow, flag=PRIVATE_FLAG)


@router.post("/v1/webhooks", response_model=Webhook, status_code=201)
async def create_webhook(body: WebhookCreate, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Add an endpoint. The answer shows its `secret` (`whsec_…`): the only time it is shown."""
    url = await check_webhook_url(request, body.url, "url")
    async with request.app.state.store.tx() as tx:
        return await webhooks.create(
            tx.conn,
            org,
            url=url,
            events=body.events,
            description=body.description or "",
            enabled=body.enabled,
            secret=body.secret,
            metadata=body.metadata,
        )


@router.get("/v1/webhooks", response_model=WebhookList)
async def list_webhooks(
    request: Request, org: str = Depends(org_id), limit: Limit = 20, before: Before = None, after: After = None
) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        data, has_more, cursor = await webhooks.list_(conn, org, limit=limit, before=before, after=after)
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/v1/webhooks/{webhook_id}", response_model=Webhook)
async def get_webhook(webhook_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        return await webhooks.get(conn, org, webhook_id)


@router.patch("/v1/webhooks/{webhook_id}", response_model=Webhook)
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, request: Request, org: str = Depends(org_id)
) -> dict[str, Any]:
    """Change the URL, subscriptions, description, metadata, or turn the endpoint on and off."""
    changes = body.model_dump(exclude_unset=True)
    for name in ("url", "events", "enabled", "description", "metadata"):
        if name in changes and changes[name] is None:
            changes.pop(name)
    if "url" in changes:
        changes["url"] = await check_webhook_url(request, changes["url"], "url")
    async with request.app.state.store.tx() as tx:
        return await webhooks.update_(tx.conn, org, webhook_id, changes)


@router.delete("/v1/webhooks/{webhook_id}", response_model=Deleted)
async def delete_webhook(webhook_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Delete the endpoint and its delivery log; what was not sent yet is dropped."""
    async with request.app.state.store.tx() as tx:
        await webhooks.delete_(tx.conn, org, webhook_id)
    return {"id": webhook_id, "object": "webhook", "deleted": True}


@router.post("/v1/webhooks/{webhook_id}/rotate_secret", response_model=Webhook)
async def rotate_webhook_secret(
    webhook_id: str, request: Request, body: WebhookRotate | None = None, org: str = Depends(org_id)
) -> dict[str, Any]:
    """A new secret, shown once; the old one keeps signing (beside it) for 24 hours."""
    async with request.app.state.store.tx() as tx:
        return await webhooks.rotate_secret(tx.conn, org, webhook_id, body.secret if body else None)


@router.get("/v1/webhooks/{webhook_id}/deliveries", response_model=WebhookDeliveryList)
async def list_deliveries(
    webhook_id: str,
    request: Request,
    org: str = Depends(org_id),
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
    status: list[DeliveryStatus] | None = Query(None, description="Only deliveries in these statuses."),
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first: status, attempts, the last answer (status code and
    first 1 KB of its body), latency, and when the next retry is due."""
    async with request.app.state.store.read() as conn:
        data, has_more, cursor = await webhooks.deliveries(
            conn, org, webhook_id, limit=limit, before=before, after=after, statuses=status
        )
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}", response_model=WebhookDelivery)
async def get_delivery(webhook_id: str, delivery_id: str, request: Request, org: str = Depends(org_id)) -> Any:
    async with request.app.state.store.read() as conn:
        return await webhooks.get_delivery(conn, org, webhook_id, delivery_id)


@router.post(
    "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", response_model=WebhookDelivery, status_code=202
)
async def retry_delivery(webhook_id: str, delivery_id: str, request: Request, org: str = Depends(org_id)) -> Any:
    """Send the delivery again now, with the same `webhook-id` (409 while it is being sent)."""
    async with request.app.state.store.tx() as tx:
        return await webhooks.retry(tx, org, webhook_id, delivery_id)


@router.post("/v1/webhooks/{webhook_id}/test", response_model=WebhookDelivery, status_code=202)
async def test_webhook(webhook_id: str, request: Request, org: str = Depends(org_id)) -> Any:
    """Queue a `webhook.test` delivery to the endpoint; follow it in the delivery log."""
    async with request.app.state.store.tx() as tx:
        return await webhooks.send_test(tx, org, webhook_id)


@router.get("/v1/webhook_secret", response_model=WebhookSecret)
async def get_org_secret(request: Request, org: str = Depends(org_id)) -> Any:
    """The org's default secret: it signs deliveries to runs' own `webhook_url`."""
    async with request.app.state.store.tx() as tx:  # made on first use
        secret = await webhooks.org_secret(tx.conn, org)
    secret.pop("previous_secret")
    return secret


@router.post("/v1/webhook_secret/rotate", response_model=WebhookSecret)
async def rotate_org_secret(request: Request, org: str = Depends(org_id)) -> Any:
    """A new default secret; the old one keeps signing (beside it) for 24 hours."""
    async with request.app.state.store.tx() as tx:
        secret = await webhooks.rotate_org_secret(tx.conn, org)
    secret.pop("previous_secret")
    return secret
