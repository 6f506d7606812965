"""The push against a real trytond: party + products + sale created, quoted and confirmed;
idempotent re-push; a changed deal updates a draft sale and is a conflict on a confirmed one."""

from __future__ import annotations

import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from canonical.money import Money
from canonical.store import Store
from connectors.push import PushConflict, push_orders
from connectors.tryton.rpc import TrytonClient
from connectors.tryton.target import TrytonTarget
from ltc.cli import main
from sandbox import tryton_peer
from sandbox.tryton_setup import TrytonSetup
from tests.push.deals import put_deal

from .conftest import Scenario

pytestmark = pytest.mark.peer


def _ref() -> str:
    return f"OPP-{uuid.uuid4().hex[:10]}"


def _sales(tryton: TrytonClient, ref: str) -> list[dict]:
    return tryton.search_read("sale.sale", [["reference", "=", ref]],
                              ["number", "state", "party", "currency.code", "untaxed_amount", "tax_amount",
                               "total_amount", "lines", "invoices", "sale_date", "description"])


def test_push_created_customer_products_and_a_confirmed_sale(
    scenario: Scenario, tryton: TrytonClient, tryton_setup: TrytonSetup
) -> None:
    ref = scenario.paid_ref
    result = next(r for r in scenario.push.results if r.reference == ref)
    assert (result.action, result.done, result.sale_state) == ("create", True, "processing"), result.message
    assert result.amount == Money.of("137.49", "EUR")
    (sale,) = _sales(tryton, ref)
    assert sale["number"] == result.sale_number
    assert sale["currency."]["code"] == "EUR"
    assert sale["untaxed_amount"] == Decimal("137.49")
    assert sale["tax_amount"] == Decimal("13.75")  # the category's 10 % tax, per line, rounded
    assert sale["total_amount"] == Decimal("151.24")
    (party,) = tryton.read("party.party", [sale["party"]], ["name", "identifiers.code", "addresses", "email"])
    assert party["name"] == "Paid Customer"
    assert [i["code"] for i in party["identifiers."]] == [f"CRM-ACC-{ref}"]
    assert party["email"] == f"billing@acc-{ref.lower()}.test"
    assert len(party["addresses"]) == 1
    lines = tryton.read("sale.line", sale["lines"], ["product.code", "quantity", "unit_price", "description", "taxes"])
    assert sorted((ln["product."]["code"], ln["quantity"], ln["unit_price"], ln["description"]) for ln in lines) == [
        ("SKU-P1", 3, Decimal("12.50"), "Widget"), ("SKU-P2", 1, Decimal("99.99"), "Support")]
    assert all(ln["taxes"] == [tryton_setup.tax] for ln in lines)
    # confirming processed the sale: its invoice was created for the same amounts
    (invoice,) = tryton.read("account.invoice", sale["invoices"], ["total_amount", "origins"])
    assert invoice["total_amount"] == Decimal("151.24")
    assert invoice["origins"] == f"{sale['number']} [{ref}]"


def test_deal_line_without_product_code_uses_the_default_product(tryton: TrytonClient, sqlite_store: Store) -> None:
    ref = _ref()
    put_deal(sqlite_store, ref, [(None, "Onboarding", "1", "99.99")])
    (result,) = push_orders(sqlite_store, TrytonTarget(tryton), confirm=False).results
    assert (result.action, result.sale_state) == ("create", "draft"), result.message
    (sale,) = _sales(tryton, ref)
    (line,) = tryton.read("sale.line", sale["lines"], ["product.code", "description", "unit_price"])
    assert (line["product."]["code"], line["description"], line["unit_price"]) == (
        "CRM-DEAL", "Onboarding", Decimal("99.99"))


def test_push_twice_makes_one_sale_and_reuses_party_and_products(
    tryton: TrytonClient, sqlite_store: Store
) -> None:
    ref, other = _ref(), _ref()
    put_deal(sqlite_store, ref, [("SKU-SHARED", "Shared", "1", "10.00")], account_ref=f"ACC-{ref}")
    target = TrytonTarget(tryton)
    first = push_orders(sqlite_store, target, confirm=False)
    second = push_orders(sqlite_store, target, confirm=False)
    assert [r.action for r in first.results] == ["create"]
    assert [(r.action, r.sale_number) for r in second.results] == [("unchanged", first.results[0].sale_number)]
    assert len(_sales(tryton, ref)) == 1
    # a second deal of the same account and product reuses both
    put_deal(sqlite_store, other, [("SKU-SHARED", "Shared", "2", "10.00")], account_ref=f"ACC-{ref}")
    third = push_orders(sqlite_store, target, confirm=False)
    assert {r.reference: r.action for r in third.results if r.reference in (ref, other)} == {
        ref: "unchanged", other: "create"}
    assert tryton.search_count("party.party", [["identifiers.code", "=", f"CRM-ACC-{ref}"]]) == 1
    assert tryton.search_count("product.product", [["code", "=", "SKU-SHARED"]]) == 1
    assert _sales(tryton, other)[0]["party"] == _sales(tryton, ref)[0]["party"]


