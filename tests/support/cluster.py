"""Helpers for distributed-mode tests: a fresh PostgreSQL database and Runyard processes.

PostgreSQL runs on 127.0.0.1:5432 (trust auth). Each cluster gets its own database,
`runyard_t_<random>`, dropped when the cluster stops, so runs of different tests never
collide. API nodes are `runyard serve --no-worker`; workers are `runyard worker`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from support.servers import ADMIN_KEY, free_port

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@dataclass
class Proc:
    """One Runyard process (API node or worker) with its log file."""

    args: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proc:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "runyard", *self.args], env=self.env,
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )
        return self

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGCONT)
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait_ready(self, timeout: float = 30) -> Proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"process exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"process not ready: {self.log.read_text()[-2000:]}")


@dataclass
class Cluster:
    """A PostgreSQL database plus any number of API nodes and workers on it."""

    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    database: str = ""
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.database = f"runyard_t_{uuid.uuid4().hex[:10]}"
        _admin(f'CREATE DATABASE "{self.database}"')
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}"
        self.base_env = {**os.environ, "RUNYARD_DATABASE_URL": self.url, "RUNYARD_API_KEY": ADMIN_KEY, **self.env}
        subprocess.run([sys.executable, "-m", "runyard", "migrate"], env=self.base_env, check=True,
                       capture_output=True)

    def api(self, **env: str) -> Proc:
        """Start an API node (`serve --no-worker`) and wait until /readyz answers."""
        port = free_port()
        proc = Proc(["serve", "--no-worker", "--port", str(port)], {**self.base_env, **env},
                    self.tmp / f"api-{port}.log", port=port)
        self.procs.append(proc.start())
        return proc.wait_ready()

    def worker(self, *args: str, **env: str) -> Proc:
        """Start a worker process (it is ready once it logs that it started)."""
        log = self.tmp / f"worker-{len(self.procs)}.log"
        proc = Proc(["worker", *args], {**self.base_env, **env}, log)
        self.procs.append(proc.start())
        deadline = time.monotonic() + 30
        while "started" not in (log.read_text() if log.exists() else ""):
            if proc.popen is not None and proc.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.05)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        _admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
