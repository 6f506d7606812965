"""An Odoo emulator for what :mod:`connectors.odoo`'s client calls, over both of its transports.

* ``POST /jsonrpc``: ``common.login(db, login, key)`` -> uid (or ``false``), ``common.version``, and
  ``object.execute_kw(db, uid, key, model, method, args, kwargs)``; errors in the HTTP 200 envelope
  ``{"error": {"code": 200, "message": "Odoo Server Error", "data": {"name", "message", ...}}}``.
* ``POST /json/2/<model>/<method>`` (Odoo 19+): named parameters (``domain``, ``ids``, ``fields``,
  ``offset``, ``limit``, ``order``), ``Authorization: bearer <API key>``, ``X-Odoo-Database``; errors as
  real statuses with ``{"name", "message", "arguments", "context", "debug"}`` (401 bad key, 403 access,
  422 user error, 404 unknown model).

Reads: ``search_read``, ``search``, ``search_count``, ``read``, with Odoo's domain language
(prefix ``&`` ``|`` ``!``, implicit ``&`` between terms; operators ``= != < <= > >= in not in like
ilike not like not ilike =like =ilike``; ``false`` compares as Odoo stores empty values; a many2one
``[id, "name"]`` compares by id; a dotted path ``move_id.move_type`` follows the many2one into the
related model's rows), ``order`` (``"write_date desc, id asc"``), ``offset``, ``limit``, ``fields``.

:class:`OdooServer` is the logic, transport-independent: the ASGI app here serves a world (read-only:
writes are refused with Odoo's ``UserError``), and the in-process fake of tests/odoo extends it with
the writes its push tests need. World-only as a server (no generated data), so it is not in
:data:`sandbox.registry.EMULATORS`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.http import dumps_exact

MODELS = ("res.partner", "sale.order", "sale.order.line", "account.move", "account.move.line", "account.payment",
          "res.currency.rate")
# many2one fields (by name) whose comodel a dotted domain path follows
RELATIONS: dict[str, str] = {
    "move_id": "account.move", "order_id": "sale.order", "partner_id": "res.partner",
    "commercial_partner_id": "res.partner", "parent_id": "res.partner", "reversed_entry_id": "account.move",
    "product_id": "product.product", "currency_id": "res.currency", "pricelist_id": "product.pricelist",
}
_READS = ("search_read", "search", "search_count", "read")


class OdooFault(LookupError):
    """An Odoo exception: ``args`` = (exception class path, message)."""


def _like(pattern: str, value: Any, *, ci: bool, exact: bool) -> bool:
    if not isinstance(value, str):
        return False
    if exact:  # =like / =ilike: the pattern is used as is (% and _ wildcards)
        rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    else:  # like / ilike: contains
        rx = ".*" + re.escape(pattern) + ".*"
    return re.fullmatch(rx, value, (re.IGNORECASE if ci else 0) | re.DOTALL) is not None


def _ordered(op: str, have: Any, want: Any) -> bool:
    if have is False or have is None or want is False or want is None:
        return False
    try:
        return bool({"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[op])
    except TypeError:
        return False


def compare(op: str, have: Any, want: Any) -> bool:
    """One leaf ``[field, op, want]`` on the record's value ``have`` (a many2one already its id)."""
    if op == "=":
        return bool(have == want) or (want is False and have in (None, False))
    if op == "!=":
        return not compare("=", have, want)
    if op in ("in", "not in"):
        values = list(want) if isinstance(want, list | tuple) else [want]
        inside = have in values or (isinstance(have, list) and any(h in values for h in have))
        return inside if op == "in" else not inside
    if op in ("like", "ilike", "=like", "=ilike", "not like", "not ilike"):
        hit = _like(str(want), have, ci="ilike" in op, exact=op.startswith("="))
        return not hit if op.startswith("not") else hit
    if op in ("<", "<=", ">", ">="):
        return _ordered(op, have, want)
    raise OdooFault("builtins.ValueError", f"Invalid domain operator {op!r}")


