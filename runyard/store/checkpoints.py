"""Conversation checkpoints and the tool journal: what lets a run resume without repeating work."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import insert, select, update

from .db import Conn, utcnow
from .schema import checkpoints, tool_calls

__all__ = ["args_hash", "journaled", "load", "load_with_history_len", "record_tool", "save"]


async def load(conn: Conn, run_id: str) -> str | None:
    row = (await conn.execute(select(checkpoints.c.messages).where(checkpoints.c.run_id == run_id))).one_or_none()
    return row.messages if row is not None else None


async def load_with_history_len(conn: Conn, run_id: str) -> tuple[str, int] | None:
    row = (await conn.execute(
        select(checkpoints.c.messages, checkpoints.c.history_len).where(checkpoints.c.run_id == run_id)
    )).one_or_none()
    return (row.messages, row.history_len) if row is not None else None


async def save(conn: Conn, run_id: str, attempt: int, messages: str, *, history_len: int = 0) -> None:
    """Write the conversation so far; call inside the fenced transaction that appends events."""
    now = utcnow()
    values = {"messages": messages, "attempt": attempt, "updated_at": now, "history_len": history_len}
    result = await conn.execute(update(checkpoints).where(checkpoints.c.run_id == run_id).values(**values))
    if result.rowcount == 0:
        await conn.execute(insert(checkpoints).values(run_id=run_id, **values))


def args_hash(args: Any) -> str:
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()


async def journaled(conn: Conn, run_id: str, tool_call_id: str) -> Any | None:
    """The journal entry of a tool call that already ran, or None."""
    row = (
        await conn.execute(
            select(tool_calls.c.result, tool_calls.c.is_error, tool_calls.c.args_hash).where(
                tool_calls.c.run_id == run_id, tool_calls.c.tool_call_id == tool_call_id
            )
        )
    ).one_or_none()
    return row


async def record_tool(
    conn: Conn, run_id: str, tool_call_id: str, name: str, args: Any, result: Any, *, is_error: bool
) -> None:
    await conn.execute(
        insert(tool_calls).values(
            run_id=run_id, tool_call_id=tool_call_id, name=name, args_hash=args_hash(args),
            result=result, is_error=is_error, created_at=utcnow(),
        )
    )
