"""`RunStream` and `AsyncRunStream`: a run's events over SSE, reconnecting by themselves.

The decoding is `SSEDecoder`'s and the folding `RunAccumulator`'s, both without I/O; the
streams add only the reading, the reconnecting and the sleeping, line for line alike.

A run that pauses for a human (`run.waiting`, parsed as `RunWaiting`) ends the iteration once
the caller pulls past that event while the run is still paused; `stream.waiting` then lists
the open waits. Answer them, and iterate the same stream again to go on from there.

A stream given functions for client tools (`tools={name: function}`) runs them when the run
waits for their results, posts the results, and goes on: only a pause it cannot answer ends
the iteration.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from .._events import Event, parse_event
from ..domain import Run, RunStatus, Wait
from . import exceptions as _exc
from .accumulator import RunAccumulator
from .client_tools import LocalTools
from .sse import ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    from .client import AsyncRunyard, Runyard

__all__ = ["AsyncRunStream", "RunStream", "event_from_sse", "reconnect_delay", "still_paused"]

DEFAULT_MAX_RECONNECTS = 5
"""How many times in a row a stream may drop without delivering a new event before it gives up."""
RECONNECT_INITIAL_DELAY = 0.25
"""Seconds before the first reconnect, when the server sent no `retry:` field."""
RECONNECT_MAX_DELAY = 5.0
"""Cap of the doubling delay: a live run should not be left unread for long."""


def event_from_sse(sse: ServerSentEvent) -> Event | None:
    """The typed run event an SSE message carries (through `domain.parse_event`); `None` for an empty one."""
    if not sse.data.strip():
        return None
    return parse_event(json.loads(sse.data))


def reconnect_delay(attempt: int, retry_ms: int | None) -> float:
    """Seconds to wait before reconnect number `attempt` (1-based).

    The server's `retry:` field wins; otherwise the delay doubles from
    `RECONNECT_INITIAL_DELAY` up to `RECONNECT_MAX_DELAY`.
    """
    if retry_ms is not None:
        return min(retry_ms / 1000, RECONNECT_MAX_DELAY)
    return min(RECONNECT_INITIAL_DELAY * 2 ** (attempt - 1), RECONNECT_MAX_DELAY)


def still_paused(run: Run, event: Event) -> bool:
    """Whether `run` (fetched after the `run.waiting` `event` was read) is still in the pause it announced."""
    return run.status is RunStatus.WAITING and run.last_seq <= event.seq


def _answered(accumulator: RunAccumulator, waits: list[Wait]) -> None:
    # Their `run.input_received` events follow; until then `stream.waiting` must not list them.
    for wait in waits:
        accumulator.open_waits.pop(wait.id, None)


def _gave_up(run_id: str | None, failures: int) -> _exc.APIConnectionError:
    return _exc.APIConnectionError(
        f"the event stream of run {run_id} ended {failures} times in a row without a new event; "
        f"resume with client.runs.stream_events(run_id, after_seq=stream.accumulator.last_seq)"
    )


def _closed_error() -> _exc.StreamClosedError:
    return _exc.StreamClosedError(
        "this stream is closed; open a new one with client.runs.stream_events(run_id, after_seq=...)"
    )


# --------------------------------------------------------------------------- sync


class RunStream:
    """Iterator of a run's `Event`s over SSE that reconnects by itself.

    Returned by `client.runs.stream(...)` and `client.runs.stream_events(...)`. Use it as a
    context manager so the connection is closed:

    ```python
    with client.runs.stream("Say hello", agent_id=agent.id) as stream:
        for event in stream:
            ...
        run = stream.final_run()
    ```

    If the connection drops before the terminal event, it reconnects to
    `GET /v1/runs/{id}/events` with `after_seq` set to the last seq it delivered, so no event
    is lost or repeated. Iteration ends after `run.completed`, `run.failed` or `run.cancelled`.

    A pause for a human arrives as a `RunWaiting` event. Answer it inside the loop and the
    iteration goes on; pull the next event while the run is still paused and the iteration ends,
    with `stream.waiting` listing the open waits. Iterate again after answering to go on:

    ```python
    with client.runs.stream("Plan my trip", agent_id=agent.id, human_in_the_loop=True) as stream:
        for event in stream:
            if isinstance(event, runyard.RunWaiting):
                client.runs.answer(stream.run_id, {"Where to?": "Lisbon"})
        run = stream.final_run()
    ```
    """

    def __init__(
        self,
        client: Runyard,
        *,
        run_id: str | None = None,
        after_seq: int = 0,
        connect: Callable[[], httpx.Response] | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
        tools: LocalTools | None = None,
    ) -> None:
        self._client = client
        self._tools = tools
        self._connect = connect
        self._max_reconnects = max_reconnects
        self.accumulator = RunAccumulator(run_id=run_id, after_seq=after_seq)
        """The snapshot of everything read so far."""
        self._iterator: Generator[Event, None, None] | None = None
        self._peeked: deque[Event] = deque()
        self._opened: httpx.Response | None = None
        self._closed = False
        self._paused = False

    @property
    def run_id(self) -> str | None:
        """The run's id; known after entering the context manager or reading the first event."""
        return self.accumulator.run_id

    @property
    def text(self) -> str:
        """The assistant text streamed so far (the `message.delta`s concatenated)."""
        return self.accumulator.text

    @property
    def last_seq(self) -> int:
        """The seq of the last event delivered."""
        return self.accumulator.last_seq

    @property
    def waiting(self) -> list[Wait]:
        """The open waits when the run is paused for a human (empty otherwise); truthy while paused."""
        return self.accumulator.waiting

    def __enter__(self) -> RunStream:
        self._opened = self._open()
        if self.accumulator.run_id is None:
            self._peek()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._peeked:
            return self._peeked.popleft()
        if self._closed:
            raise _closed_error()
        if self._iterator is None:
            self._paused = False
            self._iterator = self._iter_events()
        try:
            return next(self._iterator)
        except StopIteration:
            if self._paused:
                self._iterator = None  # iterating again goes on after the pause
            raise

    def until_done(self) -> RunStream:
        """Read (and drop) the remaining events, up to the terminal one or a pause."""
        if not self._paused:
            for _ in self:
                pass
        return self

    def final_run(self) -> Run:
        """Consume the rest of the stream (up to its end or a pause), then fetch and return the run."""
        if not self.accumulator.is_done:
            self.until_done()
        assert self.run_id is not None
        return self._client.runs.get(self.run_id)

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        self._closed = True
        if self._iterator is not None:
            self._iterator.close()
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def _peek(self) -> None:
        event = next(self, None)
        if event is not None:
            self._peeked.append(event)

    def _open(self) -> httpx.Response:
        if self._opened is not None:
            response, self._opened = self._opened, None
            return response
        if self.accumulator.run_id is None and self._connect is not None:
            # Nothing read yet: repeat the creating request; its idempotency key makes that safe.
            return self._connect()
        assert self.accumulator.run_id is not None
        return self._client._open_event_stream(self.accumulator.run_id, after_seq=self.accumulator.last_seq)

    def _iter_events(self) -> Generator[Event, None, None]:
        failures = 0
        while True:
            response = self._open()
            decoder = SSEDecoder()
            dropped: httpx.TransportError | None = None
            try:
                for chunk in response.iter_bytes():
                    for sse in decoder.feed(chunk):
                        event = event_from_sse(sse)
                        if event is None or not self.accumulator.add(event):
                            continue
                        failures = 0
                        yield event
                        if event.is_terminal:
                            return
                        # Checked once the caller pulls on, so an answer given in the loop body counts.
                        if event.type == "run.waiting" and self._still_paused(event):
                            self._paused = True
                            return
            except httpx.TransportError as exc:
                dropped = exc
            finally:
                response.close()
            if dropped is None and self._finished_on_server():
                return
            failures += 1
            if failures > self._max_reconnects:
                raise _gave_up(self.run_id, failures) from dropped
            time.sleep(reconnect_delay(failures, decoder.retry))

    def _finished_on_server(self) -> bool:
        # The server closed cleanly without a terminal event after our cursor: it is worth
        # reconnecting only if the run can still produce one.
        if self.accumulator.run_id is None:
            return False
        run = self._client.runs.get(self.accumulator.run_id)
        return run.is_terminal and run.last_seq <= self.accumulator.last_seq

    def _still_paused(self, event: Event) -> bool:
        # A `run.waiting` from the backlog may have been answered long ago: only a run that is
        # waiting with nothing after this event is paused here.
        run = self._client.runs.get(event.run_id)
        if self._tools is not None and still_paused(run, event):
            calls = self._tools.pending(self._client.runs.waits(event.run_id))
            if calls:
                run = self._client.runs._send_tool_results(event.run_id, self._tools.call_all(calls))
                _answered(self.accumulator, calls)
        return still_paused(run, event)


