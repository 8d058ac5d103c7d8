"""Webhooks over HTTP: endpoints, signed deliveries of run events (verified with the
`standardwebhooks` package, as a receiver would), retries, disabling, the delivery log,
secret rotation, runs' own `webhook_url`, and refused input.

The server allows private addresses (its receivers listen on 127.0.0.1) and retries after
fractions of a second instead of minutes; the shared server keeps the defaults, and shows
that a loopback URL is refused there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import WebhookVerificationError
from support.runs import create, error_of, finished
from support.servers import ADMIN_KEY, ServerInThread, wait_until
from support.webhooks import Receiver

from runyard.config import Settings

FAST_RETRIES = [0.2, 0.2, 0.2, 0.2, 0.2]


@pytest.fixture(scope="module")
def hooks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    db = tmp_path_factory.mktemp("hooks") / "runyard.db"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        api_key=ADMIN_KEY,
        webhooks_allow_private=True,
        webhooks_retry_delays=FAST_RETRIES,
        webhooks_timeout=1.0,
        poll_interval=0.1,
    )
    srv = ServerInThread(settings).start()
    yield srv
    srv.stop()


@pytest.fixture
def hooks(hooks_server: ServerInThread, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    # An org per test: an endpoint subscribed to `*` sees only its own test's events.
    key = hooks_server.create_key(f"hooks-{request.node.name}"[:200])
    with httpx.Client(base_url=hooks_server.base_url, headers=hooks_server.headers(key), timeout=30) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def endpoint(http: httpx.Client, url: str, events: list[str], **body: Any) -> dict[str, Any]:
    r = http.post("/v1/webhooks", json={"url": url, "events": events, **body})
    assert r.status_code == 201, r.text
    return r.json()


def deliveries(http: httpx.Client, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    r = http.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def settled(http: httpx.Client, webhook_id: str) -> list[dict[str, Any]]:
    """The delivery log once every delivery succeeded (empty, for `wait_until`, before)."""
    log = deliveries(http, webhook_id)
    return log if log and all(d["status"] == "succeeded" for d in log) else []


def test_an_endpoint_shows_its_secret_once_and_can_be_listed_changed_and_deleted(hooks: httpx.Client) -> None:
    made = endpoint(hooks, "http://127.0.0.1:9/hook", ["run.completed", "run.*"], description="ops")
    assert made["id"].startswith("whk_") and made["secret"].startswith("whsec_")
    assert made["enabled"] is True and made["events"] == ["run.completed", "run.*"]
    shown = hooks.get(f"/v1/webhooks/{made['id']}").json()
    assert shown["secret"] is None and shown["description"] == "ops"
    assert [w["id"] for w in hooks.get("/v1/webhooks").json()["data"]] == [made["id"]]

    r = hooks.patch(f"/v1/webhooks/{made['id']}", json={"events": ["file.created"], "enabled": False})
    assert r.status_code == 200, r.text
    assert r.json()["events"] == ["file.created"] and r.json()["enabled"] is False

    assert hooks.delete(f"/v1/webhooks/{made['id']}").json() == {"id": made["id"], "object": "webhook", "deleted": True}
    assert hooks.get(f"/v1/webhooks/{made['id']}").status_code == 404
    assert hooks.get("/v1/webhooks").json()["data"] == []


def test_run_events_are_delivered_signed_with_the_run_on_terminal_events(
    hooks: httpx.Client, receiver: Receiver
) -> None:
    hook = endpoint(hooks, receiver.url, ["run.*", "tool.*"])
    script = [{"tool_calls": [{"name": "calculator", "args": {"expression": "2+2"}}]}, {"text": "4"}]
    run = create(hooks, script, tools=["calculator"])
    run = finished(hooks, run["id"])
    wait_until(lambda: receiver.of_type("run.completed"), timeout=10)

    for message in receiver.received:
        # Raises unless the signature, id and timestamp verify against the endpoint's secret.
        assert message.verify(hook["secret"]) == message.json
        assert message.headers["content-type"] == "application/json"
    types = [m.json["type"] for m in receiver.received]
    assert {"run.queued", "run.started", "tool.call", "tool.result", "run.completed"} <= set(types)
    assert not any(t.startswith(("message.", "usage")) for t in types), types  # not subscribed
    assert len(receiver.unique_ids()) == len(receiver.received)

    [done] = receiver.of_type("run.completed")
    body = done.json
    assert set(body) == {"type", "timestamp", "data"}
    assert body["data"]["run_id"] == run["id"] and body["data"]["seq"] == run["last_seq"]
    assert body["data"]["run"]["status"] == "completed" and body["data"]["run"]["output"] == "4"
    [queued] = receiver.of_type("run.queued")
    assert "run" not in queued.json["data"] and queued.json["data"]["data"]["agent_id"] == run["agent_id"]

    # The receiver answered; the outcome is written a moment later.
    log = wait_until(lambda: settled(hooks, hook["id"]))
    assert len(log) == len(receiver.received)
    [entry] = [d for d in log if d["event_type"] == "run.completed"]
    assert entry["id"] == done.id and entry["status"] == "succeeded" and entry["attempts"] == 1
    assert entry["response_status"] == 200 and entry["response_body"] == "answered 200"
    assert entry["latency_ms"] > 0 and entry["delivered_at"] is not None and entry["next_retry_at"] is None
    assert entry["payload"] == body
    assert hooks.get(f"/v1/webhooks/{hook['id']}/deliveries/{done.id}").json()["id"] == done.id


def test_a_receiver_that_is_down_gets_the_delivery_after_retries_with_the_same_id(
    hooks: httpx.Client, receiver: Receiver
) -> None:
    receiver.status = 503
    hook = endpoint(hooks, receiver.url, ["run.completed"])
    run = finished(hooks, create(hooks, [{"text": "ok"}])["id"])
    wait_until(lambda: len(receiver.received) >= 2, timeout=10)
    [failing] = deliveries(hooks, hook["id"])
    assert failing["status"] in ("pending", "running") and failing["attempts"] >= 2
    assert failing["response_status"] == 503 and "503" in failing["error"]
    assert hooks.get(f"/v1/webhooks/{hook['id']}").json()["failing_since"] is not None

    receiver.status = 200
    wait_until(lambda: deliveries(hooks, hook["id"])[0]["status"] == "succeeded", timeout=10)
    [delivered] = deliveries(hooks, hook["id"])
    assert receiver.unique_ids() == {delivered["id"]}  # every attempt carried the same webhook-id
    assert delivered["attempts"] == len(receiver.received) >= 3
    assert receiver.received[-1].json["data"]["run"]["id"] == run["id"]
    assert hooks.get(f"/v1/webhooks/{hook['id']}").json()["failing_since"] is None


def test_retries_end_in_failed_after_the_last_delay(hooks: httpx.Client, receiver: Receiver) -> None:
    receiver.status = 500
    hook = endpoint(hooks, receiver.url, ["run.completed"])
    finished(hooks, create(hooks, [{"text": "ok"}])["id"])
    wait_until(lambda: deliveries(hooks, hook["id"])[0]["status"] == "failed", timeout=15)
    [failed] = deliveries(hooks, hook["id"])
    assert failed["attempts"] == len(FAST_RETRIES) + 1 == len(receiver.received)
    assert failed["next_retry_at"] is None and failed["response_status"] == 500

    # A manual retry sends it once more, with the same id.
    receiver.status = 200
    r = hooks.post(f"/v1/webhooks/{hook['id']}/deliveries/{failed['id']}/retry")
    assert r.status_code == 202, r.text
    wait_until(lambda: deliveries(hooks, hook["id"])[0]["status"] == "succeeded", timeout=10)
    assert receiver.unique_ids() == {failed["id"]}


def test_410_disables_the_endpoint_and_tells_the_others(hooks: httpx.Client, receiver: Receiver) -> None:
    watcher = Receiver().start()
    try:
        receiver.status = 410
        gone = endpoint(hooks, receiver.url, ["run.completed"])
        ops = endpoint(hooks, watcher.url, ["webhook.disabled"])
        finished(hooks, create(hooks, [{"text": "ok"}])["id"])
        wait_until(lambda: watcher.of_type("webhook.disabled"), timeout=10)
        [notice] = watcher.of_type("webhook.disabled")
        notice.verify(ops["secret"])
        assert notice.json["data"] == {
            "webhook_id": gone["id"],
            "url": receiver.url,
            "reason": notice.json["data"]["reason"],
        }
        assert "410" in notice.json["data"]["reason"]
        shown = hooks.get(f"/v1/webhooks/{gone['id']}").json()
        assert shown["enabled"] is False and "410" in shown["disabled_reason"]
        [failed] = deliveries(hooks, gone["id"])
        assert failed["status"] == "failed" and failed["attempts"] == 1

        # Disabled: later events are not queued for it; enabling it again clears the reason.
        finished(hooks, create(hooks, [{"text": "again"}])["id"])
        assert len(deliveries(hooks, gone["id"])) == 1
        again = hooks.patch(f"/v1/webhooks/{gone['id']}", json={"enabled": True}).json()
        assert again["enabled"] is True and again["disabled_reason"] is None
    finally:
        watcher.stop()


def test_an_endpoint_failing_longer_than_the_limit_is_disabled(tmp_path: Path, receiver: Receiver) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'runyard.db'}",
        api_key=ADMIN_KEY,
        webhooks_allow_private=True,
        webhooks_retry_delays=[0.3] * 20,
        webhooks_disable_after=1.0,
        poll_interval=0.1,
    )
    srv = ServerInThread(settings).start()
    try:
        with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http:
            receiver.status = 500
            hook = endpoint(http, receiver.url, ["run.completed"])
            finished(http, create(http, [{"text": "ok"}])["id"])
            shown = wait_until(
                lambda: (w := http.get(f"/v1/webhooks/{hook['id']}").json())["enabled"] is False and w, timeout=15
            )
            assert shown["disabled_reason"] == "every delivery failed for 1 s"
            # The delivery in flight ends as failed: its endpoint is off.
            wait_until(lambda: deliveries(http, hook["id"])[0]["status"] == "failed", timeout=10)
            assert "disabled" in deliveries(http, hook["id"])[0]["error"]
    finally:
        srv.stop()


def test_a_receiver_that_does_not_answer_times_out_and_is_retried(hooks: httpx.Client, receiver: Receiver) -> None:
    receiver.status = 0  # holds the connection without answering
    hook = endpoint(hooks, receiver.url, ["run.completed"])
    finished(hooks, create(hooks, [{"text": "ok"}])["id"])
    wait_until(lambda: deliveries(hooks, hook["id"])[0]["attempts"] >= 2, timeout=10)
    first = deliveries(hooks, hook["id"])[0]
    assert first["error"] == "no answer within 1 s" and first["response_status"] is None
    receiver.status = 200
    receiver.release()
    wait_until(lambda: deliveries(hooks, hook["id"])[0]["status"] == "succeeded", timeout=10)


def test_redirects_are_not_followed(hooks: httpx.Client, receiver: Receiver) -> None:
    target = Receiver().start()
    try:
        receiver.status = 307
        hook = endpoint(hooks, receiver.url, ["webhook.test"])
        hooks.post(f"/v1/webhooks/{hook['id']}/test")
        wait_until(lambda: deliveries(hooks, hook["id"])[0]["attempts"] >= 1 and len(receiver.received) >= 1)
        wait_until(lambda: deliveries(hooks, hook["id"])[0]["response_status"] == 307, timeout=10)
        assert target.received == []
        assert "307" in deliveries(hooks, hook["id"])[0]["error"]
    finally:
        target.stop()


def test_a_test_delivery_and_a_manual_retry_reach_the_receiver(hooks: httpx.Client, receiver: Receiver) -> None:
    hook = endpoint(hooks, receiver.url, ["run.completed"])
    r = hooks.post(f"/v1/webhooks/{hook['id']}/test")
    assert r.status_code == 202, r.text
    assert r.json()["event_type"] == "webhook.test" and r.json()["status"] == "pending"
    wait_until(lambda: receiver.of_type("webhook.test"), timeout=10)
    [test] = receiver.of_type("webhook.test")
    assert test.verify(hook["secret"])["data"]["webhook_id"] == hook["id"]
    wait_until(lambda: deliveries(hooks, hook["id"])[0]["status"] == "succeeded", timeout=10)

    r = hooks.post(f"/v1/webhooks/{hook['id']}/deliveries/{test.id}/retry")
    assert r.status_code == 202, r.text
    wait_until(lambda: len(receiver.received) == 2, timeout=10)
    assert receiver.received[1].id == test.id and receiver.received[1].body == test.body


def test_after_a_rotation_both_secrets_verify_for_a_day(hooks: httpx.Client, receiver: Receiver) -> None:
    hook = endpoint(hooks, receiver.url, ["webhook.test"])
    rotated = hooks.post(f"/v1/webhooks/{hook['id']}/rotate_secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != hook["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    hooks.post(f"/v1/webhooks/{hook['id']}/test")
    wait_until(lambda: receiver.received, timeout=10)
    [message] = receiver.received
    assert len(message.headers["webhook-signature"].split()) == 2
    message.verify(new)
    message.verify(hook["secret"])
    with pytest.raises(WebhookVerificationError):
        message.verify("whsec_" + "A" * 43 + "=")


def test_a_runs_own_webhook_url_gets_its_terminal_event_signed_with_the_org_secret(
    hooks: httpx.Client, receiver: Receiver
) -> None:
    run = create(hooks, [{"text": "done"}], webhook_url=receiver.url)
    assert run["webhook_url"] == receiver.url
    finished(hooks, run["id"])
    wait_until(lambda: receiver.received, timeout=10)
    secret = hooks.get("/v1/webhook_secret").json()["secret"]
    [message] = receiver.received  # only the terminal event, not the run's other events
    body = message.verify(secret)
    assert body["type"] == "run.completed" and body["data"]["run"]["id"] == run["id"]

    rotated = hooks.post("/v1/webhook_secret/rotate").json()
    assert rotated["secret"] != secret and rotated["previous_secret_expires_at"] is not None
    assert hooks.get("/v1/webhook_secret").json()["secret"] == rotated["secret"]


def test_bad_webhook_input_is_refused_naming_the_field_and_writes_nothing(
    http: httpx.Client, hooks: httpx.Client
) -> None:
    # The shared server keeps the default: private and loopback addresses are refused.
    r = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:8080/hook", "events": ["*"]})
    assert r.status_code == 422 and error_of(r)["field"] == "url"
    assert "RUNYARD_WEBHOOKS_ALLOW_PRIVATE" in error_of(r)["message"]
    r = http.post(
        "/v1/runs", json={"name": "a", "instructions": "b", "message": "c", "webhook_url": "http://10.0.0.1/"}
    )
    assert r.status_code == 422 and error_of(r)["field"] == "webhook_url"

    cases = [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x", "events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1/x", "events": ["run.completed", "run.finished"]}, "events[1]"),
        ({"url": "http://127.0.0.1/x", "events": ["bogus.*"]}, "events[0]"),
        ({"url": "http://127.0.0.1/x", "events": []}, "events"),
        ({"url": "http://127.0.0.1/x", "events": ["*"], "secret": "not-a-secret"}, "secret"),
        ({"url": "http://127.0.0.1/x", "events": ["*"], "colour": "red"}, "colour"),
        ({"events": ["*"]}, "url"),
    ]
    for body, field in cases:
        r = hooks.post("/v1/webhooks", json=body)
        assert r.status_code == 422, (body, r.text)
        assert error_of(r)["field"] == field, (body, error_of(r))
    assert hooks.get("/v1/webhooks").json()["data"] == []

    made = endpoint(hooks, "http://127.0.0.1:9/x", ["*"])
    r = hooks.patch(f"/v1/webhooks/{made['id']}", json={"events": ["nope"]})
    assert r.status_code == 422 and error_of(r)["field"] == "events[0]"
    assert hooks.get(f"/v1/webhooks/{made['id']}").json()["events"] == ["*"]
    assert hooks.get("/v1/webhooks/whk_00000000000000000000000000/deliveries").status_code == 404
    assert hooks.post(f"/v1/webhooks/{made['id']}/deliveries/msg_0000000000000000000000000/retry").status_code == 404
    # Another org's endpoint does not exist for this one.
    assert http.get(f"/v1/webhooks/{made['id']}").status_code == 404


def test_a_retry_after_from_the_receiver_is_honoured(hooks: httpx.Client, receiver: Receiver) -> None:
    receiver.status, receiver.headers = 503, {"Retry-After": "2"}
    hook = endpoint(hooks, receiver.url, ["webhook.test"])
    hooks.post(f"/v1/webhooks/{hook['id']}/test")
    wait_until(lambda: receiver.received, timeout=10)
    receiver.status, receiver.headers = 200, {}
    wait_until(lambda: deliveries(hooks, hook["id"])[0]["status"] == "succeeded", timeout=10)
    [first, second] = receiver.received
    waited = int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"])
    assert waited >= 2  # the retry delay here is 0.2 s: the receiver's 2 s won
