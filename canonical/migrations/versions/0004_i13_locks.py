"""stage locks (SQLite) and quarantine fingerprints

Revision ID: 0004_i13_locks
Revises: 0004_i15_crm_push
"""

import sqlalchemy as sa
from alembic import op

import canonical.tables

revision = "0004_i13_locks"
down_revision = "0004_i15_crm_push"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_lock",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=300), nullable=False),
        sa.Column("acquired_at", canonical.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_stage_lock")),
    )
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(length=32), nullable=True))
        batch.create_index(batch.f("ix_quarantine_fingerprint"), ["fingerprint"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_index(batch.f("ix_quarantine_fingerprint"))
        batch.drop_column("fingerprint")
    op.drop_table("stage_lock")
