"""Columnar I/O between the store and Polars: tables read as Arrow, frames written in bulk, no Python rows.

Reads fill Arrow buffers in native code: on PostgreSQL **connectorx** (binary ``COPY``); on SQLite ADBC's SQLite
driver at its low level (:func:`_sqlite_batches`: a quarter less CPU than connectorx at 100k chains). That driver
types a column by the first batch's values and fails on a text column NULL there (``Type mismatch in column 0``), so
its query starts with a marked row of non-NULL values of each kind and reads the non-integer columns as text;
``fetchall`` would build one Python tuple per row (what this module replaces).

Small SQLite stores (under :data:`SMALL` rows) are read and written by this process's own sqlite3 at the
driver level instead (typed column-wise all the same). Writes: on SQLite, ADBC bulk ingest (a prepared ``INSERT`` bound from Arrow batches in C, on its own
connection, in one transaction); on PostgreSQL, ``COPY … FROM STDIN (FORMAT csv)`` fed by Polars' CSV
writer. Frames travel as Parquet files (:class:`Export`, :class:`Load`): on SQLite the driver side runs in
a helper process (see :func:`export_tables`), and a bucketed run already has its results on disk.

Money is exact end to end and never a float: :class:`~canonical.tables.Amount` columns travel as
decimal text (SQLite stores text; PostgreSQL ``NUMERIC`` is cast to text for the read and parsed from text
by ``COPY``) and become ``Decimal`` (Decimal128) columns in Polars. A stored amount Polars cannot parse
exactly (an exponent form such as ``1E+3``) goes through :class:`decimal.Decimal` for that column.

Everything is derived from the SQLAlchemy table, so a new canonical entity (or any table registered on
:data:`canonical.tables.metadata`) reads and writes without code here.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import io
import os
import pickle
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import polars as pl

from canonical.errors import StoredValueError
from canonical.scratch import scratch_dir

if TYPE_CHECKING:  # at run time imported where a column's type is looked at: the helper process never needs them
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")

_SQLITE_TS = "%Y-%m-%d %H:%M:%S%.f"


def _is_json(col: sa.Column[Any]) -> bool:
    import sqlalchemy as sa

    return isinstance(col.type, sa.JSON) or col.name in ("attributes", "evidence")


def _kind(col: sa.Column[Any] | str) -> str:
    if isinstance(col, str):  # a Shape's column: the kind itself
        return col
    # imported here: the helper process (python -m canonical.columnar) handles Shapes only, and starts ~0.5 s of CPU
    # sooner without SQLAlchemy and the canonical tables
    import sqlalchemy as sa

    from canonical import tables

    t = col.type
    if isinstance(t, tables.Amount):
        return "amount"
    if isinstance(t, tables.UTCDateTime):
        return "instant"
    if isinstance(t, sa.Date):
        return "date"
    if _is_json(col):
        return "json"
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.Integer):
        return "int"
    return "text"


@dataclass(frozen=True)
class Shape:
    """What the helper process needs of a table: its name and each column's kind (a picklable stand-in for
    the ``sa.Table``, whose module the helper need not import)."""

    name: str
    c: Mapping[str, str]


def shape(table: sa.Table) -> Shape:
    return Shape(table.name, {col.name: _kind(col) for col in table.columns})


if TYPE_CHECKING:
    Tableish = sa.Table | Shape


def polars_type(col: sa.Column[Any] | str) -> Any:
    """The Polars type a column reads as (amounts: 38 digits, 10 places, unless the caller names a type)."""
    return {
        "amount": pl.Decimal(38, 10), "instant": pl.Datetime("us", "UTC"), "date": pl.Date,
        "json": pl.String, "bool": pl.Boolean, "int": pl.Int64, "text": pl.String,
    }[_kind(col)]


# --- connections -----------------------------------------------------------------------------------

def connectorx_url(engine: Engine) -> str:
    """The engine's database as a connectorx connection string (an absolute path for SQLite)."""
    from canonical.db import sqlite_file

    url = engine.url
    if url.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is None:
            raise ValueError("columnar reads need a SQLite file, not an in-memory database")
        if (url.database or "").startswith("file:"):  # a URI (mode=ro...): the helpers open it as one, its path whole
            params = {k: v for k, v in url.query.items() if k != "uri" and isinstance(v, str)}
            query = f"?{urllib.parse.urlencode(params)}" if params else ""
            return f"sqlite://file:{urllib.parse.quote(str(path.resolve()))}{query}"
        return f"sqlite://{path.resolve()}"
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _is_pg(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


# --- reads -----------------------------------------------------------------------------------------

def select_sql(dialect: str, table: Tableish, columns: Sequence[str] | None = None, *,
               live: bool = True) -> str:
    """``SELECT`` of ``columns`` (default: all) of ``table`` in the forms connectorx reads exactly.

    PostgreSQL: amounts and JSON as text. SQLite: columns as declared (connectorx types them by their
    declared type), except JSON, whose declared type it does not know: there it infers from the first
    value and cannot from a NULL, so a NULL reads as ``''`` (never valid JSON) and is turned back."""
    pg = dialect == "postgresql"
    parts = []
    for name in columns or list(table.c.keys()):
        kind = _kind(table.c[name])
        if pg and kind in ("amount", "json"):
            parts.append(f'"{name}"::text AS "{name}"')
        elif not pg and kind == "json":
            parts.append(f"COALESCE(\"{name}\", '') AS \"{name}\"")
        else:
            parts.append(f'"{name}"')
    sql = f'SELECT {", ".join(parts)} FROM "{table.name}"'
    if live and "deleted_at" in table.c:
        sql += " WHERE deleted_at IS NULL"
    return sql


Dtypes = Mapping[str, Any]


def _want(table: Tableish, name: str, dtypes: Dtypes | None) -> Any:
    return (dtypes or {}).get(name) or polars_type(table.c[name])


def _typed(df: pl.DataFrame, table: Tableish, dtypes: Dtypes | None) -> pl.DataFrame:
    out: list[Any] = []
    for name in df.columns:
        col = table.c[name]
        want = _want(table, name, dtypes)
        s = df[name]
        if _kind(col) == "amount":
            try:
                out.append(decimal_column(s.cast(pl.String), want))
            except UnreadableAmount as bad:
                raise StoredValueError(_unreadable(df, table.name, name, bad)) from None
        elif _kind(col) == "json" and s.dtype == pl.String:
            out.append(pl.Series(name, s).replace("", None))
        elif s.dtype == want:
            out.append(s)
        elif _kind(col) == "instant":
            if s.dtype == pl.String:  # SQLite text a driver did not parse
                s = s.str.to_datetime(_SQLITE_TS, time_unit="us")
            zone = s.dtype.time_zone if isinstance(s.dtype, pl.Datetime) else None
            s = s.cast(pl.Datetime("us", zone))
            out.append(s.dt.replace_time_zone("UTC") if zone is None else s.dt.convert_time_zone("UTC"))
        elif _kind(col) == "date" and s.dtype == pl.String:
            out.append(s.str.slice(0, 10).str.to_date("%Y-%m-%d"))
        else:
            out.append(s.cast(want))
    return pl.DataFrame(out) if out else df


#: an amount as the store holds it (``str`` of a ``Decimal``: ``-12.50``, ``1E+3``, ``0E-7``), ASCII only; ``Decimal``
#: itself would also take ``NaN``, ``Infinity``, ``1_000``, spaces and other scripts' digits
_AMOUNT_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class UnreadableAmount(ValueError):
    """A stored amount that is no decimal number, or too large for the column's Decimal type."""

    def __init__(self, value: str, why: str) -> None:
        super().__init__(f"{value!r} {why}")
        self.value, self.why = value, why


def decimal_column(text: pl.Series, dtype: Any) -> pl.Series:
    """Exact decimal text -> a Decimal column (an exponent form goes through ``Decimal``); a value that is no
    decimal number, or has more digits before the point than ``dtype`` holds, raises :class:`UnreadableAmount`."""
    if text.dtype != pl.String:
        return text.cast(dtype)
    try:
        return text.cast(dtype, strict=True)
    except pl.exceptions.InvalidOperationError:
        whole = (dtype.precision or 38) - (dtype.scale or 0) if isinstance(dtype, pl.Decimal) else 38
        return pl.Series(text.name, [_exact(v, whole) for v in text.to_list()], dtype=dtype)


def _exact(text: str | None, whole: int) -> Decimal | None:
    if text is None:
        return None
    if not _AMOUNT_TEXT.fullmatch(text):
        raise UnreadableAmount(text, "is not a decimal amount")
    value = Decimal(text)
    if not value:
        return Decimal(0)  # 0E+50: a zero, whatever its exponent (Polars would find it too large)
    if value.adjusted() >= whole:
        raise UnreadableAmount(text, f"has more than {whole} digits before the decimal point")
    return value


def _unreadable(df: pl.DataFrame, table: str, column: str, bad: UnreadableAmount) -> str:
    """The one line that names an unreadable stored amount: table, row (when its id was read), column, value."""
    row = ""
    if "id" in df.columns:
        ids = df.filter(pl.col(column).cast(pl.String) == bad.value)["id"]
        row = f" row {ids[0]!r}" if len(ids) else ""
    return (f"the store's {table} table{row}: {column} {bad}; the mapping stage quarantines such amounts, so this row "
            f"was written around it (by hand, a tool or a restored copy): correct or delete it, then run again")


PG_PROTOCOL: Literal["cursor"] = "cursor"
"""connectorx's protocol on PostgreSQL: a cursor in one transaction. Its default (``binary``: COPY after statements
prepared in other transactions) hangs for good behind a pooler in transaction mode (PgBouncer, the pooled endpoints
of managed services), where consecutive transactions may run on different server sessions; a cursor's transaction
keeps one session. Measured on 508k rows (deal and delivery lines, payments) on the server itself: 1.02-1.08 s
either way."""


def _read_arrow(url: str, sql: str) -> Any:
    import connectorx as cx

    with _driver_panics():
        return cx.read_sql(url, sql, return_type="arrow", protocol=PG_PROTOCOL)


@contextlib.contextmanager
def _driver_panics() -> Iterator[None]:
    """connectorx's Rust panics (a statement timeout under a stream read, say) as RuntimeErrors with their text: a
    panic is a BaseException, which passed every ``except Exception`` up to a traceback."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except Exception:
        raise
    except BaseException as exc:
        raise RuntimeError(f"connectorx: {exc}") from None


def _empty(table: Tableish, cols: Sequence[str], dtypes: Dtypes | None) -> pl.DataFrame:
    return pl.DataFrame(schema={c: _want(table, c, dtypes) for c in cols})


@dataclass(frozen=True)
class Export:
    """One table to read into a Parquet file: ``columns`` of ``table`` (live rows), typed by ``dtypes``."""

    table: Shape
    columns: tuple[str, ...]
    path: str
    dtypes: Mapping[str, Any] | None = None
    live: bool = True


def _export(url: str, dialect: str, jobs: Sequence[Export], batch_rows: int) -> None:
    """Run in this process (PostgreSQL) or in the SQLite helper process: each job's rows, batch by batch,
    typed and appended to its Parquet file (memory bounded by a batch); on SQLite a table of one batch at most in
    one go (:func:`_export_whole`)."""
    for job in jobs:
        if dialect == "sqlite" and _export_whole(url.removeprefix("sqlite://"), job, batch_rows):
            continue
        import pyarrow.parquet as pq

        table = job.table
        cols = list(job.columns)
        schema = arrow_view(_empty(table, cols, job.dtypes)).schema
        with pq.ParquetWriter(job.path, schema, **scratch_parquet()) as writer:
            for df in _batches(url, dialect, table, cols, job.live, batch_rows):
                if not df.is_empty():
                    writer.write_table(arrow_view(_typed(df, table, job.dtypes).select(cols)).cast(schema))


def _export_whole(path: str, job: Export, batch_rows: int) -> bool:
    """In the helper process: a SQLite table of no more than ``batch_rows`` rows (its largest rowid says so, read
    from the last page of its b-tree) read by one statement into one frame and written by Polars (lz4, no statistics:
    the page cache's system time for an uncompressed file varied more than lz4's steady CPU costs, see
    :func:`write_ipc`), never through pyarrow: a helper that meets no larger table never
    imports it (~0.1 s of each helper's start, before its first table arrives, at 100k chains). False (nothing
    done) for a larger table, or one without rowids."""
    table, cols = job.table, list(job.columns)
    lite = _Lite(path)
    try:
        try:
            lite.execute(f'SELECT max(rowid) FROM "{table.name}"')
        except Exception:  # a WITHOUT ROWID table: read batch by batch
            return False
        top = lite.fetchone()
        if top is not None and top[0] is not None and int(top[0]) > batch_rows:
            return False
        df = lite.frame(_sqlite_select(table, cols, job.live), batch_rows)
    finally:
        lite.close()
    df = df.filter(pl.col(_FIRST) == 0).drop(_FIRST)
    out = (_typed(df, table, job.dtypes).select(pl.col(c).cast(_want(table, c, job.dtypes)) for c in cols)
           if df.height else _empty(table, cols, job.dtypes))
    out.write_parquet(job.path, compression="lz4", statistics=False)
    return True


#: the marker column of :func:`_sqlite_batches`' first row
_FIRST = "__ltc_types"


def _batches(url: str, dialect: str, table: Tableish, cols: Sequence[str], live: bool,
             batch_rows: int) -> Iterator[pl.DataFrame]:
    """The live rows of ``cols``, batch by batch, untyped (:func:`_typed` types them): connectorx on PostgreSQL, ADBC's
    SQLite driver (:func:`_sqlite_batches`) on SQLite."""
    if dialect == "sqlite":
        yield from _sqlite_batches(url.removeprefix("sqlite://"), table, cols, live, batch_rows)
        return
    import connectorx as cx

    with _driver_panics():
        for batch in cx.read_sql(url, select_sql(dialect, table, cols, live=live), return_type="arrow_stream",
                                 batch_size=batch_rows, protocol=PG_PROTOCOL):
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            yield df


def _sqlite_batches(path: str, table: Tableish, cols: Sequence[str], live: bool,
                    batch_rows: int) -> Iterator[pl.DataFrame]:
    """In the helper process: a SQLite table's rows read by ADBC's SQLite driver at its low level (it fills Arrow
    buffers in C; measured at 100k chains: a fifth less CPU than connectorx, which builds every value as a Rust string
    first and parses dates). The driver types a column by the values of the first batch (not the declared type, and a
    column NULL there is taken for an integer, failing on a later text), so every column but the integer ones is read
    as ``CAST(… AS TEXT)`` (text, or NULL, whatever a row stored) and the query starts with one row of non-NULL values
    of each kind, marked, and dropped again."""
    lite = _Lite(path)
    try:
        for df in lite.batches(_sqlite_select(table, cols, live), batch_rows):
            yield df.filter(pl.col(_FIRST) == 0).drop(_FIRST)
    finally:
        lite.close()


def _sqlite_select(table: Tableish, cols: Sequence[str], live: bool) -> str:
    """The query of :func:`_sqlite_batches`: its first row marked, of non-NULL values of each kind."""
    ints = {c for c in cols if _kind(table.c[c]) in ("int", "bool")}
    empty = "''"
    first = ", ".join([f'1 AS "{_FIRST}"', *(f'{0 if c in ints else empty} AS "{c}"' for c in cols)])
    rows = ", ".join(["0", *(f'"{c}"' if c in ints else f'CAST("{c}" AS TEXT)' for c in cols)])
    sql = f'SELECT {first} UNION ALL SELECT {rows} FROM "{table.name}"'
    if live and "deleted_at" in table.c:
        sql += " WHERE deleted_at IS NULL"
    return sql


def arrow_view(df: pl.DataFrame) -> Any:
    """``df`` as an Arrow table for pyarrow's Parquet writer, strings as Arrow string views: Polars' own buffers
    handed over, not copied into Arrow large strings first (the pre-pass's spill spent a fifth of its CPU on that
    copy at 1M chains). The file written is the same, byte for byte (Parquet has one string type)."""
    return df.to_arrow(compat_level=pl.CompatLevel.newest())


class WriteBehind:
    """Writes on threads of their own while the caller makes the next (pyarrow's Parquet writers run without the
    GIL: the other core writes): at most ``slots`` at a time (one, by default: writes to one file stay in order);
    :meth:`submit` waits for the oldest when they are all taken. The block's end waits for every write (the first
    error raised, unless the block is left by another)."""

    def __init__(self, name: str, slots: int = 1) -> None:
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix=name)
        self._slots = slots
        self._pending: collections.deque[Future[Any]] = collections.deque()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if kind is None:
                self.wait()
            else:
                self._settle()  # the block's own error is the one raised
        finally:
            self._pool.shutdown(wait=True)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        while len(self._pending) >= self._slots:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        try:
            while self._pending:
                self._pending[0].result()
                self._pending.popleft()
        finally:
            self._settle()  # an error: the others end before it is raised

    def _settle(self) -> None:
        """Let every pending write end, its error dropped (another one is being raised)."""
        for pending in self._pending:
            with contextlib.suppress(BaseException):
                pending.result()
        self._pending.clear()


def scratch_parquet() -> dict[str, Any]:
    """pyarrow's Parquet writer options for a scratch file this run reads back once (the export of the store's
    tables, the pre-pass's spill and discovered tables): lz4, without dictionary pages or statistics (measured at
    100k chains: 40% less CPU to write than with them, half to read back), on the system allocator (Arrow's
    jemalloc pool keeps a writer's buffers: +150 MB on the 1M run's peak). lz4, not uncompressed: the 1M run writes
    gigabytes of scratch files, and the page cache's system time for the raw bytes cost more than lz4 (``ltc
    reconcile`` of 1M chains on SQLite, four alternating pairs: 121.7 / 104.4 / 98.0 / 101.5 s uncompressed against
    107.0 / 104.2 / 94.9 / 96.9 s, the helpers' CPU 48-66 s against 48-56 s; see :func:`write_ipc`). No Arrow schema
    stored: Polars then reads strings straight as its own string views instead of reading Arrow large strings and
    converting them (half the CPU of reading a bucket back); every reader casts to the canonical schemas anyway."""
    import pyarrow as pa

    return {"compression": "lz4", "write_statistics": False, "use_dictionary": False, "store_schema": False,
            "memory_pool": pa.system_memory_pool()}


def export_tables(engine: Engine, jobs: Sequence[Export], batch_rows: int = 500_000, readers: int = 2) -> None:
    """Read tables into Parquet files (:class:`Export`), without a Python row; ``readers``: helper processes
    reading at once on SQLite (1 or 2; one reader leaves the other core to a caller that works meanwhile).

    On SQLite this runs in a helper process: ADBC's driver carries its own copy of the SQLite
    library, and two copies in one process do not see each other's POSIX locks, so one would delete the
    WAL the other still uses ("How To Corrupt An SQLite Database File", §2.2.1). In a process of its own
    each is an ordinary SQLite client. :func:`start_export` does it in the background, table by table."""
    with start_export(engine, jobs, batch_rows, readers) as exporting:
        exporting.wait_all()


class Exporting:
    """The tables :func:`start_export` reads in the background: :meth:`wait` for one job's file (by its path),
    :meth:`wait_all`; ``rows``: the live rows of its ``lead`` jobs (all of them without), counted no further
    than :data:`SMALL`. Left by an exception, the jobs not yet started are dropped and those under way waited
    for (their files are not removed under a reader)."""

    def __init__(self, jobs: Sequence[Export], rows: int) -> None:
        self.jobs = list(jobs)
        self.rows = rows
        self._done: dict[str, Future[None]] = {j.path: Future() for j in self.jobs}
        self._lo, self._hi = 0, len(self.jobs)  # the jobs not taken yet: jobs[_lo:_hi]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = False

    def __enter__(self) -> Exporting:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is not None:
            self._stop = True
        for t in self._threads:
            t.join()
        for f in self._done.values():  # the jobs never started (left by an exception)
            f.cancel()
        if kind is None:
            self.wait_all()

    def wait(self, path: str | Path) -> None:
        """Returns once the job writing ``path`` is done (its error raised)."""
        self._done[str(path)].result()

    def wait_all(self) -> None:
        for f in self._done.values():
            f.result()

    def _take(self, lead: int, back: bool, only: int | None) -> Export | None:
        """The next job not yet taken: the first left, or (``back``) once the first ``lead`` are all taken, the
        last left; ``only``: none past the first ``only``."""
        with self._lock:
            if self._stop or self._lo >= self._hi:
                return None
            if back and self._lo >= lead:
                self._hi -= 1
                return self.jobs[self._hi]
            if only is not None and self._lo >= only:
                return None
            self._lo += 1
            return self.jobs[self._lo - 1]

    def _run(self, do: Callable[[Export], object], lead: int = 0, back: bool = False, only: int | None = None) -> None:
        """Do the jobs :meth:`_take` gives, one after the other."""
        while (job := self._take(lead, back, only)) is not None:
            done = self._done[job.path]
            try:
                do(job)
            except BaseException as exc:  # this job's waiters get the error; the next jobs are read all the same
                done.set_exception(exc)
            else:
                done.set_result(None)

    def _start(self, do: Callable[[Export], object], lead: int = 0, back: bool = False,
               only: int | None = None) -> None:
        t = threading.Thread(target=self._run, args=(do, lead, back, only), name="ltc-export", daemon=True)
        self._threads.append(t)
        t.start()


def start_export(engine: Engine, jobs: Sequence[Export], batch_rows: int = 500_000, readers: int = 2,
                 lead: int = 0, from_end: bool = False) -> Exporting:
    """:func:`export_tables` in the background, a job at a time per reader: each file can be read as soon as its job
    is done (:meth:`Exporting.wait`) while the next are read. On SQLite the jobs are taken in their order by
    ``readers`` helper processes, each as it finishes its last (not dealt out beforehand: neither idles while the
    other has several to go); a single reader is helper 1 (helper 0 stays free for a bulk write, :class:`BulkWriter`)
    but for the first ``lead`` jobs (what the caller waits for first), which two read. ``from_end``: helper 0 reads
    the first ``lead`` jobs with helper 1, then the others from the last backwards (a caller waiting for them in
    order has the first ones from helper 1 as soon as one reader can, the last ones, waited for last, sooner).
    PostgreSQL the same way, connectorx in the helpers: the Arrow buffers of its reads are theirs, not this
    process's (at 1M chains, read on a thread here, they took this process's peak from 1.3 to 1.75 GB).
    A small store (under :data:`SMALL` live rows in the ``lead`` jobs, or in all of them) is read without
    helpers: SQLite at once by this process's sqlite3, PostgreSQL by connectorx on a thread of this process."""
    rows = _live_rows(engine, jobs[:lead] or jobs, limit=SMALL)
    exporting = Exporting(jobs, rows)
    url, dialect = connectorx_url(engine), engine.dialect.name
    if rows < SMALL:
        if _is_pg(engine):
            exporting._start(lambda job: _export(url, dialect, [job], batch_rows))
        else:
            exporting._run(lambda job: _export_here(engine, [job]))
        return exporting

    def reader(i: int) -> Callable[[Export], object]:
        return lambda job: _helper(i).call(_export, url, dialect, [job], batch_rows)

    exporting._start(reader(1))
    exporting._start(reader(0), lead, from_end, None if from_end or readers > 1 else lead)
    return exporting


