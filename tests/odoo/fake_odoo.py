"""An Odoo server in memory for respx: the sandbox's Odoo logic (sandbox.odoo) plus the writes of the push."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from sandbox.odoo import OdooFault, OdooServer

URL = "https://odoo.example.test"
KEY = "odoo-api-key-5f1e0c2d9a7b"


@dataclass
class FakeOdoo(OdooServer):
    """:class:`sandbox.odoo.OdooServer` (domains, reads, both transports' envelopes) plus the writes the
    push tests need: ``create`` / ``write`` / ``unlink`` / ``action_confirm`` with Odoo's computed values."""

    bodies: list[bytes] = field(default_factory=list)
    next_id: int = 1000
    login_ok: bool = True
    company_currency: list[Any] = field(default_factory=lambda: [1, "EUR"])
    database: str | None = None
    login: str | None = None
    api_key: str = KEY
    uid: int = 7

    def login_uid(self, db: Any, login: Any, key: Any) -> int | bool:
        return self.uid if self.login_ok else False

    def execute(self, model: str, method: str, args: list[Any], kw: dict[str, Any]) -> Any:
        if method == "search_read" and kw.get("order") not in (None, "id asc"):
            raise AssertionError(f"unexpected order {kw['order']}")  # the connector pages by id only
        return super().execute(model, method, args, kw)

    def write_method(self, model: str, method: str, args: list[Any], kw: dict[str, Any]) -> Any:
        rows = self.models.setdefault(model, [])
        if method == "create":
            out = []
            for vals in args[0]:
                self.next_id += 1
                rec = {"id": self.next_id, "name": f"S{self.next_id:05d}", "write_date": "2026-11-20 10:00:00",
                       "state": "draft"}
                rows.append(rec)
                out.append(rec["id"])
                self._write(model, rec, vals)  # may create line records (and ids) first
            return out
        if method == "write":
            for r in rows:
                if r["id"] in args[0]:
                    self._write(model, r, args[1])
            return True
        if method == "unlink":
            self.models[model] = [r for r in rows if r["id"] not in args[0]]
            return True
        if method == "action_confirm":
            for r in rows:
                if r["id"] in args[0]:
                    if r["state"] not in ("draft", "sent"):
                        raise OdooFault("odoo.exceptions.UserError",
                                        "Some orders are not in a state requiring confirmation.")
                    r["state"] = "sale"
            return True
        raise AssertionError(f"unexpected {model}.{method}")

    def _get(self, model: str, rid: int) -> dict[str, Any]:
        return next(r for r in self.models.get(model, []) if r["id"] == rid)

    def _write(self, model: str, rec: dict[str, Any], vals: dict[str, Any]) -> None:
        """``vals`` as Odoo stores them; sale orders get line records, many2one pairs and computed amounts."""
        if model not in ("sale.order", "sale.order.line"):
            rec.update(vals)
            return
        vals = dict(vals)
        commands = vals.pop("order_line", None)
        for key, target in (("partner_id", "res.partner"), ("product_id", "product.product"),
                            ("pricelist_id", "product.pricelist")):
            if isinstance(vals.get(key), int):
                vals[key] = [vals[key], self._get(target, vals[key])["name"]]
        rec.update(vals)
        if model == "sale.order.line":
            return
        pricelist = rec.get("pricelist_id")
        rec["currency_id"] = (self._get("product.pricelist", pricelist[0])["currency_id"] if pricelist
                              else self.company_currency)
        lines = list(rec.get("order_line") or [])
        for cmd in commands or []:
            if cmd[0] == 0:
                [lid] = self.execute("sale.order.line", "create", [[{**cmd[2], "order_id": rec["id"]}]], {})
                lines.append(lid)
            elif cmd[0] == 2:
                self.execute("sale.order.line", "unlink", [[cmd[1]]], {})
                lines.remove(cmd[1])
            else:
                raise AssertionError(f"unexpected x2many command {cmd}")
        rec["order_line"] = lines
        untaxed = sum((Decimal(str(ln["product_uom_qty"])) * Decimal(str(ln["price_unit"]))
                       for ln in self.models.get("sale.order.line", []) if ln["id"] in lines), Decimal(0))
        untaxed = untaxed.quantize(Decimal("0.01"))
        rec["amount_untaxed"] = float(untaxed)
        rec["amount_total"] = float((untaxed * Decimal("1.2")).quantize(Decimal("0.01")))  # one 20 % tax

    # --- transports (respx / httpx.MockTransport handlers) ---------------------------------------

    def jsonrpc(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        return httpx.Response(200, json=self.handle_jsonrpc(json.loads(request.content)))

    def json2(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        _, _, _, model, method = request.url.path.split("/")
        status, body = self.handle_json2(model, method, request.headers.get("authorization"),
                                         request.headers.get("x-odoo-database"), json.loads(request.content))
        return httpx.Response(status, json=body)


def partner(i: int, ts: str, **extra: Any) -> dict[str, Any]:
    return {"id": i, "write_date": ts, "create_date": ts, "display_name": f"Partner {i}", "name": f"Partner {i}",
            "ref": False, "email": False, "phone": False, "vat": False, "is_company": True, "parent_id": False,
            "commercial_partner_id": [i, f"Partner {i}"], "country_id": [75, "France"], "customer_rank": 1,
            "active": True, **extra}
