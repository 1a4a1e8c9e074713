"""feeders: feeder models, meters on buses, hourly estimates, grid jobs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feeders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("model", sa.JSON(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("pmus", sa.JSON(), nullable=False),
        sa.Column("simulation", sa.JSON(), nullable=True),
        sa.Column("readings_seen", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "feeder_meters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feeder_id", sa.Integer(), nullable=False),
        sa.Column("bus", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["feeder_id"], ["feeders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id"),
    )
    with op.batch_alter_table("feeder_meters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feeder_meters_feeder_id"), ["feeder_id"], unique=False)
    op.create_table(
        "feeder_hours",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("feeder_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Float(), nullable=False),
        sa.Column("computed_at", sa.Float(), nullable=False),
        sa.Column("vm", sa.JSON(), nullable=False),
        sa.Column("va", sa.JSON(), nullable=False),
        sa.Column("vm_sigma", sa.JSON(), nullable=False),
        sa.Column("va_sigma", sa.JSON(), nullable=False),
        sa.Column("tve", sa.JSON(), nullable=True),
        sa.Column("meters_read", sa.Integer(), nullable=False),
        sa.Column("meters_pseudo", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["feeder_id"], ["feeders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("feeder_id", "hour", name="uq_feeder_hours"),
    )
    op.create_table(
        "grid_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("feeder_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["feeder_id"], ["feeders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("grid_jobs")
    op.drop_table("feeder_hours")
    with op.batch_alter_table("feeder_meters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feeder_meters_feeder_id"))
    op.drop_table("feeder_meters")
    op.drop_table("feeders")
