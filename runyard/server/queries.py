"""Query parameters shared by the list endpoints, and the rule that refuses unknown ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant

from ..domain import RunStatus
from ..store.errors import InvalidInput
from .limits import Limits, check_text

__all__ = [
    "SEED_STATUSES",
    "After",
    "Before",
    "Limit",
    "MetadataFilters",
    "Seq",
    "parse_statuses",
    "strict_query",
]

Limit = Annotated[int, Query(ge=1, le=Limits.PAGE_MAX, description="Page size.")]
Before = Annotated[str | None, Query(max_length=200, description="Cursor: older items.")]
After = Annotated[str | None, Query(max_length=200, description="Cursor: newer items.")]
Seq = Annotated[int | None, Query(ge=0, le=Limits.INT64_MAX, description="Events after this seq.")]

METADATA_PREFIX = "metadata["


def metadata_filters(request: Request) -> dict[str, str]:
    """`metadata[key]=value` query parameters as `{key: value}`."""
    filters = {}
    for key, value in request.query_params.multi_items():
        if key.startswith(METADATA_PREFIX) and key.endswith("]"):
            name = key[len(METADATA_PREFIX) : -1]
            if not name or len(name) > 100:
                raise InvalidInput("metadata filters look like metadata[key]=value", field=key)
            filters[name] = value
    return filters


MetadataFilters = Annotated[dict[str, str], Depends(metadata_filters)]

SEED_STATUSES = {
    "awaiting_approval": ("waiting", ["approval"]),
    "waiting_for_input": ("waiting", ["question", "input", "tool_result"]),
}
"""The seeds' status names, as (status, waiting_for) filters."""


def parse_statuses(values: list[str] | None) -> list[tuple[RunStatus, list[str] | None]] | None:
    if not values:
        return None
    out: list[tuple[RunStatus, list[str] | None]] = []
    for value in values:
        if value in SEED_STATUSES:
            status, waiting_for = SEED_STATUSES[value]
            out.append((RunStatus(status), waiting_for))
            continue
        try:
            out.append((RunStatus(value), None))
        except ValueError:
            names = ", ".join([*(s.value for s in RunStatus), *SEED_STATUSES])
            raise InvalidInput(f"status {value!r} is not one of {names}", field="status") from None
    return out


def _declared(dependant: Dependant) -> tuple[set[str], bool]:
    """The query parameter names a route declares (with its dependencies), and whether it reads metadata filters."""
    names = {param.alias for param in dependant.query_params}
    takes_metadata = dependant.call is metadata_filters
    for sub in dependant.dependencies:
        sub_names, sub_metadata = _declared(sub)
        names |= sub_names
        takes_metadata = takes_metadata or sub_metadata
    return names, takes_metadata


_DECLARED: dict[int, tuple[set[str], bool]] = {}


async def strict_query(request: Request) -> None:
    """A misspelt filter must not silently widen a list: unknown query parameters are a 422.
    Query values and path parameters obey the same text rules as bodies (no NUL)."""
    route: Any = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    key = id(route)
    if key not in _DECLARED:
        _DECLARED[key] = _declared(route.dependant)
    names, takes_metadata = _DECLARED[key]
    for name, value in request.query_params.multi_items():
        if name not in names and not (takes_metadata and name.startswith(METADATA_PREFIX)):
            known = ", ".join(sorted(names)) or "none"
            raise InvalidInput(f"unknown query parameter {name!r} (this endpoint takes: {known})", field=name)
        check_text(value, name)
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_text(value, name)
