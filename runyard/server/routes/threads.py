"""`/v1/threads`: conversations that runs belong to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic_ai.messages import (
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from ...domain import Thread, ThreadMessage
from ...store import threads
from ...worker.humans import own_messages
from ..auth import org_id
from ..errors import ERRORS
from ..queries import After, Before, Limit, MetadataFilters
from ..schemas import Deleted, ThreadCreate, ThreadList
from .files import discard

router = APIRouter(prefix="/v1/threads", tags=["threads"], responses=ERRORS)


@router.post("", response_model=Thread, status_code=201)
async def create_thread(body: ThreadCreate, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.tx() as tx:
        return await threads.create(tx.conn, org, user_id=body.user_id, metadata=body.metadata)


@router.get("", response_model=ThreadList)
async def list_threads(
    request: Request,
    metadata: MetadataFilters,
    org: str = Depends(org_id),
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
    user_id: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    """Threads of the caller's org, newest first; filter by `user_id` and `metadata[key]=value`."""
    async with request.app.state.store.read() as conn:
        data, has_more, cursor = await threads.list_(
            conn, org, limit=limit, before=before, after=after, user_id=user_id, metadata=metadata
        )
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/{thread_id}", response_model=Thread)
async def get_thread(thread_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        return await threads.get(conn, org, thread_id)


@router.delete("/{thread_id}", response_model=Deleted)
async def delete_thread(thread_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Delete a thread with its runs, their logs and its files; 409 while one of its runs is active."""
    async with request.app.state.store.tx() as tx:
        keys = await threads.delete_(tx.conn, org, thread_id)
    # After commit: a rolled-back delete must not have lost the content (S3; the database's went with the rows).
    await discard(request, org, keys, thread_id=thread_id)
    return {"id": thread_id, "object": "thread", "deleted": True}


@router.get("/{thread_id}/messages", response_model=list[ThreadMessage])
async def thread_messages(thread_id: str, request: Request, org: str = Depends(org_id)) -> list[dict[str, Any]]:
    """The thread's conversation in order, each message with the run it came from."""
    async with request.app.state.store.read() as conn:
        await threads.get(conn, org, thread_id)
        conversations = await threads.conversations(conn, org, thread_id)
    out: list[dict[str, Any]] = []
    for run_id, blob, history_len in conversations:
        for message in own_messages(ModelMessagesTypeAdapter.validate_json(blob), history_len):
            out.extend(_flatten(run_id, message))
    return out


def _flatten(run_id: str, message: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(message, ModelRequest):
        for part in message.parts:
            if isinstance(part, UserPromptPart):
                out.append({"run_id": run_id, "role": "user", "content": part.content, "created_at": part.timestamp})
            elif isinstance(part, ToolReturnPart):
                out.append(
                    {
                        "run_id": run_id,
                        "role": "tool",
                        "content": part.model_response_str(),
                        "tool_name": part.tool_name,
                        "tool_call_id": part.tool_call_id,
                        "created_at": part.timestamp,
                    }
                )
    elif isinstance(message, ModelResponse):
        text = "".join(p.content for p in message.parts if isinstance(p, TextPart))
        if text:
            out.append({"run_id": run_id, "role": "assistant", "content": text, "created_at": message.timestamp})
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                out.append(
                    {
                        "run_id": run_id,
                        "role": "assistant",
                        "content": part.args_as_dict(),
                        "tool_name": part.tool_name,
                        "tool_call_id": part.tool_call_id,
                        "created_at": message.timestamp,
                    }
                )
    return out
