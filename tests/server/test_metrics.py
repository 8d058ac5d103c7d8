"""`GET /metrics`: Prometheus text of the process, counters moved by runs, gauges, the token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.runs import create, finished
from support.servers import ADMIN_KEY, ServerInThread, wait_until

from runyard.config import Settings
from runyard.store.errors import LeaseLost
from runyard.store.events import Fence
from runyard.worker.writer import EventWriter, Flusher

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str, headers: dict[str, str] | None = None) -> Samples:
    r = httpx.get(f"{base_url}/metrics", headers=headers or {}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_runs_move_the_counters_and_histograms(server: ServerInThread, http: httpx.Client) -> None:
    before = scrape(server.base_url)
    done = [finished(http, create(http, [{"text": ["Hel", "lo"]}])["id"]) for _ in range(3)]
    failed = finished(http, create(http, [{"error": "the model is down"}])["id"])
    after = scrape(server.base_url)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    model = done[0]["model"]
    assert failed["status"] == "failed"
    assert moved("runyard_runs_created_total", model=model) == 4
    assert moved("runyard_runs_finished_total", status="completed", model=model) == 3
    assert moved("runyard_runs_finished_total", status="failed", model=model) == 1
    assert moved("runyard_run_duration_seconds_count", status="completed") == 3
    assert moved("runyard_run_duration_seconds_count", status="failed") == 1
    # Each run's first model request streams at least one event (the failing one may not).
    assert moved("runyard_time_to_first_event_seconds_count") >= 3
    assert moved("runyard_claim_seconds_count") >= 1
    assert moved("runyard_event_append_seconds_count") >= 4
    assert moved("runyard_events_appended_total") >= 4 * 3  # queued, started, an outcome at least
    input_tokens = sum(r["usage"]["input_tokens"] for r in [*done, failed])
    output_tokens = sum(r["usage"]["output_tokens"] for r in [*done, failed])
    assert input_tokens > 0 and output_tokens > 0
    assert moved("runyard_tokens_total", kind="input") == input_tokens
    assert moved("runyard_tokens_total", kind="output") == output_tokens
    for status in ("pending", "running", "waiting"):
        assert ("runyard_runs_active", (("status", status),)) in after
    assert total(after, "runyard_runs_active", status="running") >= 0
    assert ("runyard_db_pool_in_use", ()) in after
    assert ("runyard_sse_streams", ()) in after


def test_worker_flush_is_timed(server: ServerInThread, http: httpx.Client) -> None:
    # Scripted runs end within the flush interval (their outcome takes the buffer): drive the
    # server's Flusher itself, on a finished run whose fence no longer holds (nothing is written).
    run = finished(http, create(http)["id"])

    async def flush() -> None:
        flusher = Flusher(server.app.state.store, interval=0.01)
        writer = EventWriter(server.app.state.store, run["id"], Fence("nobody", 1), flusher=flusher)
        writer.emit("message.delta", {"delta": "x"})
        await flusher.flush([writer])
        flusher.close()
        assert isinstance(writer._error, LeaseLost)

    before = total(scrape(server.base_url), "runyard_event_flush_seconds_count")
    server.call(flush())
    assert total(scrape(server.base_url), "runyard_event_flush_seconds_count") == before + 1


def test_cancelled_run_is_counted(server: ServerInThread, http: httpx.Client) -> None:
    before = scrape(server.base_url)
    run = create(http, [{"text": "slow", "delay": 2}])
    r = http.post(f"/v1/runs/{run['id']}/cancel")
    assert r.status_code in (200, 202), r.text
    assert finished(http, run["id"])["status"] == "cancelled"
    after = scrape(server.base_url)
    key = {"status": "cancelled", "model": run["model"]}
    assert total(after, "runyard_runs_finished_total", **key) - total(before, "runyard_runs_finished_total", **key) == 1


def test_sse_gauge_follows_open_streams(server: ServerInThread, http: httpx.Client) -> None:
    def open_streams() -> float:
        return total(scrape(server.base_url), "runyard_sse_streams")

    baseline = open_streams()
    run = create(http, [{"text": "waiting", "delay": 3}])
    got_first = threading.Event()
    ended: list[Any] = []

    def read() -> None:
        with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=30) as client:
            with client.stream("GET", f"/v1/runs/{run['id']}/events", headers={"Accept": "text/event-stream"}) as r:
                for line in r.iter_lines():
                    if line.startswith("id:"):
                        got_first.set()
        ended.append(True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert got_first.wait(10)
    assert wait_until(lambda: open_streams() == baseline + 1, timeout=5)
    assert finished(http, run["id"])["status"] == "completed"
    reader.join(15)
    assert ended
    assert wait_until(lambda: open_streams() == baseline, timeout=5)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    db = tmp_path_factory.mktemp("metrics-db") / "runyard.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{db}", api_key=ADMIN_KEY, metrics_token="s3cret-token")
    srv = ServerInThread(settings).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "s3cret-token"},
        {"Authorization": f"Bearer {ADMIN_KEY}"},
    ],
)
def test_metrics_token_is_required(guarded: ServerInThread, headers: dict[str, str]) -> None:
    r = httpx.get(f"{guarded.base_url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


def test_metrics_token_opens_metrics(guarded: ServerInThread) -> None:
    samples = scrape(guarded.base_url, {"Authorization": "Bearer s3cret-token"})
    assert ("runyard_runs_active", (("status", "pending"),)) in samples


def test_metrics_are_not_in_the_openapi_schema(http: httpx.Client) -> None:
    assert "/metrics" not in http.get("/openapi.json").json()["paths"]
