"""Server-sent events: a pure decoder, an event accumulator, and the sync/async run streams.

The decoder follows the WHATWG SSE parsing rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end in CRLF, LF or CR; `:` starts a comment (the server's `: ping` heartbeat); `data:`
lines join with "\\n"; a blank line dispatches; `id:` persists across events until replaced,
which is what lets a dropped stream resume with `Last-Event-ID`.

`SSEDecoder` and `RunAccumulator` do no I/O, so they can be driven by hand or by tests.
`RunStream` and `AsyncRunStream` add only the reading, the reconnecting and the sleeping.

A run that pauses for a human (`run.waiting`, parsed as `RunWaiting`) ends the iteration once
the caller pulls past that event while the run is still paused; `stream.waiting` then lists
the open waits. Answer them, and iterate the same stream again to go on from there.
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from . import _exceptions as _exc
from ._events import RunWaiting, event_from_json
from .domain import Event, Run, RunStatus, Usage, Wait

if TYPE_CHECKING:
    from ._client import AsyncRunyard, Runyard

__all__ = ["AsyncRunStream", "RunAccumulator", "RunStream", "SSEDecoder", "ServerSentEvent"]

DEFAULT_MAX_RECONNECTS = 5
"""How many times in a row a stream may drop without delivering a new event before it gives up."""
RECONNECT_INITIAL_DELAY = 0.25
"""Seconds before the first reconnect, when the server sent no `retry:` field."""
RECONNECT_MAX_DELAY = 5.0
"""Cap of the doubling delay: a live run should not be left unread for long."""


# --------------------------------------------------------------------------- decoder


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched server-sent event, before its `data` is parsed."""

    event: str = "message"
    """The `event:` field; "message" when the server sent none."""
    data: str = ""
    """The `data:` lines joined with "\\n"."""
    id: str | None = None
    """The last event id in force when this event was dispatched."""
    retry: int | None = None
    """The last `retry:` value (milliseconds) the server sent on this connection."""


class SSEDecoder:
    """Incremental, I/O-free SSE parser.

    Feed it bytes with `feed()` (or lines with `decode()`); it returns the events completed so
    far. `last_event_id` and `retry` survive across events, as the spec requires.

    ```python
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\\nevent: run.queued\\ndata: {}\\n\\n")
    # [ServerSentEvent(event='run.queued', data='{}', id='1', retry=None)]
    ```
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        """The `id:` of the latest event (kept across events and blank lines)."""
        self.retry: int | None = None
        """The server's reconnection delay in milliseconds, if it sent one."""
        self._event = ""
        self._data: list[str] = []
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._started = False

    def decode(self, line: str) -> ServerSentEvent | None:
        """Process one line (without its line ending); return an event when `line` dispatches one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. the ": ping" heartbeat
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:  # the spec ignores ids containing NUL
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        # Any other field name is ignored, as the spec says.
        return None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Process a chunk of bytes, split anywhere (even inside a UTF-8 sequence or a CRLF)."""
        text = self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        return self._feed_text(text)

    def flush(self) -> list[ServerSentEvent]:
        """Finish the input. An unterminated last line, and an event without its blank line, are dropped."""
        events = self._feed_text(self._text.decode(b"", final=True))
        pending, self._pending = self._pending, ""
        if pending.endswith("\r"):  # a complete line whose CR had no LF after it
            event = self.decode(pending[:-1])
            if event is not None:
                events.append(event)
        self._event, self._data = "", []
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        buffer = self._pending + text
        # A trailing CR may be the first half of a CRLF split across chunks: keep it back.
        hold_cr = buffer.endswith("\r")
        if hold_cr:
            buffer = buffer[:-1]
        lines = buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._pending = lines.pop() + ("\r" if hold_cr else "")
        events = []
        for line in lines:
            event = self.decode(line)
            if event is not None:
                events.append(event)
        return events

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            event=event or "message", data="\n".join(data), id=self.last_event_id, retry=self.retry
        )


def parse_event(sse: ServerSentEvent) -> Event | None:
    """Turn an SSE message into a run `Event`; `None` for a message with no envelope."""
    if not sse.data.strip():
        return None
    return event_from_json(sse.data)


# --------------------------------------------------------------------------- accumulator

_STATUS_BY_EVENT = {
    "run.queued": RunStatus.PENDING,
    "run.started": RunStatus.RUNNING,
    "run.waiting": RunStatus.WAITING,
    "run.completed": RunStatus.COMPLETED,
    "run.failed": RunStatus.FAILED,
    "run.cancelled": RunStatus.CANCELLED,
}


