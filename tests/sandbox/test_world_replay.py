"""Each hand-written world of tests/worlds served by its emulator, synced by the real connector into a
store and mapped by the shipped mapping: the canonical rows are the ones the files describe."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.store import Store
from connectors.base import sync
from connectors.statements import import_folder
from connectors.tryton.rpc import TrytonAuthError, TrytonClient, TrytonError, TrytonUserError
from ltc.app import runtime
from ltc.app.config import Config
from ltc.app.demo import world_sources
from mappings.engine import run_mapping
from sandbox.run import WORLD_ACCESS
from sandbox.world import read_world

WORLDS = Path(__file__).resolve().parents[1] / "worlds"


def replay(name: str, store: Store) -> tuple[Config, dict[str, dict[str, int]]]:
    """Serve the world, sync every API source, import the bank folder, map everything."""
    world = read_world(WORLDS / name)
    with world_sources(world) as (cfg, servers):
        assert sorted(servers) == sorted(world.api_systems)
        for source, src in cfg.sources.items():
            if src.kind == "camt053":
                import_folder(store, src.options["folder"], source)
                continue
            results = sync(runtime.build_connector(cfg, source), store)
            assert results and all(r.status == "success" for r in results), [(r.stream, r.message) for r in results]
        counts = run_mapping(store, config=cfg)
    return cfg, counts


def rows(store: Store, entity: str) -> dict[str, dict[str, Any]]:
    table = tables.table_for(entity)
    with store.engine.connect() as conn:
        return {r["source_id"]: dict(r) for r in conn.execute(sa.select(table)).mappings()}


def test_salesforce_world(store: Store) -> None:
    cfg, counts = replay("salesforce", store)
    assert cfg.reporting_currency == "USD" and cfg.erp is None
    assert counts["salesforce"]["quarantined"] == 0
    deals = rows(store, "deal")
    live = {k: d for k, d in deals.items() if d["deleted_at"] is None}
    assert sorted(live) == ["006Dn00000O1p2qAAA", "006Dn00000O7r8sAAA"]  # the deleted one is not a live deal
    won = live["006Dn00000O1p2qAAA"]
    assert (won["stage"], won["amount"], won["currency"], won["close_date"]) == (
        "closed_won", Decimal("48250.50"), "USD", date(2026, 9, 30))
    assert won["account_id"] == "salesforce:account:001Dn00000A1b2cAAA"
    assert won["source_updated_at"] == datetime(2026, 9, 30, 17, 45, 12, tzinfo=UTC)
    assert live["006Dn00000O7r8sAAA"]["stage"] == "negotiation"
    [line] = rows(store, "deal_line").values()
    assert (line["deal_id"], line["quantity"], line["unit_price"], line["amount"]) == (
        "salesforce:deal:006Dn00000O1p2qAAA", Decimal("25"), Decimal("1930.02"), Decimal("48250.50"))
    accounts = rows(store, "account")
    assert accounts["001Dn00000A1b2cAAA"]["country"] == "DE"
    assert rows(store, "contact")["003Dn00000C1d2eAAA"]["email"] == "jana.keller@acme-robotics.example"
    lead = rows(store, "lead")["00QDn00000L1m2nAAA"]
    assert lead["converted_deal_id"] == "salesforce:deal:006Dn00000O1p2qAAA"
    # custom fields land with the record (the emulator's describe listed them, the connector selected them)
    raw = store.get_raw("salesforce", "Account", "001Dn00000A1b2cAAA")
    assert raw is not None and Decimal(raw["payload"]["Credit_Limit__c"]) == Decimal("250000") and raw["payload"]["Region__c"] == "EMEA"
    deleted = store.get_raw("salesforce", "Opportunity", "006Dn00000O9z9zAAA")
    assert deleted is None or deleted["deleted"]


def test_salesforce_describe_lists_the_worlds_custom_fields() -> None:
    from sandbox.salesforce import Org

    org = Org(world=read_world(WORLDS / "salesforce").records["salesforce"])
    assert org.types["Account"]["Credit_Limit__c"] == "double"  # a JSON number: double (currency if named so)
    assert org.types["Opportunity"]["Deal_Desk_Approved__c"] == "boolean"
    assert sum(len(r) for r in org.rows.values()) == 9  # nothing generated besides the world
    _, ids = org.run_query("SELECT Id FROM Opportunity", include_deleted=False)
    assert ids == ["006Dn00000O1p2qAAA", "006Dn00000O7r8sAAA"]  # sorted by SystemModstamp; deleted only in queryAll


def test_hubspot_world(sqlite_store: Store) -> None:
    _, counts = replay("hubspot", sqlite_store)
    assert counts["hubspot"]["quarantined"] == 0
    deals = rows(sqlite_store, "deal")
    assert sorted(k for k, d in deals.items() if d["deleted_at"] is None) == ["9001", "9004"]  # 9007 is archived
    won = deals["9001"]
    assert (won["stage"], won["amount"], won["currency"], won["close_date"], won["owner"]) == (
        "closed_won", Decimal("18400.75"), "USD", date(2026, 9, 14), "70001")
    assert deals["9004"]["currency"] == "EUR" and deals["9004"]["amount"] == Decimal("3200")
    [line] = rows(sqlite_store, "deal_line").values()
    assert (line["quantity"], line["unit_price"], line["amount"], line["product_code"]) == (
        Decimal("5"), Decimal("3680.15"), Decimal("18400.75"), "POS-T2")
    assert rows(sqlite_store, "contact")["7101"]["email"] == "maria.lopez@northwind.example"
    # the custom property is served (and listed as a property), the associations are swept per deal
    raw = sqlite_store.get_raw("hubspot", "deals", "9001")
    assert raw is not None and raw["payload"]["properties"]["erp_order_number"] == "SO-2026-0077"
    assoc = sqlite_store.get_raw("hubspot", "associations.deals", "9001")
    assert assoc is not None
    assert assoc["payload"]["companies"] == [{"id": "5001", "types": [5, 341]}]  # HubSpot's default type ids
    assert assoc["payload"]["contacts"] == [{"id": "7101", "types": [3]}]
    assert assoc["payload"]["line_items"] == [{"id": "60001", "types": [19]}]  # from line_items_to_deals.jsonl
    owners = sqlite_store.get_raw("hubspot", "owners", "70001")
    assert owners is not None and owners["payload"]["email"] == "sam.sales@example.com"
    # the sweeps are joined to their deal / line item by the mapping (`with:`): the chain is linked
    assert won["account_id"] == "hubspot:account:5001" and deals["9004"]["account_id"] == "hubspot:account:5008"
    assert line["deal_id"] == "hubspot:deal:9001"
    # a quote and its deal, from the quote -> deal association sweep (HubSpot's type 64)
    quote = rows(sqlite_store, "quote")["80001"]
    assert (quote["deal_id"], quote["status"], quote["total"], quote["valid_until"]) == (
        "hubspot:deal:9001", "sent", Decimal("18400.75"), date(2026, 9, 30))
    qa = sqlite_store.get_raw("hubspot", "associations.quotes", "80001")
    assert qa is not None and qa["payload"]["deals"] == [{"id": "9001", "types": [64]}]


def test_stripe_world(store: Store) -> None:
    cfg, counts = replay("stripe", store)
    assert cfg.reporting_currency == "EUR"
    assert counts["stripe"]["quarantined"] == 0
    invoices = rows(store, "invoice")
    paid = invoices["in_1QAcmeInv0001"]
    assert (paid["number"], paid["status"], paid["total"], paid["amount_paid"], paid["amount_due"]) == (
        "ACME-0001", "paid", Decimal("48250.50"), Decimal("48250.50"), Decimal("0.00"))
    assert (paid["deal_ref"], paid["order_ref"], paid["due_date"]) == (
        "006Dn00000O1p2qAAA", "SO-2026-0042", date(2026, 10, 21))
    assert invoices["in_1QAcmeInv0002"]["status"] == "void"
    payments = rows(store, "payment")
    charge = payments["ch_3QAcmeChg00001"]
    assert (charge["kind"], charge["amount"], charge["currency"], charge["payment_date"], charge["invoice_ref"]) == (
        "payment", Decimal("48250.50"), "EUR", date(2026, 9, 28), "in_1QAcmeInv0001")
    assert payments["ch_3QKyotoChg0002"]["amount"] == Decimal("150000")  # JPY has no minor unit
    # the fee comes from the charge's balance transaction, a record of its own stream joined by id
    assert (charge["fee"], payments["ch_3QKyotoChg0002"]["fee"]) == (Decimal("1399.56"), Decimal("5400"))
    assert payments["ch_3QKyotoChg0002"]["currency"] == "JPY"
    refund = payments["re_3QAcmeRef00001"]
    assert (refund["kind"], refund["amount"], refund["reference"]) == ("refund", Decimal("500.00"), "ch_3QAcmeChg00001")
    lines = rows(store, "invoice_line")
    assert lines["il_1QAcmeLine001"]["unit_price"] == Decimal("1930.02")
    note = invoices["cn_1QAcmeCn000001"]  # the credit_notes stream lands it; the mapping makes it a credit note
    assert (note["kind"], note["total"], note["currency"], note["status"], note["attributes"]["invoice_ref"]) == (
        "credit_note", Decimal("500.00"), "EUR", "open", "in_1QAcmeInv0001")


def test_tryton_world(sqlite_store: Store) -> None:
    cfg, counts = replay("tryton", sqlite_store)
    assert cfg.erp is not None and cfg.erp.source == "tryton" and cfg.erp.dry_run
    assert counts["tryton"]["quarantined"] == 0
    accounts = rows(sqlite_store, "account")
    assert accounts["12"]["tax_id"] == "DE123456789" and accounts["12"]["country"] == "DE"
    assert accounts["12"]["attributes"]["account_ref"] == "001Dn00000A1b2cAAA"
    assert accounts["13"]["deleted_at"] is not None  # an archived party is read (active_test off) and tombstoned
    order = rows(sqlite_store, "order")["7"]
    assert (order["number"], order["deal_ref"], order["total"], order["currency"], order["order_date"]) == (
        "SO-2026-0042", "006Dn00000O1p2qAAA", Decimal("48250.50"), "EUR", date(2026, 9, 30))
    invoice = rows(sqlite_store, "invoice")["31"]
    assert (invoice["number"], invoice["order_ref"], invoice["deal_ref"], invoice["status"]) == (
        "INV-2026-0108", "SO-2026-0042", "006Dn00000O1p2qAAA", "paid")
    assert (invoice["total"], invoice["amount_due"], invoice["due_date"]) == (
        Decimal("48250.50"), Decimal("0.00"), date(2026, 10, 31))
    assert rows(sqlite_store, "invoice_line")["41"]["unit_price"] == Decimal("1930.0200")
    payment = sqlite_store.get_raw("tryton", "account.move.line", "61")  # the payments stream's domain matched it
    assert payment is not None and payment["payload"]["credit"] == "48250.50"  # exact, landed as decoded
    assert payment["payload"]["invoice_payment."]["number"] == "INV-2026-0108"
    paid = rows(sqlite_store, "payment")["61"]  # a receipt on the receivable account: a payment of that invoice
    assert (paid["kind"], paid["amount"], paid["currency"], paid["payment_date"], paid["invoice_ref"]) == (
        "payment", Decimal("48250.50"), "EUR", date(2026, 10, 20), "INV-2026-0108")
    assert paid["account_id"] == "tryton:account:12" and paid["reference"] == "CASH-0031"
    shipment = rows(sqlite_store, "delivery")["81"]  # the customer shipment of the sale, found by its number
    assert (shipment["order_ref"], shipment["state"], shipment["delivered_date"], shipment["account_id"]) == (
        "SO-2026-0042", "delivered", date(2026, 10, 3), "tryton:account:12")
    move = rows(sqlite_store, "delivery_line")["91"]
    assert (move["delivery_id"], move["order_line_id"], move["quantity"]) == (
        "tryton:delivery:81", "tryton:order_line:21", Decimal("25.0"))


def test_tryton_emulator_speaks_trytons_protocol() -> None:
    world = read_world(WORLDS / "tryton")
    access = WORLD_ACCESS["tryton"]["credentials"]
    from sandbox.run import start_world

    servers = start_world(world)
    try:
        url = servers["tryton"].url
        with TrytonClient(url, "ltc") as client:
            assert client.server_version().startswith("8.")
            client.login(access["login"], access["password"])
            assert client.context["company"] == 1
            out = client.search_read("sale.line", [["sale.party.code", "=", "PTY-012"]], ["sale", "product.code"])
            assert out == [{"id": 21, "sale": 7, "product.": {"id": 5, "code": "FLEET-LIC"}}]
            assert client.search("party.party", [], order=[("name", "DESC")]) == [12]  # inactive left out
            assert client.search_count("party.party", [["name", "ilike", "%acme%"]]) == 1
            with pytest.raises(TrytonUserError, match="read-only"):
                client.write("sale.sale", [7], {"description": "x"})
            with pytest.raises(TrytonError, match="403"):
                client.search("res.partner", [])
        bad = TrytonClient(url, "ltc")
        with pytest.raises(TrytonAuthError, match="login refused"):
            bad.login(access["login"], "wrong")
        bad.close()
        r = httpx.post(f"{url}/ltc/rpc/", json={"id": 1, "method": "model.sale.sale.search", "params": [[], {}]})
        assert r.status_code == 401  # no session
    finally:
        for srv in servers.values():
            srv.stop()


def test_odoo_world(sqlite_store: Store) -> None:
    cfg, counts = replay("odoo", sqlite_store)
    assert cfg.erp is not None and cfg.erp.source == "odoo"
    assert counts["odoo"]["quarantined"] == 0
    accounts = rows(sqlite_store, "account")
    assert accounts["14"]["tax_id"] == "FR40303265045" and accounts["16"]["deleted_at"] is not None
    assert rows(sqlite_store, "contact")["15"]["account_id"] == "odoo:account:14"
    order = rows(sqlite_store, "order")["31"]
    assert (order["number"], order["deal_ref"], order["total"], order["state"]) == (
        "S00031", "006Dn00000G7o8pAAA", Decimal("11520.0"), "confirmed")
    invoices = rows(sqlite_store, "invoice")
    assert sorted(invoices) == ["41"]  # the vendor bill is not a customer invoice
    inv = invoices["41"]
    assert (inv["status"], inv["total"], inv["amount_due"], inv["amount_paid"], inv["order_ref"]) == (
        "open", Decimal("11520.0"), Decimal("5520.0"), Decimal("6000.0"), "S00031")
    assert sorted(rows(sqlite_store, "invoice_line")) == ["411"]  # tax line and vendor bill line left out
    pay = rows(sqlite_store, "payment")["51"]
    assert (pay["amount"], pay["payment_date"], pay["account_id"]) == (Decimal("6000.0"), date(2026, 10, 5),
                                                                      "odoo:account:14")
    # outgoing pickings only (the receipt WH/IN is left out by the stream's domain), linked to their sale
    assert sorted(rows(sqlite_store, "delivery")) == ["61"] and sorted(rows(sqlite_store, "delivery_line")) == ["611"]
    out = rows(sqlite_store, "delivery")["61"]
    assert (out["order_id"], out["state"], out["delivered_date"], out["planned_date"]) == (
        "odoo:order:31", "delivered", date(2026, 9, 22), date(2026, 9, 21))


@pytest.mark.parametrize("transport", ["jsonrpc", "json2"])
def test_odoo_emulator_answers_both_transports(transport: str) -> None:
    from connectors.errors import AuthenticationError, ConnectorError
    from connectors.odoo import OdooClient
    from sandbox.run import start_world

    access = WORLD_ACCESS["odoo"]
    servers = start_world(read_world(WORLDS / "odoo"))
    try:
        url = servers["odoo"].url

        def client(key: str) -> OdooClient:
            return OdooClient(url, db="ltc", api_key=key, transport=transport, login=access["options"]["login"])

        c = client(access["credentials"]["api_key"])
        lines = c.call("account.move.line", "search_read", [["|", ["display_type", "=", "tax"],
                                                             ["move_id.move_type", "=", "in_invoice"]]],
                       fields=["name"], order="id desc")
        assert lines == [{"id": 421, "name": "Office supplies"}, {"id": 412, "name": "VAT 20%"}]
        assert c.call("res.partner", "search_count", [[["active", "=", False]]]) == 1
        with pytest.raises(ConnectorError, match="read-only"):
            c.call("sale.order", "action_confirm", [[31]])
        c.close()
        bad = client("wrong-key")
        with pytest.raises(AuthenticationError):
            bad.call("res.partner", "search_count", [[]])
        bad.close()
    finally:
        for srv in servers.values():
            srv.stop()


def test_bank_world(sqlite_store: Store) -> None:
    cfg, _ = replay("bank", sqlite_store)
    assert cfg.sources["bank"].kind == "camt053" and cfg.reporting_currency == "USD"
    assert cfg.sources["bank"].options["folder"] == str(WORLDS / "bank" / "bank")
    with sqlite_store.engine.connect() as conn:
        raw = tables.raw_record
        entries = [r["payload"] for r in conn.execute(
            sa.select(raw.c.payload).where(raw.c.system == "bank", raw.c.object == "camt053.entry")).mappings()]
    amounts = sorted((Decimal(str(e["amount"])), e["credit_debit"]) for e in entries)
    assert amounts == [(Decimal("125.40"), "DBIT"), (Decimal("6000.00"), "CRDT"), (Decimal("48250.50"), "CRDT")]


@pytest.mark.parametrize(("name", "expected"), [
    ("tryton", {"party.party": 2, "sale.sale": 1, "account.invoice": 1, "account.invoice.line": 1, "payments": 1}),
    ("odoo", {"partners": 3, "invoices": 1, "invoice_lines": 1, "payments": 1}),
    ("stripe", {"customers": 2, "invoices": 2, "charges": 2, "balance_transactions": 3, "refunds": 1}),
    ("hubspot", {"deals": 3, "companies": 2, "line_items": 1}),  # deals: 2 live + 1 archived (tombstone pass)
])
def test_one_record_a_page_gives_the_same_records(sqlite_store: Store, name: str, expected: dict[str, int]) -> None:
    """The emulators' paging over a world (Tryton's keyset domain, Odoo's id paging, Stripe's
    starting_after, HubSpot's after) reads every record once, page by page."""
    world = read_world(WORLDS / name)
    with world_sources(world) as (cfg, _):
        cfg.sources[name].page_size = 1
        results = sync(runtime.build_connector(cfg, name), sqlite_store, streams=list(expected))
    got = {r.stream: r.records for r in results}
    assert all(r.status == "success" for r in results), [(r.stream, r.message) for r in results]
    assert {k: got[k] for k in expected} == expected


