"""The options every client command takes, and the SDK client they make."""

from __future__ import annotations

from typing import Annotated

import typer

from runyard import Runyard

__all__ = ["LIST_PAGE_SIZE", "ApiKey", "AsJson", "BaseUrl", "connect", "split_list"]

BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", envvar="RUNYARD_BASE_URL", help="Server URL (default: http://127.0.0.1:8321)."),
]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="RUNYARD_API_KEY", help="API key.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a human-readable view.")]

LIST_PAGE_SIZE = 100
"""Items fetched per request by the `list` commands (the server's maximum)."""


def connect(base_url: str | None, api_key: str | None) -> Runyard:
    """The SDK client of a command (`None` falls back to the environment, then the default)."""
    return Runyard(base_url=base_url, api_key=api_key)


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated option as a list, blanks dropped; `None` when the option was not given."""
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]
