"""What the chain table is built from, read column-wise (by this process for a small store, by the helper processes
for a large one), is what the store holds, value for value: amounts as exact as they were written (their exponent
kept: ``0.00``, ``12.3400``, ``1.23E+29``), dates as dates, deleted deals left out, deleted orders kept."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import columnar
from canonical import tables as ct
from canonical.store import Store
from ltc.app.config import Config
from reconcile.engine import run_reconciliation
from reconcile.tables import recon_allocation, recon_link
from reports.finance import _ROW_COLUMNS, _chain_sources, _exceptions
from sandbox.scenario import generate

SRC = ("source_system", "source_object", "source_id")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict[str, str]]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_new_database")()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('chain-sources') / 's.db'}"
    world = generate(60, seed=11)
    store = Store.open(url)
    world.load(store)
    run_reconciliation(store, Config(), world.as_of)
    with store.engine.begin() as conn:  # the edges, on linked records
        linked = {e: [r[0] for r in conn.execute(sa.select(recon_link.c.to_id).where(
            recon_link.c.to_entity == e, recon_link.c.chain_id.is_not(None)).order_by(recon_link.c.to_id))]
            for e in ("order", "invoice", "quote")}
        order, invoice, quote = ct.table_for("order"), ct.table_for("invoice"), ct.table_for("quote")
        deal, payment = ct.table_for("deal"), ct.table_for("payment")
        conn.execute(order.update().where(order.c.id == linked["order"][0]).values(total=Decimal("0.00"), number=""))
        conn.execute(order.update().where(order.c.id == linked["order"][1]).values(
            deleted_at=datetime(2026, 1, 2, tzinfo=UTC)))
        conn.execute(invoice.update().where(invoice.c.id == linked["invoice"][0]).values(total=Decimal("1.23E+29")))
        conn.execute(invoice.update().where(invoice.c.id == linked["invoice"][1]).values(total=None, issue_date=None))
        conn.execute(quote.update().where(quote.c.id == linked["quote"][0]).values(number=None, status=None))
        first_payment = conn.execute(sa.select(payment.c.id).order_by(payment.c.id)).scalar()
        conn.execute(payment.update().where(payment.c.id == first_payment).values(amount=Decimal("12.3400")))
        conn.execute(recon_allocation.update().where(recon_allocation.c.id == 1).values(amount=Decimal("7.500")))
        gone = conn.execute(sa.select(deal.c.id).where(deal.c.stage == "closed_won").order_by(deal.c.id)).scalar()
        conn.execute(deal.update().where(deal.c.id == gone).values(deleted_at=datetime(2026, 1, 3, tzinfo=UTC)))
    return store, {"gone_deal": gone, "gone_order": linked["order"][1], "zero_order": linked["order"][0],
                   "payment": first_payment}


def _expected(store: Store) -> dict[str, Any]:
    """The same sources read through SQLAlchemy, row by row."""
    with store.engine.connect() as conn:
        rows = {}
        for entity, cols in _ROW_COLUMNS.items():
            t = ct.table_for(entity)
            query = sa.select(t.c.id, *(t.c[c] for c in cols), *(t.c[c] for c in SRC))
            if entity == "deal":
                query = query.where(t.c.deleted_at.is_(None))
            rows[entity] = {r[0]: tuple(r) for r in conn.execute(query)}
        lists: dict[str, dict[Any, list[str]]] = {"orders": defaultdict(list), "invoices": defaultdict(list),
                                                  "stages": defaultdict(list)}
        lk = recon_link.c
        for chain, frm, to, to_id in conn.execute(sa.select(lk.chain_id, lk.from_entity, lk.to_entity, lk.to_id)
                                                  .where(lk.chain_id.is_not(None))):
            if to == "order" and frm == "deal":
                lists["orders"][chain].append(to_id)
            elif to == "invoice":
                lists["invoices"][chain].append(to_id)
            elif to in ("quote", "contract", "delivery"):
                lists["stages"][chain, to].append(to_id)
        texts = {}
        linked = {i for ids in lists["stages"].values() for i in ids}
        for entity, status in (("quote", "status"), ("contract", "status"), ("delivery", "state")):
            t = ct.table_for(entity)
            for rid, number, st in conn.execute(sa.select(t.c.id, t.c.number, t.c[status])):
                if rid in linked:
                    texts[rid] = f"{number or rid} ({st})" if st else str(number or rid)
        paid: dict[str, Decimal] = defaultdict(lambda: Decimal(0))
        pays: dict[str, list[str]] = defaultdict(list)
        al = recon_allocation.c
        for inv, pay, amount in conn.execute(sa.select(al.invoice_id, al.payment_id, al.amount)):
            paid[inv] += amount
            pays[inv].append(pay)
        account = ct.table_for("account")
        names = dict(conn.execute(sa.select(account.c.id, account.c.name)).all())
    return {"rows": rows, "lists": lists, "texts": texts, "paid": paid, "pays": pays, "names": names}


def _sorted(d: dict[Any, list[str]]) -> dict[Any, list[str]]:
    return {k: sorted(v) for k, v in d.items()}


@pytest.mark.parametrize("helpers", [False, True], ids=["in-process", "helpers"])
def test_chain_sources_are_what_the_store_holds(world: tuple[Store, dict[str, str]], helpers: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store, edges = world
    if helpers:  # read as a large store is: by the helper processes (PostgreSQL: connectorx either way)
        monkeypatch.setattr(columnar, "SMALL", 0)
    with store.engine.connect() as conn:
        exceptions = _exceptions(conn)
    got = _chain_sources(store.engine, exceptions)
    want = _expected(store)
    for entity, held in (("deal", got.deals), ("order", got.order_rows), ("invoice", got.inv_rows),
                         ("payment", got.pay_rows)):
        # repr: the same types and the same exponents (Decimal("0.00") == Decimal("0") but is not written alike)
        assert {k: repr(tuple(v)) for k, v in held.items()} == {k: repr(v) for k, v in want["rows"][entity].items()}
        for row in held.values():
            assert tuple(row) == (row.id, *(getattr(row, c) for c in _ROW_COLUMNS[entity]), *(getattr(row, c) for c in SRC))
    totals = {v.total for v in got.inv_rows.values()}
    assert {Decimal("1.23E+29"), None} <= totals
    if store.engine.dialect.name == "sqlite":  # the text as written (PostgreSQL's NUMERIC keeps the digits, not the form)
        assert "Decimal('1.23E+29')" in {repr(t) for t in totals}
    assert edges["gone_deal"] not in got.deals and edges["gone_order"] in got.order_rows
    assert repr(got.order_rows[edges["zero_order"]].total) == "Decimal('0.00')"
    assert repr(got.pay_rows[edges["payment"]].amount) == "Decimal('12.3400')"
    assert _sorted(got.orders_of) == _sorted(want["lists"]["orders"])
    assert _sorted(got.invoices_of) == _sorted(want["lists"]["invoices"])
    assert _sorted(got.stages_of) == _sorted(want["lists"]["stages"])
    assert got.stage_text == want["texts"] and any(t == i for i, t in got.stage_text.items())  # a quote without number
    assert {k: repr(v) for k, v in got.paid_on.items()} == {k: repr(v) for k, v in want["paid"].items()}
    assert _sorted(got.pays_on) == _sorted(want["pays"])
    assert got.names == want["names"]

