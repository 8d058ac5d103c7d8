"""The arguments of run calls and the requests built from them, without I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict

from .. import _exceptions as _exc
from .._base_client import RequestOptions, new_idempotency_key
from .._types import NOT_GIVEN, NotGivenOr, strip_not_given
from ..domain import PermissionMode, Run, RunStatus

__all__ = [
    "Multitask",
    "RunCreateParams",
    "SSE_HEADERS",
    "check_outcome",
    "create_options",
    "run_body",
    "run_list_params",
]

Multitask = Literal["reject", "enqueue", "interrupt"]
"""What a new run does when its thread has an active run: 409, start after it, or cancel it first."""

SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}


class RunCreateParams(TypedDict, total=False):
    """The keyword arguments of `runs.create` (and of `stream` and `create_and_wait`)."""

    agent_id: str
    """The agent to run. Or give `name` and `instructions` to find-or-create it by name."""
    name: str
    """Name of the agent to find or create (with `instructions`)."""
    instructions: str
    """Instructions of the agent created by name."""
    thread_id: str
    """Continue this thread; a new thread is started when left out."""
    tools: list[str]
    """Override the agent's tools for this run."""
    model: str
    """Override the agent's model (or route) for this run."""
    user_id: str
    """Your end user's id, to scope and filter runs."""
    metadata: dict[str, Any]
    """Free-form JSON; the `scripted` model reads its `script` here."""
    idempotency_key: str
    """Sent as `Idempotency-Key`; a fresh UUID per call when left out, reused by retries."""
    human_in_the_loop: bool
    """Offer the model `ask_user_question` and `request_user_input`, and allow permission modes (default False)."""
    permission_mode: PermissionMode
    """Which tool calls wait for approval: `autonomous` (default), `approve_writes`, `approve_all`, `plan`."""
    history: bool
    """Give the model the thread's earlier runs as context (default True)."""
    memory: bool
    """Give the model the user's memories and the memory tools (default True)."""
    multitask: Multitask
    """When the thread has an active run: `reject` (409, default), `enqueue` or `interrupt`."""
    wait_timeout: float
    """Seconds a pause stays open; then `wait_timeout_action` applies (default: no deadline)."""
    wait_timeout_action: Literal["deny", "fail"]
    """What an expired pause does: `deny` (the run goes on, default) or `fail` the run."""



def run_body(message: str, params: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    """The JSON body of `POST /v1/runs`: the message, the fields given, and `stream`."""
    fields = strip_not_given({key: value for key, value in params.items() if key != "idempotency_key"})
    return {"message": message, **fields, "stream": stream}


def run_list_params(
    *,
    agent_id: NotGivenOr[str],
    thread_id: NotGivenOr[str],
    user_id: NotGivenOr[str],
    status: NotGivenOr[RunStatus | str | Sequence[RunStatus | str]],
    metadata: NotGivenOr[Mapping[str, str]],
    created_after: NotGivenOr[datetime | str],
    created_before: NotGivenOr[datetime | str],
    limit: NotGivenOr[int],
    before: NotGivenOr[str],
    after: NotGivenOr[str],
) -> dict[str, Any]:
    """The query of `GET /v1/runs`: repeated `status`, `metadata[key]=value`, ISO 8601 datetimes."""
    params: dict[str, Any] = {
        "agent_id": agent_id,
        "thread_id": thread_id,
        "user_id": user_id,
        "limit": limit,
        "before": before,
        "after": after,
        "created_after": created_after.isoformat() if isinstance(created_after, datetime) else created_after,
        "created_before": created_before.isoformat() if isinstance(created_before, datetime) else created_before,
    }
    if status is not NOT_GIVEN:
        statuses = [status] if isinstance(status, str) else list(status)
        params["status"] = [RunStatus(value).value for value in statuses]
    if metadata is not NOT_GIVEN:
        params.update({f"metadata[{key}]": value for key, value in metadata.items()})
    return strip_not_given(params)



def create_options(path: str, message: str, params: Mapping[str, Any], *, stream: bool) -> RequestOptions:
    """The request that starts a run. Its idempotency key is minted here, once per logical call:
    every retry, and every re-POST of a stream that dropped before its first event, reuses it."""
    key = params.get("idempotency_key")
    return RequestOptions(
        "POST",
        path,
        json=run_body(message, params, stream=stream),
        headers=dict(SSE_HEADERS) if stream else {},
        idempotency_key=key if isinstance(key, str) else new_idempotency_key(),
    )


def check_outcome(run: Run, *, raise_on_failure: bool) -> Run:
    """Return `run`, or raise `RunFailedError` when it failed and the caller asked for that."""
    if raise_on_failure and run.status is RunStatus.FAILED:
        raise _exc.RunFailedError(run)
    return run

