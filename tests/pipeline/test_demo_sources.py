"""Every shipped mapping applied to its emulator's output: what lands maps with nothing quarantined,
and the demo's sources reconcile into deal chains (the same path `make demo` takes)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from canonical import tables
from canonical.store import Store
from connectors.base import sync
from ltc.app import runtime
from ltc.app.demo import DEMO_SOURCES, demo_sources
from ltc.app.pipeline import after_sync


def test_each_emulator_syncs_and_maps_without_quarantine(sqlite_store: Store) -> None:
    with demo_sources(seed=3, size=20) as (cfg, servers):
        assert set(servers) == set(DEMO_SOURCES)
        for name in cfg.sources:
            results = sync(runtime.build_connector(cfg, name), sqlite_store)
            assert results and all(r.status == "success" for r in results), [(r.stream, r.message) for r in results]
        summary = after_sync(sqlite_store, cfg, date(2026, 11, 22))
    assert summary["mapping"]["quarantined"] == 0, sqlite_store.quarantined()[:3]
    counts = sqlite_store.table_counts()
    with sqlite_store.engine.connect() as conn:
        by_system = dict(conn.execute(
            sa.select(tables.table_for("account").c.source_system, sa.func.count())
            .group_by(tables.table_for("account").c.source_system)).all())
    assert set(by_system) == set(DEMO_SOURCES)  # every source produced customers
    assert counts["deal"] > 0 and counts["deal_line"] > 0 and counts["invoice"] > 0 and counts["payment"] > 0
    with sqlite_store.engine.connect() as conn:
        won = conn.execute(sa.select(sa.func.count()).select_from(tables.table_for("deal"))
                           .where(tables.table_for("deal").c.stage == "closed_won")).scalar_one()
    assert summary["reconcile"]["chains"] == won > 0  # one chain per closed-won deal
