"""Opaque list cursors and the one page query shared by every list endpoint."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from sqlalchemy import Select, Table, func, or_

from .errors import InvalidCursor

__all__ = ["decode_cursor", "encode_cursor", "finish", "metadata_matches", "page"]


_ID = re.compile(r"[a-z]{2,8}_[0-9a-z]{1,60}")
"""What an id this server issued looks like (`run_01…`): anything else was never a cursor of ours."""


def encode_cursor(id: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith("v1:") or len(raw) > 80 or not _ID.fullmatch(raw[3:]):
        raise InvalidCursor(f"{field} is not a cursor this server issued", field=field)
    return raw[3:]


def metadata_matches(column: Any, key: str, value: str, dialect: str) -> Any:
    """`metadata[key]=value` as SQL: the JSON value's text equals `value`."""
    condition = column[key].as_string() == value
    if value in ("true", "false") and dialect == "sqlite":
        # SQLite's json_extract reads JSON true/false as 1/0; PostgreSQL's ->> says 'true'.
        condition = or_(condition, func.json_type(column, f'$."{key}"') == value)
    return condition


def page(query: Select, table: Table, *, limit: int, before: str | None, after: str | None) -> tuple[Select, Any]:
    """Newest first: `before` pages to older items, `after` to newer ones (ids sort by time)."""
    id_col = table.c.id
    if before is not None:
        query = query.where(id_col < decode_cursor(before, "before"))
    if after is not None:
        query = query.where(id_col > decode_cursor(after, "after"))
        return query.order_by(id_col.asc()).limit(limit + 1), True
    return query.order_by(id_col.desc()).limit(limit + 1), False


def finish(rows: list[Any], *, limit: int, ascending: bool) -> tuple[list[Any], bool, str | None]:
    """Trim the extra row `page` asked for; `next_cursor` continues in the same direction
    (pass it as `before` after a `before` page, as `after` after an `after` page)."""
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if rows and has_more else None
    if ascending:
        rows.reverse()
    return rows, has_more, next_cursor
