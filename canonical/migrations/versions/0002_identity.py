"""identity review candidates

Revision ID: 0002_identity
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import canonical.tables

revision = "0002_identity"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_candidate",
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("left_id", sa.String(length=400), nullable=False),
        sa.Column("right_id", sa.String(length=400), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column("confidence", canonical.tables.Amount(), nullable=False),
        sa.Column("evidence", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                  nullable=False),
        sa.Column("created_at", canonical.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entity", "left_id", "right_id", name=op.f("pk_identity_candidate")),
    )
    op.create_index(op.f("ix_identity_candidate_right_id"), "identity_candidate", ["right_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_identity_candidate_right_id"), table_name="identity_candidate")
    op.drop_table("identity_candidate")
