"""`ltc push-crm` as an operator runs it: the dry run's amounts per currency, exit codes, one-line errors."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from ltc.cli import main
from reports.finance import build_report
from sandbox.salesforce import ValidationRule
from tests.crm_push.conftest import SfEnv


def _write_config(env: SfEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = env.cfg.sources["salesforce"]
    (tmp_path / "ltc.yaml").write_text(yaml.safe_dump({
        "reporting_currency": env.cfg.reporting_currency,
        "sources": {"salesforce": {"kind": "salesforce", "base_url": src.base_url, "options": dict(src.options),
                                   "credentials": {k: {"env": v.env} for k, v in src.credentials.items()}}},
        "push_crm": {"ui_base_url": "https://ltc.example.com"}}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LTC_CONFIG", raising=False)
    monkeypatch.setenv("LTC_DATABASE_URL", str(env.store.engine.url))


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ltc", "push-crm", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_dry_run_prints_what_would_change_with_amounts_per_currency(
    sf_env: Callable[..., SfEnv], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = sf_env()
    _write_config(env, tmp_path, monkeypatch)
    assert _run(monkeypatch, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out
    opens: dict[str, Decimal] = defaultdict(Decimal)
    for chain in build_report(env.store).chains:
        opens[chain["currency"]] += chain["open"]
    for ccy, total in opens.items():
        assert f"open {total:,} {ccy}" in out, (ccy, out)
    assert "LTC_Status__c=" in out and not [r for r in env.org.requests if r.startswith("PATCH")]

    env.org.locked.add(sorted(env.org.rows["Opportunity"])[0])
    acct = sorted(env.org.rows["Account"])[0]
    env.org.validation_rules.append(ValidationRule("Account", lambda r: r["Id"] == acct, "Accounts are read-only today"))
    assert _run(monkeypatch, "--source", "salesforce") == 1  # refused records: an operator should look
    out = capsys.readouterr().out
    assert "FAILED Opportunity" in out and "UNABLE_TO_LOCK_ROW" in out and "Accounts are read-only today" in out
    env.org.locked.clear()
    env.org.validation_rules.clear()
    assert _run(monkeypatch) == 0
    assert _run(monkeypatch) == 0
    assert "0 request(s) to salesforce salesforce" in capsys.readouterr().out.splitlines()[-1]


def test_missing_fields_and_unknown_sources_are_one_line_errors(
    sf_env: Callable[..., SfEnv], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = sf_env(fields=False)
    _write_config(env, tmp_path, monkeypatch)
    assert _run(monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lacks the field(s) push-crm writes" in err[0] and "Traceback" not in err[0]
    assert _run(monkeypatch, "--source", "nope") == 2
    assert "no source 'nope'" in capsys.readouterr().err
