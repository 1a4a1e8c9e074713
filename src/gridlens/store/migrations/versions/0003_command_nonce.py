"""command nonce: the secret an MQTT ack must carry to count

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-20 09:00:00.000000

Commands still open (pending or delivered) get a nonce at the upgrade, so a device running
the new firmware can ack them; finished ones keep none.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nonce", sa.String(length=32), nullable=True))
    conn = op.get_bind()
    commands = sa.table("commands", sa.column("id", sa.Integer), sa.column("status", sa.String),
                        sa.column("nonce", sa.String))  # fmt: skip
    open_ids = conn.execute(
        sa.select(commands.c.id).where(commands.c.status.in_(("pending", "delivered")))
    ).scalars()
    for cid in list(open_ids):
        conn.execute(
            sa.update(commands).where(commands.c.id == cid).values(nonce=secrets.token_hex(16))
        )


def downgrade() -> None:
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_column("nonce")
