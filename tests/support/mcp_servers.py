"""Real MCP servers for tests, written with the `mcp` SDK: streamable HTTP in a background thread
on a free loopback port, or stdio as a child process (`python tests/support/mcp_servers.py stdio`).

Tools: `add` (read-only), `record` (appends its note to a file, so tests count executions),
`fail` (raises), `echo_header` (a request header, to check `${NAME}` expansion), `getenv` and `pid`
(what a stdio server was given), `pause` (sleeps).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations

__all__ = ["RECORD_ENV", "MCPHttpServer", "build_server", "recorded", "stdio_command"]

RECORD_ENV = "MCP_TEST_RECORD_FILE"
"""The environment variable naming the file `record` appends to (when no file is given)."""

_READ_ONLY = ToolAnnotations(read_only_hint=True)


def build_server(name: str = "calc", record_file: Path | None = None) -> MCPServer:
    server: MCPServer = MCPServer(name, log_level="WARNING")

    @server.tool(annotations=_READ_ONLY)
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def record(note: str) -> str:
        """Write a note down (a side effect: one line per call)."""
        path = record_file or Path(os.environ[RECORD_ENV])
        with path.open("a") as f:
            f.write(note + "\n")
        return f"recorded {note}"

    @server.tool(annotations=_READ_ONLY)
    def fail() -> str:
        """Always fails."""
        raise ToolError("kaboom")

    @server.tool(annotations=_READ_ONLY)
    def echo_header(header: str, ctx: Context) -> str:
        """The value of one header of this HTTP request ('' if absent)."""
        return (ctx.headers or {}).get(header.lower(), "")

    @server.tool(annotations=_READ_ONLY)
    def getenv(variable: str) -> str:
        """The value of one of the server process's environment variables ('' if unset)."""
        return os.environ.get(variable, "")

    @server.tool(annotations=_READ_ONLY)
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool(annotations=_READ_ONLY)
    async def pause(seconds: float) -> str:
        """Sleep, then answer."""
        await asyncio.sleep(seconds)
        return "awake"

    return server


def recorded(path: Path) -> list[str]:
    """The notes `record` wrote to `path`, one per execution."""
    return path.read_text().splitlines() if path.exists() else []


def stdio_command() -> tuple[str, list[str]]:
    """`command` and `args` of an agent's stdio server that runs this module's server."""
    return sys.executable, [str(Path(__file__).resolve()), "stdio"]


@dataclass
class MCPHttpServer:
    """The test server over streamable HTTP: uvicorn on 127.0.0.1, a free port, in a thread."""

    record_file: Path | None = None
    name: str = "calc"
    url: str = ""
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def start(self) -> MCPHttpServer:
        # Tests reach it under other host names (pinned to 127.0.0.1): no Host allow-list.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        app: Any = build_server(self.name, self.record_file).streamable_http_app(transport_security=security)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve()), daemon=True)  # type: ignore[union-attr]
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("MCP test server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)


if __name__ == "__main__":
    if sys.argv[1:] != ["stdio"]:
        raise SystemExit("usage: mcp_servers.py stdio")
    build_server(os.environ.get("MCP_TEST_SERVER_NAME", "calc")).run("stdio")
