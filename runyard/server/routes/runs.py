"""`/v1/runs` and `/v1/threads/{thread_id}/runs`."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from ... import tracing
from ..._budgets import tightest
from ..._events import SETTLING_EVENT_TYPES
from ..._versions import VERSIONED_FIELDS
from ...domain import Run, RunStatus
from ...store import agents, events, runs, threads, waits
from ...store.errors import InvalidInput, NotFound
from ...store.files import FileLimits
from ...worker.routing import configured
from ..auth import org_id
from ..errors import ERRORS
from ..limits import Limits
from ..queries import After, Before, Limit, MetadataFilters, Seq, parse_statuses
from ..schemas import EventList, MessageBody, ReplyBody, RunCreate, RunList, ThreadRunCreate, ToolResultsBody
from ..sse import event_stream, sse_response
from ..variables import render_task
from .agents import check_agent_fields
from .webhooks import check_webhook_url

router = APIRouter(tags=["runs"], responses=ERRORS)

SSE = "text/event-stream"
RUN_CREATED: dict[int | str, dict[str, Any]] = {
    201: {"model": Run, "content": {SSE: {}}, "description": "The run, or its event stream"}
}
LAST_EVENT_ID = re.compile(r"[0-9]{1,19}")


def run_json(run: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse(Run.model_validate(run).model_dump(mode="json"), status_code=status_code)


async def _create_run(
    request: Request, org: str, body: ThreadRunCreate, thread_id: str | None, idempotency_key: str | None
) -> Any:
    client_tools = [t.model_dump() for t in body.client_tools or []]
    check_agent_fields(
        request,
        {
            "tools": body.tools,
            "model": body.model,
            "route_id": body.route_id,
            "metadata": body.metadata,
            "client_tools": client_tools,
        },
    )
    webhook_url = None
    if body.webhook_url is not None:
        webhook_url = await check_webhook_url(request, body.webhook_url, "webhook_url")
    store = request.app.state.store
    async with store.tx() as tx:
        version = body.agent_version
        if body.persona_id is not None:
            agent, version = await _persona(tx.conn, org, body.persona_id, version)
        elif body.agent_id is not None:
            agent = await agents.get(tx.conn, org, body.agent_id)
        elif body.name is not None:
            agent = await agents.find_or_create(tx.conn, org, body.name, body.instructions)
        else:
            raise InvalidInput(
                "agent_id is required (or name and instructions to find or create an agent)", field="agent_id"
            )
        if version is not None and version != agent["version"]:
            # An earlier version: what it ran then, under the agent's own id.
            snapshot = await agents.get_version(tx.conn, org, agent["id"], version)
            agent = {**agent, **{k: v for k, v in snapshot.items() if k in VERSIONED_FIELDS}, "version": version}
        if not body.human_in_the_loop:
            gated = next((m["name"] for m in agent.get("mcp_servers") or [] if m.get("require_approval")), None)
            if gated is not None:
                raise InvalidInput(
                    f"agent {agent['id']}'s MCP server {gated!r} requires approval for every call: "
                    "create the run with human_in_the_loop: true",
                    field="human_in_the_loop",
                )
        route_id, model = _route_and_model(request, body, agent)
        options = body.options()
        default = request.app.state.settings.default_limits
        # The smallest of the run's, the agent's and the org's limits, kept with the run.
        options["limits"] = tightest(
            options.get("limits"), agent.get("limits"), default.model_dump() if default is not None else None
        )
        run = await runs.create(
            tx,
            org,
            agent=agent,
            message=render_task(agent, body.variables, body.message),
            variables=body.variables,
            output_schema=body.output_schema,
            client_tools=client_tools,
            files=body.files,
            file_limits=FileLimits.of(request.app.state.settings),
            thread_id=thread_id,
            tools=body.tools,
            model=model,
            route_id=route_id,
            user_id=body.user_id,
            metadata=body.metadata,
            options=options,
            multitask=body.multitask,
            idempotency_key=idempotency_key,
            traceparent=_traceparent(request),
            webhook_url=webhook_url,
            agent_version=agent["version"],
            # `stream` only changes how the answer is delivered, not which run is made.
            request_body={**body.model_dump(exclude={"stream"}), "thread_id": thread_id},
        )
        # Built inside the transaction: a run that cannot be shown is never committed.
        response = None if body.stream else run_json(run, 201)
    if response is None:
        stream = event_stream(store, org, run["id"], 0, heartbeat=request.app.state.settings.sse_heartbeat)
        return sse_response(stream, status_code=201, run_id=run["id"])
    return response


def _route_and_model(request: Request, body: ThreadRunCreate, agent: dict[str, Any]) -> tuple[str | None, str]:
    """The run's route and model: its own `route_id`, else its `model`, else the agent's (a route wins)."""
    routes = configured(request.app.state.settings)
    if body.route_id is not None:
        route_id: str | None = body.route_id
    elif body.model is not None:
        route_id = body.model if body.model in routes else None  # a route id given as the model
    else:
        route_id = agent.get("route_id") or (agent["model"] if agent["model"] in routes else None)
    if route_id is not None and route_id not in routes:
        raise InvalidInput(f"agent {agent['id']}'s route {route_id!r} is no longer configured", field="route_id")
    named = body.route_id is not None or (body.model is None and agent.get("route_id"))
    model = routes[route_id].model if route_id is not None and named else body.model or agent["model"]
    return route_id, model


async def _persona(conn: Any, org: str, persona_id: str, version: int | None) -> tuple[dict[str, Any], int | None]:
    """The seeds' `persona_id`: `"name@version"`, or `"name"` for the newest version."""
    name, at, number = persona_id.rpartition("@") if "@" in persona_id else (persona_id, "", "")
    if at and not number.isdigit():
        raise InvalidInput('persona_id is "name" or "name@version", the version a number', field="persona_id")
    agent = await agents.find_by_name(conn, org, name)
    if agent is None:
        raise NotFound(f"no agent named {name!r}", field="persona_id")
    if at and version is not None and int(number) != version:
        raise InvalidInput("persona_id and agent_version name different versions", field="agent_version")
    return agent, int(number) if at else version