@dataclass
class OdooServer:
    """Models (name -> rows as ``search_read`` returns them) and the RPC over them.

    ``errors`` makes ``(model, method)`` fail with ``(exception class path, message)``; ``calls``
    records every ``(model, method, {"args": ..., **kwargs})``.
    """

    models: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    database: str | None = "ltc"  # None: any database name is accepted
    login: str | None = "admin"  # None: any login is accepted
    api_key: str = "odoo-api-key"
    uid: int = 2
    _ids: dict[str, tuple[int, list[dict[str, Any]], dict[Any, dict[str, Any]]]] = field(
        default_factory=dict, repr=False)

    # --- domains --------------------------------------------------------------------------------
    def _row(self, model: str, rid: Any) -> dict[str, Any] | None:
        return self._by_id(model)[1].get(rid)

    def _by_id(self, model: str) -> tuple[list[dict[str, Any]], dict[Any, dict[str, Any]]]:
        """The model's rows sorted by id, and by id: rebuilt when rows were added (ids never change), so a
        relation look-up or an id-keyset page is not a scan of the whole model."""
        rows = self.models.get(model, [])
        cached = self._ids.get(model)
        if cached is None or cached[0] != len(rows):
            ordered = sorted(rows, key=lambda r: r["id"])
            cached = (len(rows), ordered, {r.get("id"): r for r in rows})
            self._ids[model] = cached
        return cached[1], cached[2]

    def _id_page(self, model: str, domain: list[Any], kw: dict[str, Any]) -> list[dict[str, Any]] | None:
        """An ``order="id asc"`` page whose domain (only implicit ``&``) bounds ``id`` from below: a bisection
        on the id-sorted rows, then a scan that stops at ``offset + limit`` matches. None: another shape."""
        if (kw.get("order") or "id asc").strip().lower() not in ("id asc", "id") or not kw.get("limit"):
            return None
        if any(not isinstance(t, list | tuple) for t in domain):
            return None  # "|", "&", "!": the general path
        bounds = [t[2] + 1 if t[1] == ">" else t[2] for t in domain
                  if len(t) == 3 and t[0] == "id" and t[1] in (">", ">=") and type(t[2]) is int]
        if not bounds:
            return None
        low = max(bounds)
        ordered, _ = self._by_id(model)
        start = bisect.bisect_left(ordered, low, key=lambda r: r["id"])
        want = int(kw.get("offset") or 0) + int(kw["limit"])
        out: list[dict[str, Any]] = []
        for r in ordered[start:]:
            if self.evaluate(domain, r):
                out.append(r)
                if len(out) >= want:
                    break
        return out[int(kw.get("offset") or 0):]

    def value(self, rec: dict[str, Any], path: str) -> Any:
        cur: Any = rec
        parts = path.split(".")
        for i, part in enumerate(parts):
            if isinstance(cur, dict):
                nxt = cur.get(part)
            else:
                return None
            last = i == len(parts) - 1
            if not last and isinstance(nxt, list) and len(nxt) == 2 and isinstance(nxt[0], int):
                nxt = self._row(RELATIONS.get(part, ""), nxt[0]) or None  # follow the many2one
            elif not last and isinstance(nxt, int) and not isinstance(nxt, bool) and part in RELATIONS:
                nxt = self._row(RELATIONS[part], nxt)
            cur = nxt
        if isinstance(cur, list) and len(cur) == 2 and isinstance(cur[0], int) and not path.endswith("_ids"):
            return cur[0]  # a many2one [id, "Name"] compares by id
        return cur

    def match(self, rec: dict[str, Any], leaf: list[Any] | tuple[Any, ...]) -> bool:
        if not isinstance(leaf, list | tuple) or len(leaf) != 3:
            raise OdooFault("builtins.ValueError", f"Invalid leaf {leaf!r}")
        name, op, want = leaf
        return compare(str(op), self.value(rec, str(name)), want)

    def evaluate(self, domain: list[Any], rec: dict[str, Any]) -> bool:
        """Odoo's prefix notation with an implicit ``&`` between top-level terms."""
        def term(i: int) -> tuple[bool, int]:
            if i >= len(domain):
                raise OdooFault("builtins.ValueError", f"Invalid domain {domain!r}: an operator lacks operands")
            tok = domain[i]
            if tok == "!":
                v, j = term(i + 1)
                return not v, j
            if tok in ("&", "|"):
                a, j = term(i + 1)
                b, k = term(j)
                return (a and b) if tok == "&" else (a or b), k
            return self.match(rec, tok), i + 1

        i, ok = 0, True
        while i < len(domain):
            v, i = term(i)
            ok = ok and v
        return ok

    # --- methods --------------------------------------------------------------------------------
    def _sorted(self, rows: list[dict[str, Any]], order: str | None) -> list[dict[str, Any]]:
        out = list(rows)
        keys = [part.split() for part in (order or "id asc").split(",") if part.strip()]
        for spec in reversed(keys):
            name, desc = spec[0], len(spec) > 1 and spec[1].lower() == "desc"
            present = [r for r in out if self.value(r, name) not in (None, False)]
            empty = [r for r in out if self.value(r, name) in (None, False)]
            present.sort(key=lambda r, n=name: self.value(r, n), reverse=desc)  # type: ignore[misc]
            out = present + empty
        return out

    @staticmethod
    def _fields(rec: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        return {k: v for k, v in rec.items() if not fields or k in fields or k == "id"}  # id always

    def execute(self, model: str, method: str, args: list[Any], kw: dict[str, Any]) -> Any:
        self.calls.append((model, method, {"args": args, **kw}))
        if (model, method) in self.errors:
            raise OdooFault(*self.errors[(model, method)])
        if method not in _READS:
            return self.write_method(model, method, args, kw)
        rows = self.models.setdefault(model, [])
        if method == "read":
            ids, fields = (args[0] if args else kw.get("ids", [])), kw.get("fields", args[1] if len(args) > 1 else None)
            return [self._fields(r, fields) for r in rows if r["id"] in ids]
        domain = args[0] if args else kw.get("domain", [])
        page = self._id_page(model, domain, kw) if method != "search_count" else None
        if page is not None:
            return [r["id"] for r in page] if method == "search" else [self._fields(r, kw.get("fields")) for r in page]
        found = [r for r in rows if self.evaluate(domain, r)]
        if method == "search_count":
            return len(found)
        found = self._sorted(found, kw.get("order"))[int(kw.get("offset") or 0):]
        if kw.get("limit"):
            found = found[: int(kw["limit"])]
        if method == "search":
            return [r["id"] for r in found]
        return [self._fields(r, kw.get("fields")) for r in found]

    def write_method(self, model: str, method: str, args: list[Any], kw: dict[str, Any]) -> Any:
        """Anything but a read. A replayed world is read-only: Odoo's UserError."""
        raise OdooFault("odoo.exceptions.UserError",
                        f"This sandbox serves a world read-only: {model}.{method} is refused.")

    def login_uid(self, db: Any, login: Any, key: Any) -> int | bool:
        ok = ((self.database is None or db == self.database) and (self.login is None or login == self.login)
              and key == self.api_key)
        return self.uid if ok else False

    # --- transports (parsed request in, (status, body) out) -----------------------------------------
    @staticmethod
    def rpc_error(rid: Any, name: str, message: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": rid, "error": {
            "code": 200, "message": "Odoo Server Error",
            "data": {"name": name, "message": message, "arguments": [message], "context": {},
                     "debug": "Traceback (most recent call last):\n  File odoo/http.py ... (server internals)"}}}

    def handle_jsonrpc(self, msg: dict[str, Any]) -> dict[str, Any]:
        rid = msg.get("id")
        params = msg.get("params") or {}
        service, method, args = params.get("service"), params.get("method"), list(params.get("args") or [])
        if service == "common":
            if method == "version":
                return {"jsonrpc": "2.0", "id": rid, "result": {"server_version": "18.0", "protocol_version": 1}}
            if method in ("login", "authenticate") and len(args) >= 3:
                return {"jsonrpc": "2.0", "id": rid, "result": self.login_uid(args[0], args[1], args[2])}
        if service != "object" or method != "execute_kw" or len(args) < 6:
            return self.rpc_error(rid, "werkzeug.exceptions.BadRequest", f"unsupported call {service}.{method}")
        db, uid, key, model, meth, margs = args[:6]
        kw = args[6] if len(args) > 6 and isinstance(args[6], dict) else {}
        if key != self.api_key or uid != self.uid or (self.database is not None and db != self.database):
            return self.rpc_error(rid, "odoo.exceptions.AccessDenied", "Access Denied")
        try:
            return {"jsonrpc": "2.0", "id": rid, "result": self.execute(str(model), str(meth), list(margs), dict(kw))}
        except OdooFault as exc:
            return self.rpc_error(rid, *exc.args)

    @staticmethod
    def json2_error(name: str, message: str) -> dict[str, Any]:
        return {"name": name, "message": message, "arguments": [message], "context": {}, "debug": "Traceback ..."}

    def handle_json2(self, model: str, method: str, authorization: str | None, database: str | None,
                     body: dict[str, Any]) -> tuple[int, Any]:
        if not (authorization or "").lower().startswith("bearer ") or (authorization or "")[7:] != self.api_key:
            return 401, self.json2_error("werkzeug.exceptions.Unauthorized", "Invalid apikey")
        if database and self.database is not None and database != self.database:
            return 404, self.json2_error("werkzeug.exceptions.NotFound", f"database {database!r} not found")
        body = dict(body)
        args = [body.pop("domain")] if "domain" in body else []
        if "ids" in body:
            args = [body.pop("ids")] + ([body.pop("vals")] if "vals" in body else [])
        if "vals_list" in body:
            args = [body.pop("vals_list")]
        try:
            return 200, self.execute(model, method, args, body)
        except OdooFault as exc:
            status = 403 if exc.args[0].endswith("AccessError") else 422
            return status, self.json2_error(*exc.args)


