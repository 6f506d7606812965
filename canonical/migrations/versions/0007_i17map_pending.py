"""raw_record: a partial index of the pending versions (system, id) in place of (system, object, pending_map)

The mapping stage reads a system's pending rows in id order, batch after batch. With the old index
SQLite read every row of the system past the last id and sorted them for each batch; the partial
index gives them in order and holds only what waits, so clearing the flag only removes entries.

Revision ID: 0007_i17map_pending
Revises: 0006_deal_order_ref
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_i17map_pending"
down_revision = "0006_deal_order_ref"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_raw_record_pending",
        "raw_record",
        ["system", "id"],
        unique=False,
        sqlite_where=sa.text("pending_map IS 1"),
        postgresql_where=sa.text("pending_map IS TRUE"),
    )
    op.drop_index("ix_raw_record_system_object_pending_map", table_name="raw_record")


def downgrade() -> None:
    op.create_index(
        "ix_raw_record_system_object_pending_map",
        "raw_record",
        ["system", "object", "pending_map"],
        unique=False,
    )
    op.drop_index("ix_raw_record_pending", table_name="raw_record")
