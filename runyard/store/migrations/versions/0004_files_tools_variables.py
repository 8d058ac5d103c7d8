"""run files, MCP servers and client tools on agents, run variables, tool_result waits

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

from runyard.store.schema import Json, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('question', 'approval', 'input')"
NEW_KINDS = "kind IN ('question', 'approval', 'input', 'tool_result')"


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("thread_id", sa.String(length=40), nullable=True),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=400), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_files_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
        sa.UniqueConstraint("thread_id", "path", name=op.f("uq_files_thread_id_path")),
    )
    op.create_index(op.f("ix_files_org_id_thread_id_id"), "files", ["org_id", "thread_id", "id"])
    op.create_table(
        "run_files",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("file_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "file_id", name=op.f("pk_run_files")),
    )
    op.create_index(op.f("ix_run_files_file_id"), "run_files", ["file_id"])
    op.create_table(
        "file_blobs",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_file_blobs")),
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("message_template", sa.Text(), nullable=True))
        batch.add_column(sa.Column("mcp_servers", Json, server_default="[]", nullable=False))
        batch.add_column(sa.Column("client_tools", Json, server_default="[]", nullable=False))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("variables", Json, nullable=True))
    with op.batch_alter_table("waits", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_waits_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_waits_kind"), NEW_KINDS)


def downgrade() -> None:
    with op.batch_alter_table("waits", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_waits_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_waits_kind"), OLD_KINDS)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("variables")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("client_tools")
        batch.drop_column("mcp_servers")
        batch.drop_column("message_template")
    op.drop_table("file_blobs")
    op.drop_index(op.f("ix_run_files_file_id"), table_name="run_files")
    op.drop_table("run_files")
    op.drop_index(op.f("ix_files_org_id_thread_id_id"), table_name="files")
    op.drop_table("files")
