"""raw_pending: the versions waiting to be mapped in a narrow table of their own, in place of raw_record.pending_map

Clearing the flag in raw_record rewrote the wide raw row (its JSON payload) for every record mapped;
deleting a narrow (system, raw_id, content_hash) row is a fraction of that. The flags that are set
move over with the content hash of their version.

Revision ID: 0009_i17map_pending2
Revises: 0008_i17store_links
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_i17map_pending2"
down_revision = "0008_i17store_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raw_pending",
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("raw_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("system", "raw_id", name=op.f("pk_raw_pending")),
        sqlite_with_rowid=False,
    )
    pending = "pending_map IS TRUE" if op.get_bind().dialect.name == "postgresql" else "pending_map IS 1"
    op.execute(
        "INSERT INTO raw_pending (system, raw_id, content_hash) "
        f"SELECT system, id, content_hash FROM raw_record WHERE {pending}"
    )
    op.drop_index("ix_raw_record_pending", table_name="raw_record")
    with op.batch_alter_table("raw_record") as batch:
        batch.drop_column("pending_map")


def downgrade() -> None:
    with op.batch_alter_table("raw_record") as batch:
        batch.add_column(sa.Column("pending_map", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("raw_record") as batch:
        batch.alter_column("pending_map", server_default=None)
    op.execute(
        "UPDATE raw_record SET pending_map = true WHERE EXISTS "
        "(SELECT 1 FROM raw_pending p WHERE p.raw_id = raw_record.id AND p.system = raw_record.system)"
    )
    op.create_index(
        "ix_raw_record_pending",
        "raw_record",
        ["system", "id"],
        unique=False,
        sqlite_where=sa.text("pending_map IS 1"),
        postgresql_where=sa.text("pending_map IS TRUE"),
    )
    op.drop_table("raw_pending")
