"""A small cross-system chain landed as raw records, for the identity stage test."""

from __future__ import annotations

from canonical.store import RawRecord, Store

ATTRS = {"type": "Account", "url": "/services/data/v59.0/sobjects/Account/x"}


def land_chain(store: Store) -> None:
    store.commit_page("salesforce", "Account", [
        RawRecord("Account", "001000000000001AAA", {"attributes": ATTRS, "Id": "001000000000001AAA",
                  "Name": "Acme Corporation", "BillingCountry": "US", "Website": "https://www.acme.example"}),
        RawRecord("Account", "001000000000002AAA", {"attributes": ATTRS, "Id": "001000000000002AAA",
                  "Name": "Globex GmbH", "BillingCountry": "DE"}),
    ], None)
    store.commit_page("stripe", "customer", [
        RawRecord("customer", "cus_Acme0001", {"id": "cus_Acme0001", "object": "customer", "name": "ACME",
                  "email": "billing@acme.example", "metadata": {"crm_account_id": "001000000000001AAA"}}),
    ], None)
    store.commit_page("tryton", "party.party", [
        RawRecord("party.party", "2", {"id": 2, "name": "ACME Corp", "active": True}),
        RawRecord("party.party", "3", {"id": 3, "name": "Globex GmbH", "active": True,
                  "tax_identifier.": {"code": "DE 123 456 789"}}),
    ], None)
    store.commit_page("camt053", "camt053.entry", [
        RawRecord("camt053.entry", "STMT-2026-04-10/E1/0", {"statement_id": "STMT-2026-04-10", "entry_reference": "E1",
                  "amount": "2500.00", "currency": "USD", "credit_debit": "CRDT", "status": "BOOK",
                  "booking_date": "2026-04-10", "debtor_name": "ACME CORPORATION",
                  "remittance_unstructured": ["INV-0001"]}),
    ], None)
