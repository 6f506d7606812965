"""mappings/zoho.yaml on the example world's records (as the store gives them back), and the
world replayed end to end through the main job."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from canonical.store import Store
from mappings.engine import compile_for, map_records
from sandbox.world import read_world
from tests.mappings.mapping_fixtures import as_stored

WORLD = Path(__file__).resolve().parent.parent / "worlds" / "zoho"


@pytest.fixture(scope="module")
def rows() -> dict[str, dict[str, dict[str, Any]]]:
    world = read_world(WORLD)
    records = [(i, obj, rec["id"], as_stored(rec), None)
               for obj, recs in world.records["zoho"].items() for i, rec in enumerate(recs)]
    result = map_records(compile_for("zoho"), records)
    assert result.rejected == []
    assert result.ignored == 2  # two products: landed, not mapped
    return {e: {r["source_id"]: r for r in rs} for e, rs in result.rows.items()}


def test_accounts_and_contacts(rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    acc = rows["account"]["5725767000000412001"]
    assert acc["id"] == "zoho:account:5725767000000412001"
    assert (acc["name"], acc["domain"], acc["country"], acc["currency"]) == (
        "Sharma Textiles Pvt Ltd", "sharmatextiles.example.in", "IN", "INR")
    assert acc["owner"] == "5725767000000301001"
    assert acc["source_updated_at"] == datetime(2026, 9, 1, 4, 30, tzinfo=UTC)  # 10:00 +05:30
    con = rows["contact"]["5725767000000413001"]
    assert con["account_id"] == "zoho:account:5725767000000412001"
    assert (con["name"], con["email"]) == ("Vikram Sharma", "vikram@sharmatextiles.example.in")


def test_quote_and_its_quoted_items(rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    quote = rows["quote"]["5725767000000417001"]
    assert quote["id"] == "zoho:quote:5725767000000417001"
    assert (quote["name"], quote["status"], quote["source_status"]) == (
        "Quote for Sharma Looms 2026", "accepted", "Confirmed")
    assert quote["deal_id"] == "zoho:deal:5725767000000416001"
    assert quote["account_id"] == "zoho:account:5725767000000412001"
    assert (quote["currency"], quote["total"], quote["tax"], quote["untaxed"]) == (
        "INR", Decimal("265001.00"), Decimal("0"), Decimal("265001.00"))
    assert quote["valid_until"] == date(2026, 9, 30) and quote["quote_date"] == date(2026, 9, 10)
    lines = {r["source_id"]: r for r in rows["quote_line"].values() if r["quote_id"] == quote["id"]}
    assert set(lines) == {"5725767000000417101", "5725767000000417102"}
    loom = lines["5725767000000417101"]
    assert (loom["product_name"], loom["quantity"], loom["unit_price"], loom["amount"]) == (
        "Loom Controller", Decimal("2"), Decimal("125000.00"), Decimal("250000.00"))
    assert sum(r["amount"] for r in lines.values()) == quote["total"]


def test_leads(rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    lead = rows["lead"]["5725767000000414001"]
    assert (lead["name"], lead["company"], lead["status"], lead["lead_source"]) == (
        "Meera Iyer", "Iyer Exports", "Contacted", "Trade Show")
    assert lead["created_at"] == datetime(2026, 8, 20, 8, 30, tzinfo=UTC)
    assert rows["lead"]["5725767000000414002"]["name"] == "Gupta"


def test_deals(rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    won = rows["deal"]["5725767000000416001"]
    assert won["stage"] == "closed_won" and won["source_stage"] == "Closed Won"
    assert won["amount"] == Decimal("265001.00") and isinstance(won["amount"], Decimal)
    assert (won["currency"], won["close_date"]) == ("INR", date(2026, 9, 15))
    assert won["account_id"] == "zoho:account:5725767000000412001"
    assert won["attributes"]["contact_id"] == "5725767000000413001"
    assert rows["deal"]["5725767000000416002"]["stage"] == "closed_lost"  # Closed Lost to Competition
    open_deal = rows["deal"]["5725767000000416003"]
    assert (open_deal["stage"], open_deal["amount"]) == ("negotiation", Decimal("412500.75"))


def test_sales_orders_and_lines(rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    order = rows["order"]["5725767000000418001"]
    assert (order["number"], order["state"], order["deal_ref"]) == ("SO-2026-0042", "confirmed", "5725767000000416001")
    assert (order["untaxed"], order["tax"], order["total"]) == (
        Decimal("265001.00"), Decimal("47700.18"), Decimal("312701.18"))
    assert order["order_date"] == date(2026, 9, 16)
    lines = rows["order_line"]
    assert set(lines) == {"5725767000000418101", "5725767000000418102"}
    svc = lines["5725767000000418102"]
    assert svc["order_id"] == "zoho:order:5725767000000418001"
    assert (svc["product_name"], svc["quantity"], svc["unit_price"], svc["amount"], svc["currency"]) == (
        "Installation Service", Decimal("1"), Decimal("15001.00"), Decimal("15001.00"), "INR")
    assert sum(line["amount"] for line in lines.values()) == order["untaxed"]


def test_invoices_and_lines(rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    inv = rows["invoice"]["5725767000000419001"]
    assert (inv["number"], inv["kind"], inv["status"]) == ("INV-2026-0107", "invoice", "open")
    assert (inv["issue_date"], inv["due_date"]) == (date(2026, 10, 1), date(2026, 10, 31))
    assert (inv["total"], inv["tax"], inv["untaxed"]) == (Decimal("312701.18"), Decimal("47700.18"),
                                                          Decimal("265001.00"))
    assert inv["deal_ref"] == "5725767000000416001"
    assert inv["attributes"]["sales_order_id"] == "5725767000000418001"
    line = rows["invoice_line"]["5725767000000419101"]
    assert (line["invoice_id"], line["quantity"], line["unit_price"], line["amount"]) == (
        "zoho:invoice:5725767000000419001", Decimal("2"), Decimal("125000.00"), Decimal("250000.00"))


def test_world_replays_end_to_end(tmp_path: Path) -> None:
    """``ltc demo --world tests/worlds/zoho``: served by the emulator, synced, mapped, reconciled; the
    invoice finds its sales order by the order's number (the ``so`` sidecar), the chain is whole."""
    import sqlalchemy as sa

    from ltc.app.demo import replay_world
    from reconcile.tables import recon_exception

    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    try:
        replay_world(store, WORLD, tmp_path / "reports", echo=lambda _line: None)
        assert store.count_raw("zoho") == 13
        with store.engine.connect() as conn:
            codes = [r[0] for r in conn.execute(sa.select(recon_exception.c.code))]
            orders = conn.execute(sa.text("select number, total from sales_order")).all()
        assert codes == []
        assert [(n, Decimal(str(t))) for n, t in orders] == [("SO-2026-0042", Decimal("312701.18"))]
        assert (tmp_path / "reports" / "report.html").exists()
    finally:
        store.close()


