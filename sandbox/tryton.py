"""A Tryton JSON-RPC emulator serving a world's records (read-only), for what ltc-hub's client calls.

World-only: it has no generated data of its own (the real trytond peer, :mod:`sandbox.tryton_peer`,
is the one to write to), so it is not in :data:`sandbox.registry.EMULATORS`.

Protocol, as trytond >= 7 answers it (see :mod:`connectors.tryton.rpc`):

* ``POST /rpc/`` ``common.server.version``; ``POST /<db>/rpc/`` for everything else (another
  database: 404; another path: 405);
* ``common.db.login(login, {"password": ...}, lang)`` -> ``[user_id, session, null]`` or HTTP 401;
  then ``Authorization: Session base64(login:user_id:session)`` on every call (401 without it);
  ``common.db.logout``;
* the context dict is the last positional parameter of every model call (HTTP 422 without it);
* ``model.res.user.get_preferences``; ``model.<m>.search_read(domain, offset, limit, order, fields)``,
  ``search(domain, offset, limit, order)``, ``search_count(domain)``, ``read(ids, fields)``, with
  Tryton's domain syntax (``[["f", "op", v], ...]`` = AND, ``["OR", c1, c2]``, nested lists; dotted
  paths followed through the world's many2one ids or the row's dotted-read values ``"f.": {...}``;
  operators ``= != < <= > >= in not in like ilike not like not ilike``), ``order`` ``[[field,
  "ASC"|"DESC"], ...]``, ``context.active_test`` (default: inactive records are left out);
* values travel in Tryton's typed JSON (:mod:`connectors.tryton.codec`); the computed
  ``last_modified_at`` is ``COALESCE(write_date, create_date)`` as in trytond;
* errors are Tryton's: a ``200`` envelope ``{"error": ["UserError", [message, description, null]]}``
  for a refused write (the world is read-only), ``[str(exc), traceback]`` for a server-side failure
  (an unknown field), and HTTP 403 for a model or method not callable over RPC.
"""

from __future__ import annotations

import base64
import bisect
import functools
import operator
import re
import secrets
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.tryton import codec

VERSION = "8.2.0"
CURSOR = "last_modified_at"
MODELS = ("party.party", "sale.sale", "sale.line", "account.invoice", "account.invoice.line", "account.move.line",
          "currency.currency.rate", "stock.shipment.out", "stock.move")
# many2one fields whose target is a world model: a dotted domain path is followed through them
RELATIONS: dict[tuple[str, str], str] = {
    ("sale.sale", "party"): "party.party", ("sale.sale", "invoice_party"): "party.party",
    ("sale.line", "sale"): "sale.sale",
    ("stock.shipment.out", "customer"): "party.party",
    ("account.invoice", "party"): "party.party",
    ("account.invoice.line", "invoice"): "account.invoice",
    ("account.move.line", "party"): "party.party", ("account.move.line", "invoice_payment"): "account.invoice",
}
_READS = ("search_read", "search", "search_count", "read")
_OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in", "like", "ilike", "not like", "not ilike")


class TrytonFault(Exception):
    """An error Tryton sends in the 200 envelope: ``error`` = ``payload``."""

    def __init__(self, payload: list[Any]) -> None:
        super().__init__(str(payload[0]))
        self.payload = payload


