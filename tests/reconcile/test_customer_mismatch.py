"""CUSTOMER_MISMATCH names what disagrees: both customer records (and the chain), the field, both values."""

from __future__ import annotations

from recon_helpers import AS_OF, deal, frame, invoice, order, world

from reconcile.core import Settings, reconcile_frames
from reconcile.frames import prepare


def _with_other_party(tax: str | None, country: str, name: str = "Acme Inc"):  # type: ignore[no-untyped-def]
    """The deal's customer is the base world's CRM account (tax T1, US); its order names another ERP party."""
    fr = world(deal=[deal("D1", "100.00")], order=[dict(order("SO1", "D1", "100.00"), account_id="erp:account:X")],
               invoice=[dict(invoice("I1", "SO1", "100.00"), account_id="erp:account:X")])
    acct = fr.account.vstack(frame("account", [{"id": "erp:account:X", "source_system": "erp", "name": name,
                                                "tax_id": tax, "country": country}]))
    return prepare(**{**{f: getattr(fr, f) for f in fr.__dataclass_fields__}, "account": acct})


def _mismatch(fr):  # type: ignore[no-untyped-def]
    res = reconcile_frames(fr, Settings(), AS_OF)
    rows = [r for r in res.exceptions.iter_rows(named=True) if r["code"] == "CUSTOMER_MISMATCH"]
    assert len(rows) == 1, rows
    return rows[0]


def test_tax_id_conflict_names_both_records_the_field_and_both_values() -> None:
    row = _mismatch(_with_other_party("T 2", "US"))
    assert row["chain_id"] == "sf:deal:D1"
    assert set(row["records"]) == {"sf:deal:D1", "erp:order:SO1", "sf:account:A", "erp:account:X"}
    assert "tax_id sf A = T1 (deal sf D1) vs erp X = T2 (order erp SO1)" in row["detail"]


def test_country_conflict_when_tax_ids_agree_or_are_missing() -> None:
    row = _mismatch(_with_other_party(None, "DE", name="Acme Deutschland"))
    assert "country sf A = US" in row["detail"] and "erp X = DE" in row["detail"]
