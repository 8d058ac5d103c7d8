"""Per-key rate limits (`RUNYARD_RATE_LIMIT`): a token bucket per API key; past it a 429 with
`Retry-After` and `RateLimit-*`; on PostgreSQL two API nodes share one bucket per key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from support.postgres import create_database, drop_database, url_of
from support.servers import ADMIN_KEY, ServerInThread, _migrate

from runyard.config import Settings


def test_a_key_past_its_rate_gets_429_and_may_go_on_after_retry_after(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'runyard.db'}",
        api_key=ADMIN_KEY,
        rate_limit=2,
        rate_limit_burst=3,
    )
    srv = ServerInThread(settings).start()
    try:
        other = srv.create_key("other")
        with httpx.Client(base_url=srv.base_url, headers=srv.headers(), timeout=10) as http:
            answers = [http.get("/v1/runs") for _ in range(5)]
            assert [a.status_code for a in answers[:3]] == [200, 200, 200]
            refused = answers[-1]
            assert refused.status_code == 429
            body = refused.json()["error"]
            assert body["code"] == "rate_limited" and "per second" in body["message"]
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.headers["RateLimit-Limit"] == "3" and refused.headers["RateLimit-Remaining"] == "0"
            assert httpx.get(f"{srv.base_url}/v1/runs", headers=srv.headers(other)).status_code == 200  # its own bucket
            time.sleep(int(refused.headers["Retry-After"]))
            assert http.get("/v1/runs").status_code == 200
            assert httpx.get(f"{srv.base_url}/healthz").status_code == 200  # no key, no limit
    finally:
        srv.stop()


@pytest.mark.slow
def test_two_api_nodes_on_postgresql_share_the_bucket() -> None:
    database = asyncio.run(create_database("runyard_t"))
    nodes: list[ServerInThread] = []
    try:
        url = url_of(database)
        asyncio.run(_migrate(url))
        settings = Settings(database_url=url, api_key=ADMIN_KEY, rate_limit=0.5, rate_limit_burst=4)
        nodes = [ServerInThread(settings).start(), ServerInThread(settings).start()]
        codes = [httpx.get(f"{n.base_url}/v1/runs", headers=n.headers(), timeout=10).status_code for n in nodes * 3]
        assert codes.count(200) == 4 and codes[-2:] == [429, 429]  # four in all, across both nodes
    finally:
        for node in nodes:
            node.stop()
        asyncio.run(drop_database(database))
