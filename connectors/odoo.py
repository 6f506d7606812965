"""Odoo: partners, sale orders + lines, outgoing deliveries (``stock.picking`` + ``stock.move``), customer invoices / credit notes + lines, payments; and the
push target that turns a closed-won deal into a confirmed ``sale.order``.

Two transports, chosen by ``options.transport``:

* ``jsonrpc`` (default): ``POST /jsonrpc`` ``object.execute_kw(db, uid, key, model, method, args,
  kwargs)``; ``uid`` from ``options.uid`` or a ``common.login``. Errors come back with HTTP 200
  and an ``error`` member, which we turn into the same typed errors as HTTP statuses.
* ``json2`` (Odoo 19+): ``POST /json/2/<model>/<method>`` with named parameters, ``Authorization:
  bearer <API key>`` and ``X-Odoo-Database``; errors are real 4xx/5xx with ``{name, message}``.

Incremental reads take the rows whose ``write_date`` is in [mark - lookback, run start), paged by id.
Odoo writes ``false`` for every empty field (many2one, char, date, numeric): payloads are landed as
Odoo sends them and the mapping reads ``false`` as empty. Datetimes are UTC ``YYYY-MM-DD HH:MM:SS``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from canonical.errors import ConfigError
from canonical.money import Money
from connectors.base import Connector, Page, StartingAfter, StreamSpec, Window
from connectors.errors import AuthenticationError, ConnectorError, NotFound, PermissionDenied
from connectors.governor import RateGovernor
from connectors.http import HttpClient, RetryPolicy, dumps_exact
from connectors.push import ErpSale, ErpSaleLine, PushAccount, PushError, PushLine, PushOrder, differences

ODOO_TS = "%Y-%m-%d %H:%M:%S"
CUSTOMER_MOVES = ["out_invoice", "out_refund"]
ID_PAGE = 1000


def odoo_instant(value: Any) -> datetime | None:
    """Odoo's UTC ``YYYY-MM-DD HH:MM:SS`` (no zone) as an aware datetime; ``false`` -> None."""
    if value is False or value is None or value == "":
        return None
    text = str(value)
    return datetime.strptime(text[:19], ODOO_TS).replace(tzinfo=UTC)


def odoo_ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime(ODOO_TS)


@dataclass(frozen=True)
class OdooStream(StreamSpec):
    """A ``search_read`` over ``model`` (= ``object``) restricted by ``domain``; cursor ``write_date``."""

    domain: tuple[Any, ...] = ()
    fields: tuple[str, ...] = ()

    def updated_at(self, record: Mapping[str, Any]) -> datetime | None:
        return odoo_instant(record.get(self.cursor_field or "write_date"))


def _s(name: str, model: str, fields: Sequence[str], domain: Sequence[Any] = ()) -> OdooStream:
    return OdooStream(name, model, cursor_field="write_date", page_size=200, paginator=StartingAfter(param="id"),
                      records_path=None, domain=tuple(domain),
                      fields=("id", "write_date", "create_date", "display_name", *fields))


