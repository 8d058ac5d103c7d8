"""The webhook outbox: the deliveries an append announces, written in the append's transaction.

A delivery row commits with the event it announces or not at all (invariant 10), so a crash
between commit and send loses nothing: any worker sends it later (`worker.deliveries`). An
endpoint receives the events its subscription matches; a run's own `webhook_url` receives the
run's terminal event, signed with the org's default secret.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select

from .._events import TERMINAL_EVENT_TYPES
from .._webhooks import WEBHOOK_EVENT_TYPES, matches
from ..domain import Run
from .db import Tx, utcnow
from .ids import new_id
from .schema import runs, webhook_deliveries, webhooks

__all__ = ["ANNOUNCED", "TOPIC", "enqueue", "record"]

ANNOUNCED = frozenset(WEBHOOK_EVENT_TYPES)
TOPIC = "webhooks"
"""The bus topic that wakes deliverers when deliveries commit."""

_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode

_ENDPOINTS = select(webhooks.c.id, webhooks.c.org_id, webhooks.c.url, webhooks.c.events).where(
    webhooks.c.org_id.in_(bindparam("org_ids", expanding=True)), webhooks.c.enabled.is_(True)
)
_ENDED_RUNS = select(runs).where(runs.c.id.in_(bindparam("run_ids", expanding=True)))


async def record(tx: Tx, announced: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Queue a delivery for each `(org_id, envelope)` to each endpoint that subscribes to it,
    and a run's terminal event to its own `webhook_url`."""
    if not announced:
        return
    org_ids = sorted({org_id for org_id, _ in announced})
    endpoints = (await tx.conn.execute(_ENDPOINTS, {"org_ids": org_ids})).all()
    ended = {e["run_id"]: (org_id, e["type"]) for org_id, e in announced if e["type"] in TERMINAL_EVENT_TYPES}
    run_objects: dict[str, dict[str, Any]] = {}
    if ended:
        from .runs import to_dict  # runs → events → outbox: imported late to break the cycle

        for row in await tx.conn.execute(_ENDED_RUNS, {"run_ids": list(ended)}):
            org_id, type_ = ended[row.id]
            subscribed = any(e.org_id == org_id and matches(e.events, type_) for e in endpoints)
            if subscribed or row.config.get("webhook_url"):
                # Rendered now, in the transaction that ends the run: every retry sends the same body.
                run_objects[row.id] = Run.model_validate(to_dict(row)).model_dump(mode="json")
    if not endpoints and not run_objects:
        return
    rows: list[dict[str, Any]] = []
    for org_id, envelope in announced:
        type_ = envelope["type"]
        run = run_objects.get(envelope["run_id"]) if type_ in TERMINAL_EVENT_TYPES else None
        targets = [(e.id, e.url) for e in endpoints if e.org_id == org_id and matches(e.events, type_)]
        if run is not None and run.get("webhook_url"):
            targets.append((None, run["webhook_url"]))
        if not targets:
            continue
        data = {**envelope, "run": run} if run is not None else dict(envelope)
        payload = _dumps({"type": type_, "timestamp": envelope["created_at"], "data": data})
        rows += [_row(org_id, webhook_id, url, envelope["run_id"], type_, payload) for webhook_id, url in targets]
    await _insert(tx, rows)


async def enqueue(
    tx: Tx, org_id: str, type_: str, data: dict[str, Any], *, endpoints: Sequence[tuple[str, str]]
) -> list[str]:
    """Queue a webhook's own event (`webhook.test`, `webhook.disabled`) to `endpoints`
    (`(webhook_id, url)` pairs); returns the delivery ids."""
    timestamp = utcnow().isoformat().replace("+00:00", "Z")
    payload = _dumps({"type": type_, "timestamp": timestamp, "data": data})
    rows = [_row(org_id, webhook_id, url, None, type_, payload) for webhook_id, url in endpoints]
    await _insert(tx, rows)
    return [r["id"] for r in rows]


def _row(org_id: str, webhook_id: str | None, url: str, run_id: str | None, type_: str, payload: str) -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "org_id": org_id,
        "webhook_id": webhook_id,
        "url": url,
        "run_id": run_id,
        "event_type": type_,
        "payload": payload,
        "status": "pending",
        "attempt": 0,
        "available_at": 0.0,
        "created_at": utcnow(),
    }


async def _insert(tx: Tx, rows: list[dict[str, Any]]) -> None:
    if rows:
        await tx.conn.execute(insert(webhook_deliveries), rows)
        tx.publish_after_commit(TOPIC, None)
