"""Errors an operator fixes reach them as one line with exit code 2, whatever layer raised them: a full disk (the
store's or the scratch space's), a read-only store, PostgreSQL refusing a write; anything else stays a bug with its
traceback (``canonical.errors.operator_error``)."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from canonical import db, tables
from canonical.backup import backup
from canonical.errors import ConfigError, DatabaseUnavailable, StoreProblem, error_text, operator_error
from canonical.store import Store
from tests.test_cli import ltc


def _full_sqlite(tmp_path: Path) -> BaseException:
    """A real SQLite "database or disk is full", as SQLAlchemy raises it: the file capped at its current pages."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'full.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
    try:
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            conn.exec_driver_sql(f"PRAGMA max_page_count={pages}")
            conn.commit()
            with conn.begin():
                conn.exec_driver_sql("INSERT INTO t SELECT hex(randomblob(2000)) FROM "
                                     "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "
                                     "SELECT i FROM n)")
    except sa.exc.OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("the capped database took the rows")


def test_a_full_sqlite_store_is_a_store_problem_in_the_drivers_words(tmp_path: Path) -> None:
    exc = _full_sqlite(tmp_path)
    problem = operator_error(exc)
    assert isinstance(problem, StoreProblem) and problem.exit_code == 2
    assert str(problem).startswith("the disk that holds the store's database is full: free space on it")
    assert str(problem).endswith("(database or disk is full)")  # the driver's words, not SQLAlchemy's wrapping
    # wrapped again further up (a stage raising its own error from it): still found
    try:
        raise RuntimeError("reconcile: the links could not be stored") from exc
    except RuntimeError as outer:
        assert operator_error(outer) == problem or str(operator_error(outer)) == str(problem)
        assert error_text(outer) == str(problem)


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device", "/tmp/ltc-recon-x/in/payment.parquet"),
    # as Polars reports it (the scratch space full while the export writes its Parquet files)
    pl.exceptions.ComputeError("parquet: File out of specification: underlying IO error: No space left on device "
                               "(os error 28)"),
    # as a helper process passes a driver's error on that cannot be pickled
    RuntimeError("OperationalError: No space left on device"),
])
def test_a_full_scratch_space_says_where_space_is_wanted(exc: BaseException) -> None:
    problem = operator_error(exc)
    assert isinstance(problem, StoreProblem)
    assert "no space left on" in str(problem) and "TMPDIR" in str(problem)


