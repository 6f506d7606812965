"""`ltc remap` end to end: a custom field added by an override file shows up without any fetch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from mapping_fixtures import fixture_records, land

from canonical import tables
from canonical.store import Store

LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


def ltc(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("LTC_CONFIG", "LTC_DATABASE_URL")}
    return subprocess.run([*LTC, *args], capture_output=True, text=True, env={**base, "COLUMNS": "200", **env},
                          cwd=cwd, timeout=120)


def test_remap_with_a_custom_field_override(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    store = Store.open(url)
    land(store, "crm", fixture_records("salesforce"))
    store.close()
    (tmp_path / "crm-mapping.yaml").write_text(
        "objects:\n  Opportunity:\n    fields:\n      attributes.region: Region__c\n", encoding="utf-8")
    (tmp_path / "ltc.yaml").write_text(
        "sources:\n  crm:\n    kind: salesforce\n    mapping: crm-mapping.yaml\n", encoding="utf-8")
    env = {"LTC_DATABASE_URL": url}
    res = ltc("remap", "--source", "crm", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "crm" in res.stdout and "deal=2" in res.stdout
    store = Store.open(url)
    with store.engine.connect() as conn:
        deal = conn.execute(sa.select(tables.table_for("deal")).where(
            tables.table_for("deal").c.id == "crm:deal:006000000000001AAA")).one()
    store.close()
    assert deal.attributes["region"] == "AMER"

    res = ltc("identity", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "accounts=2" in res.stdout

    # a broken override: one line on stderr naming file and line, exit 2
    (tmp_path / "crm-mapping.yaml").write_text(
        "objects:\n  Opportunity:\n    fields:\n      regionn: Region__c\n", encoding="utf-8")
    res = ltc("remap", cwd=tmp_path, env=env)
    assert res.returncode == 2
    assert "crm-mapping.yaml:4:" in res.stderr and "unknown canonical field 'regionn'" in res.stderr
    assert "Traceback" not in res.stderr

    res = ltc("remap", "--source", "nope", cwd=tmp_path, env=env)
    assert res.returncode == 2 and "unknown source 'nope'" in res.stderr


def test_a_relative_mapping_path_is_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ltc.app.config import load_config

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "ltc.yaml").write_text("sources:\n  crm:\n    kind: salesforce\n    mapping: maps/crm.yaml\n",
                                   encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(conf / "ltc.yaml")
    assert cfg.sources["crm"].mapping == str(conf / "maps" / "crm.yaml")
