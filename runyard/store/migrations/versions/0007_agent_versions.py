"""agent versions: an immutable snapshot per change, and the version each run executes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 17:30:00
"""

import sqlalchemy as sa
from alembic import op

from runyard.store.schema import Json, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# What made a version when this migration was written (a migration never reads the live list).
VERSIONED_FIELDS = (
    "instructions",
    "model",
    "tools",
    "input_description",
    "output_description",
    "input_schema",
    "output_schema",
    "message_template",
    "mcp_servers",
    "client_tools",
    "limits",
)


def upgrade() -> None:
    versions = op.create_table(
        "agent_versions",
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("snapshot", Json, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "version", name=op.f("pk_agent_versions")),
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("agent_version", sa.Integer(), nullable=True))
    # Every existing agent is its version 1, as it is now.
    agents = sa.table("agents", *(sa.column(c) for c in ("id", "org_id", "name", "updated_at", *VERSIONED_FIELDS)))
    rows = op.get_bind().execute(sa.select(agents)).mappings().all()
    json_columns = {"tools", "input_schema", "output_schema", "mcp_servers", "client_tools", "limits"}
    if rows:
        op.bulk_insert(
            versions,
            [
                {
                    "agent_id": r["id"],
                    "version": 1,
                    "org_id": r["org_id"],
                    "snapshot": {
                        "name": r["name"],
                        **{f: (_json(r[f]) if f in json_columns else r[f]) for f in VERSIONED_FIELDS},
                    },
                    "created_at": r["updated_at"],
                }
                for r in rows
            ],
        )


def _json(value: object) -> object:
    import json

    return json.loads(value) if isinstance(value, str) else value


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("agent_version")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("version")
    op.drop_table("agent_versions")
