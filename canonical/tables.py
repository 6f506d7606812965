"""SQLAlchemy 2 tables: raw landing, stream state, runs, quarantine, lineage and the canonical entities.

The canonical tables are derived from the dataclasses in :mod:`canonical.model`, so the model is
declared once. Column types that keep the project's promises on every backend:

* :class:`Amount` is exact ``NUMERIC`` on PostgreSQL and ``TEXT`` on SQLite (SQLite's NUMERIC
  affinity would turn ``0.10`` into a float). Money arithmetic is done in ``Decimal``/Polars Decimal,
  never with SQLite's ``SUM``.
* :class:`UTCDateTime` refuses naive datetimes and always returns aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from canonical import model
from canonical.money import Money


class Amount(sa.types.TypeDecorator[Decimal]):
    """Exact decimal: NUMERIC on PostgreSQL, canonical text on SQLite."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float | bool) or not isinstance(value, Decimal | int):
            raise TypeError(f"amount columns take Decimal, not {type(value).__name__}: {value!r}")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware instant, stored in UTC; naive datetimes are refused."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"instant columns take datetime, not {type(value).__name__}")
        value = model.utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# The one MetaData of the store. Higher layers add their tables to it in their own ``tables`` module
# (reconcile/tables.py); ltc/app/schema.py imports them all for the whole schema.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    }
)

# --- pipeline tables ----------------------------------------------------------------------------

run = sa.Table(
    "run",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),  # sync | map | reconcile | push | import
    sa.Column("source", sa.String(128)),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("status", sa.String(16), nullable=False),  # running | success | paused | failed
    sa.Column("counts", JSONType, nullable=False, default=dict),
    sa.Column("message", sa.Text),
)

