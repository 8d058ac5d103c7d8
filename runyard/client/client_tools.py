"""Tools the caller executes: their definitions, and Python functions the SDK runs for a run.

A client tool is declared to the server by its definition (`{name, description, parameters,
output_schema?}`, the `ClientTool` model). When the model calls one, the run pauses with a
`tool_result` wait until its result is posted to `POST /v1/runs/{id}/tool_results`.

`LocalTools` is the set of functions a caller gives as `tools={"name": function}`. Each becomes
a definition: the name is the dict key, the description the function's docstring, and the
parameters the JSON Schema pydantic derives from its signature. At a `tool_result` wait for one
of them, the call's arguments are validated (and coerced) into the function's parameters, the
function is called, and what it returns, made JSON by pydantic, is the tool's `output`. When the
arguments do not validate, or the function raises, the message is posted as the tool's `error`
instead: the model reads it and the run goes on; it is never raised to the caller.

A function takes keyword arguments with type hints: any type pydantic validates (`str`, `int`,
`list[str]`, a `BaseModel`, a `Literal`, …), a default makes a parameter optional, and
`Annotated[str, Field(description="…")]` describes it to the model. A parameter without a hint
takes any JSON. `*args`, `**kwargs` and positional-only parameters are refused (`TypeError`).
`AsyncRunyard` also takes `async def` functions; it runs plain ones in a worker thread so that
they do not block its event loop. `Runyard` takes plain functions only.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..domain import ClientTool, Wait, WaitStatus

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_ERROR",
    "LocalTool",
    "LocalTools",
    "ToolFunction",
    "client_tool_json",
    "without_rejected",
]

ToolFunction = Callable[..., Any]
"""A function the SDK runs when a run calls the tool of its name (see the module docstring)."""

MAX_DESCRIPTION = 4000
"""The server's limit on a tool's description: a longer docstring is cut."""
MAX_ERROR = 32 * 1024
"""The server's limit on a posted error: a longer message is cut, so that posting it cannot fail."""

_JSON = TypeAdapter(Any)
_ARGUMENTS_CONFIG = ConfigDict(extra="forbid")
_UNSUPPORTED = {
    inspect.Parameter.POSITIONAL_ONLY: "positional-only parameter",
    inspect.Parameter.VAR_POSITIONAL: "*args",
    inspect.Parameter.VAR_KEYWORD: "**kwargs",
}


def client_tool_json(tool: ClientTool | Mapping[str, Any]) -> dict[str, Any]:
    """A client tool definition as the request body carries it: the known fields that are set."""
    model = tool if isinstance(tool, ClientTool) else ClientTool.model_validate(tool)
    return model.model_dump(
        mode="json", include={"name", "description", "parameters", "output_schema"}, exclude_none=True
    )


def _unwrapped(function: ToolFunction) -> Any:
    # A partial's docstring and hints are its function's.
    while isinstance(function, functools.partial):
        function = function.func
    return function


def _type_hints(function: ToolFunction) -> dict[str, Any]:
    # String annotations (`from __future__ import annotations`) are resolved here; a callable
    # object's are those of its `__call__`.
    target = _unwrapped(function)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = target.__call__
    try:
        return typing.get_type_hints(target, include_extras=True)
    except (TypeError, NameError):
        return {}


def _arguments_model(name: str, function: ToolFunction) -> tuple[type[BaseModel], dict[str, str]]:
    """A pydantic model of `function`'s parameters, and the model field of each parameter.

    Fields get neutral names with the parameter name as alias, so that a parameter called
    `json` or `model_config` does not clash with `BaseModel`'s own attributes.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tool {name!r}: cannot read the signature of {function!r}") from exc
    hints = _type_hints(function)
    fields: dict[str, Any] = {}
    by_parameter: dict[str, str] = {}
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind in _UNSUPPORTED:
            raise TypeError(
                f"tool {name!r}: {_UNSUPPORTED[parameter.kind]} {parameter.name!r} is not supported;"
                " a tool function takes keyword arguments with type hints"
            )
        annotation = hints.get(parameter.name, parameter.annotation)
        if annotation is inspect.Parameter.empty or isinstance(annotation, str):
            annotation = Any
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        field = f"p{index}"
        fields[field] = (annotation, Field(default, alias=parameter.name))
        by_parameter[parameter.name] = field
    model = pydantic.create_model(f"{name}_arguments", __config__=_ARGUMENTS_CONFIG, **fields)
    return model, by_parameter


def _invalid_arguments(name: str, exc: pydantic.ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )
    return f"invalid arguments for {name}: {problems}"


def _error_text(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:MAX_ERROR]


def _call_id(wait: Wait) -> str:
    return wait.tool_call_id or str(wait.request.get("tool_call_id"))


@dataclass(frozen=True)
class LocalTool:
    """One function given as a tool: its definition, and how its arguments are validated."""

    name: str
    """The tool's name: the key it was given under."""
    function: ToolFunction
    """What the SDK calls."""
    arguments: type[BaseModel]
    """The model of the function's parameters (its JSON Schema is the tool's `parameters`)."""
    fields: dict[str, str]
    """The model field that holds each parameter."""
    is_async: bool
    """Whether calling the function returns a coroutine to await."""

    @classmethod
    def of(cls, name: str, function: ToolFunction) -> LocalTool:
        """The tool for `function`; `TypeError` when it is not callable or its signature is refused."""
        if not callable(function):
            raise TypeError(f"tool {name!r} must be a function, not {type(function).__name__}")
        arguments, fields = _arguments_model(name, function)
        # An object whose `__call__` is an `async def` is async too.
        is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(function.__call__)
        return cls(name, function, arguments, fields, is_async)

    def definition(self) -> dict[str, Any]:
        """The client tool definition sent with the run."""
        description = inspect.getdoc(_unwrapped(self.function)) or ""
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return {"name": self.name, "description": description[:MAX_DESCRIPTION], "parameters": schema}

    def bind(self, args: Any) -> dict[str, Any]:
        """The keyword arguments of a call, validated; raises `pydantic.ValidationError`."""
        validated = self.arguments.model_validate({} if args is None else args)
        return {parameter: getattr(validated, field) for parameter, field in self.fields.items()}


