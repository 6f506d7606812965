"""A SOQL subset interpreter for the Salesforce emulator.

Covers what the connector (and a careful integration) sends::

    SELECT f1, f2 | COUNT() FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n]

``cond`` has AND / OR / NOT with parentheses, ``= != <> < <= > >=``, ``IN (...)``, ``NOT IN (...)``
and ``LIKE``; literals are quoted strings with backslash escapes, numbers, ``true``/``false``/``null``,
unquoted date (``2026-01-31``) and dateTime (``2026-01-31T10:00:00Z``, ``...+02:00``, fractional
seconds allowed) literals. Salesforce rejects a quoted string compared with a date/dateTime field and
a dateTime literal compared with anything else, and so does this interpreter (``INVALID_FIELD``).

Datetimes are compared in their canonical UTC text form (``2026-01-31T10:00:00.000+0000``), which
sorts like the instants it denotes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

SF_DATETIME = "%Y-%m-%dT%H:%M:%S.{ms}+0000"


class SoqlError(Exception):
    """A query Salesforce would refuse: ``code`` is the vendor errorCode."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def sf_datetime(value: datetime) -> str:
    """The REST output format: ``2013-05-20T20:49:32.000+0000`` (UTC, milliseconds, no colon)."""
    v = value.astimezone(UTC)
    return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}+0000"


@dataclass(frozen=True)
class DateTimeLit:
    text: str  # canonical sf_datetime form


@dataclass(frozen=True)
class DateLit:
    text: str


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*')
    | (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})(?![\d:T])
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\",
            "_": "\\_", "%": "\\%"}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise SoqlError("MALFORMED_QUERY", f"Invalid string literal '{body}'. Illegal backslash")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _datetime_literal(text: str) -> DateTimeLit:
    t = text.replace("Z", "+00:00")
    if len(t) > 5 and t[-5] in "+-" and ":" not in t[-5:]:
        t = f"{t[:-2]}:{t[-2:]}"
    return DateTimeLit(sf_datetime(datetime.fromisoformat(t)))


def tokenize(soql: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    soql = soql.rstrip()
    while pos < len(soql):
        m = _TOKEN.match(soql, pos)
        if m is None or m.end() == pos:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{soql[pos:pos + 20].strip()}'")
        kind = m.lastgroup
        text = m.group(kind or "")
        pos = m.end()
        if kind == "str":
            tokens.append(("lit", _unescape(text[1:-1])))
        elif kind == "dt":
            tokens.append(("lit", _datetime_literal(text)))
        elif kind == "date":
            tokens.append(("lit", DateLit(text)))
        elif kind == "num":
            tokens.append(("lit", Decimal(text)))
        elif kind == "ident":
            low = text.lower()
            if low in ("true", "false"):
                tokens.append(("lit", low == "true"))
            elif low == "null":
                tokens.append(("lit", None))
            else:
                tokens.append(("ident", text))
        else:
            tokens.append((kind or "", text))
    return tokens


# --- AST ---------------------------------------------------------------------------------------

@dataclass
class Cmp:
    field: str
    op: str
    value: Any


@dataclass
class In:
    field: str
    values: list[Any]
    negate: bool = False


@dataclass
class Like:
    field: str
    pattern: str


@dataclass
class BoolOp:
    op: str  # AND | OR
    items: list[Any]


@dataclass
class Not:
    item: Any


@dataclass
class Query:
    obj: str
    fields: list[str]
    count: bool = False
    where: Any = None
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int | None = None


class _Parser:
    def __init__(self, soql: str):
        self.soql = soql
        self.toks = tokenize(soql)
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def kw(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "ident" and tok[1].upper() == word:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.kw(word):
            got = self.peek()
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{got[1] if got else 'EOF'}', expected {word}")

    def expect(self, kind: str, text: str | None = None) -> Any:
        tok = self.peek()
        if tok is None or tok[0] != kind or (text is not None and tok[1] != text):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok[1] if tok else 'EOF'}'")
        self.i += 1
        return tok[1]

    def parse(self) -> Query:
        self.expect_kw("SELECT")
        fields: list[str] = []
        count = False
        tok = self.peek()
        if tok and tok[0] == "ident" and tok[1].upper() == "COUNT" and self.toks[self.i + 1:self.i + 2] == [("punct", "(")]:
            self.i += 1
            self.expect("punct", "(")
            self.expect("punct", ")")
            count = True
        else:
            while True:
                fields.append(self.expect("ident"))
                if self.peek() != ("punct", ","):
                    break
                self.i += 1
        self.expect_kw("FROM")
        q = Query(self.expect("ident"), fields, count)
        if self.kw("WHERE"):
            q.where = self.or_expr()
        if self.kw("ORDER"):
            self.expect_kw("BY")
            while True:
                name = self.expect("ident")
                desc = False
                if self.kw("DESC"):
                    desc = True
                else:
                    self.kw("ASC")
                if self.kw("NULLS") and not (self.kw("FIRST") or self.kw("LAST")):
                    raise SoqlError("MALFORMED_QUERY", "expected FIRST or LAST after NULLS")
                q.order_by.append((name, desc))
                if self.peek() != ("punct", ","):
                    break
                self.i += 1
        if self.kw("LIMIT"):
            value = self.expect("lit")
            if not isinstance(value, Decimal) or value < 0 or value != int(value):
                raise SoqlError("MALFORMED_QUERY", "LIMIT must be a non-negative integer")
            q.limit = int(value)
        if self.peek() is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{self.peek()[1]}'")  # type: ignore[index]
        return q

    def or_expr(self) -> Any:
        items = [self.and_expr()]
        while self.kw("OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("OR", items)

    def and_expr(self) -> Any:
        items = [self.not_expr()]
        while self.kw("AND"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("AND", items)

    def not_expr(self) -> Any:
        if self.kw("NOT"):
            return Not(self.not_expr())
        if self.peek() == ("punct", "("):
            self.i += 1
            inner = self.or_expr()
            self.expect("punct", ")")
            return inner
        name = self.expect("ident")
        if self.kw("NOT"):
            self.expect_kw("IN")
            return In(name, self.lit_list(), negate=True)
        if self.kw("IN"):
            return In(name, self.lit_list())
        if self.kw("LIKE"):
            pattern = self.expect("lit")
            if not isinstance(pattern, str):
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a quoted string")
            return Like(name, pattern)
        op = self.expect("op")
        return Cmp(name, "!=" if op == "<>" else op, self.expect("lit"))

    def lit_list(self) -> list[Any]:
        self.expect("punct", "(")
        values = [self.expect("lit")]
        while self.peek() == ("punct", ","):
            self.i += 1
            values.append(self.expect("lit"))
        self.expect("punct", ")")
        return values


def parse(soql: str) -> Query:
    return _Parser(soql).parse()


# --- evaluation ------------------------------------------------------------------------------------

Predicate = Callable[[dict[str, Any]], bool]
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _coerce(value: Any, ftype: str, fname: str) -> Any:
    """The literal as comparable with the stored value of a field of ``ftype`` (or a SoqlError)."""
    if value is None:
        return None
    if ftype == "datetime":
        if not isinstance(value, DateTimeLit):
            raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{fname}' must be of type "
                                             "dateTime and should not be enclosed in quotes")
        return value.text
    if ftype == "date":
        if not isinstance(value, DateLit):
            raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{fname}' must be of type "
                                             "date and should not be enclosed in quotes")
        return value.text
    if isinstance(value, DateTimeLit | DateLit):
        raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{fname}' must be of type "
                                         f"{ftype} and should be enclosed in quotes")
    if ftype == "boolean" and not isinstance(value, bool):
        raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{fname}' must be of type boolean")
    return value


