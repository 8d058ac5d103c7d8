"""An agent's `mcp_servers` as stored and shown: checked when the agent is saved (`check_servers`),
echoed without secrets (`redact`), and updated without losing them (`keep_redacted`).

A server is streamable HTTP (`url`, `headers`) or, if the operator allows it, a stdio command
(`command`, `args`, `env`). `${NAME}` in a header or env value refers to the worker's environment
(`RUNYARD_*`, the service's own settings, never). Unless `mcp_allow_private`, a URL's host must
resolve only to public addresses; the worker checks again when it connects (`mcp.connect`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config import Settings
from ...store.errors import InvalidInput
from . import net

__all__ = [
    "ENV_REFERENCE",
    "MAX_SERVERS",
    "PRIVATE_FLAG",
    "REDACTED",
    "RESERVED_ENV_PREFIX",
    "SERVER_NAME",
    "MCPConnection",
    "MCPTool",
    "acheck_servers",
    "check_servers",
    "keep_redacted",
    "redact",
]

MAX_SERVERS = 16
PRIVATE_FLAG = "RUNYARD_MCP_ALLOW_PRIVATE"
REDACTED = "<redacted>"
"""What `redact` shows instead of a header or env value that is not a bare `${NAME}` reference."""

_MAX_ENTRIES, _MAX_VALUE, _MAX_ARGS = 32, 8192, 64
_MAX_ALLOWED_TOOLS = 256

SERVER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # also what model providers accept as a function name
_TOOL_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")  # an RFC 9110 token
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RESERVED_ENV_PREFIX = "RUNYARD_"
# The transport sets these itself; letting an agent set them would break or misdirect it.
_RESERVED_HEADERS = frozenset(
    "host content-length transfer-encoding connection accept content-type mcp-session-id mcp-protocol-version".split()
)
_FIELDS = ("name", "url", "headers", "allowed_tools", "require_approval", "command", "args", "env")


@dataclass(frozen=True)
class MCPTool:
    """One MCP tool as the run offers it."""

    name: str
    """The name the model sees: `{server}_{tool}`."""
    server: str
    tool: str
    """The server's own name for it."""
    description: str
    parameters: dict[str, Any]
    """JSON Schema of its arguments."""
    side_effects: bool
    """False only if the server marks it read-only (`readOnlyHint`)."""
    require_approval: bool
    """The server's `require_approval`: every call waits for approval (with `human_in_the_loop`)."""


@dataclass
class MCPConnection:
    """What `connect` yields for one run attempt."""

    toolsets: list[Any] = field(default_factory=list)
    """One per reachable server; the worker wraps each in its `JournalToolset`."""
    specs: dict[str, MCPTool] = field(default_factory=dict)
    """Every tool offered, by offered name, in server order."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(server name, message) of each server that could not be used, or of a tool it had to skip."""


def check_servers(servers: Any, settings: Settings) -> list[dict[str, Any]]:
    """The agent's `mcp_servers`, checked and normalised for storage (every field present);
    `InvalidInput` names the field (`mcp_servers[0].url`). Resolves host names: blocking."""
    if not isinstance(servers, list):
        raise InvalidInput("mcp_servers must be a list", field="mcp_servers")
    if len(servers) > MAX_SERVERS:
        raise InvalidInput(f"at most {MAX_SERVERS} MCP servers per agent", field="mcp_servers")
    checked: list[dict[str, Any]] = []
    for i, server in enumerate(servers):
        path = f"mcp_servers[{i}]"
        entry = _check_server(server, path, settings)
        if any(c["name"] == entry["name"] for c in checked):
            raise InvalidInput(f"two MCP servers are named {entry['name']!r}", field=f"{path}.name")
        checked.append(entry)
    return checked


async def acheck_servers(servers: Any, settings: Settings) -> list[dict[str, Any]]:
    """`check_servers` with its DNS look-ups off the event loop."""
    return await asyncio.to_thread(check_servers, servers, settings)