#: below this many rows SQLite I/O runs in this process with Python's own sqlite3, row by row at the driver
#: level: a helper process's start and first imports (~0.5 CPU s, on the other core) would cost more than the rows.
#: Measured on 2 cores (``ltc reconcile`` of replayed worlds, alternating): at 5k chains (~23k rows in the tables
#: discovery reads first) either way takes as long; at 20k (~91k rows) the helpers take 3.0-4.5 s against 5.4-8.6 s
#: here (200k was the threshold then).
SMALL = 40_000


def _live_rows(engine: Engine, jobs: Sequence[Export], limit: int | None = None) -> int:
    """Live rows of the jobs' tables; with ``limit``, counted no further than that (a large store's full
    count would read every page of its tables once more only to learn that it is large)."""
    n = 0
    with engine.connect() as conn:
        for j in jobs:
            rows = f'SELECT 1 FROM "{j.table.name}"' + (
                " WHERE deleted_at IS NULL" if j.live and "deleted_at" in j.table.c else "")
            if limit is not None:
                rows += f" LIMIT {max(0, limit - n)}"
            n += int(conn.exec_driver_sql(f"SELECT count(*) FROM ({rows}) AS live").scalar_one())
            if limit is not None and n >= limit:
                break
    return n


def _export_here(engine: Engine, jobs: Sequence[Export]) -> None:
    """:func:`export_tables` for a small SQLite store: fetched by this process's sqlite3, typed column-wise."""
    with engine.connect() as conn:
        for job in jobs:
            table = job.table
            cols = list(job.columns)
            raw = {c: pl.Int64 if _kind(table.c[c]) in ("int", "bool") else pl.String for c in cols}
            rows = conn.exec_driver_sql(select_sql("sqlite", table, cols, live=job.live)).fetchall()
            df = pl.DataFrame(rows, schema=raw, orient="row")
            out = _typed(df, table, job.dtypes).select(cols) if rows else _empty(table, cols, job.dtypes)
            out.write_parquet(job.path, compression="uncompressed")


