"""The tool journal: every tool call a run made, by call id, with its arguments' hash and result.

On resume a journaled call is replayed, not re-executed (invariant 5). The hash makes sure the
replay answers the same call: the same id with other arguments is refused, never replayed.
Entries are written in the fenced transaction that appends the call's `tool.result` event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import insert, select

from .db import Conn, utcnow
from .schema import runs, tool_calls

__all__ = ["Entry", "JournalMismatch", "args_hash", "lookup", "record"]


class JournalMismatch(Exception):
    """A journaled tool call id came back with another tool or other arguments: replaying its
    result would answer a call that was never made, so the run fails instead."""


def args_hash(args: Any) -> str:
    # Validated arguments may hold models or datetimes: hash their JSON form, keys sorted.
    return hashlib.sha256(json.dumps(to_jsonable_python(args, fallback=str), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One journaled tool call: what a resumed run replays instead of calling the tool again."""

    tool_call_id: str
    name: str
    args_hash: str
    result: Any
    is_error: bool

    @classmethod
    def of(cls, tool_call_id: str, name: str, args: Any, result: Any, *, is_error: bool) -> Entry:
        return cls(tool_call_id, name, args_hash(args), result, is_error)

    def check(self, name: str, args: Any) -> None:
        """Raise `JournalMismatch` unless this entry records a call of `name` with `args`."""
        if name != self.name:
            raise JournalMismatch(
                f"tool call {self.tool_call_id} was journaled as a call of {self.name!r}, not {name!r}: "
                "refusing to replay its result"
            )
        if args_hash(args) != self.args_hash:
            raise JournalMismatch(
                f"tool call {self.tool_call_id} was journaled with other arguments: refusing to replay its result"
            )


async def lookup(conn: Conn, org_id: str, run_id: str, tool_call_id: str) -> Entry | None:
    """The journal entry of a call the run already made, or None (also for a run of another org)."""
    of_org = select(runs.c.id).where(runs.c.id == run_id, runs.c.org_id == org_id).exists()
    row = (
        await conn.execute(
            select(tool_calls.c.name, tool_calls.c.args_hash, tool_calls.c.result, tool_calls.c.is_error).where(
                tool_calls.c.run_id == run_id, tool_calls.c.tool_call_id == tool_call_id, of_org
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return Entry(tool_call_id, row.name, row.args_hash, row.result, bool(row.is_error))


async def record(conn: Conn, org_id: str, run_id: str, entry: Entry) -> None:
    """Journal a call, inside the fenced transaction that appends its event: the fence (held for
    a run of `org_id`) scopes the write, so the org is taken for symmetry with `lookup`."""
    await conn.execute(
        insert(tool_calls),
        [
            {
                "run_id": run_id,
                "tool_call_id": entry.tool_call_id,
                "name": entry.name,
                "args_hash": entry.args_hash,
                "result": entry.result,
                "is_error": entry.is_error,
                "created_at": utcnow(),
            }
        ],
    )
