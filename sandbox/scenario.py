"""Seeded scenario generator: a realistic Lead-to-Cash world with planted breaks and a ground truth.

The world is a plain data structure: one Polars frame per canonical table (columns named as the
canonical tables, money in integer cents during generation and ``Decimal`` on output) plus the
ground truth (code, identifying keys, fingerprint) of every planted break. A writer can later render
it to vendor-shaped files; :meth:`World.load` writes it into a store; :meth:`World.frames` hands it
to the frame-level reconciliation core directly (the benchmark path).

Systems: Salesforce (accounts, deals + lines, leads), Tryton (customers, sales orders + lines,
invoices / credit notes), Stripe (customers, charges with fees and payouts, refunds), a bank
(camt.053 lines with payer names and free remittance text). Identity is given as ``cross_ref``
rows (CRM account = cluster id).

Noise that must NOT raise exceptions: case/whitespace in references, missing deal references on
orders, rounding (+0.01), instalment invoices, partial payments, Stripe fees, payments in EUR for
USD invoices (dated rates), batch payments with and without remittance, missing remittance,
payer-name variants, credit notes with refunds, lost and open deals, not-yet-due open invoices.
Every exception code of DESIGN.md is planted on disjoint chains; the truth lists them.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from reconcile.codes import fingerprint
from reconcile.frames import MONEY, Frames, prepare

PLANTED = (
    "WON_NOT_ORDERED", "ORDER_WITHOUT_DEAL", "AMOUNT_MISMATCH", "CURRENCY_MISMATCH", "LINE_MISMATCH",
    "ORDERED_NOT_INVOICED", "OVER_INVOICED", "INVOICE_WITHOUT_ORDER", "DUPLICATE_INVOICE", "INVOICE_OVERDUE",
    "UNAPPLIED_PAYMENT", "PAYMENT_MISMATCH", "AMBIGUOUS_MATCH", "STAGE_CONFLICT", "CUSTOMER_MISMATCH",
    "QUOTE_MISMATCH", "CONTRACT_MISMATCH", "DELIVERED_NOT_INVOICED", "INVOICED_NOT_DELIVERED",
)
_MONEY_COLS = {"amount", "unit_price", "untaxed", "tax", "total", "fee", "quantity"}
# Tryton ids are integers: an invoice is ``chain * 10 + slot`` (instalments 1 and 2, then the planted extras)
_INVOICE_SLOT = {"O": 3, "W": 4, "D": 5, "C": 6}
_TABLE_ENTITY = {"deal": "deal", "deal_line": "deal_line", "order": "order", "order_line": "order_line",
                 "invoice": "invoice", "payment": "payment", "account": "account", "lead": "lead",
                 "quote": "quote", "quote_line": "quote_line", "contract": "contract", "delivery": "delivery",
                 "delivery_line": "delivery_line"}


@dataclass
class World:
    """Canonical rows (cents in ``*_c`` columns are already converted) + planted truth."""

    tables: dict[str, pl.DataFrame]
    truth: pl.DataFrame  # code, keys (list[str]), fingerprint
    as_of: date
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)

    def frames(self) -> Frames:
        return prepare(**self.tables)

    def save(self, directory: str | Path) -> None:
        """One Parquet file per table + ``truth.parquet`` + ``meta.json`` (a writer's input, or the bench's)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, df in self.tables.items():
            df.write_parquet(out / f"{name}.parquet")
        self.truth.write_parquet(out / "truth.parquet")
        (out / "meta.json").write_text(json.dumps({"as_of": self.as_of.isoformat(), "seed": self.seed, **self.meta}))

    @classmethod
    def read(cls, directory: str | Path) -> World:
        src = Path(directory)
        meta = json.loads((src / "meta.json").read_text())
        tables = {p.stem: pl.read_parquet(p) for p in src.glob("*.parquet") if p.stem != "truth"}
        return cls(tables=tables, truth=pl.read_parquet(src / "truth.parquet"),
                   as_of=date.fromisoformat(meta.pop("as_of")), seed=int(meta.pop("seed")), meta=meta)

    def load(self, store: Any) -> None:
        """Write the world into an empty store, column-wise (:mod:`canonical.columnar`: no Python rows,
        so 1M chains load in seconds): canonical rows with their source keys, account cross-refs, FX rates."""
        from canonical import columnar
        from canonical import tables as ct
        from reconcile.tables import fx_rate

        now = datetime.now(UTC)
        frames: dict[Any, pl.DataFrame] = {}
        for name, entity in _TABLE_ENTITY.items():
            if name not in self.tables:  # a world saved before the table existed
                continue
            df = self.tables[name]
            sid = pl.col("id").str.splitn(":", 3)
            frames[ct.table_for(entity)] = df.with_columns(
                sid.struct.field("field_0").alias("source_system"), pl.lit(entity).alias("source_object"),
                (pl.col("source_id") if "source_id" in df.columns else pl.lit(None, pl.String))
                .fill_null(sid.struct.field("field_2")).alias("source_id"),
                pl.lit("{}").alias("attributes"))
        frames[ct.cross_ref] = self.tables["cross_ref"].with_columns(
            pl.lit("generator").alias("method"), pl.lit(Decimal(1), pl.Decimal(38, 4)).alias("confidence"),
            pl.lit("{}").alias("evidence"), pl.lit(now, pl.Datetime("us", "UTC")).alias("created_at"))
        frames[fx_rate] = self.tables["fx_rate"].with_columns(pl.lit("generator").alias("source"))
        columnar.write_frames(store.engine, frames, delete=[fx_rate.name])


def _money(col: str) -> pl.Expr:
    return (pl.col(col).cast(pl.Decimal(38, 0)) * pl.lit(Decimal("0.01"))).cast(MONEY).alias(col.removesuffix("_c"))


def _pad(col: str, width: int) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.zfill(width)