def test_changed_deal_updates_a_draft_sale_and_conflicts_on_a_confirmed_one(
    tryton: TrytonClient, sqlite_store: Store
) -> None:
    draft_ref, confirmed_ref = _ref(), _ref()
    put_deal(sqlite_store, draft_ref, [("SKU-A", "A", "2", "50.00")])
    put_deal(sqlite_store, confirmed_ref, [("SKU-A", "A", "2", "50.00")])
    target = TrytonTarget(tryton)
    push_orders(sqlite_store, target, confirm=False, deal_ids=[f"salesforce:deal:{draft_ref}"])
    push_orders(sqlite_store, target, deal_ids=[f"salesforce:deal:{confirmed_ref}"])
    assert _sales(tryton, draft_ref)[0]["state"] == "draft"
    confirmed_before = _sales(tryton, confirmed_ref)[0]
    assert confirmed_before["state"] == "processing"

    put_deal(sqlite_store, draft_ref, [("SKU-A", "A", "3", "50.00"), ("SKU-B", "B", "1", "7.25")])
    put_deal(sqlite_store, confirmed_ref, [("SKU-A", "A", "2", "45.00")])
    report = push_orders(sqlite_store, target, deal_ids=[f"salesforce:deal:{draft_ref}",
                                                       f"salesforce:deal:{confirmed_ref}"])
    by_ref = {r.reference: r for r in report.results}
    assert (by_ref[draft_ref].action, by_ref[draft_ref].done, by_ref[draft_ref].sale_state) == (
        "update", True, "processing")
    (updated,) = _sales(tryton, draft_ref)
    assert updated["untaxed_amount"] == Decimal("157.25")
    lines = tryton.read("sale.line", updated["lines"], ["product.code", "quantity", "unit_price"])
    assert sorted((ln["product."]["code"], ln["quantity"], ln["unit_price"]) for ln in lines) == [
        ("SKU-A", 3, Decimal("50.00")), ("SKU-B", 1, Decimal("7.25"))]

    assert by_ref[confirmed_ref].action == "conflict"
    (conflict,) = report.conflicts
    assert isinstance(conflict, PushConflict)
    assert conflict.sale_number == confirmed_before["number"] and conflict.state == "processing"
    assert "SKU-A x2 @ 45" in str(conflict)
    after = _sales(tryton, confirmed_ref)
    assert len(after) == 1 and after[0]["untaxed_amount"] == confirmed_before["untaxed_amount"]


def test_dry_run_lists_amounts_and_creates_nothing(tryton: TrytonClient, sqlite_store: Store) -> None:
    ref = _ref()
    put_deal(sqlite_store, ref, [("SKU-DRY", "Dry", "4", "2.50")], currency="USD")
    report = push_orders(sqlite_store, TrytonTarget(tryton), dry_run=True)
    assert [(r.action, r.amount, r.done) for r in report.results] == [("create", Money.of("10.00", "USD"), False)]
    assert _sales(tryton, ref) == []
    assert tryton.search_count("product.product", [["code", "=", "SKU-DRY"]]) == 0


def test_unknown_currency_is_a_clear_error(tryton: TrytonClient, sqlite_store: Store) -> None:
    ref = _ref()
    put_deal(sqlite_store, ref, [("SKU-J", "J", "1", "1000")], currency="JPY")
    (result,) = push_orders(sqlite_store, TrytonTarget(tryton)).results
    assert result.action == "error"
    assert result.message == "currency JPY does not exist in Tryton; create it (with a rate) first"
    assert _sales(tryton, ref) == []


def test_ltc_push_orders_cli_dry_run_then_push(
    tryton_server: tryton_peer.TrytonPeer, tryton: TrytonClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ref = _ref()
    db_url = f"sqlite:///{tmp_path / 'ltc.db'}"
    store = Store.open(db_url)
    put_deal(store, ref, [("SKU-CLI", "Cli", "2", "1250.25")], currency="EUR")
    store.close()
    (tmp_path / "ltc.yaml").write_text(
        "sources:\n  erp:\n    kind: tryton\n"
        f"    base_url: {tryton_server.base_url}\n"
        f"    options: {{database: {tryton_server.database}}}\n"
        "    credentials: {login: {env: T_LOGIN}, password: {env: T_PASSWORD}}\n"
        "erp: {source: erp}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LTC_CONFIG", raising=False)
    for key, value in (("LTC_DATABASE_URL", db_url), ("T_LOGIN", tryton_peer.ADMIN_LOGIN),
                       ("T_PASSWORD", tryton_peer.ADMIN_PASSWORD), ("COLUMNS", "250")):
        monkeypatch.setenv(key, value)

    def ltc(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["ltc", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        out = capsys.readouterr()
        return int(exit_.value.code or 0), out.out + out.err

    code, out = ltc("push-orders", "--dry-run")
    assert code == 0, out
    assert "dry run: nothing written" in out and ref in out
    assert "1 order(s) to create: 2,500.50 EUR" in out
    assert _sales(tryton, ref) == []

    code, out = ltc("push-orders")
    assert code == 0, out
    assert "1 order(s) created: 2,500.50 EUR" in out
    (sale,) = _sales(tryton, ref)
    assert sale["state"] == "processing" and sale["untaxed_amount"] == Decimal("2500.50")
    assert sale["number"] in out
    code, out = ltc("push-orders")
    assert code == 0 and "unchanged" in out
    assert len(_sales(tryton, ref)) == 1
