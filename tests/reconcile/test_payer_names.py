"""One name normaliser for identity and reconciliation: a company name and its variants (case, legal
form of any jurisdiction, full-width forms) meet in both places, Chinese names included."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recon_helpers import AS_OF, frame

from canonical.identity import Party, resolve
from canonical.names import normalize_name
from reconcile.core import Settings, reconcile_frames
from reconcile.frames import prepare

LEGAL = ["Inc.", "GmbH", "Ltd", "S.A.", "LLC", "Co., Ltd.", "有限公司", "股份有限公司", "有限责任公司", "株式会社"]


def _world(account_name: str, payer_name: str):  # type: ignore[no-untyped-def]
    """An ERP customer with one open invoice (no order: INVOICE_WITHOUT_ORDER is expected), and a bank
    credit naming its payer only."""
    acc = [{"id": "erp:account:C", "source_system": "erp", "name": account_name, "tax_id": None, "country": "CN"}]
    inv = [{"id": "erp:invoice:I1", "source_id": "I1", "number": "I1", "kind": "invoice", "account_id": "erp:account:C",
            "issue_date": date(2026, 9, 1), "due_date": date(2026, 12, 1), "status": "open", "currency": "CNY",
            "total": Decimal("8800.00")}]
    pay = [{"id": "bank:payment:P1", "source_id": "P1", "kind": "payment", "account_id": None, "currency": "CNY",
            "amount": Decimal("8800.00"), "payment_date": date(2026, 9, 20), "payer_name": payer_name,
            "status": "BOOK"}]
    return prepare(account=frame("account", acc), invoice=frame("invoice", inv), payment=frame("payment", pay))


def _applied(account_name: str, payer_name: str) -> bool:
    res = reconcile_frames(_world(account_name, payer_name), Settings(reporting_currency="CNY"), AS_OF)
    pay_codes = {"UNAPPLIED_PAYMENT", "AMBIGUOUS_MATCH"} & set(res.exceptions["code"])
    return res.allocations.height == 1 and not pay_codes


def test_bank_credit_whose_debtor_is_the_erp_party_chinese_name_is_applied() -> None:
    assert _applied("深圳市腾达科技有限公司", "深圳市腾达科技有限公司")


def test_a_different_chinese_company_is_not_applied() -> None:
    assert not _applied("深圳市腾达科技有限公司", "广州市白云电器设备股份有限公司")


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in text)


latin = st.lists(st.text("abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=9), min_size=1, max_size=3).map(
    lambda ws: " ".join(w.capitalize() for w in ws))
cjk = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=2, max_size=6).filter(
    lambda t: not any(f in t for f in ("公司", "会社", "有限", "股份")))
names = st.one_of(latin, cjk).filter(lambda n: normalize_name(n) != "")


@st.composite
def variants(draw: st.DrawFn) -> tuple[str, str]:
    base = draw(names)
    variant = base
    if draw(st.booleans()):
        variant = variant.upper()
    legal = draw(st.sampled_from(LEGAL))
    variant = f"{variant}{legal}" if legal[0] > "\u2e80" else f"{variant}, {legal}"
    if draw(st.booleans()):
        variant = _fullwidth(variant)
    return base, variant


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variants())
def test_a_name_and_its_variant_meet_in_identity_and_in_payer_matching(pair: tuple[str, str]) -> None:
    base, variant = pair
    # identity: two accounts, one name each way, are one customer; a payer with the variant attaches
    got = resolve([Party(id="crm:account:A", name=base), Party(id="erp:account:B", name=variant)],
                  [Party(id="bank:payment:P", name=variant, entity="payment")])
    assert got.cluster_of["crm:account:A"] == got.cluster_of["erp:account:B"]
    assert [lk.right for lk in got.payer_links] and got.payer_links[0].left == "bank:payment:P"
    # reconciliation: the bank credit naming the variant pays the invoice of the account with the name
    assert _applied(base, variant)
    assert _applied(variant, base)