def read_table(engine: Engine, table: sa.Table, columns: Sequence[str] | None = None, *, live: bool = True,
               dtypes: Dtypes | None = None) -> pl.DataFrame:
    """``columns`` (default: all) of ``table``'s rows (``live``: not tombstoned) as a typed Polars frame.

    ``dtypes`` names the Polars type of some columns (e.g. an amount's ``Decimal(38, 4)``); the others
    read as :func:`polars_type` says."""
    cols = list(columns or [c.name for c in table.columns])
    if _is_pg(engine):
        raw = pl.from_arrow(_read_arrow(connectorx_url(engine), select_sql("postgresql", table, cols, live=live)))
        assert isinstance(raw, pl.DataFrame)
        return _empty(table, cols, dtypes) if raw.is_empty() else _typed(raw, table, dtypes).select(cols)
    with scratch_dir("ltc-read-") as tmp:
        path = str(Path(tmp) / "t.parquet")
        export_tables(engine, [Export(shape(table), tuple(cols), path, dtypes, live)])
        return pl.read_parquet(path)


def read_tables(engine: Engine, wanted: Mapping[str, tuple[sa.Table, Sequence[str], Dtypes | None]], *,
                with_deleted: Collection[str] = (),
                then: Callable[[str, pl.DataFrame], pl.DataFrame] | None = None) -> dict[str, pl.DataFrame]:
    """Several tables at once (helper processes on SQLite): name -> (table, columns, dtypes); live rows only, but
    for the names in ``with_deleted``. ``then(name, frame)``: what each frame becomes as soon as it is read (made
    smaller, say, before the next is read)."""
    def done(name: str, df: pl.DataFrame) -> pl.DataFrame:
        return then(name, df) if then is not None else df

    if _is_pg(engine):
        return {name: done(name, read_table(engine, t, cols, dtypes=d, live=name not in with_deleted))
                for name, (t, cols, d) in wanted.items()}
    with scratch_dir("ltc-read-") as tmp:
        jobs = [Export(shape(t), tuple(cols), str(Path(tmp) / f"{name}.parquet"), d, name not in with_deleted)
                for name, (t, cols, d) in wanted.items()]
        export_tables(engine, jobs)
        return {name: done(name, pl.read_parquet(job.path)) for name, job in zip(wanted, jobs, strict=True)}


