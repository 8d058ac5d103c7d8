"""Tools from MCP servers (`runyard/worker/tools/mcp.py`, `mcp_config.py`), against real MCP servers written with
the `mcp` SDK (tests/support/mcp_servers.py): one over streamable HTTP on 127.0.0.1, one stdio.

Unit level: `check_servers` (fields, limits, private addresses, stdio), `redact`, and `connect`
(prefixed names, read-only hints, `allowed_tools`, `${NAME}` expansion, unreachable servers and
failing tools as errors naming the server, time limits, the stdio environment, address pinning).
End to end (a Runyard server with `mcp_allow_private` and `mcp_stdio`, the `scripted` model):
events, 422s, redaction in responses and events, approvals, and effects that happen once.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import ToolFailed
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import AbstractToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from support.mcp_servers import RECORD_ENV, MCPHttpServer, recorded, stdio_command
from support.servers import ADMIN_KEY, ServerInThread, free_port, wait_until

from runyard.config import Settings
from runyard.store.errors import InvalidInput
from runyard.worker.tools import net
from runyard.worker.tools.mcp import REDACTED, MCPConnection, check_servers, connect, keep_redacted, redact

PRIVATE = Settings(mcp_allow_private=True, mcp_stdio=True, mcp_timeout=10)
STRICT = Settings()


@pytest.fixture(scope="module")
def record_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "records.txt"


@pytest.fixture(scope="module")
def calc(record_file: Path) -> Iterator[MCPHttpServer]:
    srv = MCPHttpServer(record_file).start()
    yield srv
    srv.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- check_servers -------------------------------------------------------------------------------


def refused(servers: Any, settings: Settings = PRIVATE) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        check_servers(servers, settings)
    return info.value


def test_check_normalises_an_http_server() -> None:
    [entry] = check_servers([{"name": "docs", "url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "${K}"}}], PRIVATE)
    assert entry == {
        "name": "docs",
        "url": "http://127.0.0.1:9/mcp",
        "headers": {"X-Key": "${K}"},
        "allowed_tools": None,
        "require_approval": False,
        "command": None,
        "args": [],
        "env": None,
    }
    [entry] = check_servers(
        [{"name": "d", "url": "https://127.0.0.1/m", "allowed_tools": ["a", "a", "b"], "require_approval": True}],
        PRIVATE,
    )
    assert entry["allowed_tools"] == ["a", "b"] and entry["require_approval"] is True


@pytest.mark.parametrize(
    ("servers", "field"),
    [
        ({"name": "x"}, "mcp_servers"),
        ([{"name": "x", "url": "http://127.0.0.1/", "colour": "red"}], "mcp_servers[0].colour"),
        (["docs"], "mcp_servers[0]"),
        ([{"name": "bad name", "url": "http://127.0.0.1/"}], "mcp_servers[0].name"),
        ([{"name": "x" * 65, "url": "http://127.0.0.1/"}], "mcp_servers[0].name"),
        ([{"name": "a", "url": "http://127.0.0.1/"}, {"name": "a", "url": "http://127.0.0.1/"}], "mcp_servers[1].name"),
        ([{"name": "a"}], "mcp_servers[0]"),
        ([{"name": "a", "url": "http://127.0.0.1/", "command": "ls"}], "mcp_servers[0]"),
        ([{"name": "a", "url": "ftp://127.0.0.1/"}], "mcp_servers[0].url"),
        ([{"name": "a", "url": "/relative"}], "mcp_servers[0].url"),
        ([{"name": "a", "url": "http://127.0.0.1:99999/"}], "mcp_servers[0].url"),
        ([{"name": "a", "url": "http://user:pw@127.0.0.1/"}], "mcp_servers[0].url"),
        ([{"name": "a", "url": "http://127.0.0.1/" + "x" * 3000}], "mcp_servers[0].url"),
        ([{"name": "a", "url": "http://127.0.0.1/", "headers": {"Host": "evil"}}], "mcp_servers[0].headers.Host"),
        ([{"name": "a", "url": "http://127.0.0.1/", "headers": {"X": "a\r\nB: c"}}], "mcp_servers[0].headers.X"),
        ([{"name": "a", "url": "http://127.0.0.1/", "headers": {"X": 1}}], "mcp_servers[0].headers.X"),
        ([{"name": "a", "url": "http://127.0.0.1/", "headers": {"bad key": "v"}}], "mcp_servers[0].headers"),
        (
            [{"name": "a", "url": "http://127.0.0.1/", "headers": {"X": "${RUNYARD_API_KEY}"}}],
            "mcp_servers[0].headers.X",
        ),
        ([{"name": "a", "url": "http://127.0.0.1/", "args": ["x"]}], "mcp_servers[0].args"),
        ([{"name": "a", "url": "http://127.0.0.1/", "require_approval": "yes"}], "mcp_servers[0].require_approval"),
        ([{"name": "a", "url": "http://127.0.0.1/", "allowed_tools": "add"}], "mcp_servers[0].allowed_tools"),
        ([{"name": "a", "url": "http://127.0.0.1/", "allowed_tools": [""]}], "mcp_servers[0].allowed_tools[0]"),
        ([{"name": "a", "command": "run", "headers": {"X": "y"}}], "mcp_servers[0].headers"),
        ([{"name": "a", "command": ""}], "mcp_servers[0].command"),
        ([{"name": "a", "command": "run", "args": "--x"}], "mcp_servers[0].args"),
        ([{"name": "a", "command": "run", "args": [1]}], "mcp_servers[0].args[0]"),
        ([{"name": "a", "command": "run", "env": {"1X": "y"}}], "mcp_servers[0].env"),
        ([{"name": f"s{i}", "url": "http://127.0.0.1/"} for i in range(17)], "mcp_servers"),
    ],
)
def test_check_refuses_bad_servers_naming_the_field(servers: Any, field: str) -> None:
    error = refused(servers)
    assert error.field == field, (error.field, error.message)
    assert error.message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8321/mcp",
        "http://localhost/mcp",
        "http://[::1]/mcp",
        "http://10.0.0.1/",
        "https://169.254.169.254/latest",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    error = refused([{"name": "a", "url": url}], STRICT)
    assert error.field == "mcp_servers[0].url" and "private" in error.message
    assert check_servers([{"name": "a", "url": url}], Settings(mcp_allow_private=True))[0]["url"] == url


def test_public_host_names_are_resolved_at_check(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {"mcp.example.com": ["93.184.216.34"], "sneaky.example.com": ["93.184.216.34", "10.1.2.3"]}

    def resolve(host: str) -> list[str]:
        if host not in names:
            raise ToolFailed(f"cannot resolve {host!r}")
        return names[host]

    monkeypatch.setattr(net, "resolve", resolve)
    assert check_servers([{"name": "a", "url": "https://mcp.example.com/mcp"}], STRICT)
    # One private address among public ones is enough to refuse.
    error = refused([{"name": "a", "url": "https://sneaky.example.com/mcp"}], STRICT)
    assert error.field == "mcp_servers[0].url" and "10.1.2.3" in error.message
    error = refused([{"name": "a", "url": "https://nowhere.example.com/mcp"}], STRICT)
    assert error.field == "mcp_servers[0].url" and "resolve" in error.message


def test_stdio_is_refused_unless_the_operator_allows_it() -> None:
    command, args = stdio_command()
    server = {"name": "local", "command": command, "args": args, "env": {"A": "b"}}
    error = refused([server], Settings(mcp_allow_private=True))
    assert error.field == "mcp_servers[0].command" and "RUNYARD_MCP_STDIO" in error.message
    [entry] = check_servers([server], PRIVATE)
    assert entry["command"] == command and entry["args"] == args and entry["env"] == {"A": "b"}
    assert entry["url"] is None and entry["headers"] is None


# --- redact --------------------------------------------------------------------------------------


def test_redact_hides_every_value_but_bare_references() -> None:
    servers = [
        {
            "name": "a",
            "url": "http://x/",
            "headers": {
                "Authorization": "Bearer sekrit",
                "X-Ref": "${TOKEN}",
                "X-Mixed": "Bearer ${TOKEN}",
                "X-Empty": "",
            },
        },
        {"name": "b", "command": "run", "args": ["--flag"], "env": {"API_KEY": "sekrit", "HOME_DIR": "${HOME_DIR}"}},
        {"name": "c", "url": "http://y/", "headers": None},
    ]
    shown = redact(servers)
    assert shown[0]["headers"] == {
        "Authorization": REDACTED,
        "X-Ref": "${TOKEN}",
        "X-Mixed": REDACTED,
        "X-Empty": REDACTED,
    }
    assert shown[1]["env"] == {"API_KEY": REDACTED, "HOME_DIR": "${HOME_DIR}"} and shown[1]["args"] == ["--flag"]
    assert shown[2] == servers[2]
    assert "sekrit" not in json.dumps(shown)
    assert servers[0]["headers"]["Authorization"] == "Bearer sekrit"  # the input is left alone


def test_keep_redacted_keeps_secrets_only_where_the_server_still_points() -> None:
    stored = check_servers(
        [
            {"name": "a", "url": "http://127.0.0.1/m", "headers": {"Authorization": "Bearer s", "X-Ref": "${T}"}},
            {"name": "b", "command": "run", "args": ["x"], "env": {"KEY": "v"}},
        ],
        PRIVATE,
    )
    sent = redact(stored)
    assert check_servers(keep_redacted(sent, stored), PRIVATE) == stored
    # Pointed elsewhere, a redacted value is not carried along: it is refused, naming the field.
    moved = [{**sent[0], "url": "http://127.0.0.2/m"}, {**sent[1], "args": ["y"]}]
    kept = keep_redacted(moved, stored)
    assert kept[0]["headers"]["Authorization"] == REDACTED and kept[1]["env"]["KEY"] == REDACTED
    assert refused(kept).field == "mcp_servers[0].headers.Authorization"
    assert refused([kept[1]]).field == "mcp_servers[0].env.KEY"
    # A new key sent redacted has nothing to keep; a new value replaces the stored one.
    new = [{**sent[0], "headers": {"Authorization": "Bearer new", "X-New": REDACTED}}]
    assert keep_redacted(new, stored)[0]["headers"] == {"Authorization": "Bearer new", "X-New": REDACTED}
    assert keep_redacted("junk", stored) == "junk"


# --- connect -------------------------------------------------------------------------------------


class Capture(WrapperToolset[Any]):
    """Records what each call raised, as the run's JournalToolset would see it."""

    raised: dict[str, BaseException]

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        try:
            return await super().call_tool(name, tool_args, ctx, tool)
        except BaseException as exc:
            Capture.raised[ctx.tool_call_id or ""] = exc
            raise


