"""`client.threads`: the runs of a conversation thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._base_client import path_for
from .._pagination import AsyncPaginator, SyncPage
from .._types import NOT_GIVEN, NotGivenOr
from ..domain import Run
from .runs import AsyncRuns, Runs

if TYPE_CHECKING:
    from .._client import AsyncRunyard, Runyard

__all__ = ["AsyncThreadRuns", "AsyncThreads", "ThreadRuns", "Threads"]


class ThreadRuns:
    """`client.threads.runs`: start and list the runs of one thread."""

    def __init__(self, client: Runyard, runs: Runs) -> None:
        self._client = client
        self._runs = runs

    def create(
        self,
        thread_id: str,
        message: str,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        name: NotGivenOr[str] = NOT_GIVEN,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        idempotency_key: NotGivenOr[str] = NOT_GIVEN,
    ) -> Run:
        """Start a run on an existing thread; the arguments are those of `client.runs.create`."""
        params = {
            "agent_id": agent_id,
            "name": name,
            "instructions": instructions,
            "tools": tools,
            "model": model,
            "user_id": user_id,
            "metadata": metadata,
            "idempotency_key": idempotency_key,
        }
        return self._runs._create(path_for("/v1/threads/{}/runs", thread_id), message, params)

    def list(
        self, thread_id: str, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN
    ) -> SyncPage[Run]:
        """List a thread's runs, newest first; iterating the page walks all of them."""
        path = path_for("/v1/threads/{}/runs", thread_id)
        return self._client._request_page(path, Run, {"limit": limit, "before": before})


class Threads:
    """Threads: conversations that runs belong to."""

    def __init__(self, client: Runyard, runs: Runs) -> None:
        self.runs = ThreadRuns(client, runs)
        """The runs of a thread."""


class AsyncThreadRuns:
    """`client.threads.runs`: start and list the runs of one thread."""

    def __init__(self, client: AsyncRunyard, runs: AsyncRuns) -> None:
        self._client = client
        self._runs = runs

    async def create(
        self,
        thread_id: str,
        message: str,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        name: NotGivenOr[str] = NOT_GIVEN,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        idempotency_key: NotGivenOr[str] = NOT_GIVEN,
    ) -> Run:
        """Start a run on an existing thread; the arguments are those of `client.runs.create`."""
        params = {
            "agent_id": agent_id,
            "name": name,
            "instructions": instructions,
            "tools": tools,
            "model": model,
            "user_id": user_id,
            "metadata": metadata,
            "idempotency_key": idempotency_key,
        }
        return await self._runs._create(path_for("/v1/threads/{}/runs", thread_id), message, params)

    def list(
        self, thread_id: str, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN
    ) -> AsyncPaginator[Run]:
        """List a thread's runs, newest first: `await` for the first page or `async for` over all."""
        path = path_for("/v1/threads/{}/runs", thread_id)
        return self._client._request_page(path, Run, {"limit": limit, "before": before})


class AsyncThreads:
    """Threads: conversations that runs belong to."""

    def __init__(self, client: AsyncRunyard, runs: AsyncRuns) -> None:
        self.runs = AsyncThreadRuns(client, runs)
        """The runs of a thread."""
