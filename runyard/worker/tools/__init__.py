"""The built-in tool registry. An agent enables tools by name; nothing is on by default."""

from __future__ import annotations

from .builtins import BUILTIN_TOOLS

__all__ = ["BUILTIN_TOOLS", "TOOL_GROUPS", "unknown_tools"]

TOOL_GROUPS = frozenset({"files"})
"""Names that enable a set of tools at once: `files` offers write_file, read_file, list_files, delete_file."""


def unknown_tools(names: list[str]) -> list[str]:
    return [n for n in names if n not in BUILTIN_TOOLS and n not in TOOL_GROUPS]
