"""Deep completeness against the Salesforce emulator: a record purged from the recycle bin is
tombstoned (dated by getDeleted), a record committed later than the lookback is landed, and a
record stamped 2099 never freezes the cursor (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus

import pytest

from canonical.store import Store
from connectors.base import sync
from connectors.errors import ConnectorError
from sandbox.salesforce import Org
from tests.salesforce.conftest import Make


def test_purged_records_are_tombstoned_with_their_delete_date(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Account"])
    sync(conn, sqlite_store)
    soft, hard = list(org.rows["Account"])[:2]
    org.delete("Account", soft)
    # deleted and emptied from the recycle bin 10 minutes ago: queryAll no longer returns it (getDeleted
    # ignores seconds and covers whole minutes, so a delete of this very minute has no date yet)
    org.purge("Account", hard, at=datetime.now(UTC) - timedelta(minutes=10))
    [r] = sync(conn, sqlite_store)
    assert sqlite_store.get_raw("sf", "Account", soft)["deleted"] is True  # type: ignore[index]
    assert sqlite_store.get_raw("sf", "Account", hard)["deleted"] is False  # type: ignore[index]  # no window sees it
    [r] = sync(conn, sqlite_store, deep=True)
    raw = sqlite_store.get_raw("sf", "Account", hard)
    assert raw is not None and raw["deleted"] is True and raw["payload"]["Name"]  # the last known payload stays
    logged = datetime.fromisoformat(org.delete_log["Account"][hard].replace("+0000", "+00:00"))
    assert raw["source_updated_at"] == logged  # dated by getDeleted, not by our clock
    assert r.deep_tombstoned == 1 and (r.source_count, r.store_count) == (len(org.rows["Account"]) - 1,) * 2
    assert any("/sobjects/Account/deleted/?start=" in q for q in org.requests)


def test_a_record_committed_later_than_the_lookback_is_landed_by_the_deep_check(make: Make, org: Org,
                                                                               sqlite_store: Store) -> None:
    conn = make(objects=["Contact"], lookback_min=1)
    sync(conn, sqlite_store)
    first = min(r["SystemModstamp"] for r in org.rows["Contact"].values())
    old = datetime.fromisoformat(first.replace("+0000", "+00:00")) + timedelta(seconds=1)
    rid = org.insert("Contact", {"LastName": "Late"}, at=old)  # visible long after its stamp (a long transaction)
    [r] = sync(conn, sqlite_store)
    assert sqlite_store.get_raw("sf", "Contact", rid) is None and r.status == "success"
    [r] = sync(conn, sqlite_store, deep=True)
    assert sqlite_store.get_raw("sf", "Contact", rid) is not None and r.deep_landed == 1


def test_a_record_stamped_2099_does_not_freeze_the_cursor(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Opportunity"])
    started = datetime.now(UTC)
    future = org.insert("Opportunity", {"Name": "from the future", "StageName": "Prospecting"},
                        at=datetime(2099, 1, 1, tzinfo=UTC))
    [r] = sync(conn, sqlite_store)
    assert r.future == 1 and sqlite_store.get_raw("sf", "Opportunity", future) is not None
    new = org.insert("Opportunity", {"Name": "new", "StageName": "Prospecting"})
    edited = next(iter(org.rows["Opportunity"]))
    org.update("Opportunity", edited, {"Name": "edited"})
    [r] = sync(conn, sqlite_store)
    assert r.status == "success" and sqlite_store.get_raw("sf", "Opportunity", new) is not None
    assert sqlite_store.get_raw("sf", "Opportunity", edited)["payload"]["Name"] == "edited"  # type: ignore[index]
    # every keyset query had an upper bound, but the probe for what is stamped ahead of our clock
    pages = [unquote_plus(q) for q in org.requests if "queryAll" in q and "ORDER+BY" in q]
    bounded = [q for q in pages if "SystemModstamp < " in q]
    probes = [q for q in pages if q not in bounded]
    assert bounded and probes
    for q in probes:
        since = datetime.fromisoformat(q.split("SystemModstamp >= ")[1].split(" ")[0].replace("Z", "+00:00"))
        assert since > started


def test_a_query_cut_short_without_next_records_url_is_an_error(make: Make, org: Org, sqlite_store: Store) -> None:
    for i in range(200):  # more than one query batch (200 rows at the least)
        org.insert("Account", {"Name": f"extra {i}"})
    conn = make(objects=["Account"], batch_size=200, page_size=500)
    sync(conn, sqlite_store)
    org.faults.drop_next_records_url = True  # done: false, but no nextRecordsUrl to go on with
    with pytest.raises(ConnectorError, match="done: false but no nextRecordsUrl"):
        sync(conn, sqlite_store, deep=True)
    assert not any(raw["deleted"] for rid in org.rows["Account"]
                   if (raw := sqlite_store.get_raw("sf", "Account", rid)) is not None)
