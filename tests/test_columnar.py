"""Columnar store I/O (canonical.columnar) on SQLite and PostgreSQL: what goes in comes back, exactly."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from canonical import columnar, tables
from canonical.errors import StoredValueError
from canonical.store import Store

PAY = tables.table_for("payment")


@pytest.fixture(autouse=True, params=["helper process", "in process"])
def sqlite_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite I/O both ways: through the helper process (connectorx / ADBC) and, for small stores, here."""
    monkeypatch.setattr(columnar, "SMALL", 0 if request.param == "helper process" else 10**9)


def _rows(n: int) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for i in range(n):
        out.append({c.name: None for c in PAY.columns} | {
            "id": f"s:payment:{i}", "source_system": "s", "source_object": "payment", "source_id": str(i),
            "attributes": {} if i % 3 else {"k": [1, "x"]}, "kind": "payment", "currency": "KWD",
            # a NULL first: a driver typing columns by their first values would fail here
            "amount": None if i == 0 else Decimal(i) / Decimal(1000) + Decimal("123456789012345678.125"),
            "fee": Decimal("0.10") if i % 2 else None, "payment_date": date(2026, 1, 1 + i % 28),
            "remittance": None if i < 5 else f'inv "{i}", paid\nthanks', "payer_name": "" if i == 7 else "ACME",
            "source_updated_at": datetime(2026, 2, 3, 4, 5, 6, i, tzinfo=UTC) if i % 4 else None})
    return out


def test_read_returns_exactly_what_the_orm_wrote(store: Store) -> None:
    rows = _rows(3000)
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "payment", rows)
        # an amount stored in exponent form (Decimal's str of 1E+3) stays exact
        conn.execute(PAY.update().where(PAY.c.id == "s:payment:1").values(fee=Decimal("1E+3")))
        conn.execute(PAY.update().where(PAY.c.id == "s:payment:2").values(deleted_at=datetime.now(UTC)))
    df = columnar.read_table(store.engine, PAY, ["id", "amount", "fee", "payment_date", "remittance", "payer_name",
                                                 "source_updated_at", "attributes"],
                             dtypes={"amount": pl.Decimal(38, 3), "fee": pl.Decimal(38, 4)})
    assert df.height == 2999 and "s:payment:2" not in df["id"].to_list()  # live rows only
    assert df.schema["amount"] == pl.Decimal(38, 3) and df.schema["payment_date"] == pl.Date
    assert df.schema["source_updated_at"] == pl.Datetime("us", "UTC")
    got = {r["id"]: r for r in df.iter_rows(named=True)}
    for r in rows:
        if r["id"] == "s:payment:2":
            continue
        g = got[r["id"]]
        assert g["amount"] == r["amount"] and (g["fee"] == (Decimal(1000) if r["id"] == "s:payment:1" else r["fee"]))
        assert (g["payment_date"], g["remittance"], g["payer_name"], g["source_updated_at"]) == (
            r["payment_date"], r["remittance"], r["payer_name"], r["source_updated_at"])
        assert json.loads(g["attributes"]) == r["attributes"]  # JSON as its text


def test_start_export_hands_each_file_over_as_its_job_ends(store: Store, tmp_path: Path) -> None:
    """``start_export``: the jobs are read in the background; each file is complete (what ``read_table`` reads) once
    its ``wait`` returns, whatever the readers; a failing job's error reaches its waiter (and the block's end), and
    the jobs after it are read all the same."""
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "payment", _rows(500))
    cols = ("id", "amount", "payment_date", "remittance", "source_updated_at")
    want = columnar.read_table(store.engine, PAY, list(cols))
    for readers in (1, 2):
        good = [columnar.Export(columnar.shape(PAY), cols, str(tmp_path / f"{readers}-{i}.parquet")) for i in range(5)]
        bad = columnar.Export(columnar.Shape("no_such_table", {"id": "text"}), ("id",),
                              str(tmp_path / f"{readers}-bad.parquet"))
        with pytest.raises(Exception, match="no_such_table"), \
                columnar.start_export(store.engine, [*good[:2], bad, *good[2:]], readers=readers, lead=2) as exporting:
            for job in reversed(good):
                exporting.wait(job.path)
                assert pl.read_parquet(job.path).equals(want)
            exporting.wait(bad.path)