STREAMS: tuple[OdooStream, ...] = (
    _s("partners", "res.partner", ["name", "ref", "email", "phone", "vat", "is_company", "parent_id",
                                   "commercial_partner_id", "country_id", "customer_rank", "active", "website"]),
    _s("sale_orders", "sale.order", ["name", "partner_id", "date_order", "validity_date", "client_order_ref",
                                     "origin", "state", "amount_untaxed", "amount_tax", "amount_total",
                                     "currency_id", "invoice_status", "invoice_ids", "order_line"]),
    _s("sale_order_lines", "sale.order.line", ["order_id", "product_id", "name", "product_uom_qty", "price_unit",
                                               "discount", "price_subtotal", "price_total", "qty_invoiced",
                                               "currency_id"]),
    _s("deliveries", "stock.picking", ["name", "partner_id", "picking_type_code", "state", "origin", "sale_id",
                                       "scheduled_date", "date_deadline", "date_done", "move_ids"],
       [["picking_type_code", "=", "outgoing"]]),
    _s("delivery_moves", "stock.move", ["picking_id", "product_id", "product_uom_qty", "quantity", "state",
                                        "sale_line_id", "date", "picking_code"], [["picking_code", "=", "outgoing"]]),
    _s("invoices", "account.move", ["name", "move_type", "state", "payment_state", "partner_id", "currency_id",
                                    "invoice_date", "invoice_date_due", "invoice_origin", "ref",
                                    "payment_reference", "amount_untaxed", "amount_tax", "amount_total",
                                    "amount_residual", "invoice_line_ids", "reversed_entry_id"],
       [["move_type", "in", CUSTOMER_MOVES]]),
    _s("invoice_lines", "account.move.line", ["move_id", "product_id", "name", "quantity", "price_unit",
                                              "discount", "price_subtotal", "price_total", "currency_id",
                                              "display_type", "sale_line_ids"],
       [["move_id.move_type", "in", CUSTOMER_MOVES], ["display_type", "=", "product"]]),
    _s("payments", "account.payment", ["name", "partner_id", "amount", "currency_id", "date", "payment_type",
                                       "partner_type", "state", "move_id", "reconciled_invoice_ids"],
       [["partner_type", "=", "customer"]]),
    # the ERP's own FX rates: name = the day, rate = units of currency_id per 1 company currency
    _s("currency_rates", "res.currency.rate", ["name", "rate", "currency_id", "company_id"]),
)


def _odoo_error(data: Mapping[str, Any], fallback: str) -> tuple[str, str]:
    """(exception class path, first line of its message); Odoo's ``debug`` traceback is never kept."""
    name = str(data.get("name") or "")
    lines = str(data.get("message") or fallback).strip().splitlines()
    return name, lines[0] if lines else fallback


def _raise_odoo(what: str, name: str, message: str, status: int | None = None) -> None:
    text = f"odoo: {what} failed: {name.rsplit('.', 1)[-1] or 'error'}: {message}"
    if name.endswith("AccessDenied"):
        raise AuthenticationError(f"{text}; check the Odoo login / API key in ltc.yaml", status=status)
    if name.endswith("AccessError"):
        raise PermissionDenied(f"{text}; grant the integration user read access to this model", status=status)
    if name.endswith("MissingError"):
        raise NotFound(text, status=status)
    raise ConnectorError(text, status=status)


def json2_hint(status: int, headers: Mapping[str, str], body: Any) -> str | None:
    if isinstance(body, Mapping) and (body.get("name") or body.get("message")):
        name, message = _odoo_error(body, "")
        return f"{name.rsplit('.', 1)[-1]}: {message}" if name else message
    return None


class OdooClient:
    """``call(model, method, *args, **kwargs)`` over either transport, with typed errors."""

    def __init__(self, base_url: str, *, db: str, api_key: str, transport: str = "jsonrpc",
                 login: str | None = None, uid: int | None = None, policy: RetryPolicy | None = None,
                 governor: RateGovernor | None = None, verify: Any = True, http_transport: Any = None):
        if transport not in ("jsonrpc", "json2"):
            raise ConfigError(f"odoo transport must be 'jsonrpc' or 'json2', got {transport!r}")
        self.transport, self.db, self._key, self.login, self._uid = transport, db, api_key, login, uid
        headers = {"Content-Type": "application/json"}
        if transport == "json2":
            headers["Authorization"] = f"bearer {api_key}"
            if db:
                headers["X-Odoo-Database"] = db
        self.http = HttpClient("odoo", base_url, headers=headers, policy=policy, governor=governor,
                               hint=json2_hint if transport == "json2" else None, verify=verify,
                               transport=http_transport)
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.http.close()

    def _rpc(self, service: str, method: str, args: list[Any], what: str) -> Any:
        body = self.http.json("POST", "/jsonrpc", content=dumps_exact(
            {"jsonrpc": "2.0", "method": "call", "id": next(self._ids),
             "params": {"service": service, "method": method, "args": args}}))
        if not isinstance(body, Mapping):
            raise ConnectorError(f"odoo: {what}: the server did not answer JSON-RPC (check base_url)")
        if body.get("error") is not None:
            err = body["error"] if isinstance(body["error"], Mapping) else {}
            data = err.get("data")
            data = data if isinstance(data, Mapping) else {}
            name, message = _odoo_error(data, str(err.get("message") or "unknown error"))
            _raise_odoo(what, name, message)
        return body.get("result")

    def uid(self) -> int:
        if self._uid is None:
            if not self.login:
                raise ConfigError("odoo jsonrpc transport needs options.uid or options.login")
            uid = self._rpc("common", "login", [self.db, self.login, self._key], "common.login")
            if not uid:
                raise AuthenticationError(f"odoo: login of {self.login!r} to database {self.db!r} was refused; "
                                          "check the login and API key in ltc.yaml")
            self._uid = int(uid)
        return self._uid

    def call(self, model: str, method: str, args: Sequence[Any] = (), **kwargs: Any) -> Any:
        what = f"{model}.{method}"
        if self.transport == "jsonrpc":
            return self._rpc("object", "execute_kw",
                             [self.db, self.uid(), self._key, model, method, list(args), kwargs], what)
        params = dict(kwargs)
        if method in ("write", "unlink", "read", "action_confirm") and args:
            params["ids"] = args[0]
            if method == "write" and len(args) > 1:
                params["vals"] = args[1]
        elif method == "create" and args:
            params["vals_list"] = args[0]
        elif method in ("search_read", "search_count", "search") and args:
            params["domain"] = args[0]
        return self.http.json("POST", f"/json/2/{model}/{method}", content=dumps_exact(params))


