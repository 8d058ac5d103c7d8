"""Process logging: one stderr handler, text or JSON lines, with the run's ids where known.

`configure(settings)` is called where a process starts (`runyard serve`, `runyard worker`), never
by `create_app`, so apps built in-process (tests) keep whatever logging their host set up.

The worker binds `run_id`, `trace_id` and `worker_id` (`bind`) inside each run's own asyncio task:
a task copies the context when it is created, so the ids stay with that run and its log lines.

Never log API keys, secrets or message contents at INFO: log ids, counts and error classes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from .config import Settings

__all__ = [
    "CONTEXT_FIELDS",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "bind",
    "configure",
    "uvicorn_log_config",
]

CONTEXT_FIELDS = ("run_id", "trace_id", "worker_id", "request_id")
"""Record attributes filled from the context (or passed with `extra=`), in the order they print."""

_vars: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"runyard_{name}", default=None) for name in CONTEXT_FIELDS
}

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message
    "taskName",
    *CONTEXT_FIELDS,
}

_HANDLER_MARK = "_runyard_handler"


@contextmanager
def bind(**ids: str | None) -> Iterator[None]:
    """Set some of `run_id`, `trace_id`, `worker_id`, `request_id` for the current context (a
    run's task), restoring the previous values on exit. None leaves a field as it is."""
    tokens: list[tuple[contextvars.ContextVar[str | None], contextvars.Token[str | None]]] = []
    for name, value in ids.items():
        if name not in _vars:
            raise TypeError(f"unknown log context field {name!r}")
        if value is not None:
            var = _vars[name]
            tokens.append((var, var.set(str(value))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The ids bound in this context."""
    return {name: value for name, var in _vars.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (an explicit `extra=` value wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _vars.items():
            if getattr(record, name, None) is None:
                value = var.get()
                if value is not None:
                    setattr(record, name, value)
        return True


def _context_of(record: logging.LogRecord) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is None:
            value = _vars[name].get()
        if value is not None:
            out[name] = str(value)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts` (ISO 8601 UTC), `level`, `logger`, `message`, the ids known
    (`run_id`, `trace_id`, `worker_id`, `request_id`), `extra=` fields, and `exc` (traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        data: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(_context_of(record))
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in data:
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2024-01-01 12:00:00,000 WARNING runyard.worker: message  run_id=… worker_id=…`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = _context_of(record)
        if not ids:
            return text
        head, sep, tail = text.partition("\n")  # the ids go on the message line, before a traceback
        return head + "  " + " ".join(f"{k}={v}" for k, v in ids.items()) + sep + tail


def _level(name: str) -> int:
    level = logging.getLevelName(name.strip().upper())
    if not isinstance(level, int):
        raise ValueError(f"RUNYARD_LOG_LEVEL: unknown level {name!r}")
    return level


def configure(settings: Settings) -> logging.Handler:
    """Install (once; later calls update it) the root stderr handler in `settings.log_format`, and
    set Runyard's loggers to `settings.log_level`. Other libraries' loggers stay at WARNING."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger("runyard").setLevel(_level(settings.log_level))
    logging.captureWarnings(True)
    return handler


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """The `log_config` for uvicorn: its own default in text mode; in JSON mode its loggers lose
    their handlers and propagate to the root handler `configure` installed (so they print JSON)."""
    if settings.log_format != "json":
        from uvicorn.config import LOGGING_CONFIG

        return LOGGING_CONFIG
    routed = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {name: dict(routed) for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")},
    }
