"""`runyard serve | worker | migrate`: the commands that run a server, on this machine's settings."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import typer

from ..config import Settings, get_settings

__all__ = ["admin_store", "banner", "migrate", "serve", "worker"]


def admin_store(settings: Settings) -> Any:
    """A small store for one-off admin commands (migrate, keys), with a local bus."""
    from ..bus import create_bus
    from ..store.db import Store, create_engine

    return Store(create_engine(settings.database_url, pool_size=2, max_overflow=0), create_bus("local"))


def _settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    return get_settings().model_copy(update=values) if values else get_settings()


def banner(url: str, app: Any) -> str:
    """The line `serve` prints once it listens: its URL and the paths `app` really serves."""
    # Read off the app, not assumed: the console is mounted only when its built files exist.
    paths = []
    if any(getattr(route, "path", None) == "/console" for route in app.routes):
        paths.append("console: /console/")
    paths.append("API: /v1")
    if getattr(app, "docs_url", None):
        paths.append(f"docs: {app.docs_url}")
    return f"Runyard is running at {url}  ({', '.join(paths)})"


def serve(
    host: str = typer.Option(None, help="Address to bind \\[env RUNYARD_HOST, default 127.0.0.1]."),
    port: int = typer.Option(None, help="Port to bind \\[env RUNYARD_PORT, default 8321]."),
    no_worker: bool = typer.Option(False, "--no-worker", help="API node only: do not execute runs here."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Start the API (and, unless --no-worker, an in-process worker)."""
    import uvicorn

    from ..server.app import create_app

    settings = _settings(host=host, port=port)

    def ready(app: Any, new_key: str | None) -> None:
        typer.echo(banner(f"http://{settings.host}:{settings.port}", app))
        if new_key:
            typer.echo(f"Admin API key (shown once, stored hashed): {new_key}")
            typer.echo(f"  export RUNYARD_API_KEY={new_key}")
        typer.echo(f"Database: {settings.database_url}" + ("" if no_worker else "  ·  worker: in-process"))

    app = create_app(settings, run_worker=not no_worker, on_ready=ready)
    # Open SSE streams must not hold a stopping node: clients resume elsewhere with Last-Event-ID.
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5
    )


def worker(
    concurrency: int = typer.Option(None, help="Runs executed at once \\[env RUNYARD_WORKER_CONCURRENCY]."),
    grace: float = typer.Option(10.0, help="Seconds to let runs finish on SIGTERM before handing them back."),
) -> None:
    """Run a worker process: claim queued runs and execute them."""
    from .. import runtime
    from ..bus import create_bus
    from ..store.db import Store
    from ..worker.loop import Worker

    settings = _settings(worker_concurrency=concurrency)

    async def main() -> None:
        bus = create_bus(settings.bus, settings.database_url)
        await bus.start()
        store = Store.open(settings, bus)
        w = Worker(store, settings)
        await w.start()
        runtime.tune_gc()
        typer.echo(f"worker {w.worker_id} started (concurrency {w.concurrency})")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await w.stop(grace=grace)
        await bus.close()
        await store.close()

    asyncio.run(main())


def migrate() -> None:
    """Apply database migrations (SQLite or PostgreSQL, from RUNYARD_DATABASE_URL)."""
    from ..store.migrate import upgrade

    settings = get_settings()

    async def main() -> None:
        store = admin_store(settings)
        await upgrade(store)
        await store.close()

    asyncio.run(main())
    typer.echo(f"migrated {settings.database_url}")
