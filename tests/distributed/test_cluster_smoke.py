"""A run created on one API node, executed by a worker process, streamed from another node."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support.cluster import Cluster
from support.servers import ADMIN_KEY

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def test_run_crosses_nodes(cluster: Cluster) -> None:
    a, b = cluster.api(), cluster.api()
    cluster.worker()
    body = {"name": "x", "instructions": "x", "message": "hi", "metadata": {"script": [{"text": ["a", "b"]}]}}
    run = httpx.post(f"{a.base_url}/v1/runs", json=body, headers=HEADERS).json()
    types = []
    with httpx.stream("GET", f"{b.base_url}/v1/runs/{run['id']}/events",
                      headers={**HEADERS, "Accept": "text/event-stream"}, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                types.append(line[7:])
    assert types[0] == "run.queued" and types[-1] == "run.completed"
    done = httpx.get(f"{a.base_url}/v1/runs/{run['id']}", headers=HEADERS).json()
    assert done["output"] == "ab"
