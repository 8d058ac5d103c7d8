"""A run's task from variables: checked against the agent's `input_schema`, rendered through its
`message_template` in Jinja2's sandbox (no attribute tricks, no file or network access)."""

from __future__ import annotations

from typing import Any

import jsonschema
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from ..store.errors import InvalidInput
from .limits import Limits

__all__ = ["check_template", "check_variables", "render_task"]

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def check_template(source: str, field: str = "message_template") -> None:
    """A template that does not parse is refused when it is saved, not when a run needs it."""
    try:
        _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise InvalidInput(
            f"{field} is not a valid Jinja2 template (line {exc.lineno}): {exc.message}", field=field
        ) from None


def _path(error: jsonschema.ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def check_variables(schema: dict[str, Any] | None, variables: dict[str, Any]) -> None:
    """422 naming the JSON path of each place `variables` does not match `schema`."""
    if not schema:
        return
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(variables), key=lambda e: list(e.path))
    if errors:
        paths = [f"variables{_path(e)}" for e in errors]
        detail = "; ".join(f"{p}: {e.message}" for p, e in zip(paths, errors[:10], strict=False))
        raise InvalidInput(f"variables do not match the agent's input_schema: {detail}", field=paths[0])


def render_task(agent: dict[str, Any], variables: dict[str, Any] | None, message: str | None) -> str:
    """The run's task: the agent's template rendered with `variables` (and `message`), else `message`."""
    if variables is not None:
        check_variables(agent.get("input_schema"), variables)
    template = agent.get("message_template")
    if not template:
        if message is None:
            raise InvalidInput("message is required (the agent has no message_template)", field="message")
        return message
    try:
        # Without a message, `{{ message }}` is undefined like any other missing variable (422).
        given = {"message": message} if message is not None else {}
        task = _ENV.from_string(template).render({**(variables or {}), **given})
    except UndefinedError as exc:
        raise InvalidInput(f"variables: the agent's message_template needs {exc.message}", field="variables") from None
    except TemplateError as exc:
        raise InvalidInput(f"the agent's message_template failed: {exc.message}", field="message_template") from None
    if len(task.encode()) > Limits.MESSAGE_BYTES:
        raise InvalidInput(f"the rendered task is over {Limits.MESSAGE_BYTES // 1024} KB", field="variables")
    if not task.strip():
        raise InvalidInput("the rendered task is empty", field="variables")
    return task
