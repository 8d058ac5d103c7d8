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

from ..domain import RunStatus
from . import events
from .db import Conn, Tx, utcnow
from .errors import Conflict, InvalidInput, InvalidTransition, NotFound
from .ids import new_id
from .pages import finish, page
from .schema import runs, waits

__all__ = [
    "APPROVAL_SCHEMA",
    "INPUT_SCHEMA",
    "cancel_open",
    "create",
    "expire_due",
    "for_run",
    "insert_many",
    "list_",
    "question_schema",
    "resolve",
    "to_dict",
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


def question_schema(questions: list[dict[str, Any]]) -> dict[str, Any]:
    """Answers are `{question text: answer}`: a choice, several choices, or free text."""
    properties: dict[str, Any] = {}
    for q in questions:
        options = q.get("options") or []
        if options and q.get("multi_select"):
            properties[q["question"]] = {"type": "array", "items": {"enum": options}, "minItems": 1, "uniqueItems": True}
        elif options:
            properties[q["question"]] = {"enum": options}
        else:
            properties[q["question"]] = {"type": "string", "maxLength": 32 * 1024}
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {"type": "object", "properties": {"answers": schema}, "required": ["answers"], "additionalProperties": False}


def to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "object": "wait", "run_id": row.run_id, "user_id": row.user_id, "kind": row.kind,
        "tool_call_id": row.tool_call_id, "request": row.request, "answer_schema": row.answer_schema,
        "status": row.status, "answer": row.answer, "resolved_by": row.resolved_by, "created_at": row.created_at,
        "resolved_at": row.resolved_at, "expires_at": row.expires_at, "timeout_action": row.timeout_action,
    }


async def create(
    conn: Conn,
    *,
    org_id: str,
    run_id: str,
    user_id: str | None,
    kind: str,
    request: dict[str, Any],
    answer_schema: dict[str, Any],
    tool_call_id: str | None = None,
    expires_at: datetime | None = None,
    timeout_action: str | None = None,
) -> dict[str, Any]:
    values = {
        "id": new_id("wait"), "org_id": org_id, "run_id": run_id, "user_id": user_id, "kind": kind,
        "tool_call_id": tool_call_id, "request": request, "answer_schema": answer_schema, "status": "open",
        "answer": None, "resolved_by": None, "created_at": utcnow(), "resolved_at": None,
        "expires_at": expires_at, "timeout_action": timeout_action,
    }
    await conn.execute(insert(waits), [values])
    return {"object": "wait", **values}


async def insert_many(conn: Conn, new: list[dict[str, Any]]) -> None:
    """Open waits built by the worker (ids already minted, so its events can name them)."""
    if new:
        await conn.execute(insert(waits), [{k: v for k, v in w.items() if k != "object"} for w in new])


async def for_run(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(select(waits).where(waits.c.run_id == run_id).order_by(waits.c.id))
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
    all_waits = await for_run(tx.conn, run_id)
    if wait_id is None:
        of_kind = [w for w in all_waits if kind is None or w["kind"] == kind]
        candidates = [w for w in of_kind if w["status"] == "open"]
        resolved = [w for w in of_kind if w["status"] == "resolved"]
        if candidates:
            wait = candidates[0]
        elif resolved and resolved[-1]["answer"] == answer:
            return resolved[-1]  # a retry of the last answer, without its wait id: same result
        else:
            raise InvalidTransition(f"run {run_id} is {run['status']}: it is not waiting for {kind or 'anything'}")
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
    if run["status"] != RunStatus.WAITING.value:
        raise InvalidTransition(f"run {run_id} is {run['status']}: it is not waiting")
    _check_answer(wait, answer)
    now = utcnow()
    await tx.conn.execute(
        update(waits).where(waits.c.id == wait["id"]).values(
            status="resolved", answer=answer, resolved_by=resolved_by, resolved_at=now)
    )
    wait = {**wait, "status": "resolved", "answer": answer, "resolved_by": resolved_by, "resolved_at": now}
    new: list[events.NewEvent] = [("run.input_received", {"wait_id": wait["id"], "kind": wait["kind"], "answer": answer})]
    if wait["kind"] == "approval" and wait["tool_call_id"] is not None:
        decision = "tool.approved" if answer["decision"] == "allow" else "tool.denied"
        new.append((decision, {"wait_id": wait["id"], "tool_call_id": wait["tool_call_id"],
                               "name": wait["request"].get("name"), "reason": answer.get("reason")}))
    still_open = [w for w in all_waits if w["status"] == "open" and w["id"] != wait["id"]]
    if still_open:
        await events.append(tx, run_id, new)
    else:
        await events.append(tx, run_id, new, to=RunStatus.PENDING, changes={"waiting_for": None})
        tx.publish_after_commit("queue", run_id)
    return wait


async def cancel_open(conn: Conn, run_id: str) -> None:
    await conn.execute(
        update(waits).where(waits.c.run_id == run_id, waits.c.status == "open").values(
            status="cancelled", resolved_at=utcnow())
    )


async def expire_due(tx: Tx) -> int:
    """Apply the timeout action of open waits past `expires_at`: deny (the run goes on) or fail."""
    now = utcnow()
    rows = list(await tx.conn.execute(
        select(waits).where(and_(waits.c.status == "open", waits.c.expires_at < now)).order_by(waits.c.id).limit(100)
    ))
    for row in rows:
        wait = to_dict(row)
        run_row = (await tx.conn.execute(select(runs.c.status, runs.c.usage).where(runs.c.id == wait["run_id"]))).one()
        if run_row.status != RunStatus.WAITING.value:
            continue
        await tx.conn.execute(update(waits).where(waits.c.id == wait["id"]).values(status="expired", resolved_at=now))
        if wait["timeout_action"] == "fail":
            error = f"wait {wait['id']} ({wait['kind']}) expired without an answer"
            await cancel_open(tx.conn, wait["run_id"])
            await events.append(
                tx, wait["run_id"], [("run.failed", {"error": error, "usage": run_row.usage})],
                to=RunStatus.FAILED, changes={"error": error, "waiting_for": None},
            )
            continue
        others = (await tx.conn.execute(
            select(waits.c.id).where(waits.c.run_id == wait["run_id"], waits.c.status == "open"))).all()
        new: list[events.NewEvent] = [("run.input_received", {"wait_id": wait["id"], "kind": wait["kind"],
                                                             "answer": None, "expired": True})]
        if wait["kind"] == "approval" and wait["tool_call_id"] is not None:
            new.append(("tool.denied", {"wait_id": wait["id"], "tool_call_id": wait["tool_call_id"],
                                        "name": wait["request"].get("name"), "reason": "the approval request expired"}))
        if others:
            await events.append(tx, wait["run_id"], new)
        else:
            await events.append(tx, wait["run_id"], new, to=RunStatus.PENDING, changes={"waiting_for": None})
            tx.publish_after_commit("queue", wait["run_id"])
    return len(rows)