class OdooConnector(Connector):
    kind = "odoo"

    def __init__(self, name: str, client: OdooClient, *, lookback: timedelta = timedelta(minutes=10),
                 streams: Sequence[str] | None = None, page_size: int = 200,
                 clock: Callable[[], float] = time.time):
        super().__init__(name, lookback=lookback)
        self.clock = clock
        unknown = set(streams or ()) - {s.name for s in STREAMS}
        if unknown:
            raise ConfigError(f"{name}: unknown Odoo stream(s) {sorted(unknown)}; "
                              f"known: {', '.join(s.name for s in STREAMS)}")
        self.streams = tuple(replace(s, page_size=page_size) for s in STREAMS
                             if streams is None or s.name in streams)
        self.client = client

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def _domain(stream: StreamSpec, since: datetime | None, until: str | None = None,
                after: int | None = None) -> list[Any]:
        domain: list[Any] = [list(d) for d in getattr(stream, "domain", ())]
        if since is not None:
            domain.append(["write_date", ">=", odoo_ts(since)])
        if until is not None:
            domain.append(["write_date", "<", until])
        if after is not None:
            domain.append(["id", ">", after])
        return domain

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        # One window [since, run start) paged by id. Odoo stores write_date with microseconds but
        # reads it back truncated to the second, so a (write_date, id) keyset built from what we
        # read can skip or loop on rows of one busy second; whole-second window bounds and the id
        # are exact. A row changed during the run leaves the window and is read by the next run
        # (its write_date is past this run's high-water mark).
        token = token or {"until": odoo_ts(datetime.fromtimestamp(self.clock(), tz=UTC)), "after": None}
        rows = self.client.call(stream.object, "search_read",
                                [self._domain(stream, window.since, token["until"], token["after"])],
                                fields=list(getattr(stream, "fields", ())), order="id asc", limit=stream.page_size)
        if not isinstance(rows, list):
            raise ConnectorError(f"odoo: {stream.object}.search_read returned {type(rows).__name__}, not a list")
        more = len(rows) >= stream.page_size
        return Page([dict(r) for r in rows], next_token={**token, "after": int(rows[-1]["id"])} if more else None)

    def count(self, stream: StreamSpec, window: Window) -> int | None:
        until = odoo_ts(window.until) if window.until is not None else None
        return int(self.client.call(stream.object, "search_count", [self._domain(stream, window.since, until)]))

    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        """Every record id of the stream with its ``write_date`` (``search_read`` of two fields,
        1,000 a call, by id). Odoo deletes rows physically (``unlink``): a missing id is a delete."""
        out: dict[str, datetime | None] = {}
        after: int | None = None
        while True:
            rows = self.client.call(stream.object, "search_read", [self._domain(stream, None, None, after)],
                                    fields=["id", "write_date"], order="id asc", limit=ID_PAGE)
            if not isinstance(rows, list):
                raise ConnectorError(f"odoo: {stream.object}.search_read returned {type(rows).__name__}, not a list")
            for row in rows:
                out[str(row["id"])] = odoo_instant(row.get("write_date"))
            if len(rows) < ID_PAGE:
                return out
            after = int(rows[-1]["id"])

    def fetch_ids(self, stream: StreamSpec, ids: Sequence[str]) -> list[dict[str, Any]]:
        domain = [*self._domain(stream, None), ["id", "in", [int(i) for i in ids]]]
        rows = self.client.call(stream.object, "search_read", [domain], fields=list(getattr(stream, "fields", ())),
                                order="id asc")
        return [dict(r) for r in rows or []]


