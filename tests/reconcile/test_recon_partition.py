"""Partitioned runs: bucket by bucket gives exactly the one-shot result, for any number of buckets."""

from __future__ import annotations

import polars as pl
import pytest

from reconcile.core import Settings, reconcile_frames
from reconcile.partition import assign_buckets
from sandbox.scenario import generate

WORLD = generate(1200, seed=5)
FR = WORLD.frames()
ONE = reconcile_frames(FR, Settings(), WORLD.as_of, partitions=1)


def _rows(df: pl.DataFrame) -> pl.DataFrame:
    flat = df.with_columns(pl.col(c).list.join("|") for c, t in df.schema.items() if t == pl.List(pl.String))
    return flat.sort(flat.columns, nulls_last=True)


@pytest.mark.parametrize("n", [2, 7])
def test_partitioned_equals_one_shot(n: int) -> None:
    got = reconcile_frames(FR, Settings(), WORLD.as_of, partitions=n)
    assert got.totals == ONE.totals
    assert got.exceptions.equals(ONE.exceptions)
    for name in ("chains", "links", "allocations", "invoice_balances", "payment_balances", "states"):
        assert _rows(getattr(got, name)).equals(_rows(getattr(ONE, name))), name


def test_rows_sharing_a_reference_share_a_bucket() -> None:
    b = assign_buckets(FR, 5)
    deal = FR.deal.select(pl.col("source_id").str.strip_chars().str.to_uppercase().alias("k"), b["deal"].alias("bd"))
    order = FR.order.select(pl.col("deal_ref").str.strip_chars().str.to_uppercase().alias("k"), b["order"].alias("bo"))
    pairs = order.join(deal, on="k")
    assert pairs.height > 0 and (pairs["bd"] == pairs["bo"]).all()
    assert set(b["deal"].unique()) == set(range(5))  # the world is spread, not one giant component
