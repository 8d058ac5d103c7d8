"""route_id on agents and runs

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 19:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("route_id", sa.String(length=200), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("route_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("route_id")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("route_id")
