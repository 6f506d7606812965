"""`ltc push-orders` configuration errors: one line, exit 2, before touching any system."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


def ltc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LTC_CONFIG", "LTC_DATABASE_URL")}
    return subprocess.run([*LTC, *args], capture_output=True, text=True, env={**env, "COLUMNS": "200"},
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("sources: {}\n", "no ERP configured: add `erp: {source: <name of a tryton or odoo source>}` to ltc.yaml"),
    ("sources:\n  erp1:\n    kind: tryton\n    base_url: http://127.0.0.1:9\nerp: {source: erp1}\n",
     "sources.erp1.options.database is required (the Tryton database name)"),
    ("sources:\n  erp1:\n    kind: tryton\n    base_url: http://127.0.0.1:9\n    options: {database: ltc}\n"
     "    credentials: {login: {env: T_LOGIN_UNSET}, password: {env: T_PW_UNSET}}\nerp: {source: erp1}\n",
     "environment variable T_LOGIN_UNSET is not set"),
])
def test_push_orders_config_errors_are_one_line(tmp_path: Path, yaml_text: str, expected: str) -> None:
    (tmp_path / "ltc.yaml").write_text(yaml_text)
    res = ltc("push-orders", "--dry-run", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr
    assert "Traceback" not in res.stderr