def test_bulk_load_writes_what_the_orm_reads_back(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(50)
    frame = pl.DataFrame([{k: v for k, v in r.items() if k != "attributes"} for r in rows],
                         schema_overrides={"amount": pl.Decimal(38, 3), "fee": pl.Decimal(38, 2)}, infer_schema_length=None
                         ).with_columns(pl.lit("{}").alias("attributes"))
    n = columnar.write_frames(store.engine, {PAY: frame})
    assert n == 50
    with store.engine.connect() as conn:
        back = {r.id: r for r in conn.execute(sa.select(PAY))}
    for r in rows:
        b = back[r["id"]]
        assert (b.amount, b.fee, b.payment_date, b.remittance, b.payer_name, b.source_updated_at) == (
            r["amount"], r["fee"], r["payment_date"], r["remittance"], r["payer_name"], r["source_updated_at"])
        assert isinstance(b.amount, Decimal | None) and b.attributes == {}
    # delete + append is one transaction: a failing append leaves the table as it was
    bad = frame.with_columns(pl.lit("not json").alias("attributes")) if store.engine.dialect.name == "postgresql" \
        else frame  # SQLite: the same ids again violate the primary key
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        columnar.write_frames(store.engine, {PAY: bad}, delete=[tables.table_for("deal").name])
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(PAY)).scalar_one() == 50


def test_float_amounts_are_refused() -> None:
    with pytest.raises(TypeError, match="not floats"):
        columnar.storage_frame(PAY, pl.DataFrame({"amount": [1.1]}), "sqlite")


def _links(n: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame({
        "chain_id": [f"{tag}:deal:{i}" for i in range(n)], "from_entity": ["order"] * n,
        "from_id": [f"{tag}:order:{i}" for i in range(n)], "to_entity": ["deal"] * n,
        "to_id": [f"{tag}:deal:{i}" for i in range(n)], "rule_id": ["order.deal_ref"] * n,
        "evidence": [f"deal_ref={i}" for i in range(n)],
        "confidence": pl.Series([Decimal("1")] * n, dtype=pl.Decimal(38, 10)),
        "margin": pl.Series([None if i % 2 else Decimal(i) / 8 for i in range(n)], dtype=pl.Decimal(38, 4)),
    })


def _link_rows(store: Store) -> list[tuple]:  # type: ignore[type-arg]
    from reconcile.tables import recon_link

    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(recon_link.c.from_id, recon_link.c.evidence, recon_link.c.margin)).all())


def _indexes(store: Store) -> set[str]:
    return {ix["name"] for ix in sa.inspect(store.engine).get_indexes("recon_link")}


def _with_a_previous_run(store: Store, tmp_path: Path) -> tuple[columnar.Shape, set[str], list[Any]]:
    """Three links of an earlier run (``old:…``) stored: (the links' shape, the table's indexes, the stored rows)."""
    from reconcile.tables import recon_link

    shape = columnar.shape(recon_link)
    indexes = _indexes(store)
    old = tmp_path / "old.parquet"
    _links(3, "old").write_parquet(old)
    columnar.bulk_load(store.engine, [columnar.Load(shape, (str(old),), wrap={"evidence": "text"})])
    return shape, indexes, _link_rows(store)


def test_arrow_ipc_parts_store_what_the_same_parquet_parts_store(store: Store, tmp_path: Path) -> None:
    """A frame written as Arrow IPC (:func:`columnar.write_ipc`, what a bucket hands the store writer) reads back and is
    stored exactly as the same frame written as Parquet: same rows, same order, exact amounts and JSON text."""
    from reconcile.tables import recon_link

    shape = columnar.shape(recon_link)
    df = _links(25, "p")
    pq, ipc = tmp_path / "0.parquet", tmp_path / f"0{columnar.IPC}"
    df.write_parquet(pq)
    columnar.write_ipc(df, ipc)
    assert columnar.read_file(ipc).equals(df) and columnar.file_rows(ipc) == columnar.file_rows(pq) == 25
    stored = []
    for path in (pq, ipc):
        columnar.bulk_load(store.engine, [columnar.Load(shape, (str(path),), wrap={"evidence": "text"})],
                           delete=[recon_link.name], swap=True)
        with store.engine.connect() as conn:
            # without the id: PostgreSQL's sequence goes on from the first load
            stored.append([r[1:] for r in conn.execute(sa.select(recon_link).order_by(recon_link.c.id)).all()])
    assert stored[0] == stored[1] and len(stored[1]) == 25
    assert stored[1][2][6] == {"text": "deal_ref=2"} and stored[1][2][9] == Decimal("0.25")  # evidence, margin


