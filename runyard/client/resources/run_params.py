"""The arguments of run calls and the requests built from them, without I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

from ...domain import ClientTool, File, Multitask, PermissionMode, Run, RunLimits, RunStatus, WaitTimeoutAction
from .. import exceptions as _exc
from ..base_client import RequestOptions, new_idempotency_key
from ..client_tools import LocalTools, ToolFunction, client_tool_json
from ..types import NotGiven, NotGivenOr, strip_not_given

__all__ = [
    "SSE_HEADERS",
    "RunCreateParams",
    "RunOptionsParams",
    "ThreadRunCreateParams",
    "check_outcome",
    "create_options",
    "file_ids",
    "local_tools",
    "run_body",
    "run_list_params",
]

SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}


class RunOptionsParams(TypedDict, total=False):
    """`domain.RunOptions` as keyword arguments (for `Unpack[...]`); a test keeps the two in step."""

    human_in_the_loop: bool
    """Offer the model `ask_user_question` and `request_user_input`, and allow permission modes (default False)."""
    permission_mode: PermissionMode
    """Which tool calls wait for approval: `autonomous` (default), `approve_writes`, `approve_all`, `plan`."""
    history: bool
    """Give the model the thread's earlier runs as context (default True)."""
    memory: bool
    """Give the model the user's memories and the memory tools (default True)."""
    wait_timeout: float
    """Seconds a pause stays open; then `wait_timeout_action` applies (default: no deadline)."""
    wait_timeout_action: WaitTimeoutAction
    """What an expired pause does: `deny` (the run goes on, default) or `fail` the run."""
    limits: RunLimits | Mapping[str, Any]
    """Budgets (`max_cost_usd`, `max_tokens`, `max_requests`, `max_tool_calls`, `max_duration_s`); the
    agent's and the org's apply too, the smallest wins. Past one the run fails (`budget_exceeded`)."""


class ThreadRunCreateParams(RunOptionsParams, total=False):
    """The keyword arguments of `threads.runs.create`: the run options, and what to run."""

    agent_id: str
    """The agent to run. Or give `name` and `instructions` to find-or-create it by name."""
    agent_version: int
    """Run this version of the agent (`agents.versions`); default: its newest."""
    persona_id: str
    """The agent as `"name@version"` (`"name"` alone: its newest), as the seeds' clients name it."""
    name: str
    """Name of the agent to find or create (with `instructions`)."""
    instructions: str
    """Instructions of the agent created by name."""
    tools: Sequence[str] | Mapping[str, ToolFunction]
    """A list of built-in tool names (e.g. `["calculator", "files"]`) overrides the agent's for this run.
    A dict `{name: function}` adds your own functions as client tools and keeps the agent's
    built-ins: `create_and_wait`, `stream` and `wait` run them when the run calls them (see
    `runyard.client.client_tools`); `create` only declares them."""
    client_tools: Sequence[ClientTool | Mapping[str, Any]]
    """Definitions of tools you execute (`{name, description, parameters, output_schema?}`), added to
    the agent's by name; the run waits for their results (`runs.tool_results`)."""
    variables: Mapping[str, Any]
    """Checked against the agent's `input_schema` (422 naming the path), then rendered into the task
    by its `message_template`; `message` may then be left out."""
    output_schema: dict[str, Any]
    """JSON Schema of the structured output, instead of the agent's, for this run."""
    files: Sequence[str | File]
    """Uploaded files (ids or `File`s from `files.upload`) put into the thread's workspace first."""
    model: str
    """Override the agent's model (or route) for this run."""
    route_id: str
    """Serve this run from this route (`GET /v1/routes`), with its retries and fallbacks; wins over `model`."""
    user_id: str
    """Your end user's id, to scope and filter runs."""
    metadata: dict[str, Any]
    """Free-form JSON; the `scripted` model reads its `script` here."""
    idempotency_key: str
    """Sent as `Idempotency-Key`; a fresh UUID per call when left out, reused by retries."""
    multitask: Multitask
    """When the thread has an active run: `reject` (409, default), `enqueue` or `interrupt`."""
    webhook_url: str
    """Also deliver the run's terminal event here, signed with the org's default webhook secret."""


