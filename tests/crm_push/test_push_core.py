"""The push algorithm on each store backend, against an in-memory CRM: idempotence, only changed
fields, per-record failures kept and retried, quiet catch-up, dry run, the field check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from canonical.errors import ConfigError
from canonical.store import Store
from canonical.tables import crm_push_state
from connectors import crm_fields
from connectors.crm_fields import FinanceStatus, StatusRecord
from connectors.crm_push import Update, Wanted, WriteResult, push

FIELDS = crm_fields.names("salesforce", None)


class MemoryCrm:
    """A CRM that keeps records in memory, counts requests and refuses what it is told to."""

    name = "crm"
    kind = "salesforce"
    batch_size = 2
    mixed_objects = True
    bulk_threshold: int | None = None

    def __init__(self, existing: set[str] | None = None, creatable: bool = False):
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.sent: list[list[Update]] = []
        self.refuse: dict[str, tuple[str, str]] = {}
        self.existing = existing
        self.creatable = creatable
        self.calls = 0

    @property
    def requests(self) -> int:
        return self.calls

    def check_fields(self, wanted: Wanted) -> list[str]:
        self.calls += len(wanted)
        if self.existing is None:
            return []
        missing = [f"{obj}.{n}" for obj, fs in wanted.items() for _, n in fs if f"{obj}.{n}" not in self.existing]
        return [f"missing {', '.join(missing)}"] if missing else []

    def create_fields(self, wanted: Wanted) -> list[str]:
        if not self.creatable:
            return []
        made = [f"{obj}.{n}" for obj, fs in wanted.items() for _, n in fs]
        self.calls += len(made)
        assert self.existing is not None
        self.existing.update(made)
        return made

    def write(self, updates: Sequence[Update]) -> list[WriteResult]:
        self.calls += 1
        self.sent.append(list(updates))
        out = []
        for u in updates:
            if u.record_id in self.refuse:
                out.append(WriteResult(False, *self.refuse[u.record_id]))
            else:
                self.records.setdefault((u.object, u.record_id), {}).update(u.values)
                out.append(WriteResult(True))
        return out

    def close(self) -> None:
        pass


def deal(sid: str, **values: Any) -> StatusRecord:
    base: dict[str, Any] = {"erp_orders": "SO1", "invoiced": Decimal("100.00"), "paid": Decimal("40.00"),
                            "open_balance": Decimal("60.00"), "currency": "EUR", "last_payment_date": date(2026, 3, 1),
                            "days_overdue": 12, "status": "partly paid", "exception_codes": None,
                            "exception_link": None}
    merged = {**base, **values}
    return StatusRecord("deal", f"crm:deal:{sid}", "crm", "Opportunity", sid, merged["currency"], merged)


def status(*records: StatusRecord) -> FinanceStatus:
    return FinanceStatus(as_of=date(2026, 3, 31), records=list(records))


def sent_values(crm: MemoryCrm) -> list[tuple[str, Mapping[str, Any]]]:
    return [(u.record_id, dict(u.values)) for batch in crm.sent for u in batch]


def test_first_push_writes_everything_then_a_rerun_sends_nothing(store: Store) -> None:
    crm = MemoryCrm()
    records = status(deal("D1"), deal("D2"), deal("D3", currency="USD"))
    report = push(store, crm, records, FIELDS)
    assert report.counts["Opportunity"].written == 3 and not report.failures
    assert len(crm.sent) == 2  # 2 per request
    assert crm.records[("Opportunity", "D1")]["LTC_Open_Balance__c"] == "60.00"
    assert crm.records[("Opportunity", "D1")]["LTC_Last_Payment_Date__c"] == "2026-03-01"
    assert crm.records[("Opportunity", "D1")]["LTC_Exception_Codes__c"] is None
    totals = report.totals()
    assert totals[("Opportunity", "EUR")]["open_balance"] == Decimal("120.00")
    assert totals[("Opportunity", "USD")]["records"] == 1

    crm.sent.clear()
    calls = crm.calls
    again = push(store, crm, records, FIELDS)
    assert again.counts["Opportunity"].unchanged == 3 and crm.sent == [] and crm.calls == calls
    assert again.requests == 0


def test_only_the_changed_fields_are_sent(store: Store) -> None:
    crm = MemoryCrm()
    push(store, crm, status(deal("D1"), deal("D2")), FIELDS)
    crm.sent.clear()
    paid = deal("D2", paid=Decimal("100.00"), open_balance=Decimal("0.00"), status="paid", days_overdue=0,
                last_payment_date=date(2026, 3, 20))
    report = push(store, crm, status(deal("D1"), paid), FIELDS)
    assert sent_values(crm) == [("D2", {"LTC_Paid_Amount__c": "100.00", "LTC_Open_Balance__c": "0.00",
                                        "LTC_Last_Payment_Date__c": "2026-03-20", "LTC_Days_Overdue__c": "0",
                                        "LTC_Status__c": "paid"})]
    assert report.counts["Opportunity"].unchanged == 1 and report.counts["Opportunity"].written == 1


def test_a_refused_record_is_kept_with_the_crm_message_and_retried(store: Store) -> None:
    crm = MemoryCrm()
    crm.refuse["D2"] = ("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")
    report = push(store, crm, status(deal("D1"), deal("D2"), deal("D3")), FIELDS)
    assert [(f.record_id, f.code) for f in report.failures] == [("D2", "UNABLE_TO_LOCK_ROW")]
    assert report.counts["Opportunity"].written == 2 and report.status == "partial"
    with store.engine.connect() as conn:
        err = conn.execute(sa.select(crm_push_state.c.error, crm_push_state.c.content_hash)
                           .where(crm_push_state.c.record_id == "D2")).one()
    assert err.error.startswith("UNABLE_TO_LOCK_ROW: unable to obtain") and err.content_hash is None

    crm.sent.clear()
    del crm.refuse["D2"]
    again = push(store, crm, status(deal("D1"), deal("D2"), deal("D3")), FIELDS)
    assert [rid for rid, _ in sent_values(crm)] == ["D2"] and not again.failures
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(crm_push_state.c.error).where(crm_push_state.c.record_id == "D2")).scalar() is None


def test_a_failed_change_sends_only_what_differs_from_the_last_successful_write(store: Store) -> None:
    crm = MemoryCrm()
    push(store, crm, status(deal("D1")), FIELDS)
    crm.refuse["D1"] = ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "closed quarter")
    push(store, crm, status(deal("D1", status="paid")), FIELDS)
    crm.sent.clear()
    # the change is reverted before the next run: nothing to send, the error is cleared quietly
    report = push(store, crm, status(deal("D1")), FIELDS)
    assert crm.sent == [] and report.counts["Opportunity"].unchanged == 1 and not report.failures
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(crm_push_state.c.error)).scalar() is None


def test_dry_run_writes_nothing_and_stores_nothing(store: Store) -> None:
    crm = MemoryCrm()
    report = push(store, crm, status(deal("D1"), deal("D2")), FIELDS, dry_run=True)
    assert report.counts["Opportunity"].to_write == 2 and crm.sent == []
    assert [c.record.record_id for c in report.changes] == ["D1", "D2"]
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(crm_push_state)).scalar() == 0


def test_missing_fields_stop_before_any_write_unless_they_can_be_created(store: Store) -> None:
    crm = MemoryCrm(existing=set())
    with pytest.raises(ConfigError, match=r"missing Opportunity\.LTC_ERP_Orders__c"):
        push(store, crm, status(deal("D1")), FIELDS)
    assert crm.sent == []
    dry = push(store, crm, status(deal("D1")), FIELDS, dry_run=True)
    assert dry.warnings and "missing" in dry.warnings[0]
    crm.creatable = True
    report = push(store, crm, status(deal("D1")), FIELDS, create_fields=True)
    assert "Opportunity.LTC_Status__c" in report.created and report.counts["Opportunity"].written == 1


def test_fields_renamed_or_dropped_in_the_configuration(store: Store) -> None:
    crm = MemoryCrm()
    fields = crm_fields.names("salesforce", {"finance_fields": {"deal": {"invoiced": "Invoiced_Net__c",
                                                                        "exception_link": None}}})
    push(store, crm, status(deal("D1")), fields)
    written = crm.records[("Opportunity", "D1")]
    assert written["Invoiced_Net__c"] == "100.00"
    assert "LTC_Invoiced_Amount__c" not in written and "LTC_Exception_Link__c" not in written
