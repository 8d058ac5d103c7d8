"""`client.webhooks`: endpoints Runyard calls when events happen, and their delivery log;
`client.webhooks.secret` is the org's default secret (it signs runs' own `webhook_url`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ..._webhooks import DeliveryStatus, Webhook, WebhookDelivery, WebhookSecret
from ..pagination import AsyncPaginator, SyncPage
from ..paths import path_for
from ..types import NOT_GIVEN, NotGivenOr, strip_not_given

if TYPE_CHECKING:
    from ..client import AsyncRunyard, Runyard

__all__ = ["AsyncWebhooks", "WebhookDeleted", "Webhooks"]


class WebhookDeleted(BaseModel):
    """The answer to `client.webhooks.delete(...)`."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["webhook"] = "webhook"
    deleted: bool


def _path(webhook_id: str, *rest: str) -> str:
    return path_for("/v1/webhooks/{}" + "/{}" * len(rest), webhook_id, *rest)


def _changes(**fields: Any) -> dict[str, Any]:
    body = strip_not_given(fields)
    if "events" in body:
        body["events"] = list(body["events"])
    return body


class Webhooks:
    """`client.webhooks`: create endpoints, read their deliveries, retry and test them."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def create(
        self,
        url: str,
        events: Sequence[str],
        *,
        description: NotGivenOr[str] = NOT_GIVEN,
        enabled: NotGivenOr[bool] = NOT_GIVEN,
        secret: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> Webhook:
        """Add an endpoint for `events` (types, prefixes like `"run.*"`, or `"*"`). The answer's
        `secret` is the only time it is shown: keep it to verify deliveries."""
        body = _changes(
            url=url, events=events, description=description, enabled=enabled, secret=secret, metadata=metadata
        )
        return self._client._request_model("POST", "/v1/webhooks", Webhook, json=body)

    def list(self, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN) -> SyncPage[Webhook]:
        """The org's endpoints, newest first; iterating the page walks all of them."""
        return self._client._request_page("/v1/webhooks", Webhook.model_validate, {"limit": limit, "before": before})

    def retrieve(self, webhook_id: str) -> Webhook:
        """One endpoint (without its secret)."""
        return self._client._request_model("GET", _path(webhook_id), Webhook)

    def update(
        self,
        webhook_id: str,
        *,
        url: NotGivenOr[str] = NOT_GIVEN,
        events: NotGivenOr[Sequence[str]] = NOT_GIVEN,
        description: NotGivenOr[str] = NOT_GIVEN,
        enabled: NotGivenOr[bool] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> Webhook:
        """Change what is given; `enabled=True` turns on an endpoint Runyard disabled."""
        body = _changes(url=url, events=events, description=description, enabled=enabled, metadata=metadata)
        return self._client._request_model("PATCH", _path(webhook_id), Webhook, json=body)

    def delete(self, webhook_id: str) -> WebhookDeleted:
        """Delete the endpoint and its delivery log."""
        return self._client._request_model("DELETE", _path(webhook_id), WebhookDeleted)

    def rotate_secret(self, webhook_id: str, *, secret: NotGivenOr[str] = NOT_GIVEN) -> Webhook:
        """A new secret (in the answer, once); the old one keeps signing beside it for 24 hours."""
        body = _changes(secret=secret)
        return self._client._request_model("POST", _path(webhook_id, "rotate_secret"), Webhook, json=body)

    def deliveries(
        self,
        webhook_id: str,
        *,
        status: NotGivenOr[Sequence[DeliveryStatus]] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
    ) -> SyncPage[WebhookDelivery]:
        """The endpoint's deliveries, newest first (optionally only in some `status`)."""
        params = {"limit": limit, "before": before, "status": list(status) if status else NOT_GIVEN}
        return self._client._request_page(_path(webhook_id, "deliveries"), WebhookDelivery.model_validate, params)

    def retry(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivery again now, with the same `webhook-id`."""
        path = _path(webhook_id, "deliveries", delivery_id, "retry")
        return self._client._request_model("POST", path, WebhookDelivery)

    def test(self, webhook_id: str) -> WebhookDelivery:
        """Queue a `webhook.test` delivery to the endpoint."""
        return self._client._request_model("POST", _path(webhook_id, "test"), WebhookDelivery)

    def secret(self) -> WebhookSecret:
        """The org's default secret: it signs deliveries to runs' own `webhook_url`."""
        return self._client._request_model("GET", "/v1/webhook_secret", WebhookSecret)

    def rotate_default_secret(self) -> WebhookSecret:
        """A new default secret; the old one keeps signing beside it for 24 hours."""
        return self._client._request_model("POST", "/v1/webhook_secret/rotate", WebhookSecret)


class AsyncWebhooks:
    """`client.webhooks`: create endpoints, read their deliveries, retry and test them."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    async def create(
        self,
        url: str,
        events: Sequence[str],
        *,
        description: NotGivenOr[str] = NOT_GIVEN,
        enabled: NotGivenOr[bool] = NOT_GIVEN,
        secret: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> Webhook:
        """Add an endpoint for `events` (types, prefixes like `"run.*"`, or `"*"`). The answer's
        `secret` is the only time it is shown: keep it to verify deliveries."""
        body = _changes(
            url=url, events=events, description=description, enabled=enabled, secret=secret, metadata=metadata
        )
        return await self._client._request_model("POST", "/v1/webhooks", Webhook, json=body)

    def list(
        self, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN
    ) -> AsyncPaginator[Webhook]:
        """The org's endpoints, newest first: `await` for the first page or `async for` over all."""
        return self._client._request_page("/v1/webhooks", Webhook.model_validate, {"limit": limit, "before": before})

    async def retrieve(self, webhook_id: str) -> Webhook:
        """One endpoint (without its secret)."""
        return await self._client._request_model("GET", _path(webhook_id), Webhook)

    async def update(
        self,
        webhook_id: str,
        *,
        url: NotGivenOr[str] = NOT_GIVEN,
        events: NotGivenOr[Sequence[str]] = NOT_GIVEN,
        description: NotGivenOr[str] = NOT_GIVEN,
        enabled: NotGivenOr[bool] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> Webhook:
        """Change what is given; `enabled=True` turns on an endpoint Runyard disabled."""
        body = _changes(url=url, events=events, description=description, enabled=enabled, metadata=metadata)
        return await self._client._request_model("PATCH", _path(webhook_id), Webhook, json=body)

    async def delete(self, webhook_id: str) -> WebhookDeleted:
        """Delete the endpoint and its delivery log."""
        return await self._client._request_model("DELETE", _path(webhook_id), WebhookDeleted)

    async def rotate_secret(self, webhook_id: str, *, secret: NotGivenOr[str] = NOT_GIVEN) -> Webhook:
        """A new secret (in the answer, once); the old one keeps signing beside it for 24 hours."""
        body = _changes(secret=secret)
        return await self._client._request_model("POST", _path(webhook_id, "rotate_secret"), Webhook, json=body)

    def deliveries(
        self,
        webhook_id: str,
        *,
        status: NotGivenOr[Sequence[DeliveryStatus]] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
    ) -> AsyncPaginator[WebhookDelivery]:
        """The endpoint's deliveries, newest first (optionally only in some `status`)."""
        params = {"limit": limit, "before": before, "status": list(status) if status else NOT_GIVEN}
        return self._client._request_page(_path(webhook_id, "deliveries"), WebhookDelivery.model_validate, params)

    async def retry(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivery again now, with the same `webhook-id`."""
        path = _path(webhook_id, "deliveries", delivery_id, "retry")
        return await self._client._request_model("POST", path, WebhookDelivery)

    async def test(self, webhook_id: str) -> WebhookDelivery:
        """Queue a `webhook.test` delivery to the endpoint."""
        return await self._client._request_model("POST", _path(webhook_id, "test"), WebhookDelivery)

    async def secret(self) -> WebhookSecret:
        """The org's default secret: it signs deliveries to runs' own `webhook_url`."""
        return await self._client._request_model("GET", "/v1/webhook_secret", WebhookSecret)

    async def rotate_default_secret(self) -> WebhookSecret:
        """A new default secret; the old one keeps signing beside it for 24 hours."""
        return await self._client._request_model("POST", "/v1/webhook_secret/rotate", WebhookSecret)
