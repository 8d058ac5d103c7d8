"""`client.webhooks` (sync and async) against a real server whose receivers are on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.servers import ADMIN_KEY, ServerInThread, wait_until
from support.webhooks import Receiver

import runyard
from runyard import AsyncRunyard, Runyard
from runyard.config import Settings


@pytest.fixture(scope="module")
def hooks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    db: Path = tmp_path_factory.mktemp("sdk-hooks") / "runyard.db"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{db}", api_key=ADMIN_KEY, webhooks_allow_private=True, poll_interval=0.1
    )
    srv = ServerInThread(settings).start()
    yield srv
    srv.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def test_the_sync_client_manages_endpoints_and_reads_deliveries(
    hooks_server: ServerInThread, receiver: Receiver
) -> None:
    key = hooks_server.create_key("sdk-hooks-sync")
    with Runyard(base_url=hooks_server.base_url, api_key=key) as client:
        hook = client.webhooks.create(receiver.url, ["run.completed"], description="ci")
        assert isinstance(hook, runyard.Webhook) and hook.secret and hook.secret.startswith("whsec_")
        run = client.runs.create_and_wait(
            "go", name="sdk-hooks", instructions="x", metadata={"script": [{"text": "ok"}]}
        )
        wait_until(lambda: receiver.of_type("run.completed"), timeout=10)
        receiver.received[0].verify(hook.secret)
        wait_until(lambda: client.webhooks.deliveries(hook.id).data[0].status == "succeeded", timeout=10)
        [delivery] = list(client.webhooks.deliveries(hook.id))
        assert isinstance(delivery, runyard.WebhookDelivery) and delivery.run_id == run.id
        assert delivery.response_status == 200 and delivery.attempts == 1

        client.webhooks.retry(hook.id, delivery.id)
        wait_until(lambda: len(receiver.received) == 2, timeout=10)
        assert receiver.unique_ids() == {delivery.id}

        test = client.webhooks.test(hook.id)
        assert test.event_type == "webhook.test"
        updated = client.webhooks.update(hook.id, events=["run.*"], enabled=False)
        assert updated.events == ["run.*"] and updated.enabled is False and updated.secret is None
        rotated = client.webhooks.rotate_secret(hook.id)
        assert rotated.secret != hook.secret and rotated.previous_secret_expires_at is not None
        assert [w.id for w in client.webhooks.list()] == [hook.id]
        assert client.webhooks.secret().secret.startswith("whsec_")
        assert client.webhooks.delete(hook.id).deleted is True
        with pytest.raises(runyard.NotFoundError):
            client.webhooks.retrieve(hook.id)
        with pytest.raises(runyard.ValidationError) as raised:
            client.webhooks.create(receiver.url, ["nope"])
        assert raised.value.field == "events[0]"


async def test_the_async_client_manages_endpoints(hooks_server: ServerInThread, receiver: Receiver) -> None:
    key = hooks_server.create_key("sdk-hooks-async")
    async with AsyncRunyard(base_url=hooks_server.base_url, api_key=key) as client:
        hook = await client.webhooks.create(receiver.url, ["webhook.test"])
        await client.webhooks.test(hook.id)
        page = await client.webhooks.deliveries(hook.id, status=["pending", "running", "succeeded"])
        assert [d.event_type for d in page.data] == ["webhook.test"]
        assert [w.id async for w in client.webhooks.list()] == [hook.id]
        first = await client.webhooks.secret()
        rotated = await client.webhooks.rotate_default_secret()
        assert rotated.secret != first.secret
        assert (await client.webhooks.retrieve(hook.id)).events == ["webhook.test"]
        assert (await client.webhooks.delete(hook.id)).deleted is True
