"""`ltc config check`: every credential reference resolves, every mapping loads, all problems one per line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ltc.cli import app
from tests.test_cli import ltc


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
        f"  bank: {{kind: camt053, options: {{folder: '{tmp_path / 'no-such-folder'}'}}}}\n"  # line 15
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


def test_what_ltc_run_would_fail_on_is_a_problem_here(tmp_path: Path) -> None:
    """A bank source without its folder, a base_url or rate URL that does not parse, a listed rate file that is
    missing, not a rate file or holds no usable rate: each a problem on its line (exit 2), which `ltc run` met only
    at run time (a source failed, the fx stage 'ok'); a URL is not fetched, a good rate file passes."""
    (tmp_path / "good.csv").write_text("rate_date,base,quote,rate\n2026-10-30,EUR,USD,1.08\n")
    (tmp_path / "junk.csv").write_text("hello\n")
    (tmp_path / "bad.csv").write_text("rate_date,base,quote,rate\n2026-10-30,EUR,USD,abc\n")
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(
        "sources:\n"
        "  bank:\n"
        "    kind: camt053\n"                                          # line 3: no options.folder
        "  pay:\n"
        "    kind: stripe\n"
        "    base_url: 'https://[::1'\n"                               # line 6
        "  pay2:\n"
        "    kind: stripe\n"
        "    base_url: 'https://h.invalid:99999'\n"                    # line 9
        "fx:\n"
        "  files:\n"
        "    - good.csv\n"
        "    - /nope.csv\n"                                            # line 13
        "    - junk.csv\n"                                             # line 14
        "    - bad.csv\n"                                              # line 15
        "    - https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip\n"
        "    - 'https://h.invalid:0/x.csv'\n"                          # line 17
    )
    res = check(cfg)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"{cfg}:6: sources.pay.base_url: 'https://[::1' is not a valid URL (Invalid IPv6 URL)"
    assert lines[1] == (f"{cfg}:9: sources.pay2.base_url: 'https://h.invalid:99999' is not a valid URL "
                        "(Port out of range 0-65535)")
    assert lines[2] == f"{cfg}:17: fx.files.5: 'https://h.invalid:0/x.csv': port 0 is no port a server listens on"
    assert lines[3] == f"3 problem(s) in {cfg}"  # the shape first: the rest is checked once the file validates
    cfg.write_text(cfg.read_text().replace("[::1", "pay.example").replace(":99999", "").replace(":0/", "/"))
    res = check(cfg)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0] == (f"{cfg}:3: sources.bank.options.folder: not set: the folder to watch for statement files "
                        "(ltc run imports the new files of it)")
    assert lines[1] == f"{cfg}:13: fx.files.1: /nope.csv does not exist or is not a file"
    assert lines[2].startswith(f"{cfg}:14: fx.files.2: {tmp_path / 'junk.csv'}:1: not a rate file: expected the header")
    assert lines[3] == (f"{cfg}:15: fx.files.3: {tmp_path / 'bad.csv'}: no usable rate in it (1 row(s) rejected, the "
                        f"first: {tmp_path / 'bad.csv'}:2: rate 'abc' is not a positive decimal number)")
    assert lines[4] == f"4 problem(s) in {cfg}"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_ltc_yaml_as_windows_editors_save_it_loads(tmp_path: Path, encoding: str) -> None:
    """UTF-8, UTF-8 with a byte-order mark (Notepad) and UTF-16 (Notepad's "Unicode"), CRLF line ends: the same
    settings (UTF-16 was a UnicodeDecodeError traceback, exit 1, on 0ee0bb2)."""
    from ltc.app.config import load_config

    cfg = tmp_path / "ltc.yaml"
    cfg.write_bytes("# 公司配置\r\ntimezone: Asia/Shanghai\r\nreporting_currency: CNY\r\n".encode(encoding))
    loaded = load_config(cfg)
    assert (loaded.timezone, loaded.reporting_currency) == ("Asia/Shanghai", "CNY")


def test_ltc_yaml_in_another_encoding_or_not_a_file_is_one_line(tmp_path: Path) -> None:
    """ltc.yaml saved as GBK (a Chinese Windows editor's 'ANSI'), or --config at a folder: one line naming the file
    (and the line), exit 2, for every command; was a traceback, exit 1 (0ee0bb2)."""
    import subprocess
    import sys

    gbk = tmp_path / "ltc.yaml"
    gbk.write_bytes("timezone: UTC\n# 公司配置\n".encode("gbk"))
    for cfg, expected in ((gbk, f"{gbk}:2: not UTF-8 text (byte 0xb9); save the file as UTF-8"),
                          (tmp_path, f"configuration file {tmp_path} cannot be read (Is a directory)")):
        for args in (["status"], ["config", "check"]):
            res = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", *args, "--config", str(cfg)],
                                 capture_output=True, text=True, cwd=tmp_path, timeout=60)
            assert res.returncode == 2 and "Traceback" not in res.stderr, (args, res.stderr)
            assert expected in res.stderr or expected in res.stdout, (args, res.stdout, res.stderr)


def test_a_credential_from_a_file_as_containers_and_systemd_mount_them(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``{file: …}``: a Docker/Kubernetes secret or a systemd credential; one trailing line end is not the value;
    a missing, empty or huge file is a problem naming the file, never its content."""
    from canonical.errors import ConfigError
    from ltc.app.config import SecretRef

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "stripe_key").write_text("sk_test_from_a_file\n")
    (creds / "crlf").write_bytes(b"p@ss word\r\n")
    (creds / "empty").write_text("\n")
    (creds / "huge").write_bytes(b"x" * 70_000)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert SecretRef(file="$CREDENTIALS_DIRECTORY/stripe_key").resolve() == "sk_test_from_a_file"
    assert SecretRef(file=str(creds / "crlf")).resolve() == "p@ss word"
    for name, why in (("missing", "does not exist"), ("empty", "is empty"), ("huge", "not a credential")):
        with pytest.raises(ConfigError, match=f"credential file {creds / name} .*{why}"):
            SecretRef(file=str(creds / name)).resolve()
    monkeypatch.delenv("UNSET_DIR", raising=False)
    with pytest.raises(ConfigError, match="an environment variable in it is not set"):
        SecretRef(file="$UNSET_DIR/key").resolve()
    with pytest.raises(ValueError, match="give exactly one of"):
        SecretRef(file="/a", env="B")

    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  pay:\n    kind: stripe\n    credentials:\n"
                   f"      api_key: {{file: {creds / 'missing'}}}\n")
    res = check(cfg)
    assert res.exit_code != 0 and f"credential file {creds / 'missing'} does not exist" in res.output
    cfg.write_text("sources:\n  pay:\n    kind: stripe\n    credentials:\n"
                   "      api_key: {file: $CREDENTIALS_DIRECTORY/stripe_key}\n")
    res = check(cfg)
    assert "sk_test_from_a_file" not in res.output
    assert "credential file" not in res.output, res.output


