"""Cursor pages of list endpoints, and the auto-pagers that walk them.

Lists come as `{"data": [...], "has_more": bool, "next_cursor": str | null}`. Most are newest
first, and the next (older) page is asked for with `before=<cursor>`; a run's events come in
`seq` order and page on with `after_seq=<cursor>`. `BasePage` computes the next page's query;
`SyncPage` and `AsyncPage` add only the fetching and the iteration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["AsyncPage", "AsyncPaginator", "BasePage", "SyncPage"]

_T = TypeVar("_T")


class BasePage(Generic[_T]):
    """One page of a list: its items and where the next page starts."""

    def __init__(
        self, *, data: list[_T], has_more: bool, next_cursor: str | None, cursor_param: str = "before"
    ) -> None:
        self.data = data
        """The items of this page, in the list's order (newest first, or by `seq` for events)."""
        self.has_more = has_more
        """Whether more items exist beyond this page."""
        self.next_cursor = next_cursor
        """The cursor of the next page, as the server sent it."""
        self.cursor_param = cursor_param
        """The query parameter the cursor goes in: `before`, or `after_seq` for events."""

    def next_page_params(self) -> dict[str, Any] | None:
        """The query parameters of the next page, or `None` on the last page.

        The server's `next_cursor` is used; when it is missing, the last item's id stands in.
        """
        if not self.has_more or not self.data:
            return None
        cursor = self.next_cursor or getattr(self.data[-1], "id", None)
        if cursor is None:
            return None
        return {self.cursor_param: cursor}

    def has_next_page(self) -> bool:
        """Whether `get_next_page()` would return a page."""
        return self.next_page_params() is not None

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(data=<{len(self.data)} items>, has_more={self.has_more}, next_cursor={self.next_cursor!r})"


class SyncPage(BasePage[_T]):
    """A page from a blocking client. Iterating it yields every item of this and all further pages,
    fetching each page only when the previous one is used up.

    ```python
    for run in client.runs.list(status="completed"):
        print(run.id)
    ```
    """

    def __init__(
        self,
        *,
        data: list[_T],
        has_more: bool,
        next_cursor: str | None,
        fetch: Callable[[dict[str, Any]], SyncPage[_T]],
        cursor_param: str = "before",
    ) -> None:
        super().__init__(data=data, has_more=has_more, next_cursor=next_cursor, cursor_param=cursor_param)
        self._fetch = fetch

    def get_next_page(self) -> SyncPage[_T]:
        """Fetch the next page. Raises `RuntimeError` on the last page."""
        params = self.next_page_params()
        if params is None:
            raise RuntimeError("this is the last page; check has_next_page() before calling get_next_page()")
        return self._fetch(params)

    def iter_pages(self) -> Iterator[SyncPage[_T]]:
        """Yield this page, then each next one."""
        page: SyncPage[_T] = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = page.get_next_page()

    def __iter__(self) -> Iterator[_T]:
        for page in self.iter_pages():
            yield from page.data


class AsyncPage(BasePage[_T]):
    """A page from an async client; `async for` yields every item of this and all further pages."""

    def __init__(
        self,
        *,
        data: list[_T],
        has_more: bool,
        next_cursor: str | None,
        fetch: Callable[[dict[str, Any]], Awaitable[AsyncPage[_T]]],
        cursor_param: str = "before",
    ) -> None:
        super().__init__(data=data, has_more=has_more, next_cursor=next_cursor, cursor_param=cursor_param)
        self._fetch = fetch

    async def get_next_page(self) -> AsyncPage[_T]:
        """Fetch the next page. Raises `RuntimeError` on the last page."""
        params = self.next_page_params()
        if params is None:
            raise RuntimeError("this is the last page; check has_next_page() before calling get_next_page()")
        return await self._fetch(params)

    async def iter_pages(self) -> AsyncIterator[AsyncPage[_T]]:
        """Yield this page, then each next one."""
        page: AsyncPage[_T] = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = await page.get_next_page()

    async def __aiter__(self) -> AsyncIterator[_T]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item


class AsyncPaginator(Generic[_T]):
    """What an async `list()` returns: await it for the first page, or `async for` over all items.

    ```python
    page = await client.runs.list(limit=10)      # one AsyncPage
    async for run in client.runs.list():          # every run, page by page
        ...
    ```
    """

    def __init__(self, fetch: Callable[[dict[str, Any]], Awaitable[AsyncPage[_T]]]) -> None:
        self._fetch = fetch

    def __await__(self) -> Generator[Any, None, AsyncPage[_T]]:
        return self._fetch({}).__await__()

    async def __aiter__(self) -> AsyncIterator[_T]:
        page = await self._fetch({})
        async for item in page:
            yield item