class _Helper:
    """A child process (``python -m canonical.columnar``) that runs functions of this module sent to it as
    pickles over its stdin and answers on its stdout (the child's own prints go to stderr). Unlike
    ``multiprocessing``'s spawn, it never re-imports the caller's ``__main__``."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "canonical.columnar"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": _path()})
        self.lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            pickle.dump((fn.__name__, args), self.proc.stdin)
            self.proc.stdin.flush()
            head = self.proc.stdout.read(8)
            if len(head) < 8:
                raise RuntimeError(f"the columnar I/O helper process died (exit {self.proc.wait()})")
            ok, value = pickle.loads(self.proc.stdout.read(int.from_bytes(head, "big")))
        if not ok:
            raise value
        return value

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def _path() -> str:
    """The caller's import path, so the helper imports this very copy of the project."""
    return os.pathsep.join(p for p in sys.path if p)


def _serve() -> None:
    """The helper's loop (``python -m canonical.columnar``)."""
    from canonical.interpreter import allow_huge_pages

    allow_huge_pages()  # as its allocator asks, whenever it was started (it serves runs of every size)
    inp, out = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    while True:
        try:
            name, args = pickle.load(inp)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, globals()[name](*args))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a driver's panic too (connectorx's Rust panics are BaseExceptions): answered,
            answer = (False, exc)      # not the helper's death (a statement timeout killed it, its reason lost)
        try:
            blob = pickle.dumps(answer)
            pickle.loads(blob)
        except Exception:  # a driver's exception that does not survive pickling: its text does
            blob = pickle.dumps((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}")))
        out.write(len(blob).to_bytes(8, "big") + blob)  # length-framed: a reader never loses its place
        out.flush()


_HELPERS: list[_Helper] = []
_HELPER_LOCK = threading.Lock()


def _helper(i: int) -> _Helper:
    with _HELPER_LOCK:
        while len(_HELPERS) <= i:
            _HELPERS.append(_Helper())
            atexit.register(_HELPERS[-1].close)
        if _HELPERS[i].proc.poll() is not None:  # it died (killed, out of memory): a new one
            _HELPERS[i] = _Helper()
            atexit.register(_HELPERS[i].close)
        return _HELPERS[i]


def close_helper() -> int:
    """Stop the helper processes (if any run); returns their peak resident set in MB (0 if none ran)."""
    with _HELPER_LOCK:
        helpers = list(_HELPERS)
        _HELPERS.clear()
    if not helpers:
        return 0
    peak = 0
    for h in helpers:
        with contextlib.suppress(Exception):
            peak = max(peak, h.call(peak_rss_mb))
        h.close()
    return peak


def _loaded(modules: Sequence[str]) -> list[str]:
    """Which of ``modules`` this process has imported (what a helper process has loaded, for its start-up cost)."""
    return [m for m in modules if m in sys.modules]


def peak_rss_mb() -> int:
    """This process's peak resident set in MB (``VmHWM``: its own, where ``ru_maxrss`` of a child process also
    counts the resident set its parent had when it forked it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _run(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` here (PostgreSQL) or in a helper process (SQLite, see :func:`export_tables`): started on
    first use and kept for this process's life (each call opens and closes its own database connection,
    so it holds no lock between calls)."""
    if _is_pg(engine):
        return fn(*args)
    return _helper(0).call(fn, *args)


# --- writes ----------------------------------------------------------------------------------------

def storage_frame(table: Tableish, df: pl.DataFrame, dialect: str) -> pl.DataFrame:
    """``df``'s columns that ``table`` has, converted to what the database stores (exact text amounts,
    JSON text, SQLite's date and timestamp text and 0/1 booleans)."""
    pg = dialect == "postgresql"
    out: list[pl.Expr] = []
    for name in df.columns:
        if name not in table.c:
            continue
        col, dt = table.c[name], df.schema[name]
        kind = _kind(col)
        e = pl.col(name)
        if dt == pl.Null:  # a column of nulls only: no type to convert from
            out.append(e.cast(pl.Int64 if kind in ("int", "bool") else pl.String).alias(name))
            continue
        if kind == "amount":
            if dt == pl.Float32 or dt == pl.Float64:
                raise TypeError(f"{table.name}.{name}: amount columns take decimals, not floats")
            e = e.cast(pl.String)
        elif kind == "json":
            if isinstance(dt, pl.Struct):
                e = e.struct.json_encode()
            elif dt != pl.String:
                raise TypeError(f"{table.name}.{name}: JSON columns take JSON text or structs, not {dt}")
        elif kind == "date":
            e = e.cast(pl.Date)
            if not pg:
                e = e.dt.to_string("%Y-%m-%d")
        elif kind == "instant":
            if isinstance(dt, pl.Datetime) and dt.time_zone is None:
                raise TypeError(f"{table.name}.{name}: instants must be timezone-aware")
            e = e.dt.convert_time_zone("UTC")
            e = e.dt.to_string("%Y-%m-%d %H:%M:%S.%6f") if not pg else e
        elif kind == "bool" and not pg:
            e = e.cast(pl.Int8)
        out.append(e.alias(name))
    return df.select(out)


@dataclass(frozen=True)
class Load:
    """Parquet or Arrow IPC ``files`` (:func:`read_file`) appended to ``table`` in order, one file in memory at a time;
    ``wrap`` names JSON columns whose text values are stored as ``{key: text}``."""

    table: Shape
    files: tuple[str, ...]
    wrap: Mapping[str, str] = field(default_factory=dict)

    def frames(self) -> Iterator[pl.DataFrame]:
        for path in self.files:
            df = read_file(path)
            if df.is_empty():
                continue
            yield df.with_columns(*(pl.struct(pl.col(c).cast(pl.String).alias(key)).struct.json_encode().alias(c)
                                    for c, key in self.wrap.items() if c in df.columns))


#: the suffix of a frame written as Arrow IPC (:func:`write_ipc`) instead of Parquet
IPC = ".arrow"
#: the suffixes of the frame files :func:`read_file` reads
FRAME_SUFFIXES = (".parquet", IPC)


def write_ipc(df: pl.DataFrame, path: str | Path) -> None:
    """``df`` as an lz4-compressed Arrow IPC file (``path`` ends in :data:`IPC`), strings as Arrow string views: a
    scratch file read back once, at once, by the store writer (:class:`Load`). Compressed, not raw: the links of 100k
    chains are 109 MB raw (no dictionary pages, 16-byte decimals and string views) against 15 MB, and writing 109 MB
    into the page cache cost 0.04-0.37 s of system time from one run to the next (0.47 s on the bucket's clock in a
    loaded run), where lz4 costs a steady 0.12 s of CPU; the store path's whole run went from 10.6-11.1 s to
    10.0-10.4 s in three alternating pairs at 100k chains (Parquet's lz4 would cost this process a third more CPU
    again)."""
    df.write_ipc(path, compression="lz4", compat_level=pl.CompatLevel.newest())


def read_file(path: str | Path) -> pl.DataFrame:
    """A frame written as Parquet or (its name ending in :data:`IPC`) as Arrow IPC (:func:`write_ipc`: every chunk as
    written)."""
    if str(path).endswith(IPC):
        return pl.read_ipc(path, memory_map=False, rechunk=False)
    return pl.read_parquet(path)


def file_rows(path: str | Path) -> int:
    """The rows of a Parquet or Arrow IPC file (:func:`read_file`), from its metadata."""
    scan = pl.scan_ipc(path) if str(path).endswith(IPC) else pl.scan_parquet(path)
    return int(scan.select(pl.len()).collect().item())


def bulk_load(engine: Engine, jobs: Sequence[Load], delete: Sequence[str] = (), swap: bool = False) -> int:
    """In one transaction: delete every row of the ``delete`` tables, then append every job's files (``swap``: see
    :class:`BulkWriter`).
    PostgreSQL: ``COPY``; SQLite: ADBC bulk ingest in the helper process (see :func:`export_tables`), or
    this process's sqlite3 for a few rows. Returns the rows written (:class:`BulkWriter` in one go)."""
    with BulkWriter(engine, delete, swap=swap) as writer:
        writer.add(jobs)
        return writer.finish()


def _load_here(engine: Engine, jobs: Sequence[Load], delete: Sequence[str]) -> int:
    """:func:`bulk_load` of a few rows on SQLite: this process's sqlite3, one executemany per file."""
    n = 0
    with engine.begin() as conn:
        for name in delete:
            conn.exec_driver_sql(f'DELETE FROM "{name}"')
        for job in jobs:
            table = job.table
            for df in job.frames():
                out = storage_frame(table, df, "sqlite")
                cols = ", ".join(f'"{c}"' for c in out.columns)
                conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({cols}) VALUES ({", ".join("?" * out.width)})',
                                     out.rows())
                n += out.height
    return n


