"""order_ref on deals: the ERP order number a CRM keeps on the deal (a custom field)

Revision ID: 0006_deal_order_ref
Revises: 0005_i16stages_stages
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_deal_order_ref"
down_revision = "0005_i16stages_stages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deal") as batch:
        batch.add_column(sa.Column("order_ref", sa.String(length=400), nullable=True))
        batch.create_index(batch.f("ix_deal_order_ref"), ["order_ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deal") as batch:
        batch.drop_index(batch.f("ix_deal_order_ref"))
        batch.drop_column("order_ref")
