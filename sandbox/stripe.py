"""A Stripe API emulator (ASGI) for what localstripe lacks.

Faithful where a connector can tell the difference (api_facts §3.2-3.7):

* lists are newest first, ``limit`` 1-100 (400 above), ``starting_after`` *or* ``ending_before``
  (404 for an unknown cursor id), ``created[gt|gte|lt|lte]`` / ``created=`` on every list, the
  usual per-list filters, unknown parameters refused (400), no ``total_count`` on top-level lists;
* one-off invoices from pending invoice items with ``number``, ``due_date``, ``amount_remaining``,
  finalize / pay / void / delete (draft), an embedded ``lines`` list of 10 with ``has_more`` and
  ``/v1/invoices/{id}/lines`` paging;
* events for every change, listed and retrievable for 30 days only (older ones are gone);
* error bodies ``{"error": {"type", "code", "message", "param", "doc_url", "request_log_url"}}``,
  ``Request-Id`` on every response, 401 for a wrong key (masked in the message), ``Idempotency-Key``
  replay, and switchable faults: 429 (with or without ``Stripe-Should-Retry``), fixed errors per
  path, and dropped events (a change no event reports).

State is in memory, seeded deterministically (``seed``, ``size``) over ``history_days`` before the
emulator's clock; the clock can be advanced (``advance``) to age events past their retention.
"""

from __future__ import annotations

import base64
import bisect
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.http import dumps_exact

DAY = 86400
RETENTION_S = 30 * DAY
EMBEDDED_LINES = 10
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                "xaf", "xof", "xpf"}
PREFIX = {"customers": "cus", "invoices": "in", "charges": "ch", "payment_intents": "pi", "refunds": "re",
          "balance_transactions": "txn", "payouts": "po", "events": "evt", "invoiceitems": "ii", "credit_notes": "cn"}
OBJECT = {"customers": "customer", "invoices": "invoice", "charges": "charge", "payment_intents": "payment_intent",
          "refunds": "refund", "balance_transactions": "balance_transaction", "payouts": "payout",
          "events": "event", "invoiceitems": "invoiceitem", "credit_notes": "credit_note"}
FILTERS = {
    "customers": {"email"},
    "invoices": {"customer", "status", "subscription", "collection_method"},
    "charges": {"customer", "payment_intent"},
    "payment_intents": {"customer"},
    "refunds": {"charge", "payment_intent"},
    "balance_transactions": {"type", "source", "payout", "currency"},
    "payouts": {"status"},
    "events": {"type"},
    "invoiceitems": {"customer", "pending", "invoice"},
    "credit_notes": {"customer", "invoice"},
}
_COMMON = {"limit", "starting_after", "ending_before", "created", "expand"}


class StripeApiError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


def missing(obj: str, oid: str, param: str = "id") -> StripeApiError:
    return StripeApiError(404, f"No such {obj}: '{oid}'", code="resource_missing", param=param)


@dataclass
class Faults:
    rate_limited: int = 0  # the next N requests answer 429
    should_retry: str | None = None  # Stripe-Should-Retry header value on those 429s
    errors: dict[str, tuple[int, str, str | None]] = field(default_factory=dict)  # path -> (status, msg, code)
    drop_events: bool = False  # changes happen without an event


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket notation: ``metadata[k]=v``, ``expand[]=x``, ``created[gte]=1``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        m = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if not m:
            out[key] = value
            continue
        parts = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
        cur = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt_list = not last and parts[i + 1] == ""
            if last:
                if part == "":
                    continue
                cur[part] = value
            elif nxt_list:
                cur.setdefault(part, []).append(value)
                break
            else:
                cur = cur.setdefault(part, {})
    return out


