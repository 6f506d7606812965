"""Stage check_quotes: the commercial stages between a deal and its order, quotes and contracts.

* ``QUOTE_MISMATCH``: an accepted quote whose net total differs from its deal's amount beyond
  tolerance (or is in another currency), or whose lines differ from the deal's lines (quantity per
  product code, compared only when both sides have lines and every quote line has a product code:
  Salesforce's ``QuoteLineItem`` has none unless the org adds one). Keys: the quote.
* ``CONTRACT_MISMATCH``: an active contract (not draft, in approval or cancelled) whose value differs
  from the net total of its deal's active orders beyond tolerance. Compared only when the deal has
  orders, all in the contract's currency (no order is ``WON_NOT_ORDERED``'s case; another currency
  is ``CURRENCY_MISMATCH``'s). Keys: the contract.

A quote or contract names its deal by canonical id (``deal_id``) or by the deal's source id
(``deal_ref``, case and spaces ignored, resolved only when one deal has it). Links ``deal -> quote``
and ``deal -> contract`` put them on the chain.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from reconcile.frames import MONEY, RATE
from reconcile.settings import Settings
from reconcile.stages.contract import EXCEPTION_COLUMNS, expect
from reconcile.stages.expr import norm, tol

QUOTE_SENT = ["sent", "accepted", "rejected", "expired"]
CONTRACT_INACTIVE = ["draft", "in_approval", "cancelled"]
EX_COLS = list(EXCEPTION_COLUMNS)



def resolve_deal(df: pl.DataFrame, deal: pl.DataFrame, unique_keys: pl.DataFrame | None = None) -> pl.DataFrame:
    """``df`` with ``chain_id``: its ``deal_id`` when that deal exists, else the one deal whose source id is
    its ``deal_ref``; and the deal's ``cluster_id``, amount and currency as ``d_*``. ``unique_keys``: the deal keys
    held by exactly one deal (``Orders.unique_keys``: dkey, ref_deal), when already known."""
    hit = deal.select(pl.col("id").alias("deal_id"), pl.lit(True).alias("__hit"))
    if unique_keys is None:
        by_ref = deal.group_by(norm(pl.col("source_id")).alias("__ref")).agg(
            pl.col("id").min().alias("__rd"), pl.len().alias("__n")).filter(pl.col("__n") == 1).drop("__n")
    else:
        by_ref = unique_keys.select(pl.col("dkey").alias("__ref"), pl.col("ref_deal").alias("__rd"))
    out = df.join(hit, on="deal_id", how="left").with_columns(norm(pl.col("deal_ref")).alias("__ref"))
    out = out.join(by_ref, on="__ref", how="left").with_columns(
        pl.when(pl.col("__hit").fill_null(False)).then(pl.col("deal_id")).otherwise(pl.col("__rd")).alias("chain_id")
    ).drop("__hit", "__ref", "__rd")
    return out.join(deal.select(pl.col("id").alias("chain_id"), pl.col("cluster_id"), pl.col("amount").alias("d_amount"),
                                pl.col("currency").alias("d_ccy")), on="chain_id", how="left")



def _link(df: pl.DataFrame, to_entity: str, rule: str) -> pl.DataFrame:
    return df.filter(pl.col("chain_id").is_not_null()).select(
        "chain_id", pl.lit("deal").alias("from_entity"), pl.col("chain_id").alias("from_id"),
        pl.lit(to_entity).alias("to_entity"), pl.col("id").alias("to_id"), pl.lit(rule).alias("rule_id"),
        pl.lit(Decimal(1), RATE).alias("confidence"), pl.lit(None, pl.String).alias("runner_up_id"),
        pl.lit(None, MONEY).alias("margin"), pl.format("{}", pl.coalesce("deal_ref", "chain_id")).alias("evidence"))


def _lines_differ(acc: pl.DataFrame, quote_line: pl.DataFrame, deal_line: pl.DataFrame) -> pl.DataFrame:
    """(quote_id, n_lines): the accepted quotes (``acc``: id, chain_id) whose lines differ from their deal's lines in
    the quantity of some product code (compared only when both sides have lines and every quote line has a code).
    The quotes are numbered (``__qk``) so that the lines are grouped and joined on integers, not on id strings;
    quotes accepted twice over (a repeated id) are grouped by id as they come."""
    if acc["id"].n_unique() == acc.height:
        ak = acc.select(pl.col("id").alias("quote_id"), "chain_id").with_row_index("__qk")
        q_key = d_key = "__qk"
        q_side, d_side = ak.select("quote_id", "__qk"), ak.select(pl.col("chain_id").alias("deal_id"), "__qk")
    else:
        q_key, d_key = "quote_id", "quote_id"
        q_side = acc.select(pl.col("id").alias("quote_id"), "chain_id")
        d_side = acc.select(pl.col("id").alias("quote_id"), pl.col("chain_id").alias("deal_id"))
    key = q_key
    qty_q = quote_line.select("quote_id", "product_code", "quantity").join(q_side, on="quote_id").group_by(
        key, "product_code").agg(pl.col("quantity").sum().alias("q_qty"))
    qty_d = deal_line.select("deal_id", "product_code", "quantity").join(d_side, on="deal_id").group_by(
        d_key, "product_code").agg(pl.col("quantity").sum().alias("d_qty"))
    # lines are compared when both sides have them and every quote line names its product code (filters on the
    # keys: a group-by or a full join of the line frames cost twice as much at 100k quotes)
    uncoded = qty_q.filter(pl.col("product_code").is_null())[key].implode()
    qty_q = qty_q.filter(pl.col(key).is_in(qty_d[key].implode()) & ~pl.col(key).is_in(uncoded))
    qty_d = qty_d.filter(pl.col(key).is_in(qty_q[key].implode()))
    on = [key, "product_code"]
    # a product code whose quantities differ, or that only one side has
    differ = qty_q.join(qty_d, on=on, how="left").filter(pl.col("q_qty").ne_missing(pl.col("d_qty"))).select(key)
    one_side = qty_d.join(qty_q, on=on, how="anti").select(key)
    bad = pl.concat([differ, one_side]).group_by(key).agg(pl.len().alias("n_lines"))
    if key == "quote_id":
        return bad
    return bad.join(ak.select("__qk", "quote_id"), on="__qk").select("quote_id", "n_lines")


def check_quotes(quote: pl.DataFrame, quote_line: pl.DataFrame, contract: pl.DataFrame, deal: pl.DataFrame,
          deal_line: pl.DataFrame, order: pl.DataFrame, s: Settings, unique_keys: pl.DataFrame | None = None,
          ) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """(exception parts, link parts). ``deal``: the core's deals (with ``cluster_id``); ``order``: its orders
    (with ``deal_id``, ``active`` and ``net``); ``unique_keys``: ``Orders.unique_keys`` (see :func:`resolve_deal`)."""
    expect("check_quotes", "deal", deal, ("id", "source_id", "cluster_id", "amount", "currency"))
    expect("check_quotes", "order", order, ("id", "deal_id", "active", "net", "currency"))
    ex: list[pl.DataFrame] = []
    links: list[pl.DataFrame] = []
    if quote.height:
        q = resolve_deal(quote.with_columns(pl.coalesce("untaxed", "total").alias("net")), deal, unique_keys)
        links.append(_link(q.with_columns(pl.when(pl.col("deal_id") == pl.col("chain_id")).then(None)
                                          .otherwise(pl.col("deal_ref")).alias("deal_ref")), "quote",
                           "quote.deal"))
        acc = q.filter((pl.col("status") == "accepted") & pl.col("chain_id").is_not_null())
        lines_bad = _lines_differ(acc, quote_line, deal_line)
        acc = acc.join(lines_bad, left_on="id", right_on="quote_id", how="left").with_columns(
            (pl.col("currency") != pl.col("d_ccy")).fill_null(False).alias("ccy_bad"),
            ((pl.col("net") - pl.col("d_amount")).abs() > tol(s, pl.col("d_amount"))).fill_null(False).alias("amt_bad"))
        bad = acc.filter(pl.col("ccy_bad") | pl.col("amt_bad") | pl.col("n_lines").is_not_null())
        ex.append(bad.select(
            pl.lit("QUOTE_MISMATCH").alias("code"), "chain_id", pl.concat_list(pl.col("id")).alias("keys"),
            pl.concat_list("id", "chain_id").alias("records"), "currency", pl.col("net").alias("amount"), "cluster_id",
            pl.format("accepted quote {} {} vs deal {} {}; {} line(s) differ", "currency", "net", "d_ccy", "d_amount",
                      pl.col("n_lines").fill_null(0)).alias("detail")))
    if contract.height:
        c = resolve_deal(contract, deal, unique_keys)
        links.append(_link(c.with_columns(pl.when(pl.col("deal_id") == pl.col("chain_id")).then(None)
                                          .otherwise(pl.col("deal_ref")).alias("deal_ref")), "contract",
                           "contract.deal"))
        ords = order.filter(pl.col("active") & pl.col("deal_id").is_not_null()).group_by("deal_id").agg(
            pl.col("net").sum().alias("ordered"), pl.col("currency").n_unique().alias("n_ccy"),
            pl.col("currency").first().alias("o_ccy"))
        act = c.filter(~pl.col("status").is_in(CONTRACT_INACTIVE).fill_null(False) & pl.col("chain_id").is_not_null())
        act = act.join(ords, left_on="chain_id", right_on="deal_id", how="inner").filter(
            (pl.col("n_ccy") == 1) & (pl.col("o_ccy") == pl.col("currency")))
        bad_c = act.filter((pl.col("value") - pl.col("ordered")).abs() > tol(s, pl.col("ordered")))
        # the records' order lists only for the (few) contracts reported
        bad_c = bad_c.join(order.filter(pl.col("active") & pl.col("deal_id").is_not_null()).select("deal_id", "id").join(
            bad_c.select(pl.col("chain_id").alias("deal_id")), on="deal_id", how="semi").group_by("deal_id").agg(
            pl.col("id").sort().alias("orders")), left_on="chain_id", right_on="deal_id", how="left")
        ex.append(bad_c.select(
            pl.lit("CONTRACT_MISMATCH").alias("code"), "chain_id", pl.concat_list(pl.col("id")).alias("keys"),
            pl.concat_list(pl.col("id"), pl.col("orders")).alias("records"), "currency",
            (pl.col("value") - pl.col("ordered")).abs().cast(MONEY).alias("amount"), "cluster_id",
            pl.format("contract {} value {} vs ordered {}", pl.col("number").fill_null("-"), "value", "ordered")
            .alias("detail")))
    return [e.select(EX_COLS) for e in ex], links


def quote_chain_columns(quote: pl.DataFrame, contract: pl.DataFrame, links: list[pl.DataFrame]) -> pl.DataFrame:
    """Per chain: number of quotes, the accepted quote, the contract (from the ``deal -> quote|contract`` links)."""
    lk = pl.concat(links, how="vertical_relaxed") if links else None
    schema = {"chain_id": pl.String, "n_quotes": pl.UInt32, "accepted_quote": pl.String, "contract_id": pl.String}
    if lk is None or lk.height == 0:
        return pl.DataFrame(schema=schema)
    q = lk.filter(pl.col("to_entity") == "quote").join(quote.select(pl.col("id").alias("to_id"), "status"), on="to_id")
    qa = q.group_by("chain_id").agg(pl.len().cast(pl.UInt32).alias("n_quotes"),
                                    pl.col("to_id").filter(pl.col("status") == "accepted").min().alias("accepted_quote"))
    ca = lk.filter(pl.col("to_entity") == "contract").group_by("chain_id").agg(pl.col("to_id").min().alias("contract_id"))
    return qa.join(ca, on="chain_id", how="full", coalesce=True).select(list(schema)).cast(schema)  # type: ignore[arg-type]
