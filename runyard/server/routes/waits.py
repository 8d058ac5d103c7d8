"""Humans in the loop: `/v1/waits` across runs, and a run's waits, answers, approvals and input."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from ...domain import Wait, WaitStatus
from ...store import runs, waits
from ..auth import org_id
from ..errors import ERRORS
from ..queries import After, Before, Limit
from ..schemas import AnswerBody, ApproveBody, InputBody, WaitList

router = APIRouter(tags=["waits"], responses=ERRORS)


@router.get("/v1/waits", response_model=WaitList)
async def list_waits(
    request: Request,
    org: str = Depends(org_id),
    status: WaitStatus | None = None,
    user_id: str | None = Query(None, max_length=200),
    run_id: str | None = Query(None, max_length=40),
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
) -> dict[str, Any]:
    """Waits of the org, newest first: `?status=open&user_id=…` is what needs a human now."""
    async with request.app.state.store.read() as conn:
        data, has_more, cursor = await waits.list_(
            conn,
            org,
            limit=limit,
            before=before,
            after=after,
            status=status.value if status else None,
            user_id=user_id,
            run_id=run_id,
        )
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/v1/waits/{wait_id}", response_model=Wait)
async def get_wait(wait_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        return await waits.get(conn, org, wait_id)


@router.get("/v1/runs/{run_id}/waits", response_model=WaitList, tags=["runs"])
async def run_waits(run_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Every pause of the run, oldest first, with its status and answer."""
    async with request.app.state.store.read() as conn:
        await runs.get(conn, org, run_id)
        data = await waits.for_run(conn, org, run_id)
    return {"data": data, "has_more": False, "next_cursor": None}


async def _resolve(
    request: Request, org: str, run_id: str, wait_id: str | None, answer: Any, kind: str
) -> dict[str, Any]:
    async with request.app.state.store.tx() as tx:
        return await waits.resolve(tx, org, run_id, wait_id, answer, kind=kind, resolved_by=f"api:{org}")


@router.post("/v1/runs/{run_id}/answer", response_model=Wait, tags=["runs"])
async def answer_run(run_id: str, body: AnswerBody, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Answer the run's clarifying question(s): `{question: answer}`."""
    return await _resolve(request, org, run_id, body.wait_id, {"answers": body.answers}, "question")


@router.post("/v1/runs/{run_id}/approve", response_model=Wait, tags=["runs"])
async def approve_run(run_id: str, body: ApproveBody, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Allow or deny a tool call (or a plan) the run waits on; `remember` allows that tool for the rest of it."""
    answer: dict[str, Any] = {"decision": body.decision}
    if body.reason is not None:
        answer["reason"] = body.reason
    if body.remember:
        answer["remember"] = True
    return await _resolve(request, org, run_id, body.wait_id, answer, "approval")


@router.post("/v1/runs/{run_id}/input", response_model=Wait, tags=["runs"])
async def input_run(run_id: str, body: InputBody, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    """Free text (≤ 32 KB) that answers whatever the run waits for; 409 when it is not waiting."""
    async with request.app.state.store.tx() as tx:
        return await waits.resolve_text(tx, org, run_id, body.content, wait_id=body.wait_id, resolved_by=f"api:{org}")
