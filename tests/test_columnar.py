"""Columnar store I/O (canonical.columnar) on SQLite and PostgreSQL: what goes in comes back, exactly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest
import sqlalchemy as sa

from canonical import columnar, tables
from canonical.store import Store

PAY = tables.table_for("payment")


@pytest.fixture(autouse=True, params=["helper process", "in process"])
def sqlite_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite I/O both ways: through the helper process (connectorx / ADBC) and, for small stores, here."""
    monkeypatch.setattr(columnar, "SMALL", 0 if request.param == "helper process" else 10**9)


def _rows(n: int) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for i in range(n):
        out.append({c.name: None for c in PAY.columns} | {
            "id": f"s:payment:{i}", "source_system": "s", "source_object": "payment", "source_id": str(i),
            "attributes": {} if i % 3 else {"k": [1, "x"]}, "kind": "payment", "currency": "KWD",
            # a NULL first: a driver typing columns by their first values would fail here
            "amount": None if i == 0 else Decimal(i) / Decimal(1000) + Decimal("123456789012345678.125"),
            "fee": Decimal("0.10") if i % 2 else None, "payment_date": date(2026, 1, 1 + i % 28),
            "remittance": None if i < 5 else f'inv "{i}", paid\nthanks', "payer_name": "" if i == 7 else "ACME",
            "source_updated_at": datetime(2026, 2, 3, 4, 5, 6, i, tzinfo=UTC) if i % 4 else None})
    return out


def test_read_returns_exactly_what_the_orm_wrote(store: Store) -> None:
    rows = _rows(3000)
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "payment", rows)
        # an amount stored in exponent form (Decimal's str of 1E+3) stays exact
        conn.execute(PAY.update().where(PAY.c.id == "s:payment:1").values(fee=Decimal("1E+3")))
        conn.execute(PAY.update().where(PAY.c.id == "s:payment:2").values(deleted_at=datetime.now(UTC)))
    df = columnar.read_table(store.engine, PAY, ["id", "amount", "fee", "payment_date", "remittance", "payer_name",
                                                 "source_updated_at", "attributes"],
                             dtypes={"amount": pl.Decimal(38, 3), "fee": pl.Decimal(38, 4)})
    assert df.height == 2999 and "s:payment:2" not in df["id"].to_list()  # live rows only
    assert df.schema["amount"] == pl.Decimal(38, 3) and df.schema["payment_date"] == pl.Date
    assert df.schema["source_updated_at"] == pl.Datetime("us", "UTC")
    got = {r["id"]: r for r in df.iter_rows(named=True)}
    for r in rows:
        if r["id"] == "s:payment:2":
            continue
        g = got[r["id"]]
        assert g["amount"] == r["amount"] and (g["fee"] == (Decimal(1000) if r["id"] == "s:payment:1" else r["fee"]))
        assert (g["payment_date"], g["remittance"], g["payer_name"], g["source_updated_at"]) == (
            r["payment_date"], r["remittance"], r["payer_name"], r["source_updated_at"])
        assert json.loads(g["attributes"]) == r["attributes"]  # JSON as its text


def test_bulk_load_writes_what_the_orm_reads_back(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(50)
    frame = pl.DataFrame([{k: v for k, v in r.items() if k != "attributes"} for r in rows],
                         schema_overrides={"amount": pl.Decimal(38, 3), "fee": pl.Decimal(38, 2)}, infer_schema_length=None
                         ).with_columns(pl.lit("{}").alias("attributes"))
    n = columnar.write_frames(store.engine, {PAY: frame})
    assert n == 50
    with store.engine.connect() as conn:
        back = {r.id: r for r in conn.execute(sa.select(PAY))}
    for r in rows:
        b = back[r["id"]]
        assert (b.amount, b.fee, b.payment_date, b.remittance, b.payer_name, b.source_updated_at) == (
            r["amount"], r["fee"], r["payment_date"], r["remittance"], r["payer_name"], r["source_updated_at"])
        assert isinstance(b.amount, Decimal | None) and b.attributes == {}
    # delete + append is one transaction: a failing append leaves the table as it was
    bad = frame.with_columns(pl.lit("not json").alias("attributes")) if store.engine.dialect.name == "postgresql" \
        else frame  # SQLite: the same ids again violate the primary key
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        columnar.write_frames(store.engine, {PAY: bad}, delete=[tables.table_for("deal").name])
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(PAY)).scalar_one() == 50


def test_float_amounts_are_refused() -> None:
    with pytest.raises(TypeError, match="not floats"):
        columnar.storage_frame(PAY, pl.DataFrame({"amount": [1.1]}), "sqlite")