class RunCreateParams(ThreadRunCreateParams, total=False):
    """The keyword arguments of `runs.create` (and of `stream` and `create_and_wait`)."""

    thread_id: str
    """Continue this thread; a new thread is started when left out."""


_RUN_CREATE_KEYS = RunCreateParams.__required_keys__ | RunCreateParams.__optional_keys__


def file_ids(files: Sequence[str | File]) -> list[str]:
    """The ids of files given as ids or `File`s."""
    if isinstance(files, str):
        raise TypeError("files is a list of file ids (or File objects), not one string")
    return [f.id if isinstance(f, File) else f for f in files]


def local_tools(params: Mapping[str, Any]) -> LocalTools | None:
    """The functions given as `tools={name: function}`, or `None` when `tools` is a list or absent."""
    tools = params.get("tools")
    return LocalTools(tools) if isinstance(tools, Mapping) else None


def _client_tools(params: Mapping[str, Any], local: LocalTools | None) -> list[dict[str, Any]] | None:
    declared = [client_tool_json(tool) for tool in params.get("client_tools") or []]
    functions = local.definitions() if local is not None else []
    clash = sorted({t["name"] for t in declared} & {t["name"] for t in functions})
    if clash:
        raise TypeError(f"tool(s) given both in client_tools and as functions in tools: {', '.join(clash)}")
    if "client_tools" not in params and not functions:
        return None
    return declared + functions


def run_body(
    message: str | None, params: Mapping[str, Any], *, stream: bool, local: LocalTools | None = None
) -> dict[str, Any]:
    """The JSON body of `POST /v1/runs`: the message, the fields given, and `stream`.

    `local` is `local_tools(params)` when the caller built it already.
    """
    unknown = sorted(set(params) - _RUN_CREATE_KEYS)
    if unknown:
        # A typo must not reach the server as a field it ignores or rejects with a vaguer message.
        raise TypeError(f"unexpected keyword argument(s) for a run: {', '.join(unknown)}")
    if local is None:
        local = local_tools(params)
    fields = strip_not_given({key: value for key, value in params.items() if key not in _BUILT})
    if isinstance(fields.get("limits"), RunLimits):
        fields["limits"] = fields["limits"].model_dump(exclude_none=True)
    tools = params.get("tools")
    if tools is not None and not isinstance(tools, Mapping):
        if isinstance(tools, str):
            raise TypeError("tools is a list of tool names (or a dict of functions), not one string")
        fields["tools"] = list(tools)
    client_tools = _client_tools(params, local)
    if client_tools is not None:
        fields["client_tools"] = client_tools
    if params.get("files") is not None:
        fields["files"] = file_ids(params["files"])
    if params.get("variables") is not None:
        fields["variables"] = dict(params["variables"])
    body = {"message": message} if message is not None else {}
    return {**body, **fields, "stream": stream}


_BUILT = frozenset({"idempotency_key", "tools", "client_tools", "files", "variables"})
"""Params that `run_body` turns into JSON itself (or, for the key, sends as a header)."""


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


def create_options(
    path: str, message: str | None, params: Mapping[str, Any], *, stream: bool, local: LocalTools | None = None
) -> RequestOptions:
    """The request that starts a run. Its idempotency key is minted here, once per logical call:
    every retry, and every re-POST of a stream that dropped before its first event, reuses it."""
    key = params.get("idempotency_key")
    return RequestOptions(
        "POST",
        path,
        json=run_body(message, params, stream=stream, local=local),
        headers=dict(SSE_HEADERS) if stream else {},
        idempotency_key=key if isinstance(key, str) else new_idempotency_key(),
    )


def check_outcome(run: Run, *, raise_on_failure: bool) -> Run:
    """Return `run`, or raise `RunFailedError` when it failed and the caller asked for that."""
    if raise_on_failure and run.status is RunStatus.FAILED:
        raise _exc.RunFailedError(run)
    return run
