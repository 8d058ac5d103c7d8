"""Tools from MCP servers at run time: `connect` opens an agent's `mcp_servers` (checked and stored
by `mcp_config`, re-exported here) once per run attempt through pydantic-ai's `MCPToolset`.

`${NAME}` in a header or env value is replaced from the worker's environment here. Unless
`mcp_allow_private`, the worker resolves a URL's host again (DNS may have changed since the agent
was saved) and then talks only to the addresses it checked (no DNS rebinding). A tool is offered
as `{server}_{tool}`; errors of a call or of the connection become `ToolFailed` naming the server,
so the run goes on. A stdio server's process lives as long as the attempt and gets its own `env`,
a minimal PATH, and what the MCP SDK always passes on (HOME, USER, LOGNAME, SHELL, TERM).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
from fastmcp.client.transports import ClientTransport, StdioTransport, StreamableHttpTransport
from mcp import types as mcp_types
from pydantic_ai import RunContext
from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.toolsets import WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from ...config import Settings
from . import net
from .builtins import BUILTIN_TOOLS
from .human import HUMAN_TOOLS
from .mcp_config import (
    ENV_REFERENCE,
    MAX_SERVERS,
    PRIVATE_FLAG,
    REDACTED,
    RESERVED_ENV_PREFIX,
    SERVER_NAME,
    MCPConnection,
    MCPTool,
    acheck_servers,
    check_servers,
    keep_redacted,
    redact,
)
from .memory import MEMORY_TOOLS

__all__ = [
    "MAX_RESULT_CHARS",
    "MAX_SERVERS",
    "MAX_TOOLS_PER_SERVER",
    "REDACTED",
    "MCPConnection",
    "MCPTool",
    "acheck_servers",
    "check_servers",
    "connect",
    "keep_redacted",
    "redact",
]

MAX_TOOLS_PER_SERVER = 128
MAX_RESULT_CHARS = 1024 * 1024
"""A tool result larger than this (as JSON) is cut (text) or refused (structured): it is journaled."""
_MAX_DESCRIPTION = 4096
_MAX_SCHEMA_CHARS = 64 * 1024
_MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"


class _Refused(Exception):
    """A server this worker will not connect to; the message says why."""


@asynccontextmanager
async def connect(
    servers: list[dict[str, Any]], settings: Settings, *, reserved: Iterable[str] = ()
) -> AsyncIterator[MCPConnection]:
    """Connect to every server at once (each bounded by `settings.mcp_timeout`), list its tools,
    and close every connection on exit. A server that fails is in `errors`, never an exception;
    a tool whose offered name is taken (built-in, human, memory, `reserved`, or an earlier
    server's) is skipped with an error. No servers: nothing is opened."""
    connection = MCPConnection()
    if not servers:
        yield connection
        return
    opened: list[MCPToolset[Any]] = []
    try:
        results = await asyncio.gather(*(_open(server, settings, opened) for server in servers))
        taken = {*BUILTIN_TOOLS, *HUMAN_TOOLS, *MEMORY_TOOLS, *reserved}
        for server, result in zip(servers, results, strict=True):
            name = server["name"]
            if isinstance(result, str):
                connection.errors.append((name, f"MCP server {name!r}: {result}"))
                continue
            toolset, tools = result
            keep = _offered(server, tools, taken, connection)
            if keep:
                guarded = _Guarded(
                    toolset.filtered(lambda _ctx, d, keep=keep: d.name in keep), name, settings.mcp_timeout
                )
                connection.toolsets.append(guarded.prefixed(name))
        yield connection
    finally:
        # A server that fails to hang up costs the run nothing.
        await asyncio.gather(*(t.__aexit__(None, None, None) for t in opened), return_exceptions=True)


async def _open(
    server: dict[str, Any], settings: Settings, opened: list[MCPToolset[Any]]
) -> tuple[MCPToolset[Any], list[mcp_types.Tool]] | str:
    """The server's toolset, entered, and its tools; or why it cannot be used."""
    try:
        async with asyncio.timeout(settings.mcp_timeout):
            toolset = MCPToolset[Any](
                await _transport(server, settings),
                id=server["name"],
                tool_error_behavior="failed",
                init_timeout=settings.mcp_timeout,
                read_timeout=settings.mcp_timeout,
            )
            await toolset.__aenter__()
            opened.append(toolset)  # no await since the enter: a cancellation cannot leak it
            return toolset, await toolset.list_tools()
    except _Refused as exc:
        return str(exc)
    except TimeoutError:
        return f"no answer within {settings.mcp_timeout:g} s"
    except Exception as exc:
        return f"cannot connect: {_describe(exc)}"


async def _transport(server: dict[str, Any], settings: Settings) -> ClientTransport:
    if server.get("command") is not None:
        if not settings.mcp_stdio:
            raise _Refused("stdio MCP servers are disabled on this worker (RUNYARD_MCP_STDIO)")
        env = {"PATH": _MINIMAL_PATH, **_expand(server.get("env") or {}, "env")}
        # keep_alive=False: the process ends with the run attempt, not with the worker.
        return StdioTransport(server["command"], list(server.get("args") or []), env=env, keep_alive=False)
    url = server["url"]
    headers = _expand(server.get("headers") or {}, "header")
    if settings.mcp_allow_private:
        return StreamableHttpTransport(url, headers=headers, httpx_client_factory=_client_factory(None))
    host = urlsplit(url).hostname or ""
    try:  # the worker's own look-up: DNS may have changed since the agent was saved
        addresses = await asyncio.to_thread(net.public_addresses, host, PRIVATE_FLAG)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    return StreamableHttpTransport(url, headers=headers, httpx_client_factory=_client_factory((host, addresses)))


def _expand(values: Mapping[str, str], what: str) -> dict[str, str]:
    """`${NAME}` references replaced from the worker's environment (never echoed in errors)."""

    def expand(key: str, value: str) -> str:
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith(RESERVED_ENV_PREFIX):
                raise _Refused(f"{what} {key}: {RESERVED_ENV_PREFIX}* variables are never expanded")
            if name not in os.environ:
                raise _Refused(f"{what} {key}: environment variable {name} is not set on the worker")
            return os.environ[name]

        expanded = ENV_REFERENCE.sub(sub, value)
        if any(c in expanded for c in "\r\n\0"):
            raise _Refused(f"{what} {key}: the expanded value holds a line break or NUL")
        return expanded

    return {key: expand(key, value) for key, value in values.items()}


class _PinnedTransport(httpx2.AsyncBaseTransport):
    """Sends requests for `host` to the addresses checked for it (the name stays in the Host
    header and TLS SNI), and refuses any other host."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self._host, self._addresses = host.lower(), addresses
        self._inner = httpx2.AsyncHTTPTransport(verify=_tls())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.host.lower() != self._host:
            raise httpx2.ConnectError(f"refused: {request.url.host} is not the MCP server's host", request=request)
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": request.url.raw_host.decode("ascii")}
        url = request.url
        for address in self._addresses[:-1]:
            request.url = url.copy_with(host=address)
            try:
                return await self._inner.handle_async_request(request)
            except httpx2.ConnectError:  # nothing was sent: try the next address, as a connect by name would
                continue
        request.url = url.copy_with(host=self._addresses[-1])
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the CA bundle costs ~30 ms of CPU: once per process, not once per run attempt.
    return ssl.create_default_context()


def _client_factory(pinned: tuple[str, list[str]] | None) -> Any:
    """The MCP client's HTTP client: the shared TLS context, pinned to the checked addresses unless
    private addresses are allowed."""

    def factory(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: Any = None, **_: Any
    ) -> httpx2.AsyncClient:
        # No redirects by httpx (the MCP client follows same-origin ones itself), no proxies from env.
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(30.0, read=300.0),
            auth=auth,
            follow_redirects=False,
            verify=_tls(),
            transport=_PinnedTransport(*pinned) if pinned is not None else None,
        )

    return factory


def _offered(
    server: dict[str, Any], tools: list[mcp_types.Tool], taken: set[str], connection: MCPConnection
) -> frozenset[str]:
    """Record the server's usable tools in `connection.specs`; return their server-side names."""
    name, allowed = server["name"], server.get("allowed_tools")
    keep: set[str] = set()
    for tool in tools:
        if allowed is not None and tool.name not in allowed:
            continue
        offered = f"{name}_{tool.name}"
        problem = None
        if not SERVER_NAME.fullmatch(offered):
            problem = "its name is not 1-64 letters, digits, '_' or '-' once prefixed"
        elif offered in taken:
            problem = "that name is taken by another tool"
        elif len(keep) >= MAX_TOOLS_PER_SERVER:
            problem = f"a server may offer at most {MAX_TOOLS_PER_SERVER} tools"
        elif len(json.dumps(tool.input_schema)) > _MAX_SCHEMA_CHARS:
            problem = "its parameters schema is too large"
        if problem is not None:
            connection.errors.append(
                (name, f"MCP server {name!r}: tool {tool.name!r} skipped as {offered!r}: {problem}")
            )
            continue
        taken.add(offered)
        keep.add(tool.name)
        read_only = tool.annotations is not None and tool.annotations.read_only_hint is True
        connection.specs[offered] = MCPTool(
            name=offered,
            server=name,
            tool=tool.name,
            description=(tool.description or "")[:_MAX_DESCRIPTION],
            parameters=tool.input_schema,
            side_effects=not read_only,
            require_approval=bool(server.get("require_approval")),
        )
    return frozenset(keep)


@dataclass
class _Guarded(WrapperToolset[Any]):
    """Turns every failure of one server's tools (call errors, a dropped connection, a time-out)
    into `ToolFailed` naming the server, and bounds what a call may return."""

    server: str
    timeout: float
    _last: dict[str, ToolsetTool[Any]] = field(default_factory=dict, init=False, repr=False)

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        try:
            self._last = await super().get_tools(ctx)
        except Exception:  # only a re-list after `list_changed` asks the server: keep the tools we had
            pass
        return self._last

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        prefix = f"MCP server {self.server!r}"
        try:
            async with asyncio.timeout(self.timeout):
                result = await super().call_tool(name, tool_args, ctx, tool)
        except TimeoutError:
            raise ToolFailed(f"{prefix}: tool {name!r} gave no answer within {self.timeout:g} s") from None
        except (ToolFailed, ModelRetry) as exc:
            raise ToolFailed(f"{prefix}: {exc.message}") from None
        except Exception as exc:
            raise ToolFailed(f"{prefix}: {_describe(exc)}") from None
        return _bounded(result, prefix)


def _bounded(result: Any, prefix: str) -> Any:
    if isinstance(result, str):
        return result if len(result) <= MAX_RESULT_CHARS else result[:MAX_RESULT_CHARS] + " … (truncated)"
    size = len(json.dumps(result, default=str))
    if size > MAX_RESULT_CHARS:
        raise ToolFailed(f"{prefix}: the result ({size} characters) exceeds the limit of {MAX_RESULT_CHARS}")
    return result


def _describe(exc: BaseException) -> str:
    """One bounded line about a failure: the first leaf of an exception group, its first line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
    return text[:500]
