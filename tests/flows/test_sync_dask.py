"""Every source's streams fanned out at once on a Dask LocalCluster of 2 processes (``flows.sync.sync_on_dask``)
land what the one-process sync lands: the same raw records (content hash for content hash), the same cursors
and counts per stream, one ``sync`` run per source."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from canonical.store import Store
from canonical.tables import raw_record, run
from sandbox.scenario import generate
from sandbox.world_writer import write_world
from tests.flows.conftest import running_sandbox

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    world = write_world(generate(60, seed=5, erp="tryton"), tmp_path / "world")
    monkeypatch.chdir(tmp_path)
    with running_sandbox(world) as state:
        yield state


STARTED = datetime.now(UTC) - timedelta(minutes=1)


def _position(cursor: Any) -> Any:
    """A cursor's position: what it says of the records, not the clock's readings (``deep_at``: when a deep check
    ran; a high-water mark at the run's own time: a window that ends now, as Stripe's events list does)."""
    if not isinstance(cursor, dict):
        return cursor
    out = {k: v for k, v in cursor.items() if k != "deep_at"}
    hw = out.get("hw")
    if isinstance(hw, list) and hw and isinstance(hw[0], str) and datetime.fromisoformat(hw[0]) >= STARTED:
        out["hw"] = ["<the run's time>", *hw[1:]]
    return out


def _landed(url: str) -> tuple[set[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    store = Store.open(url)
    c = raw_record.c
    with store.engine.connect() as conn:
        raws = set(map(tuple, conn.execute(sa.select(c.system, c.object, c.source_id, c.content_hash, c.deleted))))
        runs = sorted(map(tuple, conn.execute(sa.select(run.c.kind, run.c.source, run.c.status))))
    streams = [(s["connector"], s["stream"], _position(s["cursor"]), s["status"], s["records_seen"],
                s["records_written"], s["quarantined"]) for s in store.stream_states()]
    store.close()
    return raws, streams, runs


def test_streams_fanned_out_on_dask_land_what_one_process_lands(
        tmp_path: Path, sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> None:
    from flows.sync import sync_all, sync_on_dask
    from ltc.app.emulators import write_config

    cfg = str(write_config(tmp_path / "ltc.yaml", sandbox))
    urls = {k: f"sqlite:///{tmp_path / f'{k}.db'}" for k in ("one", "dask")}
    monkeypatch.setenv("LTC_DATABASE_URL", urls["one"])
    one = sync_all(cfg)
    monkeypatch.setenv("LTC_DATABASE_URL", urls["dask"])  # the workers start with this environment
    fanned = sync_on_dask(cfg, workers=2)
    assert set(fanned) == set(one) and len(fanned) >= 2
    for source, outcome in fanned.items():
        assert outcome["status"] == "ok", outcome
        assert sorted(r["stream"] for r in outcome["streams"]) == sorted(r["stream"] for r in one[source]["streams"])
    raws, streams, runs = _landed(urls["dask"])
    ref_raws, ref_streams, ref_runs = _landed(urls["one"])
    assert raws == ref_raws and len(raws) > 500
    assert streams == ref_streams and all(s[3] == "success" for s in streams)
    assert runs == ref_runs == sorted(("sync", name, "success") for name in fanned)


def test_the_slots_of_a_cluster_are_its_worker_threads() -> None:
    """A source's streams share its rate by the tasks the cluster runs at once: a remote scheduler is asked for its
    workers' threads, a local cluster's workers run one each."""
    from distributed import LocalCluster

    from flows.dask import dask_slots

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        assert dask_slots(address=cluster.scheduler_address) == 4
    assert dask_slots(workers=3) == 3 and dask_slots() == 2
