"""Loud on unread data: the summary leads with quarantine per stream; a run over the share fails."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from canonical.store import RawRecord, Store
from ltc.app.config import Config, SourceConfig
from ltc.app.pipeline import after_sync
from ltc.app.unread import failure, stream_health


def _invoice(i: int, currency: str | None) -> RawRecord:
    rec = {"id": f"in_{i:04d}", "object": "invoice", "number": f"INV-{i:04d}", "customer": "cus_1",
           "currency": currency, "total": 10000, "created": 1774915200, "status": "open", "lines": {"data": []}}
    return RawRecord("invoice", rec["id"], rec)


def _land(store: Store) -> None:
    store.commit_page("stripe", "invoice", [_invoice(i, None if i < 2 else "usd") for i in range(10)], None)


def test_summary_leads_with_quarantine_and_fails_over_the_share(sqlite_store: Store) -> None:
    _land(sqlite_store)
    cfg = Config(sources={"stripe": SourceConfig(kind="stripe")})
    summary = after_sync(sqlite_store, cfg, date(2026, 4, 1))
    assert next(iter(summary)) == "unread"
    [stream] = summary["unread"]
    assert (stream["system"], stream["object"], stream["records"], stream["quarantined"]) == ("stripe", "invoice", 10, 2)
    assert stream["missing"] == {"currency": 2} and stream["failing"]
    assert "stripe invoice: 2 of 10 records quarantined (20.0%)" in summary["failed"]
    # the same store under a looser threshold is not failing
    assert failure(stream_health(sqlite_store, 0.25), 0.25) is None


def test_ltc_run_exits_non_zero_on_unread_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    store = Store.open(url)
    _land(store)
    store.close()
    (tmp_path / "bank").mkdir()
    head = f"reports_dir: {tmp_path / 'reports'}\nsources:\n  bank: {{kind: camt053, options: {{folder: bank}}}}\n"
    (tmp_path / "ltc.yaml").write_text(head, encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if k != "LTC_CONFIG"}, "LTC_DATABASE_URL": url, "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "run", "--as-of", "2026-04-01"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "quarantine: FAIL stripe invoice: 2 of 10 quarantined (20.0%); required currency missing in 2" in res.stdout
    assert "over quarantine_fail_share 5%" in res.stderr
    res = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "status"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0 and "Quarantine: FAIL stripe invoice: 2 of 10 quarantined" in res.stdout, res.stdout
    (tmp_path / "ltc.yaml").write_text(head + "quarantine_fail_share: 0.5\n", encoding="utf-8")
    res = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "run", "--as-of", "2026-04-01"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "quarantine: stripe invoice: 2 of 10" in res.stdout