class _Lite:
    """In the helper process: a connection of ADBC's SQLite driver at its low level, with the cursor methods the bulk
    write uses. Its DB-API module imports pyarrow.dataset and with it pandas (~0.5 s of CPU at each helper's first
    write); this one imports neither: results arrive as Polars frames and frames are bound as Polars hands them over
    (the Arrow C stream interface, strings as Polars' own views)."""

    def __init__(self, path: str) -> None:
        import adbc_driver_manager
        import adbc_driver_sqlite

        self._am = adbc_driver_manager
        self.db = adbc_driver_sqlite.connect(path)
        try:
            self.conn = adbc_driver_manager.AdbcConnection(self.db)  # autocommit, as ADBC connections start
        except BaseException:
            self.db.close()
            raise
        self.rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str) -> None:
        """Run one statement; its result rows (if any) are kept for :meth:`fetchone` / :meth:`fetchall`."""
        st = self._am.AdbcStatement(self.conn)
        try:
            st.set_sql_query(sql)
            handle, _ = st.execute_query()
            self.rows = pl.DataFrame(handle).rows()  # read to the end: the statement has run
        finally:
            st.close()

    def batches(self, sql: str, batch_rows: int) -> Iterator[pl.DataFrame]:
        """The result of one query, batch by batch (batches of ``batch_rows`` rows, filled in C)."""
        import pyarrow as pa

        with self._am.AdbcStatement(self.conn) as st:
            st.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
            st.set_sql_query(sql)
            handle, _ = st.execute_query()
            for batch in pa.RecordBatchReader.from_stream(handle):
                df = pl.from_arrow(batch)
                assert isinstance(df, pl.DataFrame)
                yield df

    def frame(self, sql: str, batch_rows: int) -> pl.DataFrame:
        """The whole result of one query as one frame (filled in C, batches of ``batch_rows`` rows; no pyarrow)."""
        with self._am.AdbcStatement(self.conn) as st:
            st.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
            st.set_sql_query(sql)
            handle, _ = st.execute_query()
            return pl.DataFrame(handle)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows.pop(0) if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self.rows = self.rows, []
        return rows

    def ingest(self, table: str, df: pl.DataFrame) -> int:
        """Append ``df`` to ``table`` (ADBC bulk ingest: a prepared INSERT bound from the frame's Arrow data, in C)."""
        st = self._am.AdbcStatement(self.conn)
        try:
            st.set_options(**{"adbc.ingest.target_table": table, "adbc.ingest.mode": "adbc.ingest.mode.append"})
            st.bind_stream(df)
            return int(st.execute_update())
        finally:
            st.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.db.close()


#: the helper's open bulk write (:func:`_sqlite_begin` .. :func:`_sqlite_end`): connection, cursor, the indexes to
#: rebuild and the rows written so far
_SESSION: dict[str, Any] = {}


def _new(name: str) -> str:
    """The table a swapping bulk write fills in place of ``name`` (:func:`_sqlite_begin`)."""
    return f"{name}__new"