class RunAccumulator:
    """Folds a run's events into a snapshot: text so far, status, output, usage, tool calls.

    It does no I/O; both stream classes feed it, and you can feed it events you got elsewhere
    (for example from the JSON events endpoint). Events at or below `last_seq` are ignored, so
    replays after a reconnect are harmless.

    ```python
    acc = RunAccumulator()
    for event in events:
        acc.add(event)
    print(acc.status, acc.text)
    ```
    """

    def __init__(self, *, run_id: str | None = None, after_seq: int = 0) -> None:
        self.run_id = run_id
        """The run the events belong to (taken from the first event when not given)."""
        self.last_seq = after_seq
        """The highest `seq` folded in so far; resume a stream with `after_seq=last_seq`."""
        self.status: RunStatus | None = None
        """The status the events imply, or `None` before the first lifecycle event."""
        self.text = ""
        """The assistant's text: every `message.delta` concatenated."""
        self.reasoning = ""
        """Every `reasoning.delta` concatenated."""
        self.output: Any = None
        """`run.completed`'s `output`."""
        self.error: str | None = None
        """`run.failed`'s `error`."""
        self.usage: Usage | None = None
        """The latest usage the run reported."""
        self.tool_calls: list[dict[str, Any]] = []
        """The data of each `tool.call` event, in order."""
        self.cancel_requested = False
        """Whether a `run.cancel_requested` event was seen."""
        self.terminal_event: Event | None = None
        """The `run.completed`, `run.failed` or `run.cancelled` event, once seen."""
        self.open_waits: dict[str, Wait] = {}
        """The waits of the current pause not answered yet, by id (empty unless `status` is `waiting`)."""
        self._message_has_deltas = False

    @property
    def is_done(self) -> bool:
        """Whether the terminal event was seen; no event follows it."""
        return self.terminal_event is not None

    @property
    def waiting(self) -> list[Wait]:
        """The open waits of the run's current pause, oldest first; empty when it is not paused."""
        return list(self.open_waits.values())

    def add(self, event: Event) -> bool:
        """Fold one event in. Return False (and change nothing) when it was already seen."""
        if event.seq <= self.last_seq:
            return False
        if self.run_id is None:
            self.run_id = event.run_id
        self.last_seq = event.seq
        data = event.data
        status = _STATUS_BY_EVENT.get(event.type)
        if status is not None:
            self.status = status
        if event.type == "message.delta":
            self.text += str(data.get("delta", ""))
            self._message_has_deltas = True
        elif event.type == "message.completed":
            # A model that does not stream sends only the completed message; keep its text too.
            if not self._message_has_deltas:
                self.text += str(data.get("text", ""))
            self._message_has_deltas = False
        elif event.type == "reasoning.delta":
            self.reasoning += str(data.get("delta", ""))
        elif event.type == "tool.call":
            self.tool_calls.append(data)
        elif event.type == "usage":
            self.usage = Usage.model_validate(data.get("usage", data))
        elif event.type == "run.cancel_requested":
            self.cancel_requested = True
        elif event.type == "run.completed":
            self.output = data.get("output")
            if data.get("usage") is not None:
                self.usage = Usage.model_validate(data["usage"])
        elif event.type == "run.failed":
            self.error = data.get("error")
        elif isinstance(event, RunWaiting):
            self.open_waits.update((w.id, w) for w in event.waits)
        elif event.type == "run.input_received":
            self.open_waits.pop(str(data.get("wait_id")), None)
            if not self.open_waits and self.status is RunStatus.WAITING:
                self.status = RunStatus.PENDING  # the answer requeues the run
        if event.type == "run.started" or event.is_terminal:
            self.open_waits.clear()
        if event.is_terminal:
            self.terminal_event = event
        return True


def reconnect_delay(attempt: int, retry_ms: int | None) -> float:
    """Seconds to wait before reconnect number `attempt` (1-based).

    The server's `retry:` field wins; otherwise the delay doubles from
    `RECONNECT_INITIAL_DELAY` up to `RECONNECT_MAX_DELAY`.
    """
    if retry_ms is not None:
        return min(retry_ms / 1000, RECONNECT_MAX_DELAY)
    return min(RECONNECT_INITIAL_DELAY * 2 ** (attempt - 1), RECONNECT_MAX_DELAY)


def still_paused(run: Run, event: RunWaiting) -> bool:
    """Whether `run` (fetched after `event` was read) is still in the pause `event` announced."""
    return run.status is RunStatus.WAITING and run.last_seq <= event.seq


def _gave_up(run_id: str | None, failures: int) -> _exc.APIConnectionError:
    return _exc.APIConnectionError(
        f"the event stream of run {run_id} ended {failures} times in a row without a new event; "
        f"resume with client.runs.stream_events(run_id, after_seq=stream.accumulator.last_seq)"
    )


def _closed_error() -> _exc.StreamClosedError:
    return _exc.StreamClosedError(
        "this stream is closed; open a new one with client.runs.stream_events(run_id, after_seq=...)"
    )


# --------------------------------------------------------------------------- sync stream


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
    ) -> None:
        self._client = client
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
                        event = parse_event(sse)
                        if event is None or not self.accumulator.add(event):
                            continue
                        failures = 0
                        yield event
                        if event.is_terminal:
                            return
                        # Checked once the caller pulls on, so an answer given in the loop body counts.
                        if isinstance(event, RunWaiting) and self._still_paused(event):
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

    def _still_paused(self, event: RunWaiting) -> bool:
        # A `run.waiting` from the backlog may have been answered long ago: only a run that is
        # waiting with nothing after this event is paused here.
        return still_paused(self._client.runs.get(event.run_id), event)


# --------------------------------------------------------------------------- async stream


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
    ) -> None:
        self._client = client
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
                        event = parse_event(sse)
                        if event is None or not self.accumulator.add(event):
                            continue
                        failures = 0
                        yield event
                        if event.is_terminal:
                            return
                        # Checked once the caller pulls on, so an answer given in the loop body counts.
                        if isinstance(event, RunWaiting) and await self._still_paused(event):
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

    async def _still_paused(self, event: RunWaiting) -> bool:
        return still_paused(await self._client.runs.get(event.run_id), event)