@pytest.mark.parametrize("swap", [False, True])
def test_bulk_writer_appends_in_the_background_and_commits_once(store: Store, tmp_path, swap: bool) -> None:  # type: ignore[no-untyped-def]
    """Parts appended one by one while the caller goes on: readers see the old rows until ``finish``, then all
    the new ones (the indexes dropped for the write are back)."""
    from reconcile.tables import recon_link

    shape, indexes, before = _with_a_previous_run(store, tmp_path)
    assert len(before) == 3
    parts = []
    for k in range(3):
        parts.append(tmp_path / f"{k}.parquet")
        _links(40 + k, f"b{k}").write_parquet(parts[-1])
    with columnar.BulkWriter(store.engine, [recon_link.name], rows_hint=100, swap=swap) as writer:
        for p in parts:
            writer.add([columnar.Load(shape, (str(p),), wrap={"evidence": "text"})])
            assert _link_rows(store) == before  # nothing visible before the commit
        assert writer.finish() == 40 + 41 + 42
    got = _link_rows(store)
    assert len(got) == 123 and {r[0].partition(":")[0] for r in got} == {"b0", "b1", "b2"}
    assert ("b2:order:41", {"text": "deal_ref=41"}, None) in got
    assert ("b1:order:4", {"text": "deal_ref=4"}, Decimal("0.5")) in got  # exact, never a float
    assert _indexes(store) == indexes


