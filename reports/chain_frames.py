"""The chain table of a batch of chains, built by Polars on the batch's frames (no Python object per record).

:func:`chain_batch` gives what :func:`reports.finance._chain_rows` gives for the same chains (that loop stays the
reference, and builds the few chains it cannot), as frames: the chain rows, each chain's records in its order, and
each record once, described.

Amounts stay exact: a plain amount (``-?digits[.digits]``, at most 15 digits before the point and 6 after) is summed
as a Polars ``Decimal(38, 6)`` and written as the ``Decimal`` the loop makes would be written: its exponent is
tracked beside it (a sum's is its terms' smallest, as :mod:`decimal` adds exactly), and :func:`reports.finance._money`
is applied as it decides (its currency's decimals where they lose nothing). Anything else (``1.23E+29``, ``NaN``,
``-0.00``, more digits) is left to the loop: a record's amount is made by ``_money`` itself, a chain whose sums read
one is built by the loop whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from reports.cells import PRINTABLE_ASCII, STARTS_FORMULA
from reports.model import CHAIN_SCHEMA, RECORD_SCHEMA

SCALE = 6  # digits after the point a plain amount may have
DEC = pl.Decimal(38, SCALE)
_PLAIN = rf"^-?[0-9]{{1,15}}(?:\.[0-9]{{0,{SCALE}}})?$"
_CENT = Decimal("0.01")
_MONEY_COLUMNS = ("ordered", "invoiced", "paid", "open", "status")  # what a chain the loop builds takes from it


def _plain(text: pl.Expr) -> pl.Expr:
    """Whether an amount's text is one this module sums and writes (not a negative zero: ``-0.00`` keeps its sign)."""
    return text.str.contains(_PLAIN) & ~(text.str.starts_with("-") & (text.cast(DEC, strict=False) == 0))


def _digits(text: pl.Expr) -> pl.Expr:
    """The digits after the point a plain amount's text has (its ``Decimal``'s exponent, negated)."""
    return text.str.extract(r"\.([0-9]*)$", 1).str.len_chars().fill_null(0).cast(pl.Int32)


def _written(value: pl.Expr, digits: pl.Expr) -> pl.Expr:
    """A ``Decimal(38, 6)`` written with ``digits`` after the point (0: none), as ``str(Decimal)`` writes it."""
    s = value.cast(pl.String)
    return s.str.head(s.str.len_chars() - SCALE + digits - (digits == 0).cast(pl.Int32))


def _money_digits(value: pl.Expr, digits: pl.Expr, places: pl.Expr) -> pl.Expr:
    """The digits ``_money`` writes an amount with: its currency's (``places``) where that loses nothing, else its
    own."""
    s = value.cast(pl.String)
    shown = s.str.strip_chars_end("0").str.len_chars() - s.str.len_chars() + SCALE  # digits after the point, not 0
    return pl.when(shown <= places).then(places).otherwise(digits)


class Places:
    """A currency's decimals (``_money``'s), as a column: known currencies looked up once each."""

    def __init__(self, places_of: Callable[[str | None], int]) -> None:
        self._of = places_of
        self._known: dict[str | None, int] = {}

    def expr(self, frame: pl.DataFrame, currency: str) -> pl.Expr:
        values = frame[currency].cast(pl.String)
        for c in values.unique().to_list():
            if c not in self._known:
                self._known[c] = self._of(c)
        mapping = {c: p for c, p in self._known.items() if c is not None}
        return (pl.col(currency).cast(pl.String).replace_strict(mapping, default=self._known.get(None, 2),
                                                                return_dtype=pl.Int32)
                if mapping else pl.lit(self._known.get(None, 2), pl.Int32))


