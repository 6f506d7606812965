"""The field names per source, what the connectors leave out of the hash, links, roll-up currencies,
and the push_crm section of ltc.yaml."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from canonical.errors import ConfigError
from connectors import crm_fields
from connectors.hubspot import HubSpotConnector
from connectors.salesforce import SalesforceConnector
from ltc.app.config import load_config
from reports.crm_status import Links, _ChainExtras, _clip, _rollup


def test_default_names_overrides_and_dropped_fields() -> None:
    sf = crm_fields.names("salesforce", None)
    assert [n for _, n in sf["deal"]][:3] == ["LTC_ERP_Orders__c", "LTC_Invoiced_Amount__c", "LTC_Paid_Amount__c"]
    assert "LTC_Won_Deals__c" in [n for _, n in sf["account"]]
    hs = crm_fields.names("hubspot", {"finance_fields": {"deal": {"status": "finance_health", "erp_orders": None}}})
    names = [n for _, n in hs["deal"]]
    assert "finance_health" in names and "ltc_status" not in names and "ltc_erp_orders" not in names
    with pytest.raises(ConfigError, match=r"finance_fields\.deal: unknown field\(s\) invoicd"):
        crm_fields.names("salesforce", {"finance_fields": {"deal": {"invoicd": "X__c"}}}, "crm")
    with pytest.raises(ConfigError, match="use deal and account"):
        crm_fields.names("salesforce", {"finance_fields": {"opportunity": {}}})


def test_connectors_leave_our_fields_and_stamps_out_of_the_hash() -> None:
    sf = SalesforceConnector("crm", base_url="https://x.my.salesforce.com", credentials={"access_token": "t"},
                             options={"finance_fields": {"deal": {"status": "Finance_Health__c"}}})
    opp = sf.stream("Opportunity").hash_ignore
    assert {"SystemModstamp", "LastModifiedDate", "Finance_Health__c", "LTC_Paid_Amount__c"} <= set(opp)
    assert "LTC_Status__c" not in opp and "Amount" not in opp
    assert sf.stream("Lead").hash_ignore == ()
    hs = HubSpotConnector("hs", "https://api.hubapi.com", "t")
    deals = hs.stream("deals").hash_ignore
    assert {"updatedAt", "properties.hs_lastmodifieddate", "properties.ltc_open_balance"} <= set(deals)
    assert "properties.ltc_won_deals" not in deals  # an account field
    assert "properties.ltc_won_deals" in hs.stream("companies").hash_ignore
    assert hs.stream("contacts").hash_ignore == ()
    sf.close()
    hs.close()


def test_links_from_the_work_queue_or_the_report_or_templates() -> None:
    assert Links().deal(fingerprint="abc", chain_id="c", record_id="r", account_id="a") is None
    ui = Links(ui_base_url="https://ltc.example.com/")
    assert ui.deal(fingerprint="abc", chain_id="c", record_id="r", account_id="a") == "https://ltc.example.com/x/abc"
    assert ui.account(account_id="001 A/B", record_id="x", chain_id="", fingerprint="f1") == "https://ltc.example.com/x/f1"
    by_account = Links(ui_base_url="https://q", account_template="{ui_base_url}/accounts/{account_id}")
    assert by_account.account(account_id="001 A/B", record_id="x", chain_id="", fingerprint="f") == (
        "https://q/accounts/001%20A%2FB")
    report = Links(report_url="https://intranet/ltc/report.html")
    assert report.deal(fingerprint="abc", chain_id="c", record_id="r", account_id="a") == (
        "https://intranet/ltc/report.html#x-abc")
    custom = Links(ui_base_url="https://q", deal_template="{ui_base_url}/chains/{chain_id}")
    assert custom.deal(fingerprint="f", chain_id="salesforce:deal:006", record_id="006", account_id="") == (
        "https://q/chains/salesforce%3Adeal%3A006")


def test_long_lists_are_clipped_with_a_count() -> None:
    assert _clip([]) is None and _clip(["SO1", "SO2"]) == "SO1, SO2"
    many = [f"SO{i:06d}" for i in range(60)]
    text = _clip(many)
    assert text is not None and len(text) <= 255 and text.endswith("more)") and text.startswith("SO000000, SO000001")


class _Rates:
    def __init__(self, rates: dict[tuple[str, str], Decimal]):
        self.rates = rates

    def convert(self, amount: Decimal, frm: str, to: str) -> Decimal | None:
        if frm == to:
            return amount
        rate = self.rates.get((frm, to))
        return None if rate is None else (amount * rate).quantize(Decimal("0.01"))


def _chain(cid: str, ccy: str, invoiced: str, paid: str, status: str) -> dict[str, object]:
    inv, pd = Decimal(invoiced), Decimal(paid)
    return {"chain_id": cid, "currency": ccy, "invoiced": inv, "paid": pd, "open": inv - pd, "status": status,
            "stage": "closed_won"}


def test_roll_up_in_one_currency_or_converted_or_left_empty() -> None:
    one = [(_chain("a", "EUR", "100.00", "100.00", "paid"), _ChainExtras(date(2026, 3, 1), 0)),
           (_chain("b", "EUR", "50.00", "0", "invoiced, unpaid"), _ChainExtras(None, 5))]
    values, ccy, warning = _rollup(one, {}, _Rates({}), "USD")  # type: ignore[arg-type]
    assert (ccy, values["invoiced"], values["open_balance"], values["status"], values["days_overdue"]) == (
        "EUR", Decimal("150.00"), Decimal("50.00"), "overdue", 5)
    assert values["last_payment_date"] == date(2026, 3, 1) and warning is None
    mixed = [one[0], (_chain("c", "JPY", "1000", "0", "invoiced, unpaid"), _ChainExtras(None, 0))]
    values, ccy, warning = _rollup(mixed, {"c": [{"code": "INVOICE_OVERDUE"}]}, _Rates(  # type: ignore[arg-type]
        {("EUR", "USD"): Decimal("1.1"), ("JPY", "USD"): Decimal("0.0067")}), "USD")
    assert (ccy, values["invoiced"], values["status"], values["exception_codes"]) == (
        "USD", Decimal("116.70"), "exception", "INVOICE_OVERDUE")
    assert values["deals_with_exceptions"] == 1 and values["won_deals"] == 2
    values, ccy, warning = _rollup(mixed, {}, _Rates({("EUR", "USD"): Decimal("1.1")}), "USD")  # type: ignore[arg-type]
    assert values["invoiced"] is None and warning is not None and "JPY" in warning


def test_push_crm_section_of_ltc_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  crm: {kind: salesforce, base_url: 'https://x.my.salesforce.com'}\n"
                   "  erp: {kind: odoo, base_url: 'https://odoo'}\n"
                   "push_crm:\n  ui_base_url: https://ltc.example.com\n  sources: [crm]\n")
    loaded = load_config(cfg)
    assert loaded.push_crm.ui_base_url == "https://ltc.example.com" and loaded.push_crm.sources == ["crm"]
    cfg.write_text("sources:\n  erp: {kind: odoo, base_url: 'https://odoo'}\npush_crm:\n  sources: [erp]\n")
    with pytest.raises(ConfigError, match="'erp' is not a salesforce or hubspot source"):
        load_config(cfg)
    cfg.write_text("push_crm:\n  ui_base_url: ltc.example.com\n")
    with pytest.raises(ConfigError, match=r"ltc.yaml:2: push_crm.ui_base_url: must start with http"):
        load_config(cfg)
