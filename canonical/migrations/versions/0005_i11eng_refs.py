"""ref_text on orders, invoices and payments: candidate reference text for reference discovery

Revision ID: 0005_i11eng_refs
Revises: 0004_i13_locks
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_i11eng_refs"
down_revision = "0005_i12notify_sent"
branch_labels = None
depends_on = None

_TABLES = ("sales_order", "invoice", "payment")


def upgrade() -> None:
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("ref_text", sa.String(length=400), nullable=True))


def downgrade() -> None:
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("ref_text")