def test_bulk_writer_commit_is_visible_at_once_and_checkpointed_by_settle(sqlite_store: Store, tmp_path,  # type: ignore[no-untyped-def]
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite, helper process: the commit does not copy the WAL into the database (readers see the rows at once,
    through the WAL); ``settle`` waits for the checkpoint that does: the database file alone then has them."""
    import shutil
    import sqlite3

    from reconcile.tables import recon_link

    monkeypatch.setattr(columnar, "SMALL", 0)
    shape = columnar.shape(recon_link)
    part = tmp_path / "links.parquet"
    _links(50, "new").write_parquet(part)
    path = Path(str(sqlite_store.engine.url.database))

    def in_file_alone() -> int:  # the rows the database file holds without its WAL
        copy = tmp_path / "alone.db"
        shutil.copyfile(path, copy)
        with contextlib.closing(sqlite3.connect(copy)) as db:
            return int(db.execute("SELECT count(*) FROM recon_link").fetchone()[0])

    with sqlite_store.engine.connect():  # a connection open: the WAL stays (as in a running process)
        writer = columnar.BulkWriter(sqlite_store.engine, [recon_link.name], rows_hint=50)
        writer.add([columnar.Load(shape, (str(part),), wrap={"evidence": "text"})])
        assert writer.finish(settle=False) == 50
        assert len(_link_rows(sqlite_store)) == 50
        writer.settle()
        assert in_file_alone() == 50


@pytest.mark.parametrize("swap", [False, True])
def test_bulk_writer_rolls_back_on_error(store: Store, tmp_path, swap: bool) -> None:  # type: ignore[no-untyped-def]
    from reconcile.tables import recon_link

    shape, indexes, before = _with_a_previous_run(store, tmp_path)
    part = tmp_path / "new.parquet"
    _links(30, "new").write_parquet(part)
    with pytest.raises(RuntimeError, match="bucket failed"), \
            columnar.BulkWriter(store.engine, [recon_link.name], rows_hint=30, swap=swap) as writer:
        writer.add([columnar.Load(shape, (str(part),), wrap={"evidence": "text"})])
        raise RuntimeError("bucket failed")
    assert _link_rows(store) == before and _indexes(store) == indexes
    # a failing append (a NOT NULL column missing) surfaces in finish() and rolls back too
    bad = tmp_path / "bad.parquet"
    _links(5, "bad").drop("rule_id").with_columns(pl.lit(None, pl.String).alias("rule_id")).write_parquet(bad)
    writer = columnar.BulkWriter(store.engine, [recon_link.name], rows_hint=30, swap=swap)
    writer.add([columnar.Load(shape, (str(part),), wrap={"evidence": "text"})])
    writer.add([columnar.Load(shape, (str(bad),), wrap={"evidence": "text"})])
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        writer.finish()
    assert _link_rows(store) == before and _indexes(store) == indexes
    # and the store takes the next write
    assert columnar.bulk_load(store.engine, [columnar.Load(shape, (str(part),), wrap={"evidence": "text"})], delete=[recon_link.name]) == 30


def test_sqlite_swap_commits_bucket_by_bucket_unseen_until_finish_and_a_failure_keeps_the_last_run(
        sqlite_store: Store, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """SQLite, helper process: each append is committed to a fresh ``recon_link__new`` and checkpointed (the
    database file alone holds it) while readers still see the last run's rows; a failure between appends drops
    the new table (the last run's rows and schema stay); a write after it (and after a killed run's leftover
    table) swaps the table in with exactly the schema it replaced."""
    import shutil
    import sqlite3

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from canonical import tables
    from reconcile.tables import recon_link

    monkeypatch.setattr(columnar, "SMALL", 0)
    shape, indexes, before = _with_a_previous_run(sqlite_store, tmp_path)
    path = Path(str(sqlite_store.engine.url.database))

    def schema(db: Any) -> list[tuple[str, str, str]]:  # (SQLite's rename quotes the table's name)
        return sorted((t, n, sql.replace('CREATE TABLE "recon_link"', "CREATE TABLE recon_link")) for t, n, sql in db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name LIKE 'recon_link%' AND sql IS NOT NULL"))

    def in_file_alone(table: str) -> int:  # the rows the database file holds without its WAL
        copy = tmp_path / "alone.db"
        shutil.copyfile(path, copy)
        with contextlib.closing(sqlite3.connect(copy)) as db:
            return int(db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    with contextlib.closing(sqlite3.connect(path)) as db:
        old_schema = schema(db)
    parts = []
    for k in range(2):
        parts.append(tmp_path / f"{k}.parquet")
        _links(20 + k, f"b{k}").write_parquet(parts[-1])
    with sqlite_store.engine.connect(), pytest.raises(RuntimeError, match="between buckets"), \
            columnar.BulkWriter(sqlite_store.engine, [recon_link.name], rows_hint=50, swap=True) as writer:
        writer.add([columnar.Load(shape, (str(parts[0]),), wrap={"evidence": "text"})])
        for f in writer.futures:
            f.result()
        assert in_file_alone("recon_link__new") == 20  # committed and checkpointed
        assert _link_rows(sqlite_store) == before  # readers: the last run's rows
        raise RuntimeError("failed between buckets")
    assert _link_rows(sqlite_store) == before and _indexes(sqlite_store) == indexes
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert schema(db) == old_schema  # no recon_link__new left
        db.execute("CREATE TABLE recon_link__new (junk TEXT)")  # as a killed run leaves it
        db.commit()
    with columnar.BulkWriter(sqlite_store.engine, [recon_link.name], rows_hint=50, swap=True) as writer:
        for p in parts:
            writer.add([columnar.Load(shape, (str(p),), wrap={"evidence": "text"})])
        assert writer.finish() == 41
    got = _link_rows(sqlite_store)
    assert len(got) == 41 and {r[0].partition(":")[0] for r in got} == {"b0", "b1"}
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert schema(db) == old_schema
    with sqlite_store.engine.connect() as conn:  # what alembic compares
        assert [d for d in compare_metadata(MigrationContext.configure(conn), tables.metadata)
                if d[0] != "remove_table"] == []


def test_helper_reads_text_after_a_first_batch_of_nulls_and_starts_lean(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The helper's SQLite reader (ADBC's driver, which types a column by its first batch's values) reads a text
    column that is NULL in the whole first batch and text later, a number stored in a text column, integers and
    booleans, exactly; and the helper process runs without SQLAlchemy or pandas loaded (its start-up CPU). A table
    of one batch at most (or none) is read in one go to the same rows, without pyarrow loaded."""
    import sqlite3

    path = tmp_path / "t.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (name VARCHAR(40), amount TEXT, n BIGINT, flag BOOLEAN, day DATE, at DATETIME, "
                "deleted_at DATETIME)")
    rows = [(None, None, None, None, None, None, None)] * 2500 + [
        ("x", "12.5000", 7, 1, "2025-01-02", "2025-01-02 03:04:05.000006", None),
        ("", 3, None, 0, None, None, None), ("gone", "1", 1, 1, None, None, "2025-01-01 00:00:00.000000")]
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    shape = columnar.Shape("t", {"name": "text", "amount": "amount", "n": "int", "flag": "bool", "day": "date",
                                 "at": "instant", "deleted_at": "instant"})
    out = str(tmp_path / "t.parquet")
    job = columnar.Export(shape, ("name", "amount", "n", "flag", "day", "at"), out)
    helper = columnar._Helper()
    try:
        helper.call(columnar._export, f"sqlite://{path}", "sqlite", [job], 1000)
        loaded = helper.call(columnar._loaded, ["sqlalchemy", "pandas", "canonical.tables"])
    finally:
        helper.close()
    got = pl.read_parquet(out)
    assert got.height == 2502 and got.slice(0, 2500).null_count().row(0) == (2500,) * 6
    assert got.slice(2500).rows() == [
        ("x", Decimal("12.5"), 7, True, date(2025, 1, 2), datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
        ("", Decimal("3"), None, False, None, None)]
    assert loaded == []

    # a table of one batch at most is read in one go and written by Polars: the same file's rows, pyarrow not loaded
    whole = columnar.Export(shape, job.columns, str(tmp_path / "whole.parquet"))
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE e (name VARCHAR(40), amount TEXT, deleted_at DATETIME)")
    con.commit()
    con.close()
    empty = columnar.Export(columnar.Shape("e", {"name": "text", "amount": "amount", "deleted_at": "instant"}),
                            ("name", "amount"), str(tmp_path / "e.parquet"))
    helper = columnar._Helper()
    try:
        helper.call(columnar._export, f"sqlite://{path}", "sqlite", [whole, empty], 10_000)
        loaded = helper.call(columnar._loaded, ["pyarrow"])
    finally:
        helper.close()
    assert pl.read_parquet(whole.path).equals(got) and pl.read_parquet(whole.path).schema == got.schema
    assert pl.read_parquet(empty.path).schema == {"name": pl.String, "amount": pl.Decimal(38, 10)}
    assert pl.read_parquet(empty.path).height == 0
    assert loaded == []


@pytest.mark.postgres
def test_pg_swap_keeps_the_schema_privileges_and_sequence(pg_new_database: Any, tmp_path: Path) -> None:
    """PostgreSQL: a swapping write fills a fresh ``recon_link__new`` without indexes, unseen until the commit; then
    it takes ``recon_link``'s place with the same columns, defaults, indexes, constraint names, privileges and id
    sequence (the next ORM insert goes on counting), and statistics, committed with it."""
    import uuid

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from canonical import tables
    from reconcile.tables import recon_link

    store = Store.open(pg_new_database())
    role = f"ltc_bi_{uuid.uuid4().hex[:8]}"

    def ddl(conn: sa.Connection) -> list[Any]:
        return [*conn.exec_driver_sql(
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = 'recon_link' ORDER BY ordinal_position").all(),
            *conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'recon_link' "
                                  "ORDER BY 1").all(),
            *conn.exec_driver_sql("SELECT conname, contype FROM pg_constraint WHERE conrelid = 'recon_link'::regclass "
                                  "ORDER BY 1").all()]

    def privileges(conn: sa.Connection) -> list[Any]:
        return conn.exec_driver_sql("SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                                    "WHERE table_name = 'recon_link' AND grantee = %s ORDER BY 2", (role,)).all()

    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE ROLE "{role}"')
            conn.exec_driver_sql(f'GRANT SELECT, UPDATE ON recon_link TO "{role}"')
            before_ddl, before_privileges, before_oid = ddl(conn), privileges(conn), _oid(conn)
        shape, _, before = _with_a_previous_run(store, tmp_path)
        parts = _parts(tmp_path)
        with columnar.BulkWriter(store.engine, [recon_link.name], rows_hint=100, swap=True) as writer:
            for p in parts:
                writer.add([columnar.Load(shape, (str(p),), wrap={"evidence": "text"})])
            writer.drain()  # every append done, nothing committed
            assert all(f.done() for f in writer.futures)
            assert _link_rows(store) == before  # readers: the last run's rows, in the old table
            assert writer.finish(settle=False) == 61  # nothing left to settle on PostgreSQL
        got = _link_rows(store)
        assert len(got) == 61 and {r[0].partition(":")[0] for r in got} == {"b0", "b1"}
        with store.engine.begin() as conn:
            assert _oid(conn) != before_oid  # a fresh table, swapped in
            assert ddl(conn) == before_ddl and privileges(conn) == before_privileges
            assert [d for d in compare_metadata(MigrationContext.configure(conn), tables.metadata)
                    if d[0] != "remove_table"] == []
            top = conn.execute(sa.select(sa.func.max(recon_link.c.id))).scalar_one()
            assert _insert_link(conn) > top
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_class WHERE relname LIKE 'recon_link%%__new'"
                                        ).scalar_one() == 0
            # statistics gathered before the commit, committed with the swap
            assert conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE oid = 'recon_link'::regclass"
                                        ).scalar_one() == 61
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_stats WHERE tablename = 'recon_link'").scalar_one() > 0
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f'REVOKE ALL ON recon_link FROM "{role}"')
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("change", [None, "ALTER SEQUENCE recon_link_id_seq INCREMENT BY 3",
                                    "ALTER SEQUENCE recon_link_id_seq CYCLE",
                                    "ALTER TABLE recon_link ALTER COLUMN id SET DEFAULT nextval('recon_link_id_seq') + 10"])
