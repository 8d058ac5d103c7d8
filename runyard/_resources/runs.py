"""`client.runs`: start runs, stream their events, wait for them, list and cancel them, and
answer them when they pause for a human.

The bodies and queries are built in `run_params`, the wait loop's decisions are made in
`waiting`, and the answers to pauses are shaped in `waits`, all without I/O. `Runs` and
`AsyncRuns` hold only the calls, written line for line alike.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Unpack

import httpx

from .._base_client import path_for
from .._pagination import AsyncPaginator, SyncPage
from .._streaming import AsyncRunStream, RunStream, SSEDecoder
from .._types import NOT_GIVEN, NotGivenOr
from ..domain import PermissionMode, Run, RunStatus, Wait
from .run_params import (
    SSE_HEADERS,
    Multitask,
    RunCreateParams,
    check_outcome,
    create_options,
    run_body,
    run_list_params,
)
from .waiting import (
    SETTLING_EVENTS,
    long_poll_seconds,
    long_poll_timeout,
    next_poll_pause,
    open_waits,
    past_deadline,
    wait_deadline,
    watch_timeout,
)
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
    from .._client import AsyncRunyard, Runyard

__all__ = ["AsyncRuns", "RunCreateParams", "Runs"]

# --------------------------------------------------------------------------- sync


class Runs:
    """Runs: one execution of an agent on one task."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def create(
        self,
        message: str,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        name: NotGivenOr[str] = NOT_GIVEN,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        thread_id: NotGivenOr[str] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        idempotency_key: NotGivenOr[str] = NOT_GIVEN,
        human_in_the_loop: NotGivenOr[bool] = NOT_GIVEN,
        permission_mode: NotGivenOr[PermissionMode] = NOT_GIVEN,
        history: NotGivenOr[bool] = NOT_GIVEN,
        memory: NotGivenOr[bool] = NOT_GIVEN,
        multitask: NotGivenOr[Multitask] = NOT_GIVEN,
        wait_timeout: NotGivenOr[float] = NOT_GIVEN,
        wait_timeout_action: NotGivenOr[Literal["deny", "fail"]] = NOT_GIVEN,
    ) -> Run:
        """Start a run and return it at once (status `pending`).

        Args:
            message: the task (at most 32 KB).
            agent_id: the agent to run; or pass `name` and `instructions` to find-or-create it.
            thread_id: continue this thread instead of starting a new one.
            tools / model: override the agent's for this run.
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
        params = {
            "agent_id": agent_id,
            "name": name,
            "instructions": instructions,
            "thread_id": thread_id,
            "tools": tools,
            "model": model,
            "user_id": user_id,
            "metadata": metadata,
            "idempotency_key": idempotency_key,
            "human_in_the_loop": human_in_the_loop,
            "permission_mode": permission_mode,
            "history": history,
            "memory": memory,
            "multitask": multitask,
            "wait_timeout": wait_timeout,
            "wait_timeout_action": wait_timeout_action,
        }
        return self._create("/v1/runs", message, params)

    def stream(self, message: str, **params: Unpack[RunCreateParams]) -> RunStream:
        """Start a run and stream its events; use it as a context manager.

        Takes the arguments of `create`. Entering sends the request; iterating yields `Event`s
        until the terminal one, reconnecting by itself if the connection drops.

        ```python
        with client.runs.stream("Say hello", agent_id=agent.id) as stream:
            for event in stream:
                print(event.type)
            print(stream.text)
        ```
        """
        options = create_options("/v1/runs", message, params, stream=True)
        return RunStream(self._client, connect=lambda: self._client.request(options, stream=True))

    def stream_events(self, run_id: str, *, after_seq: int = 0) -> RunStream:
        """Stream the events of an existing run with seq greater than `after_seq`, reconnecting as needed."""
        return RunStream(self._client, run_id=run_id, after_seq=after_seq)

    def create_and_wait(
        self,
        message: str,
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

        Raises `RunFailedError` when `raise_on_failure` is set and the run failed.
        """
        run = self._create("/v1/runs", message, params)
        run = self.wait(
            run.id, timeout=timeout, poll_interval=poll_interval,
            on_question=on_question, on_approval=on_approval, on_input=on_input,
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
    ) -> Run:
        """Block until the run is completed, failed or cancelled, and return it.

        A run with `human_in_the_loop` may pause (status `waiting`). Each open wait of a pause goes,
        oldest first, to the callback of its kind, and what the callback returns is sent as the
        answer: `on_question(wait)` returns `{question: answer}`; `on_approval(wait)` returns
        `True`/`False`, `"allow"`/`"deny"` or `{"decision", "reason", "remember"}`; `on_input(wait)`
        returns the text. At a wait with no callback for its kind, the waiting run is returned.

        ```python
        run = client.runs.wait(
            run.id,
            on_question=lambda wait: {"Color?": "blue"},
            on_approval=lambda wait: wait.request.get("name") == "calculator",
        )
        ```

        Args:
            timeout: seconds to wait at most, then raise `runyard.TimeoutError`; `None` waits for ever.
            poll_interval: pause between polls when the server answers early with an unfinished run.
        """
        deadline = wait_deadline(timeout, time.monotonic())
        run = self.get(run_id)
        if not run.human_in_the_loop:
            return self._long_poll(run_id, deadline, poll_interval)
        while not run.is_terminal:
            if run.status is RunStatus.WAITING:
                for wait in open_waits(self.waits(run_id)):
                    callback = pick_callback(wait, on_question=on_question, on_approval=on_approval, on_input=on_input)
                    if callback is None:
                        return run
                    path, body = callback_request(wait, callback(wait))
                    self._client._request_model("POST", path_for(path, run_id), Wait, json=body)
            else:
                past_deadline(run, deadline, time.monotonic())
                if not self._watch(run_id, run.last_seq, deadline):
                    time.sleep(min(poll_interval, watch_timeout(deadline, time.monotonic()).read or 0))
            run = self.get(run_id)
        return run

    def _long_poll(self, run_id: str, deadline: float | None, poll_interval: float) -> Run:
        while True:
            started = time.monotonic()
            asked = long_poll_seconds(deadline, started)
            run = self._client._request_model(
                "GET",
                path_for("/v1/runs/{}/wait", run_id),
                Run,
                params={"timeout": asked},
                timeout=long_poll_timeout(asked),
            )
            if run.is_terminal:
                return run
            now = time.monotonic()
            time.sleep(
                next_poll_pause(
                    run, deadline=deadline, asked=asked, started=started, now=now, poll_interval=poll_interval
                )
            )

    def _watch(self, run_id: str, after_seq: int, deadline: float | None) -> bool:
        """Read the run's events after `after_seq` until it pauses or ends (True), or the stream
        drops or the deadline passes (False)."""
        # The long poll returns only for a finished run, so a pause is noticed on the event stream.
        timeout = watch_timeout(deadline, time.monotonic())
        response = self._client._open_event_stream(run_id, after_seq=after_seq, timeout=timeout)
        decoder = SSEDecoder()
        try:
            for chunk in response.iter_bytes():
                if any(sse.event in SETTLING_EVENTS for sse in decoder.feed(chunk)):
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        except httpx.TransportError:
            return False
        finally:
            response.close()
        return False

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

    def reply(self, run_id: str, message: str) -> Run:
        """Follow up on a run: a new run on the same thread and agent that sees the conversation so far.

        The run must have ended, or be waiting: then the message answers its pause as free input
        and the same (resumed) run is returned. Raises `ConflictError` while it runs; use
        `append_message` then.
        """
        return self._client._request_model(
            "POST", path_for("/v1/runs/{}/reply", run_id), Run, json={"message": message}
        )

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
        return self._client._request_page("/v1/runs", Run, params)

    def cancel(self, run_id: str) -> Run:
        """Ask for a run to be cancelled; it reaches `cancelled` shortly after.

        Raises `ConflictError` when the run is already finished.
        """
        return self._client._request_model("POST", path_for("/v1/runs/{}/cancel", run_id), Run)

    def _create(self, path: str, message: str, params: Mapping[str, Any]) -> Run:
        options = create_options(path, message, params, stream=False)
        return self._client._parse(self._client.request(options), Run)


