"""Apply Alembic migrations programmatically (`runyard migrate`, and embedded start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from .db import Engine, Store

__all__ = ["alembic_config", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(target: Engine | Store, revision: str = "head") -> None:
    """Migrate the database of a Store (or of a bare engine from `create_engine`)."""

    def run(connection: object) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    store = target if isinstance(target, Store) else Store(target, bus=None)  # type: ignore[arg-type]
    await store.run_sync(run)