def _sqlite_begin(path: str, delete: Sequence[str], swap: bool = False) -> None:
    """In the helper process: open a bulk write that replaces every row of the ``delete`` tables.

    Without ``swap``: one transaction, committed by :func:`_sqlite_end`; it empties the ``delete`` tables and drops
    their indexes (an emptied table is filled faster without them; :func:`_sqlite_end` builds them in one sort each).

    A ``swap`` (every table appended to is one of ``delete``): each table ``T`` is filled as a fresh table ``T__new`` (``T``'s own ``CREATE TABLE``,
    no index), each append committed on its own and checkpointed at once (the WAL is copied into the database
    bucket by bucket, not all at the end); readers see ``T`` unchanged until :func:`_sqlite_end`, which in one
    transaction drops ``T``, renames ``T__new`` to ``T`` and builds ``T``'s indexes (their own ``CREATE INDEX``),
    so the schema is ``T``'s exactly. Rolled back: the ``__new`` tables are dropped (as are those a killed run
    left)."""
    if _SESSION:  # an earlier write its caller never ended (it died between calls)
        _sqlite_end(False)
    adbc = cur = _Lite(path)  # the transactions are ours: BEGIN IMMEDIATE .. COMMIT
    try:
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        # a larger page cache for the bulk write: fewer dirty pages spilled to the WAL mid-transaction, and the
        # index builds sort in memory (measured: ~15% less CPU for 860k link + allocation rows)
        cur.execute("PRAGMA cache_size=-131072")
        # the index builds at the end (a sort of every key) on two threads: the caller waits for them with the other
        # core idle (at 1M chains 5.4M keys, ~5.6 s of CPU on one thread)
        cur.execute("PRAGMA threads=2")
        # no automatic checkpoint at a commit: a swap's appends checkpoint themselves (:func:`_sqlite_append`), the
        # final commit's is :func:`_sqlite_checkpoint`, in the background while the caller goes on (BulkWriter.settle)
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.execute("BEGIN IMMEDIATE")
    except BaseException:
        cur.close()
        adbc.close()
        raise
    _SESSION.update(adbc=adbc, cur=cur, swap=list(delete) if swap else [], rebuild=[], rows=0)
    try:
        for name in delete:
            if swap:
                cur.execute(f'DROP TABLE IF EXISTS "{_new(name)}"')  # a killed run's
                cur.execute(f"SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{name}'")
                row = cur.fetchone()
                if row is None:
                    raise ValueError(f"no table {name} to replace")
                cur.execute(_renamed(str(row[0]), name, _new(name)))
                continue
            cur.execute(f'DELETE FROM "{name}"')
            cur.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                        f"AND tbl_name = '{name}'")
            for index, sql in cur.fetchall():
                cur.execute(f'DROP INDEX "{index}"')
                _SESSION["rebuild"].append(sql)
        if swap:
            cur.execute("COMMIT")
    except BaseException:
        _sqlite_end(False)
        raise


def _renamed(create: str, name: str, to: str) -> str:
    """``CREATE TABLE name (…)`` (as sqlite_master holds it, quoted or not) for table ``to``."""
    head, paren, rest = create.partition("(")
    if not paren or head.split()[-1].strip('"`[]') != name:
        raise ValueError(f"unexpected schema for {name}: {create[:80]!r}")
    return f'CREATE TABLE "{to}" ({rest}'


def _only_replaced(jobs: Sequence[Load], replaced: Sequence[str]) -> None:
    """A swapping bulk write (either backend) appends only to the tables it replaces."""
    if stray := {j.table.name for j in jobs} - set(replaced):
        raise ValueError(f"a swapping bulk write appends only to the tables it replaces, not {sorted(stray)}")


def _clock() -> tuple[float, float]:
    """Wall clock and this process's CPU seconds (user + system), for :func:`_profile`."""
    return time.perf_counter(), time.process_time()


def _profile(label: str, t: tuple[float, float]) -> tuple[float, float]:
    """The step's clock and CPU seconds (``t``: :func:`_clock` at its start) on stderr when LTC_RECON_PROFILE is set
    (as :class:`reconcile.core._Clock` prints)."""
    now = _clock()
    if os.environ.get("LTC_RECON_PROFILE"):
        print(f"  [bulk write] {label}: {now[0] - t[0]:.2f}s cpu={now[1] - t[1]:.2f}s", file=sys.stderr, flush=True)
    return now


def _sqlite_append(jobs: Sequence[Load]) -> int:
    """In the helper process: append the jobs' files in the open bulk write (a swap: to the ``__new`` tables, in
    a transaction of their own, committed and checkpointed)."""
    t = _clock()
    cur = _SESSION["cur"]
    swap = _SESSION["swap"]
    n = 0
    if swap:
        _only_replaced(jobs, swap)
        cur.execute("BEGIN IMMEDIATE")
    try:
        for job in jobs:
            for df in job.frames():
                out = storage_frame(job.table, df, "sqlite")
                # Polars' own string views bound as they are (the driver reads Arrow string views): no copy of every
                # string into Arrow large strings first (measured: ~20% less CPU for 860k link + allocation rows)
                cur.ingest(_new(job.table.name) if swap else job.table.name, out)
                n += out.height
        if swap:
            cur.execute("COMMIT")
    except BaseException:
        if swap:
            with contextlib.suppress(Exception):
                cur.execute("ROLLBACK")
        raise
    _SESSION["rows"] += n
    t = _profile(f"{n} rows appended", t)
    if swap:
        cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
        cur.fetchall()
        _profile("checkpointed", t)
    return n


def _sqlite_checkpoint(path: str) -> None:
    """In the helper process: copy the WAL a bulk write left into the database (a passive checkpoint: writers
    and readers go on meanwhile; one already under way elsewhere makes it return at once)."""
    t = _clock()
    cur = _Lite(path)
    try:
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
        cur.fetchall()
    finally:
        cur.close()
    _profile("checkpointed", t)


def _sqlite_end(commit: bool) -> int:
    """In the helper process: end the open bulk write; returns the rows it wrote (0 when rolled back or none was
    open). A swap committed: in one transaction the replaced tables are dropped, the ``__new`` ones renamed to
    their names and given their indexes; rolled back: the ``__new`` tables dropped."""
    if not _SESSION:
        return 0
    cur, adbc = _SESSION["cur"], _SESSION["adbc"]
    rows, swap = _SESSION["rows"], _SESSION["swap"]
    try:
        if commit:
            t = _clock()
            if swap:
                cur.execute("BEGIN IMMEDIATE")
            try:
                indexes: list[str] = list(_SESSION["rebuild"])
                for name in swap:
                    cur.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                f"AND tbl_name = '{name}'")
                    indexes += [sql for (sql,) in cur.fetchall()]
                    cur.execute(f'DROP TABLE "{name}"')
                    cur.execute(f'ALTER TABLE "{_new(name)}" RENAME TO "{name}"')
                t = _profile("tables swapped", t)
                for sql in indexes:
                    cur.execute(sql)
                t = _profile("indexes built", t)
            except BaseException:
                cur.execute("ROLLBACK")
                with contextlib.suppress(Exception):
                    for name in swap:
                        cur.execute(f'DROP TABLE IF EXISTS "{_new(name)}"')
                raise
            cur.execute("COMMIT")
            _profile("committed", t)
        else:
            with contextlib.suppress(Exception):
                cur.execute("ROLLBACK")  # an open transaction (not a swap's, whose appends commit on their own)
            with contextlib.suppress(Exception):
                for name in swap:
                    cur.execute(f'DROP TABLE IF EXISTS "{_new(name)}"')
            rows = 0
    finally:
        _SESSION.clear()
        cur.close()
        adbc.close()
    return rows


