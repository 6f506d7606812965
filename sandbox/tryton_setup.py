"""The minimal accounting set-up a fresh Tryton database needs before a sale can be invoiced and paid.

Done over JSON-RPC only (about 35 calls, ~2 s): currencies with rates, a company, the "Universal
Chart of Accounts", fiscal years with move and invoice sequences, a "Direct" payment term, a 10 %
tax, an accounting product category, a cash payment method, and the currency-exchange accounts
(posting a foreign-currency invoice fails without them as soon as conversion leaves a rounding
difference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from connectors.tryton.rpc import TrytonClient

COMPANY_CURRENCY = "USD"
# Rates against Tryton's common base, dated far enough back to cover every test date.
RATES = {"USD": Decimal("1"), "EUR": Decimal("0.9"), "GBP": Decimal("0.8")}
RATE_DATE = date(2000, 1, 1)
TAX_RATE = Decimal("0.10")


@dataclass
class TrytonSetup:
    """Ids of what :func:`setup_accounting` created."""

    company: int
    company_party: int
    currencies: dict[str, int]
    accounts: dict[str, int]
    fiscal_years: list[int]
    payment_term: int
    tax: int
    category: int
    payment_method: int
    journals: dict[str, int] = field(default_factory=dict)


def _one(client: TrytonClient, model: str, domain: list[Any]) -> int:
    ids = client.search(model, domain, limit=1)
    if not ids:
        raise LookupError(f"no {model} matches {domain}")
    return ids[0]


def _accounts(client: TrytonClient, company: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for kind in ("receivable", "payable", "revenue", "expense"):
        found[kind] = _one(client, "account.account",
                           [[f"type.{kind}", "=", True], ["company", "=", company], ["closed", "!=", True]])
    for name, code in (("cash", "1.1.1"), ("tax", "6.3.6"), ("exchange", "6.2.1")):
        found[name] = _one(client, "account.account", [["company", "=", company], ["code", "=", code]])
    return found


def _fiscal_year(client: TrytonClient, company: int, year: int) -> int:
    move_type = _one(client, "ir.sequence.type", [["name", "=", "Account Move"]])
    invoice_type = _one(client, "ir.sequence.type", [["name", "=", "Invoice"]])
    move_seq, invoice_seq = client.create("ir.sequence.strict", [
        {"name": f"Moves {year}", "sequence_type": move_type, "company": company},
        {"name": f"Invoices {year}", "sequence_type": invoice_type, "company": company},
    ])
    (fy,) = client.create("account.fiscalyear", [{
        "name": str(year), "company": company,
        "start_date": date(year, 1, 1), "end_date": date(year, 12, 31),
        "move_sequence": move_seq,
        "invoice_sequences": [["create", [{
            "company": company,
            "out_invoice_sequence": invoice_seq, "out_credit_note_sequence": invoice_seq,
            "in_invoice_sequence": invoice_seq, "in_credit_note_sequence": invoice_seq,
        }]]],
    }])
    client.button("account.fiscalyear", "create_period", [fy])
    return fy


def setup_accounting(client: TrytonClient, *, today: date | None = None) -> TrytonSetup:
    """Make a freshly activated database ready to sell, invoice and get paid. Call once."""
    today = today or date.today()
    currencies: dict[str, int] = {}
    for code, rate in RATES.items():
        (cid,) = client.create("currency.currency", [{
            "name": code, "code": code, "symbol": code, "digits": 2, "rounding": Decimal("0.01"),
            "rates": [["create", [{"date": RATE_DATE, "rate": rate}]]],
        }])
        currencies[code] = cid

    (company_party,) = client.create("party.party", [{"name": "LTC Demo Inc"}])
    (company,) = client.create("company.company", [{"party": company_party, "currency": currencies[COMPANY_CURRENCY]}])
    assert client.user_id is not None
    client.write("res.user", [client.user_id], {"companies": [["add", [company]]], "company": company})
    client.context = client.call("model.res.user.get_preferences", True)

    template = _one(client, "account.account.template",
                    [["parent", "=", None], ["name", "=", "Universal Chart of Accounts"]])
    wiz_id, _, _ = client.call("wizard.account.create_chart.create")
    try:
        client.call("wizard.account.create_chart.execute", wiz_id,
                    {"account": {"company": company, "account_template": template}}, "create_account")
        accounts = _accounts(client, company)
        client.call("wizard.account.create_chart.execute", wiz_id, {"properties": {
            "company": company,
            "account_receivable": accounts["receivable"], "account_payable": accounts["payable"],
            "category_account_revenue": accounts["revenue"], "category_account_expense": accounts["expense"],
        }}, "create_properties")
    finally:
        client.call("wizard.account.create_chart.delete", wiz_id)

    fiscal_years = [_fiscal_year(client, company, y) for y in (today.year, today.year + 1)]

    (payment_term,) = client.create("account.invoice.payment_term", [
        {"name": "Direct", "lines": [["create", [{"type": "remainder"}]]]}])
    (tax,) = client.create("account.tax", [{
        "name": "VAT 10%", "description": "VAT 10%", "type": "percentage", "rate": TAX_RATE,
        "company": company, "invoice_account": accounts["tax"], "credit_note_account": accounts["tax"],
    }])
    (category,) = client.create("product.category", [{
        "name": "Services", "accounting": True,
        "account_revenue": accounts["revenue"], "account_expense": accounts["expense"],
        "customer_taxes": [["add", [tax]]],
    }])
    journals = {j["type"]: j["id"] for j in client.search_read("account.journal", [], ["type"])}
    (payment_method,) = client.create("account.invoice.payment.method", [{
        "name": "Cash", "company": company, "journal": journals["cash"],
        "debit_account": accounts["cash"], "credit_account": accounts["cash"],
    }])
    client.write("account.configuration", [1], {
        "currency_exchange_credit_account": accounts["exchange"],
        "currency_exchange_debit_account": accounts["exchange"],
    })
    return TrytonSetup(
        company=company, company_party=company_party, currencies=currencies, accounts=accounts,
        fiscal_years=fiscal_years, payment_term=payment_term, tax=tax, category=category,
        payment_method=payment_method, journals=journals,
    )


# --- accounting operations a scenario needs after a sale (tests, benches, demo data) -------------


def post_invoices(client: TrytonClient, invoice_ids: list[int], *, invoice_date: date | None = None) -> None:
    """Post draft invoices (numbers are set here). ``account.invoice.post`` needs a fresh session."""
    if invoice_date is not None:
        client.write("account.invoice", invoice_ids, {"invoice_date": invoice_date})
    client.button("account.invoice", "post", invoice_ids)


def pay_invoice(client: TrytonClient, invoice_id: int, amount: Decimal, *, payment_method: int,
                on: date | None = None, description: str = "", writeoff_partial: bool = False) -> None:
    """Register a payment with the ``account.invoice.pay`` wizard (a partial one leaves it posted)."""
    ctx = {"active_model": "account.invoice", "active_id": invoice_id, "active_ids": [invoice_id]}
    wiz, _, _ = client.call("wizard.account.invoice.pay.create", context=ctx)
    try:
        view = client.call("wizard.account.invoice.pay.execute", wiz, {}, "start", context=ctx)
        start = {k: v for k, v in view["view"]["defaults"].items() if not k.endswith(".")}
        start.update(amount=amount, payment_method=payment_method, date=on or date.today(), description=description)
        result = client.call("wizard.account.invoice.pay.execute", wiz, {"start": start}, "choice", context=ctx)
        if result.get("view"):  # the "ask" step: partial payment or write-off
            ask = {k: v for k, v in result["view"]["defaults"].items() if not k.endswith(".")}
            if not writeoff_partial:
                ask["type"] = "partial"
            client.call("wizard.account.invoice.pay.execute", wiz, {"start": start, "ask": ask}, "pay", context=ctx)
    finally:
        client.call("wizard.account.invoice.pay.delete", wiz, context=ctx)


def credit_invoice(client: TrytonClient, invoice_id: int, *, with_refund: bool = False) -> list[int]:
    """Create the credit note of a posted invoice (``account.invoice.credit``); returns its ids."""
    before = set(client.search("account.invoice", [["type", "=", "out"]]))
    ctx = {"active_model": "account.invoice", "active_id": invoice_id, "active_ids": [invoice_id]}
    client.wizard("account.invoice.credit", [("credit", {"start": {"with_refund": with_refund}})], context=ctx)
    return sorted(set(client.search("account.invoice", [["type", "=", "out"]])) - before)
