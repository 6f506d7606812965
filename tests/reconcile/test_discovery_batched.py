"""Reference discovery on the bucketed path (``discover_directory``: key columns indexed once, the order,
invoice and payment tables discovered in row batches) equals the one-shot ``discover``."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from reconcile.discovery import RULES, KeySet, _count, _distinct, _tokens, discover, discover_directory
from reconcile.frames import Frames, conform
from sandbox.scenario import generate

WORLD = generate(600, seed=11)


def _texts(fr: Frames, seed: int) -> Frames:
    """The generated world with its references moved into the texts discovery reads, in the forms people
    write them (prefixes, punctuation, several values, a deal that names its ERP order, values that fit
    several records, vendor ids on payments)."""
    rng = np.random.default_rng(seed)

    def pick(df: pl.DataFrame, share: float) -> pl.Series:
        return pl.Series(rng.random(df.height) < share)

    order, inv, pay, deal = fr.order, fr.invoice, fr.payment, fr.deal
    deals = deal["source_id"].to_list()
    # orders: the deal id only in a description ("Opp 006..."), some naming two deals
    moved, two = pick(order, 0.4), pick(order, 0.05)
    other = pl.Series([deals[i] for i in rng.integers(0, len(deals), order.height)])
    order = order.with_columns(
        pl.when(moved).then(pl.format("Opp {} | ref", "deal_ref")).alias("ref_text"),
        pl.when(moved).then(None).otherwise(pl.col("deal_ref")).alias("deal_ref"),
    ).with_columns(pl.when(two & moved).then(pl.format("{} / {}", "ref_text", other)).otherwise("ref_text")
                   .alias("ref_text"))
    # deals naming their ERP order (CRM custom field), one pair naming the same order
    numbers = fr.order.select("deal_ref", "number").drop_nulls().unique("deal_ref", keep="first")
    named = deal.join(numbers, left_on="source_id", right_on="deal_ref", how="left")["number"]
    deal = deal.with_columns(pl.when(pick(deal, 0.2)).then(named).alias("order_ref"))
    deal = deal.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(deal["order_ref"].drop_nulls().first()))
                             .otherwise("order_ref").alias("order_ref"))
    # invoices: "as per order SO-..." in a memo, or the deal id; some only by their deal
    moved = pick(inv, 0.4)
    inv = inv.with_columns(
        pl.when(moved).then(pl.format("as per order {} thanks", pl.col("order_ref").str.replace("SO", "SO-")))
        .alias("ref_text"),
        pl.when(moved).then(None).otherwise(pl.col("order_ref")).alias("order_ref"),
    )
    # two invoices whose numbers meet after normalisation ("RE-000000000-1" and "INV000000000-1")
    inv = inv.with_columns(pl.when(pl.int_range(pl.len()).is_between(1, 5))
                           .then(pl.lit("RE-") + pl.col("number").shift(1).str.strip_prefix("INV"))
                           .otherwise("number").alias("number"))
    # payments: invoice numbers in ref_text / reference, a vendor id, an order number, two invoices at once
    numbers = fr.invoice["number"].to_list()
    ids = fr.invoice["source_id"].to_list()
    k = rng.integers(0, len(numbers), pay.height)
    k2 = rng.integers(0, len(numbers), pay.height)
    form = rng.integers(0, 5, pay.height)
    text = [
        [f"inv {numbers[a].lower()}", f"{numbers[a]} + {numbers[b]}", None, f"payment for order SO-{a:09d}",
         f"E2E {numbers[a]}"][f] for a, b, f in zip(k, k2, form, strict=True)]
    text[:3] = [f"inv {numbers[0]}"] * 3  # fits two invoices: never used, reported
    reference = [ids[a] if f == 2 else None for a, f in zip(k, form, strict=True)]
    pay = pay.with_columns(pl.Series("ref_text", text, dtype=pl.String), pl.Series("reference", reference,
                                                                                  dtype=pl.String),
                           pl.when(pick(pay, 0.5)).then(None).otherwise(pl.col("remittance")).alias("remittance"),
                           # an ERP payment line names its invoice by record id (same system only)
                           pl.when(pl.Series(form == 2)).then(pl.format("tryton:payment:{}", "source_id"))
                           .otherwise("id").alias("id"))
    return Frames(**{**{f.name: getattr(fr, f.name) for f in fields(fr)},
                     "order": conform("order", order), "invoice": conform("invoice", inv),
                     "payment": conform("payment", pay), "deal": conform("deal", deal)})


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    flat = df.with_columns(pl.col(c).list.join("|") for c, t in df.schema.items() if t == pl.List(pl.String))
    return flat.sort("id", *[c for c in flat.columns if c != "id"], nulls_last=True)


@pytest.mark.parametrize(("seed", "batch_rows"), [(1, 97), (2, 1000), (3, 100_000)])
def test_batched_discovery_equals_one_shot(tmp_path: Path, seed: int, batch_rows: int) -> None:
    fr = _texts(WORLD.frames(), seed)
    src = tmp_path / "world"
    src.mkdir()
    for f in fields(fr):
        getattr(fr, f.name).write_parquet(src / f"{f.name}.parquet", row_group_size=128)
    one = discover(fr)
    got = discover_directory(src, tmp_path / "discovered", batch_rows=batch_rows)
    for name in ("order", "invoice", "payment"):
        batched = pl.read_parquet(got / f"{name}.parquet")
        getattr(one, name).write_parquet(tmp_path / f"one_{name}.parquet")  # as the one-shot path wrote them
        want = pl.read_parquet(tmp_path / f"one_{name}.parquet")
        assert batched.schema == want.schema
        assert _sorted(batched).equals(_sorted(want)), name
    # not vacuous: every kind of finding is there
    rules = set(pl.concat([getattr(one, n).select("ref_rule") for n in ("order", "invoice", "payment")])["ref_rule"])
    assert {RULES["order"], RULES["invoice"], RULES["payment"], RULES["vendor"], RULES["deal"]} <= rules
    assert all(getattr(one, n)["ref_ambiguous"].drop_nulls().len() > 0 for n in ("order", "payment"))
    assert one.payment["found_invoice_ids"].list.len().max() == 2
    # the other tables are there, unchanged
    assert pl.read_parquet(got / "deal.parquet").equals(fr.deal)


def test_discovery_reads_each_table_only_once_it_has_arrived(tmp_path: Path) -> None:
    """``arrived(name)`` comes before discovery first reads each table (the store path exports them one by one): a
    table put in place only then is read all the same, the index's three first and the payments last; the result
    is discovery's on the complete directory."""
    fr = _texts(WORLD.frames(), 4)
    src, later = tmp_path / "world", tmp_path / "later"
    src.mkdir()
    later.mkdir()
    for f in fields(fr):
        getattr(fr, f.name).write_parquet(src / f"{f.name}.parquet")
    want = discover_directory(src, tmp_path / "want", batch_rows=97)
    for name in ("deal", "order", "invoice", "payment"):
        (src / f"{name}.parquet").rename(later / f"{name}.parquet")
    calls: list[str] = []

    def arrived(name: str) -> None:
        calls.append(name)
        if (later / f"{name}.parquet").exists():
            (later / f"{name}.parquet").rename(src / f"{name}.parquet")

    got = discover_directory(src, tmp_path / "got", batch_rows=97, arrived=arrived)
    assert calls == ["deal", "order", "invoice", "order", "invoice", "payment"]
    for name in ("order", "invoice", "payment"):
        assert _sorted(pl.read_parquet(got / f"{name}.parquet")).equals(
            _sorted(pl.read_parquet(want / f"{name}.parquet"))), name