class BulkWriter:
    """:func:`bulk_load` spread over time: the ``delete`` tables' rows replaced by those each :meth:`add`'s jobs
    append while the caller goes on (a background thread: SQLite's ADBC ingest in the helper process, PostgreSQL's
    ``COPY`` on a connection of its own); :meth:`finish` makes them visible at once. PostgreSQL: one transaction,
    the old rows deleted first, or with ``swap`` copied into a fresh ``<table>__new`` without indexes that
    :meth:`finish` gives the table's indexes, constraints, privileges and sequences and renames into its place
    (:func:`_pg_swap_in`; no per-row index upkeep, no dead rows; :func:`_pg_unswappable` says which tables keep the
    delete). SQLite: one transaction as well (the emptied tables' indexes dropped and rebuilt at :meth:`finish`, in
    one sort each), or with ``swap`` (every job appends to one of the ``delete`` tables;
    :func:`_sqlite_begin`) fresh ``<table>__new`` tables without indexes, each append committed and checkpointed on
    its own (the WAL is copied into the database while the caller goes on, not all at the end), which :meth:`finish`
    puts in the tables' place in one short transaction that also builds their indexes. The commit does not
    checkpoint: a passive checkpoint follows it, which :meth:`finish` waits for or leaves to :meth:`settle`. A failed
    or abandoned write (:meth:`abort`, or an exception in the ``with`` block) is rolled back (a swap's ``__new``
    tables dropped): readers see the old rows or all the new ones.

    A bucketed reconciliation hands it each bucket's links as the bucket finishes, so they are written
    while the next bucket is computed. A small SQLite write (under :data:`SMALL` rows, and ``rows_hint``
    under it too) is held until :meth:`finish` and done by this process's sqlite3 (:func:`_load_here`)."""

    def __init__(self, engine: Engine, delete: Sequence[str] = (), rows_hint: int = 0, swap: bool = False) -> None:
        self.engine = engine
        self.delete = list(delete)
        self.swap = swap  # SQLite: the delete tables replaced by fresh ones (every append is to one of them)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="ltc-bulk-write")
        self.mode = ""  # "" (not started: small jobs held), "pg", "helper"
        self.held: list[Load] = []
        self.held_rows = 0
        self.futures: list[Any] = []
        self.pg: tuple[Connection, Any] | None = None
        self.pg_swapped: list[str] = []  # PostgreSQL: the delete tables filled as fresh tables (see _pg_unswappable)
        self.pg_serial: dict[str, list[tuple[str, str]]] = {}  # PostgreSQL: table -> its serial columns (_pg_serial)
        self.checkpoint: Any = None  # after the commit (a future) until settle(): SQLite's checkpoint
        if _is_pg(engine) or rows_hint >= SMALL:
            self._start()

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is not None:
            self.abort()

    def _start(self) -> None:
        if _is_pg(self.engine):
            self.mode = "pg"
            self.futures.append(self.pool.submit(self._pg_begin))
        else:
            self.mode = "helper"
            path = connectorx_url(self.engine).removeprefix("sqlite://")
            self.futures.append(self.pool.submit(_helper(0).call, _sqlite_begin, path, self.delete,
                                                 self.swap))

    def add(self, jobs: Sequence[Load]) -> None:
        """Append the jobs' files (in the background; their errors surface in :meth:`finish`)."""
        jobs = [j for j in jobs if j.files]
        if not self.mode:
            self.held.extend(jobs)
            self.held_rows += sum(file_rows(f) for j in jobs for f in j.files)
            if self.held_rows < SMALL:
                return
            self._start()
            jobs, self.held = self.held, []
        if not jobs:
            return
        if self.mode == "pg":
            self.futures.append(self.pool.submit(self._pg_append, jobs))
        else:
            self.futures.append(self.pool.submit(_helper(0).call, _sqlite_append, jobs))

    def drain(self) -> None:
        """Wait for the appends handed over so far (their errors raised here, the write still open)."""
        for f in list(self.futures):
            f.result()

    def finish(self, settle: bool = True) -> int:
        """Wait for the appends, commit; the rows written. On SQLite the committed write is then copied from the
        WAL into the database (a checkpoint); ``settle=False`` leaves that running in the background (the rows
        are committed and visible already) until :meth:`settle`, so that the caller's next steps overlap it."""
        try:
            written = sum(f.result() or 0 for f in self.futures)
        except BaseException:
            self.abort()
            raise
        self.futures.clear()
        try:
            if not self.mode:
                return _load_here(self.engine, self.held, self.delete)
            if self.mode == "pg":
                self.pool.submit(self._pg_end, True).result()
                return written
            rows = self.pool.submit(_helper(0).call, _sqlite_end, True).result()
            path = connectorx_url(self.engine).removeprefix("sqlite://")
            self.checkpoint = self.pool.submit(_helper(0).call, _sqlite_checkpoint, path)
            return rows
        finally:
            self.pool.shutdown(wait=False)
            if settle:
                self.settle()

    def settle(self) -> None:
        """Wait for what :meth:`finish` started after the commit (if anything): SQLite's checkpoint. Its failure is no
        failure of the write, which is committed: the next writer's automatic checkpoint copies the WAL then."""
        if self.checkpoint is not None:
            with contextlib.suppress(Exception):
                self.checkpoint.result()
            self.checkpoint = None

    def abort(self) -> None:
        """Roll back (nothing written becomes visible)."""
        for f in self.futures:
            with contextlib.suppress(BaseException):
                f.result()
        self.futures.clear()
        with contextlib.suppress(Exception):
            if self.mode == "pg":
                self.pool.submit(self._pg_end, False).result()
            elif self.mode == "helper":
                self.pool.submit(_helper(0).call, _sqlite_end, False).result()
        self.mode = ""
        self.held.clear()
        self.pool.shutdown()

    # PostgreSQL: one connection, used only by the writer's thread
    def _pg_begin(self) -> None:
        conn = self.engine.connect()
        trans = conn.begin()
        # the transaction waits while the caller computes (a 1M-chain reconciliation's pre-pass: ~25 s before its first
        # COPY): a server's idle_in_transaction_session_timeout would end the session and the run with it
        conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
        self.pg = (conn, trans)
        self.pg_swapped = []
        for name in self.delete:
            if self.swap:
                if (why := _pg_unswappable(conn, name)) is None:
                    _pg_fresh(conn, name)
                    self.pg_swapped.append(name)
                    continue
                _profile(f"{name}: its rows deleted and replaced, not swapped ({why})", _clock())
            conn.exec_driver_sql(f'DELETE FROM "{name}"')

    def _pg_append(self, jobs: Sequence[Load]) -> int:
        assert self.pg is not None
        conn = self.pg[0]
        if self.swap:
            _only_replaced(jobs, self.delete)
        n = 0
        for j in jobs:
            name = j.table.name
            if name not in self.pg_serial:
                self.pg_serial[name] = _pg_serial(conn, name)
            for df in j.frames():
                for col, seq in self.pg_serial[name]:
                    if col not in df.columns:
                        df = df.with_columns(_pg_ids(conn, seq, df.height).alias(col))
                n += copy_frame(conn, j.table, df, into=_new(name) if name in self.pg_swapped else None)
        return n

    def _pg_end(self, commit: bool) -> int:
        if self.pg is None:
            return 0
        conn, trans = self.pg
        self.pg = None
        try:
            if commit:
                t = _clock()
                for name in self.pg_swapped:
                    _pg_swap_in(conn, name)
                if self.swap:  # a fresh table has no statistics yet, a replaced one stale ones: gathered before the commit
                    for name in self.delete:
                        if name not in self.pg_swapped:  # a swapped-in one's were, before its swap (_pg_swap_in)
                            conn.exec_driver_sql(f'ANALYZE "{name}"')
                trans.commit()
                _profile("swapped in (indexes built), committed", t)
            else:
                trans.rollback()  # a swap's fresh tables go with it
        finally:
            conn.close()
        return 0


#: PostgreSQL: how long a swap waits for readers of the table it replaces (a long report query holding it) before
#: it copies its rows into the table instead (:func:`_pg_swap_in`); new readers queue behind a waiting swap
SWAP_LOCK_WAIT_MS = 3000

#: what a swap could not carry over to the new table, as (reason, condition on pg_class ``c``)
_PG_UNSWAPPABLE = (
    ("not a plain table", "c.relkind <> 'r' OR EXISTS (SELECT 1 FROM pg_inherits WHERE c.oid IN (inhrelid, inhparent))"),
    ("owned by another role", "NOT pg_has_role(c.relowner, 'USAGE')"),
    ("no CREATE privilege on its schema", "NOT has_schema_privilege(c.relnamespace, 'CREATE')"),
    ("a view or rule reads it", "EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass "
                                "AND d.objid = r.oid WHERE d.refobjid = c.oid AND r.ev_class <> c.oid)"),
    ("a foreign key", "EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND c.oid IN (conrelid, confrelid))"),
    ("a trigger", "EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal)"),
    ("row security", "c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = c.oid)"),
    ("a publication", "EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = c.oid)"),
    ("column privileges", "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid AND attacl IS NOT NULL)"),
    ("an identity column", "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid AND attidentity <> '')"),
)


def _pg_serial(conn: Connection, name: str) -> list[tuple[str, str]]:
    """PostgreSQL: the columns of ``name`` that a sequence of step 1, not cycling, numbers (a serial's: owned by the
    column, its default ``nextval`` of it; not an identity column) which this role may set (a role that may only take
    its values leaves them to the default), with their sequence. :func:`_pg_ids` numbers them for ``COPY``: the
    default calls ``nextval`` once a row (measured with psql: ``COPY`` of 750k links 1.43 s that way, 1.28 s
    numbered)."""
    return [(str(col), str(seq)) for col, seq in conn.exec_driver_sql(
        "SELECT a.attname, s.seqrelid::regclass::text FROM pg_attribute a "
        "JOIN pg_depend d ON d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND d.refclassid = 'pg_class'::regclass "
        "AND d.classid = 'pg_class'::regclass AND d.deptype = 'a' "
        "JOIN pg_sequence s ON s.seqrelid = d.objid "
        "JOIN pg_attrdef f ON f.adrelid = a.attrelid AND f.adnum = a.attnum "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity = '' "
        "AND pg_get_expr(f.adbin, f.adrelid) = format('nextval(%%L::regclass)', s.seqrelid::regclass) "
        "AND s.seqincrement = 1 AND NOT s.seqcycle AND has_sequence_privilege(s.seqrelid, 'UPDATE') "
        "ORDER BY a.attnum",
        (f'"{name}"',)).all()]


