"""The frame-level reconciliation core: canonical frames in, chains/links/allocations/exceptions out.

Everything is set-based Polars on exact ``Decimal`` money; only the bounded subset-sum search
runs in Python, and only on the small residual of payments that no reference and no unique 1:1
amount explains (per customer pool, at most ``subset_pool_max`` open invoices, subsets of at most
``max_subset_invoices``). No decision depends on input order: candidates are counted, a link is
made only when it is unique both ways, and every tie becomes ``AMBIGUOUS_MATCH``. Where an order of
rows is needed (spreading one payment over several invoices) it is a data order (due date, number,
id), never the load order.

Before any pass, over the whole input (before bucketing), reference discovery
(:mod:`reconcile.discovery`) fills the references the configured keys miss with what it finds by value
in ``ref_text`` / remittance / vendor object ids (rules ``*.discovered_ref``, ``payment.vendor_id``).

Passes (each a stage module of :mod:`reconcile.stages`; :func:`reconcile_one` calls them in order):

1. Identity: account -> cluster (``cross_ref``); bank payer name -> cluster by normalized name.
2. Orders -> deals by ``deal_ref`` (rule ``order.deal_ref``), else by cluster + amount + date
   (``order.identity_amount``, unique both ways, runner-up and margin kept).
3. Invoices -> orders by ``order_ref``, else -> deals by ``deal_ref``.
4. Credit notes spread over the invoices of their order.
5. Payments: explicit references (``invoice_ref`` + invoice numbers found in the remittance), then
   ``deal_ref`` / customer pool 1:1 by amount (mutually unique), then bounded subset sum.
   FX: a payment in another currency is converted at the dated rate; the invoice's residual within
   ``fx_tolerance_rel`` becomes an explicit FX difference. Fees are kept per payment (gross applied).
6. Chain checks, exceptions, row states, and the conservation check (fails loudly).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from reconcile.frames import Frames
from reconcile.settings import Settings
from reconcile.stages.billing import check_billing, check_stage_conflicts
from reconcile.stages.chains import check_chains
from reconcile.stages.conservation import ConservationError, conservation
from reconcile.stages.credits import apply_credits
from reconcile.stages.customers import check_customers
from reconcile.stages.deliveries import check_deliveries, delivery_chain_columns
from reconcile.stages.exceptions import finish_exceptions
from reconcile.stages.identity import resolve_identity
from reconcile.stages.invoices import link_invoices
from reconcile.stages.lines import check_lines
from reconcile.stages.orders import link_orders
from reconcile.stages.payments import allocate_payments
from reconcile.stages.quotes import check_quotes, quote_chain_columns
from reconcile.stages.settlement import settle, with_bank_charges
from reconcile.stages.states import row_states

__all__ = ["ROWS_PER_PARTITION", "ConservationError", "CoreResult", "Settings", "buckets_for", "merge_totals",
           "reconcile_frames", "reconcile_one"]


@dataclass
class CoreResult:
    chains: pl.DataFrame
    links: pl.DataFrame
    allocations: pl.DataFrame
    invoice_balances: pl.DataFrame
    payment_balances: pl.DataFrame
    exceptions: pl.DataFrame
    states: pl.DataFrame
    totals: dict[str, Any]


class _Clock:
    """Stage timings on stderr when LTC_RECON_PROFILE is set (benchmark tuning)."""

    def __init__(self) -> None:
        self.on = bool(os.environ.get("LTC_RECON_PROFILE"))
        self.t = time.perf_counter()
        self.cpu = time.process_time()

    def __call__(self, label: str) -> None:
        if self.on:
            now = time.perf_counter()
            import sys

            from canonical.columnar import peak_rss_mb

            rss = peak_rss_mb()
            cpu = time.process_time()
            print(f"  {label}: {now - self.t:.2f}s cpu={cpu - self.cpu:.2f}s peak_rss={rss}MB", file=sys.stderr)
            self.t, self.cpu = now, cpu


# --- the core ------------------------------------------------------------------------------------

# payments + invoices per bucket: bounds the intermediates' memory; smaller inputs run in one shot, where the
# partition pre-pass would cost more time than it saves memory. At 1M chains (2.24M rows), 200k-row buckets
# (12) took the run's peak from the pre-pass's 1354 MB to 1549 MB as the buckets went on, 150k-row buckets
# (15) stay under the pre-pass's peak for the same CPU time (bench/reconcile.py, 2026-12-04)
ROWS_PER_PARTITION = 150_000


def buckets_for(rows: int, partitions: int | None = None) -> int:
    """Buckets for ``rows`` payments + invoices: ``partitions`` when given, else one per
    :data:`ROWS_PER_PARTITION` (one shot up to twice that)."""
    if partitions is not None:
        return max(1, partitions)
    return 1 if rows <= 2 * ROWS_PER_PARTITION else -(-rows // ROWS_PER_PARTITION)


def reconcile_frames(fr: Frames, s: Settings, as_of: date, partitions: int | None = None) -> CoreResult:
    """Reconcile the frames; large inputs run bucket by bucket (see :mod:`reconcile.partition`).

    ``partitions`` forces the number of buckets (1 = one shot); by default it grows with the input.
    The result does not depend on it.
    """
    from reconcile.discovery import discover

    fr = discover(fr)
    n = buckets_for(fr.payment.height + fr.invoice.height, partitions)
    if n <= 1:
        return reconcile_one(fr, s, as_of)
    from reconcile.partition import partitions as split

    clock = _Clock()
    results = []
    for part in split(fr, n):
        clock("partition")
        results.append(reconcile_one(part, s, as_of))
    return _merge(results)


def merge_totals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals of several partitions' results as one run's totals."""
    totals: dict[str, Any] = {"rows": {}, "states": {}, "cash": {}, "exceptions": {}}
    for t in parts:
        for part in ("rows", "states", "exceptions"):
            for k, v in t[part].items():
                totals[part][k] = totals[part].get(k, 0) + v
        for ccy, c in t["cash"].items():
            acc = totals["cash"].setdefault(ccy, {})
            for k, v in c.items():
                acc[k] = str(Decimal(acc[k]) + Decimal(v)) if k in acc else v
    for part in ("states", "cash", "exceptions"):
        totals[part] = dict(sorted(totals[part].items()))
    return totals


