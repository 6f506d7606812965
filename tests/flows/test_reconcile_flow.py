"""The reconcile flow with its buckets on a Dask LocalCluster of 2 processes: the same results as one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from canonical.store import Store
from ltc.app.config import Config
from reconcile.engine import run_reconciliation
from reconcile.tables import recon_allocation, recon_exception, recon_link
from sandbox.scenario import generate

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def _stored(url: str) -> tuple[list[tuple], list[tuple], list[tuple]]:  # type: ignore[type-arg]
    store = Store.open(url)
    with store.engine.connect() as conn:
        links = sorted(map(tuple, conn.execute(sa.select(recon_link.c.chain_id, recon_link.c.from_id, recon_link.c.to_id,
                                              recon_link.c.rule_id, recon_link.c.confidence)).all()), key=str)
        allocs = sorted(map(tuple, conn.execute(sa.select(recon_allocation.c.payment_id, recon_allocation.c.invoice_id,
                                               recon_allocation.c.amount, recon_allocation.c.fx_difference)).all()), key=str)
        exc = sorted(map(tuple, conn.execute(sa.select(recon_exception.c.fingerprint, recon_exception.c.code,
                                            recon_exception.c.amount_at_risk)).all()), key=str)
    store.close()
    return links, allocs, exc


def test_buckets_on_dask_equal_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           prefect_harness: None) -> None:
    from flows.reconcile import reconcile_on_dask

    world = generate(600, seed=12)
    urls = [f"sqlite:///{tmp_path / name}.db" for name in ("one", "dask")]
    for url in urls:
        store = Store.open(url)
        world.load(store)
        store.close()
    one = Store.open(urls[0])
    local = run_reconciliation(one, Config(), world.as_of, partitions=3)
    one.close()
    monkeypatch.setenv("LTC_DATABASE_URL", urls[1])
    monkeypatch.delenv("LTC_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    on_dask = reconcile_on_dask(None, world.as_of, workers=2, partitions=3, scratch=str(tmp_path))
    assert on_dask["partitions"] == 3
    assert {k: on_dask[k] for k in ("rows", "states", "cash", "exceptions", "chains")} == {
        k: local.summary()[k] for k in ("rows", "states", "cash", "exceptions", "chains")}
    links, allocs, exc = _stored(urls[1])
    assert (links, allocs, exc) == _stored(urls[0]) and links and allocs and exc
    # the UI showed the buckets done as they came in: the progress artifact ends at 100 %
    from prefect.artifacts import Artifact

    progress = Artifact.get("reconcile-progress")
    assert progress is not None and progress.type == "progress" and float(progress.data) == 100.0  # type: ignore[arg-type]
