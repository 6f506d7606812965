"""The finance report: the reconciled order-to-invoice-to-cash view of the latest reconciliation run.

Everything is read from the store (what ``ltc reconcile`` left there), nothing is recomputed:

* **KPIs**: the latest ``kpi_snapshot`` run, all owners, each with its formula variant; the runs
  before it give the trends and the change since the last run.
* **Exceptions**: ``recon_exception`` rows that are not resolved; by code with count, amount at risk
  in the reporting currency and owners; and one row each, with the records it names.
* **Chains**: one per closed-won deal (and per other deal a link or an exception names): its orders
  (``recon_link`` deal -> order), invoices (links to invoices of the chain), payments
  (``recon_allocation`` on those invoices), the totals and a status; each record with the link to
  its source system (:mod:`reports.links`).
* **Invoiced vs collected** per month (reporting currency at the as-of rate).

:func:`write_reports` writes ``report.html`` (self-contained: inline CSS and SVG charts, no script,
no external asset; links only to the records' source systems), ``exceptions.csv``, ``chains.csv``,
``kpis.csv`` and ``report.xlsx``. ``ltc report``, ``ltc run``, ``ltc demo`` and the pipeline flow call it.
"""

from __future__ import annotations

import contextlib
import csv
import decimal
import logging
import os
from collections import Counter, defaultdict, namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from canonical import columnar
from canonical import tables as ct
from canonical.forking import Pending
from canonical.interpreter import no_gc
from canonical.locks import stage_lock
from canonical.money import minor_units
from canonical.scratch import scratch_dir
from canonical.store import Store
from reconcile.codes import CODES
from reconcile.tables import fx_rate, kpi_snapshot, recon_allocation, recon_exception, recon_link
from reports.cells import csv_value
from reports.chain_frames import chain_batch, exact_sums, write_chains_csv
from reports.links import SourceLinks
from reports.model import (
    CHAIN_MONEY,
    HTML_CHAIN_LIMIT,
    ZERO,
    Record,
    Report,
    ReportFiles,
    chain_frames,
    record_frame,
)

log = logging.getLogger(__name__)

HISTORY_RUNS = 24  # runs shown in the trend charts
TREND_KPIS = ("dso", "won_not_invoiced_amount", "won_not_invoiced_count", "open_exceptions", "amount_at_risk",
              "unapplied_cash")

EXCEPTION_COLUMNS = ["fingerprint", "code", "status", "severity", "chain_id", "records", "owner", "currency",
                     "amount_at_risk", "reporting_currency", "amount_reporting", "first_seen_at", "last_seen_at"]
CHAIN_COLUMNS = ["chain_id", "deal", "account", "customer", "owner", "stage", "close_date", "currency", "deal_amount",
                 "quotes", "contract", "orders", "ordered", "deliveries", "invoices", "invoiced", "payments", "paid",
                 "open", "status", "exceptions"]
KPI_COLUMNS = ["kpi", "variant", "value", "unit", "numerator", "denominator", "period_start", "period_end"]
SUMMARY_COLUMNS = ["code", "meaning", "count", "amount_reporting", "reporting_currency", "owners"]


def _money(v: Any, currency: str | None = None) -> Decimal | None:
    """An amount as an exact Decimal, shown with its currency's decimals where that loses nothing
    (``63095.1100`` -> ``63095.11``; a converted ``1791.2043`` keeps its digits; ``1.23E+29`` stays)."""
    if v is None:
        return None
    d = Decimal(v)
    if not d.is_finite():
        return d
    places = _PLACES.get(currency)
    if places is None:
        places = _places(currency)
    prec = max(28, d.adjusted() + 8)
    context = _CONTEXTS.get(prec)
    if context is None:
        context = _CONTEXTS[prec] = decimal.Context(prec=prec)
    try:
        q = d.quantize(places, context=context)
    except (decimal.InvalidOperation, ValueError):
        return d
    return q if q == d else d


# What _money quantizes with, made once: a currency's smallest unit, and a context per precision (a
# report formats a few hundred thousand amounts). A context's flags are never read: only its traps count.
_PLACES: dict[str | None, Decimal] = {}
_CONTEXTS: dict[int, decimal.Context] = {}


def _places(currency: str | None) -> Decimal:
    try:
        places = Decimal(1).scaleb(-minor_units(currency)) if currency else Decimal("0.01")
    except ValueError:
        places = Decimal("0.01")
    if len(_PLACES) < 1000:
        _PLACES[currency] = places
    return places


def _kpi_key(kpi: str, variant: str) -> str:
    return f"{kpi}/{variant}"


def _runs(conn: sa.Connection) -> list[tuple[str, date]]:
    """Reconcile runs with a KPI snapshot, oldest first."""
    k = kpi_snapshot.c
    rows = conn.execute(sa.select(k.run_id, sa.func.max(k.as_of), sa.func.min(k.id).label("first_id"))
                        .group_by(k.run_id).order_by(sa.text("first_id"))).all()
    return [(r[0], r[1]) for r in rows]


def _kpis_of(conn: sa.Connection, run_ids: list[str]) -> list[dict[str, Any]]:
    k = kpi_snapshot.c
    if not run_ids:
        return []
    rows = conn.execute(sa.select(k.run_id, k.kpi, k.variant, k.value, k.unit, k.numerator, k.denominator,
                                  k.period_start, k.period_end).where(k.run_id.in_(run_ids), k.owner.is_(None))
                        .order_by(k.kpi, k.variant))
    return [dict(r._mapping) for r in rows]


