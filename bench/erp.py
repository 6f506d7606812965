"""Tryton read-back throughput: pull N customer invoices from a real trytond into the store.

    python bench/erp.py                     # 1,000 invoices, the connector's page size (1,000), SQLite store
    python bench/erp.py --invoices 5000 --page-size 500

A trytond (SQLite, loopback, cached template database) is started and set up; N invoices with one
taxed line each are created in bulk through JSON-RPC (``account.invoice.create`` with 250 invoices
per call; not timed). The clock then covers the ``account.invoice`` stream exactly as a sync runs
it: keyset pages over ``(last_modified_at, id)``, decoding, landing in a fresh store with its
checkpoints. The invoices are drafts, so every amount (``untaxed/tax/total_amount``,
``amount_to_pay``) is computed by Tryton at read time (posted invoices read cached amounts).

Last line: ``tryton_invoices_per_s=<n>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from canonical.store import Store
from connectors.base import sync_stream
from connectors.tryton.connector import PAGE, TrytonConnector
from connectors.tryton.rpc import TrytonClient
from sandbox import tryton_peer
from sandbox.tryton_setup import TrytonSetup, setup_accounting

BATCH = 250


def create_invoices(client: TrytonClient, setup: TrytonSetup, n: int) -> None:
    parties = client.create("party.party", [{"name": f"Bench Customer {i}", "addresses": [["create", [{}]]]}
                                            for i in range(20)])
    addresses = {p["id"]: p["addresses"][0] for p in client.read("party.party", parties, ["addresses"])}
    unit = client.search("product.uom", [["name", "=", "Unit"]], limit=1)[0]
    (template,) = client.create("product.template", [{
        "name": "Bench service", "code": "BENCH-1", "type": "service", "salable": True, "default_uom": unit,
        "sale_uom": unit, "list_price": Decimal("10.50"), "account_category": setup.category,
        "products": [["create", [{}]]]}])
    product = client.search("product.product", [["template", "=", template]])[0]
    currency = setup.currencies["EUR"]
    today = date.today()
    for start in range(0, n, BATCH):
        values = []
        for i in range(start, min(n, start + BATCH)):
            party = parties[i % len(parties)]
            # create() runs no on_change: company, currency, accounts and the line's invoice data
            # must be given (the invoice's lines domain checks them).
            values.append({
                "type": "out", "company": setup.company, "party": party, "invoice_address": addresses[party],
                "currency": currency, "account": setup.accounts["receivable"], "journal": setup.journals["revenue"],
                "payment_term": setup.payment_term, "invoice_date": today, "reference": f"BENCH-{i:06d}",
                "lines": [["create", [{
                    "type": "line", "company": setup.company, "currency": currency, "invoice_type": "out",
                    "party": party, "product": product, "description": "Bench service",
                    "quantity": 1 + i % 7, "unit": unit, "unit_price": Decimal("10.50") + Decimal(i % 100) / 100,
                    "account": setup.accounts["revenue"], "taxes": [["add", [setup.tax]]],
                }]]],
            })
        client.create("account.invoice", values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=PAGE, help="records a page (default: the connector's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ltc-bench-erp-") as tmp:
        t0 = time.perf_counter()
        peer = tryton_peer.TrytonPeer(Path(tmp) / "trytond").start()
        try:
            client = TrytonClient(peer.base_url, peer.database)
            client.login(tryton_peer.ADMIN_LOGIN, tryton_peer.ADMIN_PASSWORD)
            setup = setup_accounting(client)
            print(f"trytond {client.server_version()} up and set up in {time.perf_counter() - t0:.1f} s", flush=True)
            t1 = time.perf_counter()
            create_invoices(client, setup, args.invoices)
            print(f"created {args.invoices} invoices in {time.perf_counter() - t1:.1f} s (not timed)", flush=True)

            store = Store.open(f"sqlite:///{Path(tmp) / 'ltc.db'}")
            connector = TrytonConnector("tryton", client, page_size=args.page_size, store=store)
            stream = connector.stream("account.invoice")
            run_id = store.begin_run("sync", "tryton")
            start = time.perf_counter()
            result = sync_stream(connector, stream, store, run_id=run_id)
            elapsed = time.perf_counter() - start
            store.finish_run(run_id, result.status)
            landed = store.count_raw("tryton", "account.invoice")
            if result.status != "success" or landed != args.invoices or result.source_count != landed:
                raise SystemExit(f"incomplete read-back: {result}; landed {landed} of {args.invoices}")
            store.close()
            client.close()
        finally:
            peer.stop()
    print(f"read back {landed} invoices in {result.pages} pages of {args.page_size} in {elapsed:.2f} s "
          f"({elapsed / result.pages * 1000:.0f} ms/page, incl. decoding and landing)")
    print(f"tryton_invoices_per_s={landed / elapsed:.0f}")


if __name__ == "__main__":
    main()
