"""push-crm: the values last written to each CRM record (idempotent, quiet write-back)

Revision ID: 0004_i15_crm_push
Revises: 0004_i14_worklist
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import canonical.tables

revision = "0004_i15_crm_push"
down_revision = "0004_i14_worklist"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = canonical.tables.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crm_push_state",
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("object", sa.String(length=128), nullable=False),
        sa.Column("record_id", sa.String(length=255), nullable=False),
        sa.Column("canonical_id", sa.String(length=400), nullable=True),
        sa.Column("content_hash", sa.String(length=32), nullable=True),
        sa.Column("fields", _JSON, nullable=False),
        sa.Column("written_at", _TS, nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("system", "object", "record_id", name=op.f("pk_crm_push_state")),
    )


def downgrade() -> None:
    op.drop_table("crm_push_state")
