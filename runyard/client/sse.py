"""The server-sent events decoder: bytes in, `ServerSentEvent`s out, and no I/O.

It follows the WHATWG SSE parsing rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end in CRLF, LF or CR; `:` starts a comment (the server's `: ping` heartbeat); `data:`
lines join with "\\n"; a blank line dispatches; `id:` persists across events until replaced,
which is what lets a dropped stream resume with `Last-Event-ID`.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]


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
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=self.last_event_id, retry=self.retry)
