"""URL paths of API calls, with their ids and file paths quoted."""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["file_path_for", "path_for"]


def path_for(template: str, *ids: str) -> str:
    """Fill `template`'s `{}` slots with URL-quoted ids."""
    return template.format(*(quote(str(value), safe="") for value in ids))


def file_path_for(template: str, owner_id: str, path: str) -> str:
    """`template` filled with a quoted id, then a workspace file's path appended, its `/`s kept."""
    return path_for(template, owner_id) + quote(path.lstrip("/"), safe="/")
