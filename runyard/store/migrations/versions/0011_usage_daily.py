"""usage_daily: what ended runs used, by day and by what they ran, for the usage report

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 20:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_DIMS = ("org_id", "day", "agent_id", "user_id", "model", "route_id", "status", "bucket")


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("route_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        *(
            sa.Column(c, sa.BigInteger(), nullable=False)
            for c in (
                "requests",
                "tool_calls",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
            )
        ),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("unpriced_runs", sa.Integer(), nullable=False),
        sa.Column("credits_used", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*_DIMS, name=op.f("pk_usage_daily")),
    )
    # The runs that ended before this migration, added up as a run's end adds itself.
    from runyard.config import get_settings
    from runyard.store.usage import backfill

    backfill(op.get_bind(), get_settings().credits_per_usd)


def downgrade() -> None:
    op.drop_table("usage_daily")
