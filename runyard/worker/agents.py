"""The pydantic-ai side of a run: its deps, its tools (journaled, approval-gated), its Agent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import ApprovalRequired, ModelRetry, ToolFailed
from pydantic_ai.output import StructuredDict
from pydantic_ai.tools import DeferredToolRequests, ToolDefinition
from pydantic_ai.toolsets import ExternalToolset, FunctionToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from .. import tracing
from .._budgets import exceeded
from ..config import Settings
from ..domain import PermissionMode
from ..store import journal
from ..store.db import Tx, utcnow
from ..store.outcomes import ClaimedRun
from .models import Prices
from .routing import RoutedModel
from .tools import BUILTIN_TOOLS
from .tools.context import ToolCallContext, current_tool_call
from .tools.files import FILE_TOOLS
from .tools.human import HUMAN_TOOLS
from .tools.memory import MEMORY_TOOLS
from .writer import EventWriter

__all__ = [
    "FILES",
    "PLAN_INSTRUCTIONS",
    "JournalToolset",
    "RunDeps",
    "RunState",
    "agent_for",
    "declared_tools",
    "has_side_effects",
    "tool_names",
]

PLAN_INSTRUCTIONS = (
    "Before doing anything, propose a short numbered plan for the task as plain text. "
    "Do not call any tool yet: the user will approve or reject the plan first."
)


class BudgetExceeded(Exception):
    """The run reached one of its limits (`RunLimits`): it ends failed, `stop_reason: "budget_exceeded"`."""


@dataclass
class RunState:
    """What changes while the run executes."""

    usage: dict[str, Any]
    """Usage of the run so far, earlier attempts included."""
    text: list[str] = field(default_factory=list)
    """Every text delta streamed in this attempt: the partial output if the run is cancelled."""
    delivered: int = 0
    """Follow-up messages taken into the conversation but not yet checkpointed."""
    history_len: int = 0
    """How many messages of the conversation came from the thread's earlier runs."""
    answered: frozenset[str] = frozenset()
    """Deferred calls (questions, input) whose human answer becomes their result in this turn."""
    unsaved: bool = False
    """The conversation holds tool results or an answer no checkpoint has yet."""
    journal: dict[str, journal.Entry] = field(default_factory=dict)
    start: Any = None
    """Where this attempt started (`resume.Start`)."""
    claimed_pending: list[str] | None = None
    """The follow-ups the claimed row held: the first look at the queue needs no read."""
    """The tool calls this attempt journaled: all there is on a first attempt, so it reads none."""


@dataclass
class RunDeps:
    """What the run is given; tools see it as `ctx.deps` (and through it the state they update)."""

    run: ClaimedRun
    writer: EventWriter
    state: RunState
    settings: Settings
    offered: frozenset[str] = frozenset()
    """The tools the model is offered now (none while a plan waits for approval)."""
    prices: Prices | None = None
    """The model's prices without a route (the scripted model's); None: genai-prices."""
    routed: RoutedModel | None = None
    """The run's routes (every model but `scripted`): the one serving now has the prices."""
    permission_mode: PermissionMode = "autonomous"
    """Which calls wait for approval (a `plan` run acts as `autonomous` once its plan is approved)."""
    remembered: set[str] = field(default_factory=set)
    """Tools the user allowed for the rest of the run (`remember` on an approval)."""
    mcp: dict[str, Any] = field(default_factory=dict)
    """The MCP tools offered, by name: their server, side effects and approval rule."""

    def check_budget(self, before: Literal["request", "tool_call"]) -> None:
        """Before a model request or a tool call: `BudgetExceeded` once the run reached a limit."""
        limits = self.run.config.get("limits")
        if not limits:
            return
        started = self.run.started_at or utcnow()
        reached = exceeded(limits, self.state.usage, (utcnow() - started).total_seconds(), before)
        if reached is not None:
            raise BudgetExceeded(reached)

    def needs_approval(self, name: str) -> bool:
        if name in HUMAN_TOOLS or name in self.remembered:
            return False
        spec = self.mcp.get(name)
        if spec is not None and spec.require_approval:
            return True
        if self.permission_mode == "approve_all":
            return True
        if self.permission_mode == "approve_writes":
            return spec.side_effects if spec is not None else has_side_effects(name)
        return False

    async def journaled(self, call_id: str) -> journal.Entry | None:
        """The journal entry of a call already made; a first attempt's entries are all in memory."""
        entry = self.state.journal.get(call_id)
        if entry is None and self.run.attempt > 1:
            async with self.writer.store.read() as conn:
                entry = await journal.lookup(conn, self.run.org_id, self.run.id, call_id)
        return entry