def compile_where(node: Any, types: dict[str, str], obj: str) -> Predicate:
    """A Python predicate over stored records; unknown fields raise INVALID_FIELD."""

    def ftype(name: str) -> str:
        if name not in types:
            raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{obj}'. If you are attempting "
                                             "to use a custom field, be sure to append the '__c' after the custom "
                                             "field name. Please reference your WSDL or the describe call for the "
                                             "appropriate names.")
        return types[name]

    if node is None:
        return lambda r: True
    if isinstance(node, Cmp):
        t = ftype(node.field)
        value = _coerce(node.value, t, node.field)
        f, op = node.field, _OPS[node.op]
        if value is None:
            if node.op not in ("=", "!="):
                raise SoqlError("MALFORMED_QUERY", "null can only be compared with = or !=")
            return (lambda r: r.get(f) is None) if node.op == "=" else (lambda r: r.get(f) is not None)
        if node.op in ("=", "!="):
            return lambda r: op(r.get(f), value)
        return lambda r: (v := r.get(f)) is not None and op(v, value)
    if isinstance(node, In):
        t = ftype(node.field)
        values = {_coerce(v, t, node.field) for v in node.values}
        f = node.field
        return (lambda r: r.get(f) not in values) if node.negate else (lambda r: r.get(f) in values)
    if isinstance(node, Like):
        ftype(node.field)
        regex = re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in node.pattern),
                           re.IGNORECASE | re.DOTALL)
        f = node.field
        return lambda r: isinstance(r.get(f), str) and regex.fullmatch(r[f]) is not None
    if isinstance(node, Not):
        inner = compile_where(node.item, types, obj)
        return lambda r: not inner(r)
    assert isinstance(node, BoolOp)
    parts = [compile_where(n, types, obj) for n in node.items]
    if node.op == "AND":
        return lambda r: all(p(r) for p in parts)
    return lambda r: any(p(r) for p in parts)


def _bound(node: Any, fname: str, ops: tuple[str, ...], kinds: tuple[type[DateTimeLit | DateLit], ...],
           tighter: Callable[[list[str]], str], looser: Callable[[list[str]], str]) -> str | None:
    """The bound of ``fname`` that comparisons ``ops`` with literals of ``kinds`` give ``node``: an AND takes the
    ``tighter`` of its known bounds, an OR the ``looser`` of its branches' (none if a branch has none)."""
    if isinstance(node, Cmp) and node.field == fname and node.op in ops:
        v = node.value
        return v.text if isinstance(v, kinds) else None
    if isinstance(node, BoolOp):
        bounds = [_bound(n, fname, ops, kinds, tighter, looser) for n in node.items]
        known = [b for b in bounds if b is not None]
        if node.op == "AND":
            return tighter(known) if known else None
        return None if len(known) < len(bounds) else looser(known)
    return None


def lower_bound(node: Any, fname: str) -> str | None:
    """The least value of ``fname`` any matching record can have (for an index seek), or None."""
    return _bound(node, fname, ("=", ">", ">="), (DateTimeLit, DateLit), max, min)


def upper_bound(node: Any, fname: str) -> str | None:
    """The greatest value of ``fname`` any matching record can have (where an index range scan may
    stop), or None. Only datetime literals bound it (a date literal compared with a datetime field
    is left to the predicate)."""
    return _bound(node, fname, ("=", "<", "<="), (DateTimeLit,), min, max)