async def call_tools(connection: MCPConnection, *calls: tuple[str, dict[str, Any]]) -> dict[int, Any]:
    """Have a model make `calls` in one turn through the connection's toolsets; return what each
    call gave (by index): its result, or the exception it raised. Also checks the offered names."""
    offered: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            offered.extend(t.name for t in info.function_tools)
            return ModelResponse(parts=[ToolCallPart(n, a, tool_call_id=f"c{i}") for i, (n, a) in enumerate(calls)])
        return ModelResponse(parts=[TextPart("done")])

    Capture.raised = {}
    toolsets: list[AbstractToolset[Any]] = [Capture(t) for t in connection.toolsets]
    result = await Agent(FunctionModel(model), toolsets=toolsets).run("go")
    assert sorted(offered) == sorted(connection.specs)
    returns = {
        p.tool_call_id: p.content for m in result.all_messages() for p in m.parts if isinstance(p, ToolReturnPart)
    }
    return {int(i[1:]): Capture.raised.get(i, returns.get(i)) for i in (f"c{n}" for n in range(len(calls)))}


async def test_connect_offers_prefixed_tools_with_their_hints(calc: MCPHttpServer, record_file: Path) -> None:
    servers = check_servers([{"name": "calc", "url": calc.url, "require_approval": True}], PRIVATE)
    async with connect(servers, PRIVATE) as connection:
        assert connection.errors == []
        assert len(connection.toolsets) == 1
        assert {"calc_add", "calc_record", "calc_fail", "calc_echo_header"} <= set(connection.specs)
        add, record = connection.specs["calc_add"], connection.specs["calc_record"]
        assert (add.server, add.tool, add.side_effects, add.require_approval) == ("calc", "add", False, True)
        assert add.parameters["properties"].keys() == {"a", "b"} and add.description == "Add two integers."
        assert record.side_effects is True  # no readOnlyHint: it counts as having side effects
        before = len(recorded(record_file))
        got = await call_tools(connection, ("calc_add", {"a": 2, "b": 3}), ("calc_record", {"note": "unit"}))
    assert got == {0: 5, 1: "recorded unit"}
    assert recorded(record_file)[before:] == ["unit"]


