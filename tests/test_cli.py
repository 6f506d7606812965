"""The `ltc` shell: one-line errors with exit codes, status on an empty and a used store, config check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from canonical import db
from canonical.errors import ConfigError
from canonical.store import RawRecord, Store

LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


def ltc(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("LTC_CONFIG", "LTC_DATABASE_URL")}
    full_env = {**base, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*LTC, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://admin:hunter2@127.0.0.1:1/ltc", "cannot connect to database postgresql://admin:***@127.0.0.1:1/ltc"),
        ("not a url", "invalid LTC_DATABASE_URL 'not a url'"),
        ("mysql://u:hunter2@localhost/x", "unsupported database 'mysql://u:***@localhost/x'"),
        ("postgresql://u:hunter2@db.internal:54x2/ltc", "the port must be a number"),
        ("postgresql+psycopg2://u:hunter2@127.0.0.1:1/x",
         "unsupported driver 'psycopg2' in LTC_DATABASE_URL 'postgresql+psycopg2://u:***@127.0.0.1:1/x': ltc-hub "
         "connects to PostgreSQL with psycopg 3 only"),
    ],
)
def test_bad_database_url_is_one_masked_line_and_exit_2(url: str, expected: str, tmp_path: Path) -> None:
    res = ltc("status", env={"LTC_DATABASE_URL": url}, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert expected in lines[0]
    assert "hunter2" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(("url", "driver"), [("postgresql+psycopg2://u:hunter2@127.0.0.1:1/x", "psycopg2"),
                                           ("postgresql+asyncpg://u@127.0.0.1:1/x", "asyncpg"),
                                           ("postgresql+bogus://u@127.0.0.1:1/x", "bogus"),
                                           ("sqlite+aiosqlite:///{tmp}/a.db", "aiosqlite"),
                                           ("sqlite+pysqlcipher:///{tmp}/a.db", "pysqlcipher")])
def test_a_driver_ltc_hub_does_not_connect_with_is_refused_before_connecting(url: str, driver: str,
                                                                            tmp_path: Path) -> None:
    """A database URL naming another driver than ltc-hub's was connected with: ModuleNotFoundError (psycopg2), a
    TypeError (asyncpg: connect_timeout), MissingGreenlet (aiosqlite, after making the file). Now ConfigError (exit 2)
    naming the drivers ltc-hub supports, and nothing opened or made."""
    url = url.format(tmp=tmp_path)
    with pytest.raises(ConfigError, match=rf"^unsupported driver '{driver}' in LTC_DATABASE_URL .*: ltc-hub "
                                          r"(connects to PostgreSQL with psycopg 3|opens SQLite with Python's sqlite3) "
                                          r"only: write (postgresql|sqlite):///?"):
        db.make_engine(url)
    assert list(tmp_path.iterdir()) == []
    for supported in (f"sqlite:///{tmp_path}/s.db", f"sqlite+pysqlite:///{tmp_path}/s.db"):
        db.make_engine(supported).dispose()


@pytest.mark.parametrize(("args", "message"), [
    (("reconcile", "--as-of", "0001-01-01"), "--as-of '0001-01-01' is out of range: give a day from 1900-01-01 to "
                                             "2999-12-31"),
    (("run", "--as-of", "3000-01-01"), "--as-of '3000-01-01' is out of range"),
])
def test_a_day_out_of_range_is_refused_at_the_option(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    """``ltc reconcile --as-of 0001-01-01`` ended in ``OverflowError: date value out of range`` (the reconciliation's
    date arithmetic): an as-of from 1900 to 2999 is taken, any other day is one line at the option, exit 2, before
    the store or ltc.yaml is read."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store.open(url).close()
    res = ltc(*args, env={"LTC_DATABASE_URL": url, "LTC_PROGRESS": "off"}, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), res.stderr


@pytest.mark.parametrize("args", [("exceptions", "ack", "0433c\udce9", "--note", "seen"),
                                  ("report", "--out", "out", "--title", "Q3 r\udce9sum\udce9")])
