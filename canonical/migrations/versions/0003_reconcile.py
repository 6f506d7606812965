"""reconciliation: exceptions + audit, links, allocations, FX rates, KPI snapshots

Revision ID: 0003_reconcile
Revises: 0002_identity
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import canonical.tables

revision = "0003_reconcile"
down_revision = "0002_identity"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = canonical.tables.UTCDateTime(timezone=True)
_AMT = canonical.tables.Amount()


def upgrade() -> None:
    op.create_table(
        "recon_exception",
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("chain_id", sa.String(length=400), nullable=True),
        sa.Column("subject_ids", _JSON, nullable=False),
        sa.Column("source_ids", _JSON, nullable=False),
        sa.Column("owner", sa.String(length=400), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("amount_at_risk", _AMT, nullable=True),
        sa.Column("reporting_currency", sa.String(length=3), nullable=True),
        sa.Column("amount_reporting", _AMT, nullable=True),
        sa.Column("evidence", _JSON, nullable=False),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("last_run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_recon_exception")),
    )
    op.create_index(op.f("ix_recon_exception_code"), "recon_exception", ["code"])
    op.create_index(op.f("ix_recon_exception_status"), "recon_exception", ["status"])
    op.create_table(
        "recon_exception_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_exception_audit")),
    )
    op.create_index(op.f("ix_recon_exception_audit_fingerprint"), "recon_exception_audit", ["fingerprint"])
    op.create_table(
        "recon_link",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("chain_id", sa.String(length=400), nullable=True),
        sa.Column("from_entity", sa.String(length=32), nullable=False),
        sa.Column("from_id", sa.String(length=400), nullable=False),
        sa.Column("to_entity", sa.String(length=32), nullable=False),
        sa.Column("to_id", sa.String(length=400), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("evidence", _JSON, nullable=False),
        sa.Column("confidence", _AMT, nullable=False),
        sa.Column("runner_up_id", sa.String(length=400), nullable=True),
        sa.Column("margin", _AMT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_link")),
    )
    op.create_index(op.f("ix_recon_link_run_id"), "recon_link", ["run_id"])
    op.create_index(op.f("ix_recon_link_chain_id"), "recon_link", ["chain_id"])
    op.create_table(
        "recon_allocation",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=400), nullable=False),
        sa.Column("invoice_id", sa.String(length=400), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", _AMT, nullable=False),
        sa.Column("payment_currency", sa.String(length=3), nullable=False),
        sa.Column("payment_amount", _AMT, nullable=False),
        sa.Column("fx_rate", _AMT, nullable=True),
        sa.Column("fx_difference", _AMT, nullable=True),
        sa.Column("writeoff", _AMT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_allocation")),
    )
    op.create_index(op.f("ix_recon_allocation_run_id"), "recon_allocation", ["run_id"])
    op.create_index(op.f("ix_recon_allocation_payment_id"), "recon_allocation", ["payment_id"])
    op.create_index(op.f("ix_recon_allocation_invoice_id"), "recon_allocation", ["invoice_id"])
    op.create_table(
        "fx_rate",
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("rate_date", sa.Date(), nullable=False),
        sa.Column("rate", _AMT, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("base", "quote", "rate_date", name=op.f("pk_fx_rate")),
    )
    op.create_table(
        "kpi_snapshot",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("owner", sa.String(length=400), nullable=True),
        sa.Column("kpi", sa.String(length=64), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("value", _AMT, nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("numerator", _AMT, nullable=True),
        sa.Column("denominator", _AMT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kpi_snapshot")),
    )
    op.create_index(op.f("ix_kpi_snapshot_run_id"), "kpi_snapshot", ["run_id"])


def downgrade() -> None:
    for name in ("kpi_snapshot", "fx_rate", "recon_allocation", "recon_link", "recon_exception_audit",
                 "recon_exception"):
        op.drop_table(name)