class StripeEmulator:
    """The emulator's state and behaviour (the ASGI app is a thin shell around it)."""

    def __init__(self, *, seed: int = 0, size: int = 20, api_key: str = "sk_test_emulator",
                 clock: Callable[[], float] = time.time, history_days: int = 400,
                 world: dict[str, list[dict[str, Any]]] | None = None):
        self.api_key = api_key
        self._clock = clock
        self.offset = 0.0
        self.rng = random.Random(seed)
        self.store: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in PREFIX}
        self.seq: dict[str, int] = {}
        self._order: dict[str, tuple[list[str], list[tuple[int, int]]]] = {}  # see _newest_first
        self.deleted: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, tuple[str, int, Any]] = {}
        self.faults = Faults()
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (method, path, decoded query)
        self._n = 0
        self._invoice_no = 0
        if world is None:
            self._seed(size, history_days)
        else:
            self.load_world(world)

    def load_world(self, world: dict[str, list[dict[str, Any]]]) -> None:
        """Objects of a world directory (resource -> objects as the API returns them), kept as given.

        Lists order them newest first by ``created`` (file order breaks ties, later = newer, as
        Stripe's own ids do); an invoice's embedded ``lines`` list is served and paged from
        ``/v1/invoices/{id}/lines``. No events: a world is a snapshot, so the connector's first
        sync lists everything by ``created``.
        """
        for resource, objects in world.items():
            if resource not in self.store:
                raise KeyError(f"the Stripe emulator has no resource {resource}")
            for obj in objects:
                self._n += 1
                row = dict(obj)
                if row.get("object") == "invoice":
                    lines = row.pop("lines", None)
                    row["_lines"] = list(lines.get("data") or []) if isinstance(lines, dict) else []
                self._put(resource, row)
    # --- clock and ids ---------------------------------------------------------------------------

    def now(self) -> int:
        return int(self._clock() + self.offset)

    def advance(self, *, days: float = 0, seconds: float = 0) -> None:
        self.offset += days * DAY + seconds

    def _id(self, resource: str) -> str:
        self._n += 1
        tail = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                       for _ in range(10))
        return f"{PREFIX[resource]}_{self._n:04d}{tail}"

    def _put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        old = self.store[resource].get(obj["id"])
        if old is None or old.get("created") != obj.get("created"):
            self._order.pop(resource, None)  # the list order changes
        self.store[resource][obj["id"]] = obj
        self.seq.setdefault(obj["id"], self._n)
        return obj

    def _newest_first(self, resource: str) -> tuple[list[str], list[tuple[int, int]]]:
        """The ids of ``resource`` newest first (``created``, then creation order) and their negated
        keys (ascending, for bisection); kept until an object is added, removed or re-dated."""
        objects = self.store[resource]
        cached = self._order.get(resource)
        if cached is not None and len(cached[0]) == len(objects):
            return cached
        rows = sorted(objects.values(), key=lambda o: (o["created"], self.seq[o["id"]]), reverse=True)
        cached = ([r["id"] for r in rows], [(-r["created"], -self.seq[r["id"]]) for r in rows])
        self._order[resource] = cached
        return cached

    def _event(self, type_: str, obj: dict[str, Any], at: int | None = None) -> None:
        if self.faults.drop_events:
            return
        evt = {"id": self._id("events"), "object": "event", "api_version": "2026-10-28.endive",
               "created": at if at is not None else self.now(), "type": type_, "livemode": False,
               "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None},
               "data": {"object": json.loads(json.dumps(self._render(obj)))}}
        self._put("events", evt)

    # --- seeded history ---------------------------------------------------------------------------

    def _seed(self, size: int, history_days: int) -> None:
        now = self.now()
        currencies = ["usd", "usd", "eur", "jpy", "gbp"]
        for i in range(size):
            t = now - int(self.rng.uniform(0.5, history_days) * DAY)
            cust = self.create_customer({"name": f"Customer {i:03d}", "email": f"billing{i:03d}@example.test",
                                         "metadata": {"crm_account_id": f"ACC-{i:04d}"}}, at=t)
            currency = currencies[i % len(currencies)]
            for k in range(self.rng.randint(1, 3)):
                t += int(self.rng.uniform(0.1, 20) * DAY)
                if t >= now:
                    break
                n_lines = 14 if (i + k) % 7 == 3 else self.rng.randint(1, 4)
                for j in range(n_lines):
                    unit = self.rng.choice([500, 1250, 9900, 25000]) if currency != "jpy" else self.rng.choice([800, 12000])
                    self.create_invoiceitem({"customer": cust["id"], "currency": currency, "amount": str(unit),
                                             "description": f"Item {j + 1}"}, at=t)
                inv = self.create_invoice({"customer": cust["id"], "collection_method": "send_invoice",
                                           "days_until_due": "30",
                                           "metadata": {"crm_deal_id": f"DEAL-{i:04d}-{k}"}}, at=t)
                fate = self.rng.random()
                if fate < 0.15:
                    continue  # stays draft
                self.finalize(inv["id"], at=t + 60)
                if fate < 0.35:
                    continue  # stays open
                if fate < 0.42:
                    self.void(inv["id"], at=t + 120)
                    continue
                self.pay(inv["id"], at=min(now - 1, t + int(self.rng.uniform(0.01, 25) * DAY)))
                if fate > 0.93:
                    ch = inv["_charge"]
                    self.create_refund({"charge": ch, "amount": str(self.store["charges"][ch]["amount"] // 2)},
                                       at=min(now - 1, t + 26 * DAY))
        for w in range(1, history_days // 30):
            self._payout(now - w * 30 * DAY)

    # --- mutations ---------------------------------------------------------------------------------

    def create_customer(self, p: dict[str, Any], at: int | None = None) -> dict[str, Any]:
        t = at if at is not None else self.now()
        cust = self._put("customers", {"id": self._id("customers"), "object": "customer", "created": t,
                                       "name": p.get("name"), "email": p.get("email"), "currency": None,
                                       "description": p.get("description"), "livemode": False,
                                       "metadata": dict(p.get("metadata") or {}), "balance": 0, "delinquent": False})
        self._event("customer.created", cust, t)
        return cust

    def update_customer(self, cid: str, p: dict[str, Any]) -> dict[str, Any]:
        cust = self._get("customers", cid)
        for key in ("name", "email", "description"):
            if key in p:
                cust[key] = p[key]
        cust["metadata"].update(p.get("metadata") or {})
        self._event("customer.updated", cust)
        return cust

    def delete(self, resource: str, oid: str) -> dict[str, Any]:
        obj = self._get(resource, oid)
        if resource == "invoices" and obj["status"] != "draft":
            raise StripeApiError(400, "You can only delete draft invoices.", code="invoice_not_editable")
        del self.store[resource][oid]
        self._order.pop(resource, None)
        gone = {"id": oid, "object": obj["object"], "deleted": True}
        self.deleted[oid] = gone
        self._event(f"{obj['object']}.deleted", obj)
        return gone

    def create_invoiceitem(self, p: dict[str, Any], at: int | None = None) -> dict[str, Any]:
        cust = self._get("customers", p.get("customer", ""), param="customer")
        t = at if at is not None else self.now()
        amount = int(p["amount"])
        item = self._put("invoiceitems", {
            "id": self._id("invoiceitems"), "object": "invoiceitem", "created": t, "customer": cust["id"],
            "amount": amount, "currency": str(p.get("currency", "usd")).lower(), "description": p.get("description"),
            "quantity": int(p.get("quantity", 1)), "invoice": None, "metadata": dict(p.get("metadata") or {})})
        return item

    def create_invoice(self, p: dict[str, Any], at: int | None = None) -> dict[str, Any]:
        cust = self._get("customers", p.get("customer", ""), param="customer")
        t = at if at is not None else self.now()
        pending = [i for i in self.store["invoiceitems"].values() if i["customer"] == cust["id"] and i["invoice"] is None]
        if not pending:
            raise StripeApiError(400, "Nothing to invoice for customer", code="invoice_no_customer_line_items")
        pending.sort(key=lambda i: self.seq[i["id"]])
        currency = pending[0]["currency"]
        method = p.get("collection_method", "charge_automatically")
        inv_id = self._id("invoices")
        lines = []
        for item in pending:
            item["invoice"] = inv_id
            lines.append({"id": f"il_{item['id'][3:]}", "object": "line_item", "amount": item["amount"],
                          "currency": item["currency"], "description": item["description"],
                          "quantity": item["quantity"], "invoice_item": item["id"], "type": "invoiceitem",
                          "metadata": item["metadata"], "period": {"start": item["created"], "end": item["created"]}})
        total = sum(line["amount"] for line in lines)
        inv = self._put("invoices", {
            "id": inv_id, "object": "invoice", "created": t, "customer": cust["id"],
            "customer_email": cust["email"], "customer_name": cust["name"], "currency": currency,
            "collection_method": method, "days_until_due": int(p["days_until_due"]) if p.get("days_until_due") else None,
            "status": "draft", "number": None, "due_date": None, "subtotal": total, "tax": None, "total": total,
            "amount_due": total, "amount_paid": 0, "amount_remaining": total, "auto_advance": False,
            "metadata": dict(p.get("metadata") or {}), "livemode": False, "hosted_invoice_url": None,
            "period_start": t, "period_end": t, "effective_at": None,
            "status_transitions": {"finalized_at": None, "paid_at": None, "voided_at": None,
                                   "marked_uncollectible_at": None},
            "_lines": lines, "_charge": None})
        self._event("invoice.created", inv, t)
        return inv

    def finalize(self, iid: str, at: int | None = None) -> dict[str, Any]:
        inv = self._get("invoices", iid)
        if inv["status"] != "draft":
            raise StripeApiError(400, "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                                 code="invoice_not_editable")
        t = at if at is not None else self.now()
        self._invoice_no += 1
        inv.update(status="open", number=f"EMU{1000 + self._invoice_no:05d}-0001", effective_at=t,
                   hosted_invoice_url=f"https://invoice.stripe.test/{iid}")
        inv["status_transitions"]["finalized_at"] = t
        if inv["collection_method"] == "send_invoice":
            inv["due_date"] = t + (inv["days_until_due"] or 30) * DAY
        self._event("invoice.finalized", inv, t)
        return inv

    def pay(self, iid: str, at: int | None = None) -> dict[str, Any]:
        inv = self._get("invoices", iid)
        if inv["status"] == "draft":
            self.finalize(iid, at)
        if inv["status"] != "open":
            raise StripeApiError(400, "Invoice is already paid" if inv["status"] == "paid" else
                                 f"You cannot pay an invoice with status {inv['status']}.", code="invoice_not_open")
        t = at if at is not None else self.now()
        pi = self.create_payment_intent({"amount": inv["amount_remaining"], "currency": inv["currency"],
                                         "customer": inv["customer"], "confirm": "true",
                                         "description": f"Payment for Invoice {inv['number']}"}, at=t)
        inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0, _charge=pi["latest_charge"])
        inv["status_transitions"]["paid_at"] = t
        self._event("invoice.paid", inv, t)
        self._event("invoice.payment_succeeded", inv, t)
        return inv

    def void(self, iid: str, at: int | None = None) -> dict[str, Any]:
        inv = self._get("invoices", iid)
        if inv["status"] != "open":
            raise StripeApiError(400, f"You can only void an open invoice; this one is {inv['status']}.",
                                 code="invoice_not_open")
        t = at if at is not None else self.now()
        inv.update(status="void", amount_remaining=0)
        inv["status_transitions"]["voided_at"] = t
        self._event("invoice.voided", inv, t)
        return inv

    def create_payment_intent(self, p: dict[str, Any], at: int | None = None) -> dict[str, Any]:
        t = at if at is not None else self.now()
        amount = int(p["amount"])
        pi = self._put("payment_intents", {
            "id": self._id("payment_intents"), "object": "payment_intent", "created": t, "amount": amount,
            "amount_received": 0, "currency": str(p.get("currency", "usd")).lower(), "customer": p.get("customer"),
            "description": p.get("description"), "status": "requires_confirmation", "latest_charge": None,
            "metadata": dict(p.get("metadata") or {}), "livemode": False, "payment_method_types": ["card"]})
        self._event("payment_intent.created", pi, t)
        if str(p.get("confirm", "")).lower() == "true":
            self.confirm(pi["id"], at=t)
        return pi

    def confirm(self, pid: str, at: int | None = None, *, processing: bool = False) -> dict[str, Any]:
        pi = self._get("payment_intents", pid)
        t = at if at is not None else self.now()
        if processing:
            pi["status"] = "processing"
            self._event("payment_intent.processing", pi, t)
            return pi
        charge = self._charge(pi, t)
        pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=charge["id"])
        self._event("payment_intent.succeeded", pi, t)
        return pi

    def _fee(self, amount: int, currency: str) -> int:
        return (amount * 29 // 1000) + (0 if currency in ZERO_DECIMAL else 30)

    def _charge(self, pi: dict[str, Any], t: int) -> dict[str, Any]:
        ch_id = self._id("charges")
        txn = self._txn(pi["amount"], pi["currency"], "charge", ch_id, t, fee=self._fee(pi["amount"], pi["currency"]))
        charge = self._put("charges", {
            "id": ch_id, "object": "charge", "created": t, "amount": pi["amount"], "amount_captured": pi["amount"],
            "amount_refunded": 0, "currency": pi["currency"], "customer": pi["customer"], "payment_intent": pi["id"],
            "balance_transaction": txn["id"], "status": "succeeded", "paid": True, "refunded": False,
            "captured": True, "description": pi["description"], "metadata": {}, "livemode": False})
        self._event("charge.succeeded", charge, t)
        return charge

    def _txn(self, amount: int, currency: str, type_: str, source: str, t: int, fee: int = 0) -> dict[str, Any]:
        return self._put("balance_transactions", {
            "id": self._id("balance_transactions"), "object": "balance_transaction", "created": t,
            "amount": amount, "fee": fee, "net": amount - fee, "currency": currency, "type": type_,
            "source": source, "status": "available" if t < self.now() - 2 * DAY else "pending",
            "available_on": t + 2 * DAY, "reporting_category": type_, "exchange_rate": None,
            "description": None, "fee_details": [] if not fee else
            [{"amount": fee, "currency": currency, "type": "stripe_fee", "description": "Stripe processing fees"}]})

    def create_refund(self, p: dict[str, Any], at: int | None = None) -> dict[str, Any]:
        charge = self._get("charges", p.get("charge", ""), param="charge")
        t = at if at is not None else self.now()
        amount = int(p.get("amount") or charge["amount"] - charge["amount_refunded"])
        if amount <= 0 or amount > charge["amount"] - charge["amount_refunded"]:
            raise StripeApiError(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge",
                                 code="amount_too_large", param="amount")
        re_id = self._id("refunds")
        txn = self._txn(-amount, charge["currency"], "refund", re_id, t)
        refund = self._put("refunds", {
            "id": re_id, "object": "refund", "created": t, "amount": amount, "currency": charge["currency"],
            "charge": charge["id"], "payment_intent": charge["payment_intent"], "balance_transaction": txn["id"],
            "status": "succeeded", "reason": p.get("reason"), "metadata": {}})
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._event("refund.created", refund, t)
        self._event("charge.refunded", charge, t)
        return refund

    def _payout(self, t: int) -> None:
        txns = [x for x in self.store["balance_transactions"].values()
                if x["type"] in ("charge", "refund") and x["created"] < t and x["currency"] == "usd"
                and not x.get("_paid_out")]
        if not txns:
            return
        amount = sum(x["net"] for x in txns)
        po_id = self._id("payouts")
        for x in txns:
            x["_paid_out"] = po_id
        txn = self._txn(-amount, "usd", "payout", po_id, t)
        po = self._put("payouts", {"id": po_id, "object": "payout", "created": t, "amount": amount,
                                   "currency": "usd", "arrival_date": t + 2 * DAY, "status": "paid",
                                   "balance_transaction": txn["id"], "method": "standard", "metadata": {}})
        self._event("payout.paid", po, t)

    # --- reading --------------------------------------------------------------------------------------

    def _get(self, resource: str, oid: str, *, param: str = "id") -> dict[str, Any]:
        obj = self.store[resource].get(oid)
        if obj is None:
            raise missing(OBJECT[resource], oid, param)
        return obj

    def _render(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in obj.items() if not k.startswith("_")}
        if obj.get("object") == "invoice":
            lines = obj["_lines"]
            out["lines"] = {"object": "list", "data": lines[:EMBEDDED_LINES], "has_more": len(lines) > EMBEDDED_LINES,
                            "total_count": len(lines), "url": f"/v1/invoices/{obj['id']}/lines"}
        return out

    def retrieve(self, resource: str, oid: str) -> dict[str, Any]:
        if oid in self.deleted and self.deleted[oid]["object"] == OBJECT[resource]:
            return self.deleted[oid]
        obj = self._get(resource, oid)
        if resource == "events" and obj["created"] < self.now() - RETENTION_S:
            raise missing("event", oid)
        return self._render(obj)

    def list(self, resource: str, q: dict[str, Any], *, rows: list[dict[str, Any]] | None = None,
             url: str | None = None) -> dict[str, Any]:
        allowed = _COMMON | FILTERS.get(resource, set())
        for key in q:
            if key not in allowed:
                raise StripeApiError(400, f"Received unknown parameter: {key}", param=key)
        try:
            limit = int(q.get("limit", 10))
        except ValueError:
            raise StripeApiError(400, "Invalid integer: " + str(q.get("limit")), param="limit") from None
        if not 1 <= limit <= 100:
            raise StripeApiError(400, "Invalid limit: must be between 1 and 100", param="limit")
        if q.get("starting_after") and q.get("ending_before"):
            raise StripeApiError(400, "You may only specify one of these parameters: ending_before, starting_after.",
                                 param="ending_before")
        keyed = rows is None
        if keyed and resource != "events" and not q.get("ending_before"):
            return self._list_forward(resource, q, limit, url)
        if rows is None:
            rows = list(self.store[resource].values())
            if resource == "events":
                rows = [e for e in rows if e["created"] >= self.now() - RETENTION_S]
            rows.sort(key=lambda o: (o["created"], self.seq[o["id"]]), reverse=True)
        rows = [r for r in rows if self._matches(r, q)]

        def bounds(oid: str, param: str) -> tuple[int, int]:
            """(index of the first row older than the cursor, index just past the newer rows)."""
            obj = self.store[resource].get(oid) if keyed else next((r for r in rows if r["id"] == oid), None)
            if obj is None or (resource == "events" and obj["created"] < self.now() - RETENTION_S):
                raise missing(OBJECT.get(resource, "object"), oid, param)
            if not keyed:
                i = rows.index(obj)
                return i + 1, i
            ck = (obj["created"], self.seq[obj["id"]])
            keys = [(r["created"], self.seq[r["id"]]) for r in rows]
            return sum(1 for k in keys if k >= ck), sum(1 for k in keys if k > ck)

        if q.get("starting_after"):
            start, _ = bounds(q["starting_after"], "starting_after")
            page, more = rows[start:start + limit], len(rows) > start + limit
        elif q.get("ending_before"):
            _, end = bounds(q["ending_before"], "ending_before")
            page, more = rows[max(0, end - limit):end], end - limit > 0
        else:
            page, more = rows[:limit], len(rows) > limit
        return {"object": "list", "url": url or f"/v1/{resource}", "has_more": more,
                "data": [self._render(r) for r in page]}

    def _list_forward(self, resource: str, q: dict[str, Any], limit: int, url: str | None) -> dict[str, Any]:
        """A page newest first, from the start or after ``starting_after``: the kept order is bisected to
        the cursor and scanned until ``limit`` + 1 objects match, instead of filtering and sorting
        every object of the resource for each page (which made listing a resource quadratic)."""
        objects = self.store[resource]
        ids, keys = self._newest_first(resource)
        match = self._matcher(q) if ids else None
        start, end = self._created_span(q, keys) if ids else (0, 0)
        if q.get("starting_after"):
            obj = objects.get(q["starting_after"])
            if obj is None:
                raise missing(OBJECT.get(resource, "object"), q["starting_after"], "starting_after")
            start = max(start, bisect.bisect_right(keys, (-obj["created"], -self.seq[obj["id"]])))
        page: list[dict[str, Any]] = []
        more = False
        for i in range(start, end):  # indexed: islice would step over the first ``start`` ids on every page
            row = objects[ids[i]]
            if match is not None and match(row):
                if len(page) == limit:
                    more = True
                    break
                page.append(row)
        return {"object": "list", "url": url or f"/v1/{resource}", "has_more": more,
                "data": [self._render(r) for r in page]}

    def _created_span(self, q: dict[str, Any], keys: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """The positions ``[start, end)`` of the newest-first order (``keys``: negated ``created``, then
        sequence, ascending) outside which no object can pass ``q``'s ``created`` bounds: a ``created``
        window's pages are bisected to it instead of scanning every newer object on its way (and every
        older one for ``has_more``). Called after :meth:`_matcher`, which checked the parameters."""
        created = q.get("created")
        start, end = 0, len(keys)
        if isinstance(created, dict):
            bounds = [(op, self._int(value, f"created[{op}]")) for op, value in created.items()]
        elif created is not None:
            bounds = [("gte", self._int(created, "created")), ("lte", self._int(created, "created"))]
        else:
            bounds = []
        for op, value in bounds:  # created < v: -created >= 1 - v; created <= v: -created >= -v; and so on
            if op in ("lt", "lte"):
                start = max(start, bisect.bisect_left(keys, ((1 if op == "lt" else 0) - value,)))
            else:
                end = min(end, bisect.bisect_left(keys, ((1 if op == "gte" else 0) - value,)))
        return start, max(start, end)

    def _matcher(self, q: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
        """:meth:`_matches` for one query: its parameters checked once (as Stripe checks them, before
        any object is looked at), then a function of an object."""
        bounds: list[tuple[str, int]] = []
        equal: int | None = None
        created = q.get("created")
        if isinstance(created, dict):
            for op, value in created.items():
                if op not in ("gt", "gte", "lt", "lte"):
                    raise StripeApiError(400, f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
                bounds.append((op, self._int(value, f"created[{op}]")))
        elif created is not None:
            equal = self._int(created, "created")
        others = [(key, str(q[key])) for key in q.keys() - _COMMON]

        def match(row: dict[str, Any]) -> bool:
            at = row["created"]
            for op, value in bounds:
                if not (at > value if op == "gt" else at >= value if op == "gte" else at < value if op == "lt"
                        else at <= value):
                    return False
            if equal is not None and at != equal:
                return False
            for key, want in others:
                if key == "type" and want.endswith("*"):
                    if not str(row.get("type", "")).startswith(want[:-1]):
                        return False
                elif key == "pending":
                    if (row.get("invoice") is None) != (want.lower() == "true"):
                        return False
                elif str(row.get(key)) != want:
                    return False
            return True

        return match

    def _matches(self, row: dict[str, Any], q: dict[str, Any]) -> bool:
        created = q.get("created")
        if isinstance(created, dict):
            ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
                   "lte": lambda a, b: a <= b}
            for op, value in created.items():
                if op not in ops:
                    raise StripeApiError(400, f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
                if not ops[op](row["created"], self._int(value, f"created[{op}]")):
                    return False
        elif created is not None and row["created"] != self._int(created, "created"):
            return False
        for key in q.keys() - _COMMON:
            if key == "type" and str(q[key]).endswith("*"):
                if not str(row.get("type", "")).startswith(str(q[key])[:-1]):
                    return False
            elif key == "pending":
                if (row.get("invoice") is None) != (str(q[key]).lower() == "true"):
                    return False
            elif str(row.get(key)) != str(q[key]):
                return False
        return True

    @staticmethod
    def _int(value: Any, param: str) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise StripeApiError(400, f"Invalid integer: {value}", param=param) from None

    def invoice_lines(self, iid: str, q: dict[str, Any]) -> dict[str, Any]:
        inv = self._get("invoices", iid)
        extra = set(q) - {"limit", "starting_after", "ending_before"}
        if extra:
            raise StripeApiError(400, f"Received unknown parameter: {sorted(extra)[0]}", param=sorted(extra)[0])
        return self.list("invoices", q, rows=list(inv["_lines"]), url=f"/v1/invoices/{iid}/lines")


# --- HTTP shell ---------------------------------------------------------------------------------------

def _error(exc: StripeApiError, request_id: str) -> JSONResponse:
    err: dict[str, Any] = {"type": exc.type, "message": exc.message}
    if exc.code:
        err["code"] = exc.code
        err["doc_url"] = f"https://stripe.com/docs/error-codes/{exc.code.replace('_', '-')}"
    if exc.param:
        err["param"] = exc.param
    err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
    return JSONResponse({"error": err}, status_code=exc.status, headers={"Request-Id": request_id, **exc.headers})


def _authorized(emu: StripeEmulator, request: Request) -> None:
    header = request.headers.get("authorization", "")
    key = None
    if header.lower().startswith("bearer "):
        key = header[7:].strip()
    elif header.lower().startswith("basic "):
        try:
            key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            key = None
    if not key:
        raise StripeApiError(401, "You did not provide an API key. You need to provide your API key in the "
                             "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
    if key != emu.api_key:
        masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:]
        raise StripeApiError(401, f"Invalid API Key provided: {masked}")


def create_app(*, seed: int = 0, size: int = 20, api_key: str = "sk_test_emulator",
               clock: Callable[[], float] = time.time, history_days: int = 400,
               rate_limited: int = 0, should_retry: str | None = None, drop_events: bool = False,
               emulator: StripeEmulator | None = None,
               world: dict[str, list[dict[str, Any]]] | None = None) -> Starlette:
    """The ASGI app; ``app.state.stripe`` is the :class:`StripeEmulator` (tests drive faults/clock).

    Faults at start: ``rate_limited`` (the first N requests answer 429, with ``Stripe-Should-Retry:
    should_retry`` if given) and ``drop_events`` (changes made through the API emit no event).
    """
    emu = emulator or StripeEmulator(seed=seed, size=size, api_key=api_key, clock=clock, history_days=history_days,
                                     world=world)
    if emulator is None:
        emu.faults = Faults(rate_limited=rate_limited, should_retry=should_retry, drop_events=drop_events)
    counter = {"n": 0}

    async def handle(request: Request) -> Response:
        counter["n"] += 1
        rid = f"req_emu{counter['n']:08d}"
        path = request.url.path
        emu.requests.append((request.method, path, decode_form(list(request.query_params.multi_items()))))
        try:
            if emu.faults.rate_limited > 0:
                emu.faults.rate_limited -= 1
                headers = {"Stripe-Should-Retry": emu.faults.should_retry} if emu.faults.should_retry else {}
                raise StripeApiError(429, "Request rate limit exceeded. Learn more about rate limits here "
                                     "https://stripe.com/docs/rate-limits.", code="rate_limit", headers=headers)
            _authorized(emu, request)
            if path in emu.faults.errors:
                status, msg, code = emu.faults.errors[path]
                raise StripeApiError(status, msg, code=code)
            if request.method == "GET":
                q = decode_form(list(request.query_params.multi_items()))
                body = _route_get(emu, path, q)
            else:
                raw = (await request.body()).decode()
                params = decode_form(parse_qsl(raw, keep_blank_values=True))
                key = request.headers.get("idempotency-key")
                if key and key in emu.idempotency:
                    seen_params, status, seen = emu.idempotency[key]
                    if seen_params != raw:
                        raise StripeApiError(400, "Keys for idempotent requests can only be used with the same "
                                             "parameters they were first used with.", type_="idempotency_error")
                    return JSONResponse(seen, status_code=status,
                                        headers={"Request-Id": rid, "Idempotent-Replayed": "true"})
                body = _route_write(emu, request.method, path, params)
                if key:
                    emu.idempotency[key] = (raw, 200, body)
            return Response(dumps_exact(body), media_type="application/json", headers={"Request-Id": rid})
        except StripeApiError as exc:
            return _error(exc, rid)

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST", "DELETE"])])
    app.state.stripe = emu
    return app


def _route_get(emu: StripeEmulator, path: str, q: dict[str, Any]) -> Any:
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "v1" and parts[1] in PREFIX:
        if len(parts) == 2:
            return emu.list(parts[1], q)
        if len(parts) == 3:
            return emu.retrieve(parts[1], parts[2])
        if len(parts) == 4 and parts[1] == "invoices" and parts[3] == "lines":
            return emu.invoice_lines(parts[2], q)
    raise StripeApiError(404, f"Unrecognized request URL (GET: {path}).")


def _route_write(emu: StripeEmulator, method: str, path: str, p: dict[str, Any]) -> Any:
    parts = path.strip("/").split("/")
    if not parts or parts[0] != "v1" or len(parts) < 2:
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")
    res = parts[1]
    if method == "DELETE" and len(parts) == 3 and res in ("customers", "invoices"):
        return emu.delete(res, parts[2])
    if method == "POST":
        creators: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "customers": emu.create_customer, "invoiceitems": emu.create_invoiceitem,
            "invoices": emu.create_invoice, "payment_intents": emu.create_payment_intent,
            "refunds": emu.create_refund,
        }
        if len(parts) == 2 and res in creators:
            return emu._render(creators[res](p))
        if len(parts) == 3 and res == "customers":
            return emu._render(emu.update_customer(parts[2], p))
        actions: dict[tuple[str, str], Callable[[str], dict[str, Any]]] = {
            ("invoices", "finalize"): emu.finalize, ("invoices", "pay"): emu.pay, ("invoices", "void"): emu.void,
            ("payment_intents", "confirm"): emu.confirm,
        }
        if len(parts) == 4 and (res, parts[3]) in actions:
            return emu._render(actions[(res, parts[3])](parts[2]))
    raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")
