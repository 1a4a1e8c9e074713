"""pull sources: cameras the server fetches photos from

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-14 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pull_sources",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("auth", sa.String(length=512), nullable=True),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("fetches_total", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("failures_total", sa.Integer(), nullable=False),
        sa.Column("last_ok_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id"),
    )
    with op.batch_alter_table("pull_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pull_sources_next_at"), ["next_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pull_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pull_sources_next_at"))
    op.drop_table("pull_sources")
