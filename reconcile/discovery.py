"""Reference discovery: cross-system references found by value, wherever a company keeps them.

The mappings read the references the shipped configuration knows (``deal_ref``, ``order_ref``,
``invoice_ref``). Companies also keep them under metadata keys of their own choosing, in a
description, a statement descriptor, an invoice memo, a bank remittance line or end-to-end id, an ERP
reference or origin. Those texts land in ``ref_text`` (and ``remittance`` / ``reference`` /
``invoice_ref`` on payments); this pass finds in them the values that name exactly one known record:

======================  =============================================  ==============================
source                  fields read                                    targets
======================  =============================================  ==============================
order                   ``deal_ref`` (unresolved), ``ref_text``;       deal id
                        a deal's ``order_ref`` naming the order
invoice                 ``order_ref``/``deal_ref`` (unresolved),       order number, deal id
                        ``ref_text``
payment                 ``invoice_ref``, ``reference``, ``remittance``,  invoice number, invoice vendor
                        ``ref_text``                                   id (same system), deal id
======================  =============================================  ==============================

Values are compared after normalisation (:func:`key_expr`): upper case, everything but letters and
digits dropped, one known prefix (``INV``, ``SO``, ``ORDER``, ``#``...) dropped when at least three
characters remain (``INV 10023``, ``inv-10023`` and ``#10023`` all meet invoice ``INV-10023``). A key
must hold a digit (words are not references). A vendor object id (a Stripe ``in_...``, an ERP
invoice's record id) is compared as it is, only with records of the same system.

Configured references stay first: a record is only looked at for a target kind its configured field
does not already resolve. A value that fits one target links it; the link keeps its own rule id
(``<entity>.discovered_ref``, ``payment.vendor_id``), the field it was found in and the value as
evidence. A value that fits several targets (or a record that names several deals / orders) is
never used: the record carries ``ref_ambiguous`` and the candidates, and the core reports
``AMBIGUOUS_MATCH`` when nothing else explains the record.

Everything is set-based: the known identifiers are indexed once per run and joined (hash join) with
the tokens of the texts; no per-record scan.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from reconcile.frames import Frames, conform

#: prefixes people put before a number ("INV 10023", "SO-77", "Order #5", "Rechnung RE-1")
PREFIXES = ("INVOICE", "RECHNUNG", "FACTURE", "FACTURA", "SALESORDER", "ORDER", "INV", "RINV", "BILL", "FACT",
            "FAC", "FA", "RE", "RG", "SO", "ORD", "PO", "DEAL", "OPP", "REF", "NO", "NR")
_PREFIX_RE = r"^(?:" + "|".join(PREFIXES) + r")"
#: what a reference looks like inside free text: letters/digits joined by - / _ . : #
_TOKEN_RE = r"[A-Za-z0-9#][A-Za-z0-9_/\-.:#]*[A-Za-z0-9]|[0-9]+"
_MIN_KEY = 3

#: the rule ids of discovered links
RULES = {"order": "order.discovered_ref", "invoice": "invoice.discovered_ref", "payment": "payment.discovered_ref",
         "vendor": "payment.vendor_id", "deal": "order.deal_order_ref"}


def key_expr(e: pl.Expr) -> pl.Expr:
    """The comparison key of a reference value (null when it cannot be one: no digit, too short)."""
    raw = e.str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "")
    stripped = raw.str.replace(_PREFIX_RE, "")
    key = pl.when(stripped.str.len_chars() >= _MIN_KEY).then(stripped).otherwise(raw)
    return pl.when(key.str.contains(r"[0-9]") & (key.str.len_chars() >= _MIN_KEY)).then(key)


def _with_key(df: pl.DataFrame, value: str, out: str = "key") -> pl.DataFrame:
    """``df`` with :func:`key_expr` of ``value`` as ``out``, step by step (each intermediate computed once)."""
    raw = pl.col("__raw")
    df = df.with_columns(pl.col(value).str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "").alias("__raw"))
    df = df.with_columns(raw.str.replace(_PREFIX_RE, "").alias("__st"))
    df = df.with_columns(pl.when(pl.col("__st").str.len_chars() >= _MIN_KEY).then(pl.col("__st")).otherwise(raw)
                         .alias("__k"))
    k = pl.col("__k")
    return df.with_columns(pl.when(k.str.contains(r"[0-9]") & (k.str.len_chars() >= _MIN_KEY)).then(k).alias(out)).drop(
        "__raw", "__st", "__k")


def _core_key(e: pl.Expr) -> pl.Expr:
    """How the core compares configured references (``reconcile.core._norm``)."""
    return e.str.strip_chars().str.to_uppercase()


def _tokens(df: pl.DataFrame, field: str, whole: bool = True) -> pl.DataFrame:
    """(id, field, value, key) for the whole value of ``field`` and each token in it."""
    if field not in df.columns:
        return pl.DataFrame(schema={"id": pl.String, "field": pl.String, "value": pl.String, "key": pl.String})
    base = df.select("id", pl.col(field).alias("text")).filter(pl.col("text").is_not_null())
    parts = [base.select("id", pl.col("text").str.extract_all(_TOKEN_RE).alias("value")).explode("value")]
    if whole:
        # a whole value ("SO 77", a metadata value) and each " | "-separated value of ref_text
        parts.append(base.select("id", pl.col("text").str.split(" | ").alias("value")).explode("value"))
    # a key holds a digit, and only a value with a digit gives one (:func:`key_expr` keeps the digits): the others
    # (words of a memo: most tokens) are dropped before the keys are computed
    out = _with_key(pl.concat(parts).filter(pl.col("value").str.contains("[0-9]")), "value")
    # one row per (record, key): the fullest value that gave it (evidence reads "so 0042", not "0042")
    out = out.drop_nulls("key").sort([pl.col("value").str.len_chars(), pl.col("value")], descending=[True, False])
    return out.unique(["id", "key"], keep="first", maintain_order=True).select(
        "id", pl.lit(field).alias("field"), "value", "key")


def build_index(deal: pl.DataFrame, order: pl.DataFrame, invoice: pl.DataFrame) -> pl.DataFrame:
    """Every known identifier once: (kind, key, target_id, target_value, system, n) with ``n`` the number
    of distinct targets of that kind (and system, for vendor ids) sharing the key. Reads only
    :data:`INDEX_COLUMNS` of the three tables."""
    return pl.concat([df.with_columns(pl.lit(kind).alias("kind"), (pl.col("system") if "system" in df.columns else
                                                                    pl.lit(None, pl.String)).alias("system"))
                      .select("kind", "key", "target_id", "target_value", "system", "n")
                      for kind, df in _index_parts(deal, order, invoice).items()])


def _index_parts(deal: pl.DataFrame, order: pl.DataFrame, invoice: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The identifiers per kind: (key, target_id, target_value, n), vendor ids with their system."""
    inv = invoice.filter((pl.col("kind") != "credit_note").fill_null(True))
    parts = [
        ("deal", deal, "source_id", False),
        ("order", order.filter(~pl.col("state").is_in(["draft", "quotation", "cancelled"]).fill_null(False)),
         "number", False),
        ("invoice", inv, "number", False),
        # vendor object ids: exact (upper-cased) and only within one system
        ("vendor", inv, "source_id", True),
    ]
    out = {}
    for kind, df, value, by_system in parts:
        system = [pl.col("id").str.split(":").list.first().alias("system")] if by_system else []
        got = df.select(pl.col("id").alias("target_id"), pl.col(value).alias("target_value"), *system)
        got = got.with_columns(_core_key(pl.col("target_value")).alias("key")) if by_system else _with_key(
            got, "target_value")
        got = _distinct(got.drop_nulls(["key", "target_id"]), ["key", "target_id"])
        out[kind] = got.with_columns(_count(got, ["system", "key"] if by_system else ["key"]).alias("n")).select("key", "target_id", "target_value", "n",
                                                          *(["system"] if by_system else []))
    return out


