"""Waits: the typed pauses of a run (a question, a tool approval, free input).

A run waiting for a human holds no worker. Resolving a wait is idempotent (the same answer
again returns the same result; another answer is a conflict), is recorded as a
`run.input_received` event, and once no wait of the run is open the run goes back to
`pending` for any worker to resume from its checkpoint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jsonschema
from sqlalchemy import and_, insert, select, update

from ..domain import RunStatus, WaitStatus
from . import events
from .db import Conn, Tx, utcnow
from .errors import Conflict, InvalidInput, NotFound
from .pages import finish, page
from .schema import waits

__all__ = [
    "APPROVAL_SCHEMA",
    "INPUT_SCHEMA",
    "answer_from_text",
    "cancel_open",
    "expire_due",
    "for_run",
    "get",
    "insert_many",
    "list_",
    "question_schema",
    "resolve",
    "resolve_text",
    "resolve_tool_results",
    "to_dict",
    "tool_result_schema",
]

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decision": {"enum": ["allow", "deny"]},
        "reason": {"type": "string", "maxLength": 4000},
        "remember": {"type": "boolean"},
    },
    "required": ["decision"],
    "additionalProperties": False,
}
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"content": {"type": "string", "maxLength": 32 * 1024}},
    "required": ["content"],
    "additionalProperties": False,
}


def tool_result_schema(output_schema: dict[str, Any] | None) -> dict[str, Any]:
    """A caller's tool result: `{"output": …}` (matching the tool's `output_schema`, if any) or `{"error": "…"}`."""
    output: dict[str, Any] = output_schema or {}
    return {
        "type": "object",
        "oneOf": [
            {"properties": {"output": output}, "required": ["output"], "additionalProperties": False},
            {
                "properties": {"error": {"type": "string", "maxLength": 32 * 1024}},
                "required": ["error"],
                "additionalProperties": False,
            },
        ],
    }


def question_schema(questions: list[dict[str, Any]]) -> dict[str, Any]:
    """Answers are `{question text: answer}`: a choice, several choices, or free text."""
    properties: dict[str, Any] = {}
    for q in questions:
        options = q.get("options") or []
        if options and q.get("multi_select"):
            properties[q["question"]] = {
                "type": "array",
                "items": {"enum": options},
                "minItems": 1,
                "uniqueItems": True,
            }
        elif options:
            properties[q["question"]] = {"enum": options}
        else:
            properties[q["question"]] = {"type": "string", "maxLength": 32 * 1024}
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {"type": "object", "properties": {"answers": schema}, "required": ["answers"], "additionalProperties": False}


def to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "wait",
        "run_id": row.run_id,
        "user_id": row.user_id,
        "kind": row.kind,
        "tool_call_id": row.tool_call_id,
        "request": row.request,
        "answer_schema": row.answer_schema,
        "status": row.status,
        "answer": row.answer,
        "resolved_by": row.resolved_by,
        "created_at": row.created_at,
        "resolved_at": row.resolved_at,
        "expires_at": row.expires_at,
        "timeout_action": row.timeout_action,
    }


async def insert_many(conn: Conn, new: list[dict[str, Any]]) -> None:
    """Open waits built by the worker (ids already minted, so its events can name them)."""
    if new:
        await conn.execute(insert(waits), [{k: v for k, v in w.items() if k != "object"} for w in new])


async def for_run(conn: Conn, org_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every wait of the run, oldest first."""
    rows = await conn.execute(
        select(waits).where(waits.c.org_id == org_id, waits.c.run_id == run_id).order_by(waits.c.id)
    )
    return [to_dict(r) for r in rows]


async def list_(
    conn: Conn,
    org_id: str,
    *,
    limit: int,
    before: str | None = None,
    after: str | None = None,
    status: str | None = None,
    user_id: str | None = None,
    run_id: str | None = None,
) -> tuple[list[dict[str, Any]], bool, str | None]:
    query = select(waits).where(waits.c.org_id == org_id)
    if status is not None:
        query = query.where(waits.c.status == status)
    if user_id is not None:
        query = query.where(waits.c.user_id == user_id)
    if run_id is not None:
        query = query.where(waits.c.run_id == run_id)
    query, ascending = page(query, waits, limit=limit, before=before, after=after)
    rows, has_more, cursor = finish(list(await conn.execute(query)), limit=limit, ascending=ascending)
    return [to_dict(r) for r in rows], has_more, cursor


def _check_answer(wait: dict[str, Any], answer: Any) -> None:
    validator = jsonschema.Draft202012Validator(wait["answer_schema"])
    errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in error.path) or "answer"
        raise InvalidInput(f"answer does not match the wait's answer_schema at {where}: {error.message}", field=where)