def test_an_argument_that_is_not_utf8_is_one_line_saying_so(args: tuple[str, ...], tmp_path: Path) -> None:
    """A terminal in Latin-1 passes é as the byte 0xe9, which Python keeps as a lone surrogate: every command that
    stored, wrote or looked it up ended in ``UnicodeEncodeError: ... surrogates not allowed``. Now the entry point
    refuses it for every command: one line naming the argument and the fix, exit 2."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store.open(url).close()
    res = ltc(*args, env={"LTC_DATABASE_URL": url}, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    shown = next(a for a in args if "\udce9" in a).replace("\udce9", "\\xe9")
    assert lines[0] == (f"error: the argument '{shown}' is not valid UTF-8 text (byte 0xe9): set the terminal to "
                        "UTF-8 (e.g. LANG=C.UTF-8 or LC_ALL=C.UTF-8) or give the text in UTF-8")
    assert not (tmp_path / "out").exists()


def test_status_on_empty_store_says_so(tmp_path: Path) -> None:
    res = ltc("status", env={"LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}"}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "empty" in res.stdout and "no stream has been synced" in res.stdout


def test_default_store_is_created_on_first_use(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LTC_DATABASE_URL"}
    res = subprocess.run([*LTC, "status"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / ".ltc" / "ltc.db").exists()


@pytest.mark.parametrize("args", [("reconcile", "--as-of", "2026-10-31"), ("report", "--out", "out"),
                                  ("exceptions", "list"), ("remap",)])
def test_a_command_on_what_is_stored_refuses_a_store_that_is_not_there(args: tuple[str, ...], tmp_path: Path) -> None:
    """A mistyped store path was a new empty store: ``ltc reconcile`` said "0 chains, exceptions: none" and exit 0,
    ``ltc report`` wrote an empty report. Now one line naming the path, exit 2, and no file made (fails on 6b2085e)."""
    missing = tmp_path / "typo" / "ltc-prod.db"
    res = ltc(*args, env={"LTC_DATABASE_URL": f"sqlite:///{missing}"}, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no store at sqlite:///{missing}: the file does not exist")
    assert not missing.exists() and not missing.parent.exists()


def test_reconciling_an_empty_store_says_that_nothing_is_there(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store.open(url).close()  # made, as a first sync makes it, but nothing synced
    res = ltc("reconcile", "--as-of", "2026-10-31", env={"LTC_DATABASE_URL": url}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "0 chains" in res.stdout
    assert "note: the store holds no deals, orders, invoices or payments" in res.stderr


def test_status_lists_streams_with_cursor_counts_and_quarantine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = Store.open(url)
    run_id = store.begin_run("sync", "hubspot")
    store.start_stream("hubspot", "deals", run_id)
    store.commit_page("hubspot", "deals", [RawRecord("deals", str(i), {"id": str(i)}) for i in range(7)],
                      {"updated": "2026-11-01T00:00:00Z", "id": "6"}, run_id=run_id)
    store.finish_stream("hubspot", "deals", "paused", source_count=9, store_count=7, message="daily quota at 80%")
    store.close()
    res = ltc("status", env={"LTC_DATABASE_URL": url}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if "deals" in line)
    assert "Open exceptions: none" in res.stdout
    for part in ("hubspot", "paused", "9/7"):
        assert part in row, row
    assert "  hubspot.deals (paused): daily quota at 80%" in res.stdout  # each message in full, below the table


def test_db_upgrade_then_current(tmp_path: Path) -> None:
    env = {"LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'u.db'}"}
    first = ltc("db", "upgrade", env=env, cwd=tmp_path)
    assert first.returncode == 0 and "upgraded: empty ->" in first.stdout, first.stderr
    again = ltc("db", "upgrade", env=env, cwd=tmp_path)
    assert "up to date" in again.stdout


def test_config_check_names_file_line_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(
        "reporting_currency: EUR\n"
        "sources:\n"
        "  crm:\n"
        "    kind: salesfroce\n"
        "    base_url: ftp://x\n"
        "reconcile:\n"
        "  tolerance_abs: 0.01\n"
    )
    res = ltc("config", "check", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 4  # one line per problem, then how many
    assert f"{cfg}:4: sources.crm.kind" in res.stderr
    assert f"{cfg}:5: sources.crm.base_url" in res.stderr
    assert f"{cfg}:7: reconcile.tolerance_abs" in res.stderr and "quoted" in res.stderr


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(
        "sources:\n"
        "  crm: {kind: salesforce, base_url: 'https://example.my.salesforce.com',\n"
        "        credentials: {password: {env: SF_PASSWORD}}}\n"
        "  erp: {kind: tryton, base_url: 'http://127.0.0.1:8000'}\n"
        "erp: {source: erp}\n"
    )
    res = ltc("config", "check", "--config", str(cfg), cwd=tmp_path, env={"SF_PASSWORD": "x"})
    assert res.returncode == 0, res.stderr
    assert "2 source(s)" in res.stdout and "ERP erp" in res.stdout


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    res = ltc("config", "check", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_sync_against_an_emulator_then_status(tmp_path: Path) -> None:
    from sandbox.server import serve
    from sandbox.stripe import StripeEmulator, create_app

    key = "sk_test_cli_sync_000000000000"
    with serve(create_app(emulator=StripeEmulator(seed=2, size=5, api_key=key))) as srv:
        cfg = tmp_path / "ltc.yaml"
        cfg.write_text(f"sources:\n  pay: {{kind: stripe, base_url: '{srv.url}', "
                       "credentials: {api_key: {env: CLI_TEST_STRIPE_KEY}}}\n")
        env = {"LTC_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", "CLI_TEST_STRIPE_KEY": key}
        first = ltc("sync", "--config", str(cfg), env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "customers" in first.stdout and "success" in first.stdout and key not in first.stdout
        status = ltc("status", "--config", str(cfg), env=env, cwd=tmp_path)
        assert "pay" in status.stdout and "invoices" in status.stdout
        wrong = ltc("sync", "--config", str(cfg), "--progress", "off",
                    env={**env, "CLI_TEST_STRIPE_KEY": "sk_test_wrong_0000000000"}, cwd=tmp_path)
        # a rejected API key is the operator's to fix: exit 2, one line naming the source and the problem
        assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
        assert wrong.stderr.startswith("pay: needs an operator") and "Invalid API Key" in wrong.stderr
        assert "sk_test_wrong_0000000000" not in wrong.stderr


def test_demo_generates_a_world_and_replays_it_on_emulators(tmp_path: Path) -> None:
    res = ltc("demo", "--chains", "60", env={"LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "generated world: .ltc/world" in res.stdout and "reconcile:" in res.stdout and "deal chains" in res.stdout
    assert "Open exceptions:" in res.stdout and "bank: 3 statement(s)" in res.stdout
    assert (tmp_path / ".ltc/world/world.yaml").exists() and (tmp_path / ".ltc/world/tryton/sale.sale.jsonl").exists()
    for name in ("report.html", "exceptions.csv", "chains.csv", "kpis.csv", "report.xlsx"):
        assert (tmp_path / ".ltc/reports" / name).stat().st_size > 0
    # `ltc report` writes the same report again from the store
    again = ltc("report", "--out", "again", env={"LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"}, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again/exceptions.csv").read_text() == (tmp_path / ".ltc/reports/exceptions.csv").read_text()


def test_demo_with_a_bad_world_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w/world.yaml").write_text("format: 1\nname: x\nsystems: [salesforce]\nerp: none\n"
                                           "reporting_currency: USD\n")
    res = ltc("demo", "--world", str(tmp_path / "w"), env={"LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"},
              cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0] == "ltc demo: starting"  # said at once, before the imports
    assert len(lines) == 2 and "salesforce" in lines[1]


@pytest.mark.slow
def test_demo_world_replay_finds_the_delivery_breaks(tmp_path: Path) -> None:
    """`ltc demo --world`: an Odoo world with quotes, contracts and deliveries, replayed on the emulators,
    finds goods shipped but not billed and billed but not shipped, on the orders the generator planted."""
    import csv

    from sandbox.scenario import generate
    from sandbox.world_writer import write_world

    world = generate(60, seed=5, erp="odoo")
    write_world(world, tmp_path / "w")
    res = ltc("demo", "--world", str(tmp_path / "w"), env={"LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"},
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with (tmp_path / ".ltc/reports/exceptions.csv").open(encoding="utf-8") as fh:
        found = {(r["code"], r["fingerprint"]) for r in csv.DictReader(fh)}
    stages = {"DELIVERED_NOT_INVOICED", "INVOICED_NOT_DELIVERED", "QUOTE_MISMATCH", "CONTRACT_MISMATCH"}
    planted = {(c, f) for c, f in world.truth.select("code", "fingerprint").iter_rows() if c in stages}
    assert {c for c, _ in planted} == stages and planted <= found
    with (tmp_path / ".ltc/reports/chains.csv").open(encoding="utf-8") as fh:
        chains = list(csv.DictReader(fh))
    assert any(c["quotes"] and c["contract"] and c["deliveries"] for c in chains)


def test_a_store_in_a_read_only_folder_is_one_line_that_says_why(tmp_path: Path) -> None:
    """A copy of a SQLite store on a read-only mount (a restored backup, an auditor's snapshot) cannot be opened, even to
    read it: SQLite writes its -wal/-shm files beside it. The one line says so, not only "unable to open database file".
    Run for real: on a read-only bind mount as root, in a folder without write permission otherwise."""
    folder = tmp_path / "store"
    folder.mkdir()
    made = ltc("status", env={"LTC_DATABASE_URL": f"sqlite:///{folder / 'ltc.db'}"}, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    view = tmp_path / "ro"
    view.mkdir()
    if os.geteuid() == 0:
        if shutil.which("mount") is None or subprocess.run(["mount", "--bind", str(folder), str(view)]).returncode:
            pytest.skip("no bind mount here (root ignores folder permissions, so only a read-only mount shows it)")
        try:
            assert subprocess.run(["mount", "-o", "remount,ro,bind", str(view)]).returncode == 0
            res = ltc("status", env={"LTC_DATABASE_URL": f"sqlite:///{view / 'ltc.db'}"}, cwd=tmp_path)
        finally:
            subprocess.run(["umount", str(view)])
    else:
        folder.chmod(0o555)
        try:
            res = ltc("status", env={"LTC_DATABASE_URL": f"sqlite:///{folder / 'ltc.db'}"}, cwd=tmp_path)
        finally:
            folder.chmod(0o755)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not writable" in lines[0] and "-wal and -shm" in lines[0], res.stderr


@pytest.mark.parametrize(("given", "expected"), [(None, "false"), ("true", "true")])
def test_prefect_analytics_are_off_unless_the_operator_turns_them_on(given: str | None, expected: str) -> None:
    """A temporary Prefect server started by a command (a ``{secret: …}`` credential in config check) printed
    "Failed to send telemetry" on every start on a machine with no way out."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_ANALYTICS_ENABLED"}
    if given is not None:
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = given
    code = ("import os, sys\nfrom ltc.cli import main\nsys.argv = ['ltc', '--version']\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nprint(os.environ.get('PREFECT_SERVER_ANALYTICS_ENABLED'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert res.stdout.strip().splitlines()[-1] == expected, res.stderr