raw_record = sa.Table(
    "raw_record",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("system", sa.String(64), nullable=False),  # connector instance name, e.g. "salesforce"
    sa.Column("object", sa.String(128), nullable=False),  # source object, e.g. "Opportunity"
    sa.Column("source_id", sa.String(255), nullable=False),
    sa.Column("payload", JSONType, nullable=False),
    sa.Column("content_hash", sa.String(32), nullable=False),
    sa.Column("source_updated_at", UTCDateTime),
    sa.Column("fetched_at", UTCDateTime, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("run_id", sa.String(64)),
    sa.UniqueConstraint("system", "object", "source_id"),
)

# The raw versions that wait to be mapped: one narrow row per pending raw row, with the content hash
# of the version that made it pending. Landing a changed version writes it (a newer version replaces
# the hash); the mapping stage reads a system's rows in raw id order and deletes exactly the versions
# it mapped (same id and hash), so a version landed meanwhile stays. Kept apart from raw_record so
# that clearing the flag does not rewrite the wide raw row with its payload.
raw_pending = sa.Table(
    "raw_pending",
    metadata,
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("raw_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("content_hash", sa.String(32), nullable=False),
    sqlite_with_rowid=False,
)

stream_state = sa.Table(
    "stream_state",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("stream", sa.String(128), primary_key=True),
    sa.Column("cursor", JSONType),
    sa.Column("status", sa.String(16)),  # success | paused | failed | running
    sa.Column("last_run_id", sa.String(64)),
    sa.Column("last_run_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("records_seen", sa.BigInteger, nullable=False, default=0),
    sa.Column("records_written", sa.BigInteger, nullable=False, default=0),
    sa.Column("quarantined", sa.BigInteger, nullable=False, default=0),
    sa.Column("source_count", sa.BigInteger),
    sa.Column("store_count", sa.BigInteger),
    sa.Column("message", sa.Text),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64)),
    sa.Column("stage", sa.String(16), nullable=False),  # fetch | map | validate
    sa.Column("system", sa.String(64), nullable=False),
    sa.Column("object", sa.String(128), nullable=False),
    sa.Column("source_id", sa.String(255)),
    sa.Column("field", sa.String(128)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", JSONType),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    # stage, system, object, source id, field, reason and payload hashed: the same rejection found
    # again (a re-read page, a rerun) is not quarantined twice while it is open
    sa.Column("fingerprint", sa.String(32)),
    sa.Index(None, "system", "object", "source_id"),
    sa.Index(None, "fingerprint"),
)

# SQLite's stage locks (canonical/locks.py): one row per held lock, naming its holder process.
stage_lock = sa.Table(
    "stage_lock",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(300), nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
)

# push-crm: per CRM record, the values ltc-hub last wrote and their content hash (an unchanged record
# is not written again), or the CRM's message when the last write was refused (retried next run).
crm_push_state = sa.Table(
    "crm_push_state",
    metadata,
    sa.Column("system", sa.String(64), primary_key=True),  # the CRM source of ltc.yaml
    sa.Column("object", sa.String(128), primary_key=True),  # Opportunity, Account, deals, companies
    sa.Column("record_id", sa.String(255), primary_key=True),
    sa.Column("canonical_id", sa.String(400)),
    sa.Column("content_hash", sa.String(32)),  # of ``fields``; NULL until a write succeeded
    sa.Column("fields", JSONType, nullable=False),  # CRM field name -> value as last written
    sa.Column("written_at", UTCDateTime),
    sa.Column("run_id", sa.String(64)),
    sa.Column("error", sa.Text),  # the CRM's refusal of the last attempt; NULL when it succeeded
    sa.Column("error_at", UTCDateTime),
)

lineage = sa.Table(
    "lineage",
    metadata,
    sa.Column("entity", sa.String(32), primary_key=True),
    sa.Column("canonical_id", sa.String(400), primary_key=True),
    sa.Column("raw_id", sa.BigInteger, primary_key=True),
    sa.Index(None, "raw_id"),
)

# --- canonical tables, derived from canonical.model --------------------------------------------

TABLE_NAMES: dict[str, str] = {
    "account": "account",
    "contact": "contact",
    "lead": "lead",
    "deal": "deal",
    "deal_line": "deal_line",
    "quote": "quote",
    "quote_line": "quote_line",
    "contract": "contract",
    "order": "sales_order",
    "order_line": "order_line",
    "delivery": "delivery",
    "delivery_line": "delivery_line",
    "invoice": "invoice",
    "invoice_line": "invoice_line",
    "payment": "payment",
}

# Columns that other stages look rows up by.
_INDEXED = {
    "account_id",
    "deal_id",
    "order_id",
    "invoice_id",
    "quote_id",
    "delivery_id",
    "deal_ref",
    "order_ref",
    "invoice_ref",
    "number",
    "normalized_name",
    "tax_id",
}


def _column_type(tp: Any) -> sa.types.TypeEngine[Any]:
    if tp is Money or tp is Decimal:
        return Amount()
    if tp is datetime:
        return UTCDateTime()
    if tp is date:
        return sa.Date()
    if tp is int:
        return sa.BigInteger()
    if tp is bool:
        return sa.Boolean()
    if tp is str:
        return sa.String(400)
    return JSONType


def _entity_table(entity: str, cls: type[model.Entity]) -> sa.Table:
    cols: list[sa.Column[Any] | sa.UniqueConstraint] = []
    for name, tp in model.field_types(cls).items():
        if name == "id":
            cols.append(sa.Column("id", sa.String(400), primary_key=True))
        elif name in ("source_system", "source_object", "source_id"):
            cols.append(sa.Column(name, sa.String(255), nullable=False))
        elif name == "attributes":
            cols.append(sa.Column(name, JSONType, nullable=False, default=dict))
        else:
            cols.append(sa.Column(name, _column_type(tp), index=name in _INDEXED))
    cols.append(sa.UniqueConstraint("source_system", "source_object", "source_id"))
    return sa.Table(TABLE_NAMES[entity], metadata, *cols)


entity_tables: dict[str, sa.Table] = {name: _entity_table(name, cls) for name, cls in model.ENTITIES.items()}

cross_ref = sa.Table(
    "cross_ref",
    metadata,
    sa.Column("entity", sa.String(32), primary_key=True),
    sa.Column("member_id", sa.String(400), primary_key=True),
    sa.Column("cluster_id", sa.String(400), nullable=False, index=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("confidence", Amount, nullable=False),
    sa.Column("evidence", JSONType, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Identity review candidates (canonical/identity.py): pairs scored between the review and the auto
# threshold, or auto links refused because they would join two different tax ids. Reconciliation
# raises CUSTOMER_MISMATCH from them. entity "account": two accounts; "payment": payer -> account.
identity_candidate = sa.Table(
    "identity_candidate",
    metadata,
    sa.Column("entity", sa.String(32), primary_key=True),
    sa.Column("left_id", sa.String(400), primary_key=True),
    sa.Column("right_id", sa.String(400), primary_key=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("confidence", Amount, nullable=False),
    sa.Column("evidence", JSONType, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "right_id"),
)


def table_for(entity: str) -> sa.Table:
    """The table of a canonical entity name (``"deal"``, ``"order"``...)."""
    try:
        return entity_tables[entity]
    except KeyError:
        raise KeyError(f"unknown canonical entity {entity!r}; known: {', '.join(entity_tables)}") from None
