"""Stage 11, finish_exceptions: the stages' exception rows get an owner, an amount in the reporting currency,
a severity and a stable fingerprint; one row per fingerprint, sorted by code and fingerprint."""

from __future__ import annotations

from datetime import date

import polars as pl

from reconcile.codes import BASE_SEVERITY, fingerprint
from reconcile.frames import MONEY, Frames
from reconcile.settings import Settings
from reconcile.stages.contract import EXCEPTION_COLUMNS, expect_parts
from reconcile.stages.expr import conv, m, with_rate


def finish_exceptions(parts: list[pl.DataFrame], deal: pl.DataFrame, cluster_owner: pl.DataFrame,
                      ib: pl.DataFrame, fr: Frames, s: Settings, as_of: date) -> pl.DataFrame:
    """Columns: fingerprint, code, severity, chain_id, keys, records, owner, currency, amount,
    reporting_currency, amount_reporting, bucket, detail. The first part's row wins a repeated fingerprint."""
    expect_parts("finish_exceptions", parts, EXCEPTION_COLUMNS)
    cols = list(EXCEPTION_COLUMNS)
    ex = pl.concat([p.select(cols).with_columns(pl.col("amount").cast(MONEY)) for p in parts], how="vertical_relaxed")
    ex = ex.join(deal.select(pl.col("id").alias("chain_id"), pl.col("owner").alias("deal_owner"),
                             pl.col("currency").alias("chain_ccy")), on="chain_id", how="left")
    ex = ex.join(cluster_owner, on="cluster_id", how="left").with_columns(
        pl.coalesce("deal_owner", "cluster_owner").alias("owner"),
    )
    ex = with_rate(ex.with_columns(pl.lit(as_of).alias("as_of")), fr.fx_rate, "currency",
                   pl.lit(s.reporting_currency), "as_of", "rep_rate")
    ex = ex.with_columns(
        pl.lit(s.reporting_currency).alias("reporting_currency"),
        pl.when(pl.col("rep_rate").is_not_null()).then(conv("amount", "rep_rate")).alias("amount_reporting"),
    )
    overdue_bucket = ib.select(pl.concat_list(pl.col("invoice_id")).alias("keys"), "bucket")
    ex = ex.join(overdue_bucket, on="keys", how="left")
    big = pl.col("amount_reporting") >= m(100000)
    base = pl.col("code").replace_strict(BASE_SEVERITY, default="medium")
    sev = (pl.when(pl.col("code") == "INVOICE_OVERDUE").then(
        pl.col("bucket").replace_strict({"1-30": "low", "31-60": "medium", "61-90": "high", "90+": "critical"},
                                        default="medium"))
        .when(big.fill_null(False)).then(pl.lit("critical")).otherwise(base))
    ex = ex.with_columns(sev.alias("severity"), pl.col("keys").list.sort(), pl.col("records").list.unique().list.sort())
    fps = [fingerprint(c, k) for c, k in ex.select("code", "keys").iter_rows()]
    ex = ex.with_columns(pl.Series("fingerprint", fps, dtype=pl.String))
    ex = ex.unique("fingerprint", keep="first")
    return ex.select(
        "fingerprint", "code", "severity", "chain_id", "keys", "records", "owner", "currency", "amount",
        "reporting_currency", "amount_reporting", "bucket", "detail",
    ).sort(["code", "fingerprint"])
