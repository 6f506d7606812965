"""Deep completeness against the Tryton and Odoo emulators (ERPs delete rows physically): a deleted
row is tombstoned, a row whose stamp is older than the cursor's window is landed (issue 13)."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

from canonical.store import Store
from connectors.base import sync
from ltc.app.config import SecretRef, SourceConfig
from sandbox.run import WORLD_ACCESS, world_app
from sandbox.server import serve
from sandbox.world import read_world

WORLDS = Path(__file__).resolve().parents[1] / "worlds"


def _connector(kind: str, url: str, monkeypatch: Any) -> Any:
    from connectors import registry

    access = WORLD_ACCESS[kind]
    creds = {}
    for field, value in access["credentials"].items():
        monkeypatch.setenv(f"T_{field.upper()}", value)
        creds[field] = SecretRef(env=f"T_{field.upper()}")
    return registry.build("erp", SourceConfig(kind=kind, base_url=url, credentials=creds,  # type: ignore[arg-type]
                                             options=dict(access["options"])))


def _app(kind: str) -> Any:
    """The emulator app of ``kind`` serving the example world of tests/worlds."""
    world = read_world(WORLDS / kind)
    return world_app(kind, world.records[kind], **WORLD_ACCESS[kind]["app"])


def test_tryton_deleted_rows_are_tombstoned_and_old_stamped_rows_landed(store: Store, monkeypatch: Any) -> None:
    app = _app("tryton")
    data = app.state.tryton
    with serve(app) as srv:
        conn = _connector("tryton", srv.url, monkeypatch)
        conn.detect_deletes_enabled = conn.detect_deletes = False  # the per-run id comparison off: deep only
        sync(conn, store, streams=["party.party"])
        parties = data.rows["party.party"]
        gone = parties.pop(0)
        del data.by_id["party.party"][gone["id"]]
        late = copy.deepcopy(parties[0])
        late["id"] = 9999
        late["last_modified_at"] = min(p["last_modified_at"] for p in parties) - timedelta(days=30)
        parties.append(late)
        data.by_id["party.party"][9999] = late
        [r] = sync(conn, store, streams=["party.party"])
        assert store.get_raw("erp", "party.party", "9999") is None  # older than any window
        [r] = sync(conn, store, streams=["party.party"], deep=True)
        assert (r.status, r.deep_landed, r.deep_tombstoned) == ("success", 1, 1)
        assert store.get_raw("erp", "party.party", "9999") is not None
        assert store.get_raw("erp", "party.party", str(gone["id"]))["deleted"] is True  # type: ignore[index]
        conn.close()


def test_odoo_deleted_rows_are_tombstoned(store: Store, monkeypatch: Any) -> None:
    app = _app("odoo")
    server = app.state.odoo
    with serve(app) as srv:
        conn = _connector("odoo", srv.url, monkeypatch)
        sync(conn, store, streams=["partners"])
        gone = server.models["res.partner"].pop(0)
        [r] = sync(conn, store, streams=["partners"], deep=True)
        assert (r.status, r.deep_tombstoned) == ("success", 1)
        assert store.get_raw("erp", "res.partner", str(gone["id"]))["deleted"] is True  # type: ignore[index]
        conn.close()


def test_tryton_deletes_cost_a_count_unless_the_counts_disagree(store: Store, monkeypatch: Any) -> None:
    """The per-run deletion check counts the stream's last page (not landed yet when it runs) as held: a run
    that lands records but deletes none costs one ``search_count``, not a listing of every id; a delete is
    still tombstoned."""
    from dataclasses import replace

    app = _app("tryton")
    data = app.state.tryton
    parties = data.rows["party.party"]
    for n in range(5):  # seven parties: pages of three, the last one partial
        extra = copy.deepcopy(parties[0])
        extra["id"], extra["code"] = 5000 + n, f"PTY-X{n}"
        parties.append(extra)
        data.by_id["party.party"][extra["id"]] = extra
    listings = lambda: [c for c in data.calls if c == "model.party.party.search"]  # noqa: E731
    with serve(app) as srv:
        conn = _connector("tryton", srv.url, monkeypatch)
        conn.streams = tuple(replace(s, page_size=3) for s in conn.streams)  # several pages, a partial last one
        [first] = sync(conn, store, streams=["party.party"])
        assert first.status == "success" and first.written == len(parties)
        assert listings() == []  # a fresh store: nothing held, nothing to compare
        late = copy.deepcopy(parties[0])
        late["id"] = 9999
        late["last_modified_at"] = max(p["last_modified_at"] for p in parties) + timedelta(seconds=1)
        parties.append(late)
        data.by_id["party.party"][9999] = late
        [second] = sync(conn, store, streams=["party.party"])
        assert second.written >= 1 and second.deleted == 0
        assert store.get_raw("erp", "party.party", "9999") is not None
        assert listings() == []  # the new record in the last page counted: the counts agree
        gone = parties.pop(1)
        del data.by_id["party.party"][gone["id"]]
        [third] = sync(conn, store, streams=["party.party"])
        assert third.deleted == 1 and len(listings()) == 1  # the counts disagree: ids compared, the delete found
        assert store.get_raw("erp", "party.party", str(gone["id"]))["deleted"] is True  # type: ignore[index]
        conn.close()
