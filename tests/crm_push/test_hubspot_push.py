"""push-crm against the HubSpot emulator: deals synced from the portal, an ERP side (orders, invoices,
payments referencing the deals) in the store, reconciled; then the properties, the batch updates,
the 207 partial failures and the sync that follows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.errors import ConfigError
from canonical.model import Invoice, Order, Payment, to_row
from canonical.money import Money
from canonical.store import Store
from canonical.tables import raw_pending
from connectors.base import sync
from connectors.errors import PermissionDenied
from ltc.app import runtime
from ltc.app.config import Config, PushCrmConfig, SecretRef, SourceConfig
from ltc.app.pipeline import after_sync
from ltc.app.push_crm import push_source
from mappings.engine import run_mapping
from reconcile.engine import run_reconciliation
from reconcile.tables import recon_exception
from sandbox.hubspot import HubSpotEmulator
from sandbox.server import RunningServer, serve
from tests.crm_push.conftest import UI

AS_OF = date(2027, 3, 1)
BATCH = "/crm/v3/objects/deals/batch/update"


@dataclass
class HsEnv:
    emu: HubSpotEmulator
    server: RunningServer
    store: Store
    cfg: Config
    won: list[str]


def _erp_side(store: Store, emu: HubSpotEmulator, won: list[str]) -> None:
    """Orders for all but the last won deal; invoices for the first three; payments: the first paid in
    full, the second in part (and its invoice past due), the third not yet due."""
    orders, invoices, payments = [], [], []
    deal_t = tables.table_for("deal")
    with store.engine.connect() as conn:
        account_of = dict(conn.execute(sa.select(deal_t.c.source_id, deal_t.c.account_id)).all())
    for i, sid in enumerate(won[:-1]):
        props = emu.objects["deals"][int(sid)].props
        ccy, amount = str(props["deal_currency_code"]), Decimal(str(props["amount"]))
        ordered = date(2026, 12, 1) if i < 3 else date(2027, 2, 20)  # the later ones: invoicing not yet due
        orders.append(Order(id=f"erp:order:{i}", source_system="erp", source_object="sale.sale", source_id=str(i),
                            number=f"SO{i:04d}", deal_ref=sid, order_date=ordered, state="confirmed",
                            account_id=account_of[sid], currency=ccy, total=Money.of(amount, ccy)))
        if i >= 3:
            continue
        due = date(2027, 1, 15) if i < 2 else date(2027, 4, 30)
        invoices.append(Invoice(id=f"erp:invoice:{i}", source_system="erp", source_object="account.invoice",
                                source_id=str(i), number=f"INV{i:04d}", order_ref=f"SO{i:04d}",
                                account_id=account_of[sid],
                                issue_date=date(2026, 12, 15), due_date=due, status="open", currency=ccy,
                                total=Money.of(amount, ccy)))
        paid = {0: amount, 1: (amount / 2).quantize(Decimal("0.01"))}.get(i)
        if paid is not None:
            payments.append(Payment(id=f"bank:payment:{i}", source_system="bank", source_object="entry",
                                    source_id=str(i), currency=ccy, amount=Money.of(paid, ccy),
                                    account_id=account_of[sid],
                                    payment_date=date(2027, 1, 10 + i), invoice_ref=f"INV{i:04d}",
                                    received_at=datetime(2027, 1, 10 + i, tzinfo=UTC)))
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "order", [to_row(o) for o in orders])
        store.upsert_entities(conn, "invoice", [to_row(v) for v in invoices])
        store.upsert_entities(conn, "payment", [to_row(p) for p in payments])


@pytest.fixture
def hs_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HsEnv]:
    emu = HubSpotEmulator(seed=5, size=40, companies=8, burst_max=1_000_000, search_per_s=1_000_000)
    server = serve(emu.app)
    monkeypatch.setenv("TEST_HS_TOKEN", emu.token)
    cfg = Config(sources={"hs": SourceConfig(kind="hubspot", base_url=server.url,
                                             credentials={"token": SecretRef(env="TEST_HS_TOKEN")})},
                 reporting_currency="EUR", push_crm=PushCrmConfig(ui_base_url=UI))
    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    connector = runtime.build_connector(cfg, "hs")
    try:
        assert all(r.status == "success" for r in sync(connector, store))
    finally:
        connector.close()
    won = sorted(str(i) for i, r in emu.objects["deals"].items() if r.props["dealstage"] == "closedwon")
    assert len(won) >= 5
    run_mapping(store, config=cfg)
    _erp_side(store, emu, won)
    after_sync(store, cfg, AS_OF)
    yield HsEnv(emu, server, store, cfg, won)
    store.close()
    server.stop()


def deal(env: HsEnv, sid: str) -> dict[str, str | None]:
    return env.emu.objects["deals"][int(sid)].props


def test_missing_properties_are_named_then_created_in_the_ltc_group(hs_env: HsEnv) -> None:
    with pytest.raises(ConfigError) as err:
        push_source(hs_env.store, hs_env.cfg, "hs")
    assert "\n" not in str(err.value) and "deals.ltc_invoiced_amount" in str(err.value)
    assert "--create-properties" in str(err.value) and hs_env.emu.served.get("objects", 0) > 0
    report = push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    assert "deals.ltc_open_balance" in report.created and "companies.ltc_won_deals" in report.created
    defined = hs_env.emu._defined["deals"]
    assert defined["ltc_open_balance"]["groupName"] == "ltc" and defined["ltc_open_balance"]["type"] == "number"
    assert defined["ltc_last_payment_date"]["type"] == "date" and "ltc" in hs_env.emu._groups["deals"]
    # asked again: everything exists, nothing is created (409 would be fine too)
    again = push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    assert again.created == [] and again.requests == 0


def test_deals_and_companies_show_the_finance_status(hs_env: HsEnv) -> None:
    report = push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    assert not report.failures and report.counts["deals"].written == len(hs_env.won)
    paid, partial, not_due, no_invoice, not_ordered = (deal(hs_env, s) for s in
                                                      (*hs_env.won[:4], hs_env.won[-1]))
    amount0 = Decimal(str(paid["amount"]))
    assert paid["ltc_status"] == "paid" and Decimal(str(paid["ltc_paid_amount"])) == amount0
    assert paid["ltc_open_balance"] in ("0.00", "0") and paid["ltc_last_payment_date"] == "2027-01-10"
    assert paid["ltc_erp_orders"] == "SO0000" and paid["ltc_days_overdue"] == "0"
    assert partial["ltc_status"] == "exception" and partial["ltc_days_overdue"] == str((AS_OF - date(2027, 1, 15)).days)
    assert "PAYMENT_MISMATCH" in str(partial["ltc_exception_codes"])
    assert partial["ltc_last_payment_date"] == "2027-01-11"
    half = (Decimal(str(partial["amount"])) / 2).quantize(Decimal("0.01"))
    assert Decimal(str(partial["ltc_open_balance"])) == Decimal(str(partial["amount"])) - half
    assert str(partial["ltc_exception_link"]).startswith(f"{UI}/x/")
    assert not_due["ltc_status"] == "invoiced, unpaid" and not_due["ltc_days_overdue"] == "0"
    assert not_due["ltc_last_payment_date"] == "" and not_due["ltc_exception_link"] == ""
    assert no_invoice["ltc_invoiced_amount"] in ("0", "0.00") and no_invoice["ltc_status"] == "ordered, not invoiced"
    assert not_ordered["ltc_status"] == "exception" and not_ordered["ltc_exception_codes"] == "WON_NOT_ORDERED"
    companies = [r.props for r in hs_env.emu.objects["companies"].values() if r.props.get("ltc_won_deals")]
    assert sum(int(str(c["ltc_won_deals"])) for c in companies) == len(hs_env.won)
    # the business properties are what they were
    assert paid["dealstage"] == "closedwon" and paid["dealname"]


def test_batches_of_100_and_an_unchanged_rerun_sends_nothing(hs_env: HsEnv) -> None:
    for i in range(150):  # a big won pipeline: more deals than one batch holds
        hs_env.emu.create("deals", {"dealname": f"Big {i}", "amount": "100.00", "dealstage": "closedwon",
                                    "pipeline": "default", "closedate": "2026-10-01T00:00:00.000Z",
                                    "deal_currency_code": "EUR"})
    connector = runtime.build_connector(hs_env.cfg, "hs")
    try:
        list(sync(connector, hs_env.store))
    finally:
        connector.close()
    after_sync(hs_env.store, hs_env.cfg, AS_OF)
    served = dict(hs_env.emu.served)
    first = push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    assert first.counts["deals"].written == len(hs_env.won) + 150 > 100
    batches = hs_env.emu.served["objects"] - served.get("objects", 0)
    assert batches == -(-first.counts["deals"].written // 100) + -(-first.counts["companies"].written // 100)
    again = push_source(hs_env.store, hs_env.cfg, "hs")
    assert again.requests == 0 and again.counts["deals"].unchanged == first.counts["deals"].written


def test_207_partial_failures_are_reported_and_retried(hs_env: HsEnv) -> None:
    push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True, dry_run=True)
    refused, gone = int(hs_env.won[0]), int(hs_env.won[1])
    hs_env.emu.write_faults[("deals", refused)] = ("VALIDATION_ERROR", "Deal is locked by an approval process")
    hs_env.emu.archive("deals", [gone])  # deleted in HubSpot after the last sync
    report = push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    failed = {f.record_id: f for f in report.failures}
    assert set(failed) == {str(refused), str(gone)}
    assert failed[str(refused)].code == "VALIDATION_ERROR" and "approval process" in failed[str(refused)].message
    assert failed[str(gone)].code == "OBJECT_NOT_FOUND"
    assert report.counts["deals"].written == len(hs_env.won) - 2 and hs_env.emu.statuses.get(207) == 1
    del hs_env.emu.write_faults[("deals", refused)]
    again = push_source(hs_env.store, hs_env.cfg, "hs")
    assert {f.record_id for f in again.failures} == {str(gone)} and again.counts["deals"].written == 1
    assert deal(hs_env, str(refused))["ltc_status"]


def test_after_push_crm_the_sync_re_maps_nothing_and_no_exception_changes(hs_env: HsEnv) -> None:
    with hs_env.store.engine.connect() as conn:
        exceptions = set(conn.execute(sa.select(recon_exception.c.fingerprint, recon_exception.c.status)))
    push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    connector = runtime.build_connector(hs_env.cfg, "hs")
    try:
        results = {r.stream: r for r in sync(connector, hs_env.store, streams=["deals", "companies"])}
    finally:
        connector.close()
    assert results["deals"].records >= len(hs_env.won) and results["deals"].written == 0
    assert results["companies"].written == 0
    with hs_env.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(raw_pending)).scalar() == 0
    raw = hs_env.store.get_raw("hs", "deals", hs_env.won[0])
    assert raw is not None and raw["payload"]["properties"]["ltc_status"] == "paid"
    assert sum(run_mapping(hs_env.store, config=hs_env.cfg).get("hs", {}).values()) == 0
    lifecycle = run_reconciliation(hs_env.store, hs_env.cfg, AS_OF).lifecycle
    assert lifecycle["new"] == lifecycle["reopened"] == lifecycle["auto_resolved"] == 0
    with hs_env.store.engine.connect() as conn:
        assert set(conn.execute(sa.select(recon_exception.c.fingerprint, recon_exception.c.status))) == exceptions


def test_a_missing_write_scope_is_one_clear_error(hs_env: HsEnv) -> None:
    hs_env.emu.scopes = {"crm.objects.deals.write", "crm.objects.companies.write"}
    with pytest.raises(PermissionDenied, match=r"creating .* was refused \(403\).*crm\.schemas\.deals\.write"):
        push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    hs_env.emu.scopes = {"crm.schemas.deals.write", "crm.schemas.companies.write", "crm.objects.companies.write"}
    with pytest.raises(PermissionDenied, match=r"updating deals was refused \(403\); grant .*crm\.objects\.deals\.write"):
        push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)


def test_the_daily_quota_pauses_the_run_and_the_next_one_finishes(hs_env: HsEnv) -> None:
    from connectors.governor import reset_governors

    reset_governors()
    hs_env.emu.rate_limits, hs_env.emu.burst_max = True, 1_000_000
    hs_env.emu.daily_limit = hs_env.emu.daily_used + 2  # the property check and one more request
    report = push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    assert report.paused is not None and "paused with state saved" in report.paused
    assert sum(c.written for c in report.counts.values()) == 0 and not report.failures
    hs_env.emu.reset_daily()
    hs_env.emu.daily_limit = 1_000_000
    reset_governors()
    again = push_source(hs_env.store, hs_env.cfg, "hs", create_fields=True)
    assert not again.paused and not again.failures
    total = sum(c.written for c in report.counts.values()) + sum(c.written for c in again.counts.values())
    assert total == sum(c.considered for c in again.counts.values())
