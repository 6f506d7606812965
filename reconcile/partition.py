"""Partitioned reconciliation: split the canonical frames into independent parts, bounded memory.

Every decision of :func:`reconcile.core.reconcile_one` is local to a *component*: the customer
clusters and normalized reference keys (deal source ids, order numbers, invoice numbers found in
references or remittance text, payer names) that rows share. The pre-pass builds that graph with one
node per cluster or key (64-bit hashes; a collision only merges two components, which is always
safe), finds its connected components by min-label propagation, and gives every row the bucket of
its component. Each bucket is then reconciled on its own, so peak memory is bounded by the largest
bucket instead of the whole world, and the concatenated result equals the one-shot result: global
counts (how many deals share a reference, how many clusters share a name) are never split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace

import numpy as np
import polars as pl

from reconcile.frames import Frames

_NAME_SUFFIXES = r"\b(INC|INCORPORATED|CORP|CORPORATION|CO|COMPANY|LTD|LIMITED|LLC|GMBH|AG|SA|SARL|BV|PLC)\b"
_TOKEN = r"[A-Z0-9][A-Z0-9_/\-]+"


def _norm(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().str.to_uppercase()


def _nname(col: str) -> pl.Expr:
    return (
        pl.col(col).str.to_uppercase().str.replace_all(r"[^A-Z0-9 ]", " ").str.replace_all(_NAME_SUFFIXES, " ")
        .str.replace_all(r"\s+", " ").str.strip_chars()
    )


_SEEDS = {"c": 11, "n": 13, "d": 17, "o": 19, "i": 23, "p": 29}


def _node(kind: str, e: pl.Expr) -> pl.Expr:
    """A graph node: a hash of the value seeded by its kind, null when the value is null."""
    return pl.when(e.is_not_null()).then(e.hash(seed=_SEEDS[kind]))


def _star(df: pl.DataFrame, nodes: list[pl.Expr]) -> pl.DataFrame:
    """Rows -> (id, hub, other...) : the hub is the row's first non-null node."""
    named = [n.alias(f"n{i}") for i, n in enumerate(nodes)]
    out = df.select(pl.col("id"), *named)
    return out.with_columns(pl.coalesce([f"n{i}" for i in range(len(nodes))]).alias("hub"))