def _check_server(server: Any, path: str, settings: Settings) -> dict[str, Any]:
    if not isinstance(server, Mapping):
        raise InvalidInput("an MCP server must be an object", field=path)
    for key in server:
        if key not in _FIELDS:
            raise InvalidInput(f"unknown field {key!r} (known: {', '.join(_FIELDS)})", field=f"{path}.{key}")
    name = server.get("name")
    if not isinstance(name, str) or not SERVER_NAME.fullmatch(name):
        raise InvalidInput("name must be 1-64 letters, digits, '_' or '-'", field=f"{path}.name")
    url, command = server.get("url"), server.get("command")
    if (url is None) == (command is None):
        raise InvalidInput("give exactly one of url (streamable HTTP) or command (stdio)", field=path)
    entry: dict[str, Any] = {key: None for key in _FIELDS} | {"name": name, "args": []}
    entry["allowed_tools"] = _check_allowed(server.get("allowed_tools"), f"{path}.allowed_tools")
    approval = server.get("require_approval", False)
    if not isinstance(approval, bool):
        raise InvalidInput("require_approval must be true or false", field=f"{path}.require_approval")
    entry["require_approval"] = approval
    if url is not None:
        for key in ("args", "env"):
            if server.get(key):
                raise InvalidInput(f"{key} is for a stdio server (command)", field=f"{path}.{key}")
        entry["url"] = net.check_url(url, f"{path}.url", allow_private=settings.mcp_allow_private, flag=PRIVATE_FLAG)
        entry["headers"] = _check_values(server.get("headers"), f"{path}.headers", _HEADER_NAME, header=True)
        return entry
    if server.get("headers"):
        raise InvalidInput("headers are for an HTTP server (url)", field=f"{path}.headers")
    if not settings.mcp_stdio:
        raise InvalidInput(
            "stdio MCP servers run a command on the worker's machine and are disabled here "
            "(the operator enables them with RUNYARD_MCP_STDIO=true)",
            field=f"{path}.command",
        )
    if not isinstance(command, str) or not command.strip() or len(command) > _MAX_VALUE or "\0" in command:
        raise InvalidInput("command must be a non-empty string", field=f"{path}.command")
    args = server.get("args") or []
    if not isinstance(args, list) or len(args) > _MAX_ARGS:
        raise InvalidInput(f"args must be a list of at most {_MAX_ARGS} strings", field=f"{path}.args")
    for j, arg in enumerate(args):
        if not isinstance(arg, str) or len(arg) > _MAX_VALUE or "\0" in arg:
            raise InvalidInput(f"must be a string of at most {_MAX_VALUE} characters", field=f"{path}.args[{j}]")
    entry |= {"command": command, "args": list(args)}
    entry["env"] = _check_values(server.get("env"), f"{path}.env", _ENV_NAME, header=False)
    return entry


def _check_values(values: Any, field: str, key_pattern: re.Pattern[str], *, header: bool) -> dict[str, str] | None:
    if values is None:
        return None
    if not isinstance(values, Mapping) or len(values) > _MAX_ENTRIES:
        raise InvalidInput(f"must be an object of at most {_MAX_ENTRIES} string values", field=field)
    checked: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key_pattern.fullmatch(key):
            raise InvalidInput(f"{key!r} is not a valid {'header' if header else 'variable'} name", field=field)
        if header and key.lower() in _RESERVED_HEADERS:
            raise InvalidInput(f"the {key} header is set by the MCP transport", field=f"{field}.{key}")
        if not isinstance(value, str) or len(value) > _MAX_VALUE or any(c in value for c in "\r\n\0"):
            raise InvalidInput(f"must be one line of at most {_MAX_VALUE} characters", field=f"{field}.{key}")
        if value == REDACTED:
            raise InvalidInput(
                "this is how a secret is shown, not its value: send the value (the stored one is kept "
                "only while the server's url, or command and args, stay the same)",
                field=f"{field}.{key}",
            )
        for ref in ENV_REFERENCE.findall(value):
            if ref.startswith(RESERVED_ENV_PREFIX):
                raise InvalidInput(
                    f"${{{ref}}}: {RESERVED_ENV_PREFIX}* variables are never expanded", field=f"{field}.{key}"
                )
        checked[key] = value
    return checked


def _check_allowed(names: Any, field: str) -> list[str] | None:
    if names is None:
        return None
    if not isinstance(names, list) or len(names) > _MAX_ALLOWED_TOOLS:
        raise InvalidInput(f"allowed_tools must be a list of at most {_MAX_ALLOWED_TOOLS} tool names", field=field)
    for j, name in enumerate(names):
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise InvalidInput("must be a tool name of 1-128 characters", field=f"{field}[{j}]")
    return list(dict.fromkeys(names))


def redact(servers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`servers` as API responses and events show them: each header and env value that is not a
    bare `${NAME}` reference becomes `REDACTED`. Everything else (`args` included) is unchanged."""
    shown: list[dict[str, Any]] = []
    for server in servers:
        entry = dict(server)
        for key in ("headers", "env"):
            values = entry.get(key)
            if isinstance(values, Mapping):
                entry[key] = {
                    k: v if isinstance(v, str) and ENV_REFERENCE.fullmatch(v) else REDACTED for k, v in values.items()
                }
        shown.append(entry)
    return shown


def keep_redacted(servers: Any, stored: Iterable[Mapping[str, Any]]) -> Any:
    """An update's `servers` where each `REDACTED` value sent back takes the stored value of the same
    server (by name) and key, so editing another field keeps the secret. Only while the server
    points where it did (same url, or command and args): a secret never follows it elsewhere."""
    if not isinstance(servers, list):
        return servers
    before = {s.get("name"): s for s in stored if isinstance(s, Mapping)}
    kept: list[Any] = []
    for server in servers:
        old = before.get(server.get("name")) if isinstance(server, Mapping) else None
        if (
            old is None
            or any(server.get(k) != old.get(k) for k in ("url", "command"))
            or (old.get("command") is not None and list(server.get("args") or []) != list(old.get("args") or []))
        ):
            kept.append(server)
            continue
        entry = dict(server)
        for key in ("headers", "env"):
            values, previous = entry.get(key), old.get(key) or {}
            if isinstance(values, Mapping):
                entry[key] = {k: previous.get(k, v) if v == REDACTED else v for k, v in values.items()}
        kept.append(entry)
    return kept