class HttpAbort(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _like(pattern: str, value: Any, ci: bool) -> bool:
    if not isinstance(value, str):
        return False
    return _like_regex(pattern, ci).fullmatch(value) is not None


@functools.lru_cache(maxsize=256)
def _like_regex(pattern: str, ci: bool) -> re.Pattern[str]:
    """A ``like`` pattern's regular expression, made once per pattern (a scan tests it on every row)."""
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(rx, re.IGNORECASE | re.DOTALL if ci else re.DOTALL)


def _compare(op: str, have: Any, want: Any) -> bool:
    if op == "=":
        return bool(have == want) if want is not None else have is None
    if op == "!=":
        return bool(have != want) if want is not None else have is not None
    if op in ("in", "not in"):
        values = list(want or [])
        inside = have in values
        return inside if op == "in" else not inside
    if op in ("like", "ilike", "not like", "not ilike"):
        hit = _like(str(want), have, ci="ilike" in op)
        return hit if not op.startswith("not") else not hit
    if have is None or want is None:
        return False
    if isinstance(have, datetime) != isinstance(want, datetime) and isinstance(want, date | datetime):
        return False
    try:
        if op == "<":
            return bool(have < want)
        if op == "<=":
            return bool(have <= want)
        if op == ">":
            return bool(have > want)
        return bool(have >= want)  # ">="
    except TypeError:
        return False


# record list -> its rows decoded: a world's records are decoded once for the check that reads them
# (sandbox.world_readable) and the emulator that serves them. Keyed by the list's identity and
# length (a world's lists are not changed once read); the last few lists only.
_DECODED: dict[int, tuple[list[dict[str, Any]], int, list[dict[str, Any]]]] = {}
_DECODED_KEEP = 12


def forget_decoded(lists: list[list[dict[str, Any]]]) -> None:
    """Let go of the rows decoded for these record lists (their world is not served from this process)."""
    for records in lists:
        hit = _DECODED.get(id(records))
        if hit is not None and hit[0] is records:
            del _DECODED[id(records)]


def _decoded_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    hit = _DECODED.get(id(records))
    if hit is not None and hit[0] is records and hit[1] == len(records):
        return _Rows(hit[2])
    rows = [codec.decode(rec) for rec in records]
    if isinstance(records, list):
        keep_decoded(records, rows)
    else:
        _with_cursor(rows)
    return _Rows(rows)


def _with_cursor(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row[CURSOR] = row.get("write_date") or row.get("create_date")


def keep_decoded(records: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """``rows`` (each of ``records`` through ``codec.decode``, made by the caller: the world's reader
    decodes a record as it checks it) become the rows served for ``records``, given their cursor."""
    _with_cursor(rows)
    while len(_DECODED) >= _DECODED_KEEP:
        _DECODED.pop(next(iter(_DECODED)))
    _DECODED[id(records)] = (records, len(records), rows)


class _Rows(list[dict[str, Any]]):
    """A model's rows, counting the changes made to the list (``version``): the emulator's sorted
    indexes are rebuilt after one."""

    version = 0

    def _changed(self) -> None:
        self.version += 1

    def append(self, item: Any) -> None:
        super().append(item)
        self._changed()

    def extend(self, items: Any) -> None:
        super().extend(items)
        self._changed()

    def insert(self, i: Any, item: Any) -> None:
        super().insert(i, item)
        self._changed()

    def pop(self, i: Any = -1) -> Any:
        self._changed()
        return super().pop(i)

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._changed()

    def reverse(self) -> None:
        super().reverse()
        self._changed()

    def __setitem__(self, i: Any, item: Any) -> None:
        super().__setitem__(i, item)
        self._changed()

    def __delitem__(self, i: Any) -> None:
        super().__delitem__(i)
        self._changed()

    def __iadd__(self, items: Any) -> Any:  # type: ignore[misc]
        self._changed()
        return super().__iadd__(items)


_ORDER: dict[str, Callable[[Any, Any], Any]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                ">=": operator.ge}


def _raiser(fault: Exception) -> Callable[[dict[str, Any]], bool]:
    def fail(_row: dict[str, Any]) -> bool:
        raise fault
    return fail


class TrytonWorld:
    """The records (decoded) and the RPC methods over them."""

    def __init__(self, world: dict[str, list[dict[str, Any]]], *, database: str = "ltc", login: str = "admin",
                 password: str = "admin") -> None:
        self.database, self.login, self.password = database, login, password
        self.rows: dict[str, list[dict[str, Any]]] = {m: _Rows() for m in MODELS}
        self.by_id: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in MODELS}
        for model, records in world.items():
            if model not in self.rows:
                raise KeyError(f"the Tryton emulator has no model {model}")
            self.rows[model] = _decoded_rows(records)
            self.by_id[model] = {int(row["id"]): row for row in self.rows[model]}
        self.sessions: set[str] = set()
        self.calls: list[str] = []  # every method called (tests assert on it)
        self._indexes: dict[tuple[str, str], tuple[Any, list[dict[str, Any]], list[tuple[Any, int]]]] = {}
        self.user_id = 1

    # --- domain ---------------------------------------------------------------------------------
    def value(self, model: str, row: dict[str, Any], path: str) -> Any:
        head, _, rest = path.partition(".")
        if not rest:
            if head not in row and head != "id":
                raise TrytonFault([f"KeyError: '{head}'", f"Traceback: {model} has no field {head!r} in this world"])
            return row.get(head)
        nested = row.get(head + ".")
        if isinstance(nested, dict):
            return self._nested(nested, rest)
        target = RELATIONS.get((model, head))
        rid = row.get(head)
        if target is not None and isinstance(rid, int):
            linked = self.by_id[target].get(rid)
            return None if linked is None else self.value(target, linked, rest)
        return None

    def _nested(self, data: dict[str, Any], path: str) -> Any:
        head, _, rest = path.partition(".")
        if not rest:
            return data.get(head)
        nested = data.get(head + ".")
        return self._nested(nested, rest) if isinstance(nested, dict) else None

    def matches(self, model: str, row: dict[str, Any], domain: Any) -> bool:
        if not isinstance(domain, list):
            raise TrytonFault([f"ValueError: invalid domain {domain!r}", "Traceback"])
        if not domain:
            return True
        if self._is_leaf(domain):
            return self._leaf(model, row, domain)
        if isinstance(domain[0], str) and domain[0] in ("OR", "AND"):
            parts = domain[1:]
            results = (self.matches(model, row, self._clause(p)) for p in parts)
            return any(results) if domain[0] == "OR" else all(results)
        return all(self.matches(model, row, self._clause(p)) for p in domain)

    @staticmethod
    def _is_leaf(clause: list[Any]) -> bool:
        return (len(clause) in (3, 4) and isinstance(clause[0], str) and clause[0] not in ("OR", "AND")
                and isinstance(clause[1], str) and clause[1] in _OPS)

    @staticmethod
    def _clause(part: Any) -> list[Any]:
        if not isinstance(part, list):
            raise TrytonFault([f"ValueError: invalid domain clause {part!r}", "Traceback"])
        return part

    def _leaf(self, model: str, row: dict[str, Any], leaf: list[Any]) -> bool:
        name, op, want = leaf[0], leaf[1], leaf[2]
        return _compare(op, self.value(model, row, name), want)

    def predicate(self, model: str, domain: Any) -> Callable[[dict[str, Any]], bool]:
        """``domain`` turned once into a function of a row, equal to :meth:`matches` row by row
        (the same answer, the same fault raised at the same row): a scan then interprets the
        domain's structure once instead of once per row."""
        if not isinstance(domain, list):
            return _raiser(TrytonFault([f"ValueError: invalid domain {domain!r}", "Traceback"]))
        if not domain:
            return lambda _row: True
        if self._is_leaf(domain):
            return self._leaf_predicate(model, domain)
        if isinstance(domain[0], str) and domain[0] in ("OR", "AND"):
            parts = [self._part_predicate(model, p) for p in domain[1:]]
            if domain[0] == "OR":
                return lambda row: any(f(row) for f in parts)
        else:
            parts = [self._part_predicate(model, p) for p in domain]
        if len(parts) == 1:
            return parts[0]
        return lambda row: all(f(row) for f in parts)

    def _part_predicate(self, model: str, part: Any) -> Callable[[dict[str, Any]], bool]:
        if not isinstance(part, list):
            return _raiser(TrytonFault([f"ValueError: invalid domain clause {part!r}", "Traceback"]))
        return self.predicate(model, part)

    def _leaf_predicate(self, model: str, leaf: list[Any]) -> Callable[[dict[str, Any]], bool]:
        name, op, want = leaf[0], leaf[1], leaf[2]
        if "." in name:
            return lambda row: _compare(op, self.value(model, row, name), want)
        fault = TrytonFault([f"KeyError: '{name}'", f"Traceback: {model} has no field {name!r} in this world"])

        def have(row: dict[str, Any]) -> Any:
            if name in row:
                return row[name]
            if name == "id":
                return None
            raise fault

        if op == "=" and want is not None:
            return lambda row: bool(have(row) == want)
        if op == "=":
            return lambda row: have(row) is None
        if op in ("in", "not in"):
            values = list(want or [])
            if op == "in":
                return lambda row: have(row) in values
            return lambda row: have(row) not in values
        order = _ORDER.get(op)
        if order is None:
            return lambda row: _compare(op, have(row), want)
        if want is None:
            return lambda row: have(row) is not None and False
        want_instant, want_day = isinstance(want, datetime), isinstance(want, date | datetime)

        def ordered(row: dict[str, Any]) -> bool:  # _compare for < <= > >=, its checks hoisted
            value = have(row)
            if value is None or (want_day and isinstance(value, datetime) != want_instant):
                return False
            try:
                return bool(order(value, want))
            except TypeError:
                return False

        return ordered

    # --- methods ------------------------------------------------------------------------------
    def _found(self, model: str, domain: Any, context: dict[str, Any], order: Any = None,
               limit: int | None = None) -> list[dict[str, Any]]:
        """The rows matching ``domain`` in ``order`` (the first ``limit`` of them when given).

        A page of a ``(field, id)`` keyset (order ``field ASC, id ASC``, the field bounded below in the
        domain) is served from an index sorted on ``(field, id)``: a bisection to the bound, then a scan
        that stops after ``limit`` matches, instead of filtering and sorting the whole model per call (which
        made a replay quadratic in its size). Every row returned still passes the whole domain."""
        active_test = context.get("active_test", True)

        match = self.predicate(model, domain)

        def ok(r: dict[str, Any]) -> bool:
            return (not active_test or r.get("active") is not False) and match(r)

        keys = [list(o) for o in order] if order else [["id", "ASC"]]
        fast = self._keyset_start(model, domain, keys) if limit is not None else None
        if fast is not None:
            index, start = fast
            out: list[dict[str, Any]] = []
            for i in range(start, len(index)):  # indexed: neither a copy of the tail nor islice's steps to start
                r = index[i]
                if ok(r):
                    out.append(r)
                    if len(out) >= limit:  # type: ignore[operator]
                        break
            return out
        if keys == [["id", "ASC"]]:  # every row has its id: the id index is the order (a count needs none)
            return [r for r in self._index(model, "id")[0] if ok(r)]
        rows = [r for r in self.rows[model] if ok(r)]
        for name, direction in reversed(keys):
            desc = str(direction).upper().startswith("DESC")
            present = [r for r in rows if self.value(model, r, name) is not None]
            missing = [r for r in rows if self.value(model, r, name) is None]
            present.sort(key=lambda r, n=name: self.value(model, r, n), reverse=desc)  # type: ignore[misc]
            rows = present + missing if not desc else missing + present
        return rows

    def _index(self, model: str, field: str) -> tuple[list[dict[str, Any]], list[tuple[Any, int]]]:
        """Rows sorted on ``(field, id)`` ascending, rows without the field last (as ``_found`` sorts),
        and their keys; built once per model and field, again when the model's rows were added or
        removed since (tests change a world's rows in place: :class:`_Rows` counts the changes)."""
        rows = self.rows[model]
        stamp = (id(rows), rows.version) if isinstance(rows, _Rows) else None
        cached = self._indexes.get((model, field))
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1], cached[2]
        present = sorted((r for r in rows if r.get(field) is not None), key=lambda r: (r[field], r["id"]))
        missing = sorted((r for r in rows if r.get(field) is None), key=lambda r: r["id"])
        index, keys = present + missing, [(r[field], r["id"]) for r in present]
        self._indexes[(model, field)] = (stamp, index, keys)
        return index, keys

    def _keyset_start(self, model: str, domain: Any, keys: list[list[Any]]) -> tuple[list[dict[str, Any]], int] | None:
        """(index, position of the first row that can match) for an ``[[f, ASC], [id, ASC]]`` order whose
        domain bounds ``f`` from below at its top level (or an ``[[id, ASC]]`` order whose domain bounds
        ``id`` from below: an id listing); None when the query is not of that shape."""
        if keys == [["id", "ASC"]] and isinstance(domain, list):
            return self._id_start(model, domain)
        if len(keys) != 2 or keys[1] != ["id", "ASC"] or str(keys[0][1]).upper() != "ASC" or "." in str(keys[0][0]):
            return None
        field = str(keys[0][0])
        if field not in (CURSOR, "write_date", "create_date") or not isinstance(domain, list):
            return None
        bound: tuple[Any, ...] | None = None
        for part in domain if domain and not self._is_leaf(domain) and domain[0] not in ("OR", "AND") else []:
            if not isinstance(part, list):
                return None
            lower: tuple[Any, ...] | None = None
            if self._is_leaf(part) and part[0] == field and part[1] in (">=", ">") and part[2] is not None:
                lower = (part[2], float("-inf")) if part[1] == ">=" else (part[2], float("inf"))
            elif (len(part) == 3 and part[0] == "OR" and isinstance(part[1], list) and self._is_leaf(part[1])
                  and part[1][0] == field and part[1][1] == ">" and isinstance(part[2], list) and len(part[2]) == 2
                  and part[2][0] == [field, "=", part[1][2]] and self._is_leaf(part[2][1])
                  and part[2][1][:2] == ["id", ">"] and isinstance(part[2][1][2], int)):
                lower = (part[1][2], part[2][1][2] + 1)  # (ts > t) or (ts = t and id > i)
            if lower is not None and (bound is None or lower > bound):
                bound = lower
        if bound is None:
            return None
        index, keys_ = self._index(model, field)
        try:
            return index, bisect.bisect_left(keys_, bound)
        except TypeError:  # a bound of another type than the stored values: the general path decides
            return None

    def _id_start(self, model: str, domain: list[Any]) -> tuple[list[dict[str, Any]], int] | None:
        bound: tuple[Any, ...] | None = None
        for part in domain if domain and not self._is_leaf(domain) and domain[0] not in ("OR", "AND") else []:
            if not isinstance(part, list):
                return None
            if self._is_leaf(part) and part[0] == "id" and part[1] in (">", ">=") and type(part[2]) is int:
                lower = (part[2], float("inf") if part[1] == ">" else float("-inf"))
                if bound is None or lower > bound:
                    bound = lower
        if bound is None:
            return None
        index, keys_ = self._index(model, "id")
        return index, bisect.bisect_left(keys_, bound)

    @staticmethod
    def _render(row: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        if not fields:
            return {k: v for k, v in row.items() if not k.endswith(".")}
        out: dict[str, Any] = {"id": row["id"]}
        for f in fields:
            if "." in f:
                head = f.split(".", 1)[0] + "."
                out[head] = row.get(head)
            else:
                out[f] = row.get(f)
        return out

    @staticmethod
    def _renderer(fields: list[str] | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """:meth:`_render` for a page of rows, the fields' keys worked out once."""
        if not fields or not isinstance(fields, list) or not all(type(f) is str for f in fields):
            return lambda row: TrytonWorld._render(row, fields)  # what it answers a malformed request, per row
        keys = [f.split(".", 1)[0] + "." if "." in f else f for f in fields]  # a dotted read: the related record

        def render(row: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {"id": row["id"]}
            out.update(zip(keys, map(row.get, keys), strict=True))
            return out

        return render

    def call(self, method: str, params: list[Any]) -> Any:
        self.calls.append(method)
        if not params or not isinstance(params[-1], dict):
            raise HttpAbort(422)  # "Missing context argument"
        context, args = params[-1], params[:-1]
        if method == "model.res.user.get_preferences":
            return {"id": self.user_id, "login": self.login, "name": "Administrator", "language": "en",
                    "company": 1, "companies": [1], "company_filter": "one", "groups": [1]}
        parts = method.split(".")
        if parts[0] != "model" or len(parts) < 3:
            raise HttpAbort(403)
        model, name = ".".join(parts[1:-1]), parts[-1]
        if model not in self.rows:
            raise HttpAbort(403)
        if name not in _READS:
            raise TrytonFault(["UserError", [f"This sandbox serves a world read-only: {model}.{name} is refused.",
                                             "Replay worlds with `ltc sandbox start --world`; write to a real "
                                             "Tryton (sandbox.tryton_peer) instead.", None]])

        def arg(i: int, default: Any = None) -> Any:
            return args[i] if len(args) > i else default

        if name == "read":
            ids, fields = list(arg(0) or []), arg(1)
            missing = [i for i in ids if i not in self.by_id[model]]
            if missing:
                raise TrytonFault(["UserError", [f'The record "{missing[0]}" of "{model}" does not exist '
                                                 "(it may have been deleted).", "", None]])
            render = self._renderer(fields)
            return [render(self.by_id[model][i]) for i in ids]
        domain = arg(0, [])
        if name == "search_count":
            return len(self._found(model, domain, context))
        offset, limit, order = int(arg(1) or 0), arg(2), arg(3)
        found = self._found(model, domain, context, order, None if limit is None else offset + int(limit))[offset:]
        if limit is not None:
            found = found[: int(limit)]
        if name == "search":
            return [r["id"] for r in found]
        render = self._renderer(arg(4))
        return [render(r) for r in found]


def create_app(*, world: dict[str, list[dict[str, Any]]] | None = None, database: str = "ltc",
               login: str = "admin", password: str = "admin", **_ignored: Any) -> Starlette:
    """The ASGI app; ``app.state.tryton`` is the :class:`TrytonWorld`. A world is required."""
    if world is None:
        raise ValueError("the Tryton emulator serves a world only (sandbox.world); for a writable Tryton "
                         "use sandbox.tryton_peer")
    data = TrytonWorld(world, database=database, login=login, password=password)

    def reply(rid: Any, result: Any = None, error: Any = None) -> Response:
        return Response(codec.dumps({"id": rid, "result": result, "error": error}), media_type="application/json")

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Session "):
            return False
        try:
            login_, uid, session = base64.b64decode(header[8:]).decode().split(":", 2)
        except (ValueError, UnicodeDecodeError):
            return False
        return login_ == data.login and uid == str(data.user_id) and session in data.sessions

    async def handle(request: Request, db: str | None) -> Response:
        try:
            body = codec.loads(await request.body())
        except ValueError:
            return Response(status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("params"), list):
            return Response(status_code=400)
        rid, method, params = body.get("id"), str(body.get("method", "")), body["params"]
        if db is None:
            if method == "common.server.version":
                return reply(rid, VERSION)
            return Response(status_code=403)
        if db != data.database:
            return Response(status_code=404)
        if method == "common.db.login":
            login_ = params[0] if params else None
            creds = params[1] if len(params) > 1 else None
            if login_ != data.login or not isinstance(creds, dict) or creds.get("password") != data.password:
                return Response(status_code=401)
            session = secrets.token_hex(16)
            data.sessions.add(session)
            return reply(rid, [data.user_id, session, None])
        if not authorized(request):
            return Response(status_code=401)
        if method == "common.db.logout":
            header = base64.b64decode(request.headers["authorization"][8:]).decode()
            data.sessions.discard(header.split(":", 2)[2])
            return reply(rid, None)
        try:
            return reply(rid, data.call(method, params))
        except TrytonFault as fault:
            return reply(rid, error=fault.payload)
        except HttpAbort as abort:
            return Response(status_code=abort.status)

    def route(db: bool) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await handle(request, str(request.path_params["db"]) if db else None)
        return endpoint

    app = Starlette(routes=[Route("/rpc/", route(False), methods=["POST"]),
                            Route("/{db}/rpc/", route(True), methods=["POST"])])
    app.state.tryton = data
    return app
