"""The built-in tool registry. An agent enables tools by name; nothing is on by default."""

from __future__ import annotations

from .builtins import BUILTIN_TOOLS

__all__ = ["BUILTIN_TOOLS", "unknown_tools"]


def unknown_tools(names: list[str]) -> list[str]:
    return [n for n in names if n not in BUILTIN_TOOLS]