def test_a_report_directory_this_process_may_not_make_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """``ltc report --out`` where the system refuses the directory (sysfs refuses even root): a traceback before
    (fails on c2a23f4)."""
    path = tmp_path / "s.db"
    Store.open(f"sqlite:///{path}").close()
    res = ltc("report", "--out", "/sys/ltc-reports", env={"LTC_DATABASE_URL": f"sqlite:///{path}"}, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: Operation not permitted: /sys/ltc-reports: check its permissions")


@pytest.mark.parametrize("where", ["report.html", "report.html/reports"])
def test_a_report_directory_where_a_file_is_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    """``ltc report --out`` naming a file, or a path under one: a traceback before (FileExistsError,
    NotADirectoryError)."""
    path = tmp_path / "s.db"
    Store.open(f"sqlite:///{path}").close()
    (tmp_path / "report.html").write_text("an earlier report")
    res = ltc("report", "--out", where, env={"LTC_DATABASE_URL": f"sqlite:///{path}"}, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f": {where}: a file is where a folder is wanted: choose another place (--out" in lines[0]
    assert (tmp_path / "report.html").read_text() == "an earlier report"


def test_anything_else_stays_a_bug_and_an_ltc_error_stays_itself() -> None:
    assert operator_error(ValueError("unexpected None in column amount")) is None
    assert operator_error(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert error_text(KeyError("amount")) == "KeyError: 'amount'"
    assert error_text(ValueError("bad"), typed=False) == "bad"
    config = ConfigError("ltc.yaml: sources.crm.kind: unknown kind 'sf'")
    try:
        raise RuntimeError("stage failed") from config
    except RuntimeError as outer:
        assert operator_error(outer) is config
        assert error_text(outer) == "RuntimeError: stage failed"  # not a store problem: as before


def _damaged(path: Path, *tables_hit: str) -> None:
    """Overwrite the first page of each of ``tables_hit`` in the SQLite file at ``path`` (its header intact: it opens)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'").fetchall())
    with path.open("r+b") as f:
        for name in tables_hit:
            f.seek((roots[name] - 1) * size)
            f.write(b"\xde\xad" * (size // 2))


def test_a_damaged_sqlite_store_is_one_line_saying_to_restore_a_backup_and_exit_2(tmp_path: Path) -> None:
    """A store file with damaged pages (its header intact) ended ``ltc reconcile``, ``status``, ``report`` and ``db
    backup`` in SQLAlchemy's traceback "database disk image is malformed", exit 1. Now the one line an operator acts
    on: the file is damaged, restore a backup (how), exit 2."""
    path = tmp_path / "ltc.db"
    url = f"sqlite:///{path}"
    Store.open(url).close()
    _damaged(path, "stream_state", "recon_exception")
    res = ltc("reconcile", "--as-of", "2026-10-31", env={"LTC_DATABASE_URL": url}, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: the store's database file is damaged: restore it from a backup with "
                               "`ltc db restore <backup>`")
    assert lines[0].endswith("(database disk image is malformed)")
    with pytest.raises(sa.exc.DatabaseError) as caught:  # `ltc db backup` reads every page
        backup(url, tmp_path / "copy.db")
    problem = operator_error(caught.value)
    assert isinstance(problem, StoreProblem) and str(problem).startswith("the store's database file is damaged")
    assert [p.name for p in tmp_path.iterdir() if "copy" in p.name] == []


def test_a_truncated_sqlite_store_says_to_restore_a_backup_too(tmp_path: Path) -> None:
    path = tmp_path / "ltc.db"
    Store.open(f"sqlite:///{path}").close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path.write_bytes(path.read_bytes()[:20_000])
    with pytest.raises(DatabaseUnavailable) as caught:
        db.make_engine(f"sqlite:///{path}")
    assert str(caught.value).startswith(f"cannot open database sqlite:///{path}: the store's database file is "
                                        "damaged: restore it from a backup")


def test_ltc_on_a_read_only_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    Store.open(f"sqlite:///{path}").close()
    res = ltc("reconcile", "--as-of", "2026-10-31", env={"LTC_DATABASE_URL": f"sqlite:///file:{path}?mode=ro&uri=true"},
              cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: the store's database is read-only for this process")
    assert lines[0].endswith("(attempt to write a readonly database)")


def test_a_store_opened_read_only_by_uri_is_reported_and_nothing_is_made_beside(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``sqlite:///file:/x/ltc.db?mode=ro&uri=true`` (an auditor's read-only copy, as SQLAlchemy documents it): before,
    the columnar readers opened ``file:/x/ltc.db`` as a relative path, a new empty store ("no such table: deal"), and
    the engine made a folder named ``file:`` in the working directory. Now the report is written from the store, the
    reconciliation says the store is read-only, and nothing is made beside."""
    from datetime import date

    from canonical import columnar
    from ltc.app.config import Config
    from reconcile.engine import run_reconciliation
    from reports.finance import build_report
    from sandbox.scenario import generate

    path = tmp_path / "store" / "ltc.db"
    world = generate(30, seed=3)
    store = Store.open(f"sqlite:///{path}")
    world.load(store)
    run_reconciliation(store, Config(), world.as_of or date(2026, 10, 31))
    store.close()
    before = sorted(p.name for p in path.parent.iterdir())
    work = tmp_path / "work"
    work.mkdir()
    env = {"LTC_DATABASE_URL": f"sqlite:///file:{path}?mode=ro&uri=true"}
    res = ltc("report", "--out", str(tmp_path / "out"), env=env, cwd=work)
    assert res.returncode == 0, res.stderr
    with (tmp_path / "out" / "chains.csv").open() as fh:
        assert len(fh.readlines()) > 10
    res = ltc("reconcile", "--as-of", "2026-10-31", env=env, cwd=work)
    assert res.returncode == 2 and "read-only for this process" in res.stderr, res.stderr
    res = ltc("status", env=env, cwd=work)
    assert res.returncode == 0 and f"sqlite:///file:{path}?mode=ro" in res.stdout.replace("\n", ""), res.stdout
    monkeypatch.setattr(columnar, "SMALL", 0)  # read by the helper processes, as a large store is
    monkeypatch.chdir(work)
    ro = Store.open(env["LTC_DATABASE_URL"])
    try:
        assert len(build_report(ro, monthly=False).chains) == len((tmp_path / "out" / "chains.csv").read_text()
                                                                  .splitlines()) - 1
    finally:
        ro.close()
    assert list(work.iterdir()) == []  # no folder "file:" here
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        n for n in before if not n.endswith(("-wal", "-shm"))]


@pytest.mark.postgres
def test_a_read_only_postgresql_server_says_to_use_the_primary(pg_new_database: Callable[[], str]) -> None:
    store = Store.open(pg_new_database())
    try:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("SET default_transaction_read_only = on")  # as on a hot standby
            conn.commit()
            with pytest.raises(sa.exc.DBAPIError) as caught, conn.begin():
                conn.exec_driver_sql("INSERT INTO run (id, kind, status, started_at) VALUES ('r', 'sync', 'running', now())")
    finally:
        store.close()
    problem = operator_error(caught.value)
    assert isinstance(problem, StoreProblem)
    assert "read-only (a standby?): point LTC_DATABASE_URL at the primary" in str(problem)
    assert "read-only transaction" in str(problem)


@pytest.mark.postgres
def test_a_statement_timeout_under_the_export_is_one_line_not_a_dead_helper(pg_new_database: Callable[[], str],
                                                                             tmp_path: Path) -> None:
    """A role's statement_timeout shorter than the export's read: connectorx panicked in the helper process, which
    died ("the columnar I/O helper process died (exit 1)", pages of Rust backtrace); now the helper answers with the
    panic's text and the operator reads what to raise (fails on 5d98200)."""
    from canonical import columnar
    from canonical.tables import table_for

    url = pg_new_database()
    store = Store.open(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO payment (id, source_system, source_object, source_id, attributes) "
                             "SELECT 'p' || g, 'bank', 'entry', 'x' || g, '{}' FROM generate_series(1, 400000) g")
        conn.exec_driver_sql(f"ALTER DATABASE \"{store.engine.url.database}\" SET statement_timeout = '40ms'")
    store.close()
    engine = db.make_engine(url)
    payment = table_for("payment")
    job = columnar.Export(columnar.shape(payment), ("id", "source_id", "attributes"), str(tmp_path / "p.parquet"))
    try:
        with pytest.raises(Exception) as caught:
            columnar.export_tables(engine, [job])
        problem = operator_error(caught.value)
        assert isinstance(problem, StoreProblem), repr(caught.value)
        assert "statement_timeout" in str(problem)
        assert all(h.proc.poll() is None for h in columnar._HELPERS)  # answered, alive
    finally:
        engine.dispose()
        columnar.close_helper()


@pytest.mark.parametrize("text", [
    'connectorx: cx writer failed: Source(PostgresError(Error { kind: Db, cause: Some(DbError { severity: "ERROR", '
    'code: SqlState(E42P05), message: "prepared statement \\"s3\\" already exists" }) }))',
    'connectorx: Source(PostgresError(Error { kind: Db, cause: Some(DbError { code: SqlState(E26000), message: '
    '"prepared statement \\"s1\\" does not exist" }) }))',
])
def test_a_prepared_statement_lost_behind_a_transaction_pool_names_session_pooling(text: str) -> None:
    """What connectorx (the columnar reader) says behind PgBouncer in transaction mode, as a helper passes it on."""
    problem = operator_error(RuntimeError(text))
    assert isinstance(problem, StoreProblem) and problem.exit_code == 2
    assert "pooler in transaction mode" in str(problem) and "pool_mode = session" in str(problem)


def test_an_unreadable_amount_in_the_store_is_one_line_naming_it_and_exit_2(tmp_path: Path) -> None:
    """An invoice total of ``1E+40`` written into the store by hand: ``ltc reconcile`` stopped with Polars'
    traceback ("Decimal is too large to fit in Decimal128")."""
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    store = Store.open(url)
    invoice = tables.table_for("invoice")
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "invoice", [{c.name: None for c in invoice.columns} | {
            "id": f"erp:invoice:{i}", "source_system": "erp", "source_object": "invoice", "source_id": str(i),
            "attributes": {}, "kind": "invoice", "currency": "EUR", "total": Decimal("10.00"),
            "issue_date": date(2026, 10, 1)} for i in range(3)])
        conn.execute(sa.text("UPDATE invoice SET total = '1E+40' WHERE id = 'erp:invoice:1'"))
    store.close()
    res = ltc("reconcile", "--as-of", "2026-10-31", env={"LTC_DATABASE_URL": url}, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: the store's invoice table row 'erp:invoice:1': total '1E+40' has more than")
