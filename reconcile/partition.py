"""Partitioned reconciliation: split the canonical tables into independent parts, bounded memory.

Every decision of :func:`reconcile.core.reconcile_one` is local to a *component*: the customer
clusters and normalized reference keys (deal source ids, order numbers, invoice numbers found in
references or remittance text, payer names) that rows share. The pre-pass builds that graph with one
node per account / cluster or key (64-bit hashes, given dense ids by one sort, :func:`_dense`; a
collision of hashes or of the bits kept only merges two components, which is always safe), finds its
connected components (scipy), and gives every row the bucket of its component (a line the bucket of
its deal / order). Each bucket is then reconciled on its own, so peak memory is bounded by the largest
bucket instead of the whole world, and the concatenated result equals the one-shot result: global
counts (how many deals share a reference, how many clusters share a name) are never split.

The pre-pass reads only the key columns it needs through a :data:`Reader` (in-memory
:class:`~reconcile.frames.Frames` or a directory of Parquet tables), and keeps only integer hashes:
its memory is a few hundred bytes per row, whatever the width of the tables. :func:`spill` then writes
each bucket's rows to a scratch directory one table at a time (the bucket-by-bucket driver over a
directory is :func:`reconcile.stream.reconcile_world`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import polars as pl

from canonical.names import name_key
from reconcile.frames import SCHEMAS, Frames, conform, with_inverse_rates
from reconcile.stages.expr import NAME_KEY

_TOKEN = r"[A-Z0-9][A-Z0-9_/\-]+"

#: ``read(table, columns)`` -> those columns of the table, cast to :data:`reconcile.frames.SCHEMAS`
Reader = Callable[[str, Sequence[str]], pl.DataFrame]
#: tables split by bucket (fx rates and leads are shared by every bucket)
SPLIT = ("deal", "deal_line", "quote", "quote_line", "contract", "order", "order_line", "delivery", "delivery_line",
         "invoice", "payment", "account", "cross_ref")


def frames_reader(fr: Frames) -> Reader:
    return lambda name, cols: getattr(fr, name).select(cols)


def parquet_reader(directory: str | Path) -> Reader:
    """Tables of a world directory (``<table>.parquet``); a missing table or column reads as nulls."""
    root = Path(directory)

    def read(name: str, cols: Sequence[str]) -> pl.DataFrame:
        path = root / f"{name}.parquet"
        if not path.exists():
            return conform(name, None).select(cols)
        have = set(pl.read_parquet_schema(path))
        df = pl.read_parquet(path, columns=[c for c in cols if c in have])
        schema = SCHEMAS[name]
        return df.select([pl.col(c).cast(schema[c]) if c in have else pl.lit(None, schema[c]).alias(c) for c in cols])

    return read


def _norm(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().str.to_uppercase()


def _nname(col: str | pl.Expr) -> pl.Expr:
    return name_key(col)  # the core's payer key (reconcile.core.normalize_name)


_SEEDS = {"c": 11, "n": 13, "d": 17, "o": 19, "i": 23, "p": 29, "r": 3}


def _node(kind: str, e: pl.Expr) -> pl.Expr:
    """A graph node: a hash of the value seeded by its kind, null when the value is null."""
    return pl.when(e.is_not_null()).then(e.hash(seed=_SEEDS[kind]))


def _star(df: pl.DataFrame, nodes: list[pl.Expr], own: pl.Expr) -> tuple[pl.Series, list[pl.DataFrame]]:
    """Row hubs (the first non-null node, else ``own``: the row alone) and the edges hub -> every other node
    (``a``: the row, whose hub it is; ``b``: the other node)."""
    named = [n.alias(f"n{i}") for i, n in enumerate(nodes)]
    st = df.select(*named, own.alias("own")).with_columns(
        pl.coalesce([*(f"n{i}" for i in range(len(nodes))), "own"]).alias("hub"), _ROW)
    edges = [st.filter(pl.col(f"n{i}").is_not_null() & (pl.col(f"n{i}") != pl.col("hub")))
             .select(pl.col("row").alias("a"), pl.col(f"n{i}").alias("b")) for i in range(1, len(nodes))]
    return st["hub"], edges


#: a row's position in its table (an edge's ``a``: the row whose hub is that end)
_ROW = pl.int_range(pl.len(), dtype=pl.UInt32).alias("row")


def _dense(values: np.ndarray, pos_bits: int | None = None) -> tuple[np.ndarray, int]:
    """Dense ids (0..size-1) of 64-bit hashes, equal values equal ids: one sort of the values packed with
    their positions (no hash table, no arg-sort). Only the top ``64 - bits(len)`` bits of a value are
    kept, so two nodes may share an id: that can only merge two components (at 1M chains ~25M entries,
    ~5.6M nodes, 39 bits: ~30 pairs of nodes in a run), never split one. ``pos_bits``: the low bits dropped (by
    default ``bits(len)``)."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int32), 0
    if n >= 2**31:
        raise ValueError("too many graph nodes for one pre-pass")
    pos, new = _packed_groups(values, pos_bits)
    ids = np.empty(n, dtype=np.int32)
    ids[pos] = np.cumsum(new, dtype=np.int32) - 1
    return ids, int(ids[pos[-1]]) + 1


