"""`client.runs` of `Runyard`: start runs, stream their events, wait for them, list and cancel
them, and answer them when they pause for a human.

The bodies and queries are built in `run_params`, the wait loop's decisions are made in
`waiting`, the answers to pauses are shaped in `waits`, and the caller's tool functions are
wrapped in `client_tools`, all without I/O. `Runs` here and `AsyncRuns` in `async_runs` hold
only the calls, written line for line alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Unpack

from ..._events import Event, parse_event
from ...domain import File, Run, RunStatus, Wait
from .. import exceptions as _exc
from ..base_client import new_idempotency_key
from ..client_tools import LocalTools, ToolFunction, without_rejected
from ..pagination import SyncPage
from ..paths import path_for
from ..streams import RunStream
from ..types import NOT_GIVEN, NotGiven, NotGivenOr
from .files import RunFiles
from .run_params import RunCreateParams, check_outcome, create_options, file_ids, local_tools, run_list_params
from .waiting import long_poll_seconds, long_poll_timeout, next_poll_pause, open_waits, wait_deadline
from .waits import (
    Decision,
    OnApproval,
    OnInput,
    OnQuestion,
    answer_body,
    approve_body,
    callback_request,
    pick_callback,
)

if TYPE_CHECKING:
    from ..client import Runyard

__all__ = ["Runs"]


class Runs:
    """Runs: one execution of an agent on one task."""

    def __init__(self, client: Runyard) -> None:
        self._client = client
        self.files = RunFiles(client)
        """The files of a run's workspace."""

    def create(self, message: str | None = None, **params: Unpack[RunCreateParams]) -> Run:
        """Start a run and return it at once (status `pending`).

        Args:
            message: the task (at most 32 KB); optional when the agent has a `message_template`.
            agent_id: the agent to run; or pass `name` and `instructions` to find-or-create it.
            thread_id: continue this thread instead of starting a new one.
            variables: rendered into the task by the agent's `message_template`, checked against
                its `input_schema` first (`ValidationError` naming the path otherwise).
            files: uploaded file ids (or `File`s) to put into the thread's workspace first; the
                run reads them with the `files` tools (`tools=["files"]`).
            tools: a list of built-in tool names overrides the agent's; a dict `{name: function}`
                declares your functions as client tools (run them with `create_and_wait`,
                `stream` or `wait`, which take the same dict).
            client_tools: definitions of tools you execute yourself (see `tool_results`).
            model / output_schema: override the agent's for this run.
            user_id: your end user's id.
            metadata: free-form JSON (the `scripted` model reads `script` here).
            idempotency_key: makes retries safe; a UUID is minted when left out.
            human_in_the_loop: let the run pause for a human (questions, input, approvals).
            permission_mode: `autonomous`, `approve_writes`, `approve_all` or `plan`
                (any but `autonomous` needs `human_in_the_loop=True`).
            history / memory: give the model the thread's earlier runs / the user's memories.
            multitask: `reject`, `enqueue` or `interrupt` when the thread has an active run.
            wait_timeout / wait_timeout_action: a deadline for each pause, then `deny` or `fail`.
        """
        return self._create("/v1/runs", message, params)

    def stream(self, message: str | None = None, **params: Unpack[RunCreateParams]) -> RunStream:
        """Start a run and stream its events; use it as a context manager.

        Takes the arguments of `create`. Entering sends the request; iterating yields `Event`s
        until the terminal one, reconnecting by itself if the connection drops. With
        `tools={name: function}`, the stream runs your functions when the run calls them, posts
        their results, and goes on.

        ```python
        with client.runs.stream("Say hello", agent_id=agent.id) as stream:
            for event in stream:
                print(event.type)
            print(stream.text)
        ```
        """
        local = _sync_tools(local_tools(params))
        options = create_options("/v1/runs", message, params, stream=True, local=local)
        return RunStream(self._client, connect=lambda: self._client.request(options, stream=True), tools=local)

    def stream_events(
        self, run_id: str, *, after_seq: int = 0, tools: Mapping[str, ToolFunction] | None = None
    ) -> RunStream:
        """Stream the events of an existing run with seq greater than `after_seq`, reconnecting as needed.

        `tools` are functions for the client tools the run may call, as in `stream`.
        """
        local = _sync_tools(LocalTools(tools) if tools else None)
        return RunStream(self._client, run_id=run_id, after_seq=after_seq, tools=local)

    def list_events(self, run_id: str, *, after_seq: int = 0, limit: NotGivenOr[int] = NOT_GIVEN) -> SyncPage[Event]:
        """The run's stored events with seq greater than `after_seq`, in order, without waiting for new ones.

        Returns the first page (`limit` events, at most 1000); iterating it yields every later
        stored event, fetching further pages as needed. Use `stream_events` to follow a live run.
        """
        path = path_for("/v1/runs/{}/events", run_id)
        params = {"after_seq": after_seq, "limit": limit}
        return self._client._request_page(path, parse_event, params, cursor_param="after_seq")

    def create_and_wait(
        self,
        message: str | None = None,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        raise_on_failure: bool = False,
        on_question: OnQuestion | None = None,
        on_approval: OnApproval | None = None,
        on_input: OnInput | None = None,
        **params: Unpack[RunCreateParams],
    ) -> Run:
        """Start a run and wait until it is finished; see `create` and `wait` for the arguments.

        With `tools={name: function}`, each function is declared as a client tool and run here
        when the run calls it; its return value (or the message of what it raised) is the tool's
        result, and the run goes on:

        ```python
        def lookup_order(order_id: str) -> dict:
            \"""Find an order by its id.\"""
            return {"status": "shipped"}

        run = client.runs.create_and_wait("Where is A1?", agent_id=agent.id, tools={"lookup_order": lookup_order})
        ```

        Raises `RunFailedError` when `raise_on_failure` is set and the run failed.
        """
        local = _sync_tools(local_tools(params))
        run = self._create("/v1/runs", message, params, local=local)
        run = self._wait(
            run.id,
            timeout=timeout,
            poll_interval=poll_interval,
            on_question=on_question,
            on_approval=on_approval,
            on_input=on_input,
            tools=local,
        )
        return check_outcome(run, raise_on_failure=raise_on_failure)

    def wait(
        self,
        run_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        on_question: OnQuestion | None = None,
        on_approval: OnApproval | None = None,
        on_input: OnInput | None = None,
        tools: Mapping[str, ToolFunction] | None = None,
    ) -> Run:
        """Block until the run is completed, failed or cancelled, and return it.

        A run with `human_in_the_loop` may pause (status `waiting`). Each open wait of a pause goes,
        oldest first, to the callback of its kind, and what the callback returns is sent as the
        answer: `on_question(wait)` returns `{question: answer}`; `on_approval(wait)` returns
        `True`/`False`, `"allow"`/`"deny"` or `{"decision", "reason", "remember"}`; `on_input(wait)`
        returns the text. A call of a client tool (a `tool_result` wait) goes to the function of its
        name in `tools`, and its result is posted. At a wait with no callback or function for it,
        the waiting run is returned.

        ```python
        run = client.runs.wait(
            run.id,
            on_question=lambda wait: {"Color?": "blue"},
            on_approval=lambda wait: wait.request.get("name") == "calculator",
        )
        ```

        Args:
            timeout: seconds to wait at most, then raise `runyard.TimeoutError`; `None` waits for ever.
            poll_interval: pause between polls when the server answers early with an unsettled run.
            tools: `{name: function}` for the run's client tools (see `create_and_wait`).
        """
        local = _sync_tools(LocalTools(tools) if tools else None)
        return self._wait(
            run_id,
            timeout=timeout,
            poll_interval=poll_interval,
            on_question=on_question,
            on_approval=on_approval,
            on_input=on_input,
            tools=local,
        )

    def _wait(
        self,
        run_id: str,
        *,
        timeout: float | None,
        poll_interval: float,
        on_question: OnQuestion | None,
        on_approval: OnApproval | None,
        on_input: OnInput | None,
        tools: LocalTools | None,
    ) -> Run:
        deadline = wait_deadline(timeout, time.monotonic())
        while True:
            started = time.monotonic()
            asked = long_poll_seconds(deadline, started)
            run = self._long_poll(run_id, asked)
            if run.is_terminal:
                return run
            if run.status is RunStatus.WAITING:
                waits = open_waits(self.waits(run_id))
                calls = tools.pending(waits) if tools is not None else []
                if tools is not None and calls:
                    run = self._send_tool_results(run_id, tools.call_all(calls))
                answered = {wait.id for wait in calls}
                for wait in (w for w in waits if w.id not in answered):
                    callback = pick_callback(wait, on_question=on_question, on_approval=on_approval, on_input=on_input)
                    if callback is None:
                        return run
                    path, body = callback_request(wait, callback(wait))
                    self._client._request_model("POST", path_for(path, run_id), Wait, json=body)
                if waits:
                    continue  # answered: the run is queued again, so poll at once
            now = time.monotonic()
            time.sleep(
                next_poll_pause(
                    run, deadline=deadline, asked=asked, started=started, now=now, poll_interval=poll_interval
                )
            )

    def _long_poll(self, run_id: str, seconds: float) -> Run:
        return self._client._request_model(
            "GET",
            path_for("/v1/runs/{}/wait", run_id),
            Run,
            params={"timeout": seconds},
            timeout=long_poll_timeout(seconds),
        )

    def answer(self, run_id: str, answers: Mapping[str, Any], *, wait_id: str | None = None) -> Wait:
        """Answer the run's clarifying question(s) with `{question: answer}` and return the resolved wait.

        A choice must be one of the question's options (a list of them for a multi-select one).
        `wait_id` defaults to the run's oldest open question. Answering again with the same
        answers is harmless; other answers to a resolved wait raise `ConflictError`, answers that
        do not fit raise `ValidationError`, and a run that is not waiting raises `ConflictError`.
        """
        body = answer_body(answers, wait_id=wait_id)
        return self._client._request_model("POST", path_for("/v1/runs/{}/answer", run_id), Wait, json=body)

    def approve(
        self,
        run_id: str,
        *,
        decision: Decision,
        wait_id: str | None = None,
        reason: str | None = None,
        remember: bool = False,
    ) -> Wait:
        """Allow or deny the tool call (or plan) the run waits on, and return the resolved wait.

        Args:
            decision: `"allow"`/`True` or `"deny"`/`False`.
            wait_id: the approval to answer; the run's oldest open approval when left out.
            reason: told to the model when the call is denied.
            remember: allow this tool for the rest of the run.
        """
        body = approve_body(decision=decision, reason=reason, remember=remember, wait_id=wait_id)
        return self._client._request_model("POST", path_for("/v1/runs/{}/approve", run_id), Wait, json=body)

    def input(self, run_id: str, content: str) -> Wait:
        """Send free text (at most 32 KB) that answers the run's oldest open wait, and return that wait.

        For an approval, "allow"/"yes"/"ok" allow and any other text denies with it as the reason.
        Raises `ConflictError` when the run is not waiting.
        """
        return self._client._request_model(
            "POST", path_for("/v1/runs/{}/input", run_id), Wait, json={"content": content}
        )

    def reply(self, run_id: str, message: str, *, files: NotGivenOr[Sequence[str | File]] = NOT_GIVEN) -> Run:
        """Follow up on a run: a new run on the same thread and agent that sees the conversation so far.

        The run must have ended, or be waiting: then the message answers its pause as free input
        and the same (resumed) run is returned. Raises `ConflictError` while it runs; use
        `append_message` then. `files` (ids or `File`s) are put into the thread's workspace first.
        """
        body: dict[str, Any] = {"message": message}
        if not isinstance(files, NotGiven):
            body["files"] = file_ids(files)
        return self._client._request_model("POST", path_for("/v1/runs/{}/reply", run_id), Run, json=body)

    def tool_results(self, run_id: str, results: Sequence[Mapping[str, Any]]) -> Run:
        """Post results of client tools the run waits for (`waiting_for: "tool_result"`); return the run.

        Each result is `{"tool_call_id": ..., "output": ...}` or, when the tool failed,
        `{"tool_call_id": ..., "error": "message"}`; the call ids are the waits' `tool_call_id`
        (`wait.request` holds the tool's `name` and `args`). The run resumes once none of its
        waits is open. Posting the same results again is harmless; other results for an answered
        call raise `ConflictError` (as does a run that waits for no tool result), an unknown call id
        raises `NotFoundError`, and an output that does not match the tool's `output_schema` raises
        `ValidationError` (`.field` names it, e.g. `results[0].output.status`).
        """
        return self._client._request_model(
            "POST",
            path_for("/v1/runs/{}/tool_results", run_id),
            Run,
            json={"results": [dict(result) for result in results]},
            # The server answers the same results the same way: a retry after they went out is safe.
            idempotency_key=new_idempotency_key(),
        )

    def _send_tool_results(self, run_id: str, results: list[dict[str, Any]]) -> Run:
        # An output the server refuses (its tool's output_schema) is sent as that tool's error.
        while True:
            try:
                return self.tool_results(run_id, results)
            except _exc.ValidationError as exc:
                fixed = without_rejected(results, exc)
                if fixed is None:
                    raise
                results = fixed

    def append_message(self, run_id: str, message: str) -> Run:
        """Add a user message to a run in flight; the model sees it at its next step.

        Raises `ConflictError` when the run has ended (use `reply` then).
        """
        return self._client._request_model(
            "POST", path_for("/v1/runs/{}/messages", run_id), Run, json={"message": message}
        )

    def waits(self, run_id: str) -> list[Wait]:
        """Every pause of the run, oldest first, with its status and answer."""
        raw = self._client._request_json("GET", path_for("/v1/runs/{}/waits", run_id))
        return [Wait.model_validate(item) for item in raw.get("data", [])]

    def get(self, run_id: str) -> Run:
        """Fetch a run. Raises `NotFoundError` when there is no such run."""
        return self._client._request_model("GET", path_for("/v1/runs/{}", run_id), Run)

    def list(
        self,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        thread_id: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        status: NotGivenOr[RunStatus | str | Sequence[RunStatus | str]] = NOT_GIVEN,
        metadata: NotGivenOr[Mapping[str, str]] = NOT_GIVEN,
        created_after: NotGivenOr[datetime | str] = NOT_GIVEN,
        created_before: NotGivenOr[datetime | str] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
        after: NotGivenOr[str] = NOT_GIVEN,
    ) -> SyncPage[Run]:
        """List runs, newest first, filtered by any of the arguments.

        Returns the first page; iterating it yields every matching run, fetching older pages as
        needed. `status` may be one status or several; `metadata` matches `metadata[key] == value`.
        """
        params = run_list_params(
            agent_id=agent_id,
            thread_id=thread_id,
            user_id=user_id,
            status=status,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            before=before,
            after=after,
        )
        return self._client._request_page("/v1/runs", Run.model_validate, params)

    def cancel(self, run_id: str) -> Run:
        """Ask for a run to be cancelled; it reaches `cancelled` shortly after.

        Raises `ConflictError` when the run is already finished.
        """
        return self._client._request_model("POST", path_for("/v1/runs/{}/cancel", run_id), Run)

    def _create(
        self, path: str, message: str | None, params: Mapping[str, Any], *, local: LocalTools | None = None
    ) -> Run:
        options = create_options(path, message, params, stream=False, local=local)
        return self._client._parse(self._client.request(options), Run)


def _sync_tools(tools: LocalTools | None) -> LocalTools | None:
    if tools is not None:
        tools.require_sync()
    return tools
