"""Partitioned runs: bucket by bucket gives exactly the one-shot result, for any number of buckets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import reconcile.partition as partition
from reconcile.core import Settings, reconcile_frames
from reconcile.partition import _child_buckets, _child_buckets_joined, _dense, assign_buckets, parquet_reader
from reconcile.stream import reconcile_world
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


@pytest.mark.parametrize("n", [1, 3])
def test_world_directory_bucket_by_bucket_equals_one_shot(tmp_path: Path, n: int) -> None:
    WORLD.save(tmp_path / "world")
    got = reconcile_world(tmp_path / "world", Settings(), WORLD.as_of, out=tmp_path / "out", partitions=n)
    assert got.partitions == n
    assert got.totals == ONE.totals
    assert got.exceptions.equals(ONE.exceptions)
    for name in ("chains", "links", "allocations", "invoice_balances", "payment_balances", "states"):
        assert _rows(got.frame(name)).equals(_rows(getattr(ONE, name))), name


def test_parquet_reader_reads_missing_tables_and_columns_as_nulls(tmp_path: Path) -> None:
    pl.DataFrame({"id": ["a"], "stage": ["closed_won"]}).write_parquet(tmp_path / "deal.parquet")
    read = parquet_reader(tmp_path)
    deal = read("deal", ["id", "amount"])
    assert deal.schema == pl.Schema({"id": pl.String, "amount": pl.Decimal(38, 4)})
    assert deal["amount"].null_count() == 1
    assert read("payment", ["id"]).height == 0


def test_dense_ids_are_equal_exactly_for_equal_hashes() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    sample = values[rng.integers(0, len(values), 20000)]
    ids, size = _dense(sample)
    assert size == len(np.unique(sample))
    assert ids.min() == 0 and ids.max() == size - 1
    first: dict[int, int] = {}
    for v, i in zip(sample.tolist(), ids.tolist(), strict=True):
        assert first.setdefault(v, i) == i  # one id per value ...
    assert len(set(first.values())) == size  # ... and one value per id


def test_dense_ids_with_more_low_bits_dropped_are_ranks_of_the_kept_bits() -> None:
    # the components rank the hubs and the edges' other ends with the low bits of all their ends dropped
    rng = np.random.default_rng(4)
    sample = rng.integers(0, 2**63, 3000, dtype=np.uint64)
    sample = np.concatenate([sample, sample[:500] ^ np.uint64(1)])  # differ in a low bit only
    ids, size = _dense(sample, 20)
    top = sample >> np.uint64(20)
    assert size == len(np.unique(top))
    assert np.array_equal(ids, np.searchsorted(np.unique(top), top))
    with pytest.raises(ValueError):
        _dense(sample, 10)  # the positions would not fit


def _lines(seed: int) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Parent ids (some repeated, one null) with their buckets, and line keys: parents' ids, orphans, nulls."""
    rng = np.random.default_rng(seed)
    ids = [f"p{i}" for i in rng.integers(0, 3000, 4000)] + [None]
    buckets = pl.Series(rng.integers(0, 9, len(ids)), dtype=pl.UInt32)
    keys = [f"p{i}" if i < 3500 else (None if i % 2 else f"x{i}") for i in rng.integers(0, 4000, 20000)]
    return pl.Series(ids, dtype=pl.String), buckets, pl.Series(keys, dtype=pl.String)


def test_lines_follow_their_first_parent_as_a_string_join_would() -> None:
    parents, buckets, keys = _lines(4)
    got = _child_buckets(parents, buckets, keys, 9)
    assert got.to_list() == _child_buckets_joined(parents, buckets, keys, 9).to_list()
    first = {}
    for p, b in zip(parents.to_list(), buckets.to_list(), strict=True):
        first.setdefault(p, b)
    assert all(b == first[k] for k, b in zip(keys.to_list(), got.to_list(), strict=True) if k in first and k)


