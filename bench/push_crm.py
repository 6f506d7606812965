"""push-crm benchmark: the finance status of a reconciled world written into the CRM emulators.

    python bench/push_crm.py --deals 20000

Set-up (not timed, printed): a generated world of ``--deals`` closed-won chains (``sandbox.scenario``,
with its lost/open deals and planted breaks) is loaded into a SQLite store and reconciled; the
Salesforce emulator (in its own process, over TLS, like Salesforce) serves the world's Opportunities
and Accounts with the finance-status custom fields created; the HubSpot emulator (its own process)
holds as many deals and companies, with the ``ltc`` properties created.

What is timed:

* **Salesforce**, ``ltc push-crm`` end to end (:func:`ltc.app.push_crm.push_source`): the finance
  status of every chain from the store, the describe check, the login, the writes (one Bulk API 2.0
  ingest job per object past ``bulk_write_threshold`` = 2,000 records, else sObject Collections of
  200) and the bookkeeping in the store. Then the same command again with nothing changed.
* **HubSpot**, the same statuses (deal i of the world -> HubSpot deal i, account j -> company j) through
  :func:`connectors.crm_push.push`: the property check, then per object one import (``POST
  /crm/v3/imports`` of a CSV, status polled, refused rows read) past ``import_threshold`` = 2,000 records,
  else batch updates (100 a request; ``--hubspot-import-threshold 0`` forces batch updates), paced by
  the connector's governor under HubSpot's 190 requests / 10 s (the emulator advertises that limit in
  its headers and does not enforce it; the pace is ours). Then again with nothing changed.

Figures: requests per 1,000 deals on the first run (target <= 6) and on the re-run (target
0), records (deals + accounts) per second. The last line: ``push_crm_records_per_s=<Salesforce>
rerun_requests=<both CRMs> hubspot_records_per_s=<n> salesforce_requests_per_1000=<n>
hubspot_requests_per_1000=<n>``.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from canonical.store import Store  # noqa: E402
from connectors import crm_fields  # noqa: E402

SF_TYPES = {"currency": "currency", "number": "double", "date": "date", "url": "url", "text": "string"}
HS_TYPES = {"currency": "number", "number": "number", "date": "date", "url": "string", "text": "string"}


def _salesforce(records: dict[str, list[dict[str, Any]]], conn: Any) -> None:
    """Child: the world's org with the finance fields, over TLS; reports (url, ca, creds); waits."""
    from sandbox.salesforce import Org, build_app
    from sandbox.server import serve

    org = Org(world=records, daily_limit=10_000_000)
    for role, fields in crm_fields.names("salesforce", None).items():
        for f, name in fields:
            org.create_field(crm_fields.OBJECTS["salesforce"][role], name, SF_TYPES[f.kind],
                             length=f.length if f.kind == "text" else None)
    gc.freeze()
    srv = serve(build_app(org), tls=True)
    conn.send((srv.url, srv.ca_file, org.creds.client_id, org.creds.client_secret))
    conn.recv()
    kinds = {"collections": "PATCH /services/data/v59.0/composite/sobjects", "bulk": "/jobs/ingest",
             "describes": "/describe"}
    conn.send({k: sum(1 for r in org.requests if pat in r) for k, pat in kinds.items()})
    srv._server.force_exit = True
    srv.stop()


def _hubspot(deals: int, companies: int, conn: Any) -> None:
    """Child: a portal with ``deals`` deals and ``companies`` companies and the ltc properties."""
    from sandbox.hubspot import HubSpotEmulator
    from sandbox.server import serve

    # limits not enforced, but advertised (190 / 10 s): the connector's governor paces under them
    emu = HubSpotEmulator(size=deals, companies=companies, contacts=1, line_items=False, products=1)
    for role, fields in crm_fields.names("hubspot", None).items():
        obj = crm_fields.OBJECTS["hubspot"][role]
        emu._groups[obj]["ltc"] = {"name": "ltc", "label": "LTC", "displayOrder": -1, "archived": False}
        for f, name in fields:
            emu._defined[obj][name] = {"name": name, "label": f.label, "type": HS_TYPES[f.kind],
                                       "fieldType": "number" if HS_TYPES[f.kind] == "number" else "text",
                                       "groupName": "ltc", "modificationMetadata": {"readOnlyValue": False}}
    gc.freeze()
    srv = serve(emu.app)
    conn.send((srv.url, emu.token, emu.live_ids("deals"), emu.live_ids("companies")))
    conn.recv()
    conn.send((emu.served.get("objects", 0), emu.served.get("imports", 0)))
    srv.stop()