@pytest.mark.parametrize("swap", [True, False])
def test_pg_bulk_writer_numbers_serial_ids_from_the_sequence(pg_new_database: Any, tmp_path: Path, swap: bool,
                                                             change: str | None) -> None:
    """PostgreSQL: a frame without the table's serial id is numbered by the writer from the id's own sequence, a block
    per part: the ids are unique and follow the parts' rows in order, each write's above the last one's, and the next
    ``nextval`` (an ORM insert) goes on after them. A sequence of another step, one that cycles, and a column whose
    default is not the sequence's ``nextval`` are left to the column's default (the same holds then)."""
    from reconcile.tables import recon_link

    step = 3 if change and "INCREMENT" in change else 1
    store = Store.open(pg_new_database())
    try:
        with store.engine.begin() as conn:
            if change:
                conn.exec_driver_sql(change)
            before = _insert_link(conn)
        shape = columnar.shape(recon_link)
        seen: list[int] = []
        for _ in range(2):
            parts = _parts(tmp_path)
            with columnar.BulkWriter(store.engine, [recon_link.name], rows_hint=100, swap=swap) as writer:
                for p in parts:
                    writer.add([columnar.Load(shape, (str(p),), wrap={"evidence": "text"})])
                assert writer.finish() == 61
            with store.engine.begin() as conn:
                got = conn.execute(sa.select(recon_link.c.id, recon_link.c.from_id).order_by(recon_link.c.id)).all()
                after = _insert_link(conn)
            ids = [r[0] for r in got]
            # the rows in the parts' order: b0's 30, then b1's 31
            assert [r[1] for r in got] == [f"b{k}:order:{i}" for k, n in ((0, 30), (1, 31)) for i in range(n)]
            assert len(set(ids)) == 61 and ids[0] > (seen[-1] if seen else before)
            assert all(b - a == step for a, b in itertools.pairwise(ids))
            assert after == ids[-1] + step  # the sequence goes on after the block
            seen = ids
    finally:
        store.close()


