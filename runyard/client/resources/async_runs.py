"""`client.runs` of `AsyncRunyard`: the calls of `runs.Runs`, line for line, with `await`."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Unpack

from ..._events import Event, parse_event
from ...domain import File, Run, RunStatus, Wait
from .. import exceptions as _exc
from ..base_client import new_idempotency_key
from ..client_tools import LocalTools, ToolFunction, without_rejected
from ..pagination import AsyncPaginator
from ..paths import path_for
from ..streams import AsyncRunStream
from ..types import NOT_GIVEN, NotGiven, NotGivenOr
from .files import AsyncRunFiles
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
    from ..client import AsyncRunyard

__all__ = ["AsyncRuns"]


class AsyncRuns:
    """Runs: one execution of an agent on one task."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client
        self.files = AsyncRunFiles(client)
        """The files of a run's workspace."""

    async def create(self, message: str | None = None, **params: Unpack[RunCreateParams]) -> Run:
        """Start a run and return it at once (status `pending`). The arguments are those of `Runyard.runs.create`."""
        return await self._create("/v1/runs", message, params)

    def stream(self, message: str | None = None, **params: Unpack[RunCreateParams]) -> AsyncRunStream:
        """Start a run and stream its events; use it with `async with`.

        With `tools={name: function}` (plain or `async def` functions), the stream runs them when
        the run calls them, posts their results, and goes on.

        ```python
        async with client.runs.stream("Say hello", agent_id=agent.id) as stream:
            async for event in stream:
                print(event.type)
            print(stream.text)
        ```
        """
        local = local_tools(params)
        options = create_options("/v1/runs", message, params, stream=True, local=local)
        return AsyncRunStream(self._client, connect=lambda: self._client.request(options, stream=True), tools=local)

    def stream_events(
        self, run_id: str, *, after_seq: int = 0, tools: Mapping[str, ToolFunction] | None = None
    ) -> AsyncRunStream:
        """Stream the events of an existing run with seq greater than `after_seq`, reconnecting as needed.

        `tools` are functions for the client tools the run may call, as in `stream`.
        """
        local = LocalTools(tools) if tools else None
        return AsyncRunStream(self._client, run_id=run_id, after_seq=after_seq, tools=local)

    def list_events(
        self, run_id: str, *, after_seq: int = 0, limit: NotGivenOr[int] = NOT_GIVEN
    ) -> AsyncPaginator[Event]:
        """The run's stored events after `after_seq`: `await` for the first page, or `async for` over all."""
        path = path_for("/v1/runs/{}/events", run_id)
        params = {"after_seq": after_seq, "limit": limit}
        return self._client._request_page(path, parse_event, params, cursor_param="after_seq")

    async def create_and_wait(
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

        `tools={name: function}` runs your functions for the run as in `Runyard.runs.create_and_wait`:
        an `async def` function is awaited, a plain one runs in a worker thread, and the calls of
        one step run concurrently. Raises `RunFailedError` when `raise_on_failure` is set and the
        run failed.
        """
        local = local_tools(params)
        run = await self._create("/v1/runs", message, params, local=local)
        run = await self._wait(
            run.id,
            timeout=timeout,
            poll_interval=poll_interval,
            on_question=on_question,
            on_approval=on_approval,
            on_input=on_input,
            tools=local,
        )
        return check_outcome(run, raise_on_failure=raise_on_failure)

    async def wait(
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
        """Wait until the run is completed, failed or cancelled, and return it.

        Pauses go to the callbacks as in `Runyard.runs.wait` (plain functions; an `async def`
        callback's return value is awaited), and client tool calls to the functions of `tools`.
        Raises `runyard.TimeoutError` after `timeout` seconds (`None` waits for ever).
        """
        return await self._wait(
            run_id,
            timeout=timeout,
            poll_interval=poll_interval,
            on_question=on_question,
            on_approval=on_approval,
            on_input=on_input,
            tools=LocalTools(tools) if tools else None,
        )

    async def _wait(
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
            run = await self._long_poll(run_id, asked)
            if run.is_terminal:
                return run
            if run.status is RunStatus.WAITING:
                waits = open_waits(await self.waits(run_id))
                calls = tools.pending(waits) if tools is not None else []
                if tools is not None and calls:
                    run = await self._send_tool_results(run_id, await tools.acall_all(calls))
                answered = {wait.id for wait in calls}
                for wait in (w for w in waits if w.id not in answered):
                    callback = pick_callback(wait, on_question=on_question, on_approval=on_approval, on_input=on_input)
                    if callback is None:
                        return run
                    value = callback(wait)
                    if inspect.isawaitable(value):
                        value = await value
                    path, body = callback_request(wait, value)
                    await self._client._request_model("POST", path_for(path, run_id), Wait, json=body)
                if waits:
                    continue  # answered: the run is queued again, so poll at once
            now = time.monotonic()
            await asyncio.sleep(
                next_poll_pause(
                    run, deadline=deadline, asked=asked, started=started, now=now, poll_interval=poll_interval
                )
            )

    async def _long_poll(self, run_id: str, seconds: float) -> Run:
        return await self._client._request_model(
            "GET",
            path_for("/v1/runs/{}/wait", run_id),
            Run,
            params={"timeout": seconds},
            timeout=long_poll_timeout(seconds),
        )

    async def answer(self, run_id: str, answers: Mapping[str, Any], *, wait_id: str | None = None) -> Wait:
        """Answer the run's clarifying question(s) with `{question: answer}`; see `Runyard.runs.answer`."""
        body = answer_body(answers, wait_id=wait_id)
        return await self._client._request_model("POST", path_for("/v1/runs/{}/answer", run_id), Wait, json=body)

    async def approve(
        self,
        run_id: str,
        *,
        decision: Decision,
        wait_id: str | None = None,
        reason: str | None = None,
        remember: bool = False,
    ) -> Wait:
        """Allow or deny the tool call (or plan) the run waits on; see `Runyard.runs.approve`."""
        body = approve_body(decision=decision, reason=reason, remember=remember, wait_id=wait_id)
        return await self._client._request_model("POST", path_for("/v1/runs/{}/approve", run_id), Wait, json=body)

    async def input(self, run_id: str, content: str) -> Wait:
        """Send free text that answers the run's oldest open wait; see `Runyard.runs.input`."""
        return await self._client._request_model(
            "POST", path_for("/v1/runs/{}/input", run_id), Wait, json={"content": content}
        )

    async def reply(self, run_id: str, message: str, *, files: NotGivenOr[Sequence[str | File]] = NOT_GIVEN) -> Run:
        """Follow up on an ended (or waiting) run, with `files` put into the workspace; see `Runyard.runs.reply`."""
        body: dict[str, Any] = {"message": message}
        if not isinstance(files, NotGiven):
            body["files"] = file_ids(files)
        return await self._client._request_model("POST", path_for("/v1/runs/{}/reply", run_id), Run, json=body)

    async def tool_results(self, run_id: str, results: Sequence[Mapping[str, Any]]) -> Run:
        """Post results of client tools the run waits for, and return the run; see `Runyard.runs.tool_results`."""
        return await self._client._request_model(
            "POST",
            path_for("/v1/runs/{}/tool_results", run_id),
            Run,
            json={"results": [dict(result) for result in results]},
            # The server answers the same results the same way: a retry after they went out is safe.
            idempotency_key=new_idempotency_key(),
        )

    async def _send_tool_results(self, run_id: str, results: list[dict[str, Any]]) -> Run:
        # An output the server refuses (its tool's output_schema) is sent as that tool's error.
        while True:
            try:
                return await self.tool_results(run_id, results)
            except _exc.ValidationError as exc:
                fixed = without_rejected(results, exc)
                if fixed is None:
                    raise
                results = fixed

    async def append_message(self, run_id: str, message: str) -> Run:
        """Add a user message to a run in flight; see `Runyard.runs.append_message`."""
        return await self._client._request_model(
            "POST", path_for("/v1/runs/{}/messages", run_id), Run, json={"message": message}
        )

    async def waits(self, run_id: str) -> list[Wait]:
        """Every pause of the run, oldest first, with its status and answer."""
        raw = await self._client._request_json("GET", path_for("/v1/runs/{}/waits", run_id))
        return [Wait.model_validate(item) for item in raw.get("data", [])]

    async def get(self, run_id: str) -> Run:
        """Fetch a run. Raises `NotFoundError` when there is no such run."""
        return await self._client._request_model("GET", path_for("/v1/runs/{}", run_id), Run)

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
    ) -> AsyncPaginator[Run]:
        """List runs, newest first: `await` it for the first page, or `async for` over every matching run."""
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

    async def cancel(self, run_id: str) -> Run:
        """Ask for a run to be cancelled; raises `ConflictError` when it is already finished."""
        return await self._client._request_model("POST", path_for("/v1/runs/{}/cancel", run_id), Run)

    async def _create(
        self, path: str, message: str | None, params: Mapping[str, Any], *, local: LocalTools | None = None
    ) -> Run:
        options = create_options(path, message, params, stream=False, local=local)
        return self._client._parse(await self._client.request(options), Run)
