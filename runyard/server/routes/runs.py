"""`/v1/runs` and `/v1/threads/{thread_id}/runs`."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from ...domain import TERMINAL_EVENT_TYPES, Run, RunStatus, Wait
from ...store import agents, events, runs, threads, waits
from ...store.errors import Conflict, InvalidInput, InvalidTransition, NotFound, PayloadTooLarge
from ..auth import org_id
from ..errors import ERRORS, ApiError
from ..schemas import (
    AnswerBody,
    ApproveBody,
    EventList,
    InputBody,
    Limits,
    MessageBody,
    RunCreate,
    RunList,
    ThreadRunCreate,
    WaitList,
)
from ..sse import event_stream, sse_response
from .agents import check_agent_fields

router = APIRouter(tags=["runs"], responses=ERRORS)

SSE = "text/event-stream"
SETTLING = TERMINAL_EVENT_TYPES | {"run.waiting"}
RUN_CREATED = {201: {"model": Run, "content": {SSE: {}}, "description": "The run, or its event stream"}}


def _check_limits(body: ThreadRunCreate) -> None:
    if len(body.message.encode()) > Limits.MESSAGE_BYTES:
        raise PayloadTooLarge(f"message is larger than {Limits.MESSAGE_BYTES // 1024} KB", field="message")
    if len(json.dumps(body.metadata).encode()) > Limits.METADATA_BYTES:
        raise PayloadTooLarge(f"metadata is larger than {Limits.METADATA_BYTES // 1024} KB as JSON", field="metadata")


async def _resolve_agent(request: Request, conn: Any, org: str, body: ThreadRunCreate) -> dict[str, Any]:
    if body.agent_id is not None:
        return await agents.get(conn, org, body.agent_id)
    if body.name is None:
        raise InvalidInput("agent_id is required (or name and instructions to find or create an agent)", field="agent_id")
    found = await agents.find_by_name(conn, org, body.name)
    if found is not None:
        return found
    if body.instructions is None:
        raise InvalidInput(f"no agent named {body.name!r}: pass instructions to create it", field="instructions")
    try:
        return await agents.create(conn, org, {"name": body.name, "instructions": body.instructions})
    except Conflict:  # created concurrently by another request
        found = await agents.find_by_name(conn, org, body.name)
        if found is None:
            raise
        return found


async def _create_run(
    request: Request, org: str, body: ThreadRunCreate, thread_id: str | None, idempotency_key: str | None
) -> Any:
    _check_limits(body)
    check_agent_fields(request, {"tools": body.tools, "model": body.model, "metadata": body.metadata})
    store = request.app.state.store
    async with store.tx() as tx:
        agent = await _resolve_agent(request, tx.conn, org, body)
        run = await runs.create(
            tx,
            org,
            agent=agent,
            message=body.message,
            thread_id=thread_id,
            tools=body.tools,
            model=body.model,
            user_id=body.user_id,
            metadata=body.metadata,
            options=body.options(),
            multitask=body.multitask,
            idempotency_key=idempotency_key,
            # `stream` only changes how the answer is delivered, not which run is made.
            request_body={**body.model_dump(exclude={"stream"}), "thread_id": thread_id},
        )
    if body.stream:
        stream = event_stream(store, org, run["id"], 0, heartbeat=request.app.state.settings.sse_heartbeat)
        return sse_response(stream, status_code=201, run_id=run["id"])
    return JSONResponse(Run.model_validate(run).model_dump(mode="json"), status_code=201)


IdempotencyKey = Header(None, alias="Idempotency-Key", min_length=1, max_length=255)


@router.post("/v1/runs", status_code=201, response_model=Run, responses=RUN_CREATED)
async def create_run(
    body: RunCreate, request: Request, org: str = Depends(org_id), idempotency_key: str | None = IdempotencyKey
) -> Any:
    """Start a run. With `stream: true` the response is the run's SSE stream."""
    return await _create_run(request, org, body, body.thread_id, idempotency_key)


