"""recon_link / recon_allocation: drop ``run_id``

Every run replaces all the links and allocations, so the column held one value (the run that made them: the latest
successful ``reconcile`` run, which the ``run`` table names) repeated on every row, and no reader used it. At 100k
chains it was 18% of the bytes a run wrote to these tables (a sixth of the bulk write's CPU). The rows stay as they
are otherwise; a downgrade gives them back the latest reconcile run's id ('' if there is none).

Revision ID: 0010_i17links
Revises: 0009_i17map_pending2
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_i17links"
down_revision = "0009_i17map_pending2"
branch_labels = None
depends_on = None

_TABLES = ("recon_link", "recon_allocation")


def upgrade() -> None:
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("run_id")


def downgrade() -> None:
    latest = ("(SELECT id FROM run WHERE kind = 'reconcile' AND status = 'success' "
              "ORDER BY started_at DESC LIMIT 1)")
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("run_id", sa.String(length=64), nullable=True))
        op.execute(f"UPDATE {name} SET run_id = COALESCE({latest}, '')")
        with op.batch_alter_table(name) as batch:
            batch.alter_column("run_id", existing_type=sa.String(length=64), nullable=False)
