"""Fake LLM provider for tests: a local HTTP server speaking the real OpenAI and Anthropic wire protocols.

It lets the real SDK clients (and pydantic-ai's `OpenAIChatModel` / `AnthropicModel`) run end to end
with no network. Standard library only.

    with FakeProvider([
        {"tool_call": {"id": "call_1", "name": "calculator", "args": {"expression": "2+2"}}},
        {"text": "The answer is 4.", "usage": {"input_tokens": 20, "output_tokens": 9}},
    ]) as fp:
        OpenAIProvider(base_url=fp.base_url + "/v1", api_key="test")  # OpenAI SDK wants the /v1 prefix
        AnthropicProvider(base_url=fp.base_url, api_key="test")       # Anthropic SDK adds /v1 itself

Script entries (one per model request, consumed in order, shared by both endpoints):
    {"text": str}                                   streamed as ~3 deltas
    {"tool_call": {"id", "name", "args": dict}}      args JSON streamed in 2+ fragments
    {"tool_calls": [...]}                            several calls in one turn (an extension)
    "usage": {"input_tokens", "output_tokens"}       optional, defaults to DEFAULT_USAGE
Text and tool calls may be combined; text comes first. Once the script is exhausted every
request gets the text "done" with DEFAULT_USAGE. Failures, for retries and fallbacks:
    {"status": 429, "headers": {"Retry-After": "1"}}  an error answer (the provider's JSON error body)
    {"text": ..., "cut_after": 2}                     a stream that breaks off after 2 SSE frames
    {"delay": 0.5}                                   seconds before answering (with any entry)

Endpoints: POST /v1/chat/completions and POST /v1/messages (query strings such as Anthropic's
`?beta=true` are ignored), each streaming when the body has `"stream": true`. Anything else is a
404 with a JSON error body, so a wrong base_url fails loudly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_USAGE = {"input_tokens": 10, "output_tokens": 5}

Turn = tuple[str, list[dict[str, Any]], dict[str, int]]  # (text, tool calls, usage)


def _split(s: str, n: int = 3) -> list[str]:
    """Split `s` into up to `n` non-empty pieces, so clients really have to reassemble deltas."""
    size = max(1, -(-len(s) // n))
    return [s[i : i + size] for i in range(0, len(s), size)]


# --- OpenAI chat completions -------------------------------------------------------------------


def _openai_usage(usage: dict[str, int]) -> dict[str, int]:
    i, o = usage["input_tokens"], usage["output_tokens"]
    return {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}


def _openai_chunks(model: str, turn: Turn, include_usage: bool) -> Iterator[dict[str, Any]]:
    text, calls, usage = turn
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    # Like the real API: a role-only opener, content deltas, then a tool call's id/name before its arguments.
    yield chunk({"role": "assistant", "content": ""})
    for piece in _split(text):
        yield chunk({"content": piece})
    for i, call in enumerate(calls):
        function = {"name": call["name"], "arguments": ""}
        yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function", "function": function}]})
        for piece in _split(json.dumps(call["args"])):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls" if calls else "stop")
    # Usage comes only when asked for (`stream_options.include_usage`), in a final chunk with no choices.
    if include_usage:
        yield {**base, "choices": [], "usage": _openai_usage(usage)}


def _openai_completion(model: str, turn: Turn) -> dict[str, Any]:
    text, calls, usage = turn
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
            for c in calls
        ]
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop", "logprobs": None}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _openai_usage(usage),
    }


# --- Anthropic messages ------------------------------------------------------------------------


def _anthropic_blocks(turn: Turn) -> list[dict[str, Any]]:
    text, calls, _ = turn
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    blocks += [{"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]} for c in calls]
    return blocks


def _anthropic_events(model: str, turn: Turn) -> Iterator[tuple[str, dict[str, Any]]]:
    _, calls, usage = turn
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # The real API reports input tokens up front and a placeholder output count.
        "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
    }
    yield "message_start", {"type": "message_start", "message": message}
    yield "ping", {"type": "ping"}  # the real API sends these; clients must skip them
    for index, block in enumerate(_anthropic_blocks(turn)):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _split(block["text"])]
        else:
            start = {**block, "input": {}}  # input always starts empty and arrives as partial JSON
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _split(json.dumps(block["input"]))]
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    delta = {"stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None}
    final_usage = {"output_tokens": usage["output_tokens"]}  # cumulative; input_tokens came in message_start
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage}
    yield "message_stop", {"type": "message_stop"}


def _anthropic_message(model: str, turn: Turn) -> dict[str, Any]:
    _, calls, usage = turn
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _anthropic_blocks(turn),
        "stop_reason": "tool_use" if calls else "end_turn",
        "stop_sequence": None,
        "usage": dict(usage),
    }


# --- HTTP plumbing -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with chunked SSE bodies, as the SDKs' pooled clients expect
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if path not in ("/v1/chat/completions", "/v1/messages"):
            error = {"type": "not_found_error", "message": f"fake provider: no route {path}"}
            self._send_json({"error": error}, 404)
            return
        turn, entry = self.server.fake._next_turn(body)
        model, stream = body.get("model", "fake-model"), bool(body.get("stream"))
        if entry.get("delay"):
            time.sleep(float(entry["delay"]))
        if entry.get("status"):
            kind = "rate_limit_error" if entry["status"] == 429 else "api_error"
            error = {"type": kind, "message": f"fake provider: {entry['status']}", "code": None}
            body_ = {"type": "error", "error": error} if path == "/v1/messages" else {"error": error}
            self._send_json(body_, int(entry["status"]), entry.get("headers") or {})
            return
        cut = entry.get("cut_after")
        try:
            if path == "/v1/chat/completions" and stream:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                frames = [f"data: {json.dumps(c)}\n\n" for c in _openai_chunks(model, turn, include_usage)]
                self._send_sse([*frames, "data: [DONE]\n\n"], cut)
            elif path == "/v1/chat/completions":
                self._send_json(_openai_completion(model, turn))
            elif stream:
                events = _anthropic_events(model, turn)
                self._send_sse([f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events], cut)
            else:
                self._send_json(_anthropic_message(model, turn))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading early; nothing to clean up

    def _send_json(self, payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, frames: list[str], cut_after: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # One HTTP chunk per SSE frame, flushed, so the client sees genuinely incremental deltas.
        for n, frame in enumerate(frames):
            if cut_after is not None and n == cut_after:
                # The connection drops mid-body: no terminating chunk, as when a proxy or the provider dies.
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = frame.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block shutdown
    block_on_close = False
    fake: FakeProvider


class FakeProvider:
    """Context manager; starts on 127.0.0.1:0 in a background thread."""

    def __init__(self, script: list[dict[str, Any]]):
        self._script = list(script)
        self._lock = threading.Lock()  # handler threads share the script and the request log
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _next_turn(self, body: dict[str, Any]) -> tuple[Turn, dict[str, Any]]:
        with self._lock:
            self.requests.append(body)
            entry = self._script.pop(0) if self._script else {"text": "done"}
        calls = entry.get("tool_calls") or ([entry["tool_call"]] if "tool_call" in entry else [])
        return (entry.get("text", ""), calls, {**DEFAULT_USAGE, **entry.get("usage", {})}), entry

    def __enter__(self) -> FakeProvider:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval keeps shutdown() fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
