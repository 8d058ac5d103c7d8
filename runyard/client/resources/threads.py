"""`client.threads`: conversation threads, their messages, their runs and their files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Unpack

from pydantic import BaseModel, ConfigDict

from ...domain import Run, Thread, ThreadMessage
from ..pagination import AsyncPaginator, SyncPage
from ..paths import path_for
from ..types import NOT_GIVEN, NotGiven, NotGivenOr, strip_not_given
from .async_runs import AsyncRuns
from .files import AsyncThreadFiles, ThreadFiles
from .run_params import ThreadRunCreateParams
from .runs import Runs

if TYPE_CHECKING:
    from ..client import AsyncRunyard, Runyard

__all__ = ["AsyncThreadRuns", "AsyncThreads", "ThreadDeleted", "ThreadRuns", "Threads"]


class ThreadDeleted(BaseModel):
    """The answer to `client.threads.delete(...)`."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["thread"] = "thread"
    deleted: bool


def thread_list_params(
    *,
    user_id: NotGivenOr[str],
    metadata: NotGivenOr[Mapping[str, str]],
    limit: NotGivenOr[int],
    before: NotGivenOr[str],
) -> dict[str, Any]:
    """The query of `GET /v1/threads`: `metadata[key]=value` per metadata filter."""
    params = strip_not_given({"user_id": user_id, "limit": limit, "before": before})
    if not isinstance(metadata, NotGiven):
        params.update({f"metadata[{key}]": value for key, value in metadata.items()})
    return params


def thread_body(*, user_id: NotGivenOr[str], metadata: NotGivenOr[dict[str, Any]]) -> dict[str, Any]:
    """The JSON body of `POST /v1/threads`."""
    return strip_not_given({"user_id": user_id, "metadata": metadata})


def _messages(raw: list[dict[str, Any]]) -> list[ThreadMessage]:
    return [ThreadMessage.model_validate(item) for item in raw]


class ThreadRuns:
    """`client.threads.runs`: start and list the runs of one thread."""

    def __init__(self, client: Runyard, runs: Runs) -> None:
        self._client = client
        self._runs = runs

    def create(self, thread_id: str, message: str | None = None, **params: Unpack[ThreadRunCreateParams]) -> Run:
        """Start a run on an existing thread; the arguments are those of `client.runs.create` but `thread_id`."""
        return self._runs._create(path_for("/v1/threads/{}/runs", thread_id), message, params)

    def list(
        self, thread_id: str, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN
    ) -> SyncPage[Run]:
        """List a thread's runs, newest first; iterating the page walks all of them."""
        path = path_for("/v1/threads/{}/runs", thread_id)
        return self._client._request_page(path, Run.model_validate, {"limit": limit, "before": before})


class Threads:
    """Threads: conversations that runs belong to."""

    def __init__(self, client: Runyard, runs: Runs) -> None:
        self._client = client
        self.runs = ThreadRuns(client, runs)
        """The runs of a thread."""
        self.files = ThreadFiles(client)
        """The files of a thread's workspace."""

    def create(
        self, *, user_id: NotGivenOr[str] = NOT_GIVEN, metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN
    ) -> Thread:
        """Start an empty thread; give its id to `runs.create(thread_id=...)` or `threads.runs.create`."""
        body = thread_body(user_id=user_id, metadata=metadata)
        return self._client._request_model("POST", "/v1/threads", Thread, json=body)

    def get(self, thread_id: str) -> Thread:
        """Fetch a thread. Raises `NotFoundError` when there is no such thread."""
        return self._client._request_model("GET", path_for("/v1/threads/{}", thread_id), Thread)

    def list(
        self,
        *,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[Mapping[str, str]] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
    ) -> SyncPage[Thread]:
        """List threads, newest first, by `user_id` and `metadata[key] == value`; iterating walks all pages."""
        params = thread_list_params(user_id=user_id, metadata=metadata, limit=limit, before=before)
        return self._client._request_page("/v1/threads", Thread.model_validate, params)

    def delete(self, thread_id: str) -> ThreadDeleted:
        """Delete a thread with its runs; raises `ConflictError` while one of its runs is active."""
        return self._client._request_model("DELETE", path_for("/v1/threads/{}", thread_id), ThreadDeleted)

    def messages(self, thread_id: str) -> list[ThreadMessage]:
        """The thread's conversation in order (user, assistant and tool messages), each with its run."""
        return _messages(self._client._request_json("GET", path_for("/v1/threads/{}/messages", thread_id)))


class AsyncThreadRuns:
    """`client.threads.runs`: start and list the runs of one thread."""

    def __init__(self, client: AsyncRunyard, runs: AsyncRuns) -> None:
        self._client = client
        self._runs = runs

    async def create(self, thread_id: str, message: str | None = None, **params: Unpack[ThreadRunCreateParams]) -> Run:
        """Start a run on an existing thread; the arguments are those of `client.runs.create` but `thread_id`."""
        return await self._runs._create(path_for("/v1/threads/{}/runs", thread_id), message, params)

    def list(
        self, thread_id: str, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN
    ) -> AsyncPaginator[Run]:
        """List a thread's runs, newest first: `await` for the first page or `async for` over all."""
        path = path_for("/v1/threads/{}/runs", thread_id)
        return self._client._request_page(path, Run.model_validate, {"limit": limit, "before": before})


class AsyncThreads:
    """Threads: conversations that runs belong to."""

    def __init__(self, client: AsyncRunyard, runs: AsyncRuns) -> None:
        self._client = client
        self.runs = AsyncThreadRuns(client, runs)
        """The runs of a thread."""
        self.files = AsyncThreadFiles(client)
        """The files of a thread's workspace."""

    async def create(
        self, *, user_id: NotGivenOr[str] = NOT_GIVEN, metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN
    ) -> Thread:
        """Start an empty thread; give its id to `runs.create(thread_id=...)` or `threads.runs.create`."""
        body = thread_body(user_id=user_id, metadata=metadata)
        return await self._client._request_model("POST", "/v1/threads", Thread, json=body)

    async def get(self, thread_id: str) -> Thread:
        """Fetch a thread. Raises `NotFoundError` when there is no such thread."""
        return await self._client._request_model("GET", path_for("/v1/threads/{}", thread_id), Thread)

    def list(
        self,
        *,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[Mapping[str, str]] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
    ) -> AsyncPaginator[Thread]:
        """List threads, newest first: `await` for the first page or `async for` over all."""
        params = thread_list_params(user_id=user_id, metadata=metadata, limit=limit, before=before)
        return self._client._request_page("/v1/threads", Thread.model_validate, params)

    async def delete(self, thread_id: str) -> ThreadDeleted:
        """Delete a thread with its runs; raises `ConflictError` while one of its runs is active."""
        return await self._client._request_model("DELETE", path_for("/v1/threads/{}", thread_id), ThreadDeleted)

    async def messages(self, thread_id: str) -> list[ThreadMessage]:
        """The thread's conversation in order (user, assistant and tool messages), each with its run."""
        return _messages(await self._client._request_json("GET", path_for("/v1/threads/{}/messages", thread_id)))