def _kpi_history(conn: sa.Connection, report: Report) -> None:
    runs = _runs(conn)
    if not runs:
        return
    report.run_id, report.as_of = runs[-1]
    shown = runs[-HISTORY_RUNS:]
    by_run: dict[str, dict[str, Decimal | None]] = defaultdict(dict)
    latest = []
    for r in _kpis_of(conn, [rid for rid, _ in shown]):
        by_run[r["run_id"]][_kpi_key(r["kpi"], r["variant"])] = r["value"]
        if r["run_id"] == report.run_id:
            latest.append({c: r[c] for c in KPI_COLUMNS})
    report.kpis = latest
    report.history = [{"run_id": rid, "as_of": day, "values": by_run.get(rid, {})} for rid, day in shown]
    if len(runs) > 1:
        prev_id, report.previous_as_of = runs[-2]
        for key, v in by_run.get(prev_id, {}).items():
            kpi, variant = key.split("/", 1)
            report.previous[(kpi, variant)] = v


def _exceptions(conn: sa.Connection) -> list[dict[str, Any]]:
    e = recon_exception.c
    rows = conn.execute(sa.select(recon_exception).where(e.status != "resolved").order_by(e.code, e.fingerprint))
    out = []
    for r in rows:
        m = dict(r._mapping)
        evidence = m.get("evidence") or {}
        out.append({
            "fingerprint": m["fingerprint"], "code": m["code"], "status": m["status"], "severity": m["severity"],
            "chain_id": m["chain_id"], "records": " ".join(m["subject_ids"] or []),
            "owner": m.get("assignee") or m["owner"],
            "currency": m["currency"], "amount_at_risk": _money(m["amount_at_risk"], m["currency"]),
            "reporting_currency": m["reporting_currency"],
            "amount_reporting": _money(m["amount_reporting"], m["reporting_currency"]),
            "first_seen_at": m["first_seen_at"], "last_seen_at": m["last_seen_at"],
            # display only
            "record_ids": list(m["subject_ids"] or []), "detail": evidence.get("detail") if isinstance(
                evidence, dict) else None, "bucket": evidence.get("bucket") if isinstance(evidence, dict) else None,
            "snoozed_until": m.get("snoozed_until"),
            # a source was missing when this run saw it: {"sources": [{name, status, since}]}
            "partial": evidence.get("partial") if isinstance(evidence, dict) else None,
        })
    return out


def _by_code(exceptions: list[dict[str, Any]], reporting: str | None) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in exceptions:
        groups[x["code"]].append(x)
    out = []
    for code in sorted(groups, key=lambda c: list(CODES).index(c) if c in CODES else len(CODES)):
        xs = groups[code]
        owners: dict[str, int] = defaultdict(int)
        for x in xs:
            owners[x["owner"] or "(unowned)"] += 1
        out.append({
            "code": code, "meaning": CODES.get(code, ""), "count": len(xs),
            "amount_reporting": _money(sum((x["amount_reporting"] or ZERO for x in xs), ZERO), reporting),
            "reporting_currency": next((x["reporting_currency"] for x in xs if x["reporting_currency"]), reporting),
            "owners": ", ".join(f"{o} ({n})" for o, n in sorted(owners.items(), key=lambda t: (-t[1], t[0]))),
            "owner_counts": sorted(((x, n) for x, n in Counter(x["owner"] for x in xs).items()),
                                   key=lambda t: (-t[1], t[0] or "")),  # display: None = unowned
            "unpriced": sum(1 for x in xs if x["amount_reporting"] is None and x["amount_at_risk"] is not None),
            # amounts that could not be converted, in their own currency (never counted as 0)
            "unconverted": _unconverted_totals(xs),
            "partial": sum(1 for x in xs if x.get("partial")),
        })
        if out[-1]["unpriced"] and all(x["amount_reporting"] is None for x in xs):  # nothing converted: no total, not 0
            out[-1]["amount_reporting"] = None
    return out


