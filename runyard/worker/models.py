"""Model resolution: the offline `scripted` model, model strings, and routes (`routing`).

`scripted` is a test model, not an LLM: it follows a script given in the run's (or agent's)
metadata and never touches the network. A script is a list of steps, one per model response:

    {"text": "Hello" | ["Hel", "lo"], "repeat": 1,    # streamed text chunks (repeated n times)
     "reasoning": "...",                               # a thinking part, streamed first
     "tool_calls": [{"name": "calculator", "args": {"expression": "2+2"}}],
     "delay": 0.5,                                     # seconds before answering
     "error": "boom"}                                  # the model request fails with this message

Without a script it echoes the task. When the script runs out it answers "done".
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, UserPromptPart
from pydantic_ai.models import Model, infer_model
from pydantic_ai.models.function import AgentInfo, DeltaThinkingPart, DeltaToolCall, FunctionModel

from ..store.errors import InvalidInput
from .routing import Emit, Link, RouteConfig, RoutedModel

__all__ = [
    "ModelError",
    "Prices",
    "ResolvedModel",
    "ScriptError",
    "ScriptLimits",
    "prices_of",
    "resolve_model",
    "validate_script",
]

SCRIPTED = "scripted"
MODEL_PREFIXES = ("openai:", "openai-chat:", "openai-responses:", "anthropic:", "ollama:")


class ModelError(Exception):
    """The model request failed in a way the run cannot recover from."""


class ScriptError(ModelError):
    """A scripted step asked the model to fail."""


@dataclass(frozen=True)
class Prices:
    """USD per million tokens, from a route: overrides genai-prices for self-hosted servers."""

    input_mtok: float = 0.0
    output_mtok: float = 0.0
    cache_read_mtok: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int, cache_read_tokens: int) -> float:
        uncached = max(input_tokens - cache_read_tokens, 0)
        return (
            uncached * self.input_mtok + output_tokens * self.output_mtok + cache_read_tokens * self.cache_read_mtok
        ) / 1_000_000


@dataclass(frozen=True)
class ResolvedModel:
    model: Model
    name: str
    prices: Prices | None = None
    """None: ask genai-prices (offline snapshot), or the serving route's (`routed`)."""
    routed: RoutedModel | None = None


class ScriptLimits:
    """The `scripted` model is the default: bound what a key holder can make it write or hold."""

    STEPS = 100
    REPEAT = 10_000
    DELAY_S = 60.0
    CHUNKS = 1_000
    STEP_TEXT_BYTES = 1024 * 1024
    TOOL_CALLS = 16


def _script_error(where: str, message: str) -> InvalidInput:
    return InvalidInput(f"{where} {message}", field=where)


def validate_script(script: Any) -> None:
    """Check a script at create time, so a run never fails (or fills the disk) on its shape."""
    if script is None:
        return
    where = "metadata.script"
    if not isinstance(script, list):
        raise _script_error(where, "must be a list of steps")
    if len(script) > ScriptLimits.STEPS:
        raise _script_error(where, f"has more than {ScriptLimits.STEPS} steps")
    for i, step in enumerate(script):
        at = f"{where}[{i}]"
        if not isinstance(step, dict):
            raise _script_error(at, "must be an object")
        unknown = set(step) - {"text", "repeat", "reasoning", "tool_calls", "delay", "error"}
        if unknown:
            raise _script_error(at, f"has unknown keys {sorted(unknown)}")
        repeat = step.get("repeat", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 0 <= repeat <= ScriptLimits.REPEAT:
            raise _script_error(f"{at}.repeat", f"must be an integer from 0 to {ScriptLimits.REPEAT}")
        delay = step.get("delay", 0)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= ScriptLimits.DELAY_S:
            raise _script_error(f"{at}.delay", f"must be a number of seconds from 0 to {ScriptLimits.DELAY_S:g}")
        text = step.get("text")
        chunks = [text] if isinstance(text, str) else text
        if chunks is not None and (not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks)):
            raise _script_error(f"{at}.text", "must be a string or a list of strings")
        if chunks is not None and len(chunks) > ScriptLimits.CHUNKS:
            raise _script_error(f"{at}.text", f"has more than {ScriptLimits.CHUNKS} chunks")
        size = sum(len(c.encode()) for c in chunks or []) * repeat
        for key in ("reasoning", "error"):
            if key in step and not isinstance(step[key], str):
                raise _script_error(f"{at}.{key}", "must be a string")
            size += len(str(step.get(key) or "").encode())
        if size > ScriptLimits.STEP_TEXT_BYTES:
            raise _script_error(at, f"writes more than {ScriptLimits.STEP_TEXT_BYTES // (1024 * 1024)} MB of text")
        calls = step.get("tool_calls") or []
        if not isinstance(calls, list) or len(calls) > ScriptLimits.TOOL_CALLS:
            raise _script_error(f"{at}.tool_calls", f"must be a list of at most {ScriptLimits.TOOL_CALLS} calls")
        for n, call in enumerate(calls):
            if (
                not isinstance(call, dict)
                or not isinstance(call.get("name"), str)
                or set(call) - {"name", "args"}
                or not isinstance(call.get("args", {}), dict)
            ):
                raise _script_error(f"{at}.tool_calls[{n}]", 'must be {"name": str, "args": object}')