def test_a_changed_sales_order_remaps_the_invoices_that_name_it(tmp_path: Path) -> None:
    """The invoice reads its order's number through the ``so`` sidecar (``with:`` on the lookup's
    dotted id ``Sales_Order.id``); when only the sales order changes, the invoice is mapped again."""
    import sqlalchemy as sa

    from canonical.store import RawRecord
    from canonical.tables import table_for
    from mappings.engine import run_mapping

    world = read_world(WORLD)
    so = dict(world.records["zoho"]["Sales_Orders"][0])
    inv = dict(world.records["zoho"]["Invoices"][0])
    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    try:
        def land(obj: str, rec: dict[str, Any]) -> None:
            store.commit_page("zoho", obj.lower(), [RawRecord(obj, rec["id"], rec)], None)

        def order_ref() -> str:
            invoice = table_for("invoice")
            with store.engine.connect() as conn:
                return str(conn.execute(sa.select(invoice.c.order_ref)).scalar_one())

        land("Sales_Orders", so)
        land("Invoices", inv)
        run_mapping(store, "zoho")
        assert order_ref() == "SO-2026-0042"
        land("Sales_Orders", {**so, "SO_Number": "SO-2026-0042-A", "Modified_Time": "2026-10-02T09:00:00+05:30"})
        run_mapping(store, "zoho")
        assert order_ref() == "SO-2026-0042-A"
    finally:
        store.close()
