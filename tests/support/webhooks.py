"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that records every request
and answers as told (an HTTP status, or no answer at all), as a user's endpoint would."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> Any:
        """What a receiver does: check the signature with the `standardwebhooks` package (raises if it fails)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    status: int = 200
    """What to answer; 0 holds the connection open without answering (until `release`)."""
    received: list[Received] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every answer (e.g. `Retry-After`)."""
    _server: ThreadingHTTPServer | None = None
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body, self.path))
                status = receiver.status
                if status == 0:
                    receiver._release.wait(30)
                    return
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                reply = f"answered {status}".encode()
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def of_type(self, type_: str) -> list[Received]:
        return [r for r in self.received if r.json["type"] == type_]

    def unique_ids(self) -> set[str]:
        return {r.id for r in self.received}