def _child(target: Any, *args: Any) -> tuple[Any, Any, Any]:
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    return proc, parent, parent.recv()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=20_000, help="closed-won chains of the generated world")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bulk-threshold", type=int, default=2000,
                        help="Salesforce options.bulk_write_threshold; 0: sObject Collections only")
    parser.add_argument("--hubspot-import-threshold", type=int, default=2000,
                        help="HubSpot options.import_threshold; 0: batch updates only")
    args = parser.parse_args()

    import connectors.registry  # noqa: F401  (module imports are not a push's cost)
    from connectors.crm_push import HubSpotTarget, push
    from connectors.hubspot import HubSpotConnector
    from ltc.app.config import Config, SecretRef, SourceConfig
    from ltc.app.push_crm import push_source
    from reconcile.engine import run_reconciliation
    from reports.crm_status import finance_status
    from sandbox.scenario import generate
    from sandbox.world_writer import salesforce_records

    t0 = time.perf_counter()
    world = generate(args.deals, seed=args.seed)
    sf_records = salesforce_records(world)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{os.path.join(tmp, 'bench.db')}")
        world.load(store)
        cfg = Config(reporting_currency="USD")
        run_reconciliation(store, cfg, world.as_of)
        print(f"set-up: world of {args.deals} chains generated, loaded and reconciled in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)

        sf_proc, sf_pipe, (url, ca, client_id, secret) = _child(_salesforce, sf_records)
        os.environ["BENCH_SF_ID"], os.environ["BENCH_SF_SECRET"] = client_id, secret
        cfg.sources["salesforce"] = SourceConfig(
            kind="salesforce", base_url=url,
            options={"ca_file": ca, "bulk_write_threshold": args.bulk_threshold or None},
            credentials={"client_id": SecretRef(env="BENCH_SF_ID"), "client_secret": SecretRef(env="BENCH_SF_SECRET")})
        try:
            started = time.perf_counter()
            first = push_source(store, cfg, "salesforce")
            sf_s = time.perf_counter() - started
            again = push_source(store, cfg, "salesforce")
        finally:
            sf_pipe.send("stop")
            sf_kinds = sf_pipe.recv()
            sf_proc.join(timeout=15)
        deals = first.counts["Opportunity"].written
        sf_written = sum(c.written for c in first.counts.values())
        if first.failures or deals == 0:
            raise SystemExit(f"salesforce: {len(first.failures)} failures, {deals} deals written")
        sf_per_1000 = first.requests / deals * 1000
        print(f"salesforce: {deals} opportunities + {first.counts['Account'].written} accounts written in "
              f"{sf_s:.1f} s with {first.requests} requests ({sf_kinds['collections']} collection(s) of <= 200, "
              f"{sf_kinds['bulk']} Bulk 2.0 ingest requests, {sf_kinds['describes']} describes, the login): "
              f"{sf_per_1000:.2f} requests per 1,000 deals; re-run: {again.requests} requests, "
              f"{sum(c.unchanged for c in again.counts.values())} records unchanged", file=sys.stderr)

        # HubSpot: the same statuses onto as many deals and companies
        status = finance_status(store, systems={"salesforce"}, reporting_currency="USD")
        accounts = sorted({r.record_id for r in status.records if r.role == "account"})
        opps = sorted({r.record_id for r in status.records if r.role == "deal"})
        hs_proc, hs_pipe, (hs_url, token, deal_ids, company_ids) = _child(_hubspot, len(opps), len(accounts))
        id_of = dict(zip(opps, map(str, deal_ids), strict=True)) | dict(zip(accounts, map(str, company_ids),
                                                                          strict=True))
        status.records = [replace(r, system="hubspot", record_id=id_of[r.record_id]) for r in status.records]
        connector = HubSpotConnector("hubspot", hs_url, token, tenant=f"bench-{uuid.uuid4().hex[:6]}")
        target = HubSpotTarget(connector, import_threshold=args.hubspot_import_threshold or None)
        fields = crm_fields.names("hubspot", None)
        try:
            started = time.perf_counter()
            hs_first = push(store, target, status, fields)
            hs_s = time.perf_counter() - started
            hs_again = push(store, target, status, fields)
        finally:
            target.close()
            hs_pipe.send("stop")
            hs_batches, hs_imports = hs_pipe.recv()
            hs_proc.join(timeout=15)
        hs_written = sum(c.written for c in hs_first.counts.values())
        if hs_first.failures or hs_written != sf_written:
            raise SystemExit(f"hubspot: {len(hs_first.failures)} failures, {hs_written} of {sf_written} written")
        hs_per_1000 = hs_first.requests / deals * 1000
        print(f"hubspot: {hs_written} records written in {hs_s:.1f} s with {hs_first.requests} requests "
              f"({hs_batches} batch updates of <= 100, {hs_imports} import requests, 2 property checks; paced "
              f"under 190 / 10 s): "
              f"{hs_per_1000:.2f} requests per 1,000 deals; re-run: {hs_again.requests} requests", file=sys.stderr)
        store.close()
    print(f"push_crm_records_per_s={sf_written / sf_s:.0f} rerun_requests={again.requests + hs_again.requests} "
          f"hubspot_records_per_s={hs_written / hs_s:.0f} salesforce_requests_per_1000={sf_per_1000:.2f} "
          f"hubspot_requests_per_1000={hs_per_1000:.2f}")


if __name__ == "__main__":
    main()
