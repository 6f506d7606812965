"""work queue: assignee and snooze on exceptions, the action of each audit row

Revision ID: 0004_i14_worklist
Revises: 0003_reconcile
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_i14_worklist"
down_revision = "0003_reconcile"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recon_exception") as batch:
        batch.add_column(sa.Column("assignee", sa.String(length=400), nullable=True))
        batch.add_column(sa.Column("snoozed_until", sa.Date(), nullable=True))
    with op.batch_alter_table("recon_exception_audit") as batch:
        batch.add_column(sa.Column("action", sa.String(length=16), nullable=False, server_default="change"))
    # Name what the rows written before this revision did (they only changed the status).
    op.execute("""
        UPDATE recon_exception_audit SET action = CASE
            WHEN from_status IS NULL THEN 'detected'
            WHEN actor = 'reconcile' AND to_status = 'resolved' THEN 'auto_resolved'
            WHEN actor = 'reconcile' AND to_status = 'open' THEN 'reopened'
            WHEN to_status = 'acknowledged' THEN 'acknowledge'
            WHEN to_status = 'resolved' THEN 'resolve'
            ELSE 'reopen' END
    """)


def downgrade() -> None:
    with op.batch_alter_table("recon_exception_audit") as batch:
        batch.drop_column("action")
    with op.batch_alter_table("recon_exception") as batch:
        batch.drop_column("snoozed_until")
        batch.drop_column("assignee")