class JournalToolset(WrapperToolset[RunDeps]):
    """Runs each tool call at most once per run (a journaled result is replayed, not re-executed)
    and asks for approval first where the run's permission mode says so."""

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[RunDeps], tool: ToolsetTool[RunDeps]
    ) -> Any:
        deps = ctx.deps
        call_id = ctx.tool_call_id or ""
        done = await deps.journaled(call_id)
        if done is not None:
            done.check(name, tool_args)  # the same id with other arguments fails the run: never a silent replay
            if done.is_error:
                raise ToolFailed(str(done.result))
            return done.result
        deps.check_budget("tool_call")  # a replayed call above costs nothing: only a new one is checked
        if not ctx.tool_call_approved and deps.needs_approval(name):
            if not deps.run.options.human_in_the_loop:
                # Only an MCP server's require_approval gets here (run creation refuses it): never run unasked.
                raise ToolFailed(f"{name} needs a human's approval, and this run has no human in the loop")
            raise ApprovalRequired
        call = ToolCallContext(deps.run.id, call_id)
        token = current_tool_call.set(call)
        try:
            result: Any = await self.wrapped.call_tool(name, tool_args, ctx, tool)
            is_error = False
        except (ToolFailed, ModelRetry) as exc:
            is_error, result = True, str(exc.message)
        finally:
            current_tool_call.reset(token)
        result = result if isinstance(result, (str, int, float, bool, type(None), dict, list)) else str(result)
        deps.state.usage["tool_calls"] = deps.state.usage.get("tool_calls", 0) + 1
        try:
            await _journal(
                deps,
                journal.Entry.of(call_id, name, tool_args, result, is_error=is_error),
                call if not is_error else None,
            )
        except ToolFailed as exc:
            # A staged write found it cannot happen (e.g. no such memory): nothing was committed.
            is_error, result = True, exc.message
            await _journal(deps, journal.Entry.of(call_id, name, tool_args, result, is_error=True), None)
        if is_error:
            raise ToolFailed(str(result))
        return result


async def _journal(deps: RunDeps, entry: journal.Entry, call: ToolCallContext | None) -> None:
    """Commit the call's staged writes, its events and its journal entry in one fenced transaction:
    on resume, none of them repeats."""
    run = deps.run
    name, result = entry.name, entry.result
    event = (
        ("tool.error", {"tool_call_id": entry.tool_call_id, "name": name, "error": result})
        if entry.is_error
        else ("tool.result", {"tool_call_id": entry.tool_call_id, "name": name, "result": result})
    )
    writes = call.writes if call is not None else []

    async def commit(tx: Tx) -> None:
        for write in writes:
            await write(tx)
        await journal.record(tx.conn, run.org_id, run.id, entry)

    await deps.writer.flush(
        *(call.events if call is not None else ()), event, changes={"usage": dict(deps.state.usage)}, also=commit
    )
    deps.state.journal[entry.tool_call_id] = entry


FILES = "files"
"""The tool group name that enables the four workspace file tools."""


def has_side_effects(name: str) -> bool:
    """Whether a built-in, file or memory tool changes something outside the run."""
    spec = BUILTIN_TOOLS.get(name) or FILE_TOOLS.get(name)
    return spec.side_effects if spec is not None else name in MEMORY_TOOLS


def tool_names(run: ClaimedRun, *, planning: bool = False) -> list[str]:
    """The tools a run offers the model (MCP tools aside): its own, the file tools when it enables
    `files`, human and memory tools by its options, and the caller's tools."""
    if planning:
        return []
    enabled = run.config.get("tools", [])
    names = [n for n in enabled if n in BUILTIN_TOOLS]
    if FILES in enabled:
        names += list(FILE_TOOLS)
    if run.options.human_in_the_loop:
        names += list(HUMAN_TOOLS)
    if run.options.memory and run.user_id:
        names += list(MEMORY_TOOLS)
    names += [t["name"] for t in run.config.get("client_tools") or []]
    return names