async def test_allowed_tools_filter_what_is_offered(calc: MCPHttpServer) -> None:
    servers = check_servers([{"name": "calc", "url": calc.url, "allowed_tools": ["add", "nonesuch"]}], PRIVATE)
    async with connect(servers, PRIVATE) as connection:
        assert list(connection.specs) == ["calc_add"]
        got = await call_tools(connection, ("calc_add", {"a": 1, "b": 1}))
    assert got == {0: 2}


async def test_header_references_are_expanded_from_the_environment(
    calc: MCPHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_TEST_TOKEN", "tok-123")
    servers = check_servers(
        [
            {"name": "calc", "url": calc.url, "headers": {"X-Token": "Bearer ${MCP_TEST_TOKEN}", "X-Plain": "lit"}},
            {"name": "other", "url": calc.url, "headers": {"X-Token": "${MCP_TEST_UNSET_VARIABLE}"}},
        ],
        PRIVATE,
    )
    monkeypatch.delenv("MCP_TEST_UNSET_VARIABLE", raising=False)
    async with connect(servers, PRIVATE) as connection:
        # A missing variable makes that server an error (naming the variable, not a value); the rest go on.
        [(server, error)] = connection.errors
        assert server == "other" and "MCP_TEST_UNSET_VARIABLE" in error and "'other'" in error
        got = await call_tools(
            connection, ("calc_echo_header", {"header": "X-Token"}), ("calc_echo_header", {"header": "X-Plain"})
        )
    assert got == {0: "Bearer tok-123", 1: "lit"}


async def test_unreachable_server_is_an_error_naming_it(calc: MCPHttpServer) -> None:
    servers = check_servers(
        [{"name": "dead", "url": f"http://127.0.0.1:{free_port()}/mcp"}, {"name": "calc", "url": calc.url}], PRIVATE
    )
    started = time.monotonic()
    async with connect(servers, PRIVATE) as connection:
        [(server, error)] = connection.errors
        assert server == "dead" and error.startswith("MCP server 'dead':")
        assert all(spec.server == "calc" for spec in connection.specs.values())
    assert time.monotonic() - started < PRIVATE.mcp_timeout


async def test_a_silent_server_is_an_error_after_mcp_timeout() -> None:
    quick = Settings(mcp_allow_private=True, mcp_timeout=1)
    with socket.socket() as hole:  # accepts connections (the kernel does), never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        servers = check_servers([{"name": "hole", "url": f"http://127.0.0.1:{hole.getsockname()[1]}/mcp"}], quick)
        started = time.monotonic()
        async with connect(servers, quick) as connection:
            assert connection.errors == [("hole", "MCP server 'hole': no answer within 1 s")]
        assert time.monotonic() - started < 5


async def test_failing_tool_is_tool_failed_naming_the_server(calc: MCPHttpServer) -> None:
    async with connect(check_servers([{"name": "calc", "url": calc.url}], PRIVATE), PRIVATE) as connection:
        got = await call_tools(connection, ("calc_fail", {}), ("calc_add", {"a": 1, "b": 2}))
    assert isinstance(got[0], ToolFailed)
    assert got[0].message.startswith("MCP server 'calc':") and "kaboom" in got[0].message
    assert got[1] == 3


async def test_a_call_is_bounded_by_mcp_timeout(calc: MCPHttpServer) -> None:
    quick = Settings(mcp_allow_private=True, mcp_timeout=1)
    async with connect(check_servers([{"name": "calc", "url": calc.url}], quick), quick) as connection:
        started = time.monotonic()
        got = await call_tools(connection, ("calc_pause", {"seconds": 10}))
        assert time.monotonic() - started < 5
    assert isinstance(got[0], ToolFailed) and "MCP server 'calc'" in got[0].message and "1 s" in got[0].message


async def test_taken_names_are_skipped_with_an_error(calc: MCPHttpServer) -> None:
    servers = check_servers([{"name": "calc", "url": calc.url, "allowed_tools": ["add", "fail"]}], PRIVATE)
    async with connect(servers, PRIVATE, reserved=["calc_add"]) as connection:
        assert list(connection.specs) == ["calc_fail"]
        [(server, error)] = connection.errors
        assert server == "calc" and "'add'" in error and "taken" in error


async def test_no_servers_opens_nothing() -> None:
    async with connect([], STRICT) as connection:
        assert (connection.toolsets, connection.specs, connection.errors) == ([], {}, [])


async def test_stdio_server_gets_only_its_env_and_ends_with_the_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_TEST_GIVEN", "given-value")
    monkeypatch.setenv("MCP_TEST_HIDDEN", "hidden-value")
    command, args = stdio_command()
    notes = tmp_path / "stdio-notes.txt"
    servers = check_servers(
        [
            {
                "name": "local",
                "command": command,
                "args": args,
                "env": {RECORD_ENV: str(notes), "GIVEN": "${MCP_TEST_GIVEN}"},
            }
        ],
        PRIVATE,
    )
    async with connect(servers, PRIVATE) as connection:
        assert connection.errors == []
        assert connection.specs["local_record"].side_effects is True
        got = await call_tools(
            connection,
            ("local_record", {"note": "once"}),
            ("local_getenv", {"variable": "GIVEN"}),
            ("local_getenv", {"variable": "MCP_TEST_HIDDEN"}),
            ("local_getenv", {"variable": "PATH"}),
            ("local_pid", {}),
        )
    assert got[0] == "recorded once" and recorded(notes) == ["once"]
    assert got[1] == "given-value" and got[2] == ""
    assert set(got[3].split(":")) <= {"/usr/local/bin", "/usr/bin", "/bin"}
    pid = got[4]
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the stdio server outlived the connection"
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_stdio_is_refused_at_connect_when_disabled_since() -> None:
    command, args = stdio_command()
    servers = check_servers([{"name": "local", "command": command, "args": args}], PRIVATE)
    async with connect(servers, Settings(mcp_allow_private=True)) as connection:
        [(server, error)] = connection.errors
        assert server == "local" and "RUNYARD_MCP_STDIO" in error
        assert connection.toolsets == []


async def test_worker_connects_only_to_the_addresses_it_checked(
    calc: MCPHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mcp.test resolves to [::1] (nothing listens there) then 127.0.0.1, both deemed public here.
    monkeypatch.setattr(net, "resolve", lambda host: ["::1", "127.0.0.1"] if host == "mcp.test" else [])
    monkeypatch.setattr(net, "is_public_address", lambda address: address in ("::1", "127.0.0.1"))
    url = f"http://mcp.test:{calc.port}/mcp"
    servers = check_servers([{"name": "calc", "url": url}], STRICT)
    async with connect(servers, STRICT) as connection:
        assert connection.errors == []
        got = await call_tools(connection, ("calc_echo_header", {"header": "Host"}), ("calc_add", {"a": 4, "b": 4}))
    # The name stays in the Host header while the connection goes to the checked address.
    assert got == {0: f"mcp.test:{calc.port}", 1: 8}


async def test_worker_rechecks_dns_at_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"rebind.example.com": ["93.184.216.34"]}
    monkeypatch.setattr(net, "resolve", lambda host: answers[host])
    servers = check_servers([{"name": "calc", "url": "http://rebind.example.com/mcp"}], STRICT)
    answers["rebind.example.com"] = ["127.0.0.1"]  # the name now points inside
    async with connect(servers, STRICT) as connection:
        [(server, error)] = connection.errors
        assert server == "calc" and "private" in error and "127.0.0.1" in error
        assert connection.toolsets == []


# --- End to end: a Runyard server, the scripted model (needs the worker and agent-route wiring) --


@pytest.fixture(scope="module")
def runyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    db = tmp_path_factory.mktemp("mcp-db") / "runyard.db"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        api_key=ADMIN_KEY,
        mcp_allow_private=True,
        mcp_stdio=True,
        mcp_timeout=10,
    )
    srv = ServerInThread(settings).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(runyard: ServerInThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runyard.base_url, headers=runyard.headers(), timeout=30) as client:
        yield client


