"""`ltc push-orders` configuration errors: one line, exit 2, before touching any system."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ltc.cli import main


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("sources: {}\n", "no ERP configured: add `erp: {source: <name of a tryton or odoo source>}` to ltc.yaml"),
    ("sources:\n  erp1:\n    kind: tryton\n    base_url: http://127.0.0.1:9\nerp: {source: erp1}\n",
     "sources.erp1.options.database is required (the Tryton database name)"),
    ("sources:\n  erp1:\n    kind: tryton\n    base_url: http://127.0.0.1:9\n    options: {database: ltc}\n"
     "    credentials: {login: {env: T_LOGIN_UNSET}, password: {env: T_PW_UNSET}}\nerp: {source: erp1}\n",
     "environment variable T_LOGIN_UNSET is not set"),
])
def test_push_orders_config_errors_are_one_line(
    tmp_path: Path, yaml_text: str, expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ltc.yaml").write_text(yaml_text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LTC_CONFIG", raising=False)
    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    monkeypatch.setattr(sys, "argv", ["ltc", "push-orders", "--dry-run"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