def _money_text(df: pl.DataFrame, text: str, currency: str, places: Places, out: str,
                money: Callable[[Any, str | None], Decimal | None]) -> pl.DataFrame:
    """``df`` with ``out``: ``str(_money(text, currency))`` (None for None), by Polars for a plain amount, by
    ``money`` itself for any other."""
    t = pl.col(text)
    df = df.with_columns(places.expr(df, currency).alias("_p"))
    plain = _plain(t) & (pl.col("_p") <= SCALE)
    value = t.cast(DEC, strict=False)
    done = df.with_columns(pl.when(plain).then(
        _written(value, _money_digits(value, _digits(t), pl.col("_p")))).alias(out))
    odd = done.filter(t.is_not_null() & pl.col(out).is_null()).select(text, pl.col(currency).cast(pl.String)).unique()
    if odd.height:
        fixed = odd.with_columns(pl.Series("_fixed", [str(money(v, c)) for v, c in odd.iter_rows()], pl.String))
        done = done.join(fixed, on=[text, currency], how="left", nulls_equal=True).with_columns(
            pl.coalesce(out, "_fixed").alias(out)).drop("_fixed")
    return done.drop("_p")


def _or_zero(value: pl.Expr, digits: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``_money(...) or ZERO``: a zero is ``Decimal(0)`` (no digits after the point)."""
    return value, pl.when(value == 0).then(0).otherwise(digits)


def _str(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String)


def _joined(df: pl.DataFrame, key: str, text: str, sep: str, order: str) -> pl.DataFrame:
    """Per ``key``: its ``text`` values in ``order``, joined by ``sep``."""
    return df.sort(key, order).group_by(key, maintain_order=True).agg(pl.col(text).str.join(sep))


def chain_batch(part: dict[str, pl.DataFrame], ids: list[str], codes_of: dict[str, set[str]],
                urls: Callable[[pl.Series, pl.Series, pl.Series], pl.Series], places_of: Callable[[str | None], int],
                money: Callable[[Any, str | None], Decimal | None],
                loop: Callable[[dict[str, pl.DataFrame], list[str]], list[dict[str, Any]]]
                ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The chains ``ids`` (sorted) from their batch's frames (:func:`reports.finance._batches`): the chain rows
    (:data:`~reports.model.CHAIN_SCHEMA`), each chain's records in its order (``chain_id``, ``record_id``), and every
    record they name once, in the order first named, with the chain that names it first
    (:data:`~reports.model.RECORD_SCHEMA`). ``urls``: each record's link (``SourceLinks.urls``); ``places_of``: a
    currency's decimals; ``money``: ``_money``; ``loop(frames, ids)``: the reference's rows of the chains ``ids`` from
    those frames, for the chains whose sums read an amount not plain."""
    places = Places(places_of)
    chains = pl.DataFrame({"chain_id": ids}, schema={"chain_id": pl.String}).with_row_index("_n")
    link = part["link"].select("chain_id", _str("from_entity"), _str("to_entity"), "to_id")
    to = pl.col("to_entity")
    ord_links = link.filter((to == "order") & (pl.col("from_entity") == "deal")).select(
        "chain_id", pl.col("to_id").alias("id")).unique()
    inv_links = link.filter(to == "invoice").select("chain_id", pl.col("to_id").alias("id")).unique()

    # each record's own columns, its amount as _money writes it (its own currency's decimals)
    def texts(entity: str, *more: str) -> pl.DataFrame:
        return part[entity].with_columns(_str("source_system"), _str("source_object"), _str("currency"),
                                         *(_str(c) for c in more))
    deal = _money_text(texts("deal", "stage"), "amount", "currency", places, "deal_amount", money)
    account = part["account"].select(pl.col("id").alias("account_id"), pl.col("name").alias("customer"))
    deal = deal.join(account.unique("account_id", keep="first"), on="account_id", how="left")
    order = _money_text(texts("order"), "total", "currency", places, "amount", money)
    inv = _money_text(texts("invoice", "kind", "status"), "total", "currency", places, "amount", money)
    payment = _money_text(texts("payment"), "amount", "currency", places, "_amount", money).drop("amount").rename(
        {"_amount": "amount"})

    # the orders and invoices a chain links to whose rows are there, the sums they read, the payments allocated
    alloc = part["allocation"].with_columns(_plain(pl.col("amount")).alias("_plain"),
                                            pl.col("amount").cast(DEC, strict=False).alias("_v"),
                                            _digits(pl.col("amount")).alias("_d"))
    paid_on = alloc.group_by("invoice_id").agg(pl.col("_v").sum().alias("_paid"), pl.col("_d").max().alias("_pd"),
                                               (~pl.col("_plain")).any().alias("_paid_odd"))
    ords = _summed(ord_links.join(order, on="id", how="inner"))
    invs = _summed(inv_links.join(inv, on="id", how="inner"))
    invs = invs.with_columns(pl.when(pl.col("kind") == "credit_note").then(-pl.col("_v").abs())
                             .otherwise(pl.col("_v").abs()).alias("_v")).join(
        paid_on.rename({"invoice_id": "id"}), on="id", how="left")
    inv_sums = _per_chain(invs, "invoice").join(invs.group_by("chain_id").agg(
        pl.col("_paid").sum().alias("_paid_v"), pl.col("_pd").max().alias("_paid_d"),
        pl.col("_paid_odd").any().alias("_paid_odd")), on="chain_id", how="left")
    pays, pay_texts = _payments(invs, alloc, payment)

    codes = pl.DataFrame({"chain_id": [c for c in ids if codes_of.get(c)],
                          "exceptions": [" ".join(sorted(codes_of[c])) for c in ids if codes_of.get(c)]},
                         schema={"chain_id": pl.String, "exceptions": pl.String})
    linked_n = ord_links.group_by("chain_id").len("_n_ord").join(
        inv_links.group_by("chain_id").len("_n_inv"), on="chain_id", how="full", coalesce=True)
    t = chains.join(deal.select(pl.col("id").alias("chain_id"), pl.col("source_id").alias("deal"),
                                pl.col("account_id").alias("account"), "customer", "owner", "stage", "close_date",
                                "currency", "deal_amount", pl.lit(True).alias("_has_deal")),
                    on="chain_id", how="left")
    for extra in (_per_chain(ords, "order"), inv_sums, pay_texts, *_stage_lists(part, link), codes, linked_n):
        t = t.join(extra, on="chain_id", how="left")
    t = _sums_and_status(t.sort("_n").with_columns(places.expr(t, "currency").alias("_p")))

    # each chain's records in its order: the deal, its orders, its invoices, its payments (by id each)
    recs = pl.concat([
        t.filter(pl.col("_has_deal").is_not_null()).select("chain_id", pl.col("chain_id").alias("record_id"),
                                                           pl.lit(0).alias("_rank")),
        ords.select("chain_id", pl.col("id").alias("record_id"), pl.lit(1).alias("_rank")),
        invs.select("chain_id", pl.col("id").alias("record_id"), pl.lit(2).alias("_rank")),
        pays.filter(pl.col("_there").is_not_null()).select(
            "chain_id", pl.col("id").alias("record_id"), pl.lit(3).alias("_rank")),
    ]).join(chains, on="chain_id").sort("_n", "_rank", "record_id")
    about = pl.concat([_described(deal, "deal", "name", "close_date", "stage"),
                       _described(order, "order", "number", "order_date", None),
                       _described(inv, "invoice", "number", "issue_date", "status"),
                       _described(payment, "payment", "payer_reference", "payment_date", None)],
                      how="vertical_relaxed").unique("id", keep="first")
    records = recs.unique("record_id", keep="first", maintain_order=True).select(
        pl.col("record_id").alias("id"), "chain_id").join(about, on="id", how="left", maintain_order="left")
    records = records.with_columns(urls(records["system"], records["object"], records["source_id"]))
    deal_urls = records.filter(pl.col("entity") == "deal").select("chain_id", pl.col("url").alias("deal_url"))
    t = t.join(deal_urls, on="chain_id", how="left", maintain_order="left")

    odd_ids = t.filter(pl.col("_odd"))["chain_id"].to_list()
    if odd_ids:
        t = _by_the_loop(t, part, odd_ids, loop)
    return (t.select([pl.col(c).cast(dtype) for c, dtype in CHAIN_SCHEMA.items()]),
            recs.select("chain_id", "record_id"),
            records.select([pl.col(c).cast(dtype) for c, dtype in RECORD_SCHEMA.items()]))


def _summed(rows: pl.DataFrame) -> pl.DataFrame:
    """Orders or invoices with their total's value and digits as ``Decimal(r.total or 0)`` makes them (a zero or a
    missing total: ``0``), and whether it is one the loop must add."""
    t = pl.col("total")
    v = t.cast(DEC, strict=False).fill_null(0)
    return rows.with_columns(v.alias("_v"), pl.when(v == 0).then(0).otherwise(_digits(t)).alias("_d"),
                             (t.is_not_null() & ~_plain(t)).alias("_odd"))


def _per_chain(rows: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """Per chain: its orders' or invoices' numbers (the id for one missing or empty) by id, their sum and digits."""
    number = pl.col("number")
    named = rows.with_columns(pl.when(number.is_null() | (number == "")).then(pl.col("id")).otherwise(number)
                              .alias("_no"))
    return named.sort("chain_id", "id").group_by("chain_id", maintain_order=True).agg(
        pl.col("_no").str.join(" ").alias(f"{prefix}s"), pl.col("_v").sum().alias(f"_{prefix}_v"),
        pl.col("_d").max().alias(f"_{prefix}_d"), pl.col("_odd").any().alias(f"_{prefix}_odd"))


def _payments(invs: pl.DataFrame, alloc: pl.DataFrame, payment: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The payments allocated to a chain's invoices (``_there``: their row is there), and per chain their texts
    (``system:source id``, the id for a row not there), sorted and joined."""
    pays = invs.select("chain_id", pl.col("id").alias("invoice_id")).join(
        alloc.select("invoice_id", pl.col("payment_id").alias("id")), on="invoice_id", how="inner").select(
        "chain_id", "id").unique()
    pays = pays.join(payment.select("id", "source_system", "source_id", pl.lit(True).alias("_there")), on="id",
                     how="left").with_columns(
        pl.when(pl.col("_there").is_not_null())
        .then(pl.concat_str(pl.col("source_system").fill_null("None"), pl.lit(":"),
                            pl.col("source_id").fill_null("None")))
        .otherwise(pl.col("id")).alias("_text"))
    texts = pays.select("chain_id", "_text").unique().sort("chain_id", "_text").group_by(
        "chain_id", maintain_order=True).agg(pl.col("_text").str.join(" ").alias("payments"))
    return pays, texts


def _stage_lists(part: dict[str, pl.DataFrame], link: pl.DataFrame) -> list[pl.DataFrame]:
    """Per chain: its quotes, contracts and deliveries, ``number (status)`` each (the id for a number missing or
    empty, no status for one missing or empty, the id alone for a row not there), by id, ``; `` between."""
    out = []
    for entity, status, column in (("quote", "status", "quotes"), ("contract", "status", "contract"),
                                   ("delivery", "state", "deliveries")):
        st, number = pl.col(status).cast(pl.String), pl.col("number")
        name = pl.when(number.is_null() | (number == "")).then(pl.col("id")).otherwise(number)
        texts = part[entity].select("id", pl.when(st.is_null() | (st == "")).then(name).otherwise(
            pl.concat_str(name, pl.lit(" ("), st, pl.lit(")"))).alias("_text")).unique("id", keep="first")
        linked = link.filter(pl.col("to_entity") == entity).select("chain_id", pl.col("to_id").alias("id")).unique(
        ).join(texts, on="id", how="left").with_columns(pl.coalesce("_text", "id").alias("_text"))
        out.append(_joined(linked, "chain_id", "_text", "; ", "id").rename({"_text": column}))
    return out


def _sums_and_status(t: pl.DataFrame) -> pl.DataFrame:
    """The chain rows' ordered, invoiced, paid and open amounts written as the loop writes them (each ``_money(...)
    or ZERO``; open: invoiced less paid), the status, and ``_odd``: whether the loop must make the sums."""
    def money_sum(v: str, d: str) -> tuple[pl.Expr, pl.Expr]:
        value = pl.col(v).fill_null(0).cast(DEC)
        return _or_zero(value, _money_digits(value, pl.col(d).fill_null(0), pl.col("_p")))

    (ov, od), (iv, idg), (pv, pdg) = (money_sum("_order_v", "_order_d"), money_sum("_invoice_v", "_invoice_d"),
                                      money_sum("_paid_v", "_paid_d"))
    open_v = iv - pv
    n_ord, n_inv = pl.col("_n_ord").fill_null(0), pl.col("_n_inv").fill_null(0)
    state = (pl.when(pl.col("exceptions").is_not_null()).then(pl.lit("exception"))
             .when((n_ord == 0) & (n_inv == 0)).then(pl.lit("won, not ordered"))
             .when(n_inv == 0).then(pl.lit("ordered, not invoiced"))
             .when(open_v > pl.lit(_CENT)).then(pl.when(pv > 0).then(pl.lit("partly paid"))
                                                 .otherwise(pl.lit("invoiced, unpaid")))
             .otherwise(pl.lit("paid")))
    odd = (pl.col("_order_odd").fill_null(False) | pl.col("_invoice_odd").fill_null(False)
           | pl.col("_paid_odd").fill_null(False) | (pl.col("_p") > SCALE))
    return t.with_columns(
        _written(ov, od).alias("ordered"), _written(iv, idg).alias("invoiced"), _written(pv, pdg).alias("paid"),
        _written(open_v, pl.max_horizontal(idg, pdg)).alias("open"), state.alias("status"), odd.alias("_odd"),
        *(pl.col(c).fill_null("") for c in ("quotes", "contract", "orders", "deliveries", "invoices", "payments",
                                              "exceptions")))


def _described(df: pl.DataFrame, entity: str, label: str, day: str, status: str | None) -> pl.DataFrame:
    """A record as the records sheet describes it: what a person calls it (its label, else its source id), its
    amount, currency, day and status."""
    lab = pl.col(label)
    return df.select(pl.col("id"), pl.lit(entity).alias("entity"), pl.col("source_system").alias("system"),
                     pl.col("source_object").alias("object"), "source_id",
                     pl.when(lab.is_null() | (lab == "")).then(pl.col("source_id")).otherwise(lab).alias("label"),
                     pl.col("deal_amount" if entity == "deal" else "amount").alias("amount"), "currency",
                     pl.col(day).alias("day"), (pl.col(status) if status else pl.lit(None, pl.String))
                     .alias("status"))


def _by_the_loop(t: pl.DataFrame, part: dict[str, pl.DataFrame], ids: list[str],
                 loop: Callable[[dict[str, pl.DataFrame], list[str]], list[dict[str, Any]]]) -> pl.DataFrame:
    """The sums and status of the chains ``ids`` as the reference loop makes them, in place of these."""
    rows = loop(_frames_of(part, ids), ids)
    fixed = pl.DataFrame({"chain_id": [r["chain_id"] for r in rows],
                          **{f"_fix_{c}": [None if r[c] is None else str(r[c]) for r in rows]
                             for c in _MONEY_COLUMNS}},
                         schema={"chain_id": pl.String, **{f"_fix_{c}": pl.String for c in _MONEY_COLUMNS}})
    t = t.join(fixed, on="chain_id", how="left", maintain_order="left")
    return t.with_columns(*(pl.coalesce(f"_fix_{c}", c).alias(c) for c in _MONEY_COLUMNS)).drop(
        [f"_fix_{c}" for c in _MONEY_COLUMNS])


def _frames_of(part: dict[str, pl.DataFrame], ids: Iterable[str]) -> dict[str, pl.DataFrame]:
    """The batch's frames cut to what the chains ``ids`` read."""
    wanted = pl.Series(list(ids), dtype=pl.String).implode()
    link = part["link"].filter(pl.col("chain_id").is_in(wanted))
    linked = link["to_id"].unique().implode()
    alloc = part["allocation"].filter(pl.col("invoice_id").is_in(linked))
    out = {"link": link, "allocation": alloc, "account": part["account"],
           "deal": part["deal"].filter(pl.col("id").is_in(wanted)),
           "payment": part["payment"].filter(pl.col("id").is_in(alloc["payment_id"].unique().implode()))}
    for entity in ("order", "invoice", "quote", "contract", "delivery"):
        out[entity] = part[entity].filter(pl.col("id").is_in(linked))
    return out


def exact_sums(rows: pl.DataFrame, by: list[str], amount: str, python_sum: Callable[[Iterable[str]], Decimal]
               ) -> list[tuple[tuple[Any, ...], Decimal]]:
    """Per group of ``by``: the sum of the absolute amounts (exact text, never null), exact: plain amounts summed by
    Polars as ``Decimal(38, 6)``, the others by ``python_sum`` of their texts, the two added."""
    plain = _plain(pl.col(amount))
    out: dict[tuple[Any, ...], Decimal] = {}
    summed = rows.filter(plain).group_by(by).agg(pl.col(amount).cast(DEC).abs().sum().alias("_sum"))
    for *key, total in summed.iter_rows():
        out[tuple(key)] = Decimal(str(total))
    odd = rows.filter(~plain)
    if odd.height:  # added in the caller's context (make it one that keeps every digit)
        for *key, texts in odd.group_by(by).agg(pl.col(amount)).iter_rows():
            out[tuple(key)] = out.get(tuple(key), Decimal(0)) + python_sum(texts)
    return list(out.items())




def _csv_texts(s: pl.Series, write: Callable[[Any], str]) -> pl.Series:
    """A text column as :func:`reports.cells.csv_value` writes each value (``write``: it), by Polars where it leaves
    a text as it is; an empty text null (written empty, as csv writes ``""``)."""
    s = s.cast(pl.String)
    odd = s.filter(~s.str.contains(PRINTABLE_ASCII) | s.str.contains(STARTS_FORMULA)).unique()
    if odd.len():
        s = s.replace({v: write(v) for v in odd.to_list() if v is not None})
    return s.replace("", None)


def _csv_amounts(s: pl.Series, write: Callable[[Any], str]) -> pl.Series:
    """Amounts as their exact text, as csv_value writes a Decimal (plain digits: ``1.23E+29`` in full)."""
    plain = s.str.contains(r"^-?[0-9]+(?:\.[0-9]+)?$")
    odd = s.filter(~plain).unique()
    if odd.len():
        s = s.replace({v: write(Decimal(v)) for v in odd.to_list() if v is not None})
    return s


def write_chains_csv(path: Path, frames: Iterable[pl.DataFrame], columns: list[str], money: Iterable[str],
                     write: Callable[[Any], str]) -> None:
    """``chains.csv`` from the chain table's frames, as the csv module writes ``write`` (csv_value) of each value of
    the rows: the same bytes, written by Polars a frame at a time."""
    money = set(money)
    with open(path, "wb") as fh:
        fh.write((",".join(columns) + "\r\n").encode())
        for df in frames:
            out = []
            for c in columns:
                s = df[c]
                if c in money:
                    out.append(_csv_amounts(s, write))
                elif s.dtype in (pl.String, pl.Categorical):
                    out.append(_csv_texts(s, write))
                else:
                    out.append(s)
            pl.DataFrame(out).write_csv(fh, include_header=False, line_terminator="\r\n", quote_style="necessary",
                                        null_value="", date_format="%Y-%m-%d")
