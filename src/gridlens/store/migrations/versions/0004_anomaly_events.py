"""anomaly events: the fleet's scores, events, comments and muted meters

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "anomaly_scores",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("scored_at", sa.Float(), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("day_score", sa.Float(), nullable=True),
        sa.Column("week_score", sa.Float(), nullable=True),
        sa.Column("spark", sa.JSON(), nullable=True),
        sa.Column("spark_start", sa.Float(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "anomaly_events",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("start_at", sa.Float(), nullable=False),
        sa.Column("end_at", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("status_by", sa.String(length=80), nullable=True),
        sa.Column("status_at", sa.Float(), nullable=True),
        sa.Column("notified_at", sa.Float(), nullable=True),
        sa.Column("notified", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "start_at", name="uq_anomaly_events_device_start"),
    )
    op.create_index("ix_anomaly_events_score", "anomaly_events", ["score"], unique=False)
    op.create_table(
        "anomaly_comments",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("author", sa.String(length=80), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["anomaly_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_anomaly_comments_event_id", "anomaly_comments", ["event_id"], unique=False)
    op.create_table(
        "anomaly_mutes",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("until", sa.Float(), nullable=True),
        sa.Column("by", sa.String(length=80), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id"),
    )


def downgrade() -> None:
    op.drop_table("anomaly_mutes")
    op.drop_index("ix_anomaly_comments_event_id", table_name="anomaly_comments")
    op.drop_table("anomaly_comments")
    op.drop_index("ix_anomaly_events_score", table_name="anomaly_events")
    op.drop_table("anomaly_events")
    op.drop_table("anomaly_scores")
