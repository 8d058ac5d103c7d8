"""Real Runyard servers for tests: uvicorn in a thread (to reach its store), or `runyard serve`
as a child process (to kill -9), each on a free loopback port; and a bounded polling helper."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from runyard.config import Settings
from runyard.server.app import create_app
from runyard.store import keys

__all__ = ["ADMIN_KEY", "QuietClient", "ServerInThread", "ServerProcess", "free_port", "server_on", "wait_until"]

ADMIN_KEY = "ryk_test_admin_key"


@dataclass
class ServerInThread:
    """A real uvicorn server running the Runyard app in a background thread."""

    settings: Settings
    api_key: str = ADMIN_KEY
    base_url: str = ""
    app: Any = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> ServerInThread:
        self.app = create_app(self.settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._server.serve())  # type: ignore[union-attr]

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (to reach its store) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def create_key(self, org: str) -> str:
        async def make() -> str:
            async with self.app.state.store.tx() as tx:
                return await keys.create_key(tx.conn, org)

        return self.call(make())

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """`runyard serve` as a child process, for tests that kill -9 it."""

    db_url: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, tmp: Path) -> ServerProcess:
        self.port = free_port()
        env = {**os.environ, "RUNYARD_DATABASE_URL": self.db_url, "RUNYARD_API_KEY": ADMIN_KEY,
               "RUNYARD_PORT": str(self.port), **self.env}
        self.log = tmp / f"server-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runyard", "serve"], env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"server process did not start: {self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(predicate: Any, *, timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll `predicate` with a bounded backoff until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
        interval = min(interval * 2, 0.2)


@contextmanager
def server_on(dialect: str, tmp: Path, **settings: Any) -> Iterator[ServerInThread]:
    """A running server on a fresh database of `dialect` (`sqlite` or `postgres`), dropped after;
    `settings` are further `Settings` fields."""
    from .postgres import create_database, drop_database, url_of

    if dialect == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'runyard.db'}"
        srv = ServerInThread(Settings(database_url=url, api_key=ADMIN_KEY, **settings))
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()
        return
    database = asyncio.run(create_database("runyard_t"))
    try:
        url = url_of(database)
        asyncio.run(_migrate(url))
        srv = ServerInThread(Settings(database_url=url, api_key=ADMIN_KEY, **settings)).start()
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        asyncio.run(drop_database(database))


async def _migrate(url: str) -> None:
    from runyard.store.db import create_engine
    from runyard.store.migrate import upgrade

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()  # type: ignore[misc]


class QuietClient(httpx.Client):
    """An httpx client for a server that misbehaves cleanly in reports.

    CPython 3.11.7 shares the AST constructor's recursion counter between threads: when the
    server thread logs a traceback (3.11 tracebacks call `ast.parse`) while pytest formats a
    failure, pytest can die with "SystemError: AST constructor recursion depth mismatch". So
    after a 5xx or a dropped connection the client gives the server's log a moment, and a
    dropped connection fails the test with one line instead of a chained httpcore traceback.
    """

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        import pytest

        try:
            response = super().send(request, **kwargs)
        except httpx.TransportError as exc:
            problem = f"{request.method} {str(request.url)[:200]}: no HTTP answer ({exc!r})"
        else:
            if response.status_code >= 500:
                time.sleep(0.3)
            return response
        time.sleep(0.3)
        pytest.fail(problem, pytrace=False)
