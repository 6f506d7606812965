"""The push flow under a real Prefect server, with an in-memory ERP target (here to share the
session's Prefect test server with the other flow tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from canonical.store import Store
from connectors import push
from tests.push.deals import put_deal
from tests.push.test_push import MemoryErp

pytestmark = pytest.mark.prefect


def test_push_flow_pushes_once_and_reports_conflicts_as_needing_an_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    from prefect.artifacts import Artifact

    from flows.push import push_orders_flow

    db_url = f"sqlite:///{tmp_path / 'ltc.db'}"
    monkeypatch.setenv("LTC_DATABASE_URL", db_url)
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  erp: {kind: odoo, base_url: 'http://127.0.0.1:1'}\nerp: {source: erp}\n")
    erp = MemoryErp()
    monkeypatch.setattr(push, "make_target", lambda _cfg: (erp, True))
    store = Store.open(db_url)
    put_deal(store, "D1", [("SKU-1", "Widget", "2", "10.00")])

    rows = push_orders_flow(config_path=str(cfg))
    assert [(r["crm_id"], r["action"], r["done"], r["amount"], r["currency"]) for r in rows] == [  # type: ignore[union-attr]
        ("D1", "create", True, "20.00", "EUR")]
    artifact = Artifact.get("ltc-push-erp")
    assert artifact is not None and "D1" in str(artifact.data)

    put_deal(store, "D1", [("SKU-1", "Widget", "2", "12.00")])
    state = push_orders_flow(config_path=str(cfg), return_state=True)
    assert state.name == "NeedsOperator" and "D1: deal D1 changed after ERP sale SO1" in (state.message or "")
    assert len(erp.sales) == 1
    store.close()
