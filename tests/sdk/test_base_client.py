"""The send loop's retries: the pure decisions, and a stale keep-alive connection on a real socket.

`KeepAliveServer` is a tiny HTTP/1.1 server on 127.0.0.1. It answers the first request of its
first connection and keeps that connection open; when the next request arrives on it, it drops
the connection without a response, as a server does that closes an idle connection just as the
client reuses it. Later connections are served normally.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import runyard
from runyard import AsyncRunyard, Runyard
from runyard.client.base_client import Retries, is_idempotent, should_retry_error

NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
RUN = {
    "id": "run_1", "object": "run", "agent_id": "agt_1", "thread_id": "thr_1", "status": "pending",
    "original_prompt": "hi", "model": "scripted", "created_at": NOW, "trace_id": "t",
}


@dataclass
class Received:
    connection: int
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class KeepAliveServer:
    drop: str = "reset"
    """How the stale connection goes: `reset` (RST, the client reads ECONNRESET) or `close` (FIN, EOF)."""
    received: list[Received] = field(default_factory=list)
    _listener: socket.socket = field(init=False)

    def start(self) -> KeepAliveServer:
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def stop(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        number = 0
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            number += 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            reader = conn.makefile("rb")
            served = 0
            while (request := _read_request(reader)) is not None:
                self.received.append(Received(number, *request))
                if number == 1 and served == 1:
                    if self.drop == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                body = json.dumps(RUN).encode()
                status = "201 Created" if request[0] == "POST" and request[1] == "/v1/runs" else "200 OK"
                conn.sendall(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: keep-alive\r\n\r\n".encode() + body
                )
                served += 1


def _read_request(reader: Any) -> tuple[str, str, dict[str, str]] | None:
    line = reader.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    headers = {}
    while (header := reader.readline().decode().rstrip("\r\n")) != "":
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    reader.read(int(headers.get("content-length", 0)))
    return method, path, headers


@pytest.fixture(params=["reset", "close"])
def stale_server(request: pytest.FixtureRequest) -> Iterator[KeepAliveServer]:
    server = KeepAliveServer(drop=request.param).start()
    yield server
    server.stop()


def test_an_idempotent_call_on_a_stale_connection_is_retried_once_with_the_same_key(
    stale_server: KeepAliveServer,
) -> None:
    # max_retries=0: the stale-connection retry is not a backoff retry; the pool, not the server, failed.
    with Runyard(base_url=stale_server.url, api_key="k", max_retries=0, timeout=5) as client:
        client.runs.get("run_1")
        run = client.runs.create("hi", agent_id="agt_1")
    assert run.id == "run_1"
    first, stale, retried = stale_server.received
    assert (first.connection, stale.connection, retried.connection) == (1, 1, 2)
    assert (stale.method, retried.method) == ("POST", "POST")
    assert stale.headers["idempotency-key"] == retried.headers["idempotency-key"]


def test_a_call_without_an_idempotency_key_on_a_stale_connection_is_not_retried(
    stale_server: KeepAliveServer,
) -> None:
    # The server may have acted on the request before the connection went: sending it again could do it twice.
    with Runyard(base_url=stale_server.url, api_key="k", timeout=5) as client:
        client.runs.get("run_1")
        with pytest.raises(runyard.APIConnectionError):
            client.runs.cancel("run_1")
    assert [(r.connection, r.method) for r in stale_server.received] == [(1, "GET"), (1, "POST")]


async def test_the_async_client_retries_a_stale_connection_alike(stale_server: KeepAliveServer) -> None:
    async with AsyncRunyard(base_url=stale_server.url, api_key="k", max_retries=0, timeout=5) as client:
        await client.runs.get("run_1")
        await client.runs.create("hi", agent_id="agt_1", idempotency_key="mine")
    assert [(r.connection, r.headers.get("idempotency-key")) for r in stale_server.received] == [
        (1, None), (1, "mine"), (2, "mine"),
    ]


# --------------------------------------------------------------------------- decisions


def request(method: str, **headers: str) -> httpx.Request:
    return httpx.Request(method, "http://test/v1/runs", headers=headers)


def test_idempotent_requests() -> None:
    assert is_idempotent(request("GET"))
    assert is_idempotent(request("POST", **{"Idempotency-Key": "k"}))
    assert not is_idempotent(request("POST"))
    assert not is_idempotent(request("DELETE"))  # a second delete would answer 404


def test_which_transport_errors_are_retried() -> None:
    post, get = request("POST"), request("GET")
    assert should_retry_error(httpx.ConnectError("refused"), post)  # never sent: safe for any call
    assert not should_retry_error(httpx.ReadError("reset"), post)
    assert not should_retry_error(httpx.ReadTimeout("slow"), post)
    assert should_retry_error(httpx.ReadTimeout("slow"), get)
    assert not should_retry_error(httpx.UnsupportedProtocol("ftp"), get)


def test_retries_count_the_stale_retry_apart_and_raise_when_spent() -> None:
    keyed = request("POST", **{"Idempotency-Key": "k"})
    retries = Retries(max_retries=1)
    assert retries.after_error(httpx.RemoteProtocolError("no response"), keyed, responded=False) == 0.0
    assert retries.after_error(httpx.RemoteProtocolError("no response"), keyed, responded=False) > 0
    assert (retries.used, retries.stale_retried) == (1, True)
    with pytest.raises(runyard.APIConnectionError) as info:
        retries.after_error(httpx.ReadError("reset"), keyed, responded=False)
    assert isinstance(info.value.__cause__, httpx.ReadError)
    # An error in the body came after response bytes: not a stale connection, so only backoff applies.
    with pytest.raises(runyard.APIConnectionError):
        Retries(max_retries=0).after_error(httpx.ReadError("reset"), keyed, responded=True)


def test_retries_of_error_responses() -> None:
    busy = httpx.Response(503, json={"error": {"code": "unavailable", "message": "busy"}}, request=request("GET"))
    retries = Retries(max_retries=1)
    assert retries.after_response(busy) > 0
    with pytest.raises(runyard.InternalServerError):
        retries.after_response(busy)
