"""Reconciliation tables, registered on :data:`canonical.tables.metadata`.

* ``recon_exception``: one row per break, keyed on its stable fingerprint (hash of code + the
  identifying source keys), with its lifecycle status (open -> acknowledged -> resolved).
* ``recon_exception_audit``: every status change, assignment, comment and snooze, with who/when/why.
* ``recon_link`` / ``recon_allocation``: the links and payment allocations of the latest run (every run replaces
  them all, so a row names no run: the latest ``reconcile`` run in ``run`` that got as far as storing them made
  them, normally the latest successful one; ``0010_i17links``).
* ``fx_rate``: dated FX rates (1 ``base`` = ``rate`` ``quote``).
* ``kpi_snapshot``: KPI values per run, period, owner and named formula variant.
"""

from __future__ import annotations

import sqlalchemy as sa

from canonical.tables import Amount, JSONType, UTCDateTime, metadata

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
#: a canonical id looked up by equality only: byte order on PostgreSQL, whose default collation made each run's rebuild
#: of its index a third slower (``0011_i17c_collation``); SQLite compares bytes anyway
_KEY = sa.String(400).with_variant(sa.String(400, collation="C"), "postgresql")

recon_exception = sa.Table(
    "recon_exception",
    metadata,
    sa.Column("fingerprint", sa.String(32), primary_key=True),
    sa.Column("code", sa.String(32), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # open | acknowledged | resolved
    sa.Column("severity", sa.String(16), nullable=False),  # low | medium | high | critical
    sa.Column("chain_id", sa.String(400)),
    sa.Column("subject_ids", JSONType, nullable=False),  # canonical ids of the records involved
    sa.Column("source_ids", JSONType, nullable=False),  # their source ids
    sa.Column("owner", sa.String(400)),
    sa.Column("currency", sa.String(3)),
    sa.Column("amount_at_risk", Amount),
    sa.Column("reporting_currency", sa.String(3)),
    sa.Column("amount_reporting", Amount),
    sa.Column("evidence", JSONType, nullable=False),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("last_run_id", sa.String(64)),
    # Set by people (``ltc ui``, ``ltc exceptions assign|snooze``), never by a reconcile run: the owner a
    # person assigned (``owner`` stays the one reconciliation derived), and a date the exception is
    # hidden from the work queue until.
    sa.Column("assignee", sa.String(400)),
    sa.Column("snoozed_until", sa.Date),
)

recon_exception_audit = sa.Table(
    "recon_exception_audit",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(32), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64)),
    # detected | reopened | auto_resolved | acknowledge | resolve | reopen | assign | comment | snooze
    sa.Column("action", sa.String(16), nullable=False, server_default="change"),
)

recon_link = sa.Table(
    "recon_link",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("chain_id", _KEY, index=True),
    sa.Column("from_entity", sa.String(32), nullable=False),
    sa.Column("from_id", sa.String(400), nullable=False),
    sa.Column("to_entity", sa.String(32), nullable=False),
    sa.Column("to_id", sa.String(400), nullable=False),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("evidence", JSONType, nullable=False),
    sa.Column("confidence", Amount, nullable=False),
    sa.Column("runner_up_id", sa.String(400)),
    sa.Column("margin", Amount),
)

recon_allocation = sa.Table(
    "recon_allocation",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("payment_id", sa.String(400), nullable=False),  # no index: no query looks allocations up by payment
    sa.Column("invoice_id", _KEY, nullable=False, index=True),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),  # the invoice's currency
    sa.Column("amount", Amount, nullable=False),  # applied to the invoice, invoice currency
    sa.Column("payment_currency", sa.String(3), nullable=False),
    sa.Column("payment_amount", Amount, nullable=False),  # taken from the payment, its currency
    sa.Column("fx_rate", Amount),
    # The invoice's residual settled by this (its last) allocation: FX difference or tolerance write-off.
    sa.Column("fx_difference", Amount),
    sa.Column("writeoff", Amount),
)

fx_rate = sa.Table(
    "fx_rate",
    metadata,
    sa.Column("base", sa.String(3), primary_key=True),
    sa.Column("quote", sa.String(3), primary_key=True),
    sa.Column("rate_date", sa.Date, primary_key=True),
    sa.Column("rate", Amount, nullable=False),
    sa.Column("source", sa.String(64)),
)

kpi_snapshot = sa.Table(
    "kpi_snapshot",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("owner", sa.String(400)),  # NULL = all owners
    sa.Column("kpi", sa.String(64), nullable=False),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("value", Amount),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("numerator", Amount),
    sa.Column("denominator", Amount),
)
