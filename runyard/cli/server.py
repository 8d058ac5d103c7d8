"""`runyard serve | worker | migrate`: the commands that run a server, on this machine's settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import typer

from ..config import Settings, get_settings

__all__ = ["admin_store", "banner", "migrate", "serve", "worker"]

log = logging.getLogger("runyard.server")


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


def shown_url(url: str) -> str:
    """A database URL fit to print: its password (if any) masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable database URL>"


def _announce(settings: Settings, message: str, **fields: Any) -> None:
    """A start-up line: printed as today in text mode, one INFO log line (with `fields`) in JSON mode."""
    if settings.log_format == "json":
        log.info(message, extra=fields)
    else:
        typer.echo(message)


def serve(
    host: str = typer.Option(None, help="Address to bind \\[env RUNYARD_HOST, default 127.0.0.1]."),
    port: int = typer.Option(None, help="Port to bind \\[env RUNYARD_PORT, default 8321]."),
    no_worker: bool = typer.Option(False, "--no-worker", help="API node only: do not execute runs here."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Start the API (and, unless --no-worker, an in-process worker)."""
    import uvicorn

    from .. import logs
    from ..server.app import create_app

    settings = _settings(host=host, port=port)
    logs.configure(settings)

    def ready(app: Any, new_key: str | None) -> None:
        url = f"http://{settings.host}:{settings.port}"
        _announce(settings, banner(url, app), url=url)
        if new_key:
            # Deliberately stdout only, never a log line: the one time the new admin key is shown.
            typer.echo(f"Admin API key (shown once, stored hashed): {new_key}")
            typer.echo(f"  export RUNYARD_API_KEY={new_key}")
        database = shown_url(settings.database_url)
        _announce(
            settings,
            f"Database: {database}" + ("" if no_worker else "  ·  worker: in-process"),
            database=database,
            worker="none" if no_worker else "in-process",
        )

    app = create_app(settings, run_worker=not no_worker, on_ready=ready)
    # Open SSE streams must not hold a stopping node: clients resume elsewhere with Last-Event-ID.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        log_config=logs.uvicorn_log_config(settings),
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def worker(
    concurrency: int = typer.Option(None, help="Runs executed at once \\[env RUNYARD_WORKER_CONCURRENCY]."),
    grace: float = typer.Option(10.0, help="Seconds to let runs finish on SIGTERM before handing them back."),
) -> None:
    """Run a worker process: claim queued runs and execute them."""
    from .. import logs, runtime, tracing
    from ..bus import create_bus
    from ..store.db import Store
    from ..worker.loop import Worker

    settings = _settings(worker_concurrency=concurrency)
    logs.configure(settings)

    async def main() -> None:
        traced = tracing.configure(settings)
        try:
            await run()
        finally:
            if traced:
                tracing.shutdown()  # exports what is still buffered

    async def run() -> None:
        bus = create_bus(settings.bus, settings.database_url)
        await bus.start()
        store = Store.open(settings, bus)
        w = Worker(store, settings)
        await w.start()
        if settings.metrics_port is not None:
            from prometheus_client import start_http_server

            from .. import metrics

            metrics.DB_POOL_IN_USE.set_function(lambda: metrics.pool_in_use(store))
            start_http_server(settings.metrics_port, addr=settings.host)
            _announce(settings, f"metrics on http://{settings.host}:{settings.metrics_port}/metrics")
        runtime.tune_gc()
        _announce(
            settings,
            f"worker {w.worker_id} started (concurrency {w.concurrency})",
            worker_id=w.worker_id,
            concurrency=w.concurrency,
        )
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