def test_a_world_of_every_system_runs_the_whole_pipeline(sqlite_store: Store, tmp_path: Path) -> None:
    """The end-to-end test of world replay: the six small worlds as one company (CRM, payments, two
    ERPs with Tryton as `erp`, a bank), synced, imported, mapped, resolved and reconciled."""
    import shutil

    from ltc.app.pipeline import after_sync

    root = tmp_path / "all"
    root.mkdir()
    systems = ["salesforce", "hubspot", "stripe", "tryton", "odoo", "bank"]
    for s in systems:
        shutil.copytree(WORLDS / s / s, root / s)
    shutil.copy(WORLDS / "bank" / "fx_rates.csv", root / "fx_rates.csv")
    (root / "world.yaml").write_text(f"format: 1\nname: all\nsystems: [{', '.join(systems)}]\nerp: tryton\n"
                                     "reporting_currency: USD\nas_of: 2026-10-31\n")
    world = read_world(root)
    with world_sources(world) as (cfg, servers):
        assert sorted(servers) == sorted(systems[:-1]) and cfg.erp is not None and cfg.erp.source == "tryton"
        assert sorted(cfg.sources) == sorted(systems)
        for source, src in cfg.sources.items():
            if src.kind == "camt053":
                [imported] = import_folder(sqlite_store, src.options["folder"], source)
                assert imported.error is None and imported.statements[0].new == 3
                continue
            results = sync(runtime.build_connector(cfg, source), sqlite_store)
            assert all(r.status == "success" for r in results), [(r.stream, r.message) for r in results]
        assert world.as_of is not None
        summary = after_sync(sqlite_store, cfg, world.as_of)
    assert summary["mapping"]["quarantined"] == 0
    # invoices: 2 Stripe + 1 Stripe credit note + 1 Tryton + 1 Odoo
    assert (summary["mapping"]["deal"], summary["mapping"]["order"], summary["mapping"]["invoice"]) == (4, 2, 5)
    assert summary["reconcile"]["as_of"] in ("2026-10-31", date(2026, 10, 31))
    assert summary["reconcile"]["chains"] == 2  # one per closed-won deal: Salesforce's and HubSpot's


