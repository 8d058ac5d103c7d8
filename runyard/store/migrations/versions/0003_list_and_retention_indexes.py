"""indexes for lists by user and for the retention purge

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 02:55:00
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_runs_org_id_user_id_id"), "runs", ["org_id", "user_id", "id"])
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_index(op.f("ix_runs_org_id_user_id_id"), table_name="runs")
