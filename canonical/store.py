"""The store: raw landing, stream state, runs, quarantine, lineage and canonical upserts.

Guarantees (tested on SQLite and PostgreSQL):

* Raw upsert is idempotent on (system, object, source id). A payload whose content hash is
  unchanged writes nothing.
* :meth:`Store.commit_page` writes a page of raw records, its quarantined records and the stream's
  new cursor in **one transaction**: after a crash either all of them are there or none is.
* Everything is bulk: one ``SELECT`` of known hashes per page and object, then one
  ``INSERT ... ON CONFLICT DO UPDATE`` executemany for the changed rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import chain
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from canonical import db, model, tables
from canonical.tables import quarantine, raw_record, run, stream_state

log = logging.getLogger("canonical.store")
KEEP_CURSOR: Any = object()  # commit_page(..., cursor=KEEP_CURSOR): land records, leave the cursor as it is
_IN_CHUNK = 500
T = TypeVar("T")
INTERRUPTED = "interrupted: the process running it ended before it finished (found at the next start)"


def now() -> datetime:
    return datetime.now(UTC)


def content_hash(payload: Any, deleted: bool = False, ignore: Sequence[str] = ()) -> str:
    """A 128-bit hash of the canonical JSON of ``payload`` (and the deleted flag), leaving out the
    dotted paths of ``ignore``."""
    return _digest(db.dumps(without(payload, ignore) if ignore else payload), deleted)


def without(payload: Any, paths: Sequence[str]) -> Any:
    """``payload`` without the dotted ``paths`` (``"properties.hs_lastmodifieddate"``); a copy only
    of the levels it changes."""
    if not isinstance(payload, Mapping):
        return payload
    top: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        head, _, rest = path.partition(".")
        top[head].append(rest)
    out = {}
    for key, value in payload.items():
        rests = top.get(key)
        if rests is None:
            out[key] = value
        elif all(rests):  # only deeper paths under this key
            out[key] = without(value, rests)
    return out


def _digest(blob: bytes, deleted: bool) -> str:
    h = hashlib.blake2b(blob, digest_size=16)
    if deleted:
        h.update(b"\x00deleted")
    return h.hexdigest()


# The landing statement is the hot path of every sync, so it is sent at the driver level with
# values prepared once (JSON serialised once, for both the hash and the column), instead of
# through SQLAlchemy's per-row type processing (three times slower here).
_LAND_COLUMNS = "system, object, source_id, payload, content_hash, source_updated_at, fetched_at, deleted, run_id"
_LAND_UPDATE = """ON CONFLICT (system, object, source_id) DO UPDATE SET
  payload = excluded.payload, content_hash = excluded.content_hash,
  source_updated_at = excluded.source_updated_at, fetched_at = excluded.fetched_at,
  deleted = excluded.deleted, run_id = excluded.run_id