def test_reconcile_settings_reconciliation_cannot_use_are_refused_one_per_line(tmp_path: Path) -> None:
    """Before, ``tolerance_abs: "1e38"`` passed the check and stopped ``ltc reconcile`` with Polars' traceback
    ("Decimal is too large to fit in Decimal128"); ``0.00001`` was cut to 0 without a word; a share of 2 was taken."""
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("reconcile:\n"
                   "  tolerance_abs: '1e38'\n"
                   "  tolerance_rel: '2'\n"
                   "  bank_charge_max: {eur: '-1', usd: '0.00001'}\n"
                   "  bank_charge_rel: '0.0000001'\n"
                   "  identity_auto_threshold: '1.5'\n")
    res = check(cfg)
    assert res.exit_code == 2
    *problems, last = res.stderr.strip().splitlines()
    by_line = {int(p[len(str(cfg)) + 1:].split(":")[0]): p for p in problems}
    assert by_line[2].startswith(f"{cfg}:2: reconcile.tolerance_abs") and "beyond any amount" in by_line[2]
    assert by_line[3].startswith(f"{cfg}:3: reconcile.tolerance_rel") and "between 0 and 1" in by_line[3]
    assert by_line[4].startswith(f"{cfg}:4: reconcile.bank_charge_max") and "EUR" in by_line[4]
    assert by_line[5].startswith(f"{cfg}:5: reconcile.bank_charge_rel") and "at most 6 decimal places" in by_line[5]
    assert by_line[6].startswith(f"{cfg}:6: reconcile.identity_auto_threshold") and "between 0 and 1" in by_line[6]
    assert len(problems) == 5 and last == f"5 problem(s) in {cfg}"
    cfg.write_text("reconcile:\n  tolerance_abs: '500'\n  tolerance_rel: '1'\n  bank_charge_max: {usd: '0.0001'}\n")
    assert check(cfg).exit_code == 0  # wide, but usable


def test_a_key_given_twice_is_a_problem_not_a_silent_override(tmp_path: Path) -> None:
    """Before, a second ``reconcile:`` block replaced the first without a word (YAML keeps the last key)."""
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("reporting_currency: EUR\n"
                   "reconcile:\n"
                   "  tolerance_abs: '0.01'\n"
                   "  tolerance_abs: '5'\n"
                   "notifications:\n"
                   "  - {name: a, url: 'json://localhost', name: b}\n"
                   "reconcile:\n"
                   "  tolerance_rel: '0.01'\n")
    res = check(cfg)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"{cfg}:4: reconcile.tolerance_abs: given again (first at line 3); YAML keeps only the last one, without a "
        "word: keep one",
        f"{cfg}:6: notifications.0.name: given again (first at line 6); YAML keeps only the last one, without a word: "
        "keep one",
        f"{cfg}:7: reconcile: given again (first at line 2); YAML keeps only the last one, without a word: keep one",
        f"3 problem(s) in {cfg}"]
    run = ltc("run", "-c", str(cfg), "--progress", "off", cwd=tmp_path,
              env={"LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'ltc.db'}"})
    assert run.returncode == 2 and "reconcile: given again (first at line 2)" in run.stderr
    assert "Traceback" not in run.stderr
