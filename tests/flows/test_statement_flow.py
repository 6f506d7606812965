"""The statement-folder flow: imports new files once, reports per source, refuses a missing folder setting."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from canonical.errors import ConfigError
from canonical.store import Store

pytestmark = pytest.mark.prefect
FIXTURES = Path(__file__).parent.parent / "bank" / "fixtures"


def test_folder_is_imported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> None:
    from flows.statements import import_statements

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(FIXTURES / "camt053_v04_single.xml", inbox)
    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(f"sources:\n  bank: {{kind: camt053, options: {{folder: '{inbox}'}}}}\n")
    first = import_statements(str(cfg))
    assert first["bank"]["counts"]["new"] > 0
    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    landed = store.count_raw("bank", "camt053.entry")
    assert landed == first["bank"]["counts"]["new"]
    again = import_statements(str(cfg))
    assert again["bank"]["counts"]["new"] == 0 and store.count_raw("bank", "camt053.entry") == landed

    cfg.write_text("sources:\n  bank: {kind: camt053}\n")
    state = import_statements(str(cfg), return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match=r"options\.folder"):
        state.result()
