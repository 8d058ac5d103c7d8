"""The request edge's limits, declared once: JSON shape rules and size-bounded field types.

Every request body goes through `check_json` before any field is read, so nothing deeper
than `MAX_JSON_DEPTH`, no NaN/Infinity, no NUL and no lone surrogate ever reaches a database
(PostgreSQL refuses NUL in text and JSONB; SQLite would store invalid JSON).
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

import jsonschema
from jsonschema.validators import validator_for
from pydantic import AfterValidator, Field, ValidationInfo

from ..store.errors import InvalidInput, PayloadTooLarge

__all__ = [
    "MAX_JSON_DEPTH",
    "Limits",
    "MessageText",
    "Metadata",
    "check_json",
    "check_json_schema",
    "check_text",
    "max_json_bytes",
    "max_utf8_bytes",
]

MAX_JSON_DEPTH = 32
"""Levels of nesting allowed inside any JSON field (objects and arrays both count)."""


class Limits:
    MESSAGE_BYTES = 32 * 1024
    METADATA_BYTES = 16 * 1024
    SCHEMA_BYTES = 64 * 1024
    BODY_BYTES = 1024 * 1024
    HEADER_BYTES = 16 * 1024
    PAGE_MAX = 100
    INT64_MAX = 2**63 - 1


def check_text(value: str, field: str) -> None:
    """NUL and lone surrogates cannot be stored as UTF-8 text on every database: refuse them."""
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL character", field=field)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{field} is not valid Unicode (a lone surrogate)", field=field) from None


def check_json(value: Any, field: str) -> None:
    """Depth, finiteness and text rules over one JSON value, iteratively (no recursion to exhaust)."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(f"{path} is not a finite number (NaN, Infinity and 1e400 are refused)", field=path)
        elif isinstance(item, int):
            continue
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidInput(f"{field} is nested deeper than {MAX_JSON_DEPTH} levels", field=field)
            if isinstance(item, dict):
                for key, child in item.items():
                    check_text(key, f"{path} key")
                    stack.append((child, f"{path}.{key}", depth + 1))
            else:
                stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))


def max_json_bytes(limit: int) -> Any:
    def check(value: Any, info: ValidationInfo) -> Any:
        if value is not None and len(json.dumps(value, separators=(",", ":")).encode()) > limit:
            field = info.field_name or "body"
            raise PayloadTooLarge(f"{field} is larger than {limit // 1024} KB as JSON", field=field)
        return value

    return AfterValidator(check)


def max_utf8_bytes(limit: int) -> Any:
    def check(value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and len(value.encode()) > limit:
            field = info.field_name or "body"
            raise PayloadTooLarge(f"{field} is larger than {limit // 1024} KB", field=field)
        return value

    return AfterValidator(check)


Metadata = Annotated[
    dict[str, Any], max_json_bytes(Limits.METADATA_BYTES), Field(description="Free-form JSON, at most 16 KB.")
]
MessageText = Annotated[str, Field(min_length=1), max_utf8_bytes(Limits.MESSAGE_BYTES)]
"""A user message or free-text answer: at most 32 KB of UTF-8."""


def _schema_problem(schema: Any) -> str | None:
    """What `jsonschema` could not check (or would fetch from the network), or None."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return f"$ref {ref!r} is not local: only references inside the schema ('#/…') are allowed"
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns.extend(node["patternProperties"])
        for pattern in patterns:
            try:
                re.compile(pattern)
            except (re.error, RecursionError) as exc:
                return f"pattern {pattern!r} is not a valid regular expression: {exc}"
        stack.extend(node.values())
    return None


def check_json_schema(value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
    """A JSON Schema that `jsonschema` can check offline, at most 64 KB."""
    if value is None:
        return value
    field = info.field_name or "schema"
    if len(json.dumps(value).encode()) > Limits.SCHEMA_BYTES:
        raise PayloadTooLarge(f"{field} is larger than {Limits.SCHEMA_BYTES // 1024} KB as JSON", field=field)
    problem = _schema_problem(value)
    if problem is None:
        try:
            cls = validator_for(value, default=jsonschema.Draft202012Validator)
            cls.check_schema(value)
        except jsonschema.SchemaError as exc:
            problem = f"not a valid JSON Schema: {exc.message}"
        except Exception as exc:  # the checker itself gave up (e.g. an unresolvable $ref)
            problem = f"not a JSON Schema this server can check: {exc.__class__.__name__}"
    if problem is not None:
        raise ValueError(problem)  # pydantic names the field's whole path (e.g. `client_tools[0].parameters`)
    return value