def _unconverted_totals(xs: list[dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for x in xs:
        if x["amount_reporting"] is None and x["amount_at_risk"] is not None and x["currency"]:
            totals[x["currency"]] = totals.get(x["currency"], ZERO) + x["amount_at_risk"]
    return dict(sorted(totals.items()))


def unconverted(exceptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gap: open exceptions whose amount could not be converted to the reporting currency."""
    return [{"fingerprint": x["fingerprint"], "code": x["code"], "currency": x["currency"],
             "amount_at_risk": x["amount_at_risk"], "reporting_currency": x["reporting_currency"]}
            for x in exceptions if x["amount_reporting"] is None and x["amount_at_risk"] is not None]


def _record(row: Any, entity: str, label: str | None, links: SourceLinks, **kw: Any) -> Record:
    return Record(id=row.id, entity=entity, system=row.source_system, object=row.source_object,
                  source_id=row.source_id, label=label or row.source_id,
                  url=links.url(row.source_system, row.source_object, row.source_id), **kw)


@dataclass
class _ChainSources:
    """What a batch of the chain table is built from: the live deals, the chain links by chain, the order, invoice
    and payment rows, the allocations per invoice, account names, exception codes."""

    deals: dict[str, Any]
    orders_of: dict[str, list[str]]
    invoices_of: dict[str, list[str]]
    stages_of: dict[tuple[str, str], list[str]]  # (chain, quote|contract|delivery) -> ids
    stage_text: dict[str, str]  # id -> "number (status)"
    order_rows: dict[str, Any]
    inv_rows: dict[str, Any]
    pay_rows: dict[str, Any]
    paid_on: dict[str, Decimal]
    pays_on: dict[str, list[str]]
    names: dict[str, str]
    codes_of: dict[str, set[str]]

    def stage_list(self, cid: str, entity: str) -> str:
        ids = self.stages_of.get((cid, entity))
        if not ids:
            return ""
        if len(ids) == 1:  # most chains: one quote, one contract, one delivery
            return self.stage_text.get(ids[0], ids[0])
        return "; ".join(self.stage_text.get(x, x) for x in sorted(set(ids)))


_SRC = ("source_system", "source_object", "source_id")

# What the chain table reads of each record, besides its id and source keys (amounts as the exact text stored, made
# Decimals as the store's own reads make them); a row of one is a named tuple of these fields.
_ROW_COLUMNS = {
    "deal": ("name", "account_id", "owner", "stage", "close_date", "currency", "amount"),
    "order": ("number", "total", "currency", "order_date"),
    "invoice": ("number", "kind", "total", "currency", "status", "issue_date"),
    "payment": ("amount", "currency", "payment_date", "payer_reference"),
}
_AMOUNTS = frozenset({"amount", "total"})
_ROWS: dict[str, Any] = {entity: namedtuple(f"{entity.title()}Row", ("id", *cols, *_SRC))
                         for entity, cols in _ROW_COLUMNS.items()}
_STAGES = {"quote": "status", "contract": "status", "delivery": "state"}  # linked stage -> its status column


CHAIN_BATCH = 20_000
"""Chains built at a time. Each batch's source rows become Python rows (named tuples, Decimals) only while it is
built, and its chain rows and records go into the report's frames (:class:`~reports.model.ChainTable`): a report's
memory is its frames and one batch, not a Python object per record (9.7 KB a chain before: ~10 GB at 1M)."""


def _fill_chains(engine: sa.Engine, report: Report, links: SourceLinks) -> None:
    """The report's chain table and the records its chains name, built a batch of chains at a time (by Polars:
    :func:`reports.chain_frames.chain_batch`; with :data:`BY_FRAMES` off, by the reference loop)."""
    frames = _source_frames(engine)
    codes_of: dict[str, set[str]] = defaultdict(set)
    for x in report.exceptions:
        if x["chain_id"]:
            codes_of[x["chain_id"]].add(x["code"])
    shared: set[str] = set()  # the records of several batches (an invoice of two chains, one in each)
    held: set[str] = set()  # those of them already in the report
    loop = partial(_loop, codes_of=codes_of, links=links)
    for ids, part in _batches(frames, _chain_ids(frames, codes_of), CHAIN_BATCH, shared):
        rows, chain_records, records = (chain_batch(part, ids, codes_of, links.urls, _minor_units, _money, loop)
                                        if BY_FRAMES else _loop_frames(part, ids, codes_of, links))
        if shared:  # a record an earlier batch holds is kept as it was first added
            again = set(records.filter(pl.col("id").is_in(pl.Series(list(shared), dtype=pl.String).implode()))
                        ["id"].to_list())
            if again & held:
                records = records.filter(~pl.col("id").is_in(pl.Series(list(again & held), dtype=pl.String).implode()))
            held |= again
        report.chains.add_frame(rows, chain_records)
        report.records.add_frame(records, new=True)


BY_FRAMES = True
"""The chain table built by Polars (:mod:`reports.chain_frames`); off, by the loop :func:`_chain_rows` (the
reference, which builds the chains the frames leave to it either way)."""


def _loop(frames: dict[str, pl.DataFrame], ids: list[str], *, codes_of: dict[str, set[str]],
          links: SourceLinks) -> list[dict[str, Any]]:
    """The reference loop's rows of the chains ``ids`` from their frames."""
    return _chain_rows(_chain_sources(frames, codes_of), ids, links, {})


def _loop_frames(part: dict[str, pl.DataFrame], ids: list[str], codes_of: dict[str, set[str]],
                 links: SourceLinks) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """What :func:`reports.chain_frames.chain_batch` gives, made by the reference loop."""
    described: dict[str, Record] = {}
    rows = _chain_rows(_chain_sources(part, codes_of), ids, links, described)
    chain_of: dict[str, str] = {}
    for row in rows:
        for rid in row["record_ids"]:
            chain_of.setdefault(rid, row["chain_id"])
    return (*chain_frames(rows), record_frame(described, chain_of))


def _minor_units(currency: str | None) -> int:
    """The decimals :func:`_money` gives an amount in ``currency``."""
    return -int(_places(currency).as_tuple().exponent)


def _chain_ids(frames: dict[str, pl.DataFrame], codes_of: dict[str, set[str]]) -> pl.Series:
    """Every chain shown, sorted: won deals, chains with an order or an invoice, deals with an exception."""
    deals, link = frames["deal"], frames["link"]
    to = pl.col("to_entity")
    won = deals.filter(pl.col("stage") == "closed_won")["id"]
    linked = link.filter(((to == "order") & (pl.col("from_entity") == "deal")) | (to == "invoice"))["chain_id"]
    flagged = deals.filter(pl.col("id").is_in(pl.Series(list(codes_of), dtype=pl.String).implode()))["id"]
    return pl.concat([won, linked, flagged]).unique().sort()


def _batches(frames: dict[str, pl.DataFrame], ids: pl.Series, size: int,
             shared: set[str]) -> Iterator[tuple[list[str], dict[str, pl.DataFrame]]]:
    """The chains ``ids`` a batch of ``size`` at a time, each with the rows of ``frames`` its chains name (a row two
    batches name is in both, and its id is put in ``shared``). Each frame is split into its batches once, by a join,
    and freed (``frames`` is emptied); each batch's rows are freed once it is built, so the rows read shrink as the
    report's frames grow (at 1M chains the process held 2.4 GB once they were read)."""
    index = pl.DataFrame({"key": ids}).with_row_index("batch").with_columns(pl.col("batch") // size)
    count = (ids.len() + size - 1) // size

    def split(entity: str, keys: pl.DataFrame, on: str) -> pl.DataFrame:  # keys: (key, batch), each pair once
        return frames.pop(entity).join(keys, left_on=on, right_on="key", how="inner")

    joined = {"link": split("link", index, "chain_id")}
    linked = joined["link"].select(pl.col("to_id").alias("key"), "batch").unique()
    joined["deal"] = split("deal", index, "id")
    joined["allocation"] = split("allocation", linked, "invoice_id")
    joined["payment"] = split("payment", joined["allocation"].select(pl.col("payment_id").alias("key"), "batch")
                              .unique(), "id")
    joined["account"] = split("account", joined["deal"].select(pl.col("account_id").alias("key"), "batch")
                              .unique(), "id")
    for entity in ("order", "invoice", *_STAGES):
        joined[entity] = split(entity, linked, "id")
    for entity in ("order", "invoice", "payment"):
        shared.update(joined[entity].group_by("id").len().filter(pl.col("len") > 1)["id"].to_list())
    empty = {entity: df.clear().drop("batch") for entity, df in joined.items()}
    parts: dict[str, dict[Any, pl.DataFrame]] = {}
    for entity in list(joined):
        parts[entity] = joined.pop(entity).partition_by("batch", as_dict=True, include_key=False)
    for batch in range(count):
        yield (ids.slice(batch * size, size).to_list(),
               {entity: parts[entity].pop((batch,), empty[entity]) for entity in empty})


def _source_frames(engine: sa.Engine) -> dict[str, pl.DataFrame]:
    """The tables the chain table is built from, read column-wise (:func:`canonical.columnar.read_tables`: on SQLite
    by its helper processes, not a Python row each through SQLAlchemy; at 20k chains the reads took 1.0-1.3 s here
    that way, most of it fetching and typing rows). Deals live only; orders, invoices, payments and accounts with
    their deleted rows, as a chain's links may name one; the links of a chain only."""
    text = pl.String
    wanted: dict[str, tuple[sa.Table, tuple[str, ...], dict[str, Any] | None]] = {
        entity: (ct.table_for(entity), ("id", *cols, *_SRC), {c: text for c in cols if c in _AMOUNTS})
        for entity, cols in _ROW_COLUMNS.items()}
    wanted["account"] = (ct.table_for("account"), ("id", "name"), None)
    wanted["link"] = (recon_link, ("chain_id", "from_entity", "to_entity", "to_id"), None)
    wanted["allocation"] = (recon_allocation, ("invoice_id", "payment_id", "amount"), {"amount": text})
    for entity, status in _STAGES.items():
        wanted[entity] = (ct.table_for(entity), ("id", "number", status), None)
    return columnar.read_tables(engine, wanted, with_deleted=set(wanted) - {"deal"}, then=_compact)


_FEW_VALUES = frozenset({"source_system", "source_object", "currency", "stage", "kind", "status", "from_entity",
                         "to_entity"})  # columns of a few distinct values: categorical, each value held once
_CHAIN_LINKS = ("order", "invoice", *_STAGES)  # the links the chain table reads (not to payments or settlements)


def _compact(name: str, df: pl.DataFrame) -> pl.DataFrame:
    """A frame as read, made smaller at once (at 1M chains the rows read took 3.1 GB before): the links of a chain
    only, to what the table shows; the columns of a few values categorical."""
    if name == "link":
        df = df.filter(pl.col("chain_id").is_not_null() & pl.col("to_entity").is_in(_CHAIN_LINKS))
    return df.with_columns(pl.col(c).cast(pl.Categorical) for c in df.columns
                           if c in _FEW_VALUES and df.schema[c] == pl.String)


def _chain_sources(frames: dict[str, pl.DataFrame], codes_of: dict[str, set[str]]) -> _ChainSources:
    orders_of, invoices_of, stages_of = _chain_links(frames["link"])
    paid_on, pays_on = _allocations(frames["allocation"])
    account = frames["account"]
    return _ChainSources(
        deals=_by_id(frames, "deal"), orders_of=orders_of, invoices_of=invoices_of, stages_of=stages_of,
        stage_text=_stage_texts(frames),
        order_rows=_by_id(frames, "order"), inv_rows=_by_id(frames, "invoice"), pay_rows=_by_id(frames, "payment"),
        paid_on=paid_on, pays_on=pays_on,
        names=dict(zip(account["id"].to_list(), account["name"].to_list(), strict=True)),
        codes_of=codes_of,
    )


def _by_id(frames: dict[str, pl.DataFrame], entity: str) -> dict[str, Any]:
    """The entity's rows by id, each a named tuple (:data:`_ROWS`), its amounts Decimals."""
    df = frames[entity]
    row = _ROWS[entity]
    columns = [[None if v is None else Decimal(v) for v in df[c].to_list()] if c in _AMOUNTS else df[c].to_list()
               for c in row._fields]
    return {r[0]: r for r in map(row._make, zip(*columns, strict=True))}


def _lists(links: pl.DataFrame) -> dict[str, list[str]]:
    """Per chain, the ``to_id`` of its links (in no particular order: readers sort them). Gathered here, not by
    Polars: a list column's ``to_list`` took three times as long."""
    out: dict[str, list[str]] = {}
    for chain, to_id in zip(links["chain_id"].to_list(), links["to_id"].to_list(), strict=True):
        ids = out.get(chain)
        if ids is None:
            out[chain] = [to_id]
        else:
            ids.append(to_id)
    return out


def _chain_links(links: pl.DataFrame) -> tuple[dict[str, list[str]], dict[str, list[str]],
                                                dict[tuple[str, str], list[str]]]:
    """Per chain: its orders (linked from the deal), its invoices, its quotes, contracts and deliveries."""
    to = pl.col("to_entity")
    orders_of = _lists(links.filter((to == "order") & (pl.col("from_entity") == "deal")))
    invoices_of = _lists(links.filter(to == "invoice"))
    stages_of = {(chain, entity): ids for entity in _STAGES
                 for chain, ids in _lists(links.filter(to == entity)).items()}
    return orders_of, invoices_of, stages_of


def _stage_texts(frames: dict[str, pl.DataFrame]) -> dict[str, str]:
    """The quotes, contracts and deliveries a chain links to as ``number (status)`` (the id for a number missing or
    empty; without the status for one missing or empty), by id."""
    links = frames["link"]
    stage_text: dict[str, str] = {}
    for entity, status in _STAGES.items():
        linked = links.filter(pl.col("to_entity") == entity).select(pl.col("to_id").alias("id")).unique()
        st, number = pl.col(status), pl.col("number")
        name = pl.when(number.is_null() | (number == "")).then(pl.col("id")).otherwise(number)
        df = frames[entity].join(linked, on="id", how="semi").select(
            "id", pl.when(st.is_null() | (st == "")).then(name).otherwise(pl.concat_str(name, pl.lit(" ("), st,
                                                                                            pl.lit(")"))).alias("text"))
        stage_text.update(zip(df["id"].to_list(), df["text"].to_list(), strict=True))
    return stage_text


def _allocations(allocations: pl.DataFrame) -> tuple[dict[str, Decimal], dict[str, list[str]]]:
    """Per invoice: the amount allocated to it, and the payments allocated."""
    paid_on: dict[str, Decimal] = defaultdict(lambda: ZERO)
    pays_on: dict[str, list[str]] = defaultdict(list)
    for inv_id, pay_id, amount in zip(allocations["invoice_id"].to_list(), allocations["payment_id"].to_list(),
                                      allocations["amount"].to_list(), strict=True):
        paid_on[inv_id] += Decimal(amount)
        pays_on[inv_id].append(pay_id)
    return paid_on, pays_on


def _chain_rows(data: _ChainSources, ids: list[str], links: SourceLinks,
                records: dict[str, Record]) -> list[dict[str, Any]]:
    """The chain table of the chains ``ids``, one row per chain: the deal, its stages, orders, invoices and payments,
    sums and status; each record the rows name described once in ``records`` (deal, orders, invoices, payments, in
    chain order).

    One loop with everything it reads bound locally: at 100k chains the table is half a million records and
    sums, and a call per record or per sum was most of the report's time."""
    deals, orders_of, invoices_of, codes_of = data.deals, data.orders_of, data.invoices_of, data.codes_of
    order_rows, inv_rows, pay_rows = data.order_rows, data.inv_rows, data.pay_rows
    paid_on, pays_on, names, stage_list = data.paid_on, data.pays_on, data.names, data.stage_list
    url, money = links.url, _money
    rows: list[dict[str, Any]] = []
    for cid in ids:
        d = deals.get(cid)
        linked = orders_of.get(cid)
        ords = sorted(set(linked)) if linked else []
        linked = invoices_of.get(cid)
        invs = sorted(set(linked)) if linked else []
        ccy = d.currency if d is not None else None
        rec_ids: list[str] = []
        deal_amount = deal_url = None
        if d is not None:
            deal_amount = money(d.amount, ccy)
            rec_ids.append(cid)
            if cid not in records:
                records[cid] = Record(cid, "deal", d.source_system, d.source_object, d.source_id,
                                      d.name or d.source_id, deal_amount, ccy, d.close_date, d.stage,
                                      url(d.source_system, d.source_object, d.source_id))
            deal_url = records[cid].url
        ordered = ZERO
        numbers: list[str] = []
        for o in ords:
            r = order_rows.get(o)
            if r is None:  # a link to an order whose row is gone: still counts as ordered (the status)
                continue
            ordered += Decimal(r.total or 0)
            numbers.append(r.number or o)
            rec_ids.append(o)
            if o not in records:
                records[o] = Record(o, "order", r.source_system, r.source_object, r.source_id, r.number or r.source_id,
                                    money(r.total, r.currency), r.currency, r.order_date, None,
                                    url(r.source_system, r.source_object, r.source_id))
        invoiced = paid = ZERO
        pays: set[str] = set()
        pay_ids: set[str] = set()
        inv_numbers: list[str] = []
        for i in invs:
            r = inv_rows.get(i)
            if r is None:
                continue
            total = abs(Decimal(r.total or 0))
            invoiced += -total if r.kind == "credit_note" else total
            paid += paid_on.get(i, ZERO)  # a refund is allocated (negative) to its credit note
            for p in pays_on.get(i, ()):
                pay_ids.add(p)
                pr = pay_rows.get(p)
                pays.add(f"{pr.source_system}:{pr.source_id}" if pr else p)
            inv_numbers.append(r.number or i)
            rec_ids.append(i)
            if i not in records:
                records[i] = Record(i, "invoice", r.source_system, r.source_object, r.source_id,
                                    r.number or r.source_id, money(r.total, r.currency), r.currency, r.issue_date,
                                    r.status, url(r.source_system, r.source_object, r.source_id))
        for p in sorted(pay_ids):
            if (r := pay_rows.get(p)) is not None:
                rec_ids.append(p)
                if p not in records:
                    records[p] = Record(p, "payment", r.source_system, r.source_object, r.source_id,
                                        r.payer_reference or r.source_id, money(r.amount, r.currency), r.currency,
                                        r.payment_date, None, url(r.source_system, r.source_object, r.source_id))
        invoiced = money(invoiced, ccy) or ZERO
        paid = money(paid, ccy) or ZERO
        ordered = money(ordered, ccy) or ZERO
        codes = sorted(codes_of.get(cid, ()))
        if codes:
            status = "exception"
        elif not ords and not invs:
            status = "won, not ordered"
        elif not invs:
            status = "ordered, not invoiced"
        elif invoiced - paid > _CENT:
            status = "partly paid" if paid > 0 else "invoiced, unpaid"
        else:
            status = "paid"
        rows.append({
            "chain_id": cid, "deal": d.source_id if d else None, "account": d.account_id if d else None,
            "customer": names.get(d.account_id) if d else None,
            "owner": d.owner if d else None, "stage": d.stage if d else None,
            "close_date": d.close_date if d else None, "currency": ccy,
            "deal_amount": deal_amount,
            "quotes": stage_list(cid, "quote"),
            "contract": stage_list(cid, "contract"),
            "orders": " ".join(numbers),
            "ordered": ordered,
            "deliveries": stage_list(cid, "delivery"),
            "invoices": " ".join(inv_numbers),
            "invoiced": invoiced,
            "payments": " ".join(sorted(pays)), "paid": paid, "open": invoiced - paid,
            "status": status,
            "exceptions": " ".join(codes),
            "record_ids": rec_ids, "deal_url": deal_url,  # display only
        })
    return rows


_CENT = Decimal("0.01")  # an invoice open by less than this is paid


def _subject_records(conn: sa.Connection, ids: list[str], links: SourceLinks,
                     held: set[str] | frozenset[str] = frozenset()) -> dict[str, Record]:
    """The records of ``ids`` (those that exceptions name), but for those ``held`` already (a chain's)."""
    records: dict[str, Record] = {}
    by_entity: dict[str, set[str]] = defaultdict(set)
    for cid in ids:
        parts = cid.split(":", 2)
        if cid not in held and len(parts) == 3:
            by_entity[parts[1]].add(cid)
    label_col = {"order": "number", "invoice": "number", "deal": "name", "account": "name",
                 "payment": "payer_reference"}
    amount_col = {"order": "total", "invoice": "total", "deal": "amount", "payment": "amount"}
    for entity, wanted in by_entity.items():
        try:
            t = ct.table_for(entity)
        except KeyError:
            continue
        cols = [t.c.id, t.c.source_system, t.c.source_object, t.c.source_id]
        lab = label_col.get(entity)
        amt = amount_col.get(entity)
        extra = [t.c[c] for c in (lab, amt) if c and c in t.c] + ([t.c.currency] if "currency" in t.c else [])
        chunk = sorted(wanted)
        for i in range(0, len(chunk), 500):
            for r in conn.execute(sa.select(*cols, *extra).where(t.c.id.in_(chunk[i:i + 500]))):
                m = r._mapping
                ccy = m.get("currency")
                records[r.id] = _record(r, entity, m.get(lab) if lab else None, links,
                                        amount=_money(m.get(amt), ccy) if amt else None, currency=ccy)
    return records


def describe(conn: sa.Connection, ids: list[str], links: SourceLinks) -> dict[str, Record]:
    """Canonical ids -> their records with source links (ids whose row is gone are left out)."""
    return _subject_records(conn, ids, links)


def chain_detail(conn: sa.Connection, chain_id: str, links: SourceLinks) -> dict[str, Any]:
    """One chain as a tree: deal -> orders -> invoices -> payments, with the amount at each hop and the
    rule (and confidence) that linked it; invoices linked to the deal directly hang under the deal."""
    lk, al = recon_link.c, recon_allocation.c
    rows = conn.execute(sa.select(lk.from_entity, lk.from_id, lk.to_entity, lk.to_id, lk.rule_id, lk.confidence)
                        .where(lk.chain_id == chain_id).order_by(lk.to_entity, lk.to_id)).all()
    inv_ids = sorted({r.to_id for r in rows if r.to_entity == "invoice"})
    allocs = conn.execute(sa.select(al.invoice_id, al.payment_id, al.rule_id, al.amount, al.currency,
                                    al.payment_amount, al.payment_currency, al.fx_rate)
                          .where(al.invoice_id.in_(inv_ids)).order_by(al.payment_id)).all() if inv_ids else []
    ids = [chain_id] + [r.to_id for r in rows] + [a.payment_id for a in allocs]
    records = describe(conn, ids, links)
    pays_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in allocs:
        pays_of[a.invoice_id].append({"record": records.get(a.payment_id), "id": a.payment_id, "rule": a.rule_id,
                                      "applied": _money(a.amount, a.currency), "currency": a.currency,
                                      "payment_amount": _money(a.payment_amount, a.payment_currency),
                                      "payment_currency": a.payment_currency, "fx_rate": a.fx_rate})

    def invoice(r: Any) -> dict[str, Any]:
        return {"record": records.get(r.to_id), "id": r.to_id, "rule": r.rule_id, "confidence": r.confidence,
                "payments": pays_of.get(r.to_id, [])}

    orders = [{"record": records.get(r.to_id), "id": r.to_id, "rule": r.rule_id, "confidence": r.confidence,
               "invoices": [invoice(i) for i in rows if i.to_entity == "invoice" and i.from_id == r.to_id]}
              for r in rows if r.to_entity == "order"]
    order_ids = {o["id"] for o in orders}
    direct = [invoice(i) for i in rows if i.to_entity == "invoice" and i.from_id not in order_ids]
    return {"chain_id": chain_id, "deal": records.get(chain_id), "orders": orders, "direct_invoices": direct,
            "records": records}


def _rates(conn: sa.Connection, to: str, on: date) -> dict[str, Decimal]:
    """Currency -> rate into ``to``, the latest dated on or before ``on`` (direct, else inverse)."""
    f = fx_rate.c
    out: dict[str, tuple[date, Decimal]] = {}
    for base, quote, day, rate in conn.execute(sa.select(f.base, f.quote, f.rate_date, f.rate)
                                               .where(f.rate_date <= on, sa.or_(f.quote == to, f.base == to))):
        r = Decimal(rate)
        if quote == to:
            key, value = base, r
        elif r != 0:
            key, value = quote, Decimal(1) / r
        else:
            continue
        if key not in out or day >= out[key][0]:
            out[key] = (day, value)
    rates = {k: v for k, (_, v) in out.items()}
    rates[to] = Decimal(1)
    return rates


def _month(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _per_month(rows: pl.DataFrame, day: str, amount: str, rates: dict[str, Decimal],
               negative_kind: str) -> tuple[dict[str, Decimal], int]:
    """Sums per month of rows (``day``, ``kind``, ``amount`` as exact text, ``currency``) in the reporting currency;
    rows of ``negative_kind`` count negative; rows without a rate are counted, not summed. Each (month, currency,
    sign)'s amounts are summed exactly by Polars (:func:`reports.chain_frames.exact_sums`), then converted at its rate
    once (the rows a Python loop over Decimals at 1M chains took 12 s)."""
    sums: dict[str, Decimal] = defaultdict(lambda: ZERO)
    rated = pl.col("currency").cast(pl.String).fill_null("").is_in(list(rates))
    missing = rows.filter(~rated | pl.col(amount).is_null()).height
    grouped = rows.filter(rated & pl.col(amount).is_not_null()).select(
        pl.col(day).dt.strftime("%Y-%m").alias("month"), pl.col("currency").cast(pl.String),
        (pl.col("kind").cast(pl.String) == negative_kind).fill_null(False).alias("negative"), amount)
    with decimal.localcontext(decimal.Context(prec=_EXACT)):  # the sums exact, however large (28 digits rounded)
        for (month, ccy, negative), total in exact_sums(grouped, ["month", "currency", "negative"], amount, _abs_sum):
            sums[month] += (-total if negative else total) * rates[ccy]
    return sums, missing


_EXACT = 200  # digits: more than a sum of amounts of a store can have (Decimal(38, 6) sums, rates of 28 digits)


def _abs_sum(texts: Iterable[str]) -> Decimal:
    return sum((abs(Decimal(t)) for t in texts), ZERO)


def _cents(v: Decimal) -> Decimal:
    """A month's sum to the cent, however large (the default context's 28 digits refused a month of ``1E+30``: the
    whole report stopped on one absurd invoice); not a number stays as it is."""
    if not v.is_finite():
        return v
    return v.quantize(_CENT, context=decimal.Context(prec=max(28, v.adjusted() + 3)))


def _monthly(conn: sa.Connection, report: Report, months: int = 12) -> None:
    """Invoiced (issued, credit notes negative) and collected (payments received) per month, in the
    reporting currency at the as-of rate; the last ``months`` months up to as-of."""
    rep, as_of = report.reporting_currency, report.as_of
    if not rep or as_of is None:
        return
    keys = []
    y, m = as_of.year, as_of.month
    for _ in range(months):
        keys.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    keys.reverse()
    first = date(int(keys[0][:4]), int(keys[0][5:]), 1)
    rates = _rates(conn, rep, as_of)
    text = pl.String
    read = columnar.read_tables(conn.engine, {
        "invoice": (ct.table_for("invoice"), ("issue_date", "kind", "total", "currency", "status"), {"total": text}),
        "payment": (ct.table_for("payment"), ("payment_date", "kind", "amount", "currency"), {"amount": text})})
    inv = read["invoice"].filter(pl.col("issue_date").is_between(first, as_of),
                                 ~pl.col("status").cast(pl.String).is_in(["void", "draft"]))
    pay = read["payment"].filter(pl.col("payment_date").is_between(first, as_of))
    invoiced, miss_inv = _per_month(inv, "issue_date", "total", rates, "credit_note")
    collected, miss_pay = _per_month(pay, "payment_date", "amount", rates, "refund")
    missing = miss_inv + miss_pay
    report.monthly = [{"month": k, "invoiced": _money(_cents(invoiced[k]), rep),
                       "collected": _money(_cents(collected[k]), rep)} for k in keys]
    report.monthly_unconverted = missing


def build_report(store: Store, config: Any | None = None, *, chains: bool = True, monthly: bool = True) -> Report:
    """Read the latest reconciliation results from the store (``config``: ltc.yaml, for source links;
    ``chains=False``: KPIs, history and exceptions only, as the work queue's KPI page needs;
    ``monthly=False``: without the invoiced-vs-collected months, :func:`add_monthly` adds them)."""
    links = SourceLinks.from_config(config)
    report = Report(as_of=None, run_id=None, reporting_currency=None)
    # a large report is a million small acyclic objects: collections would only re-scan them, again and again
    with no_gc(), _one_run(store.engine, chains) as conn:
        _kpi_history(conn, report)
        report.exceptions = _exceptions(conn)
        if chains:
            _fill_chains(conn.engine, report, links)
            named = [i for x in report.exceptions for i in (*x["record_ids"], x["chain_id"]) if i]
            held = report.records.lookup(named)
            more = _subject_records(conn, named, links, set(held))
            report.records.add(more, new=True)
            report.records.seal()
            report.chains.seal()
            report.named = {**held, **more}
        reporting = next((x["reporting_currency"] for x in report.exceptions if x["reporting_currency"]), None)
        if reporting is None:
            reporting = next((k["unit"] for k in report.kpis if k["kpi"] == "unapplied_cash"), None)
        if reporting is None and config is not None:
            reporting = getattr(config, "reporting_currency", None)
        report.reporting_currency = reporting
        report.by_code = _by_code(report.exceptions, reporting)
        report.unconverted = unconverted(report.exceptions)
        if monthly:
            _monthly(conn, report)
    return report


@contextlib.contextmanager
def _one_run(engine: sa.Engine, chains: bool) -> Iterator[sa.Connection]:
    """A connection to read one reconciliation's results with, never a mix of two: a reconciliation commits its links
    and then its KPIs and exceptions, and the chain table is read by other connections too (the columnar readers),
    over seconds (a minute at 1M chains). With ``chains``, the reads hold the store's ``reconcile`` lock: a report
    waits for a running reconciliation, saying so, and one starting meanwhile waits for the report (a read-only
    store, which no reconciliation writes, is read without). Without (KPIs and exceptions: the work queue's page,
    read at every view, never waiting), one connection's snapshot: a transaction, repeatable read on PostgreSQL;
    the two are committed together."""
    with contextlib.ExitStack() as held:
        if chains:
            try:
                held.enter_context(stage_lock(engine, "reconcile"))
            except sa.exc.OperationalError as exc:
                if "readonly" not in str(exc).lower():
                    raise
        conn = held.enter_context(engine.connect())
        if not chains and engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if not chains and engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")  # pysqlite opens no transaction for reads: each would see the latest
            yield conn


def add_monthly(store: Store, report: Report) -> None:
    """The invoiced-vs-collected months of a report built with ``monthly=False``."""
    with store.engine.connect() as conn:
        _monthly(conn, report)


def _write_csv(path: Path, columns: list[str], rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([csv_value(r.get(c)) for c in columns])


def write_reports(store: Store, out_dir: str | Path, *, title: str | None = None, config: Any | None = None,
                  lang: str | None = None, locale: str | None = None, banners: list[str] | None = None,
                  previous_complete: str | None = None, notes: list[str] | None = None) -> ReportFiles:
    """Write the HTML, CSV and XLSX reports of the latest reconciliation into ``out_dir``.

    ``banners``: lines shown at the top when the data is partial (a source paused or failed);
    ``previous_complete``: a link to the last complete report, kept beside this one; ``notes``: lines
    about the data shown under the header (stale FX rates, a rate source that could not be read).
    ``lang``: ``en`` or ``zh`` (default: the language of ``reporting_locale``); ``locale``: how numbers,
    money and dates are written (default: ``reporting_locale`` of ltc.yaml when its language is
    ``lang``, else the language's usual locale).
    """
    from reports.html import render_html
    from reports.i18n import report_language

    lang, locale = report_language(lang, locale or getattr(config, "reporting_locale", None))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(store, config, monthly=False)  # the months are only on the page: read beside the workbook
    report.banners = list(banners or [])
    report.previous_complete = previous_complete
    report.notes = list(notes or [])
    files = _files(out, report)
    # Written beside, then moved in: a reader (finance opening the workbook mid-run, the pipeline keeping the last
    # complete report) never meets a file half written, and a run that fails or is killed leaves the last report
    # whole (a killed run's folder is removed by the next: canonical.scratch)
    with scratch_dir("ltc-report-", out) as staging:
        staged = _files(Path(staging), report)
        xlsx = _start_xlsx(staged.xlsx, report, lang, locale)
        # the collector off here too: it would scan the report's objects again and again while the files are written
        with no_gc():
            try:
                add_monthly(store, report)
                _write_csv(staged.csv["exceptions"], EXCEPTION_COLUMNS, report.exceptions)
                write_chains_csv(staged.csv["chains"], report.chains.frames(), CHAIN_COLUMNS, CHAIN_MONEY, csv_value)
                _write_csv(staged.csv["kpis"], KPI_COLUMNS, report.kpis)
                staged.html.write_text(render_html(report, title, lang=lang, locale=locale), encoding="utf-8")
                xlsx.result()  # a small report's workbook is written here, now; a child's error is raised here
            finally:
                xlsx.cancel()
        for name in ("exceptions", "chains", "kpis"):
            os.replace(staged.csv[name], files.csv[name])
        os.replace(staged.xlsx, files.xlsx)
        os.replace(staged.html, files.html)  # the page last: what it links to is in place
    return files


def _files(out: Path, report: Report) -> ReportFiles:
    return ReportFiles(directory=out, html=out / "report.html", xlsx=out / "report.xlsx", csv={
        "exceptions": out / "exceptions.csv", "chains": out / "chains.csv", "kpis": out / "kpis.csv"}, report=report)


XLSX_FORK_FROM = 5_000
"""Rows (chains, records and exceptions): a report this large writes its workbook in a forked child
(:func:`canonical.forking.start_child`) while this process writes the CSV files and the HTML page —
the two take about as long, and the other core is otherwise idle then. The workbook is the same."""

XLSX_SPLIT_FROM = 20_000
"""Chains: a report with this many writes its chains sheet in this process, by Polars
(:func:`reports.xlsx.write_sheet_part_frames`), while a forked child writes the rest of the workbook (the records
sheet, the largest, with it), and puts it in its place once both are done. At 1M chains the sheet took a second child
about 30 s of a core a cell at a time."""

APART, APART_SHEET = "chains", 4  # KPIs, exceptions by code, exceptions, chains: its place in the workbook


def _rows(report: Report) -> int:
    return len(report.chains) + len(report.records) + len(report.exceptions)


class _Workbook:
    """``report.xlsx`` being written: in a forked child (a large report), or here when :meth:`result` is asked for
    (a small one); a very large one with its chains sheet apart, written here (:data:`XLSX_SPLIT_FROM`)."""

    def __init__(self, path: Path, report: Report, lang: str, locale: str) -> None:
        from canonical.forking import forks
        from reports.xlsx import write_xlsx

        self.path, self.report, self.lang, self.locale = path, report, lang, locale
        self.part: Path | None = None
        split = len(report.chains) >= XLSX_SPLIT_FROM and forks()
        self.book: Pending[Any] = Pending(partial(write_xlsx, path, report, lang=lang, locale=locale,
                                                  apart=APART if split else None),
                                          fork=_rows(report) >= XLSX_FORK_FROM, name="ltc-report-xlsx")
        if split:
            self.part = path.with_name(f".{path.name}.{APART}.part")

    def result(self) -> None:
        """The sheet apart written here, then the workbook waited for (a child's error is raised here)."""
        from reports.xlsx import styles_agree, write_sheet_part_frames, write_xlsx
        from reports.xlsx_stream import add_sheet_part

        apart = (write_sheet_part_frames(self.part, self.report, APART, APART_SHEET, lang=self.lang)
                 if self.part is not None else None)
        placed, styles = self.book.result()
        if apart is None or self.part is None:
            return
        rels, used = apart
        if placed == APART_SHEET and styles_agree(styles, used):
            add_sheet_part(self.path, placed, self.part, rels)
        else:  # numbered apart otherwise than the workbook: the whole workbook again, here (never seen)
            log.warning("the %s sheet was written with other styles than its workbook: written again in one go", APART)
            write_xlsx(self.path, self.report, lang=self.lang, locale=self.locale)

    def cancel(self) -> None:
        self.book.cancel()
        if self.part is not None:
            self.part.unlink(missing_ok=True)


def _start_xlsx(path: Path, report: Report, lang: str, locale: str) -> _Workbook:
    """The workbook, written by forked children (which inherit ``report`` as built) for a large report."""
    return _Workbook(path, report, lang, locale)


__all__ = ["CHAIN_COLUMNS", "EXCEPTION_COLUMNS", "HTML_CHAIN_LIMIT", "KPI_COLUMNS", "Record", "Report", "ReportFiles",
           "build_report", "chain_detail", "describe", "write_reports"]