# --------------------------------------------------------------------------- async


class AsyncRuns:
    """Runs: one execution of an agent on one task."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    async def create(
        self,
        message: str,
        *,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        name: NotGivenOr[str] = NOT_GIVEN,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        thread_id: NotGivenOr[str] = NOT_GIVEN,
        tools: NotGivenOr[list[str]] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        idempotency_key: NotGivenOr[str] = NOT_GIVEN,
        human_in_the_loop: NotGivenOr[bool] = NOT_GIVEN,
        permission_mode: NotGivenOr[PermissionMode] = NOT_GIVEN,
        history: NotGivenOr[bool] = NOT_GIVEN,
        memory: NotGivenOr[bool] = NOT_GIVEN,
        multitask: NotGivenOr[Multitask] = NOT_GIVEN,
        wait_timeout: NotGivenOr[float] = NOT_GIVEN,
        wait_timeout_action: NotGivenOr[Literal["deny", "fail"]] = NOT_GIVEN,
    ) -> Run:
        """Start a run and return it at once (status `pending`). The arguments are those of `Runyard.runs.create`."""
        params = {
            "agent_id": agent_id,
            "name": name,
            "instructions": instructions,
            "thread_id": thread_id,
            "tools": tools,
            "model": model,
            "user_id": user_id,
            "metadata": metadata,
            "idempotency_key": idempotency_key,
            "human_in_the_loop": human_in_the_loop,
            "permission_mode": permission_mode,
            "history": history,
            "memory": memory,
            "multitask": multitask,
            "wait_timeout": wait_timeout,
            "wait_timeout_action": wait_timeout_action,
        }
        return await self._create("/v1/runs", message, params)

    def stream(self, message: str, **params: Unpack[RunCreateParams]) -> AsyncRunStream:
        """Start a run and stream its events; use it with `async with`.

        ```python
        async with client.runs.stream("Say hello", agent_id=agent.id) as stream:
            async for event in stream:
                print(event.type)
            print(stream.text)
        ```
        """
        options = create_options("/v1/runs", message, params, stream=True)
        return AsyncRunStream(self._client, connect=lambda: self._client.request(options, stream=True))

    def stream_events(self, run_id: str, *, after_seq: int = 0) -> AsyncRunStream:
        """Stream the events of an existing run with seq greater than `after_seq`, reconnecting as needed."""
        return AsyncRunStream(self._client, run_id=run_id, after_seq=after_seq)

    async def create_and_wait(
        self,
        message: str,
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

        Raises `RunFailedError` when `raise_on_failure` is set and the run failed.
        """
        run = await self._create("/v1/runs", message, params)
        run = await self.wait(
            run.id, timeout=timeout, poll_interval=poll_interval,
            on_question=on_question, on_approval=on_approval, on_input=on_input,
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
    ) -> Run:
        """Wait until the run is completed, failed or cancelled, and return it.

        Pauses go to the callbacks as in `Runyard.runs.wait` (plain functions; an `async def`
        callback's return value is awaited). Raises `runyard.TimeoutError` after `timeout`
        seconds (`None` waits for ever).
        """
        deadline = wait_deadline(timeout, time.monotonic())
        run = await self.get(run_id)
        if not run.human_in_the_loop:
            return await self._long_poll(run_id, deadline, poll_interval)
        while not run.is_terminal:
            if run.status is RunStatus.WAITING:
                for wait in open_waits(await self.waits(run_id)):
                    callback = pick_callback(wait, on_question=on_question, on_approval=on_approval, on_input=on_input)
                    if callback is None:
                        return run
                    value = callback(wait)
                    if inspect.isawaitable(value):
                        value = await value
                    path, body = callback_request(wait, value)
                    await self._client._request_model("POST", path_for(path, run_id), Wait, json=body)
            else:
                past_deadline(run, deadline, time.monotonic())
                if not await self._watch(run_id, run.last_seq, deadline):
                    await asyncio.sleep(min(poll_interval, watch_timeout(deadline, time.monotonic()).read or 0))
            run = await self.get(run_id)
        return run

    async def _long_poll(self, run_id: str, deadline: float | None, poll_interval: float) -> Run:
        while True:
            started = time.monotonic()
            asked = long_poll_seconds(deadline, started)
            run = await self._client._request_model(
                "GET",
                path_for("/v1/runs/{}/wait", run_id),
                Run,
                params={"timeout": asked},
                timeout=long_poll_timeout(asked),
            )
            if run.is_terminal:
                return run
            now = time.monotonic()
            await asyncio.sleep(
                next_poll_pause(
                    run, deadline=deadline, asked=asked, started=started, now=now, poll_interval=poll_interval
                )
            )

    async def _watch(self, run_id: str, after_seq: int, deadline: float | None) -> bool:
        timeout = watch_timeout(deadline, time.monotonic())
        response = await self._client._open_event_stream(run_id, after_seq=after_seq, timeout=timeout)
        decoder = SSEDecoder()
        try:
            async for chunk in response.aiter_bytes():
                if any(sse.event in SETTLING_EVENTS for sse in decoder.feed(chunk)):
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        except httpx.TransportError:
            return False
        finally:
            await response.aclose()
        return False

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

    async def reply(self, run_id: str, message: str) -> Run:
        """Follow up on an ended (or waiting) run; see `Runyard.runs.reply`."""
        return await self._client._request_model(
            "POST", path_for("/v1/runs/{}/reply", run_id), Run, json={"message": message}
        )

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
        return self._client._request_page("/v1/runs", Run, params)

    async def cancel(self, run_id: str) -> Run:
        """Ask for a run to be cancelled; raises `ConflictError` when it is already finished."""
        return await self._client._request_model("POST", path_for("/v1/runs/{}/cancel", run_id), Run)

    async def _create(self, path: str, message: str, params: Mapping[str, Any]) -> Run:
        options = create_options(path, message, params, stream=False)
        return self._client._parse(await self._client.request(options), Run)