WHERE raw_record.content_hash <> excluded.content_hash"""
_LAND_SQL = {
    "sqlite": f"INSERT INTO raw_record ({_LAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {_LAND_UPDATE}",
    "postgresql": f"INSERT INTO raw_record ({_LAND_COLUMNS}) "
    f"VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s) {_LAND_UPDATE}",
}
# Each landed version waits to be mapped: its raw_pending row, with the hash of this version (one
# statement per page and object: {source id: hash} as one JSON object / two array parameters). The raw
# ids are found in the unique index (system, object, source_id), which holds them: no raw row is read.
_PENDING_SQL = {
    # CROSS JOIN: the page's ids outside, one index look-up each (else SQLite may scan the object's rows)
    "sqlite": "INSERT INTO raw_pending (system, raw_id, content_hash) "
    "SELECT r.system, r.id, k.value FROM json_each(?) AS k CROSS JOIN raw_record AS r "
    "WHERE r.system = ? AND r.object = ? AND r.source_id = k.key "
    "ON CONFLICT (system, raw_id) DO UPDATE SET content_hash = excluded.content_hash",
    "postgresql": "INSERT INTO raw_pending (system, raw_id, content_hash) "
    "SELECT r.system, r.id, k.h FROM unnest(%s::text[], %s::text[]) AS k(id, h) "
    "JOIN raw_record r ON r.system = %s AND r.object = %s AND r.source_id = k.id "
    "ON CONFLICT (system, raw_id) DO UPDATE SET content_hash = excluded.content_hash",
}
_PENDING_ONE_SQL = ("INSERT INTO raw_pending (system, raw_id, content_hash) SELECT system, id, ? FROM raw_record "
                    "WHERE system = ? AND object = ? AND source_id = ? "
                    "ON CONFLICT (system, raw_id) DO UPDATE SET content_hash = excluded.content_hash")


def _known_hashes(conn: Connection, system: str, obj: str, ids: list[str], *, stamps: bool = False
                  ) -> dict[str, Any]:
    """Stored content hashes of these source ids (one query per chunk; one array on PostgreSQL);
    with ``stamps``, (hash, source_updated_at) pairs."""
    c = raw_record.c
    known: dict[str, Any] = {}
    if conn.dialect.name == "postgresql":
        # Join against one array parameter: planned once, and a hash or index join whatever the
        # table statistics say (an IN list or ANY() on a not-yet-analysed table is a slow seq scan).
        rows = conn.exec_driver_sql(
            f"SELECT r.source_id, r.content_hash{', r.source_updated_at' if stamps else ''} "
            "FROM unnest(%s::text[]) AS k(id) "
            "JOIN raw_record r ON r.system = %s AND r.object = %s AND r.source_id = k.id",
            (ids, system, obj),
        )
        known.update((row[0], tuple(row[1:]) if stamps else row[1]) for row in rows)
        return known
    if stamps:
        cols = [c.source_id, c.content_hash, c.source_updated_at]
        for chunk in _chunks(ids, _IN_CHUNK):
            rows = conn.execute(sa.select(*cols).where(c.system == system, c.object == obj, c.source_id.in_(chunk)))
            known.update((row[0], tuple(row[1:])) for row in rows)
        return known
    # the hashes alone are plain text: read at the driver level (no statement to build per page)
    for chunk in _chunks(ids, _IN_CHUNK):
        known.update(conn.exec_driver_sql(
            "SELECT source_id, content_hash FROM raw_record WHERE system = ? AND object = ? "
            f"AND source_id IN ({', '.join('?' * len(chunk))})", (system, obj, *chunk)).fetchall())
    return known


# A record whose content hash leaves out stamps (``RawRecord.hash_ignore``) and came back with only
# those changed: its payload and timestamp are refreshed, it is not re-mapped.
_TOUCH_SQL = {
    "sqlite": "UPDATE raw_record SET payload = ?, source_updated_at = ?, fetched_at = ?, run_id = ? "
    "WHERE system = ? AND object = ? AND source_id = ?",
    "postgresql": "UPDATE raw_record r SET payload = u.p::jsonb, source_updated_at = u.t, fetched_at = %s, "
    "run_id = %s FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS u(id, p, t) "
    "WHERE r.system = %s AND r.object = %s AND r.source_id = u.id",
}


def _touch(conn: Connection, system: str, obj: str, touched: list[tuple[str, bytes, datetime | None]],
           fetched: datetime, run_id: str | None) -> None:
    if conn.dialect.name == "postgresql":
        ids, blobs, stamps = zip(*touched, strict=True)
        conn.exec_driver_sql(_TOUCH_SQL["postgresql"], (fetched, run_id, list(ids), [b.decode() for b in blobs],
                                                        list(stamps), system, obj))
        return
    def ts(v: datetime | None) -> Any:
        return None if v is None else _sqlite_instant(v)
    conn.exec_driver_sql(_TOUCH_SQL["sqlite"], [(blob.decode(), ts(updated), ts(fetched), run_id, system, obj, sid)
                                                for sid, blob, updated in touched])


def _land(
    conn: Connection,
    system: str,
    obj: str,
    changed: list[tuple[str, bytes, str, datetime | None, bool]],
    fetched: datetime,
    run_id: str | None,
) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        def ts(v: datetime | None) -> Any:
            if v is None:
                return None
            if v.tzinfo is UTC:  # the connectors' instants (parse_instant): the text without "+00:00"
                return v.isoformat(" ", "microseconds")[:-6]
            return _sqlite_instant(v)
    else:
        def ts(v: datetime | None) -> Any:
            return None if v is None else model.utc(v)
    fetched_v = ts(fetched)
    params = [
        (system, obj, sid, blob.decode(), digest, ts(updated), fetched_v, deleted, run_id)
        for sid, blob, digest, updated, deleted in changed
    ]
    conn.exec_driver_sql(_LAND_SQL[dialect], params)
    if dialect == "sqlite":
        versions = orjson.dumps({sid: digest for sid, _blob, digest, _upd, _del in changed}).decode()
        if conn.exec_driver_sql(_PENDING_SQL[dialect], (versions, system, obj)).rowcount != len(changed):
            # an id that JSON text does not carry through intact (a NUL): each one as a parameter
            conn.exec_driver_sql(_PENDING_ONE_SQL, [(digest, system, obj, sid) for sid, _b, digest, _u, _d in changed])
    else:
        sids, digests = [c[0] for c in changed], [c[2] for c in changed]
        conn.exec_driver_sql(_PENDING_SQL[dialect], (sids, digests, system, obj))


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One source record as the vendor returned it."""

    object: str
    source_id: str
    payload: Mapping[str, Any]
    source_updated_at: datetime | None = None
    deleted: bool = False
    hash_ignore: tuple[str, ...] = ()  # dotted paths the content hash leaves out (see ``content_hash``)


_Prepared = dict[str, dict[str, tuple["RawRecord", bytes, str]]]  # object -> source id -> (record, JSON, hash)