def _step_index(messages: list[ModelMessage], task: str | None) -> tuple[int, str]:
    """Which step of the script this request is: responses since the run's task was sent
    (later user messages — follow-ups, plan approvals — do not restart the script)."""
    count = 0
    latest = None
    for message in reversed(messages):
        if isinstance(message, ModelResponse):
            count += 1
        elif isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart):
                    content = part.content if isinstance(part.content, str) else str(part.content)
                    latest = latest if latest is not None else content
                    if task is None or content == task:
                        return count, content
    return count, latest or ""


def scripted_model(script: list[dict[str, Any]] | None, task: str | None = None) -> FunctionModel:
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        index, task_text = _step_index(messages, task)
        if script is None:
            step: dict[str, Any] = {"text": f"You said: {task_text[:200]}" if index == 0 else "done"}
        elif index < len(script):
            step = script[index]
        else:
            step = {"text": "done"}
        if step.get("delay"):
            await asyncio.sleep(float(step["delay"]))
        if step.get("error"):
            raise ScriptError(str(step["error"]))
        if step.get("reasoning"):
            yield {0: DeltaThinkingPart(content=str(step["reasoning"]))}
        text = step.get("text")
        chunks = [text] if isinstance(text, str) else list(text or [])
        for _ in range(int(step.get("repeat", 1))):
            for chunk in chunks:
                yield str(chunk)
        for n, call in enumerate(step.get("tool_calls") or [], start=1):
            # Deterministic ids: the tool journal keys on them across a crash and a resume.
            yield {
                n: DeltaToolCall(
                    name=call["name"], json_args=json.dumps(call.get("args", {})), tool_call_id=f"call_{index}_{n}"
                )
            }
        if not chunks and not step.get("tool_calls") and not step.get("reasoning"):
            yield ""

    return FunctionModel(stream_function=stream, model_name=SCRIPTED)


def known_model(name: str, routes: dict[str, RouteConfig]) -> bool:
    return (
        name in (SCRIPTED, "test")
        or name in routes
        or (name.startswith(MODEL_PREFIXES) and ":" in name and not name.endswith(":"))
    )


def resolve_model(
    name: str,
    script: list[dict[str, Any]] | None,
    routes: dict[str, RouteConfig],
    *,
    task: str | None = None,
    route_id: str | None = None,
    emit: Emit | None = None,
) -> ResolvedModel:
    """The model a run talks to: `scripted`, or its route (else `name` as a route id or a model
    string) behind a `RoutedModel` that retries, falls back and logs what it does with `emit`."""
    route_id = route_id or (name if name in routes else None)
    if route_id is None and name == SCRIPTED:
        return ResolvedModel(scripted_model(script, task), SCRIPTED, Prices())
    if route_id is not None and route_id not in routes:
        raise ModelError(f"route {route_id!r} is not in the routes file")
    if route_id is None:
        chain = [Link(None, RouteConfig(model=name), _model_of(RouteConfig(model=name), script, task))]
    else:
        ids = [route_id, *routes[route_id].fallback]
        chain = [Link(rid, routes[rid], _model_of(routes[rid], script, task)) for rid in ids]
    routed = RoutedModel(chain, emit or (lambda type_, data: None))
    return ResolvedModel(routed, name, routed=routed)


def prices_of(route: RouteConfig) -> Prices | None:
    """A route's own prices; None: genai-prices (a scripted route costs nothing)."""
    if route.prices is not None:
        return Prices(**route.prices.model_dump())
    return Prices() if route.model == SCRIPTED else None


def _model_of(route: RouteConfig, script: list[dict[str, Any]] | None, task: str | None) -> Model:
    if route.model == SCRIPTED:
        return scripted_model(script, task)
    if route.base_url is None and route.api_key_env is None:
        return infer_model(route.model)
    return _provider_model(route)


def _provider_model(route: RouteConfig) -> Model:
    """A model behind an explicit base URL (self-hosted or a proxy), or with its key in a named env var."""
    kind, _, model_name = route.model.partition(":")
    api_key = os.environ.get(route.api_key_env, "") if route.api_key_env else "none"
    if kind == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(model_name, provider=AnthropicProvider(base_url=route.base_url, api_key=api_key))
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    if kind not in ("openai", "openai-chat", "ollama"):
        raise InvalidInput(f"route model {route.model!r}: expected openai:, openai-chat:, ollama: or anthropic:")
    return OpenAIChatModel(model_name, provider=OpenAIProvider(base_url=route.base_url, api_key=api_key))
