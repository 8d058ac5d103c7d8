"""`RUNYARD_LOG_FORMAT=json`: one JSON object per line, with the run's ids inside a run, and no
API key or message content in any line."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.servers import ADMIN_KEY, free_port

from runyard import logs
from runyard.config import Settings


def _record_of(
    formatter: logging.Formatter, logger: str, level: int, msg: str, args_: tuple[Any, ...] = (), **kw: Any
) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(logs.ContextFilter())
    log = logging.getLogger(logger)
    log.addHandler(handler)
    log.propagate = False
    try:
        log.log(level, msg, *args_, **kw)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_json_formatter_fields_extra_and_context() -> None:
    with logs.bind(run_id="run_1", worker_id="w:1"):
        line = _record_of(
            logs.JsonFormatter(),
            "runyard.test.fmt",
            logging.WARNING,
            "hello %s",
            args_=("there",),
            extra={"count": 3, "trace_id": "t" * 32},
        )
    assert line["level"] == "WARNING"
    assert line["logger"] == "runyard.test.fmt"
    assert line["message"] == "hello there"
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert (line["run_id"], line["worker_id"], line["trace_id"]) == ("run_1", "w:1", "t" * 32)
    assert line["count"] == 3
    assert "exc" not in line
    assert logs.current() == {}  # bind restored the context on exit


def test_json_formatter_exception_and_unserializable_extra() -> None:
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        line = _record_of(
            logs.JsonFormatter(), "runyard.test.exc", logging.ERROR, "failed", exc_info=True, extra={"obj": object()}
        )
    assert line["message"] == "failed"
    assert "Traceback" in line["exc"] and "RuntimeError: kaput" in line["exc"]
    assert line["obj"].startswith("<object object")
    assert "run_id" not in line


def test_text_formatter_appends_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    handler.addFilter(logs.ContextFilter())
    log = logging.getLogger("runyard.test.text")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("plain")
        with logs.bind(run_id="run_9"):
            log.warning("in a run")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING runyard.test.text: plain")
    assert second.endswith("in a run  run_id=run_9")


def test_configure_is_idempotent() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = logging.getLogger("runyard").level
    try:
        a = logs.configure(Settings(log_format="json", log_level="DEBUG"))
        b = logs.configure(Settings(log_format="text", log_level="INFO"))
        assert a is b and root.handlers.count(a) == 1
        assert isinstance(a.formatter, logs.TextFormatter)
        assert logging.getLogger("runyard").level == logging.INFO
        with pytest.raises(ValueError):
            logs.configure(Settings(log_level="LOUD"))
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
        logging.getLogger("runyard").setLevel(level)


def _serve(tmp: Path, db_url: str, **env: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp / f"serve-{port}.log"
    full = {
        **os.environ,
        "RUNYARD_DATABASE_URL": db_url,
        "RUNYARD_API_KEY": ADMIN_KEY,
        "RUNYARD_PORT": str(port),
        **env,
    }
    # --log-level info: uvicorn's startup and access lines go through the JSON handler too.
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "serve", "--log-level", "info"],
        env=full,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base, log
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def test_serve_json_logs(tmp_path: Path) -> None:
    secret_text = f"confidential task text {uuid.uuid4().hex}"
    proc, base, log = _serve(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'runyard.db'}", RUNYARD_LOG_FORMAT="json", RUNYARD_LOG_LEVEL="DEBUG"
    )
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as http:
            r = http.post(
                "/v1/runs",
                json={
                    "name": "logs",
                    "instructions": "x",
                    "message": secret_text,
                    "metadata": {"script": [{"error": "boom"}]},
                },
            )
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
            run = http.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30}).json()
            assert run["status"] == "failed", run
            assert http.get("/v1/runs", params={"limit": 5}).status_code == 200
            assert http.get("/v1/runs/run_does_not_exist").status_code == 404
            time.sleep(0.2)  # the attempt's last debug line follows the outcome's commit
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # each line is JSON
    assert lines, text
    for line in lines:
        assert isinstance(line, dict), line
        assert {"ts", "level", "logger", "message"} <= set(line), line
    in_run = [line for line in lines if line.get("run_id") == run_id]
    assert in_run, text
    assert all(line.get("worker_id") for line in in_run), in_run
    assert all(len(line.get("trace_id", "")) == 32 for line in in_run), in_run
    assert any(line["logger"] == "uvicorn.access" for line in lines), text  # uvicorn routed to JSON
    assert any(line["message"].startswith("Runyard is running at") for line in lines), text
    # No key and no message content, at any level.
    assert ADMIN_KEY not in text
    assert secret_text not in text