def _prepared(records: Iterable[RawRecord]) -> _Prepared:
    """The page's records by object and id (a re-read row: the last version wins), each with its
    stored JSON and content hash."""
    by_object: _Prepared = defaultdict(dict)
    for rec in records:
        blob = db.dumps(rec.payload)
        digest = _digest(db.dumps(without(rec.payload, rec.hash_ignore)) if rec.hash_ignore else blob, rec.deleted)
        by_object[rec.object][str(rec.source_id)] = (rec, blob, digest)
    return by_object


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that could not be accepted, and why; it goes to quarantine, the run goes on."""

    object: str
    reason: str
    source_id: str | None = None
    payload: Any = None
    field: str | None = None
    stage: str = "fetch"


@dataclass(slots=True)
class PageResult:
    written: int = 0
    unchanged: int = 0
    quarantined: int = 0
    touched: int = 0  # unchanged but for the ignored paths: payload refreshed, not re-mapped
    written_ids: list[int] = field(default_factory=list)


def quarantine_fingerprint(system: str, r: Rejected) -> str:
    """What makes two rejections the same one (see :meth:`Store.add_quarantine`)."""
    key = "\x1f".join((r.stage, system, r.object, r.source_id or "", r.field or "", r.reason))
    return _digest(key.encode() + b"\x1f" + db.dumps(r.payload), False)


def _insert_for(conn: Connection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_LINEAGE_SQLITE = "INSERT INTO lineage (entity, canonical_id, raw_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
_UPSERT_CACHE: dict[tuple[str, str], tuple[str, Any]] = {}


# ``_sqlite_instant``'s text of a UTC instant (and a date's ISO text), as the bulk upserts write them in line: from
# the fields' digits looked up in these tables (a ``%02d`` format of each field, or ``isoformat``, costs the writer
# half as much again: callgrind, 12.1k -> 8.0k instructions per instant)
_YEAR4 = tuple(f"{i:04d}" for i in range(10_000))
_DIGITS2 = tuple(f"{i:02d}" for i in range(100))
_SQLITE_DATE_TEXT = "f'{Y4[x.year]}-{D2[x.month]}-{D2[x.day]}'"
_SQLITE_INSTANT_TEXT = ("f'{Y4[x.year]}-{D2[x.month]}-{D2[x.day]} {D2[x.hour]}:{D2[x.minute]}:{D2[x.second]}."
                        "{D2[(us := x.microsecond) // 10000]}{D2[us // 100 % 100]}{D2[us % 100]}'")


def _sqlite_instant(v: datetime) -> str:
    """An aware instant as SQLAlchemy stores DateTime on SQLite (naive UTC text with microseconds,
    ``%Y-%m-%d %H:%M:%S.%f``), so that the ORM reads these rows back."""
    return model.utc(v).replace(tzinfo=None).isoformat(" ", "microseconds")


# The stage's parameter of a NULL: SQLite binds a NaN as NULL, and Python's sqlite3 binds a float directly,
# where None goes through its adaptation lookup first (a tenfold cost per value: a third of a batch's values)
_NULL = float("nan")


def _converter(column: sa.Column[Any], dialect: str) -> Any:
    """A value -> driver parameter function for one column (mirrors the column's type processing)."""
    ctype = column.type
    if isinstance(ctype, tables.Amount):
        def amount(v: Any) -> Any:
            if type(v) is Decimal:
                return v if dialect == "postgresql" else str(v)
            if v is None:
                return None
            if isinstance(v, float | bool) or not isinstance(v, Decimal | int):
                raise TypeError(f"{column.name}: amount columns take Decimal, not {type(v).__name__}: {v!r}")
            return v if dialect == "postgresql" else str(v)
        return amount
    if isinstance(ctype, tables.UTCDateTime):
        if dialect == "sqlite":
            return lambda v: None if v is None else _sqlite_instant(v)
        return lambda v: None if v is None else model.utc(v)
    if isinstance(ctype, sa.Date):
        return (lambda v: None if v is None else v.isoformat()) if dialect == "sqlite" else (lambda v: v)
    if isinstance(ctype, sa.JSON) or column.name == "attributes":
        return lambda v: None if v is None else db.dumps(v).decode()
    if isinstance(ctype, sa.Boolean):
        return lambda v: None if v is None else bool(v)
    return None  # sent as is


def _inline(column: sa.Column[Any], dialect: str, read: str, conv: str, null: str = "x") -> str:
    """The parameter expression of one column: the common case (a Decimal, a UTC datetime, empty
    attributes) in line, anything else through the column's converter ``conv``, which checks it.
    ``null``: the parameter of a missing value (None)."""
    ctype = column.type
    head = f"{null} if (x := {read}) is None"
    if isinstance(ctype, tables.Amount):
        return f"({head} else x if type(x) is Decimal else {conv}(x))" if dialect == "postgresql" \
            else f"({head} else str(x) if type(x) is Decimal else {conv}(x))"
    if isinstance(ctype, tables.UTCDateTime):
        if dialect == "postgresql":
            return f"({head} or (type(x) is datetime and x.tzinfo is UTC) else {conv}(x))"
        # in UTC the fields are the naive instant's: formatted as ``_sqlite_instant`` writes it (isoformat
        # of an aware datetime costs twice as much: it asks the zone for its offset)
        return f"({head} else {_SQLITE_INSTANT_TEXT} if type(x) is datetime and x.tzinfo is UTC else {conv}(x))"
    if isinstance(ctype, sa.JSON) or column.name == "attributes":
        return f"({head} else '{{}}' if type(x) is dict and not x else {conv}(x))"
    if isinstance(ctype, sa.Boolean):
        return f"({head} else x if type(x) is bool else bool(x))"
    if isinstance(ctype, sa.Date) and dialect == "sqlite":
        return f"({head} else {_SQLITE_DATE_TEXT} if type(x) is date else {conv}(x))"
    return f"{conv}({read})" if null == "x" else f"({null} if (x := {conv}({read})) is None else x)"


def _row_params(table: sa.Table, dialect: str, *, flat: bool = False) -> Any:
    """A generated ``rows -> [driver parameter tuple]`` function: one list comprehension per table,
    the usual values converted in line (no call per value), the rest through the column's converter.
    Rows that have every column as a key (the mapping's rows do) are read by subscript; others by
    ``get`` (a missing column is NULL). ``flat`` (SQLite's stage): ``rows -> [every value of row 1, of row 2,
    ...]``, the multi-row statements' parameters without a tuple per row to build and flatten again, and each
    NULL as :data:`_NULL`."""
    env: dict[str, Any] = {"Decimal": Decimal, "datetime": datetime, "date": date, "UTC": UTC, "Y4": _YEAR4,
                           "D2": _DIGITS2}
    fast, slow = [], []
    null = "x"
    if flat:
        null, env["NULL"] = "NULL", _NULL
    for i, c in enumerate(table.columns):
        conv = _converter(c, dialect)
        if conv is None:
            if null == "x":
                fast.append(f"r[{c.name!r}]")
                slow.append(f"r.get({c.name!r})")
            else:
                fast.append(f"({null} if (x := r[{c.name!r}]) is None else x)")
                slow.append(f"({null} if (x := r.get({c.name!r})) is None else x)")
            continue
        env[f"c{i}"] = conv
        fast.append(_inline(c, dialect, f"r[{c.name!r}]", f"c{i}", null))
        slow.append(_inline(c, dialect, f"r.get({c.name!r})", f"c{i}", null))
    if flat:  # one list of every row's values in turn (no tuple kept per row)
        src = (f"def params(rows):\n"
               f"    out = []\n"
               f"    try:\n"
               f"        for r in rows:\n"
               f"            out += ({', '.join(fast)},)\n"
               f"    except KeyError:\n"
               f"        out = []\n"
               f"        for r in rows:\n"
               f"            out += ({', '.join(slow)},)\n"
               f"    return out\n")
    else:
        src = (f"def params(rows):\n"
               f"    try:\n"
               f"        return [({', '.join(fast)},) for r in rows]\n"
               f"    except KeyError:\n"
               f"        return [({', '.join(slow)},) for r in rows]\n")
    exec(compile(src, f"<{'stage' if flat else 'upsert'} {table.name}>", "exec"), env)
    return env["params"]


def _upsert_statement(table: sa.Table, dialect: str) -> tuple[str, Any]:
    key = (table.name, dialect)
    if key not in _UPSERT_CACHE:
        mark = "?" if dialect == "sqlite" else "%s"
        values = ", ".join(
            f"{mark}::jsonb" if dialect == "postgresql" and (isinstance(c.type, sa.JSON) or c.name == "attributes")
            else mark
            for c in table.columns
        )
        sql = f'INSERT INTO "{table.name}" ({_column_list(table)}) VALUES ({values}) {_on_conflict(table)}'
        _UPSERT_CACHE[key] = (sql, _row_params(table, dialect))
    return _UPSERT_CACHE[key]


def _column_list(table: sa.Table) -> str:
    return ", ".join(f'"{c.name}"' for c in table.columns)


def _on_conflict(table: sa.Table) -> str:
    """The upserts' conflict clause: a row of an id already stored replaces every other column."""
    updates = ", ".join(f'"{c.name}" = excluded."{c.name}"' for c in table.columns if c.name != "id")
    return f"ON CONFLICT (id) DO UPDATE SET {updates}"


# SQLite: rows go as multi-row ``VALUES`` statements. The work of one statement runs in one
# ``sqlite3_step`` without the GIL; ``executemany`` takes the GIL back after every row, which a busy
# mapping thread makes wait up to a switch interval each time (the two threads then take turns
# instead of overlapping). Statements have one of a few sizes, so that each is prepared once and
# found in the connection's statement cache; at most _SQLITE_VARIABLES parameters each (the lowest
# limit a SQLite build may have). At most 128 rows: preparing a statement costs about as much per row as
# running it, and each connection that writes (a mapping share's writer keeps one) prepares every size of
# every table it stages once: with 1024 rows that was ~7% of the mapping stage's instructions over 60k
# records (callgrind, one process), under 3% with 256; 128 saved ~0.6% more and 0.06 CPU s per 200k
# records (5 alternating pairs; the extra GIL hand-backs did not show in wall time).
_SQLITE_ROWS = (128, 32, 8, 2, 1)
_SQLITE_VARIABLES = 32766
_MULTI_CACHE: dict[tuple[str, int], str] = {}


def _multi_row(sql: str, rows: int) -> str:
    """``sql`` (an ``INSERT ... VALUES (?, ...) [ON CONFLICT ...]`` of one row) for ``rows`` rows."""
    key = (sql, rows)
    if key not in _MULTI_CACHE:
        head, rest = sql.split(" VALUES (", 1)
        one, tail = rest.split(")", 1)
        _MULTI_CACHE[key] = f"{head} VALUES {', '.join([f'({one})'] * rows)}{tail}"
    return _MULTI_CACHE[key]


def _sqlite_statements(sql: str, params: Sequence[tuple[Any, ...]]) -> list[tuple[str, tuple[Any, ...]]]:
    """The one-row insert ``sql`` for every parameter tuple, as multi-row statements with their flat
    parameters, in order (a later row of the same key wins, as with one statement per row)."""
    if not params:
        return []
    flat = list(chain.from_iterable(params))
    return [(stmt, tuple(values)) for stmt, values in _flat_statements(sql, len(params[0]), flat)]


def _flat_statements(sql: str, width: int, flat: list[Any]) -> Iterator[tuple[str, list[Any]]]:
    """The one-row insert ``sql`` for the rows of ``width`` values in turn in ``flat``, as multi-row statements
    of the sizes in :data:`_SQLITE_ROWS` with their parameters, in order."""
    i, n = 0, len(flat) // width if width else 0
    for size in _SQLITE_ROWS:
        if size * width > _SQLITE_VARIABLES:
            continue
        while n - i >= size:
            yield _multi_row(sql, size), flat[i * width : (i + size) * width]
            i += size


Statements = list[tuple[str, Any]]
"""Driver-level statements with their parameters, built ahead of the transaction that runs them."""

# SQLite: a writer that takes turns with others (:meth:`Store.write_turn`) stages its rows before its turn, in
# an in-memory database attached to its connection (every value bound, every record built there, no lock on
# the store taken), and in its turn copies each table's rows in with one ``INSERT ... SELECT``: the turn holds
# only the b-tree work. Stage tables have no declared types: values reach the store's columns as bound.
_STAGE = "ltc_stage"
_STAGE_LINEAGE = ('INSERT INTO main.lineage (entity, canonical_id, raw_id) SELECT ?, id, raw_id FROM {stage}."{table}" '
                  "WHERE raw_id IS NOT NULL ON CONFLICT DO NOTHING")
_STAGE_CACHE: dict[str, tuple[str, str, str]] = {}  # table -> (create, fill, copy in)


def _stage_sql(table: sa.Table) -> tuple[str, str, str]:
    """The statements that stage rows of ``table``: create the stage table, fill it (one row), copy it into the
    store's table (the store's upsert, :func:`_upsert_statement`, reading the stage)."""
    if table.name not in _STAGE_CACHE:
        stage = f'{_STAGE}."{table.name}"'
        cols = _column_list(table)
        _STAGE_CACHE[table.name] = (
            f"CREATE TABLE IF NOT EXISTS {stage} ({cols})",
            f"INSERT INTO {stage} VALUES ({', '.join('?' for _ in table.columns)})",
            # WHERE true: SQLite's parser tells the upsert's ON CONFLICT from a join's ON by it
            f'INSERT INTO main."{table.name}" ({cols}) SELECT * FROM {stage} WHERE true {_on_conflict(table)}',
        )
    return _STAGE_CACHE[table.name]


_STAGE_PARAMS: dict[str, Any] = {}  # table -> its rows' flat parameters (:func:`_row_params`)


def _stage_params(table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    if table.name not in _STAGE_PARAMS:
        _STAGE_PARAMS[table.name] = _row_params(table, "sqlite", flat=True)
    return _STAGE_PARAMS[table.name](rows)


def _staged(conn: Connection, tables_rows: Sequence[tuple[sa.Table, list[Any]]]) -> Statements:
    """Stage each ``(table, flat parameters)`` (:func:`_stage_params`) on ``conn`` (committed in the attached
    in-memory database only); the statements that copy them into the store, in order."""
    if conn.in_transaction():  # the staging's commit would commit it
        raise RuntimeError("rows are staged on a connection outside any transaction")
    record = conn.connection
    raw: Any = record.dbapi_connection
    if not record.info.get(_STAGE):  # once per database connection, outside any transaction
        raw.execute(f"ATTACH DATABASE ':memory:' AS {_STAGE}")
        # every entity's stage table at once: a table created later changes the stage's schema, and SQLite
        # then prepares every statement cached on the connection that reads the stage again
        for table in tables.entity_tables.values():
            raw.execute(_stage_sql(table)[0])
        raw.commit()
        record.info[_STAGE] = True
    out: Statements = []
    try:
        for table, params in tables_rows:
            create, fill, copy = _stage_sql(table)
            raw.execute(create)
            raw.execute(f'DELETE FROM {_STAGE}."{table.name}"')  # what an earlier batch (or a failed try) left
            for sql, flat in _flat_statements(fill, len(table.columns), params):
                raw.execute(sql, flat)
            out.append((copy, ()))
        raw.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # a lost connection: the error that says so is the one raised
            raw.rollback()
        raise
    return out


def run_statements(conn: Connection, statements: Statements) -> None:
    """Run statements built ahead (:meth:`Store.upsert_statements`) on ``conn``, in order."""
    for sql, params in statements:
        conn.exec_driver_sql(sql, params)


# PostgreSQL: rows go as one column array per column (``INSERT ... SELECT FROM unnest(...)``):
# psycopg's executemany costs a round of Python work per row, and long multi-row statements
# cost as much again in query parsing.
_UNNEST_CACHE: dict[str, str] = {}


def _unnest_sql(table: sa.Table) -> str:
    if table.name not in _UNNEST_CACHE:
        dialect = postgresql.dialect()
        arrays, picks = [], []
        for i, c in enumerate(table.columns):
            is_json = isinstance(c.type, sa.JSON) or c.name == "attributes"
            # text, not varchar(n): an explicit cast would silently cut an over-long value
            text = is_json or isinstance(c.type, sa.String)
            arrays.append("%s::text[]" if text else f"%s::{c.type.compile(dialect=dialect)}[]")
            picks.append(f"u.c{i}::jsonb" if is_json else f"u.c{i}")
        names = [c.name for c in table.columns]
        cols = ", ".join(f'"{n}"' for n in names)
        updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names if n != "id")
        aliases = ", ".join(f"c{i}" for i in range(len(names)))
        _UNNEST_CACHE[table.name] = (
            f'INSERT INTO "{table.name}" ({cols}) SELECT {", ".join(picks)} '
            f"FROM unnest({', '.join(arrays)}) AS u({aliases}) ON CONFLICT (id) DO UPDATE SET {updates}"
        )
    return _UNNEST_CACHE[table.name]


_LINEAGE_UNNEST = (
    "INSERT INTO lineage (entity, canonical_id, raw_id) SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
    "ON CONFLICT DO NOTHING"
)


def _columns(params: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(col) for col in zip(*params, strict=True)]


_INSERT_CACHE: dict[str, tuple[str, Any]] = {}


def _insert_statement(table: sa.Table) -> tuple[str, Any]:
    """SQLite's plain insert of one row of ``table`` (no conflict clause, for :func:`_flat_statements`) and its rows'
    flat parameter function."""
    if table.name not in _INSERT_CACHE:
        sql = f'INSERT INTO "{table.name}" ({_column_list(table)}) VALUES ({", ".join("?" for _ in table.columns)})'
        _INSERT_CACHE[table.name] = (sql, _row_params(table, "sqlite", flat=True))
    return _INSERT_CACHE[table.name]


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], chunk: int = 50_000) -> None:
    """Insert ``rows`` (column -> value, a missing column is NULL) into ``table`` in ``conn``'s transaction, the
    values converted as the columns' types do (Decimal amounts exact, instants in UTC, JSON as the store's canonical
    text) without SQLAlchemy's work per row and value. SQLite: multi-row statements; PostgreSQL: ``COPY`` (an array
    parameter costs psycopg a regular expression per text element). Column defaults are not applied: give every
    NOT NULL column."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        params = _upsert_statement(table, "postgresql")[1]  # a driver value tuple per row
        raw: Any = conn.connection.dbapi_connection  # psycopg's connection: COPY is psycopg's own API
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({_column_list(table)}) FROM STDIN') as cp:
            for part in _chunks(rows, chunk):
                for values in params(part):
                    cp.write_row(values)
        return
    sql, flat_params = _insert_statement(table)
    for part in _chunks(rows, chunk):
        for stmt, flat in _flat_statements(sql, len(table.columns), flat_params(part)):
            conn.exec_driver_sql(stmt, tuple(flat))


class Store:
    """Access to one ltc-hub database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # SQLite has one writer at a time: threads of this process (sources synced side by side) take
        # turns here instead of in SQLite's busy handler, whose back-off sleeps up to 100 ms a try
        self._turn: threading.RLock | None = threading.RLock() if engine.dialect.name == "sqlite" else None

    @classmethod
    def open(cls, url: str | None = None, *, auto_create: bool = True) -> Store:
        """Connect, and check (or on an empty database create) the schema. Without ``auto_create`` (the commands that
        work on what is stored: reconcile, report, exceptions...) a store that does not exist yet is an error, not
        a new empty one: a SQLite file that is not there (a mistyped path would otherwise be reconciled as an empty
        store, "0 chains, no exceptions"), a database without the schema."""
        if not auto_create:
            db.require_existing(url)
        engine = db.make_engine(url)
        # PostgreSQL creates the schema in one transaction: after a lost connection it is run again
        db.reconnecting(lambda: db.ensure_schema(engine, auto_create=auto_create), what="schema check")
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def in_forked_child(self, turn: Any = None) -> None:
        """Called first in a forked child that uses this store: new connections (the inherited pool's are the
        parent's, left untouched), and on SQLite the writers' turns taken through ``turn``, a lock shared with
        the parent and its other children (:func:`canonical.forking.fork_lock`)."""
        self.engine.dispose(close=False)
        if turn is not None and self._turn is not None:
            self._turn = turn

    @contextlib.contextmanager
    def forked_child(self, turn: Any = None) -> Iterator[Store]:
        """:meth:`in_forked_child` for the block of a forked child's work; the child's own connections are closed
        when it ends."""
        self.in_forked_child(turn)
        try:
            yield self
        finally:
            self.engine.dispose(close=True)

    def use_turn(self, turn: Any) -> Any:
        """On SQLite, take the writers' turns through ``turn`` from now on: a lock shared with forked children
        (:func:`canonical.forking.fork_lock`) that write while this process writes too. Returns the lock used
        until now, to put back the same way. Elsewhere: nothing (None)."""
        if self._turn is None:
            return None
        before, self._turn = self._turn, turn
        return before

    def write_turn(self) -> AbstractContextManager[Any]:
        """Hold this around a write transaction that does not go through :meth:`transaction`: on SQLite
        the writers' turn (threads of this process, and forked children given the shared lock), else nothing."""
        return self._turn or nullcontext()

    def transaction(self, what: str, fn: Callable[[Connection], T]) -> T:
        """``fn`` in one transaction; if the database connection is lost (a PostgreSQL restart) the
        transaction is run again on a new connection (``fn`` must be safe to repeat)."""

        def once() -> T:
            with self.write_turn(), self.engine.begin() as conn:
                return fn(conn)

        return db.reconnecting(once, what=what)

    def read(self, what: str, fn: Callable[[Connection], T]) -> T:
        """``fn`` on a connection, again on a new one if the connection is lost."""

        def once() -> T:
            with self.engine.connect() as conn:
                return fn(conn)

        return db.reconnecting(once, what=what)

    # --- runs ---------------------------------------------------------------------------------
    def begin_run(self, kind: str, source: str | None = None) -> str:
        run_id = f"{kind}-{now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        values: dict[str, Any] = {"id": run_id, "kind": kind, "source": source, "started_at": now(),
                                  "status": "running",
                  "counts": {}}
        self.transaction(f"start of the {kind} run", lambda conn: conn.execute(
            _insert_for(conn, run).values(**values).on_conflict_do_nothing(index_elements=["id"])))
        return run_id

    def finish_run(
        self, run_id: str, status: str, counts: Mapping[str, Any] | None = None, message: str | None = None
    ) -> None:
        stmt = (run.update().where(run.c.id == run_id)
                .values(status=status, finished_at=now(), counts=dict(counts or {}), message=message))
        self.transaction("end of the run", lambda conn: conn.execute(stmt))

    def close_interrupted(self, kind: str, source: str | None = None, *, streams: bool = False) -> int:
        """Mark ``running`` rows left by a process that died as ``failed``, with the reason.

        Call it holding the stage's lock (:mod:`canonical.locks`): then nothing else can be running
        them. ``run`` rows of ``kind`` (and ``source``); with ``streams``, also the stream states of
        connector ``source``. Returns how many rows were closed.
        """
        at = now()

        def close(conn: Connection) -> int:
            q = run.update().where(run.c.kind == kind, run.c.status == "running")
            if source is not None:
                q = q.where(run.c.source == source)
            n = int(conn.execute(q.values(status="failed", finished_at=at, message=INTERRUPTED)).rowcount or 0)
            if streams and source is not None:
                c = stream_state.c
                n += int(conn.execute(stream_state.update().where(c.connector == source, c.status == "running")
                                      .values(status="failed", message=INTERRUPTED)).rowcount or 0)
            return n

        closed = self.transaction(f"closing interrupted {kind} runs", close)
        if closed:
            log.warning("%s%s: closed %d row(s) left running by an interrupted process", kind,
                        f" {source}" if source else "", closed)
        return closed

    # --- raw landing --------------------------------------------------------------------------
    def upsert_raw(
        self, conn: Connection, system: str, records: Iterable[RawRecord], run_id: str | None = None
    ) -> PageResult:
        """Land raw records inside the caller's transaction; unchanged payloads write nothing."""
        return self._upsert_prepared(conn, system, _prepared(records), run_id)

    def _upsert_prepared(self, conn: Connection, system: str, by_object: _Prepared, run_id: str | None
                         ) -> PageResult:
        result = PageResult()
        fetched = now()
        for obj, recs in by_object.items():
            stamps = any(rec.hash_ignore for rec, _blob, _digest in recs.values())
            known = _known_hashes(conn, system, obj, list(recs), stamps=stamps)
            changed = []
            touched = []
            for sid, (rec, blob, digest) in recs.items():
                stored = known.get(sid)
                if (stored[0] if stamps and stored else stored) == digest:
                    result.unchanged += 1
                    if stamps and stored is not None and stored[1] != rec.source_updated_at:
                        touched.append((sid, blob, rec.source_updated_at))
                    continue
                changed.append((sid, blob, digest, rec.source_updated_at, rec.deleted))
            if changed:
                _land(conn, system, obj, changed, fetched, run_id)
                result.written += len(changed)
            if touched:
                _touch(conn, system, obj, touched, fetched, run_id)
                result.touched += len(touched)
        return result

    def known_hashes(self, system: str, obj: str, source_ids: Sequence[str]) -> dict[str, str]:
        """Stored content hashes of these source ids (to tell new, changed and unchanged apart)."""
        if not source_ids:
            return {}
        return self.read("known hashes", lambda conn: _known_hashes(conn, system, obj, list(source_ids)))

    def add_quarantine(
        self, conn: Connection, system: str, rejected: Iterable[Rejected], run_id: str | None = None
    ) -> int:
        """Quarantine rejected records inside the caller's transaction; returns how many were given.

        The same rejection (stage, object, id, field, reason and payload) that is still open is not
        written again: a re-read page or a rerun finds it there already.
        """
        rows: dict[str, dict[str, Any]] = {}
        given = 0
        at = now()
        for r in rejected:
            given += 1
            fp = quarantine_fingerprint(system, r)
            rows.setdefault(fp, {
                "run_id": run_id, "stage": r.stage, "system": system, "object": r.object,
                "source_id": r.source_id, "field": r.field, "reason": r.reason, "payload": r.payload,
                "created_at": at, "fingerprint": fp,
            })
        if rows:
            q = quarantine.c
            for chunk in _chunks(list(rows), _IN_CHUNK):
                known = conn.execute(sa.select(q.fingerprint).where(q.fingerprint.in_(chunk),
                                                                    q.resolved_at.is_(None)))
                for (fp,) in known:
                    rows.pop(fp, None)
            if rows:
                conn.execute(quarantine.insert(), list(rows.values()))
        return given

    # --- stream state -------------------------------------------------------------------------
    def commit_page(
        self,
        connector: str,
        stream: str,
        records: Sequence[RawRecord],
        cursor: Any,
        *,
        run_id: str | None = None,
        rejected: Sequence[Rejected] = (),
    ) -> PageResult:
        """Land a page and advance the stream's cursor in one transaction (run again on a new
        connection if the connection is lost: landing is hash-checked, quarantine deduplicated)."""

        prepared = _prepared(records)  # the JSON and hashes outside the transaction (and the SQLite turn)

        def page(conn: Connection) -> PageResult:
            db.landing_cache(conn)
            result = self._upsert_prepared(conn, connector, prepared, run_id)
            result.quarantined = self.add_quarantine(conn, connector, rejected, run_id)
            self._advance_cursor(conn, connector, stream, cursor, result, len(records), run_id)
            return result

        return self.transaction(f"{connector}.{stream}: page commit", page)

    def _advance_cursor(
        self,
        conn: Connection,
        connector: str,
        stream: str,
        cursor: Any,
        result: PageResult,
        seen: int,
        run_id: str | None,
    ) -> None:
        self._ensure_stream_row(conn, connector, stream)
        c = stream_state.c
        values = {} if cursor is KEEP_CURSOR else {"cursor": cursor}
        conn.execute(
            stream_state.update()
            .where(c.connector == connector, c.stream == stream)
            .values(
                **values,
                last_run_id=run_id,
                last_run_at=now(),
                records_seen=c.records_seen + seen,
                records_written=c.records_written + result.written,
                quarantined=c.quarantined + result.quarantined,
            )
        )

    def _ensure_stream_row(self, conn: Connection, connector: str, stream: str) -> None:
        stmt = _insert_for(conn, stream_state).values(
            connector=connector, stream=stream, records_seen=0, records_written=0, quarantined=0
        )
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["connector", "stream"]))

    def get_cursor(self, connector: str, stream: str) -> Any:
        q = sa.select(stream_state.c.cursor).where(stream_state.c.connector == connector,
                                                   stream_state.c.stream == stream)
        return self.transaction(f"{connector}.{stream}: cursor", lambda conn: conn.execute(q).scalar())

    def start_stream(self, connector: str, stream: str, run_id: str) -> None:
        """Mark a stream running and reset its per-run counters (the cursor is kept)."""

        def start(conn: Connection) -> None:
            self._ensure_stream_row(conn, connector, stream)
            conn.execute(
                stream_state.update()
                .where(stream_state.c.connector == connector, stream_state.c.stream == stream)
                .values(
                    status="running",
                    last_run_id=run_id,
                    last_run_at=now(),
                    records_seen=0,
                    records_written=0,
                    quarantined=0,
                    message=None,
                )
            )

        self.transaction(f"{connector}.{stream}: start", start)

    def finish_stream(
        self,
        connector: str,
        stream: str,
        status: str,
        *,
        source_count: int | None = None,
        store_count: int | None = None,
        message: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "message": message}
        if status == "success":
            values["last_success_at"] = now()
        if source_count is not None:
            values["source_count"] = source_count
        if store_count is not None:
            values["store_count"] = store_count

        def finish(conn: Connection) -> None:
            self._ensure_stream_row(conn, connector, stream)
            conn.execute(
                stream_state.update()
                .where(stream_state.c.connector == connector, stream_state.c.stream == stream)
                .values(**values)
            )

        self.transaction(f"{connector}.{stream}: finish", finish)

    def stream_states(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(stream_state).order_by(stream_state.c.connector, stream_state.c.stream)
            )
            return [dict(r._mapping) for r in rows]

    # --- reads used by mapping, status and tests -----------------------------------------------
    def count_raw(self, system: str, obj: str | None = None, *, include_deleted: bool = False) -> int:
        q = sa.select(sa.func.count()).select_from(raw_record).where(raw_record.c.system == system)
        if obj is not None:
            q = q.where(raw_record.c.object == obj)
        if not include_deleted:
            q = q.where(raw_record.c.deleted.is_(False))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def count_raw_since(self, system: str, obj: str, since: datetime | None, until: datetime | None = None) -> int:
        """Live raw records of an object updated in [``since``, ``until``) (completeness checks)."""
        q = sa.select(sa.func.count()).select_from(raw_record).where(
            raw_record.c.system == system, raw_record.c.object == obj, raw_record.c.deleted.is_(False)
        )
        if since is not None:
            q = q.where(raw_record.c.source_updated_at >= since)
        if until is not None:
            q = q.where(raw_record.c.source_updated_at < until)
        return self.read("completeness count", lambda conn: int(conn.execute(q).scalar_one()))

    def open_quarantine_ids(self, system: str, obj: str, stage: str = "fetch") -> set[str]:
        """Source ids with an open quarantine entry of ``stage`` (records the store knowingly lacks)."""
        q = quarantine.c
        stmt = sa.select(q.source_id).where(q.system == system, q.object == obj, q.stage == stage,
                                            q.resolved_at.is_(None), q.source_id.is_not(None)).distinct()
        return self.read("quarantined ids", lambda conn: {sid for (sid,) in conn.execute(stmt)})

    def live_stamps(self, system: str, obj: str) -> dict[str, datetime | None]:
        """Source id -> ``source_updated_at`` of every live raw record of an object (deep checks)."""
        c = raw_record.c
        q = sa.select(c.source_id, c.source_updated_at).where(c.system == system, c.object == obj,
                                                              c.deleted.is_(False))
        return self.read("live ids", lambda conn: {sid: ts for sid, ts in conn.execute(q)})

    def live_among(self, system: str, obj: str, source_ids: Collection[str]) -> set[str]:
        """Which of these source ids the store holds as live raw records of ``obj``."""
        c = raw_record.c
        ids = sorted(set(source_ids))

        def read(conn: Connection) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(ids, _IN_CHUNK):
                found.update(conn.execute(sa.select(c.source_id).where(
                    c.system == system, c.object == obj, c.deleted.is_(False), c.source_id.in_(chunk))).scalars())
            return found

        return self.read("live ids", read) if ids else set()

    def live_count(self, system: str, obj: str) -> int:
        """How many live raw records of an object the store holds (cheap deletion checks)."""
        c = raw_record.c
        q = sa.select(sa.func.count()).where(c.system == system, c.object == obj, c.deleted.is_(False))
        return int(self.read("live count", lambda conn: conn.execute(q).scalar_one()))

    def raw_payloads(self, system: str, obj: str, source_ids: Sequence[str]) -> dict[str, Any]:
        """The stored payloads of these source ids."""
        c = raw_record.c

        def payloads(conn: Connection) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for chunk in _chunks(list(source_ids), _IN_CHUNK):
                rows = conn.execute(sa.select(c.source_id, c.payload).where(c.system == system, c.object == obj,
                                                                            c.source_id.in_(chunk)))
                out.update((sid, payload) for sid, payload in rows)
            return out

        return self.read("stored payloads", payloads)

    def get_raw(self, system: str, obj: str, source_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(raw_record).where(
                    raw_record.c.system == system,
                    raw_record.c.object == obj,
                    raw_record.c.source_id == source_id,
                )
            ).first()
            return dict(row._mapping) if row else None

    def quarantined(self, system: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(quarantine).order_by(quarantine.c.id)
        if system is not None:
            q = q.where(quarantine.c.system == system)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def table_counts(self) -> dict[str, int]:
        """Live (not tombstoned) rows per canonical entity."""
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for name, table in tables.entity_tables.items():
                out[name] = int(
                    conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(table.c.deleted_at.is_(None))
                    ).scalar_one()
                )
        return out

    # --- canonical upserts ------------------------------------------------------------------------
    def upsert_entities(
        self, conn: Connection, entity: str, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Idempotent bulk upsert of canonical rows (keyed on the deterministic ``id``) plus lineage.

        Rows are sent at the driver level with per-column converters prepared once per table (the
        same checks as the column types: no float amounts, no naive instants), like raw landing; on
        PostgreSQL as column arrays, on SQLite as multi-row statements (:func:`_sqlite_statements`).
        """
        run_statements(conn, self.upsert_statements(conn.dialect.name, entity, rows))
        return len(rows)

    @staticmethod
    def upsert_statements(dialect: str, entity: str, rows: Sequence[Mapping[str, Any]]) -> Statements:
        """The statements of :meth:`upsert_entities` on ``dialect``, built without a connection: a writer
        that takes turns with others (:meth:`write_turn`) builds them before its turn."""
        if not rows:
            return []
        table = tables.table_for(entity)
        sql, to_params = _upsert_statement(table, dialect)
        links = [(entity, r["id"], r["raw_id"]) for r in rows if r.get("raw_id") is not None]
        if dialect == "postgresql":
            # one statement may not update a row twice: the last version of an id wins, as it
            # would row after row
            unique = list({r["id"]: r for r in rows}.values())
            out: Statements = [(_unnest_sql(table), tuple(_columns(to_params(unique))))]
            if links:
                out.append((_LINEAGE_UNNEST, tuple(_columns(links))))
            return out
        return _sqlite_statements(sql, to_params(rows)) + _sqlite_statements(_LINEAGE_SQLITE, links)

    @staticmethod
    def staged_upserts(conn: Connection, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> Statements:
        """The statements of :meth:`upsert_entities` for ``rows`` (entity -> rows), for a writer that takes turns
        (:meth:`write_turn`): built before its turn, on ``conn`` (outside a transaction), the connection that runs
        them in its turn. On SQLite the rows are staged there first (:func:`_staged`): the statements copy them
        in, and their lineage from the same stage tables."""
        if conn.dialect.name != "sqlite":
            return [st for entity, some in rows.items() for st in Store.upsert_statements(conn.dialect.name, entity, some)]
        staged, links = [], []
        for entity, some in rows.items():
            if some:
                table = tables.table_for(entity)
                staged.append((table, _stage_params(table, some)))
                links.append((_STAGE_LINEAGE.format(stage=_STAGE, table=table.name), (entity,)))
        return _staged(conn, staged) + links if staged else []