def make_agent(api: httpx.Client, servers: list[dict[str, Any]]) -> dict[str, Any]:
    r = api.post("/v1/agents", json={"name": unique("mcp"), "instructions": "Use tools.", "mcp_servers": servers})
    assert r.status_code == 201, r.text
    return r.json()


def start_run(api: httpx.Client, agent: dict[str, Any], script: list[dict[str, Any]], **options: Any) -> str:
    r = api.post("/v1/runs", json={"agent_id": agent["id"], "message": "go", "metadata": {"script": script}, **options})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def settled(api: httpx.Client, run_id: str, *statuses: str) -> dict[str, Any]:
    return wait_until(lambda: (run := api.get(f"/v1/runs/{run_id}").json())["status"] in statuses and run, timeout=20)


def events(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    page = api.get(f"/v1/runs/{run_id}/events", params={"limit": 1000}).json()
    assert not page["has_more"]
    return page["data"]


def of_type(log: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in log if e["type"] == type_]


def step(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "args": args} for name, args in calls]}


def open_wait(api: httpx.Client, run_id: str) -> dict[str, Any]:
    settled(api, run_id, "waiting")
    [wait] = [w for w in api.get(f"/v1/runs/{run_id}/waits").json()["data"] if w["status"] == "open"]
    return wait