# --- push: closed-won deal -> partner + sale order ---------------------------------------------------

_EDITABLE = ("draft", "sent")  # a quotation, sent or not: its lines may still change
_CONFIRMED = ("sale", "done")  # Odoo 17+ has no "done": a locked order stays "sale"
_SALE_FIELDS = ["name", "client_order_ref", "state", "partner_id", "currency_id", "order_line",
                "amount_untaxed", "amount_total"]


def _m2o_id(value: Any) -> int | None:
    """A many2one as read (``[id, "display name"]``, or ``false``) -> its id."""
    return int(value[0]) if isinstance(value, list | tuple) and value else None


def _created_id(created: Any) -> int:
    return int(created[0] if isinstance(created, list) else created)


class OdooTarget:
    """Odoo as the ERP that receives closed-won deals (:class:`connectors.push.ErpTarget`).

    The sale is found by ``client_order_ref`` = CRM deal id, the customer by ``ref`` = CRM account
    id, products by ``default_code`` (created as services when missing). The order's currency comes
    from a pricelist in that currency (Odoo derives ``sale.order.currency_id`` from the pricelist);
    without one the order gets the company currency, so a mismatch is refused and the draft removed.
    ``draft``/``sent`` are editable, ``sale``/``done`` confirmed, ``cancel`` is reported as ``cancelled``.
    """

    def __init__(self, client: OdooClient, *, name: str = "odoo"):
        self.client = client
        self.name = name
        self._pricelists: dict[str, int | None] = {}

    def close(self) -> None:
        self.client.close()

    # --- reads ------------------------------------------------------------------------------------
    def _to_sale(self, rec: Mapping[str, Any]) -> ErpSale:
        currency = rec["currency_id"][1] if rec.get("currency_id") else ""
        line_ids = list(rec.get("order_line") or [])
        rows = self.client.call("sale.order.line", "read", [line_ids],
                                fields=["product_id", "product_uom_qty", "price_unit", "display_type"]) if line_ids else []
        rows = [r for r in rows if not r.get("display_type")]  # section and note lines carry no product
        product_ids = sorted({pid for r in rows if (pid := _m2o_id(r.get("product_id"))) is not None})
        codes = {p["id"]: p.get("default_code") or None for p in self.client.call(
            "product.product", "read", [product_ids], fields=["default_code"])} if product_ids else {}
        state = str(rec["state"])

        def money(key: str) -> Money | None:
            value = rec.get(key)
            return None if value is None or value is False or not currency else Money.of(Decimal(value), currency)

        return ErpSale(
            id=int(rec["id"]), reference=rec.get("client_order_ref") or None, number=rec.get("name") or None,
            state="cancelled" if state == "cancel" else state, editable=state in _EDITABLE,
            confirmed=state in _CONFIRMED, currency=currency,
            lines=tuple(ErpSaleLine(codes.get(_m2o_id(r.get("product_id"))), Decimal(r["product_uom_qty"]),
                                    Decimal(r["price_unit"])) for r in rows),
            untaxed=money("amount_untaxed"), total=money("amount_total"), party_id=_m2o_id(rec.get("partner_id")),
        )

    def _read_sale(self, sale_id: int | str) -> ErpSale:
        rows = self.client.call("sale.order", "read", [[int(sale_id)]], fields=_SALE_FIELDS)
        if not rows:
            raise NotFound(f"odoo: sale.order {sale_id} does not exist")
        return self._to_sale(rows[0])

    def find_sale_by_reference(self, reference: str) -> ErpSale | None:
        rows = self.client.call("sale.order", "search_read", [[["client_order_ref", "=", reference]]],
                                fields=_SALE_FIELDS, order="id asc")
        live = [r for r in rows if r["state"] != "cancel"]
        if len(live) > 1:
            raise PushError(f"deal {reference} already has {len(live)} Odoo sale orders "
                            f"({', '.join(str(r['name']) for r in live)}); cancel all but one in Odoo")
        chosen = live or rows[-1:]
        return self._to_sale(chosen[0]) if chosen else None

    # --- writes -----------------------------------------------------------------------------------
    def upsert_party(self, account: PushAccount) -> int:
        """The ``res.partner`` whose ``ref`` is the CRM account id: renamed if needed, or created."""
        found = self.client.call("res.partner", "search_read", [[["ref", "=", account.reference]]],
                                 fields=["name"], order="id asc", limit=1)
        if found:
            pid = int(found[0]["id"])
            if found[0]["name"] != account.name:
                self.client.call("res.partner", "write", [[pid], {"name": account.name}])
            return pid
        vals: dict[str, Any] = {"name": account.name, "ref": account.reference, "is_company": True,
                                "customer_rank": 1}
        if account.email:
            vals["email"] = account.email
        return _created_id(self.client.call("res.partner", "create", [[vals]]))

    def _products(self, lines: Sequence[PushLine]) -> dict[str, int]:
        """Product id per code: found by ``default_code``, the missing ones created (one call) as services."""
        codes = sorted({ln.product_code for ln in lines})
        found = {r["default_code"]: int(r["id"]) for r in self.client.call(
            "product.product", "search_read", [[["default_code", "in", codes]]], fields=["default_code"],
            order="id asc")}
        missing = [c for c in codes if c not in found]
        if missing:
            first = {ln.product_code: ln for ln in reversed(lines)}
            created = self.client.call("product.product", "create", [[
                {"name": first[c].product_name, "default_code": c, "type": "service", "sale_ok": True,
                 "list_price": first[c].unit_price} for c in missing]])
            found.update(zip(missing, [int(i) for i in (created if isinstance(created, list) else [created])],
                             strict=True))
        return found

    def _pricelist(self, currency: str) -> int | None:
        if currency not in self._pricelists:
            cur = self.client.call("res.currency", "search_read", [[["name", "=", currency]]], fields=["name"],
                                   limit=1)
            pls = self.client.call("product.pricelist", "search_read",
                                   [[["currency_id", "=", int(cur[0]["id"])]]], fields=["name"], order="id asc",
                                   limit=1) if cur else []
            self._pricelists[currency] = int(pls[0]["id"]) if pls else None
        return self._pricelists[currency]

    def _values(self, order: PushOrder, party_id: int | str) -> dict[str, Any]:
        vals: dict[str, Any] = {"partner_id": int(party_id), "client_order_ref": order.reference}
        pricelist = self._pricelist(order.currency)
        if pricelist is not None:
            vals["pricelist_id"] = pricelist
        if order.order_date is not None:
            vals["date_order"] = f"{order.order_date.isoformat()} 00:00:00"
        return vals

    def _line_commands(self, order: PushOrder) -> list[list[Any]]:
        products = self._products(order.lines)
        return [[0, 0, {"product_id": products[ln.product_code], "name": ln.product_name,
                        "product_uom_qty": ln.quantity, "price_unit": ln.unit_price, "sequence": seq}]
                for seq, ln in enumerate(order.lines, start=1)]

    def _checked(self, sale: ErpSale, order: PushOrder, *, created: bool = False) -> ErpSale:
        if sale.currency != order.currency:
            if created:
                self.client.call("sale.order", "unlink", [[int(sale.id)]])
            raise PushError(f"Odoo has no pricelist in {order.currency} (the order came out in {sale.currency}); "
                            f"create one in Sales > Configuration > Pricelists")
        diffs = differences(order, sale)
        if diffs:
            raise PushError(f"Odoo stored sale {sale.number} differently (check the price decimal accuracy): "
                            + "; ".join(diffs))
        return sale

    def create_sale(self, order: PushOrder, party_id: int | str) -> ErpSale:
        vals = {**self._values(order, party_id), "order_line": self._line_commands(order)}
        sale = self._read_sale(_created_id(self.client.call("sale.order", "create", [[vals]])))
        return self._checked(sale, order, created=True)

    def update_draft_sale(self, sale: ErpSale, order: PushOrder, party_id: int | str) -> ErpSale:
        """Replace the lines of a quotation; a confirmed order is never rewritten."""
        rows = self.client.call("sale.order", "read", [[int(sale.id)]], fields=["state", "name", "order_line"])
        if not rows:
            raise NotFound(f"odoo: sale.order {sale.id} does not exist")
        if rows[0]["state"] not in _EDITABLE:
            raise PushError(f"Odoo sale order {rows[0]['name']} is {rows[0]['state']}; only quotations are updated")
        commands = [[2, int(line_id), 0] for line_id in rows[0]["order_line"]] + self._line_commands(order)
        self.client.call("sale.order", "write", [[int(sale.id)], {**self._values(order, party_id),
                                                                  "order_line": commands}])
        return self._checked(self._read_sale(sale.id), order)

    def confirm(self, sale: ErpSale) -> ErpSale:
        try:
            self.client.call("sale.order", "action_confirm", [[int(sale.id)]])
        except ConnectorError as exc:
            raise PushError(f"Odoo refused to confirm sale order {sale.number or sale.id}: {exc}") from None
        return self._read_sale(sale.id)


