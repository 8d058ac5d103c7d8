"""Built-in tools: `current_time`, `calculator`, `http_get`, `sleep`.

A tool raises `ToolFailed` for errors the model can recover from (a bad expression, a 404);
those become `tool.error` events and the loop goes on. Anything else fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic_ai.exceptions import ToolFailed
from simpleeval import EvalWithCompoundTypes, InvalidExpression, NumberTooHigh

from ...config import get_settings
from . import net
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
    return datetime.now(UTC).isoformat()


_MATH = {name: getattr(math, name) for name in ("sqrt", "sin", "cos", "tan", "log", "log10", "exp", "floor", "ceil")}


async def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as `2 * (3 + 4) ** 2` or `sqrt(2)`."""
    if len(expression) > 1000:
        raise ToolFailed("expression too long (limit 1000 characters)")
    evaluator = EvalWithCompoundTypes(
        functions={**_MATH, "abs": abs, "round": round, "min": min, "max": max}, names={"pi": math.pi, "e": math.e}
    )
    try:
        result = evaluator.eval(expression)
    except (InvalidExpression, NumberTooHigh, ArithmeticError, SyntaxError, TypeError, ValueError) as exc:
        raise ToolFailed(f"cannot evaluate {expression!r}: {exc}") from None
    if not isinstance(result, (int, float)):
        raise ToolFailed(f"{expression!r} is not an arithmetic expression")
    return str(result)


async def _resolve_checked(host: str, allow_private: bool) -> list[str]:
    """Resolve `host` once; refuse it if any address it resolves to is not public."""
    addresses = await asyncio.to_thread(net.resolve, host)
    if not addresses:
        raise ToolFailed(f"cannot resolve {host!r}: no addresses")
    if not allow_private:
        for address in addresses:
            if not net.is_public_address(address):
                raise ToolFailed(f"refused: {host} resolves to a private or reserved address ({address})")
    return addresses


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body's first `limit` bytes, decoded, and whether there was more; at most `limit` bytes
    are read from the socket, and at most `limit` + 1 decoded bytes are ever held."""
    decoder = net.BoundedDecoder(response.headers.get("Content-Encoding", ""), limit)
    received = 0
    async for chunk in response.aiter_raw():
        over = len(chunk) > limit - received
        chunk = chunk[: limit - received]
        received += len(chunk)
        decoder.feed(chunk)
        if over or decoder.done:
            return bytes(decoder.output[:limit]), over or decoder.truncated
    return bytes(decoder.output[:limit]), decoder.truncated


async def _get(
    client: httpx.AsyncClient, url: httpx.URL, headers: dict[str, str], extensions: dict[str, Any], limit: int
) -> str:
    async with client.stream("GET", url, headers=headers, extensions=extensions) as response:
        body, more = await _read_bounded(response, limit)
    text = body.decode(response.encoding or "utf-8", errors="replace")
    truncated = " (truncated)" if more else ""
    return f"HTTP {response.status_code}{truncated}\n{text}"


async def http_get(url: str) -> str:
    """Fetch a public http(s) URL and return the start of its body as text."""
    settings = get_settings()
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        target = None
    if target is None or target.scheme not in ("http", "https") or not target.host:
        raise ToolFailed("url must be an absolute http:// or https:// URL")
    host = target.raw_host.decode("ascii")
    limit = settings.http_get_max_bytes
    call = current_tool_call.get()
    # Our own decoder bounds what gzip and deflate inflate to; other codings are refused.
    headers = {"Host": target.netloc.decode("ascii"), "Accept-Encoding": "gzip, deflate"}
    if call is not None:
        headers["Idempotency-Key"] = call.idempotency_key
    # No DNS rebinding: connect to the checked IP literal, with the original name as Host, TLS SNI and cert name.
    extensions = {"sni_hostname": host} if target.scheme == "https" else {}
    try:
        # The whole request, not each read: a server dripping bytes must not hold the run.
        async with asyncio.timeout(settings.http_get_timeout):
            addresses = await _resolve_checked(host, settings.http_get_allow_private)
            # No redirects: a redirect could point at a private address we never checked.
            async with httpx.AsyncClient(timeout=settings.http_get_timeout, follow_redirects=False) as client:
                for address in addresses[:-1]:
                    # A failed connect sent nothing: try the next address, as a connect by name would.
                    with contextlib.suppress(httpx.ConnectError):
                        return await _get(client, target.copy_with(host=address), headers, extensions, limit)
                return await _get(client, target.copy_with(host=addresses[-1]), headers, extensions, limit)
    except TimeoutError:
        raise ToolFailed(f"GET {url} exceeded the time limit of {settings.http_get_timeout:g} s") from None
    except httpx.InvalidURL as exc:
        raise ToolFailed(f"GET {url} failed: {exc}") from None
    except httpx.HTTPError as exc:
        raise ToolFailed(f"GET {url} failed: {exc.__class__.__name__}: {exc}") from None


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