def _components(edges: pl.DataFrame) -> pl.DataFrame:
    """node -> label (an id of its connected component), via scipy's sparse connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    both = pl.concat([edges["a"], edges["b"]]).alias("node")
    idx = both.rank("dense").cast(pl.Int64).to_numpy() - 1
    m, size = edges.height, int(idx.max()) + 1 if len(idx) else 0
    graph = coo_matrix((np.ones(m, dtype=np.int8), (idx[:m], idx[m:])), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    nodes = np.empty(size, dtype=np.uint64)
    nodes[idx] = both.to_numpy()
    return pl.DataFrame({"node": nodes, "label": labels.astype(np.uint64)})


def assign_buckets(fr: Frames, n: int) -> dict[str, pl.Series]:
    """Bucket (0..n-1) of every row of the deal, order, invoice, payment, account and line frames."""
    xref = fr.cross_ref.filter(pl.col("entity") == "account").select(
        pl.col("member_id").alias("account_id"), "cluster_id").unique("account_id", keep="first")

    def cl(df: pl.DataFrame, col: str = "account_id") -> pl.DataFrame:
        return df.join(xref.rename({"account_id": col, "cluster_id": "__cl"}), on=col, how="left").with_columns(
            pl.coalesce("__cl", col).alias("__cl"))

    invoice_keys = fr.invoice.select(_norm("number").alias("tok")).drop_nulls().unique()
    acct = cl(fr.account.select("id", "name"), "id").with_columns(_nname("name").alias("__nn"))
    pay = cl(fr.payment.select("id", "account_id", "payer_name", "deal_ref"))
    tok = pl.concat([
        fr.payment.select("id", _norm("invoice_ref").alias("tok")),
        fr.payment.select("id", pl.col("remittance").str.to_uppercase().str.extract_all(_TOKEN).alias("tok"))
        .explode("tok"),
    ]).drop_nulls().join(invoice_keys, on="tok", how="semi").unique()
    stars = {
        "account": _star(acct, [_node("c", pl.col("__cl")),
                                _node("n", pl.when(pl.col("__nn") != "").then(pl.col("__nn")))]),
        "deal": _star(cl(fr.deal.select("id", "account_id", "source_id")),
                      [_node("c", pl.col("__cl")), _node("d", _norm("source_id"))]),
        "order": _star(cl(fr.order.select("id", "account_id", "deal_ref", "number")),
                       [_node("c", pl.col("__cl")), _node("d", _norm("deal_ref")), _node("o", _norm("number"))]),
        "invoice": _star(cl(fr.invoice.select("id", "account_id", "order_ref", "deal_ref", "number")),
                         [_node("c", pl.col("__cl")), _node("o", _norm("order_ref")), _node("d", _norm("deal_ref")),
                          _node("i", _norm("number"))]),
        "payment": _star(pay, [
            _node("c", pl.when(pl.col("account_id").is_not_null()).then(pl.col("__cl"))),
            _node("n", pl.when(pl.col("account_id").is_null()).then(_nname("payer_name"))),
            _node("d", _norm("deal_ref"))]),
    }
    # payment -> invoice-number tokens: extra edges from the payment's hub (or the payment itself)
    pay_tok = stars["payment"].select("id", "hub").join(tok, on="id").with_columns(
        pl.coalesce("hub", _node("p", pl.col("id"))).alias("hub"), _node("i", pl.col("tok")).alias("other"))
    stars["payment"] = stars["payment"].join(pay_tok.select("id", pl.col("hub").alias("__h")).unique("id"), on="id",
                                             how="left").with_columns(pl.coalesce("hub", "__h").alias("hub")).drop("__h")
    edge_parts = [pay_tok.select(pl.col("hub").alias("a"), pl.col("other").alias("b"))]
    for st in stars.values():
        for c in st.columns:
            if c.startswith("n"):
                edge_parts.append(st.filter(pl.col("hub").is_not_null() & pl.col(c).is_not_null())
                                  .select(pl.col("hub").alias("a"), pl.col(c).alias("b")))
    edges = pl.concat(edge_parts).unique()
    labels = _components(edges)

    def bucket(st: pl.DataFrame) -> pl.Series:
        got = st.select("id", "hub").join(labels, left_on="hub", right_on="node", how="left", maintain_order="left")
        key = pl.coalesce("label", "hub", pl.col("id").hash(seed=3))
        return got.select((key % n).cast(pl.UInt32).alias("bucket"))["bucket"]

    out = {name: bucket(st) for name, st in stars.items()}
    deal_b = fr.deal.select(pl.col("id").alias("deal_id"), out["deal"].alias("b")).unique("deal_id", keep="first")
    order_b = fr.order.select(pl.col("id").alias("order_id"), out["order"].alias("b")).unique("order_id", keep="first")
    for name, parent, key in (("deal_line", deal_b, "deal_id"), ("order_line", order_b, "order_id")):
        df: pl.DataFrame = getattr(fr, name)
        got = df.select(key).join(parent, on=key, how="left", maintain_order="left")
        out[name] = got.select(pl.coalesce("b", (pl.col(key).hash(seed=5) % n).cast(pl.UInt32)))["b"]
    xb = xref.with_columns(_node("c", pl.col("cluster_id")).alias("node")).join(labels, on="node", how="left")
    out["cross_ref"] = xb.select((pl.coalesce("label", "node") % n).cast(pl.UInt32))["label"]
    out["__xref"] = xref  # type: ignore[assignment]
    return out


def partitions(fr: Frames, n: int) -> Iterator[Frames]:
    """The frames of each bucket in turn (fx rates and leads are shared)."""
    b = assign_buckets(fr, n)
    xref: pl.DataFrame = b.pop("__xref")  # type: ignore[assignment]
    xref_rows = xref.select(pl.lit("account").alias("entity"), pl.col("account_id").alias("member_id"), "cluster_id")
    tables = {f.name for f in fields(fr)} - {"fx_rate", "lead"}
    for k in range(n):
        parts: dict[str, pl.DataFrame] = {}
        for name in tables:
            src = xref_rows if name == "cross_ref" else getattr(fr, name)
            parts[name] = src.filter(b[name] == k)
        yield replace(fr, **parts)
