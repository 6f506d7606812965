"""Sources mapped while the last ones still sync, and bank statements imported meanwhile, give the store, the
discovered fields and the exceptions that mapping after the whole sync gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import model, tables
from canonical.forking import forks
from canonical.store import Store
from ltc.app import discovery, pipeline
from ltc.app.demo import generate_world, replay_world
from reconcile.tables import recon_exception

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not forks(), reason="no fork here: nothing is mapped ahead")]


def _own_keys(charge: dict[str, Any]) -> dict[str, Any]:
    """Stripe's references under keys of the company's own: found by discovery's second pass only."""
    meta = charge.get("metadata") or {}
    charge["metadata"] = {{"deal_id": "sf_opportunity"}.get(k, k): v for k, v in meta.items()}
    return charge


def _state(store: Store) -> dict[str, Any]:
    """Every canonical row (but its raw id: landing order), and the exceptions' fingerprints, sorted."""
    out: dict[str, Any] = {}
    with store.engine.connect() as conn:
        for entity in model.ENTITIES:
            table = tables.table_for(entity)
            cols = [c for c in table.columns if c.name != "raw_id"]
            out[entity] = sorted(tuple(map(str, r)) for r in conn.execute(sa.select(*cols)))
        out["exceptions"] = sorted(r[0] for r in conn.execute(sa.select(recon_exception.c.fingerprint)))
    return out


def test_mapping_ahead_gives_what_mapping_after_the_sync_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = generate_world(tmp_path / "w", chains=40, seed=11)
    charges = world / "stripe" / "charges.jsonl"
    rows = [json.loads(line) for line in charges.read_text(encoding="utf-8").splitlines() if line.strip()]
    charges.write_text("".join(json.dumps(_own_keys(r)) + "\n" for r in rows), encoding="utf-8")
    started: list[str] = []
    real = discovery.MapAhead.start

    def spy(self: discovery.MapAhead, source: str) -> bool:
        ok = real(self, source)
        if ok:
            started.append(source)
        return ok

    monkeypatch.setattr(discovery.MapAhead, "start", spy)
    ahead = Store.open(f"sqlite:///{tmp_path / 'ahead.db'}")
    got = replay_world(ahead, Path(shutil.copytree(world, tmp_path / "w1")), tmp_path / "r1", echo=lambda _s: None)
    assert started and "bank" in started  # sources (and the statements, imported during the sync) mapped ahead
    assert got["result"].stage("import").detail["bank"]["new"] > 0  # reported by the import stage

    started.clear()
    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")  # no mapping in children: none ahead either
    monkeypatch.setattr(pipeline, "_import_now", lambda ctx: [])
    after = Store.open(f"sqlite:///{tmp_path / 'after.db'}")
    want = replay_world(after, Path(shutil.copytree(world, tmp_path / "w2")), tmp_path / "r2", echo=lambda _s: None)
    assert started == []
    assert ("stripe", "charge", "metadata.sf_opportunity", "deal_ref") in {
        (d["system"], d["object"], d["path"], d["target"]) for d in want["discovered"]}
    assert got["discovered"] == want["discovered"] and got["mapping"] == want["mapping"]
    assert got["result"].stage("import").detail == want["result"].stage("import").detail
    assert [s.name for s in got["result"].stages] == [s.name for s in want["result"].stages]
    assert _state(ahead) == _state(after) and _state(after)["exceptions"]
    ahead.close()
    after.close()
