"""How a claimed run's attempt ends: one function per outcome, each one fenced append.

The worker classifies the agent loop's outcome, then calls exactly one of these inside one
transaction. Each appends the events the worker still buffers plus the one that announces the
outcome through `events.append` with the run's fence and the status change (invariant 1), and
writes what goes with it (the checkpoint, the waits) in the same transaction.

    running ──complete──► completed      running ──fail────► failed
    running ──pause─────► waiting        running ──cancel──► cancelled
    running ──release───► pending (worker shutdown; the next claim resumes it)

A lost lease has no function: the attempt that lost it writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import metrics
from .._budgets import StopReason
from ..domain import RUN_OPTION_DEFAULTS, RunOptions, RunStatus, WaitKind
from . import checkpoints, events, queue
from . import waits as waits_store
from .checkpoints import Checkpoint
from .db import Tx, utcnow
from .events import Fence, NewEvent
from .runs import usage_view

__all__ = ["ClaimedRun", "FollowUpsQueued", "cancel", "complete", "fail", "pause", "release"]

# A run that leaves `running` holds no worker any more.
_UNLEASED: dict[str, Any] = {"worker_id": None, "lease_until": None}


@dataclass(frozen=True)
class ClaimedRun:
    """A run a worker holds, with the fields of its row the worker uses and the fence of its lease."""

    id: str
    org_id: str
    thread_id: str
    agent_id: str
    user_id: str | None
    model: str
    original_prompt: str
    config: dict[str, Any]
    """The agent's configuration as it was when the run was queued (instructions, tools, schema, script)."""
    options: RunOptions
    usage: dict[str, Any]
    """Usage of the earlier attempts: this attempt adds to it."""
    pending_messages: list[str]
    """Follow-up messages queued when the run was claimed (later ones are read as the run goes)."""
    fence: Fence
    created_at: datetime | None = None
    """When the run was queued (metrics: time to first event)."""
    started_at: datetime | None = None
    """When the run was first claimed (metrics: run duration)."""

    @property
    def attempt(self) -> int:
        """1 for the first claim; a first attempt has no checkpoint, no waits and no journal yet."""
        return self.fence.attempt

    @classmethod
    def of(cls, row: Any, fence: Fence) -> ClaimedRun:
        """From a row `queue.claim` returned, with its fence."""
        config = dict(row.config)
        # The server validated these when it queued the run: no need to validate them again per claim.
        options = RunOptions.model_construct(**{k: config[k] for k in RUN_OPTION_DEFAULTS if k in config})
        return cls(
            id=row.id,
            org_id=row.org_id,
            thread_id=row.thread_id,
            agent_id=row.agent_id,
            user_id=row.user_id,
            model=row.model,
            original_prompt=row.original_prompt,
            config=config,
            options=options,
            usage=dict(row.usage),
            pending_messages=list(row.pending_messages),
            fence=fence,
            created_at=row.created_at,
            started_at=row.started_at,
        )


class FollowUpsQueued(Exception):
    """Messages were queued for the run after the model's last look at its queue: it goes on."""


async def complete(
    tx: Tx,
    run: ClaimedRun,
    new: Sequence[NewEvent],
    *,
    output: Any,
    usage: dict[str, Any],
    checkpoint: Checkpoint | None,
    delivered: int = 0,
) -> None:
    """The run's answer: `run.completed`, with the final conversation (None: the saved one is final).

    Raises `FollowUpsQueued` (writing nothing) when the queue holds more than the `delivered`
    messages the conversation took in: checked under the row lock, so none is ever dropped.
    """
    row = await events.lock(tx, run.id)
    if len(row.pending_messages) > delivered:
        raise FollowUpsQueued(run.id)
    await events.append(
        tx,
        run.id,
        [*new, ("run.completed", {"output": output, "usage": usage_view(usage)})],
        to=RunStatus.COMPLETED,
        changes={"output": output, "usage": usage, **_UNLEASED},
        fence=run.fence,
        locked=row,
    )
    if checkpoint is not None:
        await checkpoints.save(tx.conn, run.org_id, run.id, checkpoint, attempt=run.attempt)
    _finished(run, RunStatus.COMPLETED)