def _function(name: str) -> Any:
    spec = BUILTIN_TOOLS.get(name) or FILE_TOOLS.get(name)
    if spec is not None:
        return spec.function
    return HUMAN_TOOLS.get(name) or MEMORY_TOOLS[name]


def _client_tool_defs(run: ClaimedRun, names: list[str]) -> list[ToolDefinition]:
    offered = set(names)
    return [
        ToolDefinition(
            name=t["name"],
            description=t.get("description") or None,
            parameters_json_schema=t.get("parameters") or {"type": "object", "properties": {}},
        )
        for t in run.config.get("client_tools") or []
        if t["name"] in offered
    ]


def agent_for(run: ClaimedRun, names: list[str]) -> Agent[RunDeps, Any]:
    """Agents are stateless between runs: build one per distinct configuration and reuse it."""
    instructions, schema = run.config.get("instructions"), run.config.get("output_schema")
    humans = run.options.human_in_the_loop
    client = _client_tool_defs(run, names)
    key = json.dumps(
        [instructions, names, schema, humans, [(d.name, d.description, d.parameters_json_schema) for d in client]],
        sort_keys=True,
    )
    agent = _AGENTS.get(key)
    if agent is None:
        if len(_AGENTS) >= 256:
            _AGENTS.pop(next(iter(_AGENTS)))
        local = [n for n in names if n not in {d.name for d in client}]
        agent = _AGENTS[key] = _build_agent(instructions, schema, humans or bool(client), local, client)
    # GenAI spans (model requests, tool calls) only while tracing is on; None leaves the agent uninstrumented.
    agent.instrument = tracing.instrumentation()
    return agent


_AGENTS: dict[str, Agent[RunDeps, Any]] = {}


def _build_agent(
    instructions: str | None,
    schema: dict[str, Any] | None,
    deferrable: bool,
    names: list[str],
    client: list[ToolDefinition],
) -> Agent[RunDeps, Any]:
    output_type: Any = StructuredDict(schema, name="output") if schema else str
    if deferrable:
        # Questions, approvals and the caller's tools end the run's turn with DeferredToolRequests.
        output_type = [output_type, DeferredToolRequests]
    tools = [_function(n) for n in names]
    toolsets: list[Any] = [JournalToolset(FunctionToolset(tools))] if tools else []
    if client:
        toolsets.append(ExternalToolset(client))
    agent: Agent[RunDeps, Any] = Agent(
        instructions=instructions or None,
        deps_type=RunDeps,
        output_type=output_type,
        toolsets=toolsets,
    )
    if schema:
        validator = jsonschema.Draft202012Validator(schema)

        @agent.output_validator
        def _check(output: Any) -> Any:
            # StructuredDict does not enforce the schema: validate and let the model retry.
            if isinstance(output, DeferredToolRequests):
                return output
            errors = sorted(validator.iter_errors(output), key=lambda e: list(e.path))
            if errors:
                raise ModelRetry("output does not match the schema: " + "; ".join(e.message for e in errors[:5]))
            return output

    return agent


def declared_tools(run: ClaimedRun, names: list[str], mcp: dict[str, Any]) -> list[dict[str, Any]]:
    """What `tools.declared` lists: every tool offered, with its schema and whether it has side effects;
    an MCP tool names its `server`, a caller's tool says `client: true`."""
    client = {d.name: d for d in _client_tool_defs(run, names)}
    declared: list[dict[str, Any]] = []
    for name in names:
        if name in client:
            d = client[name]
            entry = {"name": name, "description": d.description, "parameters": d.parameters_json_schema}
            declared.append({**entry, "side_effects": None, "client": True})
            continue
        definition: ToolDefinition = FunctionToolset([_function(name)]).tools[name].tool_def
        declared.append(
            {
                "name": name,
                "description": definition.description,
                "parameters": definition.parameters_json_schema,
                "side_effects": has_side_effects(name),
            }
        )
    for name, spec in mcp.items():
        declared.append(
            {
                "name": name,
                "description": spec.description,
                "parameters": spec.parameters,
                "side_effects": spec.side_effects,
                "server": spec.server,
            }
        )
    return declared
