"""`ltc import-statement`: per-statement report, exit codes, one-line errors.

Output and exit codes are checked in-process (typer's runner); the one-line error path through
``main()`` in a real subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canonical.errors import InputError, LtcError
from ltc.cli import app

FIXTURES = Path(__file__).parent / "fixtures"
LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``ltc import-statement ARGS`` in-process against a fresh SQLite store."""
    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    monkeypatch.delenv("LTC_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Result:
        res = CliRunner().invoke(app, ["import-statement", *args], env={"COLUMNS": "80"})
        return Result(res.exit_code, res.stdout, res.stderr)

    return invoke


def ltc(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LTC_CONFIG", "LTC_DATABASE_URL")}
    env.update(COLUMNS="80", LTC_DATABASE_URL=f"sqlite:///{tmp_path / 'ltc.db'}")
    return subprocess.run([*LTC, "import-statement", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


def test_import_reports_per_statement_and_rejections_exit_1(run) -> None:  # type: ignore[no-untyped-def]
    res = run(str(FIXTURES / "camt053_v02_nov.xml"))
    assert res.returncode == 1
    assert res.stdout.splitlines() == [
        "camt053_v02_nov.xml: statement STMT-2026-11-01 (camt053, account DE89370400440532013000): "
        "6 entries, 6 new, 0 changed, 0 unchanged"
    ]
    assert res.stderr.splitlines() == [
        "rejected: statement STMT-2026-11-02 in camt053_v02_nov.xml: opening 2230.50 EUR + entries 250.00 EUR "
        "= 2480.50 EUR but closing balance says 2430.50 EUR (difference 50.00 EUR)"
    ]
    again = run(str(FIXTURES / "camt053_v02_nov.xml"))
    assert "6 entries, 0 new, 0 changed, 6 unchanged" in again.stdout


def test_clean_file_exits_0_with_source_name(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "ltc.yaml").write_text("sources:\n  bank-us:\n    kind: camt053\n")
    res = run(str(FIXTURES / "camt053_v08_multi.xml"), "--source", "bank-us")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert len(res.stdout.splitlines()) == 2 and "1 entries, 1 new" in res.stdout


def test_bad_files_are_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    for arg, expected in [
        (str(FIXTURES / "malformed.xml"), "error: malformed.xml:7: not well-formed XML (column 6): mismatched tag"),
        (str(tmp_path / "missing.xml"), f"error: {tmp_path / 'missing.xml'}: cannot read statement file"),
        (str(tmp_path / "notes.txt"), "error: notes.txt: neither a camt.053 XML document nor an MT940 statement file"),
    ]:
        res = ltc(tmp_path, arg)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), res.stderr
        assert "Traceback" not in res.stderr


def test_folder_pass_then_nothing_new(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(FIXTURES / "camt053_v04_single.xml", inbox)
    shutil.copy(FIXTURES / "camt053_v08_multi.xml", inbox)
    res = run("--folder", str(inbox))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == (
        f"{inbox}: 2 file(s), 0 already imported, 0 unreadable; 3 statement(s), 0 rejected; "
        "3 entries, 3 new, 0 changed, 0 unchanged"
    )
    res = run("--folder", str(inbox))
    assert res.returncode == 0
    assert "2 file(s), 2 already imported" in res.stdout
    bad = CliRunner().invoke(app, ["import-statement"])
    assert isinstance(bad.exception, InputError) and bad.exception.exit_code == 2
    assert str(bad.exception) == "import-statement: give either a FILE or --folder DIR (one of them)"


def test_source_must_be_a_bank_source_exit_2(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "ltc.yaml").write_text("sources:\n  crm:\n    kind: salesforce\n  bank-eu:\n    kind: camt053\n")
    (tmp_path / "crm-bank.yaml").write_text("sources:\n  bank:\n    kind: salesforce\n")
    (tmp_path / "none.yaml").write_text("sources: {}\n")
    statement = str(FIXTURES / "camt053_v04_single.xml")
    for args, expected in [
        (["-s", "crm"], "source 'crm' is a salesforce source in ltc.yaml, not a bank statement (camt053) source; "
                        "bank sources: bank, bank-eu"),
        (["-s", "bank-us"], "source 'bank-us' is not in ltc.yaml: not a bank statement (camt053) source; "
                            "bank sources: bank, bank-eu"),
        (["-s", "crm", "-c", "none.yaml"], "source 'crm' is not in ltc.yaml: not a bank statement (camt053) "
                                           "source; bank sources: bank"),
        (["-c", "crm-bank.yaml"], "source 'bank' is a salesforce source in ltc.yaml, not a bank statement (camt053) "
                                  "source; add a `kind: camt053` source to ltc.yaml and give its name with --source"),
        (["-s", ""], "source name '' is empty; give the name of a bank source (--source, default 'bank')"),
    ]:
        res = CliRunner().invoke(app, ["import-statement", statement, *args])
        assert isinstance(res.exception, LtcError) and res.exception.exit_code == 2, res.output
        assert str(res.exception) == f"import-statement: {expected}"
    assert not (tmp_path / "ltc.db").exists()  # refused before the store is opened: no run was recorded
    for args in (["-s", "bank-eu"], [], ["-c", "none.yaml"]):  # a configured bank source, or the default one
        res = run(statement, *args)
        assert res.returncode == 0 and "1 entries" in res.stdout, (args, res.stderr)