# --------------------------------------------------------------------------- async


class AsyncRunStream:
    """Async iterator of a run's `Event`s over SSE that reconnects by itself.

    Returned by `client.runs.stream(...)` and `client.runs.stream_events(...)` of `AsyncRunyard`:

    ```python
    async with client.runs.stream("Say hello", agent_id=agent.id) as stream:
        async for event in stream:
            ...
        run = await stream.final_run()
    ```

    It behaves exactly like `RunStream`, with `await` where that does I/O.
    """

    def __init__(
        self,
        client: AsyncRunyard,
        *,
        run_id: str | None = None,
        after_seq: int = 0,
        connect: Callable[[], Awaitable[httpx.Response]] | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
        tools: LocalTools | None = None,
    ) -> None:
        self._client = client
        self._tools = tools
        self._connect = connect
        self._max_reconnects = max_reconnects
        self.accumulator = RunAccumulator(run_id=run_id, after_seq=after_seq)
        """The snapshot of everything read so far."""
        self._iterator: AsyncGenerator[Event, None] | None = None
        self._peeked: deque[Event] = deque()
        self._opened: httpx.Response | None = None
        self._closed = False
        self._paused = False

    @property
    def run_id(self) -> str | None:
        """The run's id; known after entering the context manager or reading the first event."""
        return self.accumulator.run_id

    @property
    def text(self) -> str:
        """The assistant text streamed so far (the `message.delta`s concatenated)."""
        return self.accumulator.text

    @property
    def last_seq(self) -> int:
        """The seq of the last event delivered."""
        return self.accumulator.last_seq

    @property
    def waiting(self) -> list[Wait]:
        """The open waits when the run is paused for a human (empty otherwise); truthy while paused."""
        return self.accumulator.waiting

    async def __aenter__(self) -> AsyncRunStream:
        self._opened = await self._open()
        if self.accumulator.run_id is None:
            await self._peek()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._peeked:
            return self._peeked.popleft()
        if self._closed:
            raise _closed_error()
        if self._iterator is None:
            self._paused = False
            self._iterator = self._iter_events()
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            if self._paused:
                self._iterator = None  # iterating again goes on after the pause
            raise

    async def until_done(self) -> AsyncRunStream:
        """Read (and drop) the remaining events, up to the terminal one or a pause."""
        if not self._paused:
            async for _ in self:
                pass
        return self

    async def final_run(self) -> Run:
        """Consume the rest of the stream (up to its end or a pause), then fetch and return the run."""
        if not self.accumulator.is_done:
            await self.until_done()
        assert self.run_id is not None
        return await self._client.runs.get(self.run_id)

    async def aclose(self) -> None:
        """Close the connection. Safe to call twice."""
        self._closed = True
        if self._iterator is not None:
            await self._iterator.aclose()
        if self._opened is not None:
            await self._opened.aclose()
            self._opened = None

    async def _peek(self) -> None:
        try:
            self._peeked.append(await self.__anext__())
        except StopAsyncIteration:
            pass

    async def _open(self) -> httpx.Response:
        if self._opened is not None:
            response, self._opened = self._opened, None
            return response
        if self.accumulator.run_id is None and self._connect is not None:
            # Nothing read yet: repeat the creating request; its idempotency key makes that safe.
            return await self._connect()
        assert self.accumulator.run_id is not None
        return await self._client._open_event_stream(self.accumulator.run_id, after_seq=self.accumulator.last_seq)

    async def _iter_events(self) -> AsyncGenerator[Event, None]:
        failures = 0
        while True:
            response = await self._open()
            decoder = SSEDecoder()
            dropped: httpx.TransportError | None = None
            try:
                async for chunk in response.aiter_bytes():
                    for sse in decoder.feed(chunk):
                        event = event_from_sse(sse)
                        if event is None or not self.accumulator.add(event):
                            continue
                        failures = 0
                        yield event
                        if event.is_terminal:
                            return
                        # Checked once the caller pulls on, so an answer given in the loop body counts.
                        if event.type == "run.waiting" and await self._still_paused(event):
                            self._paused = True
                            return
            except httpx.TransportError as exc:
                dropped = exc
            finally:
                await response.aclose()
            if dropped is None and await self._finished_on_server():
                return
            failures += 1
            if failures > self._max_reconnects:
                raise _gave_up(self.run_id, failures) from dropped
            await asyncio.sleep(reconnect_delay(failures, decoder.retry))

    async def _finished_on_server(self) -> bool:
        # The server closed cleanly without a terminal event after our cursor: it is worth
        # reconnecting only if the run can still produce one.
        if self.accumulator.run_id is None:
            return False
        run = await self._client.runs.get(self.accumulator.run_id)
        return run.is_terminal and run.last_seq <= self.accumulator.last_seq

    async def _still_paused(self, event: Event) -> bool:
        run = await self._client.runs.get(event.run_id)
        if self._tools is not None and still_paused(run, event):
            calls = self._tools.pending(await self._client.runs.waits(event.run_id))
            if calls:
                run = await self._client.runs._send_tool_results(event.run_id, await self._tools.acall_all(calls))
                _answered(self.accumulator, calls)
        return still_paused(run, event)