def test_batched_discovery_of_a_world_without_targets(tmp_path: Path) -> None:
    fr = WORLD.frames()
    src = tmp_path / "world"
    src.mkdir()
    fr.payment.write_parquet(src / "payment.parquet")  # payments only: nothing to find, tables still written
    got = discover_directory(src, tmp_path / "out", batch_rows=50)
    assert _sorted(pl.read_parquet(got / "payment.parquet")).equals(_sorted(conform("payment", fr.payment)))
    assert pl.read_parquet(got / "order.parquet").is_empty()


def test_key_set_finds_exactly_its_strings() -> None:
    rng = np.random.default_rng(8)
    keys = pl.Series([f"K{i}" for i in rng.integers(0, 500, 800)] + [None], dtype=pl.String)
    asked = pl.Series([f"K{i}" for i in rng.integers(0, 1000, 3000)] + [None, ""], dtype=pl.String)
    want = [v is not None and v in set(keys.drop_nulls().to_list()) for v in asked.to_list()]
    hashed = KeySet.of(keys)
    assert hashed.hashes is not None and len(hashed.keys) == keys.drop_nulls().n_unique()
    assert hashed.contains(asked).to_list() == want
    # the string search (two keys of one hash) gives the same answers
    assert KeySet(None, keys.drop_nulls().unique().sort()).contains(asked).to_list() == want
    assert KeySet.of(keys.clear()).contains(asked).to_list() == [False] * len(asked)


def test_key_set_may_contain_only_drops_values_of_no_key_length() -> None:
    keys = KeySet.of(pl.Series(["INV-1", "SO-0042", None], dtype=pl.String))
    asked = pl.Series(["INV-2", "PAYMENT", "SO-0042", "YOU", None], dtype=pl.String)
    assert pl.select(keys.may_contain(pl.lit(asked))).to_series().to_list() == [True, True, True, False, None]
    assert KeySet(None, asked).may_contain(pl.lit(asked)).meta.output_name() == "literal"  # no lengths: no filter


def test_index_counts_targets_sharing_a_key() -> None:
    df = pl.DataFrame({"key": ["A1", "B2", "A1", "C3"]})
    assert df.select(_count(df, ["key"]).alias("n")).to_series().to_list() == [2, 1, 2, 1]
    uniq = df.unique("key", maintain_order=True)
    assert uniq.with_columns(_count(uniq, ["key"]).alias("n"))["n"].to_list() == [1, 1, 1]
    assert uniq.with_columns(_count(uniq, ["key"]).alias("n"))["n"].dtype == pl.UInt32


def test_tokens_without_a_digit_give_no_key() -> None:
    df = pl.DataFrame({"id": ["p1", "p2"], "remittance": ["Payment INV-0042 thank you", "thanks, no number"]})
    got = _tokens(df, "remittance")
    assert set(got["key"].to_list()) == {"0042", "PAYMENTINV0042THANKYOU"} and got["id"].to_list() == ["p1", "p1"]


def test_distinct_drops_repeated_rows_only() -> None:
    df = pl.DataFrame({"key": ["A", "A", "B", "A", None], "target_id": ["1", "2", "1", "1", "3"]})
    got = _distinct(df, ["key", "target_id"])
    assert sorted(got.rows(), key=str) == sorted(set(df.rows()), key=str)
    assert _distinct(df.head(3), ["key", "target_id"]).rows() == df.head(3).rows()
