"""Shared fixtures: a real Runyard server (uvicorn on 127.0.0.1, a free port) per test session.
The helpers behind them live in `tests/support/`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.servers import ADMIN_KEY, ServerInThread

from runyard.config import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Cluster, crash and load suites are the slow part: `make test-fast` deselects them.
    for item in items:
        if "distributed" in item.path.parts:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    db = tmp_path_factory.mktemp("db") / "runyard.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{db}", api_key=ADMIN_KEY)
    srv = ServerInThread(settings).start()
    yield srv
    srv.stop()


@pytest.fixture
def http(server: ServerInThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=30) as client:
        yield client
