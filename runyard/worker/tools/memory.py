"""`save_memory` / `forget_memory`: offered when a run has a `user_id` and `memory` on.

Neither writes on its own: each stages its write on the call's context, and the journal commits
it with the call's result and journal entry in one transaction. A crash before that commit leaves
nothing (the resumed run makes the call again); after it, the resumed run replays the entry.
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
from .context import ToolCallContext, current_tool_call

__all__ = ["MEMORY_TOOLS", "forget_memory", "save_memory"]


def _call() -> ToolCallContext:
    call = current_tool_call.get()
    if call is None:
        raise RuntimeError("memory tools stage their writes on the call: run them through the run's JournalToolset")
    return call


async def save_memory(ctx: RunContext[Any], text: str) -> str:
    """Remember a durable fact about the user (a preference, a detail) for future runs."""
    run = ctx.deps.run
    if not text.strip() or len(text) > 4000:
        raise ToolFailed("text must be 1 to 4000 characters")
    memory_id = new_id("mem")

    async def insert(tx: Tx) -> None:
        await memories.create(tx.conn, run.org_id, run.user_id, text, run_id=run.id, id=memory_id)

    _call().write_with_result(insert, ("memory.saved", {"memory_id": memory_id, "user_id": run.user_id, "text": text}))
    return f"saved as {memory_id}"


async def forget_memory(ctx: RunContext[Any], memory_id: str) -> str:
    """Forget a saved fact about the user, by its id (ids are listed in the instructions)."""
    run = ctx.deps.run

    async def remove(tx: Tx) -> None:
        try:
            await memories.delete_(tx.conn, run.org_id, run.user_id, memory_id)
        except NotFound:
            # Raised inside the journal's transaction: it rolls back, and the call is journaled as failed.
            raise ToolFailed(f"no memory {memory_id} for this user") from None

    _call().write_with_result(remove, ("memory.deleted", {"memory_id": memory_id, "user_id": run.user_id}))
    return f"forgot {memory_id}"


MEMORY_TOOLS = {"save_memory": save_memory, "forget_memory": forget_memory}