def test_e2e_mcp_tool_is_declared_called_and_its_result_recorded(api: httpx.Client, calc: MCPHttpServer) -> None:
    agent = make_agent(api, [{"name": "calc", "url": calc.url}])
    run_id = start_run(api, agent, [step(("calc_add", {"a": 2, "b": 3})), {"text": "done"}])
    run = settled(api, run_id, "completed", "failed")
    assert run["status"] == "completed" and run["output"] == "done", run
    log = events(api, run_id)
    declared = {t["name"]: t for t in of_type(log, "tools.declared")[0]["tools"]}
    assert declared["calc_add"]["server"] == "calc" and declared["calc_add"]["side_effects"] is False
    assert declared["calc_add"]["parameters"]["required"] == ["a", "b"]
    assert declared["calc_record"]["side_effects"] is True
    [called] = of_type(log, "tool.call")
    assert called["name"] == "calc_add" and called["args"] == {"a": 2, "b": 3}
    [result] = of_type(log, "tool.result")
    assert result["name"] == "calc_add" and result["result"] == 5


def test_e2e_stdio_server(api: httpx.Client, tmp_path: Path) -> None:
    command, args = stdio_command()
    notes = tmp_path / "e2e-stdio.txt"
    agent = make_agent(api, [{"name": "local", "command": command, "args": args, "env": {RECORD_ENV: str(notes)}}])
    assert agent["mcp_servers"][0]["env"] == {RECORD_ENV: REDACTED}
    run_id = start_run(api, agent, [step(("local_record", {"note": "stdio"})), {"text": "ok"}])
    assert settled(api, run_id, "completed", "failed")["status"] == "completed"
    assert of_type(events(api, run_id), "tool.result")[0]["result"] == "recorded stdio"
    assert recorded(notes) == ["stdio"]