async def pause(
    tx: Tx,
    run: ClaimedRun,
    new: Sequence[NewEvent],
    *,
    waits: list[dict[str, Any]],
    usage: dict[str, Any],
    checkpoint: Checkpoint,
) -> None:
    """The run waits for humans: its waits open, its worker is free, the answer re-queues it."""
    waiting_for = _waiting_for({w["kind"] for w in waits})
    announce: list[NewEvent] = [
        ("tool.approval_requested", {"wait_id": w["id"], **w["request"]})
        for w in waits
        if w["kind"] == "approval" and w["tool_call_id"] is not None
    ]
    announce.append(("run.waiting", {"waiting_for": waiting_for, "waits": [_public(w) for w in waits]}))
    await events.append(
        tx,
        run.id,
        [*new, *announce],
        to=RunStatus.WAITING,
        changes={"waiting_for": waiting_for, "usage": usage, **_UNLEASED},
        fence=run.fence,
    )
    await checkpoints.save(tx.conn, run.org_id, run.id, checkpoint, attempt=run.attempt)
    await waits_store.insert_many(tx.conn, waits)


async def fail(
    tx: Tx,
    run: ClaimedRun,
    new: Sequence[NewEvent],
    *,
    error: str,
    usage: dict[str, Any],
    stop_reason: StopReason = "error",
    output: Any = None,
) -> None:
    """The run failed: on an error, or past a budget (`budget_exceeded`, the partial `output` kept)."""
    ending: list[NewEvent] = []
    if stop_reason == "budget_exceeded":
        ending.append(("run.budget_exceeded", {"error": error, "usage": usage_view(usage)}))
    ending.append(("run.failed", {"error": error, "usage": usage_view(usage), "stop_reason": stop_reason}))
    await events.append(
        tx,
        run.id,
        [*new, *ending],
        to=RunStatus.FAILED,
        changes={"error": error, "usage": usage, "output": output, "stop_reason": stop_reason, **_UNLEASED},
        fence=run.fence,
    )
    _finished(run, RunStatus.FAILED)


async def cancel(
    tx: Tx, run: ClaimedRun, new: Sequence[NewEvent], *, output: str | None, usage: dict[str, Any]
) -> None:
    """A caller cancelled the run: the partial output and the usage so far are kept."""
    await events.append(
        tx,
        run.id,
        [*new, ("run.cancelled", {"output": output, "usage": usage_view(usage)})],
        to=RunStatus.CANCELLED,
        changes={"output": output, "usage": usage, **_UNLEASED},
        fence=run.fence,
    )
    _finished(run, RunStatus.CANCELLED)


def _finished(run: ClaimedRun, status: RunStatus) -> None:
    metrics.run_finished(status.value, run.model, started_at=run.started_at, now=utcnow())


async def release(tx: Tx, run: ClaimedRun, new: Sequence[NewEvent], *, usage: dict[str, Any], reason: str) -> None:
    """The worker stops: the run goes back to the queue, and another worker resumes it from its checkpoint."""
    await events.append(tx, run.id, new, changes={"usage": usage}, fence=run.fence)
    await queue.release(tx, run.id, run.fence, reason=reason)


_WAIT_ORDER: tuple[WaitKind, ...] = ("approval", "question", "input", "tool_result")
"""What a paused run says it waits for: a human first (an approval before a question before
free input), a caller's tool results only when nothing else is open."""


def _waiting_for(kinds: set[str]) -> WaitKind:
    return next(k for k in _WAIT_ORDER if k in kinds)


def _public(wait: dict[str, Any]) -> dict[str, Any]:
    """A wait as the `run.waiting` event carries it: no org, timestamps in ISO 8601."""
    return {k: events.iso(v) if isinstance(v, datetime) else v for k, v in wait.items() if k != "org_id"}
