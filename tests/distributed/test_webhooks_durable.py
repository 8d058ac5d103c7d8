"""Webhook deliveries survive crashes and are shared by many workers (invariants 10 and 11).

- kill -9 of the server (its embedded worker) while a delivery is being sent: after a restart
  on the same database it is sent again, with the same `webhook-id`, and succeeds;
- two worker processes on PostgreSQL deliver every event exactly once between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cluster import Cluster
from support.servers import ADMIN_KEY, ServerProcess, wait_until
from support.webhooks import Receiver

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
ALLOW_PRIVATE = {"RUNYARD_WEBHOOKS_ALLOW_PRIVATE": "true", "RUNYARD_POLL_INTERVAL": "0.2"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def deliveries(http: httpx.Client, webhook_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    for _ in range(50):  # bounded: 5,000 deliveries
        page = http.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params).json()
        out += page["data"]
        if not page["has_more"]:
            return out
        params["before"] = page["next_cursor"]
    raise AssertionError("delivery log did not end")


def quick_run(http: httpx.Client, name: str) -> str:
    r = http.post(
        "/v1/runs",
        json={"name": name, "instructions": "x", "message": "go", "metadata": {"script": [{"text": "ok"}]}},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_delivery_in_flight_when_the_server_is_killed_is_sent_again_after_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'hooks-crash.db'}"
    env = {**ALLOW_PRIVATE, "RUNYARD_WEBHOOKS_TIMEOUT": "30"}
    receiver.status = 0  # the first send gets no answer: it is in flight when the kill comes
    first = ServerProcess(db_url, env=env).start(tmp_path)
    try:
        with httpx.Client(base_url=first.base_url, headers=HEADERS, timeout=10) as http:
            hook = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["run.completed"]}).json()
            run_id = quick_run(http, "crash")
            wait_until(lambda: receiver.received, timeout=15)
            [in_flight] = deliveries(http, hook["id"])
            assert in_flight["status"] == "running" and in_flight["attempts"] == 1
    finally:
        first.kill()
    receiver.status = 200
    receiver.release()

    second = ServerProcess(db_url, env=env).start(tmp_path)
    try:
        with httpx.Client(base_url=second.base_url, headers=HEADERS, timeout=10) as http:
            wait_until(lambda: deliveries(http, hook["id"])[0]["status"] == "succeeded", timeout=15)
            [delivered] = deliveries(http, hook["id"])
    finally:
        second.stop()
    assert len(receiver.received) == 2  # at least once: the send cut short, then the one answered
    assert receiver.unique_ids() == {delivered["id"]}  # a receiver keeping ids drops the second
    for message in receiver.received:
        assert message.verify(hook["secret"])["data"]["run"]["id"] == run_id
    assert delivered["attempts"] == 2


def test_two_workers_on_postgresql_deliver_every_event_once(tmp_path: Path, receiver: Receiver) -> None:
    cluster = Cluster(tmp_path, env=ALLOW_PRIVATE)
    try:
        api = cluster.api()
        cluster.worker()
        cluster.worker()
        with httpx.Client(base_url=api.base_url, headers=HEADERS, timeout=30) as http:
            r = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["run.started", "run.completed"]})
            assert r.status_code == 201, r.text
            hook = r.json()
            run_ids = {quick_run(http, f"pg-{i % 4}") for i in range(40)}
            wait_until(
                lambda: len(log := deliveries(http, hook["id"])) == 80 and all(d["status"] == "succeeded" for d in log),
                timeout=60,
            )
            log = deliveries(http, hook["id"])
    finally:
        cluster.stop()
    assert len(receiver.received) == 80 == len(receiver.unique_ids())
    assert {d["id"] for d in log} == receiver.unique_ids()
    completed = receiver.of_type("run.completed")
    assert {m.json["data"]["run_id"] for m in completed} == run_ids
    for message in receiver.received:
        message.verify(hook["secret"])
