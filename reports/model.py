"""What the finance report shows, as data: the report and the records it names (no I/O here).

:mod:`reports.finance` fills a :class:`Report` from the store; :mod:`reports.html` and
:mod:`reports.xlsx` render it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

ZERO = Decimal(0)
HTML_CHAIN_LIMIT = 2000  # the HTML lists this many chains (those of its exceptions first); the CSV/XLSX list all
HTML_EXCEPTION_LIMIT = 200  # and this many exceptions of a code (the most severe, the largest first); CSV/XLSX: all


class Record(NamedTuple):
    """One source record a chain or an exception names, with the way back to its source system (a tuple: a batch of
    them becomes a frame's columns by one transposition)."""

    id: str  # canonical id
    entity: str
    system: str
    object: str
    source_id: str
    label: str  # what a person calls it: the number, the deal's name, the payer reference
    amount: Decimal | None = None
    currency: str | None = None
    day: date | None = None
    status: str | None = None
    url: str | None = None


CHAIN_SCHEMA: dict[str, Any] = {
    "chain_id": pl.String, "deal": pl.String, "account": pl.String, "customer": pl.String, "owner": pl.String,
    "stage": pl.Categorical, "close_date": pl.Date, "currency": pl.Categorical, "deal_amount": pl.String,
    "quotes": pl.String, "contract": pl.String, "orders": pl.String, "ordered": pl.String, "deliveries": pl.String,
    "invoices": pl.String, "invoiced": pl.String, "payments": pl.String, "paid": pl.String, "open": pl.String,
    "status": pl.Categorical, "exceptions": pl.String,
    "deal_url": pl.String,  # display only: the deal's link
}
"""A chain row's columns as :class:`ChainTable` holds them: amounts as their exact decimal text (a Decimal's
``str``, read back unchanged: ``63095.11``, ``1.23E+29``), the few-valued texts categorical."""

CHAIN_MONEY = frozenset({"deal_amount", "ordered", "invoiced", "paid", "open"})
_CHAIN_VALUES = operator.itemgetter(*CHAIN_SCHEMA)
_CHAIN_RECORDS = {"chain_id": pl.String, "record_id": pl.String}  # a chain's records, in its order

RECORD_SCHEMA: dict[str, Any] = {
    "id": pl.String, "entity": pl.Categorical, "system": pl.Categorical, "object": pl.Categorical,
    "source_id": pl.String, "label": pl.String, "amount": pl.String, "currency": pl.Categorical, "day": pl.Date,
    "status": pl.Categorical, "url": pl.String, "chain_id": pl.String,  # the chain that names it first, if any
}
_RECORD_FIELDS = ("id", "entity", "system", "object", "source_id", "label", "amount", "currency", "day", "status",
                  "url")


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


class ChainTable:
    """The report's chain table: one row per chain (:data:`CHAIN_SCHEMA`), held as Polars frames, a frame per batch
    of chains built, not as a Python dict per chain (about 2.5 KB each: 2.5 GB at a million chains). Iterating gives
    each row as a dict with its amounts as Decimals, a batch at a time; the whole-table questions the writers ask
    (how many, which statuses, the first shown) are answered on the frames. The records of each chain are a frame
    beside (chain, record, in chain order): only the page's chains (:meth:`first`) list them."""

    def __init__(self, rows: Iterable[dict[str, Any]] = ()) -> None:
        self._frames: list[pl.DataFrame] = []
        self._records: list[pl.DataFrame] = []
        self._currencies: set[str | None] | None = None
        self.add(list(rows))

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Rows as :func:`reports.finance` builds them (amounts Decimals, ``record_ids``), kept as one more frame."""
        if rows:
            self.add_frame(*chain_frames(rows))

    def add_frame(self, rows: pl.DataFrame, records: pl.DataFrame) -> None:
        """Rows already a frame of :data:`CHAIN_SCHEMA`, with their chains' records (``chain_id``, ``record_id``, in
        chain order)."""
        if rows.is_empty():
            return
        self._frames.append(rows)
        self._records.append(records.select(pl.col(c).cast(t) for c, t in _CHAIN_RECORDS.items()))
        self._currencies = None

    def frame(self) -> pl.DataFrame:
        """Every row as one frame (amounts as text)."""
        return pl.concat(self._frames) if self._frames else pl.DataFrame(schema=CHAIN_SCHEMA)

    def frames(self) -> list[pl.DataFrame]:
        """The rows, a frame per batch built (amounts as text), in chain order."""
        return list(self._frames)

    def __len__(self) -> int:
        return sum(f.height for f in self._frames)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for f in self._frames:
            yield from _chain_dicts(f)

    def __getitem__(self, index: slice) -> list[dict[str, Any]]:
        if not isinstance(index, slice):
            raise TypeError("a ChainTable is read by slices or by iterating")
        start, stop, step = index.indices(len(self))
        return list(_chain_dicts(self.frame().slice(start, max(stop - start, 0))))[::step]

    def column(self, name: str) -> list[Any]:
        """One column's values, in chain order (amounts as text)."""
        return self.frame()[name].to_list()

    def first(self, limit: int, prefer: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The first ``limit`` chains as a page shows them, each with its ``record_ids``: those of ``prefer`` in its
        order (the chains of the exceptions the page shows), then those with an exception, then the others, by id."""
        df = self.frame()
        order = pl.DataFrame({"chain_id": list(dict.fromkeys(prefer))}, schema={"chain_id": pl.String})
        df = df.join(order.with_row_index("_rank"), on="chain_id", how="left")
        top = list(_chain_dicts(df.sort([pl.col("_rank").is_null(), "_rank", pl.col("status").cast(pl.String)
                                         != "exception", "chain_id"]).head(limit)))
        wanted = pl.Series([c["chain_id"] for c in top], dtype=pl.String).implode()
        named: dict[str, list[str]] = {c["chain_id"]: [] for c in top}
        held = pl.concat(self._records) if self._records else pl.DataFrame(schema=_CHAIN_RECORDS)
        chosen = held.filter(pl.col("chain_id").is_in(wanted))
        for chain, record in zip(chosen["chain_id"].to_list(), chosen["record_id"].to_list(), strict=True):
            named[chain].append(record)
        return [{**c, "record_ids": named[c["chain_id"]]} for c in top]

    def status_counts(self) -> dict[str, int]:
        counts = self.frame().group_by(pl.col("status").cast(pl.String)).len()
        return dict(zip(counts["status"].to_list(), counts["len"].to_list(), strict=True))

    def currencies(self) -> set[str | None]:
        """The currencies of the chains (None for a chain without one); known once :meth:`seal` has run."""
        if self._currencies is None:
            self._currencies = set(self.frame()["currency"].cast(pl.String).unique().to_list())
        return self._currencies

    def seal(self) -> None:
        """Answers ahead what a forked writer asks (:meth:`currencies`): Polars' own threads are not in a forked
        child, so there a query that uses them waits for ever. Iterating and slicing use none."""
        self.currencies()

    def having(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` that are chains of the table."""
        wanted = pl.Series(list(set(ids)), dtype=pl.String)
        return set(self.frame().filter(pl.col("chain_id").is_in(wanted.implode()))["chain_id"].to_list())


def chain_frames(rows: list[dict[str, Any]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Chain rows as dicts (amounts Decimals, ``record_ids``) as :meth:`ChainTable.add_frame` takes them: the rows
    (:data:`CHAIN_SCHEMA`) and each chain's records in its order."""
    columns: dict[str, Any] = dict(zip(CHAIN_SCHEMA, zip(*map(_CHAIN_VALUES, rows), strict=True), strict=True)) \
        if rows else {c: [] for c in CHAIN_SCHEMA}
    for c in CHAIN_MONEY:
        columns[c] = [None if v is None else str(v) for v in columns[c]]
    return pl.DataFrame(columns, schema=CHAIN_SCHEMA), pl.DataFrame(
        {"chain_id": [r["chain_id"] for r in rows for _ in r.get("record_ids", ())],
         "record_id": [i for r in rows for i in r.get("record_ids", ())]}, schema=_CHAIN_RECORDS)


def _chain_dicts(df: pl.DataFrame) -> Iterator[dict[str, Any]]:
    names = list(CHAIN_SCHEMA)
    columns = [[_decimal(v) for v in df[c].to_list()] if c in CHAIN_MONEY else df[c].to_list() for c in names]
    for values in zip(*columns, strict=True):
        yield dict(zip(names, values, strict=True))


class RecordTable:
    """The records a report names, by id, each once (:data:`RECORD_SCHEMA`), held as Polars frames as
    :class:`ChainTable` holds chains. Read back as :class:`Record` objects: all of them in order (:meth:`values`,
    :meth:`with_chain`), or those of some ids (:meth:`lookup`)."""

    def __init__(self, records: dict[str, Record] | None = None) -> None:
        self._frames: list[pl.DataFrame] = []
        self._unique = True
        self._currencies: set[str | None] | None = None
        if records:
            self.add(records)

    def add(self, records: dict[str, Record], chain_of: dict[str, str] | None = None, *, new: bool = False) -> None:
        """More records; one already held is kept as it was first added (``new``: the caller knows that none is,
        which spares a pass over every record held)."""
        if records:
            self.add_frame(record_frame(records, chain_of), new=new)

    def add_frame(self, records: pl.DataFrame, *, new: bool = False) -> None:
        """Records already a frame of :data:`RECORD_SCHEMA` (``new`` as for :meth:`add`)."""
        if records.is_empty():
            return
        self._frames.append(records)
        self._unique = (self._unique and new) or len(self._frames) == 1
        self._currencies = None

    def frame(self) -> pl.DataFrame:
        """Every record once, in the order first added."""
        if not self._frames:
            return pl.DataFrame(schema=RECORD_SCHEMA)
        if not self._unique:
            self._frames = [pl.concat(self._frames).unique("id", keep="first", maintain_order=True)]
            self._unique = True
        return self._frames[0] if len(self._frames) == 1 else pl.concat(self._frames)

    def __len__(self) -> int:
        if not self._unique:
            self.frame()
        return sum(df.height for df in self._frames)

    def values(self) -> Iterator[Record]:
        for _, r in self.with_chain():
            yield r

    def with_chain(self) -> Iterator[tuple[str | None, Record]]:
        """Each record with the chain that names it first (None: an exception's record no chain holds)."""
        if not self._unique:
            self.frame()
        for df in self._frames:  # frame by frame: a forked writer runs no Polars query (see ChainTable.seal)
            yield from _records(df, with_chain=True)

    def lookup(self, ids: Iterable[str]) -> dict[str, Record]:
        """The records of ``ids`` that the table holds, by id."""
        wanted = pl.Series(list(set(ids)), dtype=pl.String)
        if wanted.is_empty():
            return {}
        return {r.id: r for _, r in _records(self.frame().filter(pl.col("id").is_in(wanted.implode())), with_chain=False)}

    def currencies(self) -> set[str | None]:
        """The records' currencies; known once :meth:`seal` has run."""
        if self._currencies is None:
            self._currencies = set(self.frame()["currency"].cast(pl.String).unique().to_list())
        return self._currencies

    def seal(self) -> None:
        """Each record once, and its currencies known: what a forked writer reads (:meth:`with_chain`,
        :meth:`currencies`) needs no Polars query then (see :meth:`ChainTable.seal`)."""
        self.frame()
        self.currencies()


def record_frame(records: dict[str, Record], chain_of: dict[str, str] | None = None) -> pl.DataFrame:
    """Records (by id) as :meth:`RecordTable.add_frame` takes them (:data:`RECORD_SCHEMA`), each with the chain that
    names it first (``chain_of``)."""
    columns: dict[str, Any] = dict(zip(_RECORD_FIELDS, zip(*records.values(), strict=True), strict=True)) \
        if records else {f: [] for f in _RECORD_FIELDS}
    columns["amount"] = [None if a is None else str(a) for a in columns["amount"]]
    columns["chain_id"] = [chain_of.get(i) for i in records] if chain_of else [None] * len(records)
    return pl.DataFrame(columns, schema=RECORD_SCHEMA)


def _records(df: pl.DataFrame, *, with_chain: bool) -> Iterator[tuple[str | None, Record]]:
    step = 50_000  # Records made a slice at a time: a million at once would be the objects this table avoids
    for start in range(0, df.height, step):
        part = df.slice(start, step)
        columns = [[_decimal(v) for v in part[f].to_list()] if f == "amount" else part[f].to_list()
                   for f in _RECORD_FIELDS]
        chains = part["chain_id"].to_list() if with_chain else [None] * part.height
        for chain, values in zip(chains, zip(*columns, strict=True), strict=True):
            yield chain, Record(*values)


@dataclass
class Report:
    """What the report shows; every list of rows follows its ``*_COLUMNS`` (plus display-only keys)."""

    as_of: date | None
    run_id: str | None
    reporting_currency: str | None
    kpis: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    by_code: list[dict[str, Any]] = field(default_factory=list)
    chains: ChainTable = field(default_factory=ChainTable)
    records: RecordTable = field(default_factory=RecordTable)
    named: dict[str, Record] = field(default_factory=dict)  # the records the exceptions name, and their chains' deals
    previous: dict[tuple[str, str], Decimal | None] = field(default_factory=dict)  # the run before, overall KPIs
    previous_as_of: date | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # [{run_id, as_of, values: {kpi/variant: v}}]
    monthly: list[dict[str, Any]] = field(default_factory=list)  # [{month, invoiced, collected}]
    monthly_unconverted: int = 0  # invoices/payments left out of the monthly chart: no FX rate
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    unconverted: list[dict[str, Any]] = field(default_factory=list)  # open exceptions with no FX rate to convert
    banners: list[str] = field(default_factory=list)  # partial data: which source is missing, since when
    previous_complete: str | None = None
    notes: list[str] = field(default_factory=list)  # about the data: stale FX rates, a rate source not read  # relative link to the last complete report, kept beside a partial one


@dataclass
class ReportFiles:
    directory: Path
    html: Path
    xlsx: Path
    csv: dict[str, Path]
    report: Report | None = None  # what was written

    def all(self) -> list[Path]:
        return [self.html, *self.csv.values(), self.xlsx]