def generate(n_chains: int, *, seed: int = 7, as_of: date = date(2026, 10, 31), rate: float = 0.003,
             erp: str = "tryton") -> World:
    """A world with ``n_chains`` closed-won deals (plus lost/open deals and leads) and planted breaks.

    ``erp`` names the ERP system of the orders, invoices and ERP customers (``tryton`` or ``odoo``):
    their canonical ids are ``<erp>:<entity>:<integer id>``; everything else is the same world.
    """
    if erp not in ("tryton", "odoo"):
        raise ValueError(f"erp must be tryton or odoo, not {erp!r}")
    rng = np.random.default_rng(seed)
    n = max(n_chains, 60)
    n_cust = max(8, n // 4)
    asof_ord = as_of.toordinal()
    epoch = date(1970, 1, 1).toordinal()

    def d(ordinals: Any) -> pl.Series:  # ordinals array -> Date series
        return pl.Series(np.asarray(ordinals, dtype=np.int64) - epoch).cast(pl.Int32).cast(pl.Date)

    # -- plant selection: disjoint chain sets --------------------------------------------------------
    m = max(1, round(n * rate))
    close = asof_ord - rng.integers(1, 400, n)
    perm = rng.permutation(n)
    old = perm[close[perm] <= asof_ord - 100]
    recent = perm[(close[perm] >= asof_ord - 20) & (close[perm] <= asof_ord - 9)]
    used: set[int] = set()

    def take(pool: np.ndarray, k: int) -> np.ndarray:
        out = [int(i) for i in pool if int(i) not in used][:k]
        used.update(out)
        return np.array(out, dtype=np.int64)

    plant: dict[str, np.ndarray] = {}
    for code in ("WON_NOT_ORDERED", "ORDERED_NOT_INVOICED", "INVOICE_OVERDUE", "PAYMENT_MISMATCH",
                 "DUPLICATE_INVOICE"):
        plant[code] = take(old, m)
    amb_i = take(recent, m)
    amb_j = take(recent, m)
    k_amb = min(len(amb_i), len(amb_j))
    amb_i, amb_j = amb_i[:k_amb], amb_j[:k_amb]
    settled = perm[close[perm] <= asof_ord - 15]  # order and first invoice issued by as_of
    for code in ("AMOUNT_MISMATCH", "CURRENCY_MISMATCH", "LINE_MISMATCH", "OVER_INVOICED", "STAGE_CONFLICT",
                 "ORDER_WITHOUT_DEAL", "INVOICE_WITHOUT_ORDER", "UNAPPLIED_PAYMENT"):
        plant[code] = take(settled, m)
    planted = np.zeros(n, dtype=bool)
    planted[list(used)] = True

    # -- customers ----------------------------------------------------------------------------------
    cust = rng.integers(0, n_cust, n)
    cust[amb_j] = cust[amb_i]
    close[amb_j] = close[amb_i]
    cust_ccy = np.where(rng.random(n_cust) < 0.9, "USD", "EUR")
    owners = np.array([f"rep{k:02d}@example.com" for k in range(12)])
    cust_owner = owners[rng.integers(0, 12, n_cust)]
    cidx = pl.DataFrame({"c": np.arange(n_cust)})
    crm_id = pl.format("salesforce:account:001{}", _pad("c", 12))
    accounts = pl.concat([
        cidx.select(crm_id.alias("id"), pl.lit("salesforce").alias("source_system"),
                    pl.format("Company {} Inc", "c").alias("name"), pl.format("TX{}", _pad("c", 8)).alias("tax_id"),
                    pl.lit("US").alias("country"), pl.Series(cust_owner).alias("owner")),
        cidx.select(pl.format(erp + ":account:{}", pl.col("c") + 1).alias("id"), pl.lit(erp).alias("source_system"),
                    pl.format("COMPANY {}, INC.", "c").alias("name"), pl.format("TX-{}", _pad("c", 8)).alias("tax_id"),
                    pl.lit("US").alias("country"), pl.lit(None, pl.String).alias("owner")),
        cidx.select(pl.format("stripe:account:cus_{}", _pad("c", 9)).alias("id"), pl.lit("stripe").alias("source_system"),
                    pl.format("Company {}", "c").alias("name"), pl.lit(None, pl.String).alias("tax_id"),
                    pl.lit(None, pl.String).alias("country"), pl.lit(None, pl.String).alias("owner")),
    ]).with_columns(pl.col("id").str.split_exact(":", 2).struct.field("field_2").alias("source_id"))
    mis_cust = rng.choice(n_cust, size=min(m, n_cust), replace=False)
    # the ERP's copy of these customers says another country (identity still links them: the ERP
    # party carries the CRM account id; two different tax ids would never be linked)
    accounts = accounts.with_columns(
        pl.when(pl.col("id").is_in([f"{erp}:account:{c + 1}" for c in mis_cust]))
        .then(pl.lit("CA")).otherwise(pl.col("country")).alias("country"))
    cross = pl.concat([
        cidx.select(pl.lit("account").alias("entity"), crm_id.alias("cluster_id"), crm_id.alias("member_id")),
        cidx.select(pl.lit("account").alias("entity"), crm_id.alias("cluster_id"),
                    pl.format(erp + ":account:{}", pl.col("c") + 1).alias("member_id")),
        cidx.select(pl.lit("account").alias("entity"), crm_id.alias("cluster_id"),
                    pl.format("stripe:account:cus_{}", _pad("c", 9)).alias("member_id")),
    ])
    # a cluster is named by its smallest member id, as identity resolution names it
    cross = cross.with_columns(pl.col("member_id").min().over("cluster_id").alias("cluster_id"))
    cluster_of_cust = dict(zip(cross["member_id"].to_list(), cross["cluster_id"].to_list(), strict=True))

    # -- deals and lines ----------------------------------------------------------------------------
    ci = np.arange(n)
    n_lines = rng.integers(1, 4, n)
    line_ci = np.repeat(ci, n_lines)
    line_no = np.concatenate([np.arange(k) for k in n_lines]) if n else np.array([], dtype=np.int64)
    qty = rng.integers(1, 11, line_ci.size)
    unit_c = rng.integers(1000, 500000, line_ci.size)
    lines = pl.DataFrame({"ci": line_ci, "ln": line_no, "qty": qty, "unit_c": unit_c,
                          "product_code": [f"P{k:03d}" for k in rng.integers(0, 400, line_ci.size)]})
    # ambiguity pairs: chain j gets chain i's lines exactly (same amounts)
    if k_amb:
        jmap = pl.DataFrame({"ci": amb_i, "cj": amb_j})
        lines = pl.concat([lines.filter(~pl.col("ci").is_in(amb_j)),
                           lines.join(jmap, on="ci").with_columns(pl.col("cj").alias("ci")).drop("cj")])
    lines = lines.with_columns((pl.col("qty") * pl.col("unit_c")).alias("amount_c")).sort(["ci", "ln"])
    amount_c = lines.group_by("ci").agg(pl.col("amount_c").sum()).sort("ci")["amount_c"].to_numpy()
    ccy = cust_ccy[cust]
    deal_sid = pl.format("006{}", _pad("ci", 12))
    chains = pl.DataFrame({"ci": ci, "cust": cust, "ccy": ccy, "amount_c": amount_c, "close": close,
                           "created": close - rng.integers(5, 150, n), "owner": cust_owner[cust],
                           "planted": planted})
    stage = np.full(n, "closed_won", dtype=object)
    stage[plant["STAGE_CONFLICT"]] = "closed_lost"
    deal_amount_c = amount_c.copy()
    deal_amount_c[plant["AMOUNT_MISMATCH"]] = (amount_c[plant["AMOUNT_MISMATCH"]] * 11) // 10
    deals = chains.select(
        pl.format("salesforce:deal:{}", deal_sid).alias("id"), deal_sid.alias("source_id"),
        pl.format("salesforce:account:001{}", _pad("cust", 12)).alias("account_id"),
        pl.Series(stage, dtype=pl.String).alias("stage"), pl.col("ccy").alias("currency"),
        pl.Series(deal_amount_c).alias("amount_c"), d(close).alias("close_date"),
        d(chains["created"].to_numpy()).cast(pl.Datetime("us", "UTC")).alias("created_at"), "owner",
    )
    n_extra = n // 3  # lost and open deals (no downstream rows): win rate and pipeline
    ex_i = np.arange(n, n + n_extra)
    ex_close = asof_ord - rng.integers(1, 400, n_extra)
    extra_deals = pl.DataFrame({"ci": ex_i}).select(
        pl.format("salesforce:deal:{}", pl.format("006{}", _pad("ci", 12))).alias("id"),
        pl.format("006{}", _pad("ci", 12)).alias("source_id"),
        pl.Series([f"salesforce:account:001{c:012d}" for c in rng.integers(0, n_cust, n_extra)],
                  dtype=pl.String).alias("account_id"),
        pl.Series(np.where(rng.random(n_extra) < 0.7, "closed_lost", "negotiation"), dtype=pl.String).alias("stage"),
        pl.lit("USD").alias("currency"), pl.Series(rng.integers(10000, 5000000, n_extra)).alias("amount_c"),
        d(ex_close).alias("close_date"), d(ex_close - rng.integers(5, 150, n_extra)).cast(
            pl.Datetime("us", "UTC")).alias("created_at"),
        pl.Series(owners[rng.integers(0, 12, n_extra)]).alias("owner"),
    )
    deal_lines = lines.join(chains.select("ci", "ccy"), on="ci").select(
        pl.format("salesforce:deal_line:00k{}{}", _pad("ci", 12), "ln").alias("id"),
        pl.format("salesforce:deal:006{}", _pad("ci", 12)).alias("deal_id"), "product_code",
        pl.col("qty").alias("quantity_c"), pl.col("ccy").alias("currency"), "unit_c", "amount_c",
    )

    # -- orders -------------------------------------------------------------------------------------
    has_order = np.ones(n, dtype=bool)
    has_order[plant["WON_NOT_ORDERED"]] = False
    order_date = close + rng.integers(0, 6, n)
    ref_noise = rng.random(n)
    ref_case = (ref_noise < 0.05) & ~planted
    ref_null = (ref_noise > 0.97) & ~planted
    occy = ccy.copy()
    occy[plant["CURRENCY_MISMATCH"]] = "GBP"
    ord_df = chains.with_columns(pl.Series(order_date).alias("od"), pl.Series(occy).alias("occy"),
                                 pl.Series(ref_case).alias("rc"), pl.Series(ref_null).alias("rn")).filter(
        pl.Series(has_order))
    orders = ord_df.select(
        "ci", pl.format(erp + ":order:{}", pl.col("ci") + 1).alias("id"), pl.format("SO{}", _pad("ci", 9)).alias("number"),
        pl.format(erp + ":account:{}", pl.col("cust") + 1).alias("account_id"),
        pl.when(pl.col("rn")).then(None).when(pl.col("rc")).then(pl.format(" {} ", deal_sid.str.to_lowercase()))
        .otherwise(deal_sid).alias("deal_ref"),
        d(ord_df["od"].to_numpy()).alias("order_date"), pl.lit("confirmed").alias("state"),
        pl.col("occy").alias("currency"), pl.col("amount_c").alias("untaxed_c"), pl.lit(0).alias("tax_c"),
        pl.col("amount_c").alias("total_c"), "od",
    )
    sub = set(plant["LINE_MISMATCH"].tolist())
    order_lines = lines.filter(pl.col("ci").is_in(orders["ci"].implode())).join(
        pl.DataFrame({"ci": ci, "occy": occy}), on="ci").select(
        pl.format(erp + ":order_line:{}", pl.col("ci") * 10 + pl.col("ln") + 1).alias("id"),
        pl.format(erp + ":order:{}", pl.col("ci") + 1).alias("order_id"),
        pl.when(pl.col("ci").is_in(list(sub)) & (pl.col("ln") == 0)).then(pl.lit("SUBST"))
        .otherwise(pl.col("product_code")).alias("product_code"),
        pl.col("qty").alias("quantity_c"), pl.col("occy").alias("currency"), "unit_c", "amount_c",
    )
    orphan = plant["ORDER_WITHOUT_DEAL"]
    orders_x = pl.DataFrame({"ci": orphan, "cust": cust[orphan]}).select(
        "ci", pl.format(erp + ":order:{}", pl.col("ci") + n + 1).alias("id"), pl.format("SOX{}", _pad("ci", 9)).alias("number"),
        pl.format(erp + ":account:{}", pl.col("cust") + 1).alias("account_id"), pl.format("006ZZ{}", "ci").alias("deal_ref"),
        d(np.full(len(orphan), asof_ord - 3)).alias("order_date"), pl.lit("confirmed").alias("state"),
        pl.Series(ccy[orphan]).alias("currency"), pl.Series(rng.integers(10000, 900000, len(orphan))).alias("untaxed_c"),
        pl.lit(0).alias("tax_c"), pl.lit(0).alias("total_c"), pl.lit(asof_ord - 3).alias("od"),
    ).with_columns(pl.col("untaxed_c").alias("total_c"))

    # -- invoices -----------------------------------------------------------------------------------
    no_inv = set(plant["ORDERED_NOT_INVOICED"].tolist())
    io = orders.filter(~pl.col("ci").is_in(list(no_inv)))
    io = io.with_columns(
        (pl.col("od") + pl.Series(rng.integers(0, 4, io.height))).alias("issue"),
        pl.Series(rng.random(io.height)).alias("u"),
    ).filter(pl.col("issue") <= asof_ord)
    single_only = np.concatenate([plant[c] for c in ("INVOICE_OVERDUE", "PAYMENT_MISMATCH", "DUPLICATE_INVOICE")]
                                 + [amb_i, amb_j])
    io = io.with_columns(((pl.col("u") < 0.15) & ~pl.col("ci").is_in(single_only.tolist())).alias("split"),
                         ((pl.col("u") > 0.98) & ~pl.col("ci").is_in(list(used))).alias("round"))
    first_c = (pl.col("total_c") * 4) // 10
    inv1 = io.select("ci", "number", "currency", "account_id", "issue", pl.lit(1).alias("k"),
                     pl.when(pl.col("split")).then(first_c).otherwise(pl.col("total_c") + pl.col("round").cast(pl.Int64))
                     .alias("total_c"), (pl.col("issue") + 30).alias("due"))
    inv2 = io.filter(pl.col("split")).select("ci", "number", "currency", "account_id", "issue", pl.lit(2).alias("k"),
                                             (pl.col("total_c") - first_c).alias("total_c"), (pl.col("issue") + 60).alias("due"))
    invs = pl.concat([inv1, inv2]).with_columns(
        pl.format(erp + ":invoice:{}", pl.col("ci") * 10 + pl.col("k")).alias("id"),
        pl.format("INV{}-{}", _pad("ci", 9), "k").alias("inv_no"), pl.lit("invoice").alias("kind"),
        pl.lit(False).alias("extra"))
    # planted extra invoices
    def extra_inv(ids: np.ndarray, tag: str, order_ref: pl.Expr, frac: int, due: int) -> pl.DataFrame:
        base = orders.filter(pl.col("ci").is_in(ids.tolist())) if tag != "W" else pl.DataFrame(
            {"ci": ids, "number": [None] * len(ids), "currency": ccy[ids],
             "account_id": [f"{erp}:account:{c + 1}" for c in cust[ids]], "total_c": amount_c[ids]},
            schema_overrides={"number": pl.String})
        return base.select("ci", order_ref.alias("number"), "currency", "account_id",
                           pl.lit(asof_ord - 5).alias("issue"), pl.lit(9).alias("k"),
                           ((pl.col("total_c") * frac) // 10).alias("total_c"), pl.lit(asof_ord + due).alias("due"),
                           pl.format(erp + ":invoice:{}", pl.col("ci") * 10 + _INVOICE_SLOT[tag]).alias("id"),
                           pl.format("INV{}-{}", _pad("ci", 9), pl.lit(tag)).alias("inv_no"),
                           pl.lit("invoice").alias("kind"), pl.lit(True).alias("extra"))
    over = extra_inv(plant["OVER_INVOICED"], "O", pl.col("number"), 2, 25)
    wo = extra_inv(plant["INVOICE_WITHOUT_ORDER"], "W", pl.format("SOW{}", _pad("ci", 9)), 10, 20)
    dup = invs.filter(pl.col("ci").is_in(plant["DUPLICATE_INVOICE"].tolist())).with_columns(
        pl.format(erp + ":invoice:{}", pl.col("ci") * 10 + _INVOICE_SLOT["D"]).alias("id"), pl.format("INV{}-9", _pad("ci", 9)).alias("inv_no"),
        pl.lit(True).alias("extra"))
    invs = pl.concat([invs, over, wo, dup], how="diagonal_relaxed")

    # -- payments -----------------------------------------------------------------------------------
    pay_base = invs.filter(~pl.col("extra")).join(chains.select("ci", "cust", "ccy"), on="ci").with_columns(
        (pl.col("due") - pl.Series(rng.integers(1, 30, invs.filter(~pl.col("extra")).height))).alias("pd"),
        pl.Series(rng.random(invs.filter(~pl.col("extra")).height)).alias("u"),
        pl.Series(rng.random(invs.filter(~pl.col("extra")).height)).alias("v"),
    )
    unpaid = set(plant["INVOICE_OVERDUE"].tolist()) | set(amb_i.tolist()) | set(amb_j.tolist())
    pay_base = pay_base.filter(~pl.col("ci").is_in(list(unpaid)))
    clean = ~pl.col("ci").is_in(list(used))
    pay_base = pay_base.with_columns(
        pl.when(pl.col("u") < 0.4).then(pl.lit("stripe")).otherwise(pl.lit("bank")).alias("chan"),
        (clean & (pl.col("u") >= 0.4) & (pl.col("v") < 0.03)).alias("partial"),
        (clean & (pl.col("u") >= 0.4) & (pl.col("v") >= 0.03) & (pl.col("v") < 0.08) & (pl.col("currency") == "USD"))
        .alias("fx"),
        (clean & (pl.col("v") >= 0.08) & (pl.col("v") < 0.33)).alias("noref"),
        (clean & (pl.col("u") < 0.4) & (pl.col("v") > 0.99) & (pl.col("k") == 1)).alias("refund"),
    )
    # partials: two payments 30% / 70%
    p_main = pay_base.with_columns(
        pl.when(pl.col("partial")).then((pl.col("total_c") * 3) // 10).otherwise(pl.col("total_c")).alias("pay_c"),
        pl.when(pl.col("partial")).then(pl.col("pd") - 10).otherwise(pl.col("pd")).alias("pd"),
        pl.lit("a").alias("part"))
    p_rest = pay_base.filter(pl.col("partial")).with_columns(
        (pl.col("total_c") - (pl.col("total_c") * 3) // 10).alias("pay_c"), pl.lit("b").alias("part"))
    pays = pl.concat([p_main, p_rest]).filter(pl.col("pd") <= asof_ord)
    short = plant["PAYMENT_MISMATCH"].tolist()
    pays = pays.with_columns(
        pl.when(pl.col("ci").is_in(short)).then((pl.col("pay_c") * 9) // 10).otherwise(pl.col("pay_c")).alias("pay_c"),
        pl.when(pl.col("ci").is_in(short)).then(pl.lit("bank")).otherwise(pl.col("chan")).alias("chan"),
    )
    # FX: EUR bank payments for USD invoices, at the dated rate
    rate_days = np.arange(asof_ord - 520, asof_ord + 1)
    eurusd = np.round(1.08 + 0.06 * np.sin((rate_days - rate_days[0]) / 37.0), 6)
    rate_of = dict(zip(rate_days.tolist(), eurusd.tolist(), strict=True))
    fx_pd = pays.filter(pl.col("fx"))["pd"].to_list()
    fx_tot = pays.filter(pl.col("fx"))["pay_c"].to_list()
    eur_c = [int(Decimal(t) / Decimal(str(rate_of[p])) + Decimal("0.5")) for t, p in zip(fx_tot, fx_pd, strict=True)]
    pays = pays.with_columns(pl.when(pl.col("fx")).then(None).otherwise(pl.col("pay_c")).alias("pay_c"))
    fx_vals = pays.select(pl.col("fx").cast(pl.Int64).cum_sum() - 1).to_series()
    eur_arr = np.array([*eur_c, 0], dtype=np.int64)
    pays = pays.with_columns(pl.when(pl.col("fx")).then(pl.Series(eur_arr[fx_vals.clip(0).to_numpy()]))
                             .otherwise(pl.col("pay_c")).alias("pay_c"),
                             pl.when(pl.col("fx")).then(pl.lit("EUR")).otherwise(pl.col("currency")).alias("pccy"))
    # batch payments: 3% of customers pay their clean, referenced, single-currency bank invoices in one go
    batch_cust = set(rng.choice(n_cust, size=max(1, n_cust * 3 // 100), replace=False).tolist())
    bmask = (pl.col("cust").is_in(list(batch_cust)) & (pl.col("chan") == "bank") & ~pl.col("partial") & ~pl.col("fx")
             & clean)
    bat = pays.filter(bmask)
    groups = bat.group_by("cust").agg(pl.len().alias("n"), pl.col("pay_c").sum(), pl.col("inv_no").sort(),
                                      pl.col("pd").max(), pl.col("pccy").first(), pl.col("ci").min())
    groups = groups.filter(pl.col("n").is_between(2, 5))
    pays = pays.join(bat.join(groups.select("cust"), on="cust").select("ci", "k", "part"), on=["ci", "k", "part"],
                     how="anti")
    batch_pays = groups.select(
        pl.format("bank:payment:B{}", "cust").alias("id"), pl.lit("payment").alias("kind"),
        pl.lit(None, pl.String).alias("account_id"), pl.col("pccy").alias("currency"), "pay_c",
        pl.lit(0).alias("fee_c"), pl.col("pd"), pl.format("COMPANY {} INC", "cust").alias("payer_name"),
        pl.when(pl.col("cust") % 2 == 0).then(pl.format("Batch {}", pl.col("inv_no").list.join(" ")))
        .otherwise(pl.lit("monthly settlement")).alias("remittance"),
        pl.lit(None, pl.String).alias("invoice_ref"), pl.lit(None, pl.String).alias("deal_ref"),
        pl.format("camt:{}:B", "pd").alias("settlement_ref"),
    )
    name_variant = pl.when(pl.col("u") < 0.6).then(pl.format("Company {} Inc.", "cust")).otherwise(
        pl.format("COMPANY {}", "cust"))
    stripe = pl.col("chan") == "stripe"
    fee = pl.when(stripe).then((pl.col("pay_c") * 29) // 1000 + 30).otherwise(0)
    payments = pays.select(
        pl.when(stripe).then(pl.format("stripe:payment:ch_{}{}{}", "ci", "k", "part"))
        .otherwise(pl.format("bank:payment:{}-{}{}", "ci", "k", "part")).alias("id"),
        pl.lit("payment").alias("kind"),
        pl.when(stripe).then(pl.format("stripe:account:cus_{}", _pad("cust", 9))).alias("account_id"),
        pl.col("pccy").alias("currency"), "pay_c", fee.alias("fee_c"), "pd",
        pl.when(~stripe).then(name_variant).alias("payer_name"),
        pl.when(~stripe & ~pl.col("noref")).then(pl.format("Payment {} thank you", "inv_no")).alias("remittance"),
        pl.when(stripe & ~pl.col("noref")).then(pl.col("inv_no")).alias("invoice_ref"),
        pl.when(stripe).then(pl.format("006{}", _pad("ci", 12))).alias("deal_ref"),
        pl.when(stripe).then(pl.format("po_{}", "pd")).otherwise(pl.format("camt:{}:{}", "pd", "ci")).alias("settlement_ref"),
    )
    # credit notes with refunds (clean Stripe-paid single invoices)
    rf = pays.filter(pl.col("refund") & (pl.col("part") == "a") & ~pl.col("partial") & (pl.col("pd") < asof_ord))
    credit_notes = rf.select(
        "ci", pl.col("number"), "currency", "account_id", pl.col("pd").alias("issue"), pl.lit(5).alias("k"),
        (pl.col("total_c") // 10).alias("total_c"), pl.col("pd").alias("due"),
        pl.format(erp + ":invoice:{}", pl.col("ci") * 10 + _INVOICE_SLOT["C"]).alias("id"), pl.format("CN{}", _pad("ci", 9)).alias("inv_no"),
        pl.lit("credit_note").alias("kind"), pl.lit(True).alias("extra"))
    refunds = rf.select(
        pl.format("stripe:payment:re_{}", "ci").alias("id"), pl.lit("refund").alias("kind"),
        pl.format("stripe:account:cus_{}", _pad("cust", 9)).alias("account_id"), pl.col("pccy").alias("currency"),
        (pl.col("total_c") // 10).alias("pay_c"), pl.lit(0).alias("fee_c"), (pl.col("pd") + 1).alias("pd"),
        pl.lit(None, pl.String).alias("payer_name"), pl.lit(None, pl.String).alias("remittance"),
        pl.col("inv_no").alias("invoice_ref"), pl.lit(None, pl.String).alias("deal_ref"),
        pl.format("po_{}", pl.col("pd") + 1).alias("settlement_ref"),
    ).filter(pl.col("pd") <= asof_ord)
    invs = pl.concat([invs, credit_notes], how="diagonal_relaxed")
    # planted payments: unapplied cash, and one payment that fits two equal invoices
    un = plant["UNAPPLIED_PAYMENT"]
    unapplied = pl.DataFrame({"ci": un}).select(
        pl.format("bank:payment:U{}", "ci").alias("id"), pl.lit("payment").alias("kind"),
        pl.lit(None, pl.String).alias("account_id"), pl.lit("USD").alias("currency"),
        pl.Series(rng.integers(5000, 900000, len(un))).alias("pay_c"), pl.lit(0).alias("fee_c"),
        pl.lit(asof_ord - 2).alias("pd"), pl.format("Unknown Payer {}", "ci").alias("payer_name"),
        pl.lit("transfer").alias("remittance"), pl.lit(None, pl.String).alias("invoice_ref"),
        pl.lit(None, pl.String).alias("deal_ref"), pl.format("camt:U{}", "ci").alias("settlement_ref"),
    )
    ambp = invs.filter(pl.col("ci").is_in(amb_i.tolist()) & ~pl.col("extra")).join(
        chains.select("ci", "cust"), on="ci").select(
        pl.format("bank:payment:A{}", "ci").alias("id"), pl.lit("payment").alias("kind"),
        pl.lit(None, pl.String).alias("account_id"), "currency", pl.col("total_c").alias("pay_c"),
        pl.lit(0).alias("fee_c"), pl.lit(asof_ord - 1).alias("pd"), pl.format("Company {} Inc", "cust").alias("payer_name"),
        pl.lit(None, pl.String).alias("remittance"), pl.lit(None, pl.String).alias("invoice_ref"),
        pl.lit(None, pl.String).alias("deal_ref"), pl.format("camt:A{}", "ci").alias("settlement_ref"),
    )
    payments = pl.concat([payments, batch_pays, refunds, unapplied, ambp], how="diagonal_relaxed")

    # -- leads --------------------------------------------------------------------------------------
    n_leads = n
    lc = asof_ord - rng.integers(1, 400, n_leads)
    conv = rng.random(n_leads) < 0.35
    leads = pl.DataFrame({"i": np.arange(n_leads)}).select(
        pl.format("salesforce:lead:00Q{}", _pad("i", 12)).alias("id"),
        pl.Series(np.where(conv, "converted", "open"), dtype=pl.String).alias("status"),
        d(lc).cast(pl.Datetime("us", "UTC")).alias("created_at"),
        pl.when(pl.Series(conv)).then(d(lc + 7).cast(pl.Datetime("us", "UTC"))).alias("converted_at"),
        pl.Series(owners[rng.integers(0, 12, n_leads)]).alias("owner"),
    )

    # -- quotes, contracts, deliveries (drawn and planted last: the rest of the world does not move) ---
    for code in ("QUOTE_MISMATCH", "CONTRACT_MISMATCH", "INVOICED_NOT_DELIVERED"):
        plant[code] = take(settled, m)
    # DELIVERED_NOT_INVOICED: m more won chains (index 3n + j: no id of the world above has it), ordered
    # 9..25 days ago (not yet ORDERED_NOT_INVOICED), shipped on the order date, never invoiced
    plant["DELIVERED_NOT_INVOICED"] = np.arange(m, dtype=np.int64)
    dci = 3 * n + np.arange(m, dtype=np.int64)
    d_cust = rng.integers(0, n_cust, m)
    d_close = asof_ord - rng.integers(14, 26, m)
    d_lines = pl.DataFrame({"ci": dci, "ln": np.zeros(m, dtype=np.int64), "qty": rng.integers(1, 11, m),
                            "unit_c": rng.integers(1000, 500000, m),
                            "product_code": [f"P{k:03d}" for k in rng.integers(0, 400, m)]}).with_columns(
        (pl.col("qty") * pl.col("unit_c")).alias("amount_c"))
    d_chains = pl.DataFrame({"ci": dci, "cust": d_cust, "ccy": cust_ccy[d_cust], "close": d_close,
                             "owner": cust_owner[d_cust], "amount_c": d_lines["amount_c"]})
    deals = pl.concat([deals, d_chains.select(
        pl.format("salesforce:deal:006{}", _pad("ci", 12)).alias("id"), pl.format("006{}", _pad("ci", 12)).alias("source_id"),
        pl.format("salesforce:account:001{}", _pad("cust", 12)).alias("account_id"), pl.lit("closed_won").alias("stage"),
        pl.col("ccy").alias("currency"), "amount_c", d(d_close).alias("close_date"),
        d(d_close - 30).cast(pl.Datetime("us", "UTC")).alias("created_at"), "owner")])
    d_deal_lines = d_lines.join(d_chains.select("ci", "ccy"), on="ci").select(
        pl.format("salesforce:deal_line:00k{}{}", _pad("ci", 12), "ln").alias("id"),
        pl.format("salesforce:deal:006{}", _pad("ci", 12)).alias("deal_id"), "product_code",
        pl.col("qty").alias("quantity_c"), pl.col("ccy").alias("currency"), "unit_c", "amount_c")
    d_orders = d_chains.with_columns((pl.col("close") + 2).alias("od")).select(
        "ci", pl.format(erp + ":order:{}", pl.col("ci") + 1).alias("id"), pl.format("SO{}", _pad("ci", 9)).alias("number"),
        pl.format(erp + ":account:{}", pl.col("cust") + 1).alias("account_id"),
        pl.format("006{}", _pad("ci", 12)).alias("deal_ref"), d(d_close + 2).alias("order_date"),
        pl.lit("confirmed").alias("state"), pl.col("ccy").alias("currency"), pl.col("amount_c").alias("untaxed_c"),
        pl.lit(0).alias("tax_c"), pl.col("amount_c").alias("total_c"), "od")
    d_order_lines = d_lines.join(d_chains.select("ci", "ccy"), on="ci").select(
        pl.format(erp + ":order_line:{}", pl.col("ci") * 10 + pl.col("ln") + 1).alias("id"),
        pl.format(erp + ":order:{}", pl.col("ci") + 1).alias("order_id"), "product_code",
        pl.col("qty").alias("quantity_c"), pl.col("ccy").alias("currency"), "unit_c", "amount_c")
    qdf = chains.select("ci", "ccy", pl.Series(deal_amount_c).alias("amt"), "close", "owner")
    q_bad = plant["QUOTE_MISMATCH"].tolist()
    quotes = qdf.select(
        pl.format("salesforce:quote:0Q0{}", _pad("ci", 12)).alias("id"),
        pl.format("Q-{}", _pad("ci", 8)).alias("number"),
        pl.format("salesforce:deal:006{}", _pad("ci", 12)).alias("deal_id"), pl.lit("accepted").alias("status"),
        d(qdf["close"].to_numpy() - 10).alias("quote_date"), d(qdf["close"].to_numpy() + 20).alias("valid_until"),
        pl.col("ccy").alias("currency"),
        pl.when(pl.col("ci").is_in(q_bad)).then(pl.col("amt") * 105 // 100).otherwise(pl.col("amt")).alias("untaxed_c"),
        "owner")
    # lost and open deals were quoted too (some): rejected / expired / still sent
    xq = extra_deals.filter(pl.Series(rng.random(n_extra) < 0.5))
    quotes = pl.concat([quotes.with_columns(pl.col("untaxed_c").alias("total_c")), xq.select(
        pl.col("id").str.replace("salesforce:deal:006", "salesforce:quote:0Q0").alias("id"),
        pl.col("source_id").str.replace("006", "Q-").alias("number"), pl.col("id").alias("deal_id"),
        pl.when(pl.col("stage") == "closed_lost").then(pl.lit("rejected")).otherwise(pl.lit("sent")).alias("status"),
        (pl.col("close_date") - pl.duration(days=10)).alias("quote_date"),
        (pl.col("close_date") + pl.duration(days=20)).alias("valid_until"), "currency",
        pl.col("amount_c").alias("untaxed_c"), "owner").with_columns(pl.col("untaxed_c").alias("total_c"))],
        how="vertical_relaxed")
    quote_lines = deal_lines.select(
        pl.col("id").str.replace("salesforce:deal_line:00k", "salesforce:quote_line:0QL").alias("id"),
        pl.col("deal_id").str.replace("salesforce:deal:006", "salesforce:quote:0Q0").alias("quote_id"),
        "product_code", "quantity_c", "currency", "unit_c", "amount_c")
    c_bad = plant["CONTRACT_MISMATCH"].tolist()
    contracts = chains.select(
        pl.format("salesforce:contract:800{}", _pad("ci", 12)).alias("id"),
        pl.format("C-{}", _pad("ci", 8)).alias("number"),
        pl.format("salesforce:account:001{}", _pad("cust", 12)).alias("account_id"),
        pl.format("salesforce:deal:006{}", _pad("ci", 12)).alias("deal_id"), pl.lit("activated").alias("status"),
        d(close).alias("start_date"), d(close + 365).alias("end_date"), d(close).alias("signed_date"),
        pl.col("ccy").alias("currency"),
        pl.when(pl.col("ci").is_in(c_bad)).then(pl.col("amount_c") * 12 // 10).otherwise(pl.col("amount_c"))
        .alias("value_c"), "owner")
    # deliveries: every order but the not-yet-shipped (ORDERED_NOT_INVOICED) and the planted
    # INVOICED_NOT_DELIVERED; some late (after the planned date), some short by one unit
    no_ship = set(plant["ORDERED_NOT_INVOICED"].tolist()) | set(plant["INVOICED_NOT_DELIVERED"].tolist())
    dni = dci.tolist()
    ship = pl.concat([orders.filter(~pl.col("ci").is_in(list(no_ship))), d_orders], how="vertical_relaxed")
    lag = rng.integers(0, 3, ship.height)
    late = rng.random(ship.height) < 0.08
    short_ship = set(ship.filter(pl.Series(rng.random(ship.height) < 0.05))["ci"].to_list())
    ship = ship.with_columns(pl.when(pl.col("ci").is_in(dni)).then(pl.col("od")).otherwise(
        pl.col("od") + pl.Series(lag) + pl.Series(late).cast(pl.Int64) * 4).alias("out"),
        (pl.col("od") + 2).alias("plan"))
    deliveries = ship.select(
        pl.format(erp + ":delivery:{}", pl.col("ci") + 1).alias("id"), pl.format("OUT{}", _pad("ci", 9)).alias("number"),
        "account_id", pl.col("id").alias("order_id"), pl.col("number").alias("order_ref"),
        pl.when(pl.col("out") <= asof_ord).then(pl.lit("delivered")).otherwise(pl.lit("ready")).alias("state"),
        d(ship["plan"].to_numpy()).alias("planned_date"),
        pl.when(pl.col("out") <= asof_ord).then(pl.Series(d(ship["out"].to_numpy()))).alias("shipped_date"),
        pl.when(pl.col("out") <= asof_ord).then(pl.Series(d(ship["out"].to_numpy()))).alias("delivered_date"))
    delivery_lines = pl.concat([lines, d_lines], how="diagonal_relaxed").filter(
        pl.col("ci").is_in(ship["ci"].implode())).select(
        pl.format(erp + ":delivery_line:{}", pl.col("ci") * 10 + pl.col("ln") + 1).alias("id"),
        pl.format(erp + ":delivery:{}", pl.col("ci") + 1).alias("delivery_id"),
        pl.format(erp + ":order_line:{}", pl.col("ci") * 10 + pl.col("ln") + 1).alias("order_line_id"),
        pl.when(pl.col("ci").is_in(list(sub)) & (pl.col("ln") == 0)).then(pl.lit("SUBST"))
        .otherwise(pl.col("product_code")).alias("product_code"),
        pl.when(pl.col("ci").is_in(list(short_ship)) & (pl.col("ln") == 0) & (pl.col("qty") > 1))
        .then(pl.col("qty") - 1).otherwise(pl.col("qty")).cast(MONEY).alias("quantity"))

    # -- output frames ------------------------------------------------------------------------------
    tables: dict[str, pl.DataFrame] = {
        "account": accounts,
        "cross_ref": cross,
        "deal": pl.concat([deals, extra_deals]).with_columns(_money("amount_c")).drop("amount_c"),
        "deal_line": pl.concat([deal_lines, d_deal_lines]).with_columns(_money("unit_c").alias("unit_price"), _money("amount_c"),
                                             pl.col("quantity_c").cast(MONEY).alias("quantity"))
        .drop("unit_c", "amount_c", "quantity_c"),
        "order": pl.concat([orders, orders_x, d_orders], how="vertical_relaxed").drop("ci", "od").with_columns(
            _money("untaxed_c"), _money("tax_c"), _money("total_c"),
            pl.col("id").str.split_exact(":", 2).struct.field("field_2").alias("source_id"),
        ).drop("untaxed_c", "tax_c", "total_c"),
        "order_line": pl.concat([order_lines, d_order_lines]).with_columns(_money("unit_c").alias("unit_price"), _money("amount_c"),
                                               pl.col("quantity_c").cast(MONEY).alias("quantity"))
        .drop("unit_c", "amount_c", "quantity_c"),
        "invoice": invs.select(
            "id", pl.col("id").str.split_exact(":", 2).struct.field("field_2").alias("source_id"),
            pl.col("inv_no").alias("number"), "kind", "account_id", pl.col("number").alias("order_ref"),
            d(invs["issue"].to_numpy()).alias("issue_date"), d(invs["due"].to_numpy()).alias("due_date"),
            pl.lit("open").alias("status"), "currency", _money("total_c"),
        ),
        "payment": payments.select(
            "id", pl.col("id").str.split_exact(":", 2).struct.field("field_2").alias("source_id"), "kind",
            "account_id", "currency", _money("pay_c").alias("amount"), _money("fee_c"),
            d(payments["pd"].to_numpy()).alias("payment_date"), "payer_name", "remittance", "invoice_ref", "deal_ref",
            "settlement_ref", pl.lit("succeeded").alias("status"),
        ),
        "fx_rate": pl.DataFrame({"base": "EUR", "quote": "USD", "d": rate_days}).select(
            "base", "quote", d(rate_days).alias("rate_date"),
            pl.Series([Decimal(str(r)) for r in eurusd.tolist()], dtype=pl.Decimal(38, 10)).alias("rate")),
        "lead": leads,
        "quote": quotes.with_columns(_money("untaxed_c"), _money("total_c")).drop("untaxed_c", "total_c"),
        "quote_line": quote_lines.with_columns(_money("unit_c").alias("unit_price"), _money("amount_c"),
                                               pl.col("quantity_c").cast(MONEY).alias("quantity"))
        .drop("unit_c", "amount_c", "quantity_c"),
        "contract": contracts.with_columns(_money("value_c")).drop("value_c"),
        "delivery": deliveries,
        "delivery_line": delivery_lines,
    }
    for name in ("deal", "order", "invoice", "payment", "account", "deal_line", "order_line", "quote", "quote_line",
                 "contract", "delivery", "delivery_line"):
        if "source_id" not in tables[name].columns:
            tables[name] = tables[name].with_columns(
                pl.col("id").str.split_exact(":", 2).struct.field("field_2").alias("source_id"))

    # -- ground truth ---------------------------------------------------------------------------------
    def deal_id(i: int) -> str:
        return f"salesforce:deal:006{i:012d}"

    truth: list[tuple[str, list[str]]] = []
    keyer = {
        "WON_NOT_ORDERED": lambda i: [deal_id(i)], "AMOUNT_MISMATCH": lambda i: [deal_id(i)],
        "CURRENCY_MISMATCH": lambda i: [deal_id(i)], "LINE_MISMATCH": lambda i: [deal_id(i)],
        "STAGE_CONFLICT": lambda i: [deal_id(i)],
        "ORDER_WITHOUT_DEAL": lambda i: [f"{erp}:order:{i + n + 1}"],
        "ORDERED_NOT_INVOICED": lambda i: [f"{erp}:order:{i + 1}"], "OVER_INVOICED": lambda i: [f"{erp}:order:{i + 1}"],
        "INVOICE_WITHOUT_ORDER": lambda i: [f"{erp}:invoice:{i * 10 + _INVOICE_SLOT['W']}"],
        "DUPLICATE_INVOICE": lambda i: [f"{erp}:invoice:{i * 10 + 1}", f"{erp}:invoice:{i * 10 + _INVOICE_SLOT['D']}"],
        "INVOICE_OVERDUE": lambda i: [f"{erp}:invoice:{i * 10 + 1}"],
        "PAYMENT_MISMATCH": lambda i: [f"{erp}:invoice:{i * 10 + 1}"],
        "UNAPPLIED_PAYMENT": lambda i: [f"bank:payment:U{i}"],
        "QUOTE_MISMATCH": lambda i: [f"salesforce:quote:0Q0{i:012d}"],
        "CONTRACT_MISMATCH": lambda i: [f"salesforce:contract:800{i:012d}"],
        "DELIVERED_NOT_INVOICED": lambda j: [f"{erp}:order:{3 * n + j + 1}"],
        "INVOICED_NOT_DELIVERED": lambda i: [f"{erp}:order:{i + 1}"],
    }
    for code, fn in keyer.items():
        truth.extend((code, fn(int(i))) for i in plant[code])
    truth.extend(("AMBIGUOUS_MATCH", [f"bank:payment:A{int(i)}"]) for i in amb_i)
    truth.extend(("CUSTOMER_MISMATCH", [cluster_of_cust[f"salesforce:account:001{int(c):012d}"]]) for c in mis_cust)
    tdf = pl.DataFrame(
        [(c, sorted(k), fingerprint(c, k)) for c, k in truth],
        schema={"code": pl.String, "keys": pl.List(pl.String), "fingerprint": pl.String}, orient="row",
    )
    return World(tables=tables, truth=tdf, as_of=as_of, seed=seed,
                 meta={"chains": n, "customers": n_cust, "planted_per_code": m,
                       "rate_days": math.floor(len(rate_days)), "erp": erp})


def shuffled(world: World, seed: int) -> World:
    """The same world with every table's rows in another order (for order-independence tests)."""
    tables = {k: v.sample(fraction=1.0, shuffle=True, seed=seed) for k, v in world.tables.items()}
    return World(tables=tables, truth=world.truth, as_of=world.as_of, seed=world.seed, meta=world.meta)


def days_before(as_of: date, n: int) -> date:
    return as_of - timedelta(days=n)


def main() -> None:
    """``python -m sandbox.scenario --chains N (--out DIR | --world DIR)``: write a world as Parquet
    (``--out``, the canonical tables) or as a world directory of vendor files (``--world``, docs/world.md)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--chains", type=int, required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", help="write the canonical tables as Parquet here")
    ap.add_argument("--world", help="write a world directory (vendor-shaped files) here")
    args = ap.parse_args()
    if not (args.out or args.world):
        ap.error("give --out DIR and/or --world DIR")
    world = generate(args.chains, seed=args.seed)
    if args.out:
        world.save(args.out)
    if args.world:
        from sandbox.world_writer import write_world

        write_world(world, args.world)


if __name__ == "__main__":
    main()
