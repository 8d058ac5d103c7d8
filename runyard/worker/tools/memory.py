"""`save_memory` / `forget_memory`: offered when a run has a `user_id` and `memory` on.

`ctx.deps` is the run's `RunDeps` (typed `Any` here: agents.py imports this module).
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ToolFailed

from ...store import memories
from ...store.db import Tx
from ...store.errors import NotFound
from ...store.ids import new_id

__all__ = ["MEMORY_TOOLS", "forget_memory", "save_memory"]


async def save_memory(ctx: RunContext[Any], text: str) -> str:
    """Remember a durable fact about the user (a preference, a detail) for future runs."""
    deps = ctx.deps
    if not text.strip() or len(text) > 4000:
        raise ToolFailed("text must be 1 to 4000 characters")
    memory_id = new_id("mem")

    async def insert(tx: Tx) -> None:
        await memories.create(tx.conn, deps.org_id, deps.user_id, text, run_id=deps.run_id, id=memory_id)

    # The memory and its event commit together; on resume the journal replays this call.
    event = ("memory.saved", {"memory_id": memory_id, "user_id": deps.user_id, "text": text})
    await deps.writer.flush(event, also=insert)
    return f"saved as {memory_id}"


async def forget_memory(ctx: RunContext[Any], memory_id: str) -> str:
    """Forget a saved fact about the user, by its id (ids are listed in the instructions)."""
    deps = ctx.deps

    async def remove(tx: Tx) -> None:
        try:
            await memories.delete_(tx.conn, deps.org_id, deps.user_id, memory_id)
        except NotFound:
            raise ToolFailed(f"no memory {memory_id} for this user") from None

    await deps.writer.flush(("memory.deleted", {"memory_id": memory_id, "user_id": deps.user_id}), also=remove)
    return f"forgot {memory_id}"


MEMORY_TOOLS = {"save_memory": save_memory, "forget_memory": forget_memory}
