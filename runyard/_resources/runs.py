"""`client.runs`: start runs, stream their events, wait for them, list and cancel them.

The module functions build bodies and query parameters and decide the wait loop's pauses; they
do no I/O. `Runs` and `AsyncRuns` hold only the calls, written line for line alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import httpx

from .. import _exceptions as _exc
from .._base_client import RequestOptions, new_idempotency_key, path_for
from .._pagination import AsyncPaginator, SyncPage
from .._streaming import AsyncRunStream, RunStream
from .._types import NOT_GIVEN, NotGivenOr, strip_not_given
from ..domain import Run, RunStatus

if TYPE_CHECKING:
    from .._client import AsyncRunyard, Runyard

__all__ = ["AsyncRuns", "RunCreateParams", "Runs"]

LONG_POLL_SECONDS = 30.0
"""How long one `GET /v1/runs/{id}/wait` may hold the connection (the server caps it at 60 s);
shorter than the cap so that proxies with idle timeouts do not cut it."""
LONG_POLL_READ_MARGIN = 15.0
"""Extra read timeout over the long poll itself, for a slow server or network."""
EARLY_RETURN_SLACK = 0.05
"""A long poll that came back this much earlier than asked, without a finished run, returned early."""

SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}


class RunCreateParams(TypedDict, total=False):
    """The keyword arguments of `runs.create` (and of `stream` and `create_and_wait`)."""

    agent_id: str
    """The agent to run. Or give `name` and `instructions` to find-or-create it by name."""
    name: str
    """Name of the agent to find or create (with `instructions`)."""
    instructions: str
    """Instructions of the agent created by name."""
    thread_id: str
    """Continue this thread; a new thread is started when left out."""
    tools: list[str]
    """Override the agent's tools for this run."""
    model: str
    """Override the agent's model (or route) for this run."""
    user_id: str
    """Your end user's id, to scope and filter runs."""
    metadata: dict[str, Any]
    """Free-form JSON; the `scripted` model reads its `script` here."""
    idempotency_key: str
    """Sent as `Idempotency-Key`; a fresh UUID per call when left out, reused by retries."""


# --------------------------------------------------------------------------- pure helpers


