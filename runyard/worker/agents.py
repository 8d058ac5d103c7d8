"""The pydantic-ai side of a run: its deps, its tools (journaled, approval-gated), its Agent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import ApprovalRequired, ModelRetry, ToolFailed
from pydantic_ai.output import StructuredDict
from pydantic_ai.tools import DeferredToolRequests, ToolDefinition
from pydantic_ai.toolsets import FunctionToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from ..store import checkpoints
from ..store.db import Tx
from .tools import BUILTIN_TOOLS
from .tools.context import ToolCallContext, current_tool_call
from .tools.human import HUMAN_TOOLS
from .tools.memory import MEMORY_TOOLS
from .writer import EventWriter

__all__ = ["RunDeps", "RunState", "agent_for", "declared_tools", "tool_names"]

PLAN_INSTRUCTIONS = (
    "Before doing anything, propose a short numbered plan for the task as plain text. "
    "Do not call any tool yet: the user will approve or reject the plan first."
)


@dataclass
class RunState:
    """What changes while the run executes."""

    usage: dict[str, Any]
    text: list[str] = field(default_factory=list)
    """Every text delta streamed in this attempt: the partial output if the run is cancelled."""
    delivered: int = 0
    """Follow-up messages taken into the conversation but not yet checkpointed."""
    history_len: int = 0
    """How many messages of the conversation came from the thread's earlier runs."""


@dataclass
class RunDeps:
    """What the run is given; tools see it as `ctx.deps`."""

    run_id: str
    org_id: str
    user_id: str | None
    writer: EventWriter
    state: RunState
    permission_mode: str = "autonomous"
    remembered: set[str] = field(default_factory=set)
    """Tools the user allowed for the rest of the run (`remember` on an approval)."""

    def needs_approval(self, name: str) -> bool:
        if name in HUMAN_TOOLS or name in self.remembered:
            return False
        if self.permission_mode == "approve_all":
            return True
        if self.permission_mode == "approve_writes":
            spec = BUILTIN_TOOLS.get(name)
            return bool(spec.side_effects) if spec is not None else name in MEMORY_TOOLS
        return False


class JournalToolset(WrapperToolset[RunDeps]):
    """Runs each tool call at most once per run (a journaled result is replayed, not re-executed)
    and asks for approval first where the run's permission mode says so."""

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[RunDeps], tool: ToolsetTool[RunDeps]
    ) -> Any:
        deps = ctx.deps
        call_id = ctx.tool_call_id or ""
        async with deps.writer.store.read() as conn:
            done = await checkpoints.journaled(conn, deps.run_id, call_id)
        if done is not None:
            if done.is_error:
                raise ToolFailed(str(done.result))
            return done.result
        if not ctx.tool_call_approved and deps.needs_approval(name):
            raise ApprovalRequired
        is_error = False
        token = current_tool_call.set(ToolCallContext(deps.run_id, call_id))
        try:
            result = await self.wrapped.call_tool(name, tool_args, ctx, tool)
        except (ToolFailed, ModelRetry) as exc:
            is_error, result = True, str(exc.message)
        finally:
            current_tool_call.reset(token)
        result = result if isinstance(result, (str, int, float, bool, type(None), dict, list)) else str(result)
        deps.state.usage["tool_calls"] = deps.state.usage.get("tool_calls", 0) + 1
        event = ("tool.error", {"tool_call_id": call_id, "name": name, "error": result}) if is_error else (
            "tool.result", {"tool_call_id": call_id, "name": name, "result": result})

        async def journal(tx: Tx) -> None:
            await checkpoints.record_tool(tx.conn, deps.run_id, call_id, name, tool_args, result, is_error=is_error)

        # The journal entry and its event commit together: on resume, neither repeats.
        await deps.writer.flush(event, changes={"usage": dict(deps.state.usage)}, also=journal)
        if is_error:
            raise ToolFailed(str(result))
        return result


def tool_names(config: dict[str, Any], user_id: str | None, *, planning: bool = False) -> list[str]:
    """The tools a run offers the model: its own, plus human and memory tools by its options."""
    if planning:
        return []
    names = [n for n in config.get("tools", []) if n in BUILTIN_TOOLS]
    if config.get("human_in_the_loop"):
        names += list(HUMAN_TOOLS)
    if config.get("memory", True) and user_id:
        names += list(MEMORY_TOOLS)
    return names


def _function(name: str) -> Any:
    if name in BUILTIN_TOOLS:
        return BUILTIN_TOOLS[name].function
    return HUMAN_TOOLS.get(name) or MEMORY_TOOLS[name]


def agent_for(config: dict[str, Any], names: list[str]) -> Agent[RunDeps, Any]:
    """Agents are stateless between runs: build one per distinct configuration and reuse it."""
    key = json.dumps([config.get("instructions"), names, config.get("output_schema"),
                      bool(config.get("human_in_the_loop"))], sort_keys=True)
    agent = _AGENTS.get(key)
    if agent is None:
        if len(_AGENTS) >= 256:
            _AGENTS.pop(next(iter(_AGENTS)))
        agent = _AGENTS[key] = _build_agent(config, names)
    return agent


_AGENTS: dict[str, Agent[RunDeps, Any]] = {}


def _build_agent(config: dict[str, Any], names: list[str]) -> Agent[RunDeps, Any]:
    schema = config.get("output_schema")
    output_type: Any = StructuredDict(schema, name="output") if schema else str
    if config.get("human_in_the_loop"):
        output_type = [output_type, DeferredToolRequests]
    tools = [_function(n) for n in names]
    agent: Agent[RunDeps, Any] = Agent(
        instructions=config.get("instructions") or None,
        deps_type=RunDeps,
        output_type=output_type,
        toolsets=[JournalToolset(FunctionToolset(tools))] if tools else [],
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


def declared_tools(names: list[str]) -> list[dict[str, Any]]:
    declared = []
    for name in names:
        definition: ToolDefinition = FunctionToolset([_function(name)]).tools[name].tool_def
        spec = BUILTIN_TOOLS.get(name)
        declared.append({"name": name, "description": definition.description,
                         "parameters": definition.parameters_json_schema,
                         "side_effects": spec.side_effects if spec is not None else name in MEMORY_TOOLS})
    return declared
