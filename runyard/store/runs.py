"""Runs: creation (with idempotency), reads, lists and cancel requests."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update

from .. import metrics
from ..config import get_settings
from ..domain import ACTIVE_STATUSES, RUN_OPTION_DEFAULTS, TERMINAL_STATUSES, RunStatus
from . import agents, events, threads, waits
from . import files as files_store
from .db import Conn, Row, Tx, utcnow
from .errors import Conflict, IdempotencyConflict, NotFound
from .files import FileLimits
from .ids import first_id_at, new_id
from .pages import finish, metadata_matches, page
from .schema import idempotency_keys, runs

__all__ = [
    "append_message",
    "create",
    "drop_pending_messages",
    "get",
    "list_",
    "pending_messages",
    "reply",
    "request_cancel",
    "to_dict",
]

EMPTY_USAGE = {
    "input_tokens": 0,
    "output_tokens": 0,
    "cache_read_tokens": 0,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "requests": 0,
    "tool_calls": 0,
    "cost_usd": None,
}


_PUBLIC = (
    "id",
    "agent_id",
    "thread_id",
    "status",
    "original_prompt",
    "output",
    "error",
    "stop_reason",
    "agent_version",
    "user_id",
    "metadata",
    "model",
    "route_id",
    "usage",
    "created_at",
    "started_at",
    "completed_at",
    "failed_at",
    "cancelled_at",
    "attempt",
    "trace_id",
    "last_seq",
)


def to_dict(row: Any) -> dict[str, Any]:
    run = {f: getattr(row, f) for f in _PUBLIC}
    run["object"] = "run"
    config = row.config
    run["tools"] = config.get("tools", [])
    run["variables"] = row.variables
    run["output_schema"] = config.get("output_schema")
    run["webhook_url"] = config.get("webhook_url")
    run["waiting_for"] = row.waiting_for
    for option, default in RUN_OPTION_DEFAULTS.items():
        run[option] = config.get(option, default)
    end = row.completed_at or row.failed_at or row.cancelled_at
    run["duration_ms"] = int((end - row.started_at).total_seconds() * 1000) if end and row.started_at else None
    run["usage"] = usage_view(row.usage)
    run["steps"] = run["usage"].get("requests", 0)
    return run


def usage_view(usage: dict[str, Any]) -> dict[str, Any]:
    """A run's usage as the API shows it: the stored sums plus what follows from them
    (`cache_hit_rate`, `credits_used`, `cost_known`)."""
    cost, input_tokens = usage.get("cost_usd"), usage.get("input_tokens", 0)
    known = usage.get("cost_known", cost is not None or not usage.get("requests"))
    credits = math.ceil(round(cost * get_settings().credits_per_usd, 9)) if cost is not None else None
    return {
        **usage,
        "cost_usd": cost if known else None,
        "cost_known": known,
        "cache_hit_rate": usage.get("cache_read_tokens", 0) / input_tokens if input_tokens else None,
        "credits_used": credits if known else None,
    }


async def create(
    tx: Tx,
    org_id: str,
    *,
    agent: dict[str, Any],
    message: str,
    thread_id: str | None,
    tools: list[str] | None,
    model: str | None,
    user_id: str | None,
    metadata: dict[str, Any],
    options: dict[str, Any] | None = None,
    multitask: str = "reject",
    idempotency_key: str | None = None,
    request_body: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    client_tools: list[dict[str, Any]] | None = None,
    files: list[str] | None = None,
    file_limits: FileLimits | None = None,
    traceparent: str | None = None,
    webhook_url: str | None = None,
    agent_version: int | None = None,
    route_id: str | None = None,
) -> dict[str, Any]:
    """Queue a new run (with its `run.queued` event), or return the one this idempotency key made.

    `multitask` decides what happens when the thread already has an active run: `reject`
    (409), `enqueue` (this run starts when the others end), `interrupt` (cancel them first).
    `message` is the task as given (already rendered from `variables` when the agent has a
    template); `client_tools` add to (or replace by name) the agent's; `files` are uploads put
    into the thread's workspace before the run starts (within `file_limits`). `traceparent`: a
    valid W3C one makes its trace id the run's `trace_id`, and its span the parent of the run's
    attempt spans (kept in the run's config); otherwise the run starts a trace of its own.
    `webhook_url` (already checked) receives the run's terminal event.
    """
    conn = tx.conn
    body_hash = ""
    if idempotency_key is not None:
        body_hash = hashlib.sha256(json.dumps(request_body, sort_keys=True, default=str).encode()).hexdigest()
        existing = await _idempotent_run(conn, org_id, idempotency_key, body_hash)
        if existing is not None:
            return existing
    opens_thread = thread_id is None
    if opens_thread:
        thread_id = (await threads.create(conn, org_id, user_id=user_id))["id"]
    else:
        await threads.get(conn, org_id, thread_id)
        active = await threads.active_runs(conn, org_id, thread_id)
        if active and multitask == "reject":
            raise Conflict(
                f"thread {thread_id} has an active run ({active[0]}): wait for it, or pass "
                "multitask='enqueue' (start after it) or 'interrupt' (cancel it first)",
                field="multitask",
            )
        if multitask == "interrupt":
            for active_id in active:
                await request_cancel(tx, org_id, active_id)
    # The run keeps the agent's configuration as it was when queued: editing the agent later
    # must not change a run in flight (nor one resumed after a crash).
    config = {
        "instructions": agent["instructions"],
        "tools": list(agent["tools"] if tools is None else tools),
        "output_schema": output_schema if output_schema is not None else agent["output_schema"],
        "script": metadata.get("script", agent["metadata"].get("script")),
        "mcp_servers": agent.get("mcp_servers") or [],
        "client_tools": _merge_by_name(agent.get("client_tools") or [], client_tools or []),
        **{k: v for k, v in (options or {}).items() if k in RUN_OPTION_DEFAULTS},
    }
    trace_id = secrets.token_hex(16)
    if traceparent is not None:
        trace_id = traceparent[3:35]
        config["traceparent"] = traceparent
    if webhook_url is not None:
        config["webhook_url"] = webhook_url
    if route_id is not None:
        config["route_id"] = route_id
    if opens_thread:
        config["opens_thread"] = True  # no earlier conversation: the worker reads no thread history
    run_id = new_id("run")
    values = {
        "id": run_id,
        "org_id": org_id,
        "agent_id": agent["id"],
        "thread_id": thread_id,
        "status": RunStatus.PENDING.value,
        "original_prompt": message,
        "variables": variables,
        "config": config,
        "user_id": user_id,
        "metadata": metadata,
        "model": model or agent["model"],
        "route_id": route_id,
        "usage": EMPTY_USAGE,
        "created_at": utcnow(),
        "attempt": 0,
        "cancel_requested": False,
        "trace_id": trace_id,
        "last_seq": 0,
        "pending_messages": [],
        "waiting_for": None,
        "agent_version": agent_version,
    }
    # Parameters rather than .values(): the compiled INSERT is cached instead of rebuilt per run.
    await conn.execute(_INSERT, [values])
    queued = await events.append(
        tx, run_id, [("run.queued", {"agent_id": agent["id"], "thread_id": thread_id})], locked=Row(values)
    )
    if idempotency_key is not None:
        await conn.execute(
            insert(idempotency_keys).values(
                org_id=org_id, key=idempotency_key, body_hash=body_hash, run_id=run_id, created_at=utcnow()
            )
        )
    if files:
        assert thread_id is not None and file_limits is not None  # the thread was opened above if new
        await files_store.attach(tx, org_id, file_ids=files, thread_id=thread_id, run_id=run_id, limits=file_limits)
    tx.publish_after_commit("queue", run_id)
    metrics.run_created(values["model"])
    return to_dict(
        Row(
            {
                **values,
                "last_seq": queued[-1]["seq"],
                "output": None,
                "error": None,
                "stop_reason": None,
                "started_at": None,
                "completed_at": None,
                "failed_at": None,
                "cancelled_at": None,
            }
        )
    )


def _merge_by_name(base: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged = {t["name"]: t for t in base}
    merged.update({t["name"]: t for t in extra})
    return list(merged.values())


async def _idempotent_run(conn: Conn, org_id: str, key: str, body_hash: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(idempotency_keys).where(idempotency_keys.c.org_id == org_id, idempotency_keys.c.key == key)
        )
    ).one_or_none()
    if row is None:
        return None
    forget = delete(idempotency_keys).where(idempotency_keys.c.org_id == org_id, idempotency_keys.c.key == key)
    # The same TTL as the retention purge, which deletes such keys later anyway.
    if row.created_at < utcnow() - timedelta(hours=get_settings().idempotency_key_hours):
        await conn.execute(forget)
        return None
    try:
        run = await get(conn, org_id, row.run_id)
    except NotFound:
        # Its run ended past the retention period and was purged: the key guards nothing now.
        await conn.execute(forget)
        return None
    if row.body_hash != body_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request body", field="Idempotency-Key"
        )
    return run


# Hot-path statements are built once: building and cache-keying one per call cost more than running it.
_GET = select(runs).where(runs.c.id == bindparam("run_id"), runs.c.org_id == bindparam("org_id"))
_GET_LOCKED = _GET.with_for_update()
_PENDING = select(runs.c.pending_messages).where(runs.c.id == bindparam("run_id"), runs.c.org_id == bindparam("org_id"))
_INSERT = insert(runs)


async def get(conn: Conn, org_id: str, run_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = (await conn.execute(_GET_LOCKED if lock else _GET, {"run_id": run_id, "org_id": org_id})).one_or_none()
    if row is None:
        raise NotFound.of("run", run_id)
    return to_dict(row)


async def list_(
    conn: Conn,
    org_id: str,
    *,
    limit: int,
    before: str | None = None,
    after: str | None = None,
    agent_id: str | None = None,
    thread_id: str | None = None,
    user_id: str | None = None,
    statuses: list[tuple[RunStatus, list[str] | None]] | None = None,
    metadata: dict[str, str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> tuple[list[dict[str, Any]], bool, str | None]:
    query = select(runs).where(runs.c.org_id == org_id)
    if agent_id is not None:
        query = query.where(runs.c.agent_id == agent_id)
    if thread_id is not None:
        query = query.where(runs.c.thread_id == thread_id)
    if user_id is not None:
        query = query.where(runs.c.user_id == user_id)
    if statuses:
        # Each entry is a status, optionally narrowed to what a waiting run waits for.
        query = query.where(
            or_(
                *(
                    runs.c.status == status.value
                    if waiting_for is None
                    else and_(runs.c.status == status.value, runs.c.waiting_for.in_(waiting_for))
                    for status, waiting_for in statuses
                )
            )
        )
    for key, value in (metadata or {}).items():
        query = query.where(metadata_matches(runs.c.metadata, key, value, conn.dialect.name))
    if created_after is not None:
        query = query.where(runs.c.created_at > created_after)
    if created_before is not None:
        # A run's id is minted just before its created_at, so the bound also holds for ids: the
        # newest-first scan then starts at the bound instead of walking down to it.
        upper = first_id_at("run", created_before + timedelta(milliseconds=1))
        query = query.where(runs.c.created_at < created_before, runs.c.id < upper)
    query, ascending = page(query, runs, limit=limit, before=before, after=after)
    rows, has_more, cursor = finish(list(await conn.execute(query)), limit=limit, ascending=ascending)
    return [to_dict(r) for r in rows], has_more, cursor


async def request_cancel(tx: Tx, org_id: str, run_id: str) -> dict[str, Any]:
    """Cancel a run: at once when pending or waiting, else flag it and signal its worker."""
    run = await get(tx.conn, org_id, run_id, lock=True)
    status = events.require_status(run, ACTIVE_STATUSES, "it cannot be cancelled")
    if status is RunStatus.RUNNING:
        await events.append(tx, run_id, [("run.cancel_requested", {})], changes={"cancel_requested": True})
        tx.publish_after_commit("cancel", run_id)
    else:
        if status is RunStatus.WAITING:
            await waits.cancel_open(tx.conn, org_id, run_id)
        await events.append(
            tx,
            run_id,
            [("run.cancel_requested", {}), ("run.cancelled", {"output": run["output"], "usage": run["usage"]})],
            to=RunStatus.CANCELLED,
            changes={"cancel_requested": True, "waiting_for": None},
        )
        metrics.run_finished(RunStatus.CANCELLED.value, run["model"])
    return await get(tx.conn, org_id, run_id)


async def pending_messages(conn: Conn, org_id: str, run_id: str) -> list[str]:
    return list((await conn.execute(_PENDING, {"run_id": run_id, "org_id": org_id})).scalar_one())


async def drop_pending_messages(conn: Conn, org_id: str, run_id: str, count: int) -> None:
    """Remove the first `count` follow-up messages: they are in a checkpoint now."""
    pending = await pending_messages(conn, org_id, run_id)
    await conn.execute(
        update(runs).where(runs.c.id == run_id, runs.c.org_id == org_id).values(pending_messages=pending[count:])
    )


async def append_message(tx: Tx, org_id: str, run_id: str, message: str) -> dict[str, Any]:
    """Queue a user message for a run in flight: the model sees it at its next step."""
    run = await get(tx.conn, org_id, run_id, lock=True)
    events.require_status(
        run, ACTIVE_STATUSES, f"it takes no more messages; start a follow-up with POST /v1/runs/{run_id}/reply"
    )
    pending = await pending_messages(tx.conn, org_id, run_id)
    await events.append(
        tx, run_id, [("message.appended", {"message": message})], changes={"pending_messages": [*pending, message]}
    )
    return await get(tx.conn, org_id, run_id)


async def reply(
    tx: Tx,
    org_id: str,
    run_id: str,
    message: str,
    *,
    resolved_by: str | None = None,
    files: list[str] | None = None,
    file_limits: FileLimits | None = None,
) -> tuple[dict[str, Any], bool]:
    """A follow-up to an ended run: a new run on its thread and agent, with its options
    (`(new_run, True)`). A reply to a waiting run answers it as free input (`(run, False)`)."""
    run = await get(tx.conn, org_id, run_id, lock=True)
    if run["status"] == RunStatus.WAITING.value:
        if files:
            assert file_limits is not None
            # The waiting run resumes with them in its thread's workspace.
            await files_store.attach(
                tx, org_id, file_ids=files, thread_id=run["thread_id"], run_id=run_id, limits=file_limits
            )
        await waits.resolve_text(tx, org_id, run_id, message, resolved_by=resolved_by)
        return await get(tx.conn, org_id, run_id), False
    events.require_status(
        run, TERMINAL_STATUSES, f"add to it with POST /v1/runs/{run_id}/messages, or reply once it has ended"
    )
    agent = await agents.get(tx.conn, org_id, run["agent_id"])
    # The follow-up keeps the caller's tools the run was given (the agent's may have changed since).
    config = (await tx.conn.execute(select(runs.c.config).where(runs.c.id == run_id))).scalar_one()
    new = await create(
        tx,
        org_id,
        agent=agent,
        message=message,
        thread_id=run["thread_id"],
        tools=run["tools"],
        model=run["model"],
        user_id=run["user_id"],
        metadata={},
        options={k: run[k] for k in RUN_OPTION_DEFAULTS},
        output_schema=run["output_schema"],
        client_tools=config.get("client_tools") or [],
        files=files,
        file_limits=file_limits,
    )
    return new, True
