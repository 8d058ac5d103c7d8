"""Orgs and API keys. Keys are stored as SHA-256 hashes; the plain key is shown once. A key
may expire (`expires_at`) or be revoked; either way it is refused from then on."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from .db import Conn, utcnow
from .errors import NotFound
from .ids import new_id
from .schema import api_keys, orgs

__all__ = [
    "LAST_USED_RESOLUTION",
    "KeyInfo",
    "count",
    "create_key",
    "ensure_org",
    "hash_key",
    "known",
    "list_keys",
    "lookup",
    "mark_used",
    "new_key",
    "org_for_key",
    "revoke",
]

KEY_PREFIX = "ryk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is written at most this often per key: a write per request would cost more than it tells."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def ensure_org(conn: Conn, name: str) -> str:
    row = (await conn.execute(select(orgs.c.id).where(orgs.c.name == name))).one_or_none()
    if row is not None:
        return row.id
    org_id = new_id("org")
    await conn.execute(insert(orgs).values(id=org_id, name=name, created_at=utcnow()))
    return org_id


async def create_key(
    conn: Conn, org_name: str, *, key: str | None = None, name: str = "admin", expires_at: datetime | None = None
) -> str:
    """Create a key in the named org (created if missing) and return the plain key."""
    org_id = await ensure_org(conn, org_name)
    key = key or new_key()
    await conn.execute(
        insert(api_keys).values(
            id=new_id("key"),
            org_id=org_id,
            key_hash=hash_key(key),
            prefix=key[:8],
            name=name,
            created_at=utcnow(),
            expires_at=expires_at,
        )
    )
    return key


@dataclass(frozen=True)
class KeyInfo:
    id: str
    org_id: str
    last_used_at: datetime | None


async def lookup(conn: Conn, key: str) -> KeyInfo | None:
    """The key's id and org, if it exists, is not revoked and has not expired."""
    now = utcnow()
    row = (
        await conn.execute(
            select(api_keys.c.id, api_keys.c.org_id, api_keys.c.last_used_at).where(
                api_keys.c.key_hash == hash_key(key),
                api_keys.c.revoked_at.is_(None),
                (api_keys.c.expires_at.is_(None)) | (api_keys.c.expires_at > now),
            )
        )
    ).one_or_none()
    return KeyInfo(row.id, row.org_id, row.last_used_at) if row is not None else None


async def org_for_key(conn: Conn, key: str) -> str | None:
    info = await lookup(conn, key)
    return info.org_id if info is not None else None


async def mark_used(conn: Conn, key_id: str) -> None:
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=utcnow()))


async def list_keys(conn: Conn, org_name: str | None = None) -> list[dict[str, Any]]:
    """Every key (never its secret), newest first, with its org's name."""
    query = select(api_keys, orgs.c.name.label("org")).join(orgs, orgs.c.id == api_keys.c.org_id)
    if org_name is not None:
        query = query.where(orgs.c.name == org_name)
    rows = await conn.execute(query.order_by(api_keys.c.id.desc()))
    fields = ("id", "org", "name", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at")
    return [{f: getattr(r, f) for f in fields} for r in rows]


async def revoke(conn: Conn, key_id: str) -> None:
    """Refuse the key from now on (every node within a second); revoking twice is a no-op."""
    result = await conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    if not result.rowcount:
        exists = (await conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id))).one_or_none()
        if exists is None:
            raise NotFound.of("key", key_id)


async def known(conn: Conn, key: str) -> bool:
    """Whether the key was ever created (revoked and expired ones too)."""
    return (await conn.execute(select(api_keys.c.id).where(api_keys.c.key_hash == hash_key(key)))).first() is not None


async def count(conn: Conn) -> int:
    return (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
