"""Model routes (`RUNYARD_ROUTES`): which provider serves a run, retried, bounded and with fallbacks.

A routes file is TOML, one `[routes.<id>]` table per route:

    [routes.fast]
    model = "openai:gpt-4o-mini"
    base_url = "http://127.0.0.1:8000/v1"   # optional: a self-hosted server or a proxy
    api_key_env = "FAST_KEY"                # the env var holding its key (keys never go in the file)
    prices = {input_mtok = 0.15, output_mtok = 0.6}
    fallback = ["backup"]                   # tried in order once this route's retries are spent
    max_retries = 2                         # retries on 429, 5xx, connection errors and timeouts
    backoff = 0.5                           # first retry delay in seconds, doubling, with jitter
    timeout = 60                            # seconds one attempt may wait for the provider's next byte
    max_concurrency = 4                     # requests in flight to this route, per worker

Every request of a run goes to its route first. A retryable failure waits (the provider's
`Retry-After` if it sent one, else exponential backoff with jitter) and tries again; a request the
provider rejects (a 4xx other than 408, 409 and 429) is not retried. Either way, once a route has
failed, the next route of its `fallback` list serves the request. A stream cut after text was
streamed is retried too: the run's log shows `message.reset` before the new attempt's deltas.
"""

from __future__ import annotations

import asyncio
import random
import tomllib
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelServerError,
    ModelUnavailableError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from ..config import Settings

__all__ = ["Emit", "Link", "RouteConfig", "RoutedModel", "configured", "load_routes", "retryable"]

MAX_DELAY_S = 60.0
"""The longest wait between two attempts, a provider's `Retry-After` included."""

RETRYABLE_STATUS = frozenset({408, 409, 429})


