"""`RUNYARD_MAX_CONCURRENT_RUNS` across two worker processes on PostgreSQL: the claim counts an
org's running runs under a lock on the org, so the workers together never pass the limit."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
from support.cluster import Cluster
from support.servers import ADMIN_KEY, wait_until

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _at(event: dict) -> datetime:
    return datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))


def test_two_workers_keep_an_org_within_its_limit(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, env={"RUNYARD_MAX_CONCURRENT_RUNS": "2", "RUNYARD_POLL_INTERVAL": "0.1"})
    try:
        api = cluster.api()
        cluster.worker()
        cluster.worker()
        with httpx.Client(base_url=api.base_url, headers=HEADERS, timeout=30) as http:
            body = {"name": "limited", "instructions": "x", "message": "go",
                    "metadata": {"script": [{"delay": 0.3, "text": "ok"}]}}  # fmt: skip
            ids = [http.post("/v1/runs", json=body).json()["id"] for _ in range(8)]
            wait_until(lambda: all(http.get(f"/v1/runs/{i}").json()["status"] == "completed" for i in ids), timeout=60)
            spans = []
            for run_id in ids:
                log = http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()["data"]
                spans.append((_at(next(e for e in log if e["type"] == "run.started")), _at(log[-1])))
    finally:
        cluster.stop()
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2
