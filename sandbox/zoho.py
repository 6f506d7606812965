"""A Zoho CRM REST API v8 emulator: the subset ltc-hub's connector uses, with Zoho's shapes.

Served as an ASGI app (``ZohoEmulator(...).app``, or :func:`create_app`) by ``sandbox.server``;
``python -m sandbox.zoho --port N`` serves it standalone (the benchmark). The same server answers
the accounts domain (``/oauth/v2/token``) and the API domain (``/crm/v8/...``).

* **OAuth** ``POST /oauth/v2/token`` (form: ``grant_type=refresh_token``, ``client_id``,
  ``client_secret``, ``refresh_token``) answers ``{access_token, api_domain, token_type, expires_in}``;
  a bad client or refresh token is answered **200** with ``{"error": "invalid_client" | "invalid_code"}``
  (as Zoho does). API calls need ``Authorization: Zoho-oauthtoken <token>``; an unknown or expired
  token is **401** ``{"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token",
  "status": "error"}`` (:meth:`ZohoEmulator.expire_tokens` expires every issued token).
* **Records** ``GET /crm/v8/{module}?fields=a,b&per_page=200&page=N | page_token=T&sort_by=&sort_order=``:
  ``fields`` is required (``REQUIRED_PARAM_MISSING``), at most 50 (``LIMIT_EXCEEDED``); ``per_page`` ≤ 200;
  ``page`` may not reach past the first 2,000 records (400 ``DISCRETE_PAGINATION_LIMIT_EXCEEDED``):
  beyond them only ``page_token`` (from ``info.next_page_token``) pages, and a token expires
  (``info.page_token_expiry``, 24 h; :attr:`ZohoEmulator.page_token_ttl_s`) — then 400
  ``INVALID_DATA``/``page_token`` expired. ``If-Modified-Since`` keeps records modified after it
  (second precision); ``ids=`` (≤ 100) reads records by id. Nothing to return is **204 No Content**.
  The body is ``{"data": [...], "info": {per_page, count, page, sort_by, sort_order, more_records,
  next_page_token, previous_page_token, page_token_expiry}}``.
* **COQL** ``POST /crm/v8/coql`` ``{"select_query": "select ... from M where ... order by ... limit n
  offset m"}``: ``=``, ``!=``, ``<``, ``>``, ``<=``, ``>=``, ``is null``, ``is not null``, ``between``,
  ``in``; ``and``/``or`` with brackets; ``order by`` up to 10 fields; ``limit`` ≤ 2,000 and
  ``offset + limit`` ≤ 100,000 (``LIMIT_EXCEEDED``); a WHERE clause is required (``SYNTAX_ERROR``).
  The answer is ``{"data": [...], "info": {"count", "more_records"}}``; lookups come back as ``{"id"}``.
* **Deleted** ``GET /crm/v8/{module}/deleted?type=all|recycle|permanent&page=&per_page=`` with
  ``If-Modified-Since``: ``{"data": [{id, display_name, type, deleted_by, created_by, deleted_time}], "info"}``.
* **Fields** ``GET /crm/v8/settings/fields?module=M``: ``{"fields": [{api_name, field_label, data_type,
  custom_field, ...}]}`` (custom fields included).
* **Limits** every answer carries ``X-RATELIMIT-LIMIT`` / ``X-RATELIMIT-REMAINING`` (the org's API
  credits in the rolling 24 h window; a COQL call costs 1–3 by its LIMIT) and ``X-RATELIMIT-RESET``
  (epoch ms). More simultaneous calls than ``concurrency`` (the per-org, per-app concurrency limit) and
  calls with no credit left are **429** ``{"code": "TOO_MANY_REQUESTS", ...}``. ``latency_ms`` delays
  every API answer.

Data: seeded deterministically from ``seed``/``size`` (deals; other modules in proportion), or from a
world (``zoho/<Module>.jsonl``). Instants are written in the org's time zone (``+05:30`` by default),
as Zoho does.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.http import dumps_exact

CLIENT_ID = "1000.LTCSANDBOXCLIENT"
CLIENT_SECRET = "ltc-sandbox-zoho-secret"
REFRESH_TOKEN = "1000.ltc-sandbox-refresh.token"
MODULES = ("Leads", "Accounts", "Contacts", "Deals", "Products", "Quotes", "Sales_Orders", "Invoices")
LINE_ITEMS = {"Quotes": "Quoted_Items", "Sales_Orders": "Ordered_Items", "Invoices": "Invoiced_Items"}
PAGE_MAX = 200
DISCRETE_LIMIT = 2000
IDS_MAX = 100
FIELDS_MAX = 50
COQL_LIMIT = 2000
COQL_WINDOW = 100_000
BASE = datetime(2026, 1, 1, tzinfo=UTC)
ID_BASE = 5_725_767_000_000_000_000
DEAL_STAGES = ("Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
               "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost")
NUMERIC = {"Amount", "Probability", "Unit_Price", "Sub_Total", "Tax", "Discount", "Adjustment", "Grand_Total",
           "Exchange_Rate", "Quantity", "List_Price", "Total", "Net_Total"}

# field metadata: api_name -> (data_type, label); custom fields are added from the data
STANDARD_FIELDS: dict[str, dict[str, str]] = {
    "Leads": {"First_Name": "text", "Last_Name": "text", "Company": "text", "Email": "email",
              "Lead_Status": "picklist", "Lead_Source": "picklist", "Owner": "ownerlookup"},
    "Accounts": {"Account_Name": "text", "Website": "website", "Billing_Country": "text", "Phone": "phone",
                 "Industry": "picklist", "Currency": "picklist", "Owner": "ownerlookup"},
    "Contacts": {"First_Name": "text", "Last_Name": "text", "Email": "email", "Phone": "phone",
                 "Account_Name": "lookup", "Owner": "ownerlookup"},
    "Deals": {"Deal_Name": "text", "Account_Name": "lookup", "Stage": "picklist", "Amount": "currency",
              "Closing_Date": "date", "Currency": "picklist", "Probability": "integer", "Lead_Source": "picklist",
              "Owner": "ownerlookup"},
    "Products": {"Product_Name": "text", "Product_Code": "text", "Unit_Price": "currency",
                 "Product_Active": "boolean"},
    "Quotes": {"Subject": "text", "Quote_Stage": "picklist", "Valid_Till": "date", "Deal_Name": "lookup",
               "Account_Name": "lookup", "Currency": "picklist", "Sub_Total": "currency", "Tax": "currency",
               "Discount": "currency", "Adjustment": "currency", "Grand_Total": "currency",
               "Quoted_Items": "subform"},
    "Sales_Orders": {"Subject": "text", "SO_Number": "autonumber", "Status": "picklist", "Due_Date": "date",
                     "Deal_Name": "lookup", "Account_Name": "lookup", "Quote_Name": "lookup",
                     "Currency": "picklist", "Sub_Total": "currency", "Tax": "currency", "Discount": "currency",
                     "Adjustment": "currency", "Grand_Total": "currency", "Ordered_Items": "subform"},
    "Invoices": {"Subject": "text", "Invoice_Number": "autonumber", "Invoice_Date": "date", "Due_Date": "date",
                 "Status": "picklist", "Sales_Order": "lookup", "Deal_Name": "lookup", "Account_Name": "lookup",
                 "Currency": "picklist", "Sub_Total": "currency", "Tax": "currency", "Discount": "currency",
                 "Adjustment": "currency", "Grand_Total": "currency", "Invoiced_Items": "subform"},
}
SYSTEM_FIELDS = {"Created_Time": "datetime", "Modified_Time": "datetime"}


def zoho_time(value: datetime, tz: timezone) -> str:
    """Zoho's instant format: ISO 8601 to the second, in the org's time zone (``2026-01-01T05:30:00+05:30``)."""
    return value.astimezone(tz).isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no offset")
    return value.astimezone(UTC)


def error(status: int, code: str, message: str, details: dict[str, Any] | None = None,
          headers: dict[str, str] | None = None) -> Response:
    body = {"code": code, "details": details or {}, "message": message, "status": "error"}
    return Response(json.dumps(body), status, media_type="application/json", headers=headers)


class CoqlError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# --- COQL --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><=|>=|!=|=|<|>)|"
                    r"(?P<punct>[(),*])|(?P<word>[A-Za-z_$][A-Za-z0-9_$.]*))")

Pred = Callable[[dict[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CoqlError("SYNTAX_ERROR", f"error at or near {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """select <fields> from <module> where <criteria> [order by f [asc|desc], ...] [limit n [offset m] | limit m, n]."""

    def __init__(self, text: str, value_of: Callable[[str, str], Any]):
        self.toks = _tokens(text)
        self.i = 0
        self.value_of = value_of  # (field, literal) -> comparable value
        self.criteria = 0

    def peek(self) -> str:
        return self.toks[self.i][1].lower() if self.i < len(self.toks) else ""

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise CoqlError("SYNTAX_ERROR", f"unexpected end of query{f', expected {want}' if want else ''}")
        tok = self.toks[self.i]
        if want is not None and tok[1].lower() != want:
            raise CoqlError("SYNTAX_ERROR", f"expected {want} at or near {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> dict[str, Any]:
        self.take("select")
        fields = [self.take()[1]]
        while self.peek() == ",":
            self.take(",")
            fields.append(self.take()[1])
        self.take("from")
        module = self.take()[1]
        if self.peek() != "where":
            raise CoqlError("SYNTAX_ERROR", "a WHERE clause is required")
        self.take("where")
        pred, lower = self.expr()
        order: list[tuple[str, bool]] = []
        limit, offset = 200, 0
        if self.peek() == "order":
            self.take("order")
            self.take("by")
            while True:
                name = self.take()[1]
                desc = False
                if self.peek() in ("asc", "desc"):
                    desc = self.take()[1].lower() == "desc"
                order.append((name, desc))
                if self.peek() != ",":
                    break
                self.take(",")
        if self.peek() == "limit":
            self.take("limit")
            first = int(self.take()[1])
            if self.peek() == ",":
                self.take(",")
                offset, limit = first, int(self.take()[1])
            else:
                limit = first
                if self.peek() == "offset":
                    self.take("offset")
                    offset = int(self.take()[1])
        if self.i != len(self.toks):
            raise CoqlError("SYNTAX_ERROR", f"error at or near {self.toks[self.i][1]!r}")
        if self.criteria > 25:
            raise CoqlError("LIMIT_EXCEEDED", "a maximum of 25 criteria is allowed in the WHERE clause")
        return {"fields": fields, "module": module, "pred": pred, "lower": lower, "order": order,
                "limit": limit, "offset": offset}

    # expr -> (predicate, lower bound of Modified_Time it implies, or None)
    def expr(self) -> tuple[Pred, datetime | None]:
        parts = [self.term()]
        while self.peek() == "or":
            self.take("or")
            parts.append(self.term())
        if len(parts) == 1:
            return parts[0]
        preds = [p for p, _ in parts]
        bounds = [b for _, b in parts]
        lower = None if any(b is None for b in bounds) else min(b for b in bounds if b is not None)
        return (lambda r: any(p(r) for p in preds)), lower

    def term(self) -> tuple[Pred, datetime | None]:
        parts = [self.factor()]
        while self.peek() == "and":
            self.take("and")
            parts.append(self.factor())
        if len(parts) == 1:
            return parts[0]
        preds = [p for p, _ in parts]
        known = [b for _, b in parts if b is not None]
        return (lambda r: all(p(r) for p in preds)), (max(known) if known else None)

    def factor(self) -> tuple[Pred, datetime | None]:
        if self.peek() == "(":
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        self.criteria += 1
        name = self.take()[1]
        nxt = self.peek()
        if nxt == "is":
            self.take("is")
            negate = self.peek() == "not"
            if negate:
                self.take("not")
            self.take("null")
            return ((lambda r: r.get(name) is not None) if negate else (lambda r: r.get(name) is None)), None
        if nxt == "between":
            self.take("between")
            lo = self.value_of(name, self.take()[1])
            self.take("and")
            hi = self.value_of(name, self.take()[1])
            return (lambda r: (v := self._get(r, name)) is not None and lo <= v <= hi), (
                lo if name == "Modified_Time" else None)
        if nxt in ("in", "not"):
            negate = nxt == "not"
            if negate:
                self.take("not")
            self.take("in")
            self.take("(")
            values = {self.value_of(name, self.take()[1])}
            while self.peek() == ",":
                self.take(",")
                values.add(self.value_of(name, self.take()[1]))
            self.take(")")
            if len(values) > 50:
                raise CoqlError("LIMIT_EXCEEDED", "in accepts at most 50 values")
            return (lambda r: (self._get(r, name) in values) != negate), None
        op = self.take()[1]
        value = self.value_of(name, self.take()[1])
        cmp: dict[str, Callable[[Any], bool]] = {
            "=": lambda v: v == value, "!=": lambda v: v != value, ">": lambda v: v > value,
            "<": lambda v: v < value, ">=": lambda v: v >= value, "<=": lambda v: v <= value}
        if op not in cmp:
            raise CoqlError("SYNTAX_ERROR", f"unsupported comparator {op!r}")
        test = cmp[op]
        lower = value if name == "Modified_Time" and op in ("=", ">", ">=") else None
        return (lambda r: (v := self._get(r, name)) is not None and test(v)), lower

    def _get(self, rec: dict[str, Any], name: str) -> Any:
        return rec.get(f"\x00{name}", rec.get(name))


# --- the org -----------------------------------------------------------------------------------------

class ZohoEmulator:
    """One Zoho CRM org in memory, served as :attr:`app`."""

    def __init__(self, seed: int = 7, size: int = 100, *, world: dict[str, list[dict[str, Any]]] | None = None,
                 client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                 refresh_token: str = REFRESH_TOKEN, org_offset: str = "+05:30", token_ttl_s: int = 3600,
                 concurrency: int | None = None, daily_credits: int = 5_000_000, latency_ms: float = 0.0,
                 modules: Iterable[str] | None = None, edit_gap_s: int = 7):
        sign = -1 if org_offset.startswith("-") else 1
        hh, mm = org_offset[1:].split(":")
        self.tz = timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.token_ttl_s = token_ttl_s
        self.tokens: dict[str, float] = {}  # access token -> expiry (epoch s)
        self.token_requests = 0
        self.concurrency = concurrency
        self.in_flight = 0
        self.max_in_flight = 0
        self.daily_credits = daily_credits
        self.credits_used = 0
        self.latency_ms = latency_ms
        self.page_token_ttl_s = 86_400
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API call
        self.http_429 = 0
        self.records: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in MODULES}
        self.deleted: dict[str, list[dict[str, Any]]] = {m: [] for m in MODULES}
        self._sorted: dict[str, list[tuple[datetime, int, str]]] = {}
        self._rendered: dict[tuple[str, str], bytes] = {}
        self._page_tokens: dict[str, tuple[float, tuple[Any, ...], int]] = {}
        self._lock = threading.Lock()
        self._next_id = ID_BASE + 1000
        self.clock = time.time
        if world is not None:
            for module, recs in world.items():
                if module not in self.records:
                    raise ValueError(f"unknown Zoho module {module!r}")
                for rec in recs:
                    self.records[module][str(rec["id"])] = dict(rec)
        else:
            self.populate(seed, size, modules=modules, edit_gap_s=edit_gap_s)
        self.app = self._build_app()

    # --- data ---------------------------------------------------------------------------------------
    def new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def now_text(self) -> str:
        return zoho_time(datetime.fromtimestamp(int(self.clock()), UTC), self.tz)

    def populate(self, seed: int, size: int, *, modules: Iterable[str] | None = None, edit_gap_s: int = 7) -> None:
        """``size`` deals; a fifth as many accounts; a contact per account; leads, products, quotes,
        sales orders and invoices in proportion. Modified times are ``edit_gap_s`` apart (several
        records share a second, as in a real org: Zoho's stamps have second precision)."""
        rng = random.Random(seed)
        wanted = set(modules or MODULES)
        t = [0]

        def stamp() -> str:
            t[0] += rng.randrange(0, edit_gap_s + 1) if edit_gap_s else 0
            return zoho_time(BASE + timedelta(seconds=t[0]), self.tz)

        owner = {"name": "Sandbox Admin", "id": str(ID_BASE + 1), "email": "admin@example.com"}
        accounts = max(1, size // 5)
        acc_ids: list[tuple[str, str]] = []
        for i in range(accounts):
            rid = self.new_id()
            name = f"Account {i + 1} Ltd"
            acc_ids.append((rid, name))
            if "Accounts" in wanted:
                ts = stamp()
                self.records["Accounts"][rid] = {
                    "id": rid, "Account_Name": name, "Website": f"account{i + 1}.example.com",
                    "Billing_Country": rng.choice(["United States", "Germany", "India"]), "Phone": None,
                    "Industry": rng.choice(["Manufacturing", "Retail", None]), "Currency": "USD",
                    "Owner": owner, "Created_Time": ts, "Modified_Time": ts}
            if "Contacts" in wanted:
                cid, ts = self.new_id(), stamp()
                self.records["Contacts"][cid] = {
                    "id": cid, "First_Name": "Pat", "Last_Name": f"Buyer{i + 1}",
                    "Email": f"buyer{i + 1}@account{i + 1}.example.com", "Phone": None,
                    "Account_Name": {"name": name, "id": rid}, "Owner": owner, "Created_Time": ts,
                    "Modified_Time": ts}
        products: list[tuple[str, str, Decimal]] = []
        for i in range(max(1, min(50, size // 10))):
            rid = self.new_id()
            price = Decimal(rng.randrange(1000, 500000)) / 100
            products.append((rid, f"Product {i + 1}", price))
            if "Products" in wanted:
                ts = stamp()
                self.records["Products"][rid] = {
                    "id": rid, "Product_Name": f"Product {i + 1}", "Product_Code": f"P-{i + 1:04d}",
                    "Unit_Price": price, "Product_Active": True, "Created_Time": ts, "Modified_Time": ts}
        if "Leads" in wanted:
            for i in range(max(1, size // 4)):
                rid, ts = self.new_id(), stamp()
                self.records["Leads"][rid] = {
                    "id": rid, "First_Name": "Lee", "Last_Name": f"Prospect{i + 1}", "Company": f"Prospect {i + 1} Inc",
                    "Email": f"lee{i + 1}@prospect.example.com", "Lead_Status": rng.choice(["Not Contacted", "Contacted"]),
                    "Lead_Source": rng.choice(["Web Download", "Trade Show", None]), "Owner": owner,
                    "Created_Time": ts, "Modified_Time": ts}
        for i in range(size):
            rid = self.new_id()
            acc_id, acc_name = acc_ids[i % len(acc_ids)]
            stage = DEAL_STAGES[rng.randrange(len(DEAL_STAGES))]
            lines = []
            for _ in range(rng.randrange(1, 4)):
                pid, pname, price = products[rng.randrange(len(products))]
                qty = Decimal(rng.randrange(1, 10))
                lines.append((pid, pname, price, qty))
            amount = sum((p * q for _, _, p, q in lines), Decimal("0"))
            if "Deals" in wanted:
                ts = stamp()
                self.records["Deals"][rid] = {
                    "id": rid, "Deal_Name": f"Deal {i + 1}", "Account_Name": {"name": acc_name, "id": acc_id},
                    "Stage": stage, "Amount": amount, "Closing_Date": (BASE.date() + timedelta(days=i % 300)).isoformat(),
                    "Currency": "USD", "Probability": 100 if stage == "Closed Won" else 40,
                    "Lead_Source": None, "Owner": owner, "Created_Time": ts, "Modified_Time": ts}
            if stage != "Closed Won":
                continue
            deal_ref = {"name": f"Deal {i + 1}", "id": rid}
            acc_ref = {"name": acc_name, "id": acc_id}
            for module, extra in (("Quotes", {"Quote_Stage": "Closed Won", "Valid_Till": None}),
                                  ("Sales_Orders", {"SO_Number": f"SO-{i + 1:06d}", "Status": "Approved",
                                                    "Due_Date": None}),
                                  ("Invoices", {"Invoice_Number": f"INV-{i + 1:06d}", "Status": "Approved",
                                                "Invoice_Date": (BASE.date() + timedelta(days=i % 300)).isoformat(),
                                                "Due_Date": (BASE.date() + timedelta(days=30 + i % 300)).isoformat()})):
                if module not in wanted:
                    continue
                mid, ts = self.new_id(), stamp()
                items = [self._line(pid, pname, price, qty) for pid, pname, price, qty in lines]
                self.records[module][mid] = {
                    "id": mid, "Subject": f"{module.rstrip('s').replace('_', ' ')} for Deal {i + 1}", **extra,
                    "Deal_Name": deal_ref, "Account_Name": acc_ref, "Currency": "USD", "Sub_Total": amount,
                    "Tax": Decimal("0"), "Discount": Decimal("0"), "Adjustment": Decimal("0"), "Grand_Total": amount,
                    LINE_ITEMS[module]: items, "Created_Time": ts, "Modified_Time": ts}

    def _line(self, pid: str, pname: str, price: Decimal, qty: Decimal) -> dict[str, Any]:
        total = price * qty
        return {"id": self.new_id(), "Product_Name": {"name": pname, "id": pid}, "Quantity": qty,
                "List_Price": price, "Discount": Decimal("0"), "Total": total, "Total_After_Discount": total,
                "Tax": Decimal("0"), "Net_Total": total, "Description": None}

    def modify(self, module: str, rid: str, **changes: Any) -> dict[str, Any]:
        """Edit a record (Modified_Time becomes now, unless ``Modified_Time`` is given)."""
        with self._lock:
            rec = self.records[module][rid]
            rec.update(changes)
            if "Modified_Time" not in changes:
                rec["Modified_Time"] = self.now_text()
            self._touch(module, rid)
            return rec

    def add(self, module: str, record: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            rec = dict(record)
            rec.setdefault("id", self.new_id())
            now = self.now_text()
            rec.setdefault("Created_Time", now)
            rec.setdefault("Modified_Time", now)
            self.records[module][str(rec["id"])] = rec
            self._touch(module, str(rec["id"]))
            return rec

    def delete(self, module: str, rid: str, *, permanent: bool = False, when: datetime | None = None) -> None:
        with self._lock:
            rec = self.records[module].pop(rid)
            self._touch(module, rid)
            deleted_time = zoho_time(when, self.tz) if when else self.now_text()
            self.deleted[module].append({
                "deleted_by": {"name": "Sandbox Admin", "id": str(ID_BASE + 1)}, "id": rid,
                "display_name": None if permanent else (rec.get("Deal_Name") or rec.get("Subject")
                                                        or rec.get("Last_Name") or rec.get("Account_Name")),
                "type": "permanent" if permanent else "recycle",
                "created_by": {"name": "Sandbox Admin", "id": str(ID_BASE + 1)}, "deleted_time": deleted_time})

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def _touch(self, module: str, rid: str) -> None:
        self._sorted.pop(module, None)
        self._rendered.pop((module, rid), None)

    def sorted_keys(self, module: str) -> list[tuple[datetime, int, str]]:
        keys = self._sorted.get(module)
        if keys is None:
            keys = sorted((parse_time(r["Modified_Time"]), int(rid), rid) for rid, r in self.records[module].items())
            self._sorted[module] = keys
        return keys

    def fields_of(self, module: str) -> list[str]:
        names = dict.fromkeys(["id", *STANDARD_FIELDS[module], *SYSTEM_FIELDS])
        for rec in self.records[module].values():
            for k in rec:
                names.setdefault(k)
        return list(names)

    def render(self, module: str, rec: dict[str, Any]) -> bytes:
        key = (module, str(rec["id"]))
        out = self._rendered.get(key)
        if out is None:
            out = self._rendered[key] = dumps_exact(rec)
        return out

    # --- HTTP ---------------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth/v2/token", self.token, methods=["POST"]),
            Route("/crm/v8/coql", self.api(self.coql), methods=["POST"]),
            Route("/crm/v8/settings/fields", self.api(self.fields)),
            Route("/crm/v8/{module}/deleted", self.api(self.deleted_list)),
            Route("/crm/v8/{module}", self.api(self.list_records)),
        ])

    async def token(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        form.update({k: [v] for k, v in request.query_params.items()})
        get = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        self.token_requests += 1
        if get("grant_type") != "refresh_token":
            return Response(json.dumps({"error": "unsupported_grant_type"}), 200, media_type="application/json")
        if get("client_id") != self.client_id or get("client_secret") != self.client_secret:
            return Response(json.dumps({"error": "invalid_client"}), 200, media_type="application/json")
        if get("refresh_token") != self.refresh_token:
            return Response(json.dumps({"error": "invalid_code"}), 200, media_type="application/json")
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.tokens[token] = self.clock() + self.token_ttl_s
        base = f"{request.url.scheme}://{request.url.netloc}"
        return Response(json.dumps({"access_token": token, "api_domain": base, "token_type": "Bearer",
                                    "expires_in": self.token_ttl_s}), 200, media_type="application/json")

    def _rate_headers(self) -> dict[str, str]:
        reset = (int(self.clock()) // 86_400 + 1) * 86_400_000
        return {"X-RATELIMIT-LIMIT": str(self.daily_credits),
                "X-RATELIMIT-REMAINING": str(max(0, self.daily_credits - self.credits_used)),
                "X-RATELIMIT-RESET": str(reset)}

    def api(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            self.requests.append((request.method, request.url.path))
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Zoho-oauthtoken "):
                return error(401, "AUTHENTICATION_FAILURE", "Authentication failed")
            expiry = self.tokens.get(auth.removeprefix("Zoho-oauthtoken ").strip())
            if expiry is None or expiry < self.clock():
                return error(401, "INVALID_TOKEN", "invalid oauth token")
            if self.concurrency is not None and self.in_flight >= self.concurrency:
                self.http_429 += 1
                return error(429, "TOO_MANY_REQUESTS", "The number of concurrent requests exceeds the limit",
                             {"concurrency_limit": self.concurrency}, headers=self._rate_headers())
            if self.credits_used >= self.daily_credits:
                self.http_429 += 1
                return error(429, "TOO_MANY_REQUESTS", "API credits for the 24-hour window are exhausted",
                             headers=self._rate_headers())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.latency_ms:
                    await asyncio.sleep(self.latency_ms / 1000)
                response, credits = await handler(request)
            finally:
                self.in_flight -= 1
            self.credits_used += credits
            response.headers.update(self._rate_headers())
            return response

        return endpoint

    def _module(self, request: Request) -> str | None:
        module = request.path_params.get("module") or request.query_params.get("module") or ""
        return module if module in self.records else None

    @staticmethod
    def _json(body: Any) -> Response:
        return Response(dumps_exact(body), 200, media_type="application/json")

    async def fields(self, request: Request) -> tuple[Response, int]:
        module = self._module(request)
        if module is None:
            return error(400, "INVALID_MODULE", "the module name given seems to be invalid"), 1
        out = []
        for name in self.fields_of(module):
            if name == "id":
                continue
            std = STANDARD_FIELDS[module].get(name) or SYSTEM_FIELDS.get(name)
            out.append({"api_name": name, "field_label": name.replace("_", " "),
                        "data_type": std or "text", "custom_field": std is None,
                        "read_only": name in SYSTEM_FIELDS, "visible": True})
        return self._json({"fields": out}), 1

    def _since(self, request: Request) -> datetime | Response | None:
        header = request.headers.get("If-Modified-Since")
        if not header:
            return None
        try:
            return parse_time(header)
        except ValueError:
            return error(400, "INVALID_DATA", "invalid If-Modified-Since", {"header": "If-Modified-Since"})

    async def list_records(self, request: Request) -> tuple[Response, int]:
        module = self._module(request)
        if module is None:
            return error(400, "INVALID_MODULE", "the module name given seems to be invalid",
                         {"resource_path_index": 0}), 1
        q = request.query_params
        fields_param = q.get("fields")
        if not fields_param:
            return error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                         {"param_name": "fields"}), 1
        fields = [f.strip() for f in fields_param.split(",") if f.strip()]
        if len(fields) > FIELDS_MAX:
            return error(400, "LIMIT_EXCEEDED", f"a maximum of {FIELDS_MAX} fields can be requested",
                         {"limit": FIELDS_MAX, "param_name": "fields"}), 1
        since = self._since(request)
        if isinstance(since, Response):
            return since, 1
        store = self.records[module]
        if q.get("ids"):
            ids = [i.strip() for i in q["ids"].split(",") if i.strip()]
            if len(ids) > IDS_MAX:
                return error(400, "LIMIT_EXCEEDED", f"a maximum of {IDS_MAX} ids", {"limit": IDS_MAX}), 1
            rows = [store[i] for i in ids if i in store]
            if since is not None:
                rows = [r for r in rows if parse_time(r["Modified_Time"]) > since]
            if not rows:
                return Response(status_code=204), 1
            info: dict[str, Any] = {"per_page": len(ids), "count": len(rows), "page": 1, "more_records": False}
            return self._records_response(module, rows, fields, info), 1
        try:
            per_page = int(q.get("per_page", PAGE_MAX))
            page = int(q.get("page", 1))
        except ValueError:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "per_page"}), 1
        if not 1 <= per_page <= PAGE_MAX:
            return error(400, "INVALID_DATA", "invalid per_page", {"param_name": "per_page",
                                                                  "maximum_length": PAGE_MAX}), 1
        sort_by = q.get("sort_by", "id")
        if sort_by not in ("id", "Created_Time", "Modified_Time"):
            return error(400, "INVALID_DATA", "invalid sort_by", {"param_name": "sort_by"}), 1
        desc = q.get("sort_order", "desc") == "desc"
        query_key = (module, fields_param, sort_by, desc, since, per_page)
        token = q.get("page_token")
        if token:
            entry = self._page_tokens.get(token)
            if entry is None or entry[1] != query_key:
                return error(400, "INVALID_DATA", "invalid page token", {"param_name": "page_token"}), 1
            if entry[0] < self.clock():
                return error(400, "INVALID_DATA", "the page token has expired",
                             {"param_name": "page_token", "expired": True}), 1
            start = entry[2]
            page = start // per_page + 1
        else:
            if page * per_page > DISCRETE_LIMIT:
                return error(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                             f"you can fetch only {DISCRETE_LIMIT} records using page param; use page_token "
                             "to fetch records beyond that", {"limit": DISCRETE_LIMIT}), 1
            start = (page - 1) * per_page
        rows_all = self._ordered(module, sort_by, desc, since)
        rows = rows_all[start:start + per_page]
        if not rows:
            return Response(status_code=204), 1
        more = start + per_page < len(rows_all)
        next_token = None
        expiry = None
        if more:
            next_token = secrets.token_hex(24)
            exp = self.clock() + self.page_token_ttl_s
            self._page_tokens[next_token] = (exp, query_key, start + per_page)
            expiry = zoho_time(datetime.fromtimestamp(exp, UTC), self.tz)
        info = {"per_page": per_page, "next_page_token": next_token, "count": len(rows),
                                "sort_by": sort_by,
                "page": page, "previous_page_token": token or None, "page_token_expiry": expiry,
                "sort_order": "desc" if desc else "asc", "more_records": more}
        return self._records_response(module, rows, fields, info), 1

    def _ordered(self, module: str, sort_by: str, desc: bool, since: datetime | None) -> list[dict[str, Any]]:
        store = self.records[module]
        if sort_by == "Modified_Time":
            keys = self.sorted_keys(module)
            if since is not None:
                keys = keys[bisect.bisect_right(keys, (since, 2**63, "")):]
            rows = [store[k[2]] for k in keys]
        else:
            field = "Created_Time" if sort_by == "Created_Time" else None
            rows = sorted(store.values(), key=(lambda r: (parse_time(r[field]), int(r["id"]))) if field
                          else (lambda r: int(r["id"])))
            if since is not None:
                rows = [r for r in rows if parse_time(r["Modified_Time"]) > since]
        return rows[::-1] if desc else rows

    def _records_response(self, module: str, rows: list[dict[str, Any]], fields: list[str],
                          info: dict[str, Any]) -> Response:
        wanted = set(fields) | {"id"}
        parts: list[bytes] = []
        for rec in rows:
            if wanted.issuperset(rec):
                parts.append(self.render(module, rec))
            else:
                parts.append(dumps_exact({k: v for k, v in rec.items() if k in wanted}))
        body = b'{"data":[' + b",".join(parts) + b'],"info":' + dumps_exact(info) + b"}"
        return Response(body, 200, media_type="application/json")

    async def deleted_list(self, request: Request) -> tuple[Response, int]:
        module = self._module(request)
        if module is None:
            return error(400, "INVALID_MODULE", "the module name given seems to be invalid"), 1
        q = request.query_params
        kind = q.get("type", "all")
        if kind not in ("all", "recycle", "permanent"):
            return error(400, "INVALID_DATA", "invalid type", {"param_name": "type"}), 1
        since = self._since(request)
        if isinstance(since, Response):
            return since, 1
        per_page = min(int(q.get("per_page", PAGE_MAX)), PAGE_MAX)
        page = int(q.get("page", 1))
        rows = [d for d in self.deleted[module] if kind == "all" or d["type"] == kind]
        if since is not None:
            rows = [d for d in rows if parse_time(d["deleted_time"]) > since]
        rows.sort(key=lambda d: parse_time(d["deleted_time"]), reverse=True)
        chunk = rows[(page - 1) * per_page:page * per_page]
        if not chunk:
            return Response(status_code=204), 1
        info = {"per_page": per_page, "count": len(chunk), "page": page,
                "more_records": page * per_page < len(rows)}
        return self._json({"data": chunk, "info": info}), 1

    async def coql(self, request: Request) -> tuple[Response, int]:
        try:
            body = json.loads(await request.body())
            query = body["select_query"]
        except (ValueError, KeyError, TypeError):
            return error(400, "INVALID_DATA", "select_query is missing", {"param_name": "select_query"}), 1

        def value_of(name: str, literal: str) -> Any:
            text = literal[1:-1] if literal.startswith("'") else literal
            if name in ("Modified_Time", "Created_Time"):
                return parse_time(text)
            if name == "id":
                return int(text)
            if name in NUMERIC:
                return Decimal(text)
            return text

        try:
            parsed = _Parser(query, value_of).parse()
        except CoqlError as exc:
            return error(400, exc.code, str(exc), {"clause": "where"}), 1
        except ValueError as exc:
            return error(400, "INVALID_QUERY", f"invalid value: {exc}"), 1
        module = parsed["module"]
        if module not in self.records:
            return error(400, "INVALID_QUERY", "invalid module", {"module": module}), 1
        limit, offset = parsed["limit"], parsed["offset"]
        if limit > COQL_LIMIT or limit < 1:
            return error(400, "LIMIT_EXCEEDED", f"limit must be 1..{COQL_LIMIT}", {"limit": COQL_LIMIT}), 1
        if offset + limit > COQL_WINDOW:
            return error(400, "LIMIT_EXCEEDED", f"limit + offset may not exceed {COQL_WINDOW}",
                         {"limit": COQL_WINDOW}), 1
        if len(parsed["order"]) > 10:
            return error(400, "LIMIT_EXCEEDED", "a maximum of 10 fields in order by"), 1
        credits = 1 if limit <= 200 else 2 if limit <= 1000 else 3
        keys = self.sorted_keys(module)
        lower = parsed["lower"]
        if lower is not None:
            keys = keys[bisect.bisect_left(keys, (lower, -1, "")):]
        store = self.records[module]
        pred = parsed["pred"]
        order = parsed["order"]
        natural = order in ([("Modified_Time", False), ("id", False)], [("Modified_Time", False)])
        matched: list[dict[str, Any]] = []
        need = offset + limit + 1
        for ts, iid, rid in keys:
            view = {**store[rid], "\x00Modified_Time": ts, "\x00id": iid}
            if "Created_Time" in view:
                view["\x00Created_Time"] = parse_time(view["Created_Time"])
            if pred(view):
                matched.append(store[rid])
                if natural and len(matched) >= need:
                    break
        if not natural:
            for name, desc in reversed(order or [("id", False)]):
                matched.sort(key=_sort_key(name), reverse=desc)
        page = matched[offset:offset + limit]
        if not page:
            return Response(status_code=204), credits
        fields = parsed["fields"]
        data = [{f: _coql_value(r.get(f)) for f in fields} | {"id": r["id"]} for r in page]
        info = {"count": len(page), "more_records": len(matched) > offset + limit}
        return self._json({"data": data, "info": info}), credits


def _sort_key(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda rec: _sort_value(rec, name)


def _sort_value(rec: dict[str, Any], name: str) -> Any:
    value = rec.get(name)
    if name == "id":
        return int(value or 0)
    if name in ("Modified_Time", "Created_Time") and value:
        return parse_time(value)
    return (value is None, str(value) if not isinstance(value, Decimal) else value)


def _coql_value(value: Any) -> Any:
    """COQL returns a lookup as ``{"id": ...}`` only."""
    if isinstance(value, dict) and "id" in value:
        return {"id": value["id"]}
    return value


def create_app(seed: int = 7, size: int = 100, **options: Any) -> Starlette:
    """The ASGI app (``sandbox.registry``/``sandbox.run``): generated data, or ``world=``."""
    return ZohoEmulator(seed, size, **options).app


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="Serve the Zoho CRM emulator on 127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--modules", default=None, help="comma-separated modules to seed (default: all)")
    ap.add_argument("--concurrency", type=int, default=None)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--prerender", action="store_true", help="render every record's JSON before serving")
    args = ap.parse_args()
    emu = ZohoEmulator(args.seed, args.size, concurrency=args.concurrency, latency_ms=args.latency_ms,
                       modules=args.modules.split(",") if args.modules else None, token_ttl_s=86_400)
    if args.prerender:
        for module, recs in emu.records.items():
            for rec in recs.values():
                emu.render(module, rec)
            emu.sorted_keys(module)
    import gc

    gc.freeze()
    uvicorn.run(emu.app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
