"""`runyard keys create | list | revoke` against the database of a running server: a revoked or
expired key is refused by that server (each node re-reads a key at least every second)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from support.servers import ADMIN_KEY, ServerInThread, wait_until

from runyard.config import Settings
from runyard.store import keys
from runyard.store.db import utcnow


@pytest.fixture
def db_server(tmp_path: Path) -> Iterator[ServerInThread]:
    srv = ServerInThread(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}", api_key=ADMIN_KEY))
    srv.start()
    yield srv
    srv.stop()


def keys_cli(server: ServerInThread, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNYARD_DATABASE_URL": server.settings.database_url}
    return subprocess.run(
        [sys.executable, "-m", "runyard", "keys", *args], env=env, capture_output=True, text=True, timeout=60
    )


def status_with(server: ServerInThread, key: str) -> int:
    return httpx.get(f"{server.base_url}/v1/runs", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def test_create_list_and_revoke_a_key(db_server: ServerInThread) -> None:
    made = keys_cli(db_server, "create", "--org", "acme", "--name", "ci", "--expires-in", "30d")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("ryk_") and status_with(db_server, key) == 200

    listed = keys_cli(db_server, "list", "--org", "acme", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["org"] == "acme" and entry["name"] == "ci" and entry["prefix"] == key[:8]
    assert entry["last_used_at"] is not None and entry["revoked_at"] is None and entry["expires_at"] is not None
    assert key not in listed.stdout
    table = keys_cli(db_server, "list")
    assert entry["id"] in table.stdout and "acme" in table.stdout

    revoked = keys_cli(db_server, "revoke", entry["id"])
    assert revoked.returncode == 0 and entry["id"] in revoked.stdout
    wait_until(lambda: status_with(db_server, key) == 401, timeout=5)
    body = httpx.get(f"{db_server.base_url}/v1/runs", headers={"Authorization": f"Bearer {key}"}).json()
    assert "revoked" in body["error"]["message"]
    assert json.loads(keys_cli(db_server, "list", "--org", "acme", "--json").stdout)[0]["revoked_at"] is not None
    assert status_with(db_server, ADMIN_KEY) == 200  # other keys are untouched


def test_an_expired_key_is_refused_and_bad_arguments_fail(db_server: ServerInThread) -> None:
    async def make() -> str:
        async with db_server.app.state.store.tx() as tx:
            return await keys.create_key(tx.conn, "acme", expires_at=utcnow() - timedelta(seconds=1))

    assert status_with(db_server, db_server.call(make())) == 401
    missing = keys_cli(db_server, "revoke", "key_00000000000000000000000000")
    assert missing.returncode == 1 and "no key" in missing.stderr
    bad = keys_cli(db_server, "create", "--org", "acme", "--expires-in", "soon")
    assert bad.returncode == 1 and "--expires-in" in bad.stderr