@router.post("/v1/threads/{thread_id}/runs", status_code=201, response_model=Run, responses=RUN_CREATED)
async def create_thread_run(
    thread_id: str,
    body: ThreadRunCreate,
    request: Request,
    org: str = Depends(org_id),
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    return await _create_run(request, org, body, thread_id, idempotency_key)


@router.get("/v1/threads/{thread_id}/runs", response_model=RunList)
async def list_thread_runs(
    thread_id: str,
    request: Request,
    org: str = Depends(org_id),
    limit: int = Query(20, ge=1, le=Limits.PAGE_MAX),
    before: str | None = Query(None, max_length=200),
    after: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        await threads.get(conn, org, thread_id)
        data, has_more, cursor = await runs.list_(conn, org, limit=limit, before=before, after=after, thread_id=thread_id)
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


def _metadata_filters(request: Request) -> dict[str, str]:
    filters = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            name = key[len("metadata[") : -1]
            if not name or len(name) > 100:
                raise InvalidInput("metadata filters look like metadata[key]=value", field=key)
            filters[name] = value
    return filters


SEED_STATUSES = {"awaiting_approval": ("waiting", ["approval"]), "waiting_for_input": ("waiting", ["question", "input"])}


def _statuses(values: list[str] | None) -> list[tuple[RunStatus, list[str] | None]] | None:
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


@router.get("/v1/runs", response_model=RunList)
async def list_runs(
    request: Request,
    org: str = Depends(org_id),
    limit: int = Query(20, ge=1, le=Limits.PAGE_MAX),
    before: str | None = Query(None, max_length=200),
    after: str | None = Query(None, max_length=200),
    agent_id: str | None = Query(None, max_length=40),
    thread_id: str | None = Query(None, max_length=40),
    user_id: str | None = Query(None, max_length=200),
    status: list[str] | None = Query(
        None, description="Repeatable. Also the seeds' names: awaiting_approval, waiting_for_input."
    ),
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> dict[str, Any]:
    """Runs of the caller's org, newest first. Filter by `metadata[key]=value` too."""
    async with request.app.state.store.read() as conn:
        data, has_more, cursor = await runs.list_(
            conn, org, limit=limit, before=before, after=after, agent_id=agent_id, thread_id=thread_id,
            user_id=user_id, statuses=_statuses(status), metadata=_metadata_filters(request),
            created_after=created_after, created_before=created_before,
        )
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/v1/runs/{run_id}", response_model=Run)
async def get_run(run_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        return await runs.get(conn, org, run_id)


@router.get("/v1/runs/{run_id}/wait", response_model=Run)
async def wait_run(
    run_id: str,
    request: Request,
    org: str = Depends(org_id),
    timeout: float = Query(30.0, ge=0, le=60, description="Seconds to wait for a terminal status."),
) -> dict[str, Any]:
    """Long-poll: returns once the run is terminal or waiting for a human, or `timeout` passes,
    with the run as it is."""
    store = request.app.state.store
    deadline = time.monotonic() + timeout
    with store.bus.subscribe(f"run:{run_id}") as sub:
        while True:
            async with store.read() as conn:
                run = await runs.get(conn, org, run_id)
            remaining = deadline - time.monotonic()
            status = RunStatus(run["status"])
            if status.is_terminal or status is RunStatus.WAITING or remaining <= 0:
                return run
            # Re-read when the run may have settled: a terminal or waiting event, or a hint
            # from another node (just a seq) or a resync; plain progress events are skipped.
            while remaining > 0:
                messages = [await sub.get(timeout=remaining), *sub.drain()]
                if any(not isinstance(m, list) or any(e["type"] in SETTLING for e in m) for m in messages):
                    break
                remaining = deadline - time.monotonic()


async def _cancel(run_id: str, request: Request, org: str) -> dict[str, Any]:
    async with request.app.state.store.tx() as tx:
        return await runs.request_cancel(tx, org, run_id)


@router.post("/v1/runs/{run_id}/cancel", response_model=Run)
async def cancel_run(run_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Cancel a pending, running or waiting run; 409 when it already ended."""
    return await _cancel(run_id, request, org)


@router.post("/v1/runs/{run_id}:cancel", response_model=Run, include_in_schema=False)
async def cancel_run_colon(run_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    return await _cancel(run_id, request, org)


@router.get("/v1/runs/{run_id}/events", response_model=EventList, responses={200: {"content": {SSE: {}}}})
async def run_events(
    run_id: str,
    request: Request,
    org: str = Depends(org_id),
    after_seq: int | None = Query(None, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=20),
) -> Any:
    """The run's events: SSE with `Accept: text/event-stream`, else a JSON page after `after_seq`."""
    if last_event_id and not last_event_id.isdigit():
        raise ApiError(400, "bad_request", "Last-Event-ID must be an event seq", field="Last-Event-ID")
    # An EventSource keeps its URL (with after_seq) and adds Last-Event-ID on reconnect:
    # the later position wins, so nothing is sent twice.
    cursor = max(after_seq or 0, int(last_event_id or 0))
    store = request.app.state.store
    async with store.read() as conn:
        await runs.get(conn, org, run_id)
        if SSE not in request.headers.get("accept", ""):
            batch = await events.read(conn, run_id, after_seq=cursor, limit=limit + 1)
            has_more = len(batch) > limit
            batch = batch[:limit]
            return {"data": batch, "has_more": has_more, "next_cursor": str(batch[-1]["seq"]) if has_more else None}
    stream = event_stream(store, org, run_id, cursor, heartbeat=request.app.state.settings.sse_heartbeat)
    return sse_response(stream, run_id=run_id)


# Humans in the loop: answers, approvals, free input, follow-ups.


async def _resolve(request: Request, org: str, run_id: str, wait_id: str | None, answer: Any, kind: str | None,
                   ) -> dict[str, Any]:
    async with request.app.state.store.tx() as tx:
        return await waits.resolve(tx, org, run_id, wait_id, answer, kind=kind, resolved_by=f"api:{org}")


@router.get("/v1/runs/{run_id}/waits", response_model=WaitList)
async def run_waits(run_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Every pause of the run, oldest first, with its status and answer."""
    async with request.app.state.store.read() as conn:
        await runs.get(conn, org, run_id)
        data = await waits.for_run(conn, run_id)
    return {"data": data, "has_more": False, "next_cursor": None}


@router.post("/v1/runs/{run_id}/answer", response_model=Wait)
async def answer_run(run_id: str, body: AnswerBody, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Answer the run's clarifying question(s): `{question: answer}`."""
    return await _resolve(request, org, run_id, body.wait_id, {"answers": body.answers}, "question")


@router.post("/v1/runs/{run_id}/approve", response_model=Wait)
async def approve_run(run_id: str, body: ApproveBody, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Allow or deny a tool call (or a plan) the run waits on; `remember` allows that tool for the rest of it."""
    answer: dict[str, Any] = {"decision": body.decision}
    if body.reason is not None:
        answer["reason"] = body.reason
    if body.remember:
        answer["remember"] = True
    return await _resolve(request, org, run_id, body.wait_id, answer, "approval")


ALLOW_WORDS = {"allow", "allowed", "approve", "approved", "yes", "y", "ok", "okay"}


def _answer_from_text(wait: dict[str, Any], content: str) -> Any:
    """Free text as the answer to any wait, as the seed HTTP API's `/input` takes it."""
    if wait["kind"] == "approval":
        if content.strip().lower() in ALLOW_WORDS:
            return {"decision": "allow"}
        return {"decision": "deny", "reason": content}
    if wait["kind"] == "input":
        return {"content": content}
    return {"answers": {q["question"]: content for q in wait["request"].get("questions", [])}}


async def _input(request: Request, org: str, run_id: str, content: str, wait_id: str | None = None) -> dict[str, Any]:
    if len(content.encode()) > Limits.MESSAGE_BYTES:
        raise PayloadTooLarge(f"content is larger than {Limits.MESSAGE_BYTES // 1024} KB", field="content")
    async with request.app.state.store.tx() as tx:
        run = await runs.get(tx.conn, org, run_id, lock=True)
        open_waits = [w for w in await waits.for_run(tx.conn, run_id) if w["status"] == "open"]
        if run["status"] != RunStatus.WAITING.value or not open_waits:
            raise InvalidTransition(f"run {run_id} is {run['status']}: it is not waiting for input")
        wait = open_waits[0] if wait_id is None else next((w for w in open_waits if w["id"] == wait_id), None)
        if wait is None:
            raise NotFound(f"run {run_id} has no open wait {wait_id}", field="wait_id")
        return await waits.resolve(tx, org, run_id, wait["id"], _answer_from_text(wait, content),
                                   resolved_by=f"api:{org}")


@router.post("/v1/runs/{run_id}/input", response_model=Wait)
async def input_run(run_id: str, body: InputBody, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Free text (≤ 32 KB) that answers whatever the run waits for; 409 when it is not waiting."""
    return await _input(request, org, run_id, body.content, body.wait_id)


@router.post("/v1/runs/{run_id}/messages", response_model=Run)
async def append_run_message(run_id: str, body: MessageBody, request: Request, org: str = Depends(org_id)) -> Any:
    """Add a user message to a run in flight: the model sees it at its next step."""
    if len(body.message.encode()) > Limits.MESSAGE_BYTES:
        raise PayloadTooLarge(f"message is larger than {Limits.MESSAGE_BYTES // 1024} KB", field="message")
    async with request.app.state.store.tx() as tx:
        return await runs.append_message(tx, org, run_id, body.message)


@router.post("/v1/runs/{run_id}/reply", response_model=Run, status_code=201,
             responses={200: {"model": Run, "description": "The run was waiting: the reply answered it"}})
async def reply_run(run_id: str, body: MessageBody, request: Request, org: str = Depends(org_id)) -> Any:
    """A follow-up: a new run on the same thread and agent that sees the conversation so far.
    A reply to a waiting run answers it as free input instead."""
    if len(body.message.encode()) > Limits.MESSAGE_BYTES:
        raise PayloadTooLarge(f"message is larger than {Limits.MESSAGE_BYTES // 1024} KB", field="message")
    store = request.app.state.store
    async with store.read() as conn:
        run = await runs.get(conn, org, run_id)
    if run["status"] == RunStatus.WAITING.value:
        await _input(request, org, run_id, body.message)
        async with store.read() as conn:
            return JSONResponse(Run.model_validate(await runs.get(conn, org, run_id)).model_dump(mode="json"))
    if not RunStatus(run["status"]).is_terminal:
        raise InvalidTransition(
            f"run {run_id} is {run['status']}: add to it with POST /v1/runs/{run_id}/messages, "
            "or reply once it has ended"
        )
    async with store.tx() as tx:
        agent = await agents.get(tx.conn, org, run["agent_id"])
        new = await runs.create(
            tx, org, agent=agent, message=body.message, thread_id=run["thread_id"], tools=run["tools"],
            model=run["model"], user_id=run["user_id"], metadata={},
            options={k: run[k] for k in runs.RUN_OPTIONS},
        )
    return JSONResponse(Run.model_validate(new).model_dump(mode="json"), status_code=201)
