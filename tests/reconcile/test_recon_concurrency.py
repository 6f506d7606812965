"""Two reconciliations at once (issue 13): they serialise on the store's lock, so links and
allocations are never doubled and the exception upsert never collides; amounts at the sane bound
reconcile without overflowing Decimal128."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import sqlalchemy as sa

from canonical.money import sane_bound
from canonical.store import Store
from ltc.app.config import Config
from reconcile.engine import run_reconciliation
from reconcile.tables import recon_allocation, recon_exception, recon_link
from sandbox.scenario import generate
from tests.reconcile.recon_helpers import deal, invoice, order, payment, world

WORLD = generate(60, seed=5)


def _count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_two_reconciliations_at_once_serialise_and_double_nothing(store: Store) -> None:
    WORLD.load(store)
    run_reconciliation(store, Config(), WORLD.as_of)
    expected = (_count(store, recon_link), _count(store, recon_allocation), _count(store, recon_exception))
    assert expected[0] > 0
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def one() -> None:
        barrier.wait()
        try:
            run_reconciliation(store, Config(), WORLD.as_of)
        except BaseException as exc:
            errors.append(exc)

    for _round in range(2):
        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert (_count(store, recon_link), _count(store, recon_allocation), _count(store, recon_exception)) == expected
    with store.engine.connect() as conn:
        states = dict(conn.execute(sa.text("SELECT status, count(*) FROM run WHERE kind = 'reconcile' GROUP BY status")).all())
    assert states == {"success": 7}


def test_amounts_at_the_sane_bound_reconcile_without_overflow() -> None:
    from reconcile.core import Settings, reconcile_frames

    big = str(sane_bound("USD") - Decimal("0.01"))
    vnd = str(sane_bound("VND") - 1)
    fr = world(
        deal=[deal("D1", big), deal("D2", vnd, ccy="VND")],
        order=[order("O1", "D1", big), order("O2", "D2", vnd, ccy="VND")],
        invoice=[invoice("I1", "O1", big), invoice("I2", "O2", vnd, ccy="VND")],
        payment=[payment("P1", big, ref="I1"), payment("P2", vnd, ref="I2", ccy="VND")],
    )
    core = reconcile_frames(fr, Settings.from_config(Config()), date(2026, 11, 1))
    paid = {r["invoice_id"]: r["amount"] for r in core.allocations.iter_rows(named=True)}
    assert paid == {"erp:invoice:I1": Decimal(big), "erp:invoice:I2": Decimal(vnd)}
