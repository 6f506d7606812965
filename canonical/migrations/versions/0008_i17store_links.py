"""recon_link / recon_allocation: drop the indexes no reader uses (run_id on both, payment_id on allocations)

Every run replaces all the links and allocations, so ``run_id`` holds one value (no query filters on it), and no
query looks allocations up by payment (the reports scan them or look them up by invoice). The bulk write of a
run maintained these indexes for nothing: at 100k chains the two run_id indexes were 17% of the bytes written
and half of the insert CPU. Kept: ``recon_link.chain_id`` (chain detail) and ``recon_allocation.invoice_id``.

Revision ID: 0008_i17store_links
Revises: 0007_i17map_pending
"""

from alembic import op

revision = "0008_i17store_links"
down_revision = "0007_i17map_pending"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_recon_link_run_id", table_name="recon_link")
    op.drop_index("ix_recon_allocation_run_id", table_name="recon_allocation")
    op.drop_index("ix_recon_allocation_payment_id", table_name="recon_allocation")


def downgrade() -> None:
    op.create_index("ix_recon_allocation_payment_id", "recon_allocation", ["payment_id"], unique=False)
    op.create_index("ix_recon_allocation_run_id", "recon_allocation", ["run_id"], unique=False)
    op.create_index("ix_recon_link_run_id", "recon_link", ["run_id"], unique=False)
