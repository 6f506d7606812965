"""push-crm's large HubSpot writes through the imports API (POST /crm/v3/imports, UPDATE by Record ID),
against the emulator: the CSV and its column mappings, the status polling, refused rows read back from
/errors, blank cells never clearing, and the fall-back to batch updates without the crm.import scope."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from connectors.crm_push import HubSpotTarget, Update, WriteResult
from connectors.hubspot import HubSpotConnector
from sandbox.hubspot import HubSpotEmulator
from sandbox.server import serve

PROPS = {"ltc_paid_amount": "number", "ltc_status": "string", "ltc_last_payment": "date"}
KINDS = {"ltc_paid_amount": "currency", "ltc_status": "text", "ltc_last_payment": "date"}


def _portal(**kw: object) -> HubSpotEmulator:
    emu = HubSpotEmulator(seed=3, size=30, companies=6, contacts=1, line_items=False, products=1, **kw)  # type: ignore[arg-type]
    emu._groups["deals"]["ltc"] = {"name": "ltc", "label": "LTC", "displayOrder": -1, "archived": False}
    for name, ptype in PROPS.items():
        emu._defined["deals"][name] = {"name": name, "label": name, "type": ptype, "groupName": "ltc",
                                       "fieldType": "number" if ptype == "number" else "text",
                                       "modificationMetadata": {"readOnlyValue": False}}
    return emu


@pytest.fixture
def portal(request: pytest.FixtureRequest) -> Iterator[tuple[HubSpotEmulator, HubSpotTarget]]:
    emu = _portal(**getattr(request, "param", {}))
    server = serve(emu.app)
    connector = HubSpotConnector("hs", server.url, emu.token, tenant=f"t-{uuid.uuid4().hex[:6]}")
    target = HubSpotTarget(connector, import_threshold=5, poll_s=0.01)
    try:
        yield emu, target
    finally:
        target.close()
        server.stop()


def _update(rid: str, paid: str | None, status: str | None = "paid", last: str | None = "2026-11-30",
            clears: frozenset[str] = frozenset()) -> Update:
    return Update("deals", rid, {"ltc_paid_amount": paid, "ltc_status": status, "ltc_last_payment": last}, KINDS,
                  clears)


def test_an_import_updates_many_deals_in_a_few_requests_and_reads_back_the_refused_rows(
        portal: tuple[HubSpotEmulator, HubSpotTarget]) -> None:
    emu, target = portal
    ids = [str(i) for i in emu.live_ids("deals")][:13]
    bad_value = ids.pop()
    faulty = int(ids[3])
    emu.write_faults[("deals", faulty)] = ("RECORD_LOCKED", "record is locked by an approval process")
    updates = [_update(rid, f"{100 + n}.50") for n, rid in enumerate(ids)]
    updates.append(_update("999999999", "1.00"))  # no such deal
    updates.append(_update(bad_value, "not a number"))  # a value HubSpot refuses
    before = target.requests
    results = target.write(updates)
    assert target.requests - before == 4  # start, status (PROCESSING), status (DONE), errors
    assert emu.served["imports"] == 4
    by_id = dict(zip([u.record_id for u in updates], results, strict=False))
    assert by_id[str(faulty)] == WriteResult(False, "RECORD_LOCKED", by_id[str(faulty)].message)
    assert by_id["999999999"].code == "UNKNOWN_OBJECT_ID"
    assert results[-1].ok is False and results[-1].code is not None
    assert "line" in (by_id["999999999"].message or "")
    assert [r.ok for r in results[:12]] == [rid != str(faulty) for rid in ids]
    deal = emu.objects["deals"][int(ids[0])].props
    assert (deal["ltc_paid_amount"], deal["ltc_status"], deal["ltc_last_payment"]) == ("100.50", "paid", "2026-11-30")
    assert emu.objects["deals"][faulty].props.get("ltc_paid_amount") is None  # refused: untouched
    spec = next(iter(emu.imports.values()))["meta"]["importRequestJson"]
    assert spec["importOperations"] == {"0-3": "UPDATE"}
    mappings = spec["files"][0]["fileImportPage"]["columnMappings"]
    assert mappings[0] == {"columnObjectTypeId": "0-3", "columnName": "Record ID", "propertyName": "hs_object_id",
                           "columnType": "HUBSPOT_OBJECT_ID"}
    assert sorted(m["propertyName"] for m in mappings[1:]) == sorted(PROPS)


def test_records_that_clear_a_value_go_by_batch_update_since_an_import_never_clears(
        portal: tuple[HubSpotEmulator, HubSpotTarget]) -> None:
    emu, target = portal
    ids = [str(i) for i in emu.live_ids("deals")][:8]
    assert all(r.ok for r in target.write([_update(rid, "5.00") for rid in ids]))
    results = target.write([_update(rid, "6.00", last=None, clears=frozenset({"ltc_last_payment"}))
                            if rid == ids[0] else _update(rid, "6.00", last=None if rid == ids[1] else "2026-12-01")
                            for rid in ids])
    assert all(r.ok for r in results)
    assert emu.objects["deals"][int(ids[0])].props["ltc_last_payment"] == ""  # cleared by a batch update
    assert emu.objects["deals"][int(ids[1])].props["ltc_last_payment"] == "2026-11-30"  # blank cell: left alone
    assert emu.objects["deals"][int(ids[2])].props["ltc_last_payment"] == "2026-12-01"
    assert emu.served["objects"] == 1 and len(emu.imports) == 2


def test_below_the_threshold_batch_updates_are_used(portal: tuple[HubSpotEmulator, HubSpotTarget]) -> None:
    emu, target = portal
    ids = [str(i) for i in emu.live_ids("deals")][:5]
    assert all(r.ok for r in target.write([_update(rid, "1.00") for rid in ids]))
    assert not emu.imports


@pytest.mark.parametrize("portal", [{"scopes": {"crm.objects.deals.write", "crm.objects.companies.write"}}],
                         indirect=True)
def test_without_the_import_scope_it_falls_back_to_batch_updates_and_says_so(
        portal: tuple[HubSpotEmulator, HubSpotTarget]) -> None:
    emu, target = portal
    ids = [str(i) for i in emu.live_ids("deals")][:9]
    results = target.write([_update(rid, "2.00") for rid in ids])
    assert all(r.ok for r in results)
    assert not emu.imports and target.bulk_threshold is None
    assert any("crm.import" in n for n in target.notes)
    assert emu.objects["deals"][int(ids[8])].props["ltc_paid_amount"] == "2.00"