def test_tryton_keyset_pages_come_from_the_index_and_equal_a_full_scan() -> None:
    """The emulator's indexed keyset path returns exactly what filtering + sorting the whole model does."""
    import random

    from sandbox.tryton import CURSOR, TrytonWorld

    rng = random.Random(3)
    rows = [{"id": i, "type": rng.choice(["out", "in"]), "write_date": {"__class__": "datetime", "year": 2026,
             "month": 1, "day": 1, "hour": 0, "minute": 0, "second": rng.randrange(40), "microsecond": 0},
             "create_date": None} for i in rng.sample(range(1, 5000), 600)]
    world = TrytonWorld({"account.invoice": rows})
    order = [[CURSOR, "ASC"], ["id", "ASC"]]
    ts, last = datetime(2026, 1, 1, 0, 0, 17, tzinfo=UTC), 2500
    for domain in ([["type", "=", "out"], [CURSOR, ">=", ts]],
                   [["type", "=", "out"], ["OR", [CURSOR, ">", ts], [[CURSOR, "=", ts], ["id", ">", last]]]],
                   [[CURSOR, ">=", ts], [CURSOR, ">", datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)]]):
        full = world._found("account.invoice", domain, {}, order)
        assert world._keyset_start("account.invoice", domain, order) is not None
        for limit in (1, 7, 50, 1000):
            assert world._found("account.invoice", domain, {}, order, limit) == full[:limit]


def test_tryton_no_change_run_counts_instead_of_listing_every_id(sqlite_store: Store) -> None:
    """Delete detection: a run where nothing changed asks search_count, not every id of each model; a
    deleted record is still found (the counts differ, then the ids are compared)."""
    from connectors.base import sync
    from ltc.app import runtime
    from ltc.app.demo import world_sources

    world = read_world(WORLDS / "tryton")
    with world_sources(world) as (cfg, servers):
        emulator = servers["tryton"]._server.config.app.state.tryton
        connector = runtime.build_connector(cfg, "tryton")
        try:
            sync(connector, sqlite_store)
            emulator.calls.clear()
            quiet = sync(connector, sqlite_store)
            assert "model.sale.sale.search" not in emulator.calls and sum(r.written for r in quiet) == 0
            gone = emulator.rows["sale.sale"].pop()
            emulator._indexes.clear()
            again = {r.stream: r for r in sync(connector, sqlite_store)}
        finally:
            connector.close()
    assert "model.sale.sale.search" in emulator.calls
    raw = sqlite_store.get_raw("tryton", "sale.sale", str(gone["id"]))
    assert raw is not None and raw["deleted"] is True and sum(r.deleted for r in again.values()) == 1
