"""Orgs and API keys. Keys are stored as SHA-256 hashes; the plain key is shown once."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import func, insert, select

from .db import Conn, utcnow
from .ids import new_id
from .schema import api_keys, orgs

__all__ = ["count", "create_key", "ensure_org", "hash_key", "new_key", "org_for_key"]

KEY_PREFIX = "ryk_"


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


async def create_key(conn: Conn, org_name: str, *, key: str | None = None, name: str = "admin") -> str:
    """Create a key in the named org (created if missing) and return the plain key."""
    org_id = await ensure_org(conn, org_name)
    key = key or new_key()
    await conn.execute(
        insert(api_keys).values(
            id=new_id("key"), org_id=org_id, key_hash=hash_key(key), prefix=key[:8], name=name, created_at=utcnow()
        )
    )
    return key


async def org_for_key(conn: Conn, key: str) -> str | None:
    row = (await conn.execute(select(api_keys.c.org_id).where(api_keys.c.key_hash == hash_key(key)))).one_or_none()
    return row.org_id if row is not None else None


async def count(conn: Conn) -> int:
    return (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
