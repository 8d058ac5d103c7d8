"""Webhooks as the server and the SDK both see them: the event types an endpoint may subscribe
to, how a subscription pattern matches, the endpoint and delivery models, and the Standard
Webhooks signature (https://www.standardwebhooks.com) every delivery carries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ._events import EVENT_TYPES

__all__ = [
    "WEBHOOK_EVENT_TYPES",
    "DeliveryStatus",
    "Webhook",
    "WebhookDelivery",
    "WebhookSecret",
    "matches",
    "new_secret",
    "secret_key",
    "sign",
]

_STREAMING = frozenset({"message.delta", "reasoning.delta"})
WEBHOOK_EVENT_TYPES: tuple[str, ...] = (
    *(t for t in EVENT_TYPES if t not in _STREAMING),
    "webhook.test",
    "webhook.disabled",
)
"""What an endpoint can subscribe to: every run event except the streaming deltas (a webhook per
token would flood any receiver; read those from the SSE stream), plus the webhooks' own."""

DeliveryStatus = Literal["pending", "running", "succeeded", "failed"]
"""`pending` (queued or waiting for its next retry), `running` (being sent), `succeeded`, `failed`
(retries spent, the endpoint answered 410 or was disabled)."""

SECRET_PREFIX = "whsec_"


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a subscription (`run.completed`, `run.*`, `*`) takes `event_type`."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def new_secret() -> str:
    """A signing secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks has it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret; `ValueError` if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a secret starts with {SECRET_PREFIX}")
    key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    if not 24 <= len(key) <= 64:
        raise ValueError("a secret holds 24 to 64 bytes, base64-encoded")
    return key


def sign(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: `v1,<base64 HMAC-SHA256>` for each secret, space-separated
    (during a rotation both the new and the old secret sign, so either verifies)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), content, hashlib.sha256).digest()).decode() for s in secrets_
    )


class _Model(BaseModel):
    # Unknown fields from a newer server must not break an older SDK.
    model_config = ConfigDict(extra="allow")


class Webhook(_Model):
    """An endpoint Runyard calls when events it subscribes to happen."""

    id: str
    object: Literal["webhook"] = "webhook"
    url: str
    events: list[str]
    description: str = ""
    enabled: bool = True
    disabled_reason: str | None = None
    """Why Runyard turned the endpoint off (410 Gone, or failing for too long); null otherwise."""
    failing_since: datetime | None = None
    """The first failed delivery since the last success."""
    secret: str | None = None
    """The signing secret: only in the answer to create and to `rotate_secret`, never again."""
    previous_secret_expires_at: datetime | None = None
    """After a rotation, the old secret still signs deliveries until then."""
    metadata: dict[str, Any] = {}
    created_at: datetime
    updated_at: datetime


class WebhookDelivery(_Model):
    """One message to one endpoint, with its attempts so far. `id` is the `webhook-id` header:
    the same on every retry, so a receiver can drop duplicates."""

    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    webhook_id: str | None = None
    """None for a run's own `webhook_url`."""
    url: str
    run_id: str | None = None
    event_type: str
    status: DeliveryStatus
    attempts: int = 0
    response_status: int | None = None
    response_body: str | None = None
    """The first 1 KB of the last response's body."""
    latency_ms: float | None = None
    error: str | None = None
    next_retry_at: datetime | None = None
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None = None


class WebhookSecret(_Model):
    """The org's default secret: it signs deliveries to runs' own `webhook_url`."""

    object: Literal["webhook_secret"] = "webhook_secret"
    secret: str
    previous_secret_expires_at: datetime | None = None
