"""The FastAPI app: API routes, auth, errors, and (embedded mode) the in-process worker."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text

from .. import metrics, runtime, tracing
from .._version import __version__
from ..bus import create_bus
from ..config import Settings, get_settings
from ..domain import RunStatus
from ..store import keys
from ..store.db import Store
from ..store.schema import runs as runs_table
from ..worker.loop import Worker
from . import errors
from .middleware import MULTIPART_SLACK, EdgeMiddleware
from .queries import strict_query
from .ratelimit import RateLimiter
from .routes import agents, files, model_routes, runs, threads, usage, users, waits, webhooks

__all__ = ["create_app"]

log = logging.getLogger("runyard.server")


async def bootstrap_key(store: Store, preset: str | None) -> str | None:
    """On first start, create the admin key (or the preset one); returns it to print once."""
    async with store.tx() as tx:
        if preset:
            if not await keys.known(tx.conn, preset):  # a revoked preset key stays revoked
                await keys.create_key(tx.conn, "default", key=preset)
            return None
        if await keys.count(tx.conn) > 0:
            return None
        return await keys.create_key(tx.conn, "default")


_ACTIVE = (RunStatus.PENDING.value, RunStatus.RUNNING.value, RunStatus.WAITING.value)
_COUNT_ACTIVE = (
    select(runs_table.c.status, func.count()).where(runs_table.c.status.in_(_ACTIVE)).group_by(runs_table.c.status)
)


async def _scrape_gauges(store: Store) -> None:
    """The gauges read when scraped: active runs by status (one query) and the pool in use."""
    metrics.DB_POOL_IN_USE.set(metrics.pool_in_use(store))
    try:
        async with store.read() as conn:
            counts = {status: n for status, n in (await conn.execute(_COUNT_ACTIVE)).all()}
    except Exception:
        # The other metrics still answer; the run gauges keep their last values.
        log.warning("metrics: the database does not answer", exc_info=True)
        return
    for status in _ACTIVE:
        metrics.RUNS_ACTIVE.labels(status).set(counts.get(status, 0))


def create_app(settings: Settings | None = None, *, run_worker: bool = True, on_ready: Any = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        traced = tracing.configure(settings)
        bus = create_bus(settings.bus, settings.database_url)
        await bus.start()
        store = Store.open(settings, bus)
        if store.is_sqlite:
            from ..store.migrate import upgrade

            await upgrade(store)
        app.state.store = store
        app.state.settings = settings
        app.state.key_cache = {}
        app.state.rate_limiter = RateLimiter(settings, store) if settings.rate_limit is not None else None
        new_key = await bootstrap_key(store, settings.api_key)
        worker = None
        if run_worker:
            worker = Worker(store, settings)
            # Embedded SQLite: no other process can hold a run, so every running one is orphaned.
            await worker.start(recover_all=store.is_sqlite)
        app.state.worker = worker
        runtime.tune_gc()
        if on_ready is not None:
            on_ready(app, new_key)
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop(grace=5.0)
            await bus.close()
            await store.close()
            if traced:
                tracing.shutdown()  # exports what is still buffered

    app = FastAPI(
        title="Runyard",
        version=__version__,
        description="Runs of AI agents: start, stream, cancel, and read them back.",
        lifespan=lifespan,
    )
    errors.install(app)

    app.add_middleware(EdgeMiddleware, max_upload=settings.files_max_bytes + MULTIPART_SLACK)
    if tracing.wanted(settings):
        app.add_middleware(tracing.TracingMiddleware)  # outermost: its span covers refused requests too

    routers = (agents, runs, threads, waits, users, files, webhooks, usage, model_routes)
    for router in (r.router for r in routers):
        app.include_router(router, dependencies=[Depends(strict_query)])

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> Any:
        """Readiness: the database and the bus answer."""
        try:
            async with request.app.state.store.read() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            # The cause goes to the log, never to an unauthenticated caller.
            log.warning("readyz: the database does not answer", exc_info=True)
            return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
        if not await request.app.state.store.bus.ping():
            return JSONResponse({"status": "unavailable", "database": "ok", "bus": "down"}, status_code=503)
        return {"status": "ok", "database": "ok", "bus": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus metrics of this process; with `metrics_token` set, only for its bearer."""
        token = request.app.state.settings.metrics_token
        if token:
            given = request.headers.get("authorization", "")
            scheme, _, credentials = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), token.encode()):
                return errors.error_response(
                    401,
                    "unauthorized",
                    "missing or invalid metrics token: send 'Authorization: Bearer <RUNYARD_METRICS_TOKEN>'",
                    field="Authorization",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        store: Store = request.app.state.store
        await _scrape_gauges(store)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    console = Path(__file__).resolve().parent.parent / "console"
    if (console / "index.html").exists():
        app.mount("/console", StaticFiles(directory=console, html=True), name="console")

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/console/")

    return app
