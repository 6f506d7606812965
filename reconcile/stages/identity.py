"""Stage 1, identity: which customer cluster each account (and each bank payer name) belongs to."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reconcile.frames import Frames
from reconcile.stages.contract import expect
from reconcile.stages.expr import NAME_KEY, name_key_of


@dataclass(frozen=True)
class Identity:
    """``xref``: account_id, cluster_id (one row per account of a cluster).
    ``acct``: the accounts + cluster_id (own id when unclustered) + nname (normalized name).
    ``cluster_owner``: cluster_id, cluster_owner (the smallest owner of the cluster's accounts).
    ``name_to_cluster``: nname, name_cluster (names that belong to exactly one cluster).
    ``shared_names``: nname, cluster_id (names several clusters carry: homonyms in two countries, two
    entities the CRM and the ERP do not agree are one; one row per cluster of the name)."""

    xref: pl.DataFrame
    acct: pl.DataFrame
    cluster_owner: pl.DataFrame
    name_to_cluster: pl.DataFrame
    shared_names: pl.DataFrame

    def cluster_of(self, df: pl.DataFrame, col: str = "account_id") -> pl.DataFrame:
        """``df`` + cluster_id of its ``col`` account (the account itself when unclustered)."""
        return df.join(self.xref.rename({"account_id": col}), on=col, how="left").with_columns(
            pl.coalesce("cluster_id", col).alias("cluster_id")
        )


def resolve_identity(fr: Frames) -> Identity:
    expect("identity", "account", fr.account, ("id", "name", "owner"))
    expect("identity", "cross_ref", fr.cross_ref, ("entity", "member_id", "cluster_id"))
    xref = fr.cross_ref.filter(pl.col("entity") == "account").select(
        pl.col("member_id").alias("account_id"), "cluster_id"
    ).unique("account_id", keep="first")
    acct = fr.account.join(xref, left_on="id", right_on="account_id", how="left").with_columns(
        pl.coalesce("cluster_id", "id").alias("cluster_id"), name_key_of(fr.account, "name").alias("nname")
    ).drop(NAME_KEY, strict=False)
    cluster_owner = acct.filter(pl.col("owner").is_not_null()).group_by("cluster_id").agg(
        pl.col("owner").min().alias("cluster_owner")
    )
    # a name maps to its cluster when all accounts of that name are in one (only repeated names need counting)
    named = acct.filter(pl.col("nname").is_not_null() & (pl.col("nname") != "")).select(
        "nname", "cluster_id", (pl.len().over("nname") > 1).alias("rep"))
    rep = named.filter(pl.col("rep")).select("nname", "cluster_id").unique().with_columns(
        pl.len().over("nname").alias("n_cl"))
    name_to_cluster = pl.concat([
        named.filter(~pl.col("rep")).select("nname", pl.col("cluster_id").alias("name_cluster")),
        rep.filter(pl.col("n_cl") == 1).select("nname", pl.col("cluster_id").alias("name_cluster")),
    ])
    shared = rep.filter(pl.col("n_cl") > 1).select("nname", "cluster_id")
    return Identity(xref=xref, acct=acct, cluster_owner=cluster_owner, name_to_cluster=name_to_cluster,
                    shared_names=shared)
