"""Typed run events: the envelopes whose `data` the SDK parses further.

Every event is an `Event`; the types listed in `EVENT_CLASSES` arrive as a subclass with typed
accessors, so `isinstance(event, RunWaiting)` picks out a pause without string compares.
"""

from __future__ import annotations

import json
from typing import Literal

from .domain import Event, Wait, WaitKind

__all__ = ["EVENT_CLASSES", "RunWaiting", "event_from_json"]


class RunWaiting(Event):
    """The `run.waiting` event: the run paused for a human and released its worker.

    ```python
    for event in stream:
        if isinstance(event, runyard.RunWaiting):
            for wait in event.waits:
                print(wait.kind, wait.request)
    ```
    """

    type: Literal["run.waiting"] = "run.waiting"

    @property
    def waiting_for(self) -> WaitKind | None:
        """What the run waits for: `question`, `approval` or `input`."""
        return self.data.get("waiting_for")

    @property
    def waits(self) -> list[Wait]:
        """The waits the run opened at this pause (their `status` is `open` as of this event)."""
        return [Wait.model_validate(w) for w in self.data.get("waits") or []]


EVENT_CLASSES: dict[str, type[Event]] = {"run.waiting": RunWaiting}
"""Event types parsed into a subclass of `Event`; any other type stays a plain `Event`."""


def event_from_json(text: str | bytes) -> Event:
    """Parse one event envelope, as the subclass its `type` calls for."""
    raw = json.loads(text)
    cls = EVENT_CLASSES.get(raw.get("type") if isinstance(raw, dict) else None, Event)
    return cls.model_validate(raw)