def _count(df: pl.DataFrame, cols: list[str]) -> pl.Expr:
    """The number of rows of ``df`` sharing each row's ``cols``: 1 everywhere when the rows' hashes of ``cols`` are
    distinct (the usual case: a key names one record; distinct hashes prove distinct values), without grouping."""
    if df.select(pl.struct(cols).hash(seed=7).n_unique()).item() == df.height:
        return pl.lit(1, pl.UInt32)
    return pl.len().over(cols).cast(pl.UInt32)


def _distinct(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """``df.unique(cols)``, skipped when the rows' hashes of ``cols`` are already distinct (the usual case: one key
    per record; equal rows have equal hashes, so distinct hashes prove distinct rows)."""
    if df.select(pl.struct(cols).hash(seed=7).n_unique()).item() == df.height:
        return df
    return df.unique(cols)


#: the columns the index is built from (the only columns of these tables discovery reads whole)
INDEX_COLUMNS = {"deal": ("id", "source_id", "order_ref"), "order": ("id", "number", "state"),
                 "invoice": ("id", "number", "kind", "source_id")}


@dataclass(frozen=True)
class KeySet:
    """A set of strings asked about a batch at a time: their 64-bit hashes sorted (``hashes``, the strings in the
    same order in ``keys``), so a lookup is a binary search in integers checked on the strings (exact), and no hash
    set of the whole index is rebuilt for every batch (what ``is_in`` would do). When two keys share a hash (never
    seen; possible) the keys are sorted as strings and searched as strings."""

    hashes: np.ndarray | None  # None: searched as sorted strings
    keys: pl.Series
    lengths: pl.Series | None = None  # the keys' byte lengths, distinct (a value of another length is not a key)

    @staticmethod
    def of(values: pl.Series) -> KeySet:
        keys = values.drop_nulls()
        lengths = keys.str.len_bytes().unique()
        by_hash = pl.DataFrame({"k": keys, "h": keys.hash(seed=_KEY_SEED)}).sort("h")
        hashes = by_hash["h"].to_numpy()
        same = np.flatnonzero(hashes[1:] == hashes[:-1])  # a repeated key, or two keys of one hash
        if len(same):
            sorted_keys = by_hash["k"]
            if not (sorted_keys.gather(same) == sorted_keys.gather(same + 1)).all():
                return KeySet(None, keys.unique().sort(), lengths)
            keep = np.ones(len(hashes), dtype=bool)
            keep[same + 1] = False
            return KeySet(hashes[keep], sorted_keys.filter(pl.Series(keep)), lengths)
        return KeySet(hashes, by_hash["k"], lengths)

    def may_contain(self, values: pl.Expr) -> pl.Expr:
        """False where a value cannot be a key (its length is no key's): a cheap filter before :meth:`contains`."""
        return pl.lit(True) if self.lengths is None else values.str.len_bytes().is_in(self.lengths.implode())

    def contains(self, values: pl.Series) -> pl.Series:
        """Whether each value is one of the keys (false for null)."""
        keys = self.keys
        if keys.is_empty():
            return pl.Series(values.name, [False] * len(values), pl.Boolean)
        if self.hashes is None:
            pos = keys.search_sorted(values.fill_null(""), side="left").clip(0, len(keys) - 1)
            return ((keys.gather(pos) == values) & values.is_not_null()).fill_null(False).rename(values.name)
        hashes = values.hash(seed=_KEY_SEED).to_numpy()
        # searched in ascending order (then put back): sorted needles walk the index in order, several times
        # faster than random probes into a table of millions
        order = np.argsort(hashes)
        at = np.empty(len(hashes), dtype=np.intp)
        at[order] = np.searchsorted(self.hashes, hashes[order])
        at = at.clip(0, len(keys) - 1)
        hit = np.flatnonzero(self.hashes[at] == hashes)
        out = np.zeros(len(values), dtype=bool)
        out[hit] = (keys.gather(at[hit]) == values.gather(hit)).fill_null(False).to_numpy()
        return pl.Series(values.name, out, pl.Boolean)


_KEY_SEED = 43


@dataclass(frozen=True)
class Index:
    """What every record is matched against, built once per run from :data:`INDEX_COLUMNS`: the
    identifiers per kind, the configured keys that resolve, and the orders deals name."""

    by_kind: dict[str, pl.DataFrame]  # kind -> (key, target_id, target_value, n) (+ system for vendor ids)
    deal_keys: KeySet  # the core's keys of deal source ids, order numbers, invoice numbers
    order_keys: KeySet
    inv_keys: KeySet
    deal_names: pl.DataFrame  # (id, deal, deal_id, value): an order a deal's order_ref names (one order per key)


def index_of(deal: pl.DataFrame, order: pl.DataFrame, invoice: pl.DataFrame) -> Index | None:
    """The :class:`Index` of the three tables (key columns only), None when there is nothing to find."""
    by_kind = _index_parts(deal, order, invoice)
    if all(df.is_empty() for df in by_kind.values()):
        return None

    def keys(df: pl.DataFrame, col: str) -> KeySet:
        return KeySet.of(df.select(_core_key(pl.col(col)).alias("k"))["k"])

    named = deal.filter(pl.col("order_ref").is_not_null())
    tok = _with_key(named.select(pl.col("source_id").alias("deal"), pl.col("id").alias("deal_id"),
                                 pl.col("order_ref").alias("value")), "value")
    deal_names = tok.drop_nulls("key").join(by_kind["order"].filter(pl.col("n") == 1).select(
        "key", pl.col("target_id").alias("id")), on="key", maintain_order="left").select("id", "deal", "deal_id", "value")
    return Index(by_kind, keys(deal, "source_id"), keys(order, "number"), keys(invoice, "number"), deal_names)


def _match(tokens: pl.DataFrame, ix: Index, kind: str) -> pl.DataFrame:
    """Tokens joined with the index of one kind (one hash join)."""
    return tokens.join(ix.by_kind[kind].select("key", "target_id", "target_value", "n"), on="key")


def _evidence(m: pl.DataFrame) -> pl.DataFrame:
    """Per (id, target): the field it was found in and the fullest value found there, as evidence text."""
    m = m.with_columns(pl.col("value").str.len_chars().alias("__len"))
    return m.sort(["id", "field", "__len", "value"], descending=[False, False, True, False]).group_by(
        "id", "target_id").agg(
        pl.col("target_value").first(), pl.format("{}={}", "field", "value").first().alias("ev"))


def _decide(m: pl.DataFrame, many: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split matches into links (a value that fits one target; one target per record unless ``many``)
    and ambiguities (id, detail, candidates)."""
    unique = m.filter(pl.col("n") == 1)
    per = _evidence(unique)
    counts = per.group_by("id").agg(pl.len().alias("k"), pl.col("target_id").sort().alias("cands"))
    links = per.join(counts, on="id").filter((pl.col("k") == 1) | pl.lit(many)).drop("k", "cands")
    several = counts.filter(pl.col("k") > 1) if not many else counts.clear()
    shared = m.filter(pl.col("n") > 1).join(links.select("id").unique(), on="id", how="anti").group_by("id").agg(
        pl.col("target_id").unique().sort().alias("cands"), pl.format("{}={}", "field", "value").min().alias("ev"))
    amb = pl.concat([
        several.select("id", pl.format("names {} targets", "k").alias("detail"), "cands"),
        shared.select("id", pl.format("{} fits {} targets", "ev", pl.col("cands").list.len()).alias("detail"), "cands"),
    ]).unique("id", keep="first")
    return links, amb


_EXTRA = {"ref_rule": pl.String, "ref_evidence": pl.String, "ref_ambiguous": pl.String,
          "ref_candidates": pl.List(pl.String)}


def discover(fr: Frames) -> Frames:
    """The frames with what discovery found filled in (see the module docstring): a missing or
    unresolved ``deal_ref`` / ``order_ref`` set to the target's own key, ``found_invoice_ids`` on
    payments, and ``ref_rule`` / ``ref_evidence`` / ``ref_ambiguous`` / ``ref_candidates``.

    Every record is decided on its own against the :class:`Index`, so the tables can as well be
    discovered in row batches (:func:`discover_directory`): the result is the same."""
    ix = index_of(fr.deal, fr.order, fr.invoice)
    if ix is None:
        return fr
    order = discover_orders(fr.order, ix)
    inv = discover_invoices(fr.invoice, ix)
    pay = discover_payments(fr.payment, ix, order_deals(order, ix))
    return replace(fr, order=order, invoice=inv, payment=pay)


def _resolved(df: pl.DataFrame, col: str, keys: KeySet) -> pl.Series:
    """Whether ``col`` resolves: its core key is one of ``keys`` (an :class:`Index`' keys)."""
    return keys.contains(df.select(_core_key(pl.col(col)))[col])


def discover_orders(order: pl.DataFrame, ix: Index) -> pl.DataFrame:
    """Orders -> deals (a batch of orders: any subset of the table's rows)."""
    order = order.with_columns(_resolved(order, "deal_ref", ix.deal_keys).alias("__ok"))
    # a deal that names its order (a CRM field holding the ERP order number): the link from the deal's side
    d_links, d_amb = _deal_side(ix, order.filter(~pl.col("__ok")))
    order = order.with_columns((pl.col("__ok") | pl.col("id").is_in(d_links["id"].implode())).alias("__ok"))
    todo = order.filter(~pl.col("__ok"))
    o_links, o_amb = _decide(_match(pl.concat([_tokens(todo, "deal_ref"), _tokens(todo, "ref_text")]), ix, "deal"),
                             many=False)
    o_links = pl.concat([d_links.with_columns(pl.lit(RULES["deal"]).alias("__rule")),
                         o_links.select("id", "target_value", "ev", pl.lit(RULES["order"]).alias("__rule"))])
    o_amb = pl.concat([d_amb, o_amb.join(d_amb.select("id"), on="id", how="anti")])
    order = _apply(order, o_links.select("id", pl.col("target_value").alias("__deal"), "ev", "__rule"), o_amb, "order",
                   {"deal_ref": "__deal"}).drop("__ok")
    return conform("order", order)


def order_deals(order: pl.DataFrame, ix: Index) -> pl.DataFrame:
    """(target_id, target_value): the deal of every discovered order whose deal reference resolves (what a
    payment naming an order number is linked through)."""
    return order.filter(_resolved(order, "deal_ref", ix.deal_keys)).select(pl.col("id").alias("target_id"),
                                                                   pl.col("deal_ref").alias("target_value"))


def discover_invoices(inv: pl.DataFrame, ix: Index) -> pl.DataFrame:
    """Invoices -> orders, deals (a batch of invoices)."""
    inv = inv.with_columns(_resolved(inv, "order_ref", ix.order_keys).alias("__ook"),
                           _resolved(inv, "deal_ref", ix.deal_keys).alias("__dok"))
    # an invoice that names its deal may still name its order (the more specific link: what was billed)
    t_o = inv.filter(~pl.col("__ook"))
    i_o, i_o_amb = _decide(_match(pl.concat([_tokens(t_o, "order_ref"), _tokens(t_o, "ref_text")]), ix, "order"),
                           many=False)
    t_d = inv.filter(~pl.col("__dok") & ~pl.col("__ook"))
    i_d, i_d_amb = _decide(_match(pl.concat([_tokens(t_d, "deal_ref"), _tokens(t_d, "ref_text")]), ix, "deal"),
                           many=False)
    i_links = i_o.select("id", pl.col("target_value").alias("__order"), "ev").join(
        i_d.select("id", pl.col("target_value").alias("__deal"), pl.col("ev").alias("ev_d")), on="id", how="full",
        coalesce=True).with_columns(pl.concat_str([pl.col("ev"), pl.col("ev_d")], separator=" ", ignore_nulls=True)
                                    .alias("ev")).drop("ev_d")
    # an invoice ambiguous on orders may still be linked to its deal (and the other way round)
    i_amb = pl.concat([i_o_amb.join(i_d.select("id"), on="id", how="anti"),
                       i_d_amb.join(i_o.select("id"), on="id", how="anti")]).unique("id", keep="first")
    inv = _apply(inv.drop("__ook", "__dok"), i_links, i_amb, "invoice", {"order_ref": "__order", "deal_ref": "__deal"})
    return conform("invoice", inv)


def discover_payments(pay: pl.DataFrame, ix: Index, order_deal: pl.DataFrame) -> pl.DataFrame:
    """Payments -> invoices (several allowed: one remittance may pay several), deals (a batch of payments;
    ``order_deal``: :func:`order_deals` of every discovered order)."""
    pay = pay.with_columns(_resolved(pay, "deal_ref", ix.deal_keys).alias("__dok"))
    conf = pl.concat([
        pay.select("id", _core_key(pl.col("invoice_ref")).alias("k")),
        pay.select("id", pl.col("remittance").str.to_uppercase().str.extract_all(r"[A-Z0-9][A-Z0-9_/\-]+")
                   .alias("k")).explode("k"),
    ]).drop_nulls()
    # the words of a memo ("Payment", "thank") are mostly not of an invoice number's length: not looked up
    conf = conf.filter(ix.inv_keys.may_contain(pl.col("k")))
    conf = conf.filter(ix.inv_keys.contains(conf["k"])).select("id").unique()
    t_p = pay.join(conf, on="id", how="anti")
    p_tok = pl.concat([_tokens(t_p, f) for f in ("invoice_ref", "reference", "remittance", "ref_text")])
    v_tok = pl.concat([t_p.select("id", pl.lit(f).alias("field"), pl.col(f).alias("value"),
                                  _core_key(pl.col(f)).alias("key"), pl.col("id").str.split(":").list.first()
                                  .alias("system")) for f in ("invoice_ref", "reference")]).drop_nulls("key")
    vendor = v_tok.join(ix.by_kind["vendor"], on=["system", "key"]).drop("system")
    v_links, _ = _decide(vendor.select("id", "field", "value", "key", "target_id", "target_value", "n"), many=True)
    p_links, p_amb = _decide(_match(p_tok, ix, "invoice"), many=True)
    found = pl.concat([v_links.with_columns(pl.lit(RULES["vendor"]).alias("rule")),
                       p_links.with_columns(pl.lit(RULES["payment"]).alias("rule"))]).unique(
        ["id", "target_id"], keep="first")
    found = found.group_by("id").agg(pl.col("target_id").sort().alias("__found"),
                                     pl.col("rule").min().alias("__rule"), pl.col("ev").sort().str.join(" ").alias("ev"))
    # the deal a payment names: its id, or an order number ("payment for order SO-77") whose deal resolves
    t_pd = pay.filter(~pl.col("__dok"))
    pd_tok = pl.concat([_tokens(t_pd, f) for f in ("deal_ref", "ref_text", "remittance")])
    pd_links, _ = _decide(_match(pd_tok, ix, "deal"), many=False)
    po_links, _ = _decide(_match(pd_tok, ix, "order"), many=False)
    po_links = po_links.drop("target_value").join(order_deal, on="target_id").join(pd_links.select("id"), on="id",
                                                                                 how="anti")
    pd_links = pl.concat([pd_links.select("id", "target_value"), po_links.select("id", "target_value")])
    p_amb = p_amb.join(found.select("id"), on="id", how="anti")
    pay = pay.join(found, on="id", how="left").join(
        pd_links.select("id", pl.col("target_value").alias("__deal")), on="id", how="left").join(
        p_amb.select("id", pl.col("detail").alias("__amb"), pl.col("cands").alias("__cands")),
        on="id", how="left").with_columns(
        pl.coalesce(pl.when(~pl.col("__dok")).then(pl.col("__deal")), pl.col("deal_ref"))
        .alias("deal_ref"), pl.coalesce("__found", "found_invoice_ids").alias("found_invoice_ids"),
        *_keep(pl.col("__rule"), pl.col("ev"), pl.col("__amb"), pl.col("__cands")))
    return conform("payment", pay)


def _deal_side(ix: Index, orders: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Orders named by a deal's ``order_ref`` (the ERP order number kept on the CRM deal): links
    (order id, deal source id as ``target_value``, evidence) for the orders in ``orders`` that exactly one deal
    names, and ambiguities for orders several deals name. A deal whose value fits several orders names none."""
    if orders.is_empty() or ix.deal_names.is_empty():
        return (pl.DataFrame(schema={"id": pl.String, "target_value": pl.String, "ev": pl.String}),
                pl.DataFrame(schema={"id": pl.String, "detail": pl.String, "cands": pl.List(pl.String)}))
    m = ix.deal_names.join(orders.select("id"), on="id", how="semi")
    per = m.group_by("id").agg(pl.col("deal").unique().sort().alias("refs"), pl.col("deal_id").unique().sort()
                               .alias("cands"), pl.col("value").min())
    links = per.filter(pl.col("refs").list.len() == 1).select(
        "id", pl.col("refs").list.first().alias("target_value"),
        pl.format("deal {} order_ref={}", pl.col("refs").list.first(), "value").alias("ev"))
    amb = per.filter(pl.col("refs").list.len() > 1).select(
        "id", pl.format("{} deals name order {}", pl.col("refs").list.len(), "value").alias("detail"), "cands")
    return links, amb


def _apply(df: pl.DataFrame, links: pl.DataFrame, amb: pl.DataFrame, entity: str, fill: Mapping[str, str]) -> pl.DataFrame:
    """Fill the configured columns from the links (only where they do not resolve), attach rule/evidence/ambiguity
    (what an earlier pass found is kept)."""
    out = df.join(links, on="id", how="left").join(
        amb.select("id", pl.col("detail").alias("__amb"), pl.col("cands").alias("__cands")), on="id", how="left")
    found = pl.any_horizontal([pl.col(src).is_not_null() for src in fill.values()])
    rule = pl.col("__rule") if "__rule" in out.columns else pl.lit(RULES[entity])
    return out.with_columns(
        *[pl.coalesce(pl.col(src), pl.col(col)).alias(col) for col, src in fill.items()],
        *_keep(pl.when(found).then(rule), pl.when(found).then(pl.col("ev")),
               pl.col("__amb"), pl.col("__cands")),
    ).drop([c for c in ("__rule",) if c in out.columns])


def _keep(rule: pl.Expr, ev: pl.Expr, amb: pl.Expr, cands: pl.Expr) -> list[pl.Expr]:
    """The discovery columns: this pass's findings, else what the frame already carried."""
    return [pl.coalesce(new, pl.col(name)).alias(name) for new, name in
            ((rule, "ref_rule"), (ev, "ref_evidence"), (amb, "ref_ambiguous"), (cands, "ref_candidates"))]


# --- the bucketed path: the world's tables on disk ------------------------------------------------

#: rows of one table discovered at a time on the bucketed path (memory: one batch of rows, its tokens, the index)
BATCH_ROWS = 250_000


def _batches(path: Path, name: str, rows: int) -> Iterator[pl.DataFrame]:
    """The table's rows in batches of ``rows``, conformed (one empty batch for a missing or empty table)."""
    total = pl.scan_parquet(path).select(pl.len()).collect().item() if path.exists() else 0
    if not total:
        yield conform(name, pl.read_parquet(path) if path.exists() else None)
        return
    for start in range(0, total, rows):
        yield conform(name, pl.scan_parquet(path).slice(start, rows).collect())


def _write_batches(batches: Iterator[pl.DataFrame], path: Path) -> None:
    """The batches as one Parquet file, one row group each, written as they come (no more than one batch in
    memory, and no second pass: writing parts and joining them with Polars' streaming engine read and wrote
    every row twice)."""
    import pyarrow.parquet as pq

    from canonical.columnar import WriteBehind, arrow_view, scratch_parquet

    tmp = path.with_name(f".{path.stem}.parquet")
    writer: pq.ParquetWriter | None = None
    try:
        # a batch is written while the next one is discovered; the write under way ends before the file is closed
        with WriteBehind("ltc-discovered") as behind:
            for df in batches:
                table = arrow_view(df)  # Polars' buffers, not a copy
                del df
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, **scratch_parquet())
                elif table.schema != writer.schema:
                    table = table.cast(writer.schema)
                behind.submit(writer.write_table, table)
                del table
    finally:
        if writer is not None:
            writer.close()
    tmp.rename(path)


def discover_directory(src: str | Path, dest: str | Path, batch_rows: int = BATCH_ROWS,
                       ready: Callable[[], object] | None = None,
                       arrived: Callable[[str], object] | None = None) -> Path:
    """:func:`discover` over a directory of ``<table>.parquet`` (the bucketed path): the patched order,
    invoice and payment tables are written to ``dest``, every other table is linked there unchanged.

    Memory is bounded: the index is built from :data:`INDEX_COLUMNS` only, then the order, invoice and
    payment tables are discovered ``batch_rows`` rows at a time (each record is decided on its own, so
    the result is :func:`discover`'s). Discovery reads only the deal, order, invoice and payment tables:
    ``ready`` (when given) is waited for before the others are linked (the store path is still exporting them);
    ``arrived(name)`` before each of those four tables is first read (the store path exports them in the order
    they are read: deal, order and invoice for the index, payment last, discovered while it arrives)."""
    from reconcile.partition import parquet_reader

    src, dest = Path(src), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    read = parquet_reader(src)

    def key_columns(name: str, cols: Sequence[str]) -> pl.DataFrame:
        if arrived is not None:
            arrived(name)
        return read(name, list(cols))

    ix = index_of(*(key_columns(name, cols) for name, cols in INDEX_COLUMNS.items()))
    _discover_tables(src, dest, ix, batch_rows, arrived)
    if ready is not None:
        ready()
    link_tables(src, dest)
    return dest


def link_tables(src: str | Path, dest: str | Path) -> None:
    """The tables of ``src`` discovery leaves as they are, linked into ``dest`` (those not there yet)."""
    src, dest = Path(src), Path(dest)
    for path in src.iterdir():
        if path.suffix == ".parquet" and path.stem not in ("order", "invoice", "payment"):
            target = dest / path.name
            if not target.exists():
                try:
                    target.symlink_to(path.resolve())
                except OSError:
                    shutil.copyfile(path, target)


def _discover_tables(src: Path, dest: Path, ix: Index | None, batch_rows: int,
                     arrived: Callable[[str], object] | None = None) -> None:
    deals: list[pl.DataFrame] = []

    def found(name: str) -> Iterator[pl.DataFrame]:
        nonlocal deals
        if arrived is not None:
            arrived(name)
        for batch in _batches(src / f"{name}.parquet", name, batch_rows):
            if ix is not None and name == "order":
                batch = discover_orders(batch, ix)
                deals.append(order_deals(batch, ix))
            elif ix is not None and name == "invoice":
                batch = discover_invoices(batch, ix)
            elif ix is not None:
                if len(deals) > 1:
                    deals = [pl.concat(deals)]
                batch = discover_payments(batch, ix, deals[0])
            yield batch

    for name in ("order", "invoice", "payment"):
        _write_batches(found(name), dest / f"{name}.parquet")