async def resolve(
    tx: Tx,
    org_id: str,
    run_id: str,
    wait_id: str | None,
    answer: Any,
    *,
    resolved_by: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Resolve one open wait of a run (the oldest open one when `wait_id` is None)."""
    from . import runs as runs_store

    run = await runs_store.get(tx.conn, org_id, run_id, lock=True)  # serialises racing answers
    all_waits = await for_run(tx.conn, org_id, run_id)
    if wait_id is None:
        of_kind = [w for w in all_waits if kind is None or w["kind"] == kind]
        candidates = [w for w in of_kind if w["status"] == "open"]
        resolved = [w for w in of_kind if w["status"] == "resolved"]
        if candidates:
            wait = candidates[0]
        elif resolved and resolved[-1]["answer"] == answer:
            return resolved[-1]  # a retry of the last answer, without its wait id: same result
        else:
            events.refuse(run, f"it is not waiting for {kind or 'anything'}")
    else:
        matching = [w for w in all_waits if w["id"] == wait_id]
        if not matching:
            raise NotFound.of("wait", wait_id)
        wait = matching[0]
    if kind is not None and wait["kind"] != kind:
        raise Conflict(f"wait {wait['id']} is a {wait['kind']}, not a {kind}", field="wait_id")
    if wait["status"] == "resolved":
        if wait["answer"] == answer:
            return wait
        raise Conflict(f"wait {wait['id']} was already resolved with another answer", field="wait_id")
    if wait["status"] != "open":
        raise Conflict(f"wait {wait['id']} is {wait['status']}", field="wait_id")
    events.require_status(run, (RunStatus.WAITING,), "it is not waiting")
    _check_answer(wait, answer)
    now = utcnow()
    await tx.conn.execute(
        update(waits)
        .where(waits.c.id == wait["id"])
        .values(status="resolved", answer=answer, resolved_by=resolved_by, resolved_at=now)
    )
    wait = {**wait, "status": "resolved", "answer": answer, "resolved_by": resolved_by, "resolved_at": now}
    new: list[events.NewEvent] = [
        ("run.input_received", {"wait_id": wait["id"], "kind": wait["kind"], "answer": answer})
    ]
    if wait["kind"] == "approval" and wait["tool_call_id"] is not None:
        decision = "tool.approved" if answer["decision"] == "allow" else "tool.denied"
        new.append(
            (
                decision,
                {
                    "wait_id": wait["id"],
                    "tool_call_id": wait["tool_call_id"],
                    "name": wait["request"].get("name"),
                    "reason": answer.get("reason"),
                },
            )
        )
    still_open = [w for w in all_waits if w["status"] == "open" and w["id"] != wait["id"]]
    if still_open:
        await events.append(tx, run_id, new)
    else:
        await events.append(tx, run_id, new, to=RunStatus.PENDING, changes={"waiting_for": None})
        tx.publish_after_commit("queue", run_id)
    return wait


async def resolve_tool_results(
    tx: Tx, org_id: str, run_id: str, results: list[dict[str, Any]], *, resolved_by: str | None = None
) -> list[dict[str, Any]]:
    """Answer the run's `tool_result` waits, one per `{tool_call_id, output | error}`, in one transaction.

    Each is resolved like any wait (the same result again is fine, another one is a conflict);
    the run goes back to the queue once none of its waits is open."""
    from . import runs as runs_store

    run = await runs_store.get(tx.conn, org_id, run_id, lock=True)
    by_call = {w["tool_call_id"]: w for w in await for_run(tx.conn, org_id, run_id) if w["kind"] == "tool_result"}
    resolved = []
    for i, result in enumerate(results):
        wait = by_call.get(result["tool_call_id"])
        if wait is None:
            if not by_call:
                events.refuse(run, "it is not waiting for tool results")
            raise NotFound(
                f"run {run_id} has no tool call {result['tool_call_id']!r} waiting for a result",
                field=f"results[{i}].tool_call_id",
            )
        answer = {k: v for k, v in result.items() if k != "tool_call_id"}
        if "output" in answer:
            # Checked here to name the request's own path; `resolve` checks the whole answer again.
            output_schema = wait["answer_schema"]["oneOf"][0]["properties"]["output"]
            errors = sorted(
                jsonschema.Draft202012Validator(output_schema).iter_errors(answer["output"]), key=lambda e: list(e.path)
            )
            if errors:
                where = ".".join([f"results[{i}].output", *(str(p) for p in errors[0].path)])
                raise InvalidInput(
                    f"{where} does not match the output_schema of tool {wait['request']['name']!r}: "
                    f"{errors[0].message}",
                    field=where,
                )
        resolved.append(await resolve(tx, org_id, run_id, wait["id"], answer, resolved_by=resolved_by))
    return resolved


ALLOW_WORDS = frozenset({"allow", "allowed", "approve", "approved", "yes", "y", "ok", "okay"})


def answer_from_text(wait: dict[str, Any], content: str) -> Any:
    """Free text as the answer to any wait, as the seed HTTP API's `/input` takes it."""
    if wait["kind"] == "approval":
        if content.strip().lower() in ALLOW_WORDS:
            return {"decision": "allow"}
        return {"decision": "deny", "reason": content}
    if wait["kind"] == "input":
        return {"content": content}
    if wait["kind"] == "tool_result":
        return {"output": content}  # the caller's tool returned this text
    return {"answers": {q["question"]: content for q in wait["request"].get("questions", [])}}


async def resolve_text(
    tx: Tx, org_id: str, run_id: str, content: str, *, wait_id: str | None = None, resolved_by: str | None = None
) -> dict[str, Any]:
    """Answer the run's open wait (`wait_id`, or the oldest) with free text; 409 when it waits for nothing."""
    from . import runs as runs_store

    run = await runs_store.get(tx.conn, org_id, run_id, lock=True)
    open_waits = [w for w in await for_run(tx.conn, org_id, run_id) if w["status"] == WaitStatus.OPEN.value]
    if not open_waits:
        events.refuse(run, "it is not waiting for input")
    events.require_status(run, (RunStatus.WAITING,), "it is not waiting for input")
    wait = open_waits[0] if wait_id is None else next((w for w in open_waits if w["id"] == wait_id), None)
    if wait is None:
        raise NotFound(f"run {run_id} has no open wait {wait_id}", field="wait_id")
    return await resolve(tx, org_id, run_id, wait["id"], answer_from_text(wait, content), resolved_by=resolved_by)


async def get(conn: Conn, org_id: str, wait_id: str) -> dict[str, Any]:
    row = (await conn.execute(select(waits).where(waits.c.id == wait_id, waits.c.org_id == org_id))).one_or_none()
    if row is None:
        raise NotFound.of("wait", wait_id)
    return to_dict(row)


async def cancel_open(conn: Conn, org_id: str, run_id: str) -> None:
    await conn.execute(
        update(waits)
        .where(waits.c.org_id == org_id, waits.c.run_id == run_id, waits.c.status == "open")
        .values(status="cancelled", resolved_at=utcnow())
    )


async def expire_due(tx: Tx, *, now: datetime | None = None) -> int:
    """Apply the timeout action of open waits past `expires_at`: deny (the run goes on) or fail.

    Each wait is re-checked under its run's row lock and only an `open` wait is touched, so an
    answer committed concurrently always wins over the deadline."""
    from . import runs as runs_store

    now = now or utcnow()
    due = list(
        await tx.conn.execute(
            select(waits.c.id, waits.c.org_id, waits.c.run_id)
            .where(and_(waits.c.status == WaitStatus.OPEN.value, waits.c.expires_at < now))
            .order_by(waits.c.id)
            .limit(100)
        )
    )
    expired = 0
    for candidate in due:
        run = await runs_store.get(tx.conn, candidate.org_id, candidate.run_id, lock=True)
        if run["status"] != RunStatus.WAITING.value:
            continue
        claimed = await tx.conn.execute(
            update(waits)
            .where(waits.c.id == candidate.id, waits.c.status == WaitStatus.OPEN.value)
            .values(status=WaitStatus.EXPIRED.value, resolved_at=now)
        )
        if claimed.rowcount != 1:  # answered (or cancelled) since the scan
            continue
        expired += 1
        wait = await get(tx.conn, candidate.org_id, candidate.id)
        run_id, org_id = wait["run_id"], candidate.org_id
        if wait["timeout_action"] == "fail":
            error = f"wait {wait['id']} ({wait['kind']}) expired without an answer"
            await cancel_open(tx.conn, org_id, run_id)
            await events.append(
                tx,
                run_id,
                [("run.failed", {"error": error, "usage": run["usage"], "stop_reason": "wait_timeout"})],
                to=RunStatus.FAILED,
                changes={"error": error, "waiting_for": None, "stop_reason": "wait_timeout"},
            )
            continue
        others = (
            await tx.conn.execute(
                select(waits.c.id).where(waits.c.run_id == run_id, waits.c.status == WaitStatus.OPEN.value)
            )
        ).all()
        new: list[events.NewEvent] = [
            ("run.input_received", {"wait_id": wait["id"], "kind": wait["kind"], "answer": None, "expired": True})
        ]
        if wait["kind"] == "approval" and wait["tool_call_id"] is not None:
            new.append(
                (
                    "tool.denied",
                    {
                        "wait_id": wait["id"],
                        "tool_call_id": wait["tool_call_id"],
                        "name": wait["request"].get("name"),
                        "reason": "the approval request expired",
                    },
                )
            )
        if others:
            await events.append(tx, run_id, new)
        else:
            await events.append(tx, run_id, new, to=RunStatus.PENDING, changes={"waiting_for": None})
            tx.publish_after_commit("queue", run_id)
    return expired
