"""The `NOT_GIVEN` sentinel, which keeps "argument not passed" apart from `None`.

`None` is a value the caller chose (for example, clearing an agent's `input_schema`);
`NOT_GIVEN` means the field is left out of the request body, so the server keeps its default
or, for an update, the current value.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeVar

__all__ = ["NOT_GIVEN", "NotGiven", "NotGivenOr", "strip_not_given"]

_T = TypeVar("_T")


class NotGiven:
    """The type of `NOT_GIVEN`: an argument the caller did not pass.

    ```python
    client.agents.update("agt_123", instructions=None)  # sends {"instructions": null}
    client.agents.update("agt_123")                     # sends {}
    ```
    """

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        # One instance, so `is NOT_GIVEN` is the only check anyone needs.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()
"""Default of every optional request field: leave the field out of the request."""

NotGivenOr = _T | NotGiven


def strip_not_given(values: dict[str, Any]) -> dict[str, Any]:
    """Return `values` without the entries whose value is `NOT_GIVEN`."""
    return {key: value for key, value in values.items() if value is not NOT_GIVEN}