def run_body(message: str, params: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    """The JSON body of `POST /v1/runs`: the message, the fields given, and `stream`."""
    fields = strip_not_given({key: value for key, value in params.items() if key != "idempotency_key"})
    return {"message": message, **fields, "stream": stream}


def run_list_params(
    *,
    agent_id: NotGivenOr[str],
    thread_id: NotGivenOr[str],
    user_id: NotGivenOr[str],
    status: NotGivenOr[RunStatus | str | Sequence[RunStatus | str]],
    metadata: NotGivenOr[Mapping[str, str]],
    created_after: NotGivenOr[datetime | str],
    created_before: NotGivenOr[datetime | str],
    limit: NotGivenOr[int],
    before: NotGivenOr[str],
    after: NotGivenOr[str],
) -> dict[str, Any]:
    """The query of `GET /v1/runs`: repeated `status`, `metadata[key]=value`, ISO 8601 datetimes."""
    params: dict[str, Any] = {
        "agent_id": agent_id,
        "thread_id": thread_id,
        "user_id": user_id,
        "limit": limit,
        "before": before,
        "after": after,
        "created_after": created_after.isoformat() if isinstance(created_after, datetime) else created_after,
        "created_before": created_before.isoformat() if isinstance(created_before, datetime) else created_before,
    }
    if status is not NOT_GIVEN:
        statuses = [status] if isinstance(status, str) else list(status)
        params["status"] = [RunStatus(value).value for value in statuses]
    if metadata is not NOT_GIVEN:
        params.update({f"metadata[{key}]": value for key, value in metadata.items()})
    return strip_not_given(params)


def wait_deadline(timeout: float | None, now: float) -> float | None:
    """The monotonic time a wait gives up at, or `None` to wait for ever."""
    return None if timeout is None else now + timeout


def long_poll_seconds(deadline: float | None, now: float) -> float:
    """How long the next long poll should ask the server to hold on."""
    if deadline is None:
        return LONG_POLL_SECONDS
    return max(0.0, min(LONG_POLL_SECONDS, deadline - now))


def long_poll_timeout(seconds: float) -> httpx.Timeout:
    """The HTTP timeout of a long poll of `seconds`: the read must outlast the server's wait."""
    return httpx.Timeout(seconds + LONG_POLL_READ_MARGIN, connect=5.0)


def next_poll_pause(
    run: Run, *, deadline: float | None, asked: float, started: float, now: float, poll_interval: float
) -> float:
    """Seconds to pause before polling a run that is not finished; raise `TimeoutError` once past the deadline.

    A long poll that held for the time asked needs no pause; one that came back early
    (a server with a shorter cap, or an older server) pauses `poll_interval`.
    """
    if deadline is not None and now >= deadline:
        raise _exc.TimeoutError(f"run {run.id} is still {run.status.value} after the wait timeout", run=run)
    pause = poll_interval if now - started < asked - EARLY_RETURN_SLACK else 0.0
    if deadline is not None:
        pause = min(pause, deadline - now)
    return max(pause, 0.0)


def create_options(path: str, message: str, params: Mapping[str, Any], *, stream: bool) -> RequestOptions:
    """The request that starts a run. Its idempotency key is minted here, once per logical call:
    every retry, and every re-POST of a stream that dropped before its first event, reuses it."""
    key = params.get("idempotency_key")
    return RequestOptions(
        "POST",
        path,
        json=run_body(message, params, stream=stream),
        headers=dict(SSE_HEADERS) if stream else {},
        idempotency_key=key if isinstance(key, str) else new_idempotency_key(),
    )


def check_outcome(run: Run, *, raise_on_failure: bool) -> Run:
    """Return `run`, or raise `RunFailedError` when it failed and the caller asked for that."""
    if raise_on_failure and run.status is RunStatus.FAILED:
        raise _exc.RunFailedError(run)
    return run


# --------------------------------------------------------------------------- sync


class Runs:
    """Runs: one execution of an agent on one task."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def create(
        self,
        message: str,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        name: NotGivenOr[str] = NOT_GIVEN,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        thread_id: NotGivenOr[str] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        idempotency_key: NotGivenOr[str] = NOT_GIVEN,
    ) -> Run:
        """Start a run and return it at once (status `pending`).

        Args:
            message: the task (at most 32 KB).
            agent_id: the agent to run; or pass `name` and `instructions` to find-or-create it.
            thread_id: continue this thread instead of starting a new one.
            tools / model: override the agent's for this run.
            user_id: your end user's id.
            metadata: free-form JSON (the `scripted` model reads `script` here).
            idempotency_key: makes retries safe; a UUID is minted when left out.
        """
        params = {
            "agent_id": agent_id,
            "name": name,
            "instructions": instructions,
            "thread_id": thread_id,
            "tools": tools,
            "model": model,
            "user_id": user_id,
            "metadata": metadata,
            "idempotency_key": idempotency_key,
        }
        return self._create("/v1/runs", message, params)

    def stream(self, message: str, **params: Unpack[RunCreateParams]) -> RunStream:
        """Start a run and stream its events; use it as a context manager.

        Takes the arguments of `create`. Entering sends the request; iterating yields `Event`s
        until the terminal one, reconnecting by itself if the connection drops.

        ```python
        with client.runs.stream("Say hello", agent_id=agent.id) as stream:
            for event in stream:
                print(event.type)
            print(stream.text)
        ```
        """
        options = create_options("/v1/runs", message, params, stream=True)
        return RunStream(self._client, connect=lambda: self._client.request(options, stream=True))

    def stream_events(self, run_id: str, *, after_seq: int = 0) -> RunStream:
        """Stream the events of an existing run with seq greater than `after_seq`, reconnecting as needed."""
        return RunStream(self._client, run_id=run_id, after_seq=after_seq)

    def create_and_wait(
        self,
        message: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        raise_on_failure: bool = False,
        **params: Unpack[RunCreateParams],
    ) -> Run:
        """Start a run and wait until it is finished; see `create` and `wait` for the arguments.

        Raises `RunFailedError` when `raise_on_failure` is set and the run failed.
        """
        run = self._create("/v1/runs", message, params)
        run = self.wait(run.id, timeout=timeout, poll_interval=poll_interval)
        return check_outcome(run, raise_on_failure=raise_on_failure)

    def wait(self, run_id: str, *, timeout: float | None = None, poll_interval: float = 1.0) -> Run:
        """Block until the run is completed, failed or cancelled, and return it.

        Uses the server's long poll, so the run is returned as soon as it finishes.

        Args:
            timeout: seconds to wait at most, then raise `runyard.TimeoutError`; `None` waits for ever.
            poll_interval: pause between polls when the server answers early with an unfinished run.
        """
        deadline = wait_deadline(timeout, time.monotonic())
        while True:
            started = time.monotonic()
            asked = long_poll_seconds(deadline, started)
            run = self._client._request_model(
                "GET",
                path_for("/v1/runs/{}/wait", run_id),
                Run,
                params={"timeout": asked},
                timeout=long_poll_timeout(asked),
            )
            if run.is_terminal:
                return run
            now = time.monotonic()
            time.sleep(
                next_poll_pause(
                    run, deadline=deadline, asked=asked, started=started, now=now, poll_interval=poll_interval
                )
            )

    def get(self, run_id: str) -> Run:
        """Fetch a run. Raises `NotFoundError` when there is no such run."""
        return self._client._request_model("GET", path_for("/v1/runs/{}", run_id), Run)

    def list(
        self,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        thread_id: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        status: NotGivenOr[RunStatus | str | Sequence[RunStatus | str]] = NOT_GIVEN,
        metadata: NotGivenOr[Mapping[str, str]] = NOT_GIVEN,
        created_after: NotGivenOr[datetime | str] = NOT_GIVEN,
        created_before: NotGivenOr[datetime | str] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
        after: NotGivenOr[str] = NOT_GIVEN,
    ) -> SyncPage[Run]:
        """List runs, newest first, filtered by any of the arguments.

        Returns the first page; iterating it yields every matching run, fetching older pages as
        needed. `status` may be one status or several; `metadata` matches `metadata[key] == value`.
        """
        params = run_list_params(
            agent_id=agent_id,
            thread_id=thread_id,
            user_id=user_id,
            status=status,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            before=before,
            after=after,
        )
        return self._client._request_page("/v1/runs", Run, params)

    def cancel(self, run_id: str) -> Run:
        """Ask for a run to be cancelled; it reaches `cancelled` shortly after.

        Raises `ConflictError` when the run is already finished.
        """
        return self._client._request_model("POST", path_for("/v1/runs/{}/cancel", run_id), Run)

    def _create(self, path: str, message: str, params: Mapping[str, Any]) -> Run:
        options = create_options(path, message, params, stream=False)
        return self._client._parse(self._client.request(options), Run)


# --------------------------------------------------------------------------- async


class AsyncRuns:
    """Runs: one execution of an agent on one task."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    async def create(
        self,
        message: str,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        name: NotGivenOr[str] = NOT_GIVEN,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        thread_id: NotGivenOr[str] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        idempotency_key: NotGivenOr[str] = NOT_GIVEN,
    ) -> Run:
        """Start a run and return it at once (status `pending`). The arguments are those of `Runyard.runs.create`."""
        params = {
            "agent_id": agent_id,
            "name": name,
            "instructions": instructions,
            "thread_id": thread_id,
            "tools": tools,
            "model": model,
            "user_id": user_id,
            "metadata": metadata,
            "idempotency_key": idempotency_key,
        }
        return await self._create("/v1/runs", message, params)

    def stream(self, message: str, **params: Unpack[RunCreateParams]) -> AsyncRunStream:
        """Start a run and stream its events; use it with `async with`.

        ```python
        async with client.runs.stream("Say hello", agent_id=agent.id) as stream:
            async for event in stream:
                print(event.type)
            print(stream.text)
        ```
        """
        options = create_options("/v1/runs", message, params, stream=True)
        return AsyncRunStream(self._client, connect=lambda: self._client.request(options, stream=True))

    def stream_events(self, run_id: str, *, after_seq: int = 0) -> AsyncRunStream:
        """Stream the events of an existing run with seq greater than `after_seq`, reconnecting as needed."""
        return AsyncRunStream(self._client, run_id=run_id, after_seq=after_seq)

    async def create_and_wait(
        self,
        message: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        raise_on_failure: bool = False,
        **params: Unpack[RunCreateParams],
    ) -> Run:
        """Start a run and wait until it is finished; see `create` and `wait` for the arguments.

        Raises `RunFailedError` when `raise_on_failure` is set and the run failed.
        """
        run = await self._create("/v1/runs", message, params)
        run = await self.wait(run.id, timeout=timeout, poll_interval=poll_interval)
        return check_outcome(run, raise_on_failure=raise_on_failure)

    async def wait(self, run_id: str, *, timeout: float | None = None, poll_interval: float = 1.0) -> Run:
        """Wait until the run is completed, failed or cancelled, and return it.

        Raises `runyard.TimeoutError` after `timeout` seconds (`None` waits for ever).
        """
        deadline = wait_deadline(timeout, time.monotonic())
        while True:
            started = time.monotonic()
            asked = long_poll_seconds(deadline, started)
            run = await self._client._request_model(
                "GET",
                path_for("/v1/runs/{}/wait", run_id),
                Run,
                params={"timeout": asked},
                timeout=long_poll_timeout(asked),
            )
            if run.is_terminal:
                return run
            now = time.monotonic()
            await asyncio.sleep(
                next_poll_pause(
                    run, deadline=deadline, asked=asked, started=started, now=now, poll_interval=poll_interval
                )
            )

    async def get(self, run_id: str) -> Run:
        """Fetch a run. Raises `NotFoundError` when there is no such run."""
        return await self._client._request_model("GET", path_for("/v1/runs/{}", run_id), Run)

    def list(
        self,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        thread_id: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        status: NotGivenOr[RunStatus | str | Sequence[RunStatus | str]] = NOT_GIVEN,
        metadata: NotGivenOr[Mapping[str, str]] = NOT_GIVEN,
        created_after: NotGivenOr[datetime | str] = NOT_GIVEN,
        created_before: NotGivenOr[datetime | str] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
        after: NotGivenOr[str] = NOT_GIVEN,
    ) -> AsyncPaginator[Run]:
        """List runs, newest first: `await` it for the first page, or `async for` over every matching run."""
        params = run_list_params(
            agent_id=agent_id,
            thread_id=thread_id,
            user_id=user_id,
            status=status,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            before=before,
            after=after,
        )
        return self._client._request_page("/v1/runs", Run, params)

    async def cancel(self, run_id: str) -> Run:
        """Ask for a run to be cancelled; raises `ConflictError` when it is already finished."""
        return await self._client._request_model("POST", path_for("/v1/runs/{}/cancel", run_id), Run)

    async def _create(self, path: str, message: str, params: Mapping[str, Any]) -> Run:
        options = create_options(path, message, params, stream=False)
        return self._client._parse(await self._client.request(options), Run)
