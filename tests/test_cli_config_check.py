"""`ltc config check`: every credential reference resolves, every mapping loads, all problems one per line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ltc.cli import app


def check(cfg: Path) -> Any:
    return CliRunner().invoke(app, ["config", "check", "--config", str(cfg)])


@pytest.fixture(autouse=True)
def _no_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secret blocks: 'known-block' exists, any other name does not (no Prefect server needed)."""
    from prefect.blocks.system import Secret

    class Found:
        def get(self) -> str:
            return "s3cr3t-value"

    def load(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "known-block":
            return Found()
        raise ValueError(f"Unable to find block document named {name} for block type secret")

    monkeypatch.setattr(Secret, "load", classmethod(lambda cls, name, *a, **k: load(name)))


def test_every_unresolved_reference_and_broken_mapping_is_listed(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC_UNSET_ID", raising=False)
    monkeypatch.setenv("CC_SET_KEY", "sk_test_value_never_shown")
    (tmp_path / "broken.yaml").write_text("objects:\n  Opportunity:\n    entity: deal\n    fields: [unclosed\n")
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(
        "sources:\n"
        "  crm:\n"
        "    kind: salesforce\n"
        "    base_url: https://example.my.salesforce.com\n"
        "    credentials:\n"
        "      client_id: {env: CC_UNSET_ID}\n"                  # line 6: variable not set
        "      client_secret: {secret: missing-block}\n"         # line 7: no such Secret block
        "    mapping: nowhere.yaml\n"                            # line 8: no such file
        "  pay:\n"
        "    kind: stripe\n"
        "    credentials: {api_key: {env: CC_SET_KEY}}\n"        # fine
        "  erp:\n"
        "    kind: odoo\n"
        "    credentials: {api_key: {secret: known-block}}\n"    # fine
        "    mapping: broken.yaml\n"                             # line 15: does not load
        f"  bank: {{kind: camt053, options: {{folder: '{tmp_path / 'no-such-folder'}'}}}}\n"  # line 16
    )
    res = check(cfg)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 6, res.stderr
    assert lines[0] == f"{cfg}:6: sources.crm.credentials.client_id: environment variable CC_UNSET_ID is not set"
    assert lines[1].startswith(f"{cfg}:7: sources.crm.credentials.client_secret: cannot load Prefect Secret block "
                               "'missing-block'")
    assert lines[2].startswith(f"{cfg}:8: sources.crm.mapping: mapping does not load:") and "does not exist" in lines[2]
    assert lines[3].startswith(f"{cfg}:15: sources.erp.mapping: mapping does not load:") and "broken.yaml" in lines[3]
    assert lines[4].startswith(f"{cfg}:16: sources.bank.options.folder:")
    assert lines[5] == f"5 problem(s) in {cfg}"
    assert "sk_test_value_never_shown" not in res.output and "s3cr3t-value" not in res.output


def test_all_validation_problems_one_per_line(tmp_path: Path) -> None:
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("reporting_currency: EUR\nsources:\n  crm:\n    kind: salesfroce\n    base_url: ftp://x\n"
                   "reconcile:\n  tolerance_abs: 0.01\n")
    res = check(cfg)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith(f"{cfg}:4: sources.crm.kind")
    assert lines[1].startswith(f"{cfg}:5: sources.crm.base_url")
    assert lines[2].startswith(f"{cfg}:7: reconcile.tolerance_abs") and "quoted" in lines[2]
    assert lines[-1] == f"3 problem(s) in {cfg}"


def test_a_good_file_says_what_it_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_SF_PASSWORD", "x")
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(
        "sources:\n"
        "  crm: {kind: salesforce, base_url: 'https://example.my.salesforce.com',\n"
        "        credentials: {password: {env: CC_SF_PASSWORD}, client_secret: {secret: known-block}}}\n"
        "  erp: {kind: tryton, base_url: 'http://127.0.0.1:8000'}\n"
        "erp: {source: erp}\n"
    )
    res = check(cfg)
    assert res.exit_code == 0, res.output
    assert "2 source(s)" in res.stdout and "ERP erp" in res.stdout
    assert "2 credential reference(s) resolve, 2 mapping(s) compile" in res.stdout