@pytest.mark.postgres
def test_pg_bulk_writer_outlasts_an_idle_in_transaction_timeout(pg_new_database: Any, tmp_path: Path) -> None:
    """The writer's transaction waits while the caller computes (the pre-pass: ~25 s at 1M chains before the first
    COPY): a server's idle_in_transaction_session_timeout ended the session and the run with a traceback (fails on
    28a1a90)."""
    from reconcile.tables import recon_link

    url = pg_new_database()
    store = Store.open(url)
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE \"{store.engine.url.database}\" "
                                 "SET idle_in_transaction_session_timeout = '300ms'")
        store.engine.dispose()  # new sessions take the database's setting
        shape = columnar.shape(recon_link)
        parts = _parts(tmp_path)
        with columnar.BulkWriter(store.engine, [recon_link.name], rows_hint=100, swap=True) as writer:
            time.sleep(1.0)  # the caller computing
            for p in parts:
                writer.add([columnar.Load(shape, (str(p),), wrap={"evidence": "text"})])
                time.sleep(0.5)
            assert writer.finish() == 61
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(recon_link)).scalar_one() == 61
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("blocker", ["a view", "a trigger", "a long reader", "a role that does not own it"])
def test_pg_a_table_that_cannot_be_swapped_has_its_rows_replaced(pg_new_database: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, blocker: str) -> None:
    """PostgreSQL: a table with what a fresh table would lose (a view on it, a trigger) is not swapped: its rows are
    deleted and the new ones copied in, in the same one transaction, and what was set on it keeps working. A reader
    holding the table past SWAP_LOCK_WAIT_MS is not waited for: the rows are copied into the table it holds."""
    import threading
    import uuid

    from reconcile.tables import recon_link

    monkeypatch.setattr(columnar, "SWAP_LOCK_WAIT_MS", 300)
    url = pg_new_database()
    store = Store.open(url)
    reader = store.engine.connect()
    writer = store.engine  # who writes the links: the tables' owner, or an application role with table privileges
    role = f"ltc_app_{uuid.uuid4().hex[:8]}"
    try:
        with store.engine.begin() as conn:
            if blocker == "a view":
                conn.exec_driver_sql("CREATE VIEW link_report AS SELECT chain_id FROM recon_link")
            elif blocker == "a trigger":
                conn.exec_driver_sql("CREATE TABLE link_audit (n integer)")
                conn.exec_driver_sql("CREATE FUNCTION link_audit() RETURNS trigger LANGUAGE plpgsql AS "
                                     "$$ BEGIN INSERT INTO link_audit VALUES (1); RETURN NEW; END $$")
                conn.exec_driver_sql("CREATE TRIGGER link_audit AFTER INSERT ON recon_link "
                                     "FOR EACH ROW EXECUTE FUNCTION link_audit()")
            elif blocker == "a role that does not own it":  # PostgreSQL 15: no CREATE on schema public either
                conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
                conn.exec_driver_sql(f'GRANT SELECT, INSERT, DELETE ON recon_link TO "{role}"')
                conn.exec_driver_sql(f'GRANT USAGE ON SEQUENCE recon_link_id_seq TO "{role}"')
                conn.exec_driver_sql(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC, "{role}"')
            before_oid = _oid(conn)
        if blocker == "a role that does not own it":
            writer = sa.create_engine(sa.engine.make_url(url).set(username=role))
        shape, _, _ = _with_a_previous_run(store, tmp_path)
        parts = _parts(tmp_path)
        if blocker == "a long reader":  # a report's open transaction that has read the table (ACCESS SHARE held)
            reader.begin()
            assert reader.exec_driver_sql("SELECT count(*) FROM recon_link").scalar_one() == 3
        written: list[int] = []
        t = threading.Thread(target=lambda: written.append(columnar.bulk_load(
            writer, [columnar.Load(shape, (str(p),), wrap={"evidence": "text"}) for p in parts],
            delete=[recon_link.name], swap=True)))
        t.start()
        t.join(timeout=60)
        assert written == [61]  # never stuck behind the reader, which still holds the table
        if blocker == "a long reader":
            # the same table it held: its next statement sees the committed rows (READ COMMITTED)
            assert reader.exec_driver_sql("SELECT count(*) FROM recon_link").scalar_one() == 61
            reader.rollback()
        got = _link_rows(store)
        assert len(got) == 61 and {r[0].partition(":")[0] for r in got} == {"b0", "b1"}
        with store.engine.begin() as conn:
            assert _oid(conn) == before_oid  # the same table, its rows replaced
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_class WHERE relname LIKE 'recon_link%%__new'"
                                        ).scalar_one() == 0
            if blocker == "a view":
                assert conn.exec_driver_sql("SELECT count(*) FROM link_report").scalar_one() == 61
            elif blocker == "a trigger":
                assert conn.exec_driver_sql("SELECT count(*) FROM link_audit").scalar_one() == 3 + 61
            if blocker != "a role that does not own it":  # only the owner may ANALYZE (PostgreSQL warns, skips)
                # the statistics of the new rows, committed with them (ANALYZE counts the rows, a DELETE and an
                # INSERT do not)
                assert conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE oid = 'recon_link'::regclass"
                                            ).scalar_one() == 61
            _insert_link(conn)
    finally:
        reader.close()
        if writer is not store.engine:
            writer.dispose()
            with store.engine.begin() as conn:
                conn.exec_driver_sql(f'REVOKE ALL ON recon_link, recon_link_id_seq FROM "{role}"')
                conn.exec_driver_sql(f'DROP ROLE "{role}"')
        store.close()


