"""An Odoo server in memory for respx: both transports, documented payload shapes, domain evaluation."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

URL = "https://odoo.example.test"
KEY = "odoo-api-key-5f1e0c2d9a7b"


def _match(rec: dict[str, Any], leaf: list[Any]) -> bool:
    name, op, value = leaf
    cur: Any = rec
    for part in name.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, list) and len(cur) == 2 and isinstance(cur[0], int) and not name.endswith("_ids"):
        cur = cur[0]  # many2one [id, "Name"] compares by id
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b, "<": lambda a, b: a is not False and a < b, ">": lambda a, b: a is not False and a > b, ">=": lambda a, b: a is not False and a >= b,
        "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
    }
    return ops[op](cur, value)


def evaluate(domain: list[Any], rec: dict[str, Any]) -> bool:
    """Odoo's prefix notation with implicit '&' between top-level terms."""
    def term(i: int) -> tuple[bool, int]:
        tok = domain[i]
        if tok in ("&", "|"):
            a, j = term(i + 1)
            b, k = term(j)
            return (a and b) if tok == "&" else (a or b), k
        return _match(rec, tok), i + 1
    i, ok = 0, True
    while i < len(domain):
        v, i = term(i)
        ok = ok and v
    return ok


@dataclass
class FakeOdoo:
    models: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (model, method) -> (name, msg)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    next_id: int = 1000
    login_ok: bool = True
    company_currency: list[Any] = field(default_factory=lambda: [1, "EUR"])

    def execute(self, model: str, method: str, args: list[Any], kw: dict[str, Any]) -> Any:
        self.calls.append((model, method, {"args": args, **kw}))
        if (model, method) in self.errors:
            raise LookupError(*self.errors[(model, method)])
        rows = self.models.setdefault(model, [])
        if method in ("search_read", "search_count"):
            found = [r for r in rows if evaluate(args[0] if args else kw.get("domain", []), r)]
            if method == "search_count":
                return len(found)
            if kw.get("order") == "id asc":
                found.sort(key=lambda r: r["id"])
            elif kw.get("order"):
                raise AssertionError(f"unexpected order {kw['order']}")
            found = found[int(kw.get("offset", 0)):][: kw.get("limit") or None]
            fields = kw.get("fields")
            return [{k: v for k, v in r.items() if not fields or k in fields or k == "id"} for r in found]  # id always
        if method == "read":
            ids, fields = args[0], kw.get("fields")
            return [{k: v for k, v in r.items() if not fields or k in fields or k == "id"} for r in rows if r["id"] in ids]
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
                        raise LookupError("odoo.exceptions.UserError",
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

    # --- transports -------------------------------------------------------------------------------

    def jsonrpc(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        msg = json.loads(request.content)
        params = msg["params"]
        if params["service"] == "common":
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": msg["id"], "result": 7 if self.login_ok else False})
        _db, _uid, key, model, method, args, kw = params["args"]
        if key != KEY:
            return self._rpc_error(msg["id"], "odoo.exceptions.AccessDenied", "Access Denied")
        try:
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": msg["id"], "result": self.execute(model, method, args, kw)})
        except LookupError as exc:
            return self._rpc_error(msg["id"], *exc.args)

    @staticmethod
    def _rpc_error(rid: int, name: str, message: str) -> httpx.Response:
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": rid, "error": {
            "code": 200, "message": "Odoo Server Error",
            "data": {"name": name, "message": message, "arguments": [message], "context": {},
                     "debug": "Traceback (most recent call last):\n  File odoo/http.py ... secret internals"}}})

    def json2(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        if request.headers.get("authorization") != f"bearer {KEY}":
            return httpx.Response(401, json={"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey",
                                             "arguments": [], "context": {}, "debug": ""})
        _, _, _, model, method = request.url.path.split("/")
        body = json.loads(request.content)
        args = [body.pop("domain")] if "domain" in body else []
        if "ids" in body:
            args = [body.pop("ids")] + ([body.pop("vals")] if "vals" in body else [])
        if "vals_list" in body:
            args = [body.pop("vals_list")]
        try:
            return httpx.Response(200, json=self.execute(model, method, args, body))
        except LookupError as exc:
            status = 403 if exc.args[0].endswith("AccessError") else 422
            return httpx.Response(status, json={"name": exc.args[0], "message": exc.args[1], "arguments": [],
                                                "context": {}, "debug": "Traceback ..."})


def partner(i: int, ts: str, **extra: Any) -> dict[str, Any]:
    return {"id": i, "write_date": ts, "create_date": ts, "display_name": f"Partner {i}", "name": f"Partner {i}",
            "ref": False, "email": False, "phone": False, "vat": False, "is_company": True, "parent_id": False,
            "commercial_partner_id": [i, f"Partner {i}"], "country_id": [75, "France"], "customer_rank": 1,
            "active": True, **extra}
