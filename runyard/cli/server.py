"""`runyard serve | worker | migrate | keys create`: commands that run or administer a server."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import typer

from ..config import Settings, get_settings

__all__ = ["register"]


def _store(settings: Settings) -> Any:
    from ..bus import create_bus
    from ..store.db import Store, create_engine

    return Store(create_engine(settings.database_url, pool_size=2, max_overflow=0), create_bus("local"))


def _settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    return get_settings().model_copy(update=values) if values else get_settings()


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
        typer.echo(f"Runyard is running at http://{settings.host}:{settings.port}  (console: /console/, API: /v1, docs: /docs)")
        if new_key:
            typer.echo(f"Admin API key (shown once, stored hashed): {new_key}")
            typer.echo(f"  export RUNYARD_API_KEY={new_key}")
        typer.echo(f"Database: {settings.database_url}" + ("" if no_worker else "  ·  worker: in-process"))

    app = create_app(settings, run_worker=not no_worker, on_ready=ready)
    # Open SSE streams must not hold a stopping node: clients resume elsewhere with Last-Event-ID.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on",
                timeout_graceful_shutdown=5)


def worker(
    concurrency: int = typer.Option(None, help="Runs executed at once \\[env RUNYARD_WORKER_CONCURRENCY]."),
    grace: float = typer.Option(10.0, help="Seconds to let runs finish on SIGTERM before handing them back."),
) -> None:
    """Run a worker process: claim queued runs and execute them."""
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
        store = _store(settings)
        await upgrade(store)
        await store.close()

    asyncio.run(main())
    typer.echo(f"migrated {settings.database_url}")


keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    org: str = typer.Option(..., "--org", help="Org name (created if missing)."),
    name: str = typer.Option("cli", help="A label for the key."),
) -> None:
    """Create an API key for an org and print it (it is stored hashed: copy it now)."""
    from ..store import keys
    from ..store.migrate import upgrade

    settings = get_settings()

    async def main() -> str:
        store = _store(settings)
        if store.is_sqlite:
            await upgrade(store)
        async with store.tx() as tx:
            key = await keys.create_key(tx.conn, org, name=name)
        await store.close()
        return key

    typer.echo(asyncio.run(main()))


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
    app.command()(migrate)
    app.add_typer(keys_app, name="keys")
