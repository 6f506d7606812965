"""recon_link.chain_id / recon_allocation.invoice_id: byte-order ("C") collation on PostgreSQL

Both are canonical ids, looked up by equality only (a chain's links, an invoice's allocations), never sorted for
people. Every run rebuilds their indexes (the links are replaced at once, :func:`canonical.columnar._pg_swap_in`),
and a text index under the database's default collation (``C.UTF-8``, ``en_US.UTF-8``…) sorts with the C library's
locale comparison: at 1M chains (7.5M links) ``ix_recon_link_chain_id`` took 3.7 s to build, 2.4 s in byte order.
Equality is the same under either collation (both deterministic), and so are the joins with the canonical tables'
default-collation ids. SQLite compares bytes already: nothing changes there.

Revision ID: 0011_i17c_collation
Revises: 0010_i17links
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_i17c_collation"
down_revision = "0010_i17links"
branch_labels = None
depends_on = None

_COLUMNS = (("recon_link", "chain_id", True), ("recon_allocation", "invoice_id", False))


def _collate(collation: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, nullable in _COLUMNS:
        op.alter_column(table, column, existing_type=sa.String(400), existing_nullable=nullable,
                        type_=sa.String(400, collation=collation))


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate(None)
