"""`client.waits`: what needs a human, across runs; and the shapes of the answers to a wait.

The module functions turn what a caller (or a `runs.wait` callback) gives into the request
that answers a wait; they do no I/O. `Waits` and `AsyncWaits` hold only the calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ...domain import Wait, WaitStatus
from ..pagination import AsyncPaginator, SyncPage
from ..paths import path_for
from ..types import NOT_GIVEN, NotGiven, NotGivenOr, strip_not_given

if TYPE_CHECKING:
    from ..client import AsyncRunyard, Runyard

__all__ = [
    "AsyncWaits",
    "Decision",
    "OnApproval",
    "OnInput",
    "OnQuestion",
    "Waits",
    "answer_body",
    "approve_body",
    "callback_request",
    "pick_callback",
]

Decision = bool | Literal["allow", "deny"]
"""An approval decision: `True`/`"allow"` lets the call run, `False`/`"deny"` refuses it."""

OnQuestion = Callable[[Wait], Any]
"""Gets a `question` wait; returns `{question: answer}` (or, for a single question, just the answer)."""
OnApproval = Callable[[Wait], Any]
"""Gets an `approval` wait; returns `True`/`False`, `"allow"`/`"deny"`, or `{decision, reason?, remember?}`."""
OnInput = Callable[[Wait], Any]
"""Gets an `input` wait (`wait.request["prompt"]`); returns the text."""


# --------------------------------------------------------------------------- pure helpers


def decision_text(decision: object) -> Literal["allow", "deny"]:
    """`"allow"` or `"deny"` for a decision given as a bool or a word (in any case); `TypeError` otherwise."""
    if isinstance(decision, bool):
        return "allow" if decision else "deny"
    word = decision.lower() if isinstance(decision, str) else None
    if word == "allow":
        return "allow"
    if word == "deny":
        return "deny"
    raise TypeError(f"an approval decision is True/False or 'allow'/'deny', not {decision!r}")


def approve_body(
    *, decision: Decision, reason: str | None = None, remember: bool = False, wait_id: str | None = None
) -> dict[str, Any]:
    """The JSON body of `POST /v1/runs/{id}/approve`."""
    body: dict[str, Any] = {"decision": decision_text(decision)}
    if wait_id is not None:
        body["wait_id"] = wait_id
    if reason is not None:
        body["reason"] = reason
    if remember:
        body["remember"] = True
    return body


def answer_body(answers: Mapping[str, Any], *, wait_id: str | None = None) -> dict[str, Any]:
    """The JSON body of `POST /v1/runs/{id}/answer`."""
    body: dict[str, Any] = {"answers": dict(answers)}
    if wait_id is not None:
        body["wait_id"] = wait_id
    return body


def question_answers(wait: Wait, value: Any) -> dict[str, Any]:
    """A `question` callback's return value as `{question: answer}`."""
    if isinstance(value, Mapping):
        return dict(value)
    questions = wait.request.get("questions") or []
    if len(questions) == 1 and isinstance(value, (str, list, tuple)):
        return {questions[0]["question"]: list(value) if isinstance(value, tuple) else value}
    raise TypeError(
        f"on_question must return a dict {{question: answer}} for wait {wait.id}"
        f" ({len(questions)} questions), not {type(value).__name__}"
    )


def approval_answer(value: Any) -> dict[str, Any]:
    """An `approval` callback's return value as `{decision, reason?, remember?}`."""
    if isinstance(value, Mapping):
        if "decision" not in value:
            raise TypeError("on_approval's dict needs a 'decision' (True/False or 'allow'/'deny')")
        return approve_body(
            decision=value["decision"], reason=value.get("reason"), remember=bool(value.get("remember", False))
        )
    if not isinstance(value, (bool, str)):
        raise TypeError(
            f"on_approval must return True/False, 'allow'/'deny' or {{'decision', 'reason', 'remember'}}, not {value!r}"
        )
    return approve_body(decision=decision_text(value))


def callback_request(wait: Wait, value: Any) -> tuple[str, dict[str, Any]]:
    """The endpoint (a path template for the run id) and body that send `value` as the answer to `wait`."""
    if wait.kind == "question":
        return "/v1/runs/{}/answer", answer_body(question_answers(wait, value), wait_id=wait.id)
    if wait.kind == "approval":
        return "/v1/runs/{}/approve", {**approval_answer(value), "wait_id": wait.id}
    if not isinstance(value, str):
        raise TypeError(f"on_input must return the text (a str) for wait {wait.id}, not {type(value).__name__}")
    # `/input` has no wait id: it answers the run's oldest open wait, which is why
    # `runs.wait` answers a pause's waits oldest first.
    return "/v1/runs/{}/input", {"content": value}


def pick_callback(
    wait: Wait, *, on_question: OnQuestion | None, on_approval: OnApproval | None, on_input: OnInput | None
) -> Callable[[Wait], Any] | None:
    """The callback that answers `wait`, or `None` when the caller gave none for its kind."""
    return {"question": on_question, "approval": on_approval, "input": on_input}.get(wait.kind)


def wait_list_params(
    *,
    status: NotGivenOr[WaitStatus | str],
    user_id: NotGivenOr[str],
    run_id: NotGivenOr[str],
    limit: NotGivenOr[int],
    before: NotGivenOr[str],
) -> dict[str, Any]:
    """The query of `GET /v1/waits`; `status` is checked against `WaitStatus` before it is sent."""
    wait_status = status if isinstance(status, NotGiven) else WaitStatus(status).value
    return strip_not_given(
        {"status": wait_status, "user_id": user_id, "run_id": run_id, "limit": limit, "before": before}
    )


# --------------------------------------------------------------------------- resources


class Waits:
    """Waits: the pauses of runs for a human (a question, a tool approval, free input)."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def list(
        self,
        *,
        status: NotGivenOr[WaitStatus | str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        run_id: NotGivenOr[str] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
    ) -> SyncPage[Wait]:
        """List waits, newest first; iterating the page walks every match.

        `status="open"` (with `user_id=`) is what needs a human now; a status that is not a
        `WaitStatus` raises `ValueError` before any request.
        """
        params = wait_list_params(status=status, user_id=user_id, run_id=run_id, limit=limit, before=before)
        return self._client._request_page("/v1/waits", Wait.model_validate, params)

    def get(self, wait_id: str) -> Wait:
        """Fetch a wait. Raises `NotFoundError` when there is no such wait."""
        return self._client._request_model("GET", path_for("/v1/waits/{}", wait_id), Wait)


class AsyncWaits:
    """Waits: the pauses of runs for a human (a question, a tool approval, free input)."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    def list(
        self,
        *,
        status: NotGivenOr[WaitStatus | str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        run_id: NotGivenOr[str] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
        before: NotGivenOr[str] = NOT_GIVEN,
    ) -> AsyncPaginator[Wait]:
        """List waits, newest first: `await` for the first page, or `async for` over every match."""
        params = wait_list_params(status=status, user_id=user_id, run_id=run_id, limit=limit, before=before)
        return self._client._request_page("/v1/waits", Wait.model_validate, params)

    async def get(self, wait_id: str) -> Wait:
        """Fetch a wait. Raises `NotFoundError` when there is no such wait."""
        return await self._client._request_model("GET", path_for("/v1/waits/{}", wait_id), Wait)