def make_erp_target(name: str, cfg: Any) -> OdooTarget:
    """The push target for ``erp.source`` = an Odoo source (same credentials and options as the sync)."""
    return OdooTarget(client_from_config(name, cfg), name=name)


# --- configuration --------------------------------------------------------------------------------

def client_from_config(name: str, cfg: Any) -> OdooClient:
    ref = cfg.credentials.get("api_key") or cfg.credentials.get("password")
    if ref is None:
        raise ConfigError(f"sources.{name}.credentials.api_key is required (e.g. {{env: ODOO_API_KEY}})")
    if not cfg.base_url:
        raise ConfigError(f"sources.{name}.base_url is required for an Odoo source")
    opts = dict(cfg.options or {})
    known = {"transport", "database", "login", "uid", "confirm_orders", "ca_file"}
    for key in opts:
        if key not in known:
            raise ConfigError(f"sources.{name}.options.{key}: unknown Odoo option; known: {', '.join(sorted(known))}")
    transport = opts.get("transport", "jsonrpc")
    if transport not in ("jsonrpc", "json2"):
        raise ConfigError(f"sources.{name}.options.transport: must be jsonrpc or json2, got {transport!r}")
    if transport == "jsonrpc" and not opts.get("database"):
        raise ConfigError(f"sources.{name}.options.database is required for the jsonrpc transport")
    if transport == "jsonrpc" and not (opts.get("uid") or opts.get("login")):
        raise ConfigError(f"sources.{name}.options.login (or uid) is required for the jsonrpc transport")
    return OdooClient(cfg.base_url, db=str(opts.get("database") or ""), api_key=ref.resolve(), transport=transport,
                      login=opts.get("login"), uid=opts.get("uid"), verify=opts.get("ca_file") or True)


def from_config(name: str, cfg: Any) -> OdooConnector:
    """``sources.<name>`` (kind: odoo): ``credentials.api_key``; ``options``: ``transport`` (jsonrpc |
    json2), ``database``, and for jsonrpc ``uid`` or ``login``."""
    return OdooConnector(name, client_from_config(name, cfg), lookback=timedelta(minutes=cfg.lookback_minutes),
                         streams=cfg.streams, page_size=cfg.page_size or 200)
