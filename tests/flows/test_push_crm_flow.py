"""The push-crm flow under a real Prefect server, with an in-memory CRM (here to share the session's
Prefect test server with the other flow tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from canonical.store import Store
from connectors import crm_push
from reports import crm_status
from tests.crm_push.test_push_core import MemoryCrm, deal, status

pytestmark = pytest.mark.prefect


def test_push_crm_flow_writes_once_and_reports_refusals_as_needing_an_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    from prefect.artifacts import Artifact

    from flows.push_crm import push_crm_flow

    db_url = f"sqlite:///{tmp_path / 'ltc.db'}"
    monkeypatch.setenv("LTC_DATABASE_URL", db_url)
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  crm: {kind: salesforce, base_url: 'https://acme.my.salesforce.com'}\n")
    crm = MemoryCrm()
    crm.name = "crm"
    wanted = status(deal("D1"), deal("D2"))
    monkeypatch.setattr(crm_push, "make_target", lambda _cfg, _source: crm)
    monkeypatch.setattr(crm_status, "finance_status", lambda *a, **k: wanted)
    Store.open(db_url).close()

    rows: Any = push_crm_flow(config_path=str(cfg))
    assert [(r["source"], r["status"], r["requests"]) for r in rows] == [("crm", "success", 2)]
    assert rows[0]["objects"] == [{"object": "Opportunity", "considered": 2, "unchanged": 0, "to_write": 2,
                                   "written": 2, "failed": 0}]
    artifact = Artifact.get("ltc-push-crm-crm")
    assert artifact is not None and "Opportunity" in str(artifact.data)
    assert push_crm_flow(config_path=str(cfg))[0]["requests"] == 0  # type: ignore[index]

    crm.refuse["D2"] = ("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")
    wanted.records[1] = deal("D2", status="paid")
    state = push_crm_flow(config_path=str(cfg), return_state=True)
    assert state.name == "NeedsOperator" and "D2: unable to obtain exclusive access" in (state.message or "")
