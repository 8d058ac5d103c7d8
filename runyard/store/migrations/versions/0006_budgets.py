"""budgets on agents, and why each terminal run ended

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:00:00
"""

import sqlalchemy as sa
from alembic import op

from runyard.store.schema import Json

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("limits", Json, nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("stop_reason", sa.String(length=20), nullable=True))
    # Runs that ended before this revision: what their status says.
    op.execute(
        "UPDATE runs SET stop_reason = CASE status WHEN 'completed' THEN 'completed' "
        "WHEN 'cancelled' THEN 'cancelled' ELSE 'error' END WHERE status IN ('completed', 'failed', 'cancelled')"
    )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("stop_reason")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("limits")