def _merge(results: list[CoreResult]) -> CoreResult:
    def cat(name: str) -> pl.DataFrame:
        return pl.concat([getattr(r, name) for r in results], how="vertical_relaxed")

    return CoreResult(chains=cat("chains"), links=cat("links"), allocations=cat("allocations"),
                      invoice_balances=cat("invoice_balances"), payment_balances=cat("payment_balances"),
                      exceptions=cat("exceptions").sort(["code", "fingerprint"]), states=cat("states"),
                      totals=merge_totals([r.totals for r in results]))


#: ``reconcile_one``'s ``links_ready``: called with (part, links, allocations or None) as soon as they are final
LinksReady = Callable[[int, pl.DataFrame | None, pl.DataFrame | None], object]


def reconcile_one(fr: Frames, s: Settings, as_of: date, links_ready: LinksReady | None = None) -> CoreResult:
    """One shot over all the frames (what each partition runs): the stages of :mod:`reconcile.stages`.

    ``links_ready`` is handed the result's links as soon as they are made: part 0 (the order and invoice links)
    before the payments are allocated, part 1 (the payment links) with the allocations after the settlement, part 2
    (quote and delivery links, ``None`` if there are none) after the checks; the result's ``links`` are parts 0, 1
    and 2 in order (the store path writes each while the next is computed)."""
    clock = _Clock()
    # each check runs on a thread beside the linking stages as soon as what it reads is made (Polars releases the
    # GIL; the stages' many small steps leave a core idle between them): the checks one after the other there,
    # the links, allocations and settlement here
    with ThreadPoolExecutor(1, thread_name_prefix="ltc-checks") as aside:
        ident = resolve_identity(fr)
        customers = aside.submit(check_customers, ident)
        clock("identity")
        orders = link_orders(fr, ident, s)
        quotes = aside.submit(check_quotes, fr.quote, fr.quote_line, fr.contract, orders.deal, fr.deal_line,
                              orders.order, s, orders.unique_keys)
        chains_f = aside.submit(check_chains, fr, orders, s, as_of, ident.acct)
        lines = aside.submit(lambda: check_lines(fr, chains_f.result(), s))
        clock("orders")
        invoices = link_invoices(fr, ident, orders, s)
        if links_ready is not None:
            links_ready(0, _concat([*orders.links, *invoices.links]), None)
        deliveries = aside.submit(check_deliveries, fr.delivery, orders.order, invoices.inv, s, as_of)
        billing_f = aside.submit(lambda: check_billing(fr, orders, invoices, chains_f.result(), s, as_of))
        credits = apply_credits(invoices)
        clock("invoices+credits")
        payments = allocate_payments(fr, ident, orders, invoices, credits, s, as_of)
        clock("payments")
        settlement = settle(invoices, payments, s, as_of)
        paid = [with_bank_charges(lk, settlement) for lk in payments.links]
        allocations = _allocation_rows(payments.alloc, settlement.last_alloc, settlement.ib)
        if links_ready is not None:
            links_ready(1, _concat(paid), allocations)
        clock("settlement")
        conflicts = check_stage_conflicts(orders, invoices, payments, fr.fx_rate)
        chains, billing = chains_f.result(), billing_f.result()
        quote_ex, quote_links = quotes.result()
        delivery_ex, delivery_links = deliveries.result()
        lines_ex, customers_ex = lines.result(), customers.result()
    # goods out and never billed is the more specific fact: the order is not also "ordered, not invoiced"
    shipped_unbilled = [e.filter(pl.col("code") == "DELIVERED_NOT_INVOICED").select(pl.col("keys").list.first())
                        for e in delivery_ex]
    if shipped_unbilled:
        told = pl.concat(shipped_unbilled)["keys"].implode()
        billing = [e.filter(~((pl.col("code") == "ORDERED_NOT_INVOICED") & pl.col("keys").list.first().is_in(told)))
                   for e in billing]
    checks = [*chains.exceptions, *lines_ex, *billing, *conflicts, *customers_ex, *quote_ex, *delivery_ex]
    clock("checks")
    if links_ready is not None:
        links_ready(2, _concat([*quote_links, *delivery_links]), None)
    exceptions = finish_exceptions([*orders.exceptions, *invoices.exceptions, *settlement.exceptions, *checks],
                                   orders.deal, ident.cluster_owner, settlement.ib, fr, s, as_of)
    clock("exceptions")
    states = row_states(orders, invoices, payments, settlement, exceptions, s)
    totals = conservation(fr, invoices.inv, invoices.targets, credits.credits, credits.credit_applied,
                          payments.act_pay, settlement.pbal, payments.alloc, settlement.ib, exceptions, states)
    clock("states+conservation")
    # Row order of the frames is unspecified (content is order-independent); exceptions are sorted.
    chain_rows = _chain_rows(chains.ch, settlement.ib).join(
        quote_chain_columns(fr.quote, fr.contract, quote_links), on="chain_id", how="left").join(
        delivery_chain_columns(delivery_links, fr.delivery), on="chain_id", how="left")
    return CoreResult(chains=chain_rows,
                      links=pl.concat([*orders.links, *invoices.links, *paid, *quote_links, *delivery_links],
                                    how="vertical_relaxed"),
                      allocations=allocations,
                      invoice_balances=settlement.ib, payment_balances=settlement.pbal,
                      exceptions=exceptions, states=states, totals=totals)


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame | None:
    """The frames one after the other, or None for none."""
    return pl.concat(frames, how="vertical_relaxed") if frames else None


