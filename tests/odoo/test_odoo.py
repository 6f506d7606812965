"""Odoo connector and push target on documented payloads, over both transports (respx)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import respx

from canonical.errors import ConfigError
from canonical.money import Money
from canonical.store import Store
from connectors.base import sync, sync_stream
from connectors.errors import AuthenticationError, ConnectorError, PermissionDenied
from connectors.http import RetryPolicy
from connectors.odoo import OdooClient, OdooConnector, OdooTarget, from_config, odoo_instant
from connectors.push import ErpSaleLine, PushError
from ltc.app.config import SourceConfig
from tests.odoo.fake_odoo import KEY, URL, FakeOdoo, partner


@pytest.fixture(params=["jsonrpc", "json2"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def odoo() -> Iterator[FakeOdoo]:
    fake = FakeOdoo()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{URL}/jsonrpc").mock(side_effect=fake.jsonrpc)
        mock.route(method="POST", url__startswith=f"{URL}/json/2/").mock(side_effect=fake.json2)
        yield fake


def client(transport: str, key: str = KEY) -> OdooClient:
    return OdooClient(URL, db="ltc", api_key=key, transport=transport, login="sync@example.test",
                      policy=RetryPolicy(max_attempts=2, sleep=lambda s: None))


def connector(transport: str, **kw: object) -> OdooConnector:
    return OdooConnector("odoo", client(transport), **kw)  # type: ignore[arg-type]


def test_keyset_pages_land_payloads_as_odoo_sends_them(odoo: FakeOdoo, transport: str, sqlite_store: Store) -> None:
    # 7 partners share one second: paging must not depend on write_date ordering inside it
    odoo.models["res.partner"] = [partner(i, "2026-11-20 09:00:00") for i in range(1, 8)]
    odoo.models["res.partner"] += [partner(i, f"2026-11-20 09:00:{i:02d}") for i in range(8, 13)]
    odoo.models["res.partner"][0].update(parent_id=[5, "Partner 5"], email="a@b.test")
    [r] = sync(connector(transport, page_size=3), sqlite_store, streams=["partners"])
    assert (r.status, r.records, r.written) == ("success", 12, 12)
    assert (r.source_count, r.store_count) == (12, 12)
    raw = sqlite_store.get_raw("odoo", "res.partner", "2")
    assert raw is not None and raw["payload"]["vat"] is False and raw["payload"]["parent_id"] is False
    assert raw["payload"]["country_id"] == [75, "France"]
    assert sqlite_store.get_raw("odoo", "res.partner", "1")["payload"]["parent_id"] == [5, "Partner 5"]  # type: ignore[index]
    reads = [c for c in odoo.calls if c[1] == "search_read"]
    assert all(c[2]["order"] == "id asc" and c[2]["limit"] == 3 for c in reads)
    assert all(["write_date", "<", reads[0][2]["args"][0][-1][2]] in c[2]["args"][0] for c in reads)


def test_incremental_reads_since_the_mark_minus_lookback(odoo: FakeOdoo, transport: str, sqlite_store: Store) -> None:
    odoo.models["sale.order"] = [
        {"id": 1, "write_date": "2026-11-20 08:00:00", "name": "S00001", "partner_id": [3, "Acme"], "state": "sale",
         "client_order_ref": "006AB", "amount_total": 1234.5, "currency_id": [1, "EUR"], "validity_date": False,
         "order_line": [11, 12]}]
    conn = connector(transport, lookback=timedelta(minutes=5))
    sync(conn, sqlite_store, streams=["sale_orders"])
    odoo.models["sale.order"].append({**odoo.models["sale.order"][0], "id": 2, "name": "S00002",
                                      "write_date": "2026-11-20 09:30:00", "client_order_ref": False})
    [r] = sync(conn, sqlite_store, streams=["sale_orders"])
    # the mark was 08:00: S00001 is re-read inside the 5-minute lookback (unchanged, nothing written)
    assert (r.records, r.written, r.unchanged) == (2, 1, 1)
    last = [c for c in odoo.calls if c[1] == "search_read"][-1][2]
    assert ["write_date", ">=", "2026-11-20 07:55:00"] in last["args"][0]
    raw = sqlite_store.get_raw("odoo", "sale.order", "1")
    assert raw is not None and Decimal(raw["payload"]["amount_total"]) == Decimal("1234.5")  # exact, never a float
    assert raw["source_updated_at"] == datetime(2026, 11, 20, 8, tzinfo=UTC)


def test_invoice_stream_keeps_customer_moves_only(odoo: FakeOdoo, transport: str, sqlite_store: Store) -> None:
    base = {"write_date": "2026-11-20 08:00:00", "state": "posted", "partner_id": [3, "Acme"], "amount_residual": 0.0}
    odoo.models["account.move"] = [{**base, "id": 1, "move_type": "out_invoice", "invoice_date_due": False},
                                   {**base, "id": 2, "move_type": "out_refund"},
                                   {**base, "id": 3, "move_type": "in_invoice"},
                                   {**base, "id": 4, "move_type": "entry"}]
    [r] = sync(connector(transport), sqlite_store, streams=["invoices"])
    assert r.records == 2 and sqlite_store.get_raw("odoo", "account.move", "3") is None


def test_access_error_fails_loudly_naming_model_and_message(odoo: FakeOdoo, transport: str, sqlite_store: Store,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    odoo.errors[("account.payment", "search_read")] = (
        "odoo.exceptions.AccessError",
        "You are not allowed to access 'Payments' (account.payment) records.\n\nThis operation is allowed for ...")
    with pytest.raises(PermissionDenied) as err:
        sync(connector(transport), sqlite_store, streams=["payments"])
    text = str(err.value)
    assert "account.payment" in text and "You are not allowed to access 'Payments'" in text
    if transport == "jsonrpc":
        assert "account.payment.search_read" in text
    assert "Traceback" not in text and KEY not in text + caplog.text
    odoo.errors[("res.partner", "search_read")] = ("builtins.ValueError", "Invalid field 'colour' on model 'res.partner'")
    with pytest.raises(ConnectorError, match="Invalid field 'colour'"):
        sync(connector(transport), sqlite_store, streams=["partners"])


def test_bad_key_is_an_authentication_error(odoo: FakeOdoo, transport: str, sqlite_store: Store) -> None:
    bad = OdooConnector("odoo", client(transport, key="wrong-key-123456"))
    with pytest.raises(AuthenticationError) as err:
        sync(bad, sqlite_store, streams=["partners"])
    assert "wrong-key-123456" not in str(err.value)


def test_refused_login_is_an_authentication_error(odoo: FakeOdoo) -> None:
    odoo.login_ok = False
    with pytest.raises(AuthenticationError, match=r"login of 'sync@example\.test'"):
        client("jsonrpc").call("res.partner", "search_count", [[]])


def test_json2_sends_bearer_key_database_and_named_params(odoo: FakeOdoo) -> None:
    client("json2").call("res.partner", "search_read", [[["ref", "=", "A"]]], fields=["id"], limit=5)
    body = json.loads(odoo.bodies[-1])
    assert body == {"domain": [["ref", "=", "A"]], "fields": ["id"], "limit": 5}
    assert odoo.calls[-1][:2] == ("res.partner", "search_read")


def test_push_target_finds_by_reference_and_maps_states(odoo: FakeOdoo, transport: str) -> None:
    """A sale order read back as Odoo documents it: many2one pairs, float amounts, line ids."""
    odoo.models["product.product"] = [{"id": 41, "default_code": "WIDGET"}, {"id": 42, "default_code": False}]
    odoo.models["sale.order.line"] = [
        {"id": 11, "product_id": [41, "[WIDGET] Widget"], "product_uom_qty": 3.0, "price_unit": 19.99,
         "display_type": False},
        {"id": 12, "product_id": False, "product_uom_qty": 0.0, "price_unit": 0.0, "display_type": "line_section"},
        {"id": 13, "product_id": [42, "Service"], "product_uom_qty": 1.0, "price_unit": 250.1, "display_type": False}]
    odoo.models["sale.order"] = [
        {"id": 7, "name": "S00007", "client_order_ref": "006DEAL", "state": "cancel", "partner_id": [3, "Acme"],
         "currency_id": [1, "EUR"], "order_line": [], "amount_untaxed": 0.0, "amount_total": 0.0},
        {"id": 8, "name": "S00008", "client_order_ref": "006DEAL", "state": "sent", "partner_id": [3, "Acme"],
         "currency_id": [2, "USD"], "order_line": [11, 12, 13], "amount_untaxed": 310.07, "amount_total": 372.08}]
    target = OdooTarget(client(transport))
    assert target.find_sale_by_reference("NOPE") is None
    sale = target.find_sale_by_reference("006DEAL")  # the live order, not the cancelled one
    assert sale is not None
    assert (sale.id, sale.number, sale.state, sale.editable, sale.confirmed) == (8, "S00008", "sent", True, False)
    assert (sale.currency, sale.party_id, sale.untaxed, sale.total) == (
        "USD", 3, Money.of("310.07", "USD"), Money.of("372.08", "USD"))
    assert sale.lines == (ErpSaleLine("WIDGET", Decimal(3), Decimal("19.99")), ErpSaleLine(None, Decimal(1), Decimal("250.1")))
    odoo.models["sale.order"][1]["state"] = "done"
    done = target.find_sale_by_reference("006DEAL")
    assert done is not None and (done.editable, done.confirmed) == (False, True)
    odoo.models["sale.order"][1]["state"] = "cancel"
    cancelled = target.find_sale_by_reference("006DEAL")
    assert cancelled is not None and (cancelled.id, cancelled.state, cancelled.editable) == (8, "cancelled", False)
    odoo.models["sale.order"][0]["state"] = odoo.models["sale.order"][1]["state"] = "draft"
    with pytest.raises(PushError, match="already has 2 Odoo sale orders"):
        target.find_sale_by_reference("006DEAL")


def test_odoo_instant_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert odoo_instant("2026-11-20 09:00:05") == datetime(2026, 11, 20, 9, 0, 5, tzinfo=UTC)
    assert odoo_instant(False) is None
    monkeypatch.setenv("ODOO_KEY", KEY)
    cfg = SourceConfig(kind="odoo", base_url=URL, credentials={"api_key": {"env": "ODOO_KEY"}},
                       options={"transport": "json2", "database": "ltc"})
    assert from_config("erp", cfg).client.transport == "json2"
    with pytest.raises(ConfigError, match=r"options\.database is required"):
        from_config("erp", cfg.model_copy(update={"options": {"transport": "jsonrpc"}}))
    with pytest.raises(ConfigError, match=r"options\.login \(or uid\) is required"):
        from_config("erp", cfg.model_copy(update={"options": {"transport": "jsonrpc", "database": "ltc"}}))
    rpc = from_config("erp", cfg.model_copy(update={"options": {"database": "ltc", "uid": 2}}))
    assert (rpc.client.transport, rpc.client.uid()) == ("jsonrpc", 2)
    with pytest.raises(ConfigError, match="must be jsonrpc or json2"):
        from_config("erp", cfg.model_copy(update={"options": {"transport": "xmlrpc"}}))


def test_row_changed_behind_the_paging_position_is_read_by_the_next_run(odoo: FakeOdoo, sqlite_store: Store) -> None:
    odoo.models["res.partner"] = [partner(i, f"2026-11-20 09:00:{i:02d}") for i in range(1, 10)]
    conn = connector("jsonrpc", page_size=3)
    run_id = sqlite_store.begin_run("sync", "odoo")
    sync_stream(conn, conn.stream("partners"), sqlite_store, run_id=run_id, max_pages=1)
    odoo.models["res.partner"][0].update(name="Renamed mid-run", write_date="2026-11-20 09:30:00")
    [r] = sync(conn, sqlite_store, streams=["partners"])  # finishes the interrupted run
    assert r.status == "success" and sqlite_store.count_raw("odoo", "res.partner") == 9
    sync(conn, sqlite_store, streams=["partners"])
    assert sqlite_store.get_raw("odoo", "res.partner", "1")["payload"]["name"] == "Renamed mid-run"  # type: ignore[index]