def _traceparent(request: Request) -> str | None:
    """The span the run's attempts go under: this request's server span when tracing is on (its
    parent is the caller's `traceparent`), else the caller's own valid `traceparent`, if any."""
    current = tracing.current_traceparent()
    if current is not None:
        return current
    parsed = tracing.parse_traceparent(request.headers.get("traceparent"))
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    return f"00-{trace_id}-{span_id}-{flags:02x}"


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
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        await threads.get(conn, org, thread_id)
        data, has_more, cursor = await runs.list_(
            conn, org, limit=limit, before=before, after=after, thread_id=thread_id
        )
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/v1/runs", response_model=RunList)
async def list_runs(
    request: Request,
    metadata: MetadataFilters,
    org: str = Depends(org_id),
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
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
            conn,
            org,
            limit=limit,
            before=before,
            after=after,
            agent_id=agent_id,
            thread_id=thread_id,
            user_id=user_id,
            statuses=parse_statuses(status),
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
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
                if any(not isinstance(m, list) or any(e["type"] in SETTLING_EVENT_TYPES for e in m) for m in messages):
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
    after_seq: Seq = None,
    limit: int = Query(100, ge=1, le=1000),
    last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=20),
) -> Any:
    """The run's events: SSE with `Accept: text/event-stream`, else a JSON page after `after_seq`."""
    if last_event_id and not (LAST_EVENT_ID.fullmatch(last_event_id) and int(last_event_id) <= Limits.INT64_MAX):
        raise InvalidInput("Last-Event-ID must be an event seq (a 64-bit integer)", field="Last-Event-ID")
    # An EventSource keeps its URL (with after_seq) and adds Last-Event-ID on reconnect:
    # the later position wins, so nothing is sent twice.
    cursor = max(after_seq or 0, int(last_event_id or 0))
    store = request.app.state.store
    async with store.read() as conn:
        await runs.get(conn, org, run_id)
        if SSE not in request.headers.get("accept", ""):
            batch = await events.read(conn, org, run_id, after_seq=cursor, limit=limit + 1)
            has_more = len(batch) > limit
            batch = batch[:limit]
            return {"data": batch, "has_more": has_more, "next_cursor": str(batch[-1]["seq"]) if has_more else None}
    stream = event_stream(store, org, run_id, cursor, heartbeat=request.app.state.settings.sse_heartbeat)
    return sse_response(stream, run_id=run_id)


# Follow-ups.


@router.post("/v1/runs/{run_id}/messages", response_model=Run)
async def append_run_message(run_id: str, body: MessageBody, request: Request, org: str = Depends(org_id)) -> Any:
    """Add a user message to a run in flight: the model sees it at its next step."""
    async with request.app.state.store.tx() as tx:
        return await runs.append_message(tx, org, run_id, body.message)


@router.post(
    "/v1/runs/{run_id}/reply",
    response_model=Run,
    status_code=201,
    responses={200: {"model": Run, "description": "The run was waiting: the reply answered it"}},
)
async def reply_run(run_id: str, body: ReplyBody, request: Request, org: str = Depends(org_id)) -> Any:
    """A follow-up: a new run on the same thread and agent that sees the conversation (and the files)
    so far. A reply to a waiting run answers it as free input instead."""
    async with request.app.state.store.tx() as tx:
        run, created = await runs.reply(
            tx,
            org,
            run_id,
            body.message,
            resolved_by=f"api:{org}",
            files=body.files,
            file_limits=FileLimits.of(request.app.state.settings),
        )
        return run_json(run, 201 if created else 200)


@router.post("/v1/runs/{run_id}/tool_results", response_model=Run)
async def post_tool_results(run_id: str, body: ToolResultsBody, request: Request, org: str = Depends(org_id)) -> Any:
    """Results of the caller's tools the run waits for (`waiting_for: "tool_result"`): each is an
    `output` (checked against the tool's `output_schema`) or an `error`. Posting the same results
    again is fine; other ones are a 409. The run resumes once none of its waits is open."""
    async with request.app.state.store.tx() as tx:
        await waits.resolve_tool_results(tx, org, run_id, [r.answer() for r in body.results], resolved_by=f"api:{org}")
        return await runs.get(tx.conn, org, run_id)
