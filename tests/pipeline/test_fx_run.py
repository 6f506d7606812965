"""`ltc run` with FX rates it cannot use: a rate file or URL it cannot read, or one without a usable rate, fails
the fx stage and the run (exit 2: the operator's to fix) with the reason naming the file, while the later stages
still run on the rates there are; a bad row is rejected with its file and line and the good rows load. Before,
the run said `fx ok` and exited 0 with `fx rates: 0 loaded`."""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from canonical.store import Store
from reconcile.tables import fx_rate

HEADER = "rate_date,base,quote,rate\n"


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: str, files: list[str] = ()) -> Any:  # type: ignore[assignment]
    from ltc.cli.commands import app

    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n" + sources + ("fx:\n  files:\n" + "".join(f"    - '{f}'\n" for f in files)
                                             if files else ""))
    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    return CliRunner().invoke(app, ["run", "--config", str(cfg), "--progress", "off", "--as-of", "2026-10-31"])


def bank(tmp_path: Path) -> str:
    (tmp_path / "bank").mkdir(exist_ok=True)
    return f"  bank: {{kind: camt053, options: {{folder: '{tmp_path / 'bank'}'}}}}\n"


def rates(tmp_path: Path) -> dict[tuple[str, str, date], Decimal]:
    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    try:
        with store.engine.connect() as conn:
            return {(r.base, r.quote, r.rate_date): Decimal(r.rate) for r in conn.execute(sa.select(fx_rate))}
    finally:
        store.close()


def test_a_rate_file_or_url_it_cannot_read_fails_the_fx_stage_and_the_run(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "2026-10-30,EUR,USD,1.0791\n")
    missing = tmp_path / "nope.csv"
    res = run(tmp_path, monkeypatch, bank(tmp_path), [str(good), str(missing), "http://127.0.0.1:9/fx.csv"])
    assert res.exit_code == 2, res.output
    reason = (f"FX rates not refreshed: fx.files: {missing} does not exist or is not a file; fx.files: cannot reach "
              "http://127.0.0.1:9/fx.csv (ConnectError: ")
    assert f"stage fx failed: {reason}" in res.stdout
    # the later stages ran on the rates there are; the run is not complete
    assert "stages: sync ok, import ok, fx failed, map ok, identity ok, reconcile ok, report ok, notify ok" in res.stdout
    # wrapped to the terminal, a long path broken anywhere: compared without any white space
    assert "".join(f"PARTIAL: Stage fx failed: {reason}".split()) in "".join(res.stderr.split())
    assert (tmp_path / ".ltc" / "reports" / "report.html").exists()
    assert rates(tmp_path) == {("EUR", "USD", date(2026, 10, 30)): Decimal("1.0791")}  # the good file loaded


def test_bad_rate_rows_are_rejected_with_file_and_line_and_the_good_ones_load(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(HEADER + "2026-10-30,EUR,USD,abc\n2026-10-30,EUR,GBP,1,1\n2026-10-30,EUR,CHF,0\n"
                     "2026-10-30,EUR,JPY,-162\n2026-10-30,EUR,SEK,NaN\n2026-10-30,EUR,NOK,11.7\n")
    res = run(tmp_path, monkeypatch, bank(tmp_path), [str(mixed)])
    assert res.exit_code == 0, res.output
    assert "fx ok" in res.stdout and "fx rates: 1 loaded, 5 row(s) rejected" in res.stdout
    for line in (f"{mixed}:2: rate 'abc' is not a positive decimal number",
                 f"{mixed}:3: 5 fields, expected 4 (rate_date,base,quote,rate); a decimal comma? write the rate 1.1 "
                 "with a point",
                 f"{mixed}:4: rate '0' is zero: no amount converts at it",
                 f"{mixed}:5: rate '-162' is not a positive decimal number",
                 f"{mixed}:6: rate 'NaN' is not a positive decimal number"):
        assert f"fx rates: rejected {line}\n" in res.stdout
    assert rates(tmp_path) == {("EUR", "NOK", date(2026, 10, 30)): Decimal("11.7")}

    # a file with no usable rate left (all rows bad, only a header, empty, not a rate file) fails the stage
    (tmp_path / "bad.csv").write_text(HEADER + "2026-10-30,EUR,USD,abc\n")
    (tmp_path / "header.csv").write_text(HEADER)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "junk.csv").write_text("hello\n")
    res = run(tmp_path, monkeypatch, bank(tmp_path), [str(tmp_path / f) for f in ("bad.csv", "header.csv",
                                                                                   "empty.csv", "junk.csv")])
    assert res.exit_code == 2, res.output
    assert "fx failed" in res.stdout
    failed = next(line for line in res.stdout.splitlines() if line.startswith("stage fx failed: "))
    assert failed == (f"stage fx failed: FX rates not refreshed: {tmp_path / 'bad.csv'}: no usable rate in it (1 "
                      f"row(s) rejected, the first: {tmp_path / 'bad.csv'}:2: rate 'abc' is not a positive decimal "
                      f"number); {tmp_path / 'header.csv'}: no usable rate in it (no rows after the header); "
                      f"{tmp_path / 'empty.csv'}:1: an empty file: expected the header rate_date,base,quote,rate, "
                      f"the ECB's Date,USD,JPY,… or the ECB's XML; {tmp_path / 'junk.csv'}:1: not a rate file: "
                      "expected the header rate_date,base,quote,rate, the ECB's Date,USD,JPY,… or the ECB's XML")


def test_a_bank_source_without_its_folder_is_the_operators_to_fix(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A ConfigError in the import stage: exit 2, as a source's rejected credentials are (was 1)."""
    res = run(tmp_path, monkeypatch, "  bank: {kind: camt053}\n")
    assert res.exit_code == 2, res.output
    assert ("bank bank: failed (sources.bank.options.folder: the folder to watch for statement files is not set)"
            in res.stdout)


@pytest.mark.parametrize(("url", "why"), [("https://[::1", "Invalid IPv6 URL"),
                                           ("https://h.invalid:99999", "Port out of range 0-65535")])
def test_a_base_url_that_does_not_parse_stops_ltc_run_in_one_line(url: str, why: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Was a source failing with httpx's InvalidURL (or DNS retries) and exit 1."""
    from ltc.cli.commands import main

    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(f"sources:\n  pay:\n    kind: stripe\n    base_url: '{url}'\n"
                   "    credentials: {api_key: {env: FX_RUN_STRIPE_KEY}}\n")
    monkeypatch.setenv("FX_RUN_STRIPE_KEY", "sk_test_x")
    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    monkeypatch.setattr(sys, "argv", ["ltc", "run", "--config", str(cfg), "--progress", "off"])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    assert exit_.value.code == 2, out
    assert out.err.splitlines() == [f"error: {cfg}:4: sources.pay.base_url: '{url}' is not a valid URL ({why})"]
    assert out.out == ""