def test_e2e_private_url_and_stdio_refused_by_default(http: httpx.Client) -> None:
    # The session server keeps the defaults: no private addresses, no stdio.
    name = unique("mcp-refused")
    r = http.post("/v1/agents", json={"name": name, "mcp_servers": [{"name": "calc", "url": "http://127.0.0.1:1/m"}]})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "mcp_servers[0].url"
    command, args = stdio_command()
    r = http.post("/v1/agents", json={"name": name, "mcp_servers": [{"name": "l", "command": command, "args": args}]})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "mcp_servers[0].command"
    agent = http.post("/v1/agents", json={"name": name, "instructions": "x"}).json()
    r = http.patch(f"/v1/agents/{agent['id']}", json={"mcp_servers": [{"name": "c", "url": "http://localhost/m"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "mcp_servers[0].url"
    assert http.get(f"/v1/agents/{agent['id']}").json()["mcp_servers"] == []


def test_e2e_secrets_are_redacted_and_references_expanded(
    api: httpx.Client, calc: MCPHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Runyard server runs in this process: its worker sees this environment.
    monkeypatch.setenv("MCP_E2E_TOKEN", "from-the-environment")
    headers = {"Authorization": "Bearer literal-sekrit", "X-Token": "${MCP_E2E_TOKEN}"}
    r = api.post(
        "/v1/agents",
        json={"name": unique("mcp"), "mcp_servers": [{"name": "calc", "url": calc.url, "headers": headers}]},
    )
    assert r.status_code == 201, r.text
    agent = r.json()
    shown = {"Authorization": REDACTED, "X-Token": "${MCP_E2E_TOKEN}"}
    assert agent["mcp_servers"][0]["headers"] == shown
    assert api.get(f"/v1/agents/{agent['id']}").json()["mcp_servers"][0]["headers"] == shown
    listed = api.get("/v1/agents", params={"limit": 100}).text
    assert "literal-sekrit" not in listed
    run_id = start_run(
        api,
        agent,
        [
            step(("calc_echo_header", {"header": "X-Token"}), ("calc_echo_header", {"header": "Authorization"})),
            {"text": "ok"},
        ],
    )
    assert settled(api, run_id, "completed", "failed")["status"] == "completed"
    log = events(api, run_id)
    results = sorted(r["result"] for r in of_type(log, "tool.result"))
    assert results == ["Bearer literal-sekrit", "from-the-environment"]
    # Only the tool's own output carries the value: no event echoes the configured headers.
    others = [e for e in log if e["type"] != "tool.result"]
    assert "literal-sekrit" not in json.dumps(others) and "literal-sekrit" not in api.get(f"/v1/runs/{run_id}").text

    # Sending the redacted form back (an edit of another field) keeps the stored secret...
    servers = api.get(f"/v1/agents/{agent['id']}").json()["mcp_servers"]
    r = api.patch(f"/v1/agents/{agent['id']}", json={"mcp_servers": [{**servers[0], "allowed_tools": ["echo_header"]}]})
    assert r.status_code == 200, r.text
    assert r.json()["mcp_servers"][0]["headers"] == shown
    run_id = start_run(api, agent, [step(("calc_echo_header", {"header": "Authorization"})), {"text": "ok"}])
    assert settled(api, run_id, "completed", "failed")["status"] == "completed"
    assert [r["result"] for r in of_type(events(api, run_id), "tool.result")] == ["Bearer literal-sekrit"]
    # ...but never to another server.
    r = api.patch(f"/v1/agents/{agent['id']}", json={"mcp_servers": [{**servers[0], "url": calc.url + "/other"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "mcp_servers[0].headers.Authorization"


def test_e2e_unreachable_server_is_a_tool_error_and_the_run_completes(api: httpx.Client, calc: MCPHttpServer) -> None:
    agent = make_agent(
        api, [{"name": "dead", "url": f"http://127.0.0.1:{free_port()}/mcp"}, {"name": "calc", "url": calc.url}]
    )
    run_id = start_run(api, agent, [step(("calc_add", {"a": 1, "b": 1})), {"text": "managed"}])
    run = settled(api, run_id, "completed", "failed")
    assert run["status"] == "completed" and run["output"] == "managed", run
    log = events(api, run_id)
    [error] = [e for e in of_type(log, "tool.error") if e.get("server") == "dead"]
    assert "dead" in error["error"]
    assert [r["result"] for r in of_type(log, "tool.result")] == [2]
    assert not any(t["name"].startswith("dead_") for t in of_type(log, "tools.declared")[0]["tools"])


def test_e2e_failing_tool_is_a_tool_error_naming_the_server(api: httpx.Client, calc: MCPHttpServer) -> None:
    agent = make_agent(api, [{"name": "calc", "url": calc.url}])
    run_id = start_run(api, agent, [step(("calc_fail", {})), {"text": "recovered"}])
    run = settled(api, run_id, "completed", "failed")
    assert run["status"] == "completed" and run["output"] == "recovered", run
    [error] = of_type(events(api, run_id), "tool.error")
    assert (
        error["name"] == "calc_fail" and "MCP server 'calc'" in str(error["error"]) and "kaboom" in str(error["error"])
    )


def test_e2e_approve_writes_waits_for_side_effects_only(
    api: httpx.Client, calc: MCPHttpServer, record_file: Path
) -> None:
    note = unique("approved")
    agent = make_agent(api, [{"name": "calc", "url": calc.url}])
    run_id = start_run(
        api,
        agent,
        [step(("calc_add", {"a": 2, "b": 2})), step(("calc_record", {"note": note})), {"text": "written"}],
        human_in_the_loop=True,
        permission_mode="approve_writes",
    )
    wait = open_wait(api, run_id)
    assert wait["kind"] == "approval" and wait["request"]["name"] == "calc_record"
    log = events(api, run_id)
    assert [r["result"] for r in of_type(log, "tool.result")] == [4]  # the read-only tool did not wait
    assert note not in recorded(record_file)
    r = api.post(f"/v1/runs/{run_id}/approve", json={"wait_id": wait["id"], "decision": "allow"})
    assert r.status_code == 200, r.text
    assert settled(api, run_id, "completed", "failed")["status"] == "completed"
    assert recorded(record_file).count(note) == 1


def test_e2e_require_approval_waits_even_for_read_only_tools(api: httpx.Client, calc: MCPHttpServer) -> None:
    agent = make_agent(api, [{"name": "calc", "url": calc.url, "require_approval": True}])
    run_id = start_run(
        api,
        agent,
        [step(("calc_add", {"a": 5, "b": 5})), {"text": "ten"}],
        human_in_the_loop=True,
        permission_mode="autonomous",
    )
    wait = open_wait(api, run_id)
    assert wait["request"]["name"] == "calc_add"
    assert of_type(events(api, run_id), "tool.result") == []
    api.post(f"/v1/runs/{run_id}/approve", json={"wait_id": wait["id"], "decision": "allow"}).raise_for_status()
    run = settled(api, run_id, "completed", "failed")
    assert run["status"] == "completed" and run["output"] == "ten"
    assert [r["result"] for r in of_type(events(api, run_id), "tool.result")] == [10]


def test_e2e_require_approval_needs_a_human_in_the_loop(api: httpx.Client, calc: MCPHttpServer) -> None:
    agent = make_agent(api, [{"name": "calc", "url": calc.url, "require_approval": True}])
    r = api.post("/v1/runs", json={"agent_id": agent["id"], "message": "go"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "human_in_the_loop"
    assert api.get("/v1/runs", params={"agent_id": agent["id"]}).json()["data"] == []


def test_e2e_plan_mode_declares_mcp_tools_and_offers_them_once_the_plan_is_approved(
    api: httpx.Client, calc: MCPHttpServer
) -> None:
    agent = make_agent(api, [{"name": "calc", "url": calc.url}])
    script = [{"text": "1. add"}, step(("calc_add", {"a": 1, "b": 2})), {"text": "three"}]
    run_id = start_run(api, agent, script, human_in_the_loop=True, permission_mode="plan")
    plan = open_wait(api, run_id)
    [declared] = of_type(events(api, run_id), "tools.declared")
    assert "calc_add" in [t["name"] for t in declared["tools"]]
    assert of_type(events(api, run_id), "tool.call") == []
    api.post(f"/v1/runs/{run_id}/approve", json={"wait_id": plan["id"], "decision": "allow"}).raise_for_status()
    run = settled(api, run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert [r["result"] for r in of_type(events(api, run_id), "tool.result")] == [3]


def test_e2e_a_side_effect_happens_once_across_a_pause(
    api: httpx.Client, calc: MCPHttpServer, record_file: Path
) -> None:
    # One turn records and asks a question: the run pauses, resumes in a new attempt (a new MCP
    # connection) with the answer, and the journaled call is not made again.
    note = unique("once")
    agent = make_agent(api, [{"name": "calc", "url": calc.url}])
    question = {"questions": [{"question": "Colour?", "options": ["red", "blue"]}]}
    run_id = start_run(
        api,
        agent,
        [step(("calc_record", {"note": note}), ("ask_user_question", question)), {"text": "noted"}],
        human_in_the_loop=True,
    )
    wait = open_wait(api, run_id)
    assert recorded(record_file).count(note) == 1
    r = api.post(f"/v1/runs/{run_id}/answer", json={"wait_id": wait["id"], "answers": {"Colour?": "red"}})
    assert r.status_code == 200, r.text
    assert settled(api, run_id, "completed", "failed")["status"] == "completed"
    assert recorded(record_file).count(note) == 1
    assert len([r for r in of_type(events(api, run_id), "tool.result") if r["name"] == "calc_record"]) == 1