def _oid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT 'recon_link'::regclass::oid").scalar_one())


def _parts(tmp_path: Path) -> list[Path]:
    """Two buckets' links (30 and 31 rows, tagged b0 and b1) as Parquet files."""
    parts = []
    for k in range(2):
        parts.append(tmp_path / f"{k}.parquet")
        _links(30 + k, f"b{k}").write_parquet(parts[-1])
    return parts


def _insert_link(conn: sa.Connection) -> int:
    """One link inserted as the ORM does (its id from the table's sequence)."""
    from reconcile.tables import recon_link

    return int(conn.execute(recon_link.insert().values(
        chain_id="c", from_entity="order", from_id="o", to_entity="deal", to_id="d", rule_id="r", evidence={},
        confidence=Decimal(1)).returning(recon_link.c.id)).scalar_one())


# what the store may hold in an amount column, written around the mapping stage (by hand, a tool, a restored copy)
_READABLE = {"1E+3": Decimal(1000), "0E+50": Decimal(0), "-0.00": Decimal(0), "1E-2": Decimal("0.01"),
             "12345678901234567890123456789012.5": Decimal("12345678901234567890123456789012.5")}
_UNREADABLE = {"abc": "is not a decimal amount", "NaN": "is not a decimal amount",
               "Infinity": "is not a decimal amount", "1_000": "is not a decimal amount",
               " 12": "is not a decimal amount", "١٢": "is not a decimal amount",
               "1E+40": "has more than 34 digits before the decimal point",
               "1" + "0" * 34: "has more than 34 digits before the decimal point"}