def _output(call_id: str, value: Any) -> dict[str, Any]:
    try:
        return {"tool_call_id": call_id, "output": _JSON.dump_python(value, mode="json")}
    except ValueError as exc:  # pydantic's PydanticSerializationError
        return _error(call_id, f"the result is not JSON: {exc}")


def _error(call_id: str, message: str) -> dict[str, Any]:
    return {"tool_call_id": call_id, "error": message[:MAX_ERROR]}


class LocalTools:
    """The functions a caller gave as `tools={name: function}`, by name."""

    def __init__(self, functions: Mapping[str, ToolFunction]) -> None:
        self.tools = {name: LocalTool.of(name, function) for name, function in functions.items()}
        """Each function's tool, by name."""

    def definitions(self) -> list[dict[str, Any]]:
        """The client tool definitions of every function, sent as the run's `client_tools`."""
        return [tool.definition() for tool in self.tools.values()]

    def require_sync(self) -> None:
        """Raise `TypeError` when a function is `async def`: the blocking client cannot await it."""
        found = [name for name, tool in self.tools.items() if tool.is_async]
        if found:
            raise TypeError(f"async tool functions need AsyncRunyard: {', '.join(found)}")

    def pending(self, waits: Iterable[Wait]) -> list[Wait]:
        """The open `tool_result` waits that one of these functions answers, oldest first."""
        found = [
            w
            for w in waits
            if w.kind == "tool_result" and w.status is WaitStatus.OPEN and w.request.get("name") in self.tools
        ]
        return sorted(found, key=lambda w: w.id)

    def call(self, wait: Wait) -> dict[str, Any]:
        """Run the function a `tool_result` wait asks for; its result (`output` or `error`) to post."""
        prepared = self._prepare(wait)
        if isinstance(prepared, dict):
            return prepared
        tool, kwargs = prepared
        try:
            value = tool.function(**kwargs)
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()  # never awaited: close it so Python does not warn about it
                raise TypeError(f"{tool.name} returned an awaitable: use AsyncRunyard for async tool functions")
        except Exception as exc:
            return _error(_call_id(wait), _error_text(exc))
        return _output(_call_id(wait), value)

    async def acall(self, wait: Wait) -> dict[str, Any]:
        """`call` for `AsyncRunyard`: awaits an `async def` function, runs a plain one in a thread."""
        prepared = self._prepare(wait)
        if isinstance(prepared, dict):
            return prepared
        tool, kwargs = prepared
        try:
            if tool.is_async:
                value = await tool.function(**kwargs)
            else:
                value = await asyncio.to_thread(tool.function, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
        except Exception as exc:
            return _error(_call_id(wait), _error_text(exc))
        return _output(_call_id(wait), value)

    def call_all(self, waits: Sequence[Wait]) -> list[dict[str, Any]]:
        """`call` for each wait, in order."""
        return [self.call(wait) for wait in waits]

    async def acall_all(self, waits: Sequence[Wait]) -> list[dict[str, Any]]:
        """`acall` for each wait, concurrently; the results in the waits' order."""
        return list(await asyncio.gather(*(self.acall(wait) for wait in waits)))

    def _prepare(self, wait: Wait) -> tuple[LocalTool, dict[str, Any]] | dict[str, Any]:
        name = str(wait.request.get("name"))
        tool = self.tools.get(name)
        if tool is None:
            return _error(_call_id(wait), f"no function for tool {name}")
        try:
            return tool, tool.bind(wait.request.get("args"))
        except pydantic.ValidationError as exc:
            return _error(_call_id(wait), _invalid_arguments(name, exc))


_REJECTED = re.compile(r"results\[(\d+)\]\.output")


def without_rejected(results: list[dict[str, Any]], exc: Exception) -> list[dict[str, Any]] | None:
    """`results` with the output a 422 named (`results[i].output…`) replaced by the error it got.

    The model then reads why its tool's result was refused (it does not match the tool's
    `output_schema`) and the run goes on. `None` when the error names no output of `results`.
    """
    match = _REJECTED.match(getattr(exc, "field", None) or "")
    index = int(match.group(1)) if match else -1
    if not 0 <= index < len(results) or "output" not in results[index]:
        return None
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    fixed = list(results)
    fixed[index] = _error(results[index]["tool_call_id"], f"the tool's result was refused: {message or exc}")
    return fixed