class RoutePrices(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_mtok: float = Field(default=0.0, ge=0)
    output_mtok: float = Field(default=0.0, ge=0)
    cache_read_mtok: float = Field(default=0.0, ge=0)


class RouteConfig(BaseModel):
    """One route of the routes file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    prices: RoutePrices | None = None
    """USD per million tokens; none: the bundled genai-prices snapshot."""
    fallback: tuple[str, ...] = ()
    max_retries: int = Field(default=2, ge=0, le=10)
    backoff: float = Field(default=0.5, ge=0, le=MAX_DELAY_S)
    timeout: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)


@lru_cache(maxsize=8)
def load_routes(path: str | None) -> dict[str, RouteConfig]:
    """Route id → route, from a TOML file of `[routes.<id>]` tables; `ValueError` names what is wrong."""
    if not path:
        return {}
    data = tomllib.loads(Path(path).read_text())
    tables = data.get("routes", data)
    routes: dict[str, RouteConfig] = {}
    for route_id, table in tables.items():
        try:
            routes[route_id] = RouteConfig.model_validate(table)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"routes file {path}: routes.{route_id}.{where}: {first['msg']}") from None
    for route_id, route in routes.items():
        for other in route.fallback:
            if other not in routes or other == route_id:
                raise ValueError(f"routes file {path}: routes.{route_id}.fallback: {other!r} is not another route")
    return routes


def configured(settings: Settings) -> dict[str, RouteConfig]:
    """The routes of `RUNYARD_ROUTES` (read once per file)."""
    return load_routes(str(settings.routes) if settings.routes else None)


def retryable(exc: BaseException) -> bool:
    """Whether sending the same request again may succeed: rate limits, server errors, lost connections."""
    if isinstance(exc, ModelHTTPError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    if isinstance(exc, (ModelRateLimitError, ModelServerError, ModelUnavailableError, ModelConnectionError)):
        return True
    return isinstance(exc, (httpx.TransportError, TimeoutError))


def _status(exc: BaseException) -> int | None:
    return exc.status_code if isinstance(exc, ModelHTTPError) else None


def _error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:500]


def delay_for(route: RouteConfig, attempt: int, exc: BaseException) -> float:
    """Seconds before retry `attempt` (1, 2, …): the provider's `Retry-After`, else backoff with jitter."""
    asked = exc.retry_after if isinstance(exc, ModelAPIError) else None
    if asked is not None:
        return min(max(float(asked), 0.0), MAX_DELAY_S)
    base = route.backoff * 2 ** (attempt - 1)
    return min(base * random.uniform(0.5, 1.0), MAX_DELAY_S)


# One semaphore per route and event loop: `max_concurrency` is per worker, and a worker is a loop.
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = weakref.WeakKeyDictionary()


def _slot(route_id: str, limit: int) -> asyncio.Semaphore:
    slots = _SLOTS.setdefault(asyncio.get_running_loop(), {})
    if route_id not in slots:
        slots[route_id] = asyncio.Semaphore(limit)
    return slots[route_id]


Emit = Callable[[str, dict[str, Any]], None]


@dataclass
class Link:
    """One route of a run's chain, with the model that talks to it."""

    route_id: str | None
    """None: a model string with no route (default retries, no fallback)."""
    config: RouteConfig
    model: Model


class RoutedModel(WrapperModel):
    """A run's model: its route first, then the route's fallbacks, each retried; events in the run's log.

    Failures to open a stream (and a stream cut before its first event is handed on) are retried
    here. A cut after events reached the run is the turn's to handle (`stream_cut`): the next request
    it makes goes on counting this request's attempts.
    """

    def __init__(self, chain: list[Link], emit: Emit):
        super().__init__(chain[0].model)
        self.chain = chain
        self.emit = emit
        self.serving: Link = chain[0]
        self._announced: str | None = None
        self._carry: tuple[int, int] | None = None  # (link, attempts spent) after a stream cut
        self._delay = 0.0  # before the next attempt
        self.handed_over = False
        """Whether the request being made got a stream: a failure after that is a stream cut."""

    @property
    def model_name(self) -> str:
        return self.serving.model.model_name

    def stream_cut(self, exc: BaseException) -> bool:
        """A stream broke after its events reached the run: whether a retry (or a fallback) remains."""
        index = self.chain.index(self.serving)
        attempt = (self._carry[1] if self._carry and self._carry[0] == index else 0) + 1
        nxt = self._next(index, attempt, exc)
        if nxt is None:
            return False
        self._carry = nxt
        return True

    def _next(self, index: int, attempt: int, exc: BaseException) -> tuple[int, int] | None:
        """After `attempt` failed on link `index`: (link, attempts spent) to go on with, events emitted."""
        link = self.chain[index]
        if retryable(exc) and attempt <= link.config.max_retries:
            delay = delay_for(link.config, attempt, exc)
            data = {"route_id": link.route_id, "attempt": attempt, "status": _status(exc)}
            self.emit("run.llm.retry", {**data, "delay_s": round(delay, 3), "error": _error(exc)})
            self._delay = delay
            return index, attempt
        if index + 1 < len(self.chain):
            self.emit(
                "run.provider_fallback",
                {"from": link.route_id, "to": self.chain[index + 1].route_id, "error": _error(exc)},
            )
            self._delay = 0.0
            return index + 1, 0
        return None

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncIterator[StreamedResponse]:
        self.handed_over = False
        index, spent = self._carry or (0, 0)
        if self._carry is not None:
            await asyncio.sleep(self._delay)
        self._carry = None
        while True:
            link = self.chain[index]
            handed = False
            try:
                async with self._slot(link):
                    self._announce(link)
                    settings = self._attempt_settings(link, model_settings)
                    async with link.model.request_stream(
                        messages, settings, model_request_parameters, run_context
                    ) as stream:
                        handed = self.handed_over = True
                        yield stream
                return
            except Exception as exc:
                if handed or not isinstance(exc, ModelAPIError | httpx.TransportError | TimeoutError):
                    raise  # the consumer's, or a bug: not a failed attempt
                nxt = self._next(index, spent + 1, exc)
                if nxt is None:
                    raise
                index, spent = nxt
                await asyncio.sleep(self._delay)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        index, spent = 0, 0
        while True:
            link = self.chain[index]
            try:
                async with self._slot(link):
                    self._announce(link)
                    settings = self._attempt_settings(link, model_settings)
                    return await link.model.request(messages, settings, model_request_parameters)
            except (ModelAPIError, httpx.TransportError, TimeoutError) as exc:
                nxt = self._next(index, spent + 1, exc)
                if nxt is None:
                    raise
                index, spent = nxt
                await asyncio.sleep(self._delay)

    def _announce(self, link: Link) -> None:
        self.serving = link
        if link.route_id is not None and link.route_id != self._announced:
            self.emit("run.route.selected", {"route_id": link.route_id, "model": link.config.model})
            self._announced = link.route_id

    @asynccontextmanager
    async def _slot(self, link: Link) -> AsyncIterator[None]:
        limit = link.config.max_concurrency
        if limit is None or link.route_id is None:
            yield
            return
        slot = _slot(link.route_id, limit)
        if slot.locked():
            self.emit("run.route.queued", {"route_id": link.route_id, "max_concurrency": limit})
        async with slot:
            yield

    @staticmethod
    def _attempt_settings(link: Link, model_settings: ModelSettings | None) -> ModelSettings:
        # Runyard retries (and logs each retry): the provider SDK's own retries would hide them.
        settings: ModelSettings = {**(model_settings or {}), "max_retries": 0}
        if link.config.timeout is not None:
            settings["timeout"] = link.config.timeout
        return settings