def _put_fee(store: Store, value: str) -> None:
    """Payment 5's fee as the text ``value``, not through the ORM (on PostgreSQL a NUMERIC, which takes NaN)."""
    with store.engine.begin() as conn:
        cast = "CAST(:v AS NUMERIC)" if store.engine.dialect.name == "postgresql" else ":v"
        conn.execute(sa.text(f"UPDATE payment SET fee = {cast} WHERE id = 's:payment:5'"), {"v": value})


def test_odd_stored_amounts_read_exactly(store: Store) -> None:
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "payment", _rows(20))
    for text, value in _READABLE.items():
        _put_fee(store, text)
        df = columnar.read_table(store.engine, PAY, ["id", "fee"], dtypes={"fee": pl.Decimal(38, 4)})
        assert dict(df.iter_rows())["s:payment:5"] == value, text


@pytest.mark.parametrize("text", list(_UNREADABLE))
def test_an_unreadable_stored_amount_names_its_table_row_column_and_value(store: Store, text: str) -> None:
    """Before, ``1E+40`` stopped ``ltc reconcile`` with Polars' "Decimal is too large to fit in Decimal128" and
    ``abc`` with a ValueError, each as a traceback."""
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "payment", _rows(20))
    if store.engine.dialect.name == "postgresql" and text not in ("NaN", "Infinity", "1E+40", "1" + "0" * 34):
        try:
            _put_fee(store, text)
        except sa.exc.DataError:  # NUMERIC refuses it on the way in: it cannot be in the store
            return
        df = columnar.read_table(store.engine, PAY, ["id", "fee"], dtypes={"fee": pl.Decimal(38, 4)})
        assert dict(df.iter_rows())["s:payment:5"] == Decimal(text)  # NUMERIC took it as a number (" 12")
        return
    _put_fee(store, text)
    with pytest.raises(StoredValueError) as err:
        columnar.read_table(store.engine, PAY, ["id", "fee"], dtypes={"fee": pl.Decimal(38, 4)})
    stored = text if store.engine.dialect.name == "sqlite" else str(Decimal(text)) if text != "1E+40" else "1" + "0" * 40
    assert str(err.value).startswith(f"the store's payment table row 's:payment:5': fee {stored!r} {_UNREADABLE[text]};")
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
