"""Built-in tools: `current_time`, `calculator`, `http_get`, `sleep`.

A tool raises `ToolFailed` for errors the model can recover from (a bad expression, a 404);
those become `tool.error` events and the loop goes on. Anything else fails the run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic_ai.exceptions import ToolFailed
from simpleeval import EvalWithCompoundTypes, InvalidExpression, NumberTooHigh

from ...config import get_settings
from .context import current_tool_call

__all__ = ["BUILTIN_TOOLS", "ToolSpec"]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    function: Callable[..., Any]
    side_effects: bool = False
    """True when calling the tool changes something outside the run (approval modes ask first)."""


async def current_time(timezone_name: str = "UTC") -> str:
    """The current date and time in ISO 8601 (only UTC is supported)."""
    if timezone_name.upper() != "UTC":
        raise ToolFailed(f"unsupported timezone {timezone_name!r}: only UTC is available")
    return datetime.now(timezone.utc).isoformat()


_MATH = {name: getattr(math, name) for name in ("sqrt", "sin", "cos", "tan", "log", "log10", "exp", "floor", "ceil")}


async def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as `2 * (3 + 4) ** 2` or `sqrt(2)`."""
    if len(expression) > 1000:
        raise ToolFailed("expression too long (limit 1000 characters)")
    evaluator = EvalWithCompoundTypes(functions={**_MATH, "abs": abs, "round": round, "min": min, "max": max},
                                      names={"pi": math.pi, "e": math.e})
    try:
        result = evaluator.eval(expression)
    except (InvalidExpression, NumberTooHigh, ArithmeticError, SyntaxError, TypeError, ValueError) as exc:
        raise ToolFailed(f"cannot evaluate {expression!r}: {exc}") from None
    if not isinstance(result, (int, float)):
        raise ToolFailed(f"{expression!r} is not an arithmetic expression")
    return str(result)


def _refuse_private(host: str) -> None:
    if get_settings().http_get_allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise ToolFailed(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ToolFailed(f"refused: {host} resolves to a private address ({address})")


async def http_get(url: str) -> str:
    """Fetch a public http(s) URL and return the start of its body as text."""
    settings = get_settings()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolFailed("url must be an absolute http:// or https:// URL")
    await asyncio.to_thread(_refuse_private, parts.hostname)
    limit = settings.http_get_max_bytes
    call = current_tool_call.get()
    headers = {"Idempotency-Key": call.idempotency_key} if call is not None else {}
    try:
        # The whole request, not each read: a server dripping bytes must not hold the run.
        async with asyncio.timeout(settings.http_get_timeout):
            # No redirects: a redirect could point at a private address we never checked.
            async with httpx.AsyncClient(timeout=settings.http_get_timeout, follow_redirects=False) as client:
                async with client.stream("GET", url, headers=headers) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > limit:
                            break
    except TimeoutError:
        raise ToolFailed(f"GET {url} exceeded the time limit of {settings.http_get_timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ToolFailed(f"GET {url} failed: {exc.__class__.__name__}: {exc}") from None
    text = body[:limit].decode(response.encoding or "utf-8", errors="replace")
    truncated = " (truncated)" if len(body) > limit else ""
    return f"HTTP {response.status_code}{truncated}\n{text}"


async def sleep(seconds: float) -> str:
    """Wait for the given number of seconds (at most 60), then return."""
    if not 0 <= seconds <= 60:
        raise ToolFailed("seconds must be between 0 and 60")
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


BUILTIN_TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("current_time", current_time),
        ToolSpec("calculator", calculator),
        ToolSpec("http_get", http_get, side_effects=True),
        ToolSpec("sleep", sleep),
    )
}
