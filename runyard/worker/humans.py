"""Pauses for humans, seen from the worker: waits out of deferred tool calls, and back again.

Going out: pydantic-ai ends a run with `DeferredToolRequests` (a question, an input request,
a call needing approval) or, in `plan` mode, with a plan; each becomes a wait. Coming back:
the answers of resolved waits become `DeferredToolResults` for the pending calls of the
checkpoint, so the model sees each answer as the tool's result.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic_ai.exceptions import ToolFailed
from pydantic_ai.messages import ModelMessage, ModelResponse, RetryPromptPart, ToolReturnPart
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied

from ..domain import WaitKind, WaitStatus
from ..store import waits as waits_store
from ..store.db import utcnow
from ..store.ids import new_id
from ..store.outcomes import ClaimedRun

__all__ = ["deferred_results", "own_messages", "plan_prompt", "plan_wait", "planning", "remembered_tools", "waits_for"]

TIMED_OUT = "The user did not answer in time."
NO_RESULT = "The caller did not post this tool's result in time."
_ANSWERED = (WaitStatus.RESOLVED, WaitStatus.EXPIRED)
"""A wait in one of these has something for the model: the answer, or that none came in time."""


def _wait(
    run: ClaimedRun, kind: WaitKind, request: dict[str, Any], schema: dict[str, Any], tool_call_id: str | None
) -> dict[str, Any]:
    timeout = run.options.wait_timeout
    now = utcnow()
    return {
        "id": new_id("wait"),
        "org_id": run.org_id,
        "run_id": run.id,
        "user_id": run.user_id,
        "kind": kind,
        "tool_call_id": tool_call_id,
        "request": request,
        "answer_schema": schema,
        "status": WaitStatus.OPEN.value,
        "answer": None,
        "resolved_by": None,
        "created_at": now,
        "resolved_at": None,
        "expires_at": now + timedelta(seconds=timeout) if timeout else None,
        "timeout_action": run.options.wait_timeout_action if timeout else None,
    }


def waits_for(requests: DeferredToolRequests, run: ClaimedRun) -> list[dict[str, Any]]:
    """One wait per deferred call: a question, an input request, a caller's tool, or an approval."""
    out = []
    client_tools = {t["name"]: t for t in run.config.get("client_tools") or []}
    for call in requests.calls:
        args = call.args_as_dict()
        if call.tool_name in client_tools:
            request = {"tool_call_id": call.tool_call_id, "name": call.tool_name, "args": args}
            schema = waits_store.tool_result_schema(client_tools[call.tool_name].get("output_schema"))
            out.append(_wait(run, "tool_result", request, schema, call.tool_call_id))
            continue
        kind = (requests.metadata.get(call.tool_call_id) or {}).get("kind", "question")
        if kind == "input":
            out.append(
                _wait(run, "input", {"prompt": args.get("prompt", "")}, waits_store.INPUT_SCHEMA, call.tool_call_id)
            )
        else:
            questions = args.get("questions") or []
            out.append(
                _wait(
                    run, "question", {"questions": questions}, waits_store.question_schema(questions), call.tool_call_id
                )
            )
    for call in requests.approvals:
        request = {"tool_call_id": call.tool_call_id, "name": call.tool_name, "args": call.args_as_dict()}
        out.append(_wait(run, "approval", request, waits_store.APPROVAL_SCHEMA, call.tool_call_id))
    return out


def plan_wait(plan: str, run: ClaimedRun) -> dict[str, Any]:
    return _wait(run, "approval", {"plan": plan}, waits_store.APPROVAL_SCHEMA, None)


def _pending_call_ids(history: list[ModelMessage]) -> list[str]:
    """Calls of the last response still without a result: when a step also called tools that ran,
    their results follow the response in a request of their own (pydantic-ai's deferred form)."""
    done: set[str] = set()
    for message in reversed(history):
        if isinstance(message, ModelResponse):
            return [c.tool_call_id for c in message.tool_calls if c.tool_call_id not in done]
        done.update(p.tool_call_id for p in message.parts if isinstance(p, (ToolReturnPart, RetryPromptPart)))
    return []


def deferred_results(history: list[ModelMessage] | None, waits: list[dict[str, Any]]) -> DeferredToolResults | None:
    """Answers of the checkpoint's pending tool calls, from their resolved (or expired) waits."""
    pending = set(_pending_call_ids(history or []))
    if not pending:
        return None
    results = DeferredToolResults()
    for wait in waits:
        call_id = wait["tool_call_id"]
        if call_id not in pending or wait["status"] not in _ANSWERED:
            continue
        answer = wait["answer"]
        if wait["kind"] == "approval":
            if wait["status"] == WaitStatus.EXPIRED:
                results.approvals[call_id] = ToolDenied("The approval request timed out: the call was not made.")
            elif answer["decision"] == "allow":
                results.approvals[call_id] = ToolApproved()
            else:
                reason = answer.get("reason") or "no reason given"
                results.approvals[call_id] = ToolDenied(f"The user denied this tool call: {reason}")
        elif wait["kind"] == "tool_result":
            if wait["status"] == WaitStatus.EXPIRED:
                results.calls[call_id] = ToolFailed(NO_RESULT)
            elif "error" in answer:
                results.calls[call_id] = ToolFailed(answer["error"])
            else:
                results.calls[call_id] = answer["output"]
        elif wait["status"] == WaitStatus.EXPIRED:
            results.calls[call_id] = TIMED_OUT
        elif wait["kind"] == "input":
            results.calls[call_id] = answer["content"]
        else:
            results.calls[call_id] = answer["answers"]
        results.answered_by[call_id] = wait["resolved_by"] or "user"
    return results if (results.calls or results.approvals) else None


def remembered_tools(waits: list[dict[str, Any]]) -> set[str]:
    return {
        w["request"]["name"]
        for w in waits
        if w["kind"] == "approval"
        and w["status"] == WaitStatus.RESOLVED
        and w["tool_call_id"] is not None
        and w["answer"].get("decision") == "allow"
        and w["answer"].get("remember")
    }


def _plan_waits(waits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [w for w in waits if w["kind"] == "approval" and w["tool_call_id"] is None]


def planning(run: ClaimedRun, waits: list[dict[str, Any]]) -> bool:
    """In `plan` mode, tools stay hidden until a plan was approved."""
    if run.options.permission_mode != "plan":
        return False
    return not any(
        w["status"] == WaitStatus.RESOLVED and w["answer"]["decision"] == "allow" for w in _plan_waits(waits)
    )


def plan_prompt(run: ClaimedRun, waits: list[dict[str, Any]], history: list[ModelMessage] | None) -> str | None:
    """After a plan wait is answered, what to tell the model (once: right after the plan)."""
    plans = _plan_waits(waits)
    if run.options.permission_mode != "plan" or not plans or not history:
        return None
    last = plans[-1]
    if last["status"] not in _ANSWERED or not isinstance(history[-1], ModelResponse):
        return None
    if last["status"] == WaitStatus.RESOLVED and last["answer"]["decision"] == "allow":
        return "The plan is approved. Carry it out now."
    reason = (last["answer"] or {}).get("reason") if last["status"] == WaitStatus.RESOLVED else "no answer in time"
    return f"The plan was not approved ({reason or 'no reason given'}). Propose a revised plan."


def own_messages(messages: list[ModelMessage], history_len: int) -> list[ModelMessage]:
    """A run's own part of its checkpoint (without the thread history it started from)."""
    return messages[history_len:]
