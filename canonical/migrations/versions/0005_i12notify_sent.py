"""notifications: what was delivered to which target (dedup of alerts, one digest a day)

Revision ID: 0005_i12notify_sent
Revises: 0004_i13_locks
"""

import sqlalchemy as sa
from alembic import op

import canonical.tables

revision = "0005_i12notify_sent"
down_revision = "0004_i13_locks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_sent",
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("sent_at", canonical.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "key", name=op.f("pk_notify_sent")),
    )


def downgrade() -> None:
    op.drop_table("notify_sent")
