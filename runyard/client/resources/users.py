"""`client.users.memories`: facts the org keeps about one of its end users."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ...domain import Memory
from ..pagination import AsyncPaginator, SyncPage
from ..paths import path_for
from ..types import NOT_GIVEN, NotGivenOr

if TYPE_CHECKING:
    from ..client import AsyncRunyard, Runyard

__all__ = ["AsyncMemories", "AsyncUsers", "Memories", "MemoryDeleted", "Users"]


class MemoryDeleted(BaseModel):
    """The answer to `client.users.memories.delete(...)`."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["memory"] = "memory"
    deleted: bool


def _path(user_id: str, memory_id: str | None = None) -> str:
    if memory_id is None:
        return path_for("/v1/users/{}/memories", user_id)
    return path_for("/v1/users/{}/memories/{}", user_id, memory_id)


class Memories:
    """`client.users.memories`: what runs of a user (with `memory=True`) are told about them."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def list(
        self, user_id: str, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN
    ) -> SyncPage[Memory]:
        """List a user's memories, newest first; iterating the page walks all of them."""
        return self._client._request_page(_path(user_id), Memory.model_validate, {"limit": limit, "before": before})

    def create(self, user_id: str, text: str, *, metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN) -> Memory:
        """Remember a fact (at most 4,000 characters) about a user."""
        body: dict[str, Any] = {"text": text}
        if metadata is not NOT_GIVEN:
            body["metadata"] = metadata
        return self._client._request_model("POST", _path(user_id), Memory, json=body)

    def delete(self, user_id: str, memory_id: str) -> MemoryDeleted:
        """Forget one memory. Raises `NotFoundError` when the user has no such memory."""
        return self._client._request_model("DELETE", _path(user_id, memory_id), MemoryDeleted)

    def clear(self, user_id: str) -> int:
        """Forget everything about a user; return how many memories were deleted."""
        answer = self._client._request_json("DELETE", _path(user_id))
        return int(answer.get("deleted", 0))


class Users:
    """Your end users, as runs name them with `user_id`."""

    def __init__(self, client: Runyard) -> None:
        self.memories = Memories(client)
        """What the org keeps about each user."""


class AsyncMemories:
    """`client.users.memories`: what runs of a user (with `memory=True`) are told about them."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    def list(
        self, user_id: str, *, limit: NotGivenOr[int] = NOT_GIVEN, before: NotGivenOr[str] = NOT_GIVEN
    ) -> AsyncPaginator[Memory]:
        """List a user's memories, newest first: `await` for the first page or `async for` over all."""
        return self._client._request_page(_path(user_id), Memory.model_validate, {"limit": limit, "before": before})

    async def create(self, user_id: str, text: str, *, metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN) -> Memory:
        """Remember a fact (at most 4,000 characters) about a user."""
        body: dict[str, Any] = {"text": text}
        if metadata is not NOT_GIVEN:
            body["metadata"] = metadata
        return await self._client._request_model("POST", _path(user_id), Memory, json=body)

    async def delete(self, user_id: str, memory_id: str) -> MemoryDeleted:
        """Forget one memory. Raises `NotFoundError` when the user has no such memory."""
        return await self._client._request_model("DELETE", _path(user_id, memory_id), MemoryDeleted)

    async def clear(self, user_id: str) -> int:
        """Forget everything about a user; return how many memories were deleted."""
        answer = await self._client._request_json("DELETE", _path(user_id))
        return int(answer.get("deleted", 0))


class AsyncUsers:
    """Your end users, as runs name them with `user_id`."""

    def __init__(self, client: AsyncRunyard) -> None:
        self.memories = AsyncMemories(client)
        """What the org keeps about each user."""