def _allocation_rows(alloc: pl.DataFrame, last_alloc: pl.DataFrame, ib: pl.DataFrame) -> pl.DataFrame:
    """``recon_allocation`` rows: the settling residual (FX difference, write-off) on each invoice's last one."""
    return alloc.join(last_alloc.with_columns(pl.lit(True).alias("is_last")), on=["invoice_id", "payment_id"],
                      how="left").join(ib.select("invoice_id", "fx_difference", "writeoff"), on="invoice_id",
                                       how="left").select(
        "payment_id", "invoice_id", "rule_id", "currency", pl.col("signed").alias("amount"),
        pl.col("pccy").alias("payment_currency"), "payment_amount",
        pl.col("rate").alias("fx_rate"),
        pl.when(pl.col("is_last")).then(pl.col("fx_difference")).alias("fx_difference"),
        pl.when(pl.col("is_last")).then(pl.col("writeoff")).alias("writeoff"),
    )


def _chain_rows(ch: pl.DataFrame, ib: pl.DataFrame) -> pl.DataFrame:
    """One row per won deal: owner, amount, orders, invoiced, paid, open receivable."""
    return ch.select(
        pl.col("id").alias("chain_id"), "owner", "currency", "amount", "close_date", "n_orders",
    ).join(ib.group_by("chain_id").agg(pl.col("total").sum().alias("invoiced"), pl.col("paid").sum().alias("paid"),
                                       pl.col("open_amount").sum().alias("open_ar")), on="chain_id", how="left")