def create_app(*, world: dict[str, list[dict[str, Any]]] | None = None, database: str = "ltc",
               login: str = "admin", api_key: str = "odoo-api-key", **_ignored: Any) -> Starlette:
    """The ASGI app serving a world; ``app.state.odoo`` is the :class:`OdooServer`."""
    if world is None:
        raise ValueError("the Odoo emulator serves a world only (sandbox.world)")
    unknown = set(world) - set(MODELS)
    if unknown:
        raise KeyError(f"the Odoo emulator has no model(s) {sorted(unknown)}")
    server = OdooServer(models={m: list(world.get(m, [])) for m in MODELS}, database=database, login=login,
                        api_key=api_key)

    def respond(status: int, body: Any) -> Response:
        return Response(dumps_exact(body), status_code=status, media_type="application/json")

    async def read_json(request: Request) -> Any:
        import json
        from decimal import Decimal

        return json.loads(await request.body() or b"{}", parse_float=Decimal)

    async def jsonrpc(request: Request) -> Response:
        try:
            msg = await read_json(request)
        except ValueError:
            return respond(200, server.rpc_error(None, "werkzeug.exceptions.BadRequest", "Invalid JSON data"))
        return respond(200, server.handle_jsonrpc(msg if isinstance(msg, dict) else {}))

    async def json2(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            return respond(400, OdooServer.json2_error("werkzeug.exceptions.BadRequest", "Invalid JSON data"))
        model, method = str(request.path_params["model"]), str(request.path_params["method"])
        if model not in server.models:
            return respond(404, OdooServer.json2_error("werkzeug.exceptions.NotFound", f"unknown model {model}"))
        status, out = server.handle_json2(model, method, request.headers.get("authorization"),
                                          request.headers.get("x-odoo-database"), body if isinstance(body, dict) else {})
        return respond(status, out)

    routes: list[Route] = [Route("/jsonrpc", jsonrpc, methods=["POST"]),
                           Route("/json/2/{model}/{method}", json2, methods=["POST"])]
    app = Starlette(routes=routes)
    app.state.odoo = server
    return app