def test_lines_whose_hash_meets_another_id_are_joined_on_the_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    parents, buckets, keys = _lines(5)
    want = _child_buckets_joined(parents, buckets, keys, 9).to_list()
    real = partition._first_parent

    def clashing(p: pl.Series, k: pl.Series) -> np.ndarray:  # as if every 7th key's hash met parent 0's
        at = real(p, k).copy()
        at[::7] = 0
        return at

    monkeypatch.setattr(partition, "_first_parent", clashing)
    assert _child_buckets(parents, buckets, keys, 9).to_list() == want


def test_world_directory_without_out_keeps_exceptions_and_totals(tmp_path: Path) -> None:
    WORLD.save(tmp_path)
    got = reconcile_world(tmp_path, Settings(), WORLD.as_of, partitions=2)
    assert got.exceptions.equals(ONE.exceptions) and got.totals == ONE.totals
    with pytest.raises(ValueError, match="not kept"):
        got.frame("states")


def test_spilled_accounts_and_payments_carry_the_name_keys_the_buckets_would_compute(tmp_path: Path) -> None:
    from reconcile.partition import read_bucket, spill
    from reconcile.stages.expr import NAME_KEY, normalize_name

    read = partition.frames_reader(FR)
    spill(read, 3, tmp_path)
    for k in range(3):
        fr = read_bucket(tmp_path, k, {})
        acct = fr.account.select(NAME_KEY, normalize_name("name").alias("want"))
        assert acct.height and acct[NAME_KEY].equals(acct["want"], check_names=False)
        pay = fr.payment.select(NAME_KEY, pl.when(pl.col("account_id").is_null()).then(normalize_name("payer_name"))
                                .alias("want"))
        assert pay.height and pay[NAME_KEY].equals(pay["want"], check_names=False)
        assert NAME_KEY not in fr.deal.columns


@pytest.mark.parametrize("n", [1, 3])
def test_line_tables_may_arrive_after_the_buckets_are_assigned(tmp_path: Path, n: int) -> None:
    """``plan_buckets(lines=…)`` (the store path, exporting the line tables while the pre-pass runs): the line tables
    are read only after ``lines`` returned (before the spill reads the first of them; with one bucket, before the plan
    is returned), and the plan is the one of a directory that had them from the start."""
    import shutil

    from reconcile.partition import LINE_TABLES
    from reconcile.stream import plan_buckets

    WORLD.save(tmp_path / "world")
    late = tmp_path / "late"
    late.mkdir()
    for name in LINE_TABLES:
        shutil.move(tmp_path / "world" / f"{name}.parquet", late / f"{name}.parquet")
    calls: list[set[str]] = []
    seen = partition.parquet_reader

    def reader(directory: str | Path) -> partition.Reader:
        read = seen(directory)

        def logged(name: str, cols: list[str]) -> pl.DataFrame:
            assert name not in LINE_TABLES or calls, f"{name} read before the lines arrived"
            return read(name, cols)

        return logged

    def arrive() -> None:
        calls.append({p.name for p in late.iterdir()})
        for p in late.iterdir():
            shutil.move(p, tmp_path / "world" / p.name)

    import reconcile.stream as stream

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "parquet_reader", reader)
        plan = plan_buckets(tmp_path / "world", tmp_path / "a", tmp_path / "out-a", n, lines=arrive)
    assert len(calls) == 1 and calls[0] == {f"{name}.parquet" for name in LINE_TABLES}
    want = plan_buckets(tmp_path / "world", tmp_path / "b", tmp_path / "out-b", n)
    assert plan.n == want.n == n
    for name in LINE_TABLES:  # linked into the discovered tables, as the others are
        assert (plan.source / f"{name}.parquet").exists()
    if n > 1:
        for k in range(n):
            for p in sorted((tmp_path / "b" / str(k)).iterdir()):
                assert (tmp_path / "a" / str(k) / p.name).read_bytes() == p.read_bytes(), (k, p.name)
