"""Prefixed, time-sortable ids: `run_01j…` (48-bit ms time + 80 random bits, Crockford base32)."""

from __future__ import annotations

import os
import time
from datetime import datetime

__all__ = ["first_id_at", "new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


_last = 0


def first_id_at(prefix: str, when: datetime) -> str:
    """The smallest id `new_id` can make at `when` (its millisecond, zero random bits): every id
    made earlier sorts before it. Lets a time bound use the primary key's order."""
    value = int(when.timestamp() * 1000) << 80
    chars = [_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5)]
    return f"{prefix}_{''.join(chars)}"


def new_id(prefix: str) -> str:
    """Ids made in one process sort in creation order, even within one millisecond."""
    global _last
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    if value <= _last:
        value = _last + 1
    _last = value
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
