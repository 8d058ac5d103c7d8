"""The arguments of run calls and the requests built from them, without I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ...domain import Multitask, Run, RunOptionsParams, RunStatus
from .. import exceptions as _exc
from ..base_client import RequestOptions, new_idempotency_key
from ..types import NotGiven, NotGivenOr, strip_not_given

__all__ = [
    "SSE_HEADERS",
    "RunCreateParams",
    "ThreadRunCreateParams",
    "check_outcome",
    "create_options",
    "run_body",
    "run_list_params",
]

SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}


class ThreadRunCreateParams(RunOptionsParams, total=False):
    """The keyword arguments of `threads.runs.create`: the run options, and what to run."""

    agent_id: str
    """The agent to run. Or give `name` and `instructions` to find-or-create it by name."""
    name: str
    """Name of the agent to find or create (with `instructions`)."""
    instructions: str
    """Instructions of the agent created by name."""
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
    multitask: Multitask
    """When the thread has an active run: `reject` (409, default), `enqueue` or `interrupt`."""


class RunCreateParams(ThreadRunCreateParams, total=False):
    """The keyword arguments of `runs.create` (and of `stream` and `create_and_wait`)."""

    thread_id: str
    """Continue this thread; a new thread is started when left out."""


_RUN_CREATE_KEYS = RunCreateParams.__required_keys__ | RunCreateParams.__optional_keys__


def run_body(message: str, params: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    """The JSON body of `POST /v1/runs`: the message, the fields given, and `stream`."""
    unknown = sorted(set(params) - _RUN_CREATE_KEYS)
    if unknown:
        # A typo must not reach the server as a field it ignores or rejects with a vaguer message.
        raise TypeError(f"unexpected keyword argument(s) for a run: {', '.join(unknown)}")
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
    if not isinstance(status, NotGiven):
        statuses = [status] if isinstance(status, str) else list(status)
        params["status"] = [RunStatus(value).value for value in statuses]
    if not isinstance(metadata, NotGiven):
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
