"""`RunAccumulator`: folds a run's events into a snapshot, with no I/O."""

from __future__ import annotations

from typing import Any

from .._events import Event
from ..domain import RunStatus, Usage, Wait

__all__ = ["RunAccumulator"]

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
    (for example from `client.runs.list_events`). Events at or below `last_seq` are ignored, so
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
        """The assistant's text: every `message.delta` concatenated (but those a `message.reset` voided)."""
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
        self._response_starts = (0, 0)  # where the response being streamed began in text and reasoning

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
        elif event.type == "message.reset":
            # The response broke off and is requested again: its deltas so far will be streamed anew.
            text_start, reasoning_start = self._response_starts
            self.text, self.reasoning = self.text[:text_start], self.reasoning[:reasoning_start]
            self._message_has_deltas = False
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
        elif event.type == "run.waiting":
            waits = (Wait.model_validate(raw) for raw in data.get("waits") or [])
            self.open_waits.update((wait.id, wait) for wait in waits)
        elif event.type == "run.input_received":
            self.open_waits.pop(str(data.get("wait_id")), None)
            if not self.open_waits and self.status is RunStatus.WAITING:
                self.status = RunStatus.PENDING  # the answer requeues the run
        if event.type in ("run.started", "usage"):
            self._response_starts = (len(self.text), len(self.reasoning))
        if event.type == "run.started" or event.is_terminal:
            self.open_waits.clear()
        if event.is_terminal:
            self.terminal_event = event
        return True