def _packed_groups(values: np.ndarray, pos_bits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The positions of ``values`` in ascending order of their top ``64 - bits(len)`` bits (positions ascending
    among equal values), and whether each of them starts a new value. One sort of the values packed with their
    positions, by Polars (a third of NumPy's CPU time for 25M values)."""
    n = len(values)
    if pos_bits is None:
        pos_bits = max(1, int(n - 1).bit_length())
    elif n > 1 << pos_bits:
        raise ValueError("positions do not fit the low bits")
    mask = np.uint64((1 << pos_bits) - 1)
    packed = values & ~mask
    packed |= np.arange(n, dtype=np.uint64)
    ordered = pl.Series(packed).sort()
    del packed
    got = ordered.to_numpy()  # a read-only view
    pos = got.astype(np.uint32)  # the position bits (< 32) are the low bits
    pos &= np.uint32(mask)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.greater(np.bitwise_xor(got[1:], got[:-1]), mask, out=new[1:])
    return pos.view(np.int32), new


def _components(edges: list[tuple[str, pl.DataFrame]], hubs: dict[str, pl.Series]) -> list[np.ndarray]:
    """The component label of every hub (scipy's sparse connected components over the edges).

    ``edges``: (table, edges from its rows' hubs: ``a`` the row, ``b`` the other node). The hubs are ranked together
    with the edges' other ends, so a hub that no edge touches is a component of its own and no lookup join is needed;
    an edge's hub end is its row's rank (the hubs are not ranked twice). The low bits dropped are those of ranking
    both ends and the hubs (what the ranks, so the labels and buckets, were before the hub ends were left out).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    start, at = {}, 0
    for name, h in hubs.items():
        start[name] = at
        at += len(h)
    m = sum(df.height for _, df in edges)
    ends = pl.concat([*hubs.values(), *(df["b"] for _, df in edges)]).to_numpy()
    idx, size = _dense(ends, max(1, int(2 * m + at - 1).bit_length()))
    del ends
    rows = np.concatenate([df["a"].to_numpy().astype(np.int64) + start[name] for name, df in edges]) if edges else \
        np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(m, dtype=np.int8), (idx[rows], idx[at:])), shape=(size, size))
    del rows
    _, labels = connected_components(graph, directed=False)
    return [labels[idx[start[name]: start[name] + len(h)]] for name, h in hubs.items()]


def _child_buckets(parent_ids: pl.Series, parent_bucket: pl.Series, keys: pl.Series, n: int) -> pl.Series:
    """Lines go with their parent row (first one of that id); a line without a parent by its key's hash.

    The parent of every key is found on 64-bit hashes of the ids (:func:`_first_parent`: one sort, no string
    join) and checked on the strings; the few keys whose hash met another id's (never seen; possible) are
    joined on the strings."""
    at = _first_parent(parent_ids, keys)
    found = at >= 0
    idx = pl.Series(np.where(found, at, 0), dtype=pl.UInt32)
    same = (parent_ids.gather(idx) == keys).fill_null(False).to_numpy()
    bucket = parent_bucket.gather(idx).to_numpy().copy()
    orphan = ~found
    bucket[orphan] = (keys.filter(pl.Series(orphan)).hash(seed=5) % n).cast(pl.UInt32).to_numpy()
    clash = np.flatnonzero(found & ~same)
    if len(clash):
        bucket[clash] = _child_buckets_joined(parent_ids, parent_bucket, keys.gather(clash), n).to_numpy()
    return pl.Series(bucket, dtype=pl.UInt32)


def _first_parent(parent_ids: pl.Series, keys: pl.Series) -> np.ndarray:
    """For every key, the row of the first parent id whose 64-bit hash (top bits) equals the key's, -1 for none
    (and for a null key): parents' and keys' hashes sorted together (:func:`_packed_groups`), parents first among
    equal hashes."""
    p = len(parent_ids)
    hashes = pl.concat([parent_ids.hash(seed=41), keys.hash(seed=41)]).to_numpy()
    if not len(hashes):
        return np.zeros(0, dtype=np.int64)
    pos, new = _packed_groups(hashes)
    del hashes
    first = pos[new][np.cumsum(new) - 1]  # the first position of each element's group
    del new
    first[first >= p] = -1  # the group has no parent
    out = np.empty(len(pos), dtype=np.int64)
    out[pos] = first
    return np.where(keys.is_null().to_numpy(), -1, out[p:])


def _child_buckets_joined(parent_ids: pl.Series, parent_bucket: pl.Series, keys: pl.Series, n: int) -> pl.Series:
    """:func:`_child_buckets` by a join on the strings (only the parents of those ids are looked at: the keys are
    the few whose hashes clashed)."""
    pb = pl.DataFrame({"k": parent_ids, "b": parent_bucket}).filter(pl.col("k").is_in(keys.implode())).unique(
        "k", keep="first", maintain_order=True)
    got = keys.rename("k").to_frame().join(pb, on="k", how="left", maintain_order="left")
    return got.select(pl.coalesce("b", (pl.col("k").hash(seed=5) % n).cast(pl.UInt32)))["b"]


def assign_buckets(src: Frames | Reader, n: int, lines: bool = True,
                   names: dict[str, pl.Series] | None = None) -> dict[str, pl.Series]:
    """Bucket (0..n-1) of every row of the deal, order, invoice, payment, account, line and
    cross-ref frames, in their row order (``cross_ref``: its account rows, first per member).
    ``names``: filled with the name keys the pre-pass computes (:data:`NAME_KEY`), in row order: ``account``
    (of every account's name), ``payment`` (of the payer's name where the payment has no account, else null)."""
    read = frames_reader(src) if isinstance(src, Frames) else src
    # accounts and clusters share one node space: an account id is its own cluster unless cross-ref'd
    xref = read("cross_ref", ["entity", "member_id", "cluster_id"]).filter(pl.col("entity") == "account").select(
        "member_id", "cluster_id").unique("member_id", keep="first", maintain_order=True)
    c = lambda col: _node("c", pl.col(col))  # noqa: E731
    hubs: dict[str, pl.Series] = {}
    # an edge's ``a``: the row (of that table) whose hub is that end (a cross-ref's hub is its member's node)
    edge_parts: list[tuple[str, pl.DataFrame]] = [("cross_ref", xref.select(
        _ROW.alias("a"), _node("c", pl.col("member_id")).alias("m"), _node("c", pl.col("cluster_id")).alias("b"))
        .filter(pl.col("m").is_not_null() & pl.col("b").is_not_null()).drop("m"))]

    def add(name: str, df: pl.DataFrame, nodes: list[pl.Expr], own: str = "r") -> None:
        hub, edges = _star(df, nodes, _node(own, pl.col("id")))
        hubs[name] = hub
        edge_parts.extend((name, e) for e in edges)

    acct = read("account", ["id", "name"]).with_columns(_nname("name").alias("name"))
    if names is not None:
        names["account"] = acct["name"].rename(NAME_KEY)
    add("account", acct, [c("id"), _node("n", pl.when(pl.col("name") != "").then(pl.col("name")))])
    del acct
    add("deal", read("deal", ["id", "account_id", "source_id"]), [c("account_id"), _node("d", _norm("source_id"))])
    add("order", read("order", ["id", "account_id", "deal_ref", "number"]),
        [c("account_id"), _node("d", _norm("deal_ref")), _node("o", _norm("number"))])
    inv = read("invoice", ["id", "account_id", "order_ref", "deal_ref", "number"])
    # the invoice's own id too: a payment may name it by id (reference discovery's found_invoice_ids)
    add("invoice", inv, [c("account_id"), _node("o", _norm("order_ref")), _node("d", _norm("deal_ref")),
                         _node("i", _norm("number")), _node("r", pl.col("id"))])
    invoice_keys = inv.select(_node("i", _norm("number")).alias("h")).drop_nulls()["h"].unique()
    del inv
    pay = read("payment", ["id", "account_id", "payer_name", "deal_ref", "invoice_ref", "remittance",
                           "found_invoice_ids"])
    # the payer's name key only where the payment has no account, computed once (a node reads its value twice: a
    # Python name key would run twice)
    pay = pay.with_columns(_nname(pl.when(pl.col("account_id").is_null()).then(pl.col("payer_name"))).alias("payer_name"))
    if names is not None:
        names["payment"] = pay["payer_name"].rename(NAME_KEY)
    add("payment", pay, [pl.when(pl.col("account_id").is_not_null()).then(c("account_id"))
                         .otherwise(_node("n", pl.col("payer_name"))), _node("d", _norm("deal_ref"))], own="p")
    # payment -> invoice numbers it names (invoice_ref, remittance tokens): edges from the payment's hub
    tok = pl.concat([
        pay.select(_ROW.alias("a"), _node("i", _norm("invoice_ref")).alias("b")),
        pay.select(_ROW.alias("a"), pl.col("remittance").str.to_uppercase().str.extract_all(_TOKEN)
                   .alias("b")).explode("b").with_columns(_node("i", pl.col("b")).alias("b")),
    ]).filter(pl.col("b").is_in(invoice_keys.implode()))
    edge_parts.append(("payment", tok))
    edge_parts.append(("payment", pay.select(_ROW.alias("a"), pl.col("found_invoice_ids").alias("b")).explode("b")
                      .drop_nulls("b").with_columns(_node("r", pl.col("b")).alias("b"))))
    del pay, tok
    hubs["cross_ref"] = xref.select(pl.coalesce(_node("c", pl.col("member_id")), _node("r", pl.col("cluster_id")),
                                                pl.lit(0, pl.UInt64)))["member_id"]
    labels = _components(edge_parts, hubs)
    edge_parts.clear()
    out = {name: pl.Series(name, (lab % n).astype(np.uint32)) for name, lab in zip(hubs, labels, strict=True)}
    for name, parent, key in _LINES if lines else ():
        out[name] = _child_buckets(read(parent, ["id"])["id"], out[parent], read(name, [key])[key], n)
    return out


def _xref_rows(df: pl.DataFrame) -> pl.DataFrame:
    """The account cross-refs the core reads: first row per member (what ``assign_buckets`` buckets)."""
    return df.filter(pl.col("entity") == "account").unique("member_id", keep="first", maintain_order=True)


def partitions(fr: Frames, n: int) -> Iterator[Frames]:
    """The frames of each bucket in turn (fx rates and leads are shared)."""
    b = assign_buckets(fr, n)
    xref = _xref_rows(fr.cross_ref)
    for k in range(n):
        parts: dict[str, pl.DataFrame] = {}
        for name in SPLIT:
            src = xref if name == "cross_ref" else getattr(fr, name)
            parts[name] = src.filter(b[name] == k)
        yield replace(fr, **parts)


#: rows that follow their parent's bucket (child, parent, key), parents before their children
_LINES = (("deal_line", "deal", "deal_id"), ("quote", "deal", "deal_id"), ("quote_line", "quote", "quote_id"),
          ("contract", "deal", "deal_id"), ("order_line", "order", "order_id"), ("delivery", "order", "order_id"),
          ("delivery_line", "delivery", "delivery_id"))
_PARENTS = {parent for _, parent, _ in _LINES}
#: the tables that follow a parent's bucket: :func:`assign_buckets` does not read them
LINE_TABLES = tuple(line for line, _, _ in _LINES)
#: columns the core never reads: not spilled (a bucket reads them back as nulls)
NOT_READ = {"deal": {"created_at", "order_ref"}, "order": {"source_id", "ref_text"}, "invoice": {"source_id", "ref_text"},
            "payment": {"source_id", "ref_text", "reference"},
                "deal_line": {"id", "currency", "unit_price"}, "order_line": {"id", "currency", "unit_price"}}


def spill(read: Reader, n: int, directory: str | Path, lines: Callable[[], object] | None = None) -> Path:
    """Write each bucket's rows of every table to ``directory/<k>/<table>.parquet`` (one table in memory at a time;
    :func:`write_scratch`: the fastest to write and read back). ``lines``: called before the first of
    :data:`LINE_TABLES` is read (the buckets are assigned without them)."""
    root = Path(directory)
    names: dict[str, pl.Series] = {}
    b = assign_buckets(read, n, lines=False, names=names)
    for k in range(n):
        (root / str(k)).mkdir(parents=True, exist_ok=True)
    parents: dict[str, tuple[pl.Series, pl.Series]] = {}
    # each part is written while the next ones are cut (and the next table read), two writes at a time: with one, the
    # writes were the spill's pace and the cuts waited for them (at 1M chains ~1.3 of 2 cores busy); two parts in
    # flight at most (each a bucket's share of one table)
    from canonical.columnar import WriteBehind

    with WriteBehind("ltc-spill", slots=2) as behind:
        for name in SPLIT:  # parents before their lines
            if name in LINE_TABLES and lines is not None:
                lines()
                lines = None
            df = read(name, [c for c in SCHEMAS[name] if c not in NOT_READ.get(name, ())])
            if name == "cross_ref":
                df = _xref_rows(df)
            if name in names:  # the name keys go with the rows: a bucket does not compute them again
                df = df.with_columns(names.pop(name))
            for line, parent, key in _LINES:
                if line == name:
                    b[name] = _child_buckets(*parents[parent], df[key], n)
            if name in _PARENTS:
                parents[name] = (df["id"], b[name])
            bucket = b.pop(name)
            # one bucket's rows copied at a time (partition_by would copy the whole table at once: at 1M chains the
            # payment table twice over was the peak of the pre-pass)
            for k in bucket.unique().sort().to_list():
                behind.submit(write_scratch, df.filter(bucket == k), root / str(k) / f"{name}.parquet")
            del df, bucket
    _trim_heap()
    return root


def _trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere). NumPy's and
    Arrow's freed buffers of a few MB stay in the heap once glibc has raised its mmap threshold past them (it does
    when a larger buffer is freed), and the buckets would run on top of them (at 100k chains in 4 buckets: +40 MB
    on the run's peak)."""
    from canonical.interpreter import libc

    trim = getattr(libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def write_scratch(df: pl.DataFrame, path: Path) -> None:
    """A scratch table (:func:`canonical.columnar.scratch_parquet`) written in one go."""
    import pyarrow.parquet as pq

    from canonical.columnar import arrow_view, scratch_parquet

    pq.write_table(arrow_view(df), path, **scratch_parquet())


def read_bucket(directory: str | Path, k: int, shared: dict[str, pl.DataFrame]) -> Frames:
    """The frames of bucket ``k`` written by :func:`spill` (``shared``: fx_rate and lead)."""
    root = Path(directory) / str(k)
    out: dict[str, pl.DataFrame] = {}
    for f in fields(Frames):
        path = root / f"{f.name}.parquet"
        if f.name in shared:
            out[f.name] = shared[f.name]
        elif path.exists():
            df = pl.read_parquet(path)
            out[f.name] = conform(f.name, df)
            if NAME_KEY in df.columns:  # the pre-pass's name keys (:func:`spill`), for the stages that use them
                out[f.name] = out[f.name].with_columns(df[NAME_KEY])
        else:
            out[f.name] = conform(f.name, None)
    return Frames(**out)


def shared_tables(read: Reader) -> dict[str, pl.DataFrame]:
    return {"fx_rate": with_inverse_rates(read("fx_rate", list(SCHEMAS["fx_rate"]))),
            "lead": conform("lead", None)}  # leads feed the KPIs, not the core