def _pg_ids(conn: Connection, seq: str, n: int) -> pl.Expr:
    """PostgreSQL: ``n`` consecutive values of the sequence ``seq`` taken at once (its next value, then the sequence
    set past the block: the next ``nextval`` anywhere goes on after it), as a column of ``n`` rows. The block is
    not atomic against other sessions' ``nextval`` meanwhile: the tables written this way (the links) have one
    writer, the reconciliation, under its stage lock."""
    first = int(conn.exec_driver_sql("SELECT nextval(%s::regclass)", (seq,)).scalar_one())
    if n > 1:
        conn.exec_driver_sql("SELECT setval(%s::regclass, %s)", (seq, first + n - 1))
    return pl.int_range(first, first + n, dtype=pl.Int64)


def _pg_unswappable(conn: Connection, name: str) -> str | None:
    """Why ``name`` cannot be swapped for a fresh table without losing something a DBA set on it (the first
    reason), or None. Such a table has its rows deleted and replaced instead, as before swaps."""
    reasons = ", ".join(f"CASE WHEN {cond} THEN '{why}' END" for why, cond in _PG_UNSWAPPABLE)
    got = conn.exec_driver_sql(f"SELECT COALESCE({reasons}) FROM pg_class c WHERE c.oid = %s::regclass",
                               (f'"{name}"',)).scalar()
    return None if got is None else str(got)


def _pg_fresh(conn: Connection, name: str) -> None:
    """PostgreSQL, a swapping bulk write: ``name__new``, empty, in the write's transaction: ``name``'s columns,
    defaults, NOT NULL and CHECK constraints, comments, storage and statistics objects, but no index (the appends
    fill it faster; :func:`_pg_swap_in` builds them once). Readers see ``name`` untouched, and no dead rows are left
    in it (a ``DELETE`` of the last run's rows left one per row until a vacuum)."""
    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{_new(name)}"')  # a crashed server's, never committed: defensive
    conn.exec_driver_sql(f'CREATE TABLE "{_new(name)}" (LIKE "{name}" INCLUDING ALL EXCLUDING INDEXES)')


def _pg_swap_in(conn: Connection, name: str) -> None:
    """PostgreSQL, at the end of a swapping bulk write (its transaction): ``name__new`` given ``name``'s primary
    key, unique constraints and indexes (one sort each, under temporary names), its privileges and its
    sequences (a serial id goes on counting), and its statistics (ANALYZE: the planner's, committed with the swap,
    not gathered after it while the caller waits or a first report is planned without them); then ``name`` dropped and
    ``name__new`` renamed to it, the indexes and constraints to their names. ``name`` is locked only from the drop to
    the commit, just after. If readers hold
    ``name`` for longer than :data:`SWAP_LOCK_WAIT_MS`, the new rows are copied into it instead (its old rows
    deleted, readers never blocked) and ``name__new`` dropped."""
    import sqlalchemy as sa

    new = _new(name)

    def rows(sql: str, *args: Any) -> list[Any]:
        return list(conn.exec_driver_sql(sql, args).all())

    temp: list[tuple[str, str]] = []  # (temporary name, final name)
    for con, definition in rows(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype IN ('p', 'u', 'x') ORDER BY contype, conname", f'"{name}"'):
        conn.exec_driver_sql(f'ALTER TABLE "{new}" ADD CONSTRAINT "{_tmp_name(con)}" {definition}')
        temp.append((_tmp_name(con), con))
    for index, quoted, definition in rows(
            "SELECT c.relname, quote_ident(c.relname), pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = "
            "i.indexrelid) ORDER BY c.relname", f'"{name}"'):
        head, on, rest = definition.partition(f"{quoted} ON ")  # CREATE [UNIQUE] INDEX <name> ON <table> USING …
        _target, using, tail = rest.partition(" USING ")
        if not on or not using:
            raise ValueError(f"unexpected index definition on {name}: {definition[:120]!r}")
        conn.exec_driver_sql(f'{head}"{_tmp_name(index)}" ON "{new}" USING {tail}')
        temp.append((_tmp_name(index), index))
    for grantee, privilege in rows(
            "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_schema = current_schema() AND table_name = %s", name):
        to = "PUBLIC" if grantee == "PUBLIC" else f'"{grantee}"'
        conn.exec_driver_sql(f'GRANT {privilege} ON "{new}" TO {to}')
    # the columns in order, each with the sequence it owns (a serial id's), in one query
    columns = rows("SELECT attname, pg_get_serial_sequence(%s, attname) FROM pg_attribute WHERE attrelid = %s::regclass "
                   "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", f'"{name}"', f'"{name}"')
    conn.exec_driver_sql(f'ANALYZE "{new}"')  # kept by the table under its new name
    swap = conn.begin_nested()
    try:
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(SWAP_LOCK_WAIT_MS)}")
        conn.exec_driver_sql(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        swap.rollback()  # readers keep the table: the rows go into it
        cols = ", ".join(f'"{c}"' for c, _seq in columns)
        conn.exec_driver_sql(f'DELETE FROM "{name}"')
        conn.exec_driver_sql(f'INSERT INTO "{name}" ({cols}) SELECT {cols} FROM "{new}"')
        conn.exec_driver_sql(f'DROP TABLE "{new}"')
        conn.exec_driver_sql(f'ANALYZE "{name}"')
        _profile(f"{name}: held by readers over {SWAP_LOCK_WAIT_MS} ms, its rows replaced instead of swapped", _clock())
        return
    conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
    for column, seq in columns:
        if seq is not None:
            conn.exec_driver_sql(f'ALTER SEQUENCE {seq} OWNED BY "{new}"."{column}"')
    conn.exec_driver_sql(f'DROP TABLE "{name}"')
    conn.exec_driver_sql(f'ALTER TABLE "{new}" RENAME TO "{name}"')
    for tmp, final in temp:
        conn.exec_driver_sql(f'ALTER INDEX "{tmp}" RENAME TO "{final}"')  # a constraint's index: the constraint too
    swap.commit()


def _tmp_name(name: str) -> str:
    """A temporary index or constraint name for ``name`` while both tables exist (63 bytes at most)."""
    import hashlib

    tail = "__new"
    if len(name) + len(tail) <= 63:
        return name + tail
    return f"{name[:48]}_{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}{tail}"


def write_frames(engine: Engine, frames: Mapping[sa.Table, pl.DataFrame], delete: Sequence[str] = ()) -> int:
    """Append in-memory frames (table -> frame) in one transaction (:func:`bulk_load`)."""
    with scratch_dir("ltc-write-") as tmp:
        jobs = []
        for i, (table, df) in enumerate(frames.items()):
            path = str(Path(tmp) / f"{i}.parquet")
            df.write_parquet(path, compression="uncompressed")
            jobs.append(Load(shape(table), (path,)))
        return bulk_load(engine, jobs, delete)


def copy_frame(conn: Connection, table: Tableish, df: pl.DataFrame, chunk: int = 50_000, into: str | None = None) -> int:
    """PostgreSQL: ``COPY table (cols) FROM STDIN (FORMAT csv)`` in ``conn``'s transaction (``into``: another table
    of the same columns)."""
    out = storage_frame(table, df, "postgresql")
    cols = ", ".join(f'"{c}"' for c in out.columns)
    raw: Any = conn.connection.dbapi_connection  # psycopg's connection: COPY is psycopg's own API
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f'COPY "{into or table.name}" ({cols}) FROM STDIN (FORMAT csv)') as cp:
        for i in range(0, out.height, chunk):
            buf = io.BytesIO()
            out.slice(i, chunk).write_csv(buf, include_header=False, null_value="", quote_style="necessary",
                                          datetime_format="%Y-%m-%d %H:%M:%S%.6f%:z")
            cp.write(buf.getbuffer())
    return out.height


if __name__ == "__main__":
    _serve()
