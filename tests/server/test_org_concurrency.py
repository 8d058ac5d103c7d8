"""`RUNYARD_MAX_CONCURRENT_RUNS`: an org never has more runs running at once; the rest wait
pending and start in order as others end, while other orgs' runs go past them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
from support.runs import create, events, finished
from support.servers import ADMIN_KEY, ServerInThread

from runyard.config import Settings


def _at(event: dict) -> datetime:
    return datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))


def test_an_org_runs_at_most_its_limit_at_once_and_others_go_past(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'runyard.db'}",
        api_key=ADMIN_KEY,
        max_concurrent_runs=2,
        poll_interval=0.1,
    )
    srv = ServerInThread(settings).start()
    try:
        other_key = srv.create_key("other-org")
        with (
            httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=30) as http,
            httpx.Client(base_url=srv.base_url, headers=srv.headers(other_key), timeout=30) as other,
        ):
            slow = [{"delay": 0.3, "text": "ok"}]
            mine = [create(http, slow)["id"] for _ in range(6)]
            theirs = create(other, slow)["id"]
            ended = [finished(http, run_id, timeout=30) for run_id in mine]
            assert all(r["status"] == "completed" for r in ended)
            spans = []
            for run_id in mine:
                log = events(http, run_id)
                started = next(e for e in log if e["type"] == "run.started")
                spans.append((_at(started), _at(log[-1])))
            other_started = _at(next(e for e in events(other, theirs) if e["type"] == "run.started"))
    finally:
        srv.stop()
    # Never more than two of the org's runs between run.started and their end at once.
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)  # started in the order they were queued
    assert other_started < spans[-1][0]  # the other org did not wait behind the saturated one
