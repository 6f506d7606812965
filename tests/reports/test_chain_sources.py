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
from reports import finance
from reports.finance import (
    _ROW_COLUMNS,
    _batches,
    _chain_ids,
    _chain_sources,
    _ChainSources,
    _exceptions,
    _source_frames,
    build_report,
)
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


def _codes(exceptions: list[dict[str, Any]]) -> dict[str, set[str]]:
    codes: dict[str, set[str]] = defaultdict(set)
    for x in exceptions:
        if x["chain_id"]:
            codes[x["chain_id"]].add(x["code"])
    return codes


def _batched(store: Store, exceptions: list[dict[str, Any]], size: int) -> tuple[list[str], _ChainSources]:
    """The chains shown and what they are built from, read a batch of ``size`` chains at a time, put together."""
    codes = _codes(exceptions)
    frames = _source_frames(store.engine)
    ids: list[str] = []
    whole = _ChainSources({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, codes)
    for batch, part in _batches(frames, _chain_ids(frames, codes), size, set()):
        assert len(batch) <= size
        ids += batch
        got = _chain_sources(part, codes)
        for name in ("deals", "orders_of", "invoices_of", "stages_of", "stage_text", "order_rows", "inv_rows",
                     "pay_rows", "paid_on", "pays_on", "names"):
            mine, theirs = getattr(whole, name), getattr(got, name)
            for k, v in theirs.items():  # a row two batches name is read in both, alike
                assert k not in mine or repr(mine[k]) == repr(v) or name in ("orders_of", "invoices_of", "stages_of")
                mine[k] = v
    return ids, whole


@pytest.mark.parametrize("helpers", [False, True], ids=["in-process", "helpers"])
def test_chain_sources_are_what_the_store_holds(world: tuple[Store, dict[str, str]], helpers: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store, edges = world
    if helpers:  # read as a large store is: by the helper processes (PostgreSQL: connectorx either way)
        monkeypatch.setattr(columnar, "SMALL", 0)
    with store.engine.connect() as conn:
        exceptions = _exceptions(conn)
    ids, got = _batched(store, exceptions, 7)  # batches of 7 chains: a chain's rows are read with its batch
    want = _expected(store)
    won = {k for k, v in want["rows"]["deal"].items() if v[4] == "closed_won"}
    assert ids == sorted(won | set(want["lists"]["orders"]) | set(want["lists"]["invoices"])
                         | (set(_codes(exceptions)) & set(want["rows"]["deal"])))
    assert set(got.deals) == set(ids) & set(want["rows"]["deal"])
    for entity, held, named in (("deal", got.deals, ids), ("order", got.order_rows, got.orders_of),
                                ("invoice", got.inv_rows, got.invoices_of), ("payment", got.pay_rows, got.pays_on)):
        # repr: the same types and the same exponents (Decimal("0.00") == Decimal("0") but is not written alike)
        assert {k: repr(tuple(v)) for k, v in held.items()} == {k: repr(want["rows"][entity][k]) for k in held}
        names = named if entity == "deal" else [i for some in named.values() for i in some]  # type: ignore[attr-defined]
        assert {i for i in names if i in want["rows"][entity]} <= set(held)  # every row a chain names was read
        for row in held.values():
            assert tuple(row) == (row.id, *(getattr(row, c) for c in _ROW_COLUMNS[entity]), *(getattr(row, c) for c in SRC))
    totals = {v.total for v in got.inv_rows.values()}
    assert {Decimal("1.23E+29"), None} <= totals
    if store.engine.dialect.name == "sqlite":  # the text as written (PostgreSQL's NUMERIC keeps the digits, not the form)
        assert "Decimal('1.23E+29')" in {repr(t) for t in totals}
    assert edges["gone_deal"] not in got.deals and edges["gone_order"] in got.order_rows
    assert repr(got.order_rows[edges["zero_order"]].total) == "Decimal('0.00')"
    assert repr(got.pay_rows[edges["payment"]].amount) == "Decimal('12.3400')"
    shown = set(ids)
    assert _sorted(got.orders_of) == {k: v for k, v in _sorted(want["lists"]["orders"]).items() if k in shown}
    assert _sorted(got.invoices_of) == {k: v for k, v in _sorted(want["lists"]["invoices"]).items() if k in shown}
    assert _sorted(got.stages_of) == {k: v for k, v in _sorted(want["lists"]["stages"]).items() if k[0] in shown}
    assert got.stage_text == {k: want["texts"][k] for k in got.stage_text}
    assert any(t == i for i, t in got.stage_text.items())  # a quote without number
    assert {i for ids_ in got.stages_of.values() for i in ids_} <= set(got.stage_text) | {
        i for i in {j for v in want["lists"]["stages"].values() for j in v} if i not in want["texts"]}
    invoices = {i for v in got.invoices_of.values() for i in v}
    assert {k: repr(v) for k, v in got.paid_on.items()} == {k: repr(v) for k, v in want["paid"].items()
                                                            if k in invoices}
    assert _sorted(got.pays_on) == {k: v for k, v in _sorted(want["pays"]).items() if k in invoices}
    assert got.names == {d.account_id: want["names"][d.account_id] for d in got.deals.values()
                         if d.account_id in want["names"]}


def test_the_report_is_the_same_built_in_batches(world: tuple[Store, dict[str, str]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Chains built a few at a time give the same table and the same records as built in one go: a record two
    batches name (here an invoice linked to a chain of the first batch and to one of the last) is kept once, with
    the first chain that names it."""
    store, _ = world
    lk = recon_link.c
    with store.engine.begin() as conn:
        first, last = (conn.execute(sa.select(lk.chain_id).where(lk.to_entity == "invoice").order_by(order))
                       .scalars().first() for order in (lk.chain_id, lk.chain_id.desc()))
        invoice = conn.execute(sa.select(lk.to_id).where(lk.chain_id == first, lk.to_entity == "invoice")).scalar()
        added = conn.execute(recon_link.insert().values(
            chain_id=last, from_entity="order", from_id="x", to_entity="invoice", to_id=invoice, rule_id="test",
            evidence={}, confidence=Decimal(1))).inserted_primary_key[0]
    try:
        whole = build_report(store, monthly=False)
        monkeypatch.setattr(finance, "CHAIN_BATCH", 5)
        batched = build_report(store, monthly=False)
    finally:
        with store.engine.begin() as conn:
            conn.execute(recon_link.delete().where(lk.id == added))
    assert len(whole.chains) > 15 and len(batched.chains._frames) == -(-len(whole.chains) // 5)
    assert list(batched.chains) == list(whole.chains)
    assert {c["chain_id"] for c in whole.chains.first(len(whole.chains)) if invoice in c["record_ids"]} >= {first, last}
    assert list(batched.records.with_chain()) == list(whole.records.with_chain())
    ids = [r.id for r in batched.records.values()]
    assert len(ids) == len(set(ids)) and invoice in ids
    assert dict((r.id, c) for c, r in batched.records.with_chain())[invoice] == first
