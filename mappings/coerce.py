"""Coercions: named, pure functions that turn one vendor value into one canonical value.

A mapping names a coercion per field (``coerce: instant``); when it names none, the canonical
field's type picks one (``date`` for a date, ``money`` for Money...). Each coercion is built once
per field by a *factory* that receives the field's options (timezone, entity, convention...) and
returns a fast ``value -> value`` function. A coercion raises :class:`CoercionError` with a reason
the quarantine can show; ``None`` in gives ``None`` out.

Vendor quirks handled here, once:

* Odoo sends ``false`` for every empty field and ``[id, "name"]`` for a many2one.
* Tryton's JSON-RPC tags non-JSON types: ``{"__class__": "Decimal", "decimal": "1.50"}``,
  ``{"__class__": "date", "year": .., "month": .., "day": ..}``, ``{"__class__": "datetime", ...}``
  (naive, server UTC).
* Salesforce instants are ``2013-05-20T20:49:32.000+0000``; HubSpot ``...Z``; Stripe epoch seconds;
  HubSpot date-only properties sometimes arrive as epoch milliseconds in a string.
* A JSON number read back from the store is an int or (orjson) a float. A float's shortest repr is
  the decimal text the vendor sent (up to 15 significant digits), so ``Decimal(repr(x))`` recovers
  it exactly; amounts are otherwise ``Decimal`` or strings.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from canonical.model import canonical_id
from canonical.money import Convention, minor_units, normalize_currency

Coerce = Callable[[Any], Any]


class CoercionError(ValueError):
    """A value that a coercion cannot turn into the canonical type."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def empty(value: Any) -> bool:
    """Odoo's ``false``, ``None``, blank strings and empty containers all mean "no value"."""
    if value is None or value is False:
        return True
    t = type(value)
    if t is str or t is list or t is dict:
        return not value
    if t is int or t is Decimal or t is float or t is bool:
        return False
    return value == "" or value == [] or value == {}


def decode_tagged(value: Any) -> Any:
    """Decode a Tryton ``__class__``-tagged value to the Python value it stands for."""
    cls = value.get("__class__")
    if cls == "Decimal":
        return Decimal(str(value["decimal"]))
    if cls == "date":
        return date(value["year"], value["month"], value["day"])
    if cls == "datetime":
        return datetime(
            value["year"], value["month"], value["day"], value.get("hour", 0), value.get("minute", 0),
            value.get("second", 0), value.get("microsecond", 0),
        )
    raise CoercionError(f"unsupported tagged value {cls!r}")


_GROUPING = " '\u00a0\u202f"  # spaces and apostrophes group digits in many locales
_US_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+\.\d+$")  # 1,234.56: a comma can only be grouping
_US_GROUPS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3}){2,}$")  # 1,234,567: two commas cannot both be decimal
_DOT_LOCALE = re.compile(r"^[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d+)?$")
_COMMA_LOCALE = re.compile(r"^[+-]?(?:\d+|\d{1,3}(?:\.\d{3})+)(?:,\d+)?$")


def parse_amount_text(value: str, separator: str | None = None) -> Decimal:
    """An amount sent as text, never silently scaled.

    Without a configured ``separator`` (the source's ``decimal_separator``) a comma is accepted only
    where it cannot be a decimal comma (``1,234.56``, ``1,234,567``); ``12,50`` or ``1,250`` could be
    either, so they are refused with the reason instead of being read 100 or 1000 times too large.
    With ``","`` the text reads ``1.234,56``; with ``"."`` it reads ``1,234.56``.
    """
    text = value.strip()
    for ch in _GROUPING:
        text = text.replace(ch, "")
    text = text.replace("_", "")
    if separator == ",":
        if not _COMMA_LOCALE.match(text):
            raise CoercionError(f"amount text {value!r} does not read with decimal_separator ','")
        text = text.replace(".", "").replace(",", ".")
    elif "," in text:
        if (separator == "." and _DOT_LOCALE.match(text)) or _US_GROUPED.match(text) or _US_GROUPS.match(text):
            text = text.replace(",", "")
        elif separator == ".":
            raise CoercionError(f"amount text {value!r} does not read with decimal_separator '.'")
        else:
            raise CoercionError(
                f"ambiguous amount text {value!r}: a comma may be a decimal or a thousands separator; "
                "set decimal_separator (',' or '.') on this source in ltc.yaml"
            )
    try:
        out = Decimal(text)
    except InvalidOperation:
        raise CoercionError(f"not a number: {value!r}") from None
    if not out.is_finite():
        raise CoercionError(f"not a finite number: {value!r}")
    return out


def to_decimal(value: Any, separator: str | None = None) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CoercionError(f"not a finite number: {value}")
        return value
    if isinstance(value, bool):
        raise CoercionError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        return parse_amount_text(value, separator)
    if isinstance(value, dict) and "__class__" in value:
        text = value.get("decimal")
        if type(text) is str and value.get("__class__") == "Decimal":
            try:  # Tryton's exact text, read once
                return to_decimal(Decimal(text))
            except InvalidOperation:
                pass
        return to_decimal(decode_tagged(value))
    raise CoercionError(f"expected a number, got {type(value).__name__} {value!r}")


def _zone(options: Mapping[str, Any]) -> tzinfo:
    name = options.get("timezone") or "UTC"
    return UTC if name == "UTC" else ZoneInfo(name)


def _parse_instant(value: Any, zone: tzinfo) -> datetime:
    """An aware UTC datetime from an ISO string, epoch number or datetime; naive means ``zone``."""
    if isinstance(value, datetime):
        dt = value
    elif type(value) is int and -100_000_000_000 < value < 100_000_000_000:
        return _EPOCH + timedelta(seconds=value)  # epoch seconds (Stripe)
    elif isinstance(value, bool):
        raise CoercionError(f"expected an instant, got {value!r}")
    elif isinstance(value, int | float | Decimal):
        seconds = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if abs(seconds) >= 100_000_000_000:  # epoch milliseconds (HubSpot)
            seconds /= 1000
        whole = int(seconds)
        micros = int((seconds - whole) * 1_000_000)
        return _EPOCH + timedelta(seconds=whole, microseconds=micros)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _parse_instant(int(text), zone)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise CoercionError(f"not an ISO 8601 instant: {value!r}") from None
    elif isinstance(value, dict) and "__class__" in value:
        decoded = decode_tagged(value)
        if not isinstance(decoded, datetime):
            raise CoercionError(f"expected a datetime, got {value!r}")
        dt = decoded
    else:
        raise CoercionError(f"expected an instant, got {type(value).__name__} {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return dt.astimezone(UTC)


# --- factories: options -> value function -------------------------------------------------------

MAX_TEXT = 400  # the canonical text columns (String(400)): longer is not a value, it is a corrupt one


def _fits(text: str, what: str) -> str:
    if len(text) > MAX_TEXT:
        raise CoercionError(f"{what} longer than {MAX_TEXT} characters ({len(text)})")
    return text


def _str(options: Mapping[str, Any]) -> Coerce:
    limit = int(options.get("max_length", 400))

    def fn(value: Any) -> str | None:
        t = type(value)
        if t is str:
            return value.strip()[:limit] or None
        if value is None:
            return None
        if t is int:
            return str(value)[:limit]
        if t is list and len(value) == 2 and type(value[1]) is str:
            return value[1].strip()[:limit] or None  # an Odoo many2one read as [id, "Display Name"]
        if empty(value):
            return None
        if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str):
            value = value[1]  # an Odoo many2one read as [id, "Display Name"]
        if isinstance(value, dict | list):
            raise CoercionError(f"expected text, got {type(value).__name__}")
        text = str(value).strip()
        return text[:limit] or None

    return fn


def _lower(options: Mapping[str, Any]) -> Coerce:
    base = _str(options)

    def fn(value: Any) -> str | None:
        text = base(value)
        return text.lower() if text else None

    return fn


def _text_lines(options: Mapping[str, Any]) -> Coerce:
    """Free text that may come as a list of lines (camt.053 ``Ustrd``): joined with a space."""
    sep = str(options.get("separator", " "))

    def fn(value: Any) -> str | None:
        if empty(value):
            return None
        if isinstance(value, list):
            value = sep.join(str(v).strip() for v in value if not empty(v))
        text = str(value).strip()
        return text[:400] or None

    return fn


def _decimal(options: Mapping[str, Any]) -> Coerce:
    sep = options.get("decimal_separator")
    plain = sep != ","  # with a decimal comma, "1.250" is 1250: every text goes the long way

    def fn(value: Any) -> Decimal | None:
        if type(value) is str and value:
            if not plain:
                return parse_amount_text(value, sep)
            try:
                out = Decimal(value)
            except InvalidOperation:
                return to_decimal(value, sep)
            if out.is_finite():
                return out
            raise CoercionError(f"not a finite number: {value!r}")
        if value is None:
            return None
        t = type(value)
        if t is int:
            return Decimal(value)
        if t is Decimal and value.is_finite():
            return value
        if t is float:
            return Decimal(repr(value))
        if t is dict and value.get("__class__") == "Decimal" and type(value.get("decimal")) is str:
            try:  # Tryton's exact text
                out = Decimal(value["decimal"])
            except InvalidOperation:
                return to_decimal(value)
            if out.is_finite():
                return out
        return None if empty(value) else to_decimal(value, sep)

    return fn


def _integer(options: Mapping[str, Any]) -> Coerce:
    def fn(value: Any) -> int | None:
        if empty(value):
            return None
        dec = to_decimal(value)
        if dec != dec.to_integral_value():
            raise CoercionError(f"expected an integer, got {value!r}")
        return int(dec)

    return fn


def _bool(options: Mapping[str, Any]) -> Coerce:
    def fn(value: Any) -> bool | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "y", "t"):
            return True
        if text in ("false", "0", "no", "n", "f"):
            return False
        raise CoercionError(f"expected a boolean, got {value!r}")

    return fn


DATE_CACHE_SIZE = 4096  # distinct texts a date coercion keeps (about eleven years of days); then it starts over


def _date(options: Mapping[str, Any]) -> Coerce:
    """A calendar date. An instant becomes the date it is in the mapping's timezone.

    The dates of a text value are kept (``fn.cache``, text -> date: a batch repeats few distinct days,
    and the mapping's generated code looks them up in line); a text that fails is never kept."""
    zone = _zone(options)
    cache: dict[str, date] = {}

    def fn(value: Any) -> date | None:
        if type(value) is str:
            known = cache.get(value)
            if known is None:
                known = parse(value)
                if known is not None:
                    if len(cache) >= DATE_CACHE_SIZE:
                        cache.clear()
                    cache[value] = known
            return known
        return parse(value)

    def parse(value: Any) -> date | None:
        if value is None:
            return None
        t = type(value)
        if t is str and len(value) == 10 and value[4] == "-":
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise CoercionError(f"not a date: {value!r}") from None
        if t is dict and value.get("__class__") == "date":
            try:
                return date(value["year"], value["month"], value["day"])
            except (KeyError, TypeError, ValueError):
                pass  # the long way below gives the reason
        if t is int and value is not False and -100_000_000_000 < value < 100_000_000_000 and zone is UTC:
            return (_EPOCH + timedelta(seconds=value)).date()  # epoch seconds (Stripe)
        if empty(value):
            return None
        if isinstance(value, datetime):
            return _parse_instant(value, zone).astimezone(zone).date()
        if isinstance(value, date):
            return value
        if isinstance(value, str) and len(value) == 10 and value[4] == "-":
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise CoercionError(f"not a date: {value!r}") from None
        if isinstance(value, dict) and value.get("__class__") == "date":
            decoded = decode_tagged(value)
            assert isinstance(decoded, date)
            return decoded
        return _parse_instant(value, zone).astimezone(zone).date()

    fn.cache = cache  # type: ignore[attr-defined]
    return fn


def _instant(options: Mapping[str, Any]) -> Coerce:
    zone = _zone(options)

    def fn(value: Any) -> datetime | None:
        if value is None:
            return None
        if type(value) is str and len(value) > 10 and not value.isdigit():
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                raise CoercionError(f"not an ISO 8601 instant: {value!r}") from None
            if dt.tzinfo is None:
                if zone is UTC:
                    # the text read again with its zone: a fifth of the cost of ``replace(tzinfo=...)`` (its
                    # keyword parsing; callgrind, 12.0k -> 4.1k instructions a naive instant)
                    try:
                        return datetime.fromisoformat(value + "+00:00")
                    except ValueError:
                        return dt.replace(tzinfo=UTC)
                dt = dt.replace(tzinfo=zone)
            return dt.astimezone(UTC)
        t = type(value)
        if t is int and -100_000_000_000 < value < 100_000_000_000:
            return _EPOCH + timedelta(seconds=value)  # epoch seconds (Stripe)
        if t is dict and value.get("__class__") == "datetime":
            try:  # Tryton's naive server time
                dt = datetime(value["year"], value["month"], value["day"], value.get("hour", 0),
                              value.get("minute", 0), value.get("second", 0), value.get("microsecond", 0),
                              tzinfo=zone)
            except (KeyError, TypeError, ValueError):
                return _parse_instant(value, zone)  # gives the reason
            return dt.astimezone(UTC)
        return None if empty(value) else _parse_instant(value, zone)

    return fn


CURRENCY_CACHE: dict[str, str] = {}


def _currency(options: Mapping[str, Any]) -> Coerce:
    def fn(value: Any) -> str | None:
        if type(value) is str:
            known = CURRENCY_CACHE.get(value)
            if known is not None:
                return known
        if empty(value):
            return None
        if isinstance(value, list) and len(value) == 2:
            value = value[1]  # Odoo currency_id: [id, "EUR"]
        if isinstance(value, dict):
            value = value.get("code") or value.get("name")
        try:
            code = normalize_currency(str(value))
        except ValueError as exc:
            raise CoercionError(str(exc)) from None
        if isinstance(value, str):
            CURRENCY_CACHE[value] = code
        return code

    return fn


def _money(options: Mapping[str, Any]) -> Coerce:
    """An amount in major units (``"1500.50"``); the currency is applied by the engine."""
    return _decimal(options)


def _money_minor(options: Mapping[str, Any]) -> Coerce:
    """Integer minor units (Stripe). Returns the raw int; the engine scales it with the currency."""

    def fn(value: Any) -> int | None:
        if type(value) is int:
            return value
        if empty(value) and value != 0:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                return int(value)
            raise CoercionError(f"minor units must be an integer, got {value!r}")
        return value

    return fn


EXPONENTS: dict[tuple[str, str], int] = {}


def scale_minor(units: int, currency: str, convention: Convention) -> Decimal:
    exp = EXPONENTS.get((currency, convention))
    if exp is None:
        exp = EXPONENTS[(currency, convention)] = minor_units(currency, convention)
    return Decimal(units).scaleb(-exp)


def _ref(options: Mapping[str, Any]) -> Coerce:
    """A foreign key: the deterministic canonical id of the referenced source record.

    The mapping is compiled once per connector instance, so the system name is known here.
    """
    prefix = canonical_id(str(options["system"]), str(options["entity"]), "")
    room = MAX_TEXT - len(prefix)

    def fn(value: Any) -> str | None:
        t = type(value)
        if t is str and value and len(value) <= room:
            return prefix + value
        if t is list and value and type(value[0]) is int:  # Odoo many2one [id, "name"]
            return prefix + str(value[0])
        if t is int:
            return prefix + str(value)
        if empty(value):
            return None
        if isinstance(value, list):  # Odoo many2one [id, "name"]
            value = value[0]
        if isinstance(value, dict):  # an expanded object (Stripe) or Tryton dotted read
            value = value.get("id")
            if value is None:
                return None
        if isinstance(value, dict | list):
            raise CoercionError(f"expected a reference id, got {type(value).__name__}")
        return _fits(prefix + str(value), "reference")

    return fn


def _source_id(options: Mapping[str, Any]) -> Coerce:
    """The id part of a reference, as text (a many2one's id, an expanded object's id)."""

    def fn(value: Any) -> str | None:
        if empty(value):
            return None
        if isinstance(value, list):
            value = value[0]
        if isinstance(value, dict):
            value = value.get("id")
        return None if value is None else _fits(str(value), "id")

    return fn


_DOMAIN_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/]*@)?(?:www\d?\.)?([^/:?#\s]+)", re.IGNORECASE)


def normalize_domain(value: str) -> str | None:
    """``https://www.Acme.com/about`` -> ``acme.com``; an e-mail gives its domain."""
    text = value.strip().lower()
    if not text:
        return None
    if "@" in text and "://" not in text:
        text = text.rsplit("@", 1)[1]
    m = _DOMAIN_RE.match(text)
    host = m.group(1).strip(".") if m else ""
    return host if "." in host else None


def _domain(options: Mapping[str, Any]) -> Coerce:
    def fn(value: Any) -> str | None:
        return None if empty(value) else normalize_domain(_fits(str(value), "domain"))

    return fn


def _email(options: Mapping[str, Any]) -> Coerce:
    def fn(value: Any) -> str | None:
        if empty(value):
            return None
        text = _fits(str(value).strip().lower(), "e-mail address")
        if "@" not in text:
            raise CoercionError(f"not an e-mail address: {value!r}")
        return text

    return fn


def normalize_tax_id(value: str) -> str | None:
    """Upper-case, without spaces, dots, dashes or slashes (``DE 123.456.789`` -> ``DE123456789``)."""
    text = unicodedata.normalize("NFKC", value).upper()
    text = re.sub(r"[\s.\-/_]", "", text)
    return text or None


def _tax_id(options: Mapping[str, Any]) -> Coerce:
    def fn(value: Any) -> str | None:
        if empty(value):
            return None
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = value[0].get("code") or value[0].get("value")
        if isinstance(value, dict):
            value = value.get("code") or value.get("value")
        return None if empty(value) else normalize_tax_id(_fits(str(value), "tax id"))

    return fn


COUNTRY_NAMES: dict[str, str] = {
    "united states": "US", "united states of america": "US", "usa": "US", "u.s.a.": "US", "u.s.": "US",
    "america": "US", "canada": "CA", "mexico": "MX", "brazil": "BR", "argentina": "AR", "chile": "CL",
    "united kingdom": "GB", "uk": "GB", "great britain": "GB", "england": "GB", "ireland": "IE",
    "germany": "DE", "deutschland": "DE", "france": "FR", "spain": "ES", "españa": "ES", "italy": "IT",
    "italia": "IT", "netherlands": "NL", "the netherlands": "NL", "holland": "NL", "belgium": "BE",
    "luxembourg": "LU", "switzerland": "CH", "schweiz": "CH", "suisse": "CH", "austria": "AT",
    "österreich": "AT", "sweden": "SE", "norway": "NO", "denmark": "DK", "finland": "FI", "poland": "PL",
    "portugal": "PT", "czech republic": "CZ", "czechia": "CZ", "greece": "GR", "turkey": "TR",
    "japan": "JP", "日本": "JP", "china": "CN", "中国": "CN", "hong kong": "HK", "taiwan": "TW",
    "台湾": "TW", "south korea": "KR", "korea": "KR", "singapore": "SG", "india": "IN",
    "australia": "AU", "new zealand": "NZ", "south africa": "ZA", "israel": "IL",
    "united arab emirates": "AE", "uae": "AE", "saudi arabia": "SA", "kuwait": "KW", "russia": "RU",
}


def _country(options: Mapping[str, Any]) -> Coerce:
    """ISO 3166 alpha-2 from a code or a common name (Odoo ``country_id`` = ``[id, "Belgium"]``).

    A name not in :data:`COUNTRY_NAMES` is kept as written (map it with a value map if needed).
    """

    def fn(value: Any) -> str | None:
        if empty(value):
            return None
        if isinstance(value, list) and len(value) == 2:
            value = value[1]
        if isinstance(value, dict):
            value = value.get("code") or value.get("name")
        text = str(value).strip()
        if len(text) == 2 and text.isalpha():
            return text.upper()
        # An unknown name is kept as written rather than losing the record over it.
        return COUNTRY_NAMES.get(text.lower(), text[:400])

    return fn


def _json(options: Mapping[str, Any]) -> Coerce:
    """Any JSON value as is (custom attributes); Decimals are kept (stored as exact text)."""

    def fn(value: Any) -> Any:
        if empty(value) and value is not False:
            return None
        if isinstance(value, float):
            return Decimal(repr(value))
        if isinstance(value, dict) and "__class__" in value:
            decoded = decode_tagged(value)
            return decoded.isoformat() if isinstance(decoded, date) else decoded
        return value

    return fn


def _join(options: Mapping[str, Any]) -> Coerce:
    """Several inputs (``args``) joined with a separator, empties skipped (first + last name)."""
    sep = str(options.get("separator", " "))

    def fn(values: Any) -> str | None:
        parts = [str(v).strip() for v in values if not empty(v)]
        return sep.join(p for p in parts if p)[:MAX_TEXT] or None

    return fn


def _ref_text(options: Mapping[str, Any]) -> Coerce:
    """Every text value of several inputs (``args``) as one line for reference discovery: an object
    (Stripe ``metadata``) gives all its values whatever their keys, a list all its items; empties and
    repeats are skipped; joined with `` | `` and cut at the column's size (never an error: it is evidence).
    An object's values go in the order of their keys: the stored payload's key order is the backend's
    (PostgreSQL's ``jsonb`` reorders keys), and the line must not depend on it.
    """
    sep = str(options.get("separator", " | "))

    def walk(value: Any, out: list[str]) -> None:
        t = type(value)
        if t is str:  # the usual leaf, first
            if value:
                text = " ".join(value.split())
                if text and text not in out:
                    out.append(text)
        elif value is None or t is bool:
            return
        elif t is dict or isinstance(value, Mapping):
            for k in (sorted(value, key=str) if len(value) > 1 else value):
                walk(value[k], out)
        elif t is list or isinstance(value, list | tuple):
            for v in value:
                walk(v, out)
        elif not empty(value):
            text = " ".join(str(value).split())
            if text and text not in out:
                out.append(text)

    def fn(values: Any) -> str | None:
        out: list[str] = []
        for value in values:  # walk() of the list, its usual leaves (text, missing) in line
            if type(value) is str:
                if value:
                    text = " ".join(value.split())
                    if text and text not in out:
                        out.append(text)
            elif value is not None:
                walk(value, out)
        return sep.join(out)[:MAX_TEXT].strip() or None

    return fn


def _diff(options: Mapping[str, Any]) -> Coerce:
    """``args: [a, b]`` -> a - b (amount paid = total - residual); missing inputs give None."""
    sep = options.get("decimal_separator")

    def fn(values: Any) -> Decimal | None:
        a, b = values
        if (empty(a) and a != 0) or (empty(b) and b != 0):
            return None
        return to_decimal(a, sep) - to_decimal(b, sep)

    return fn


def _abs(options: Mapping[str, Any]) -> Coerce:
    """The magnitude of an amount (Tryton's signed ``amount_second_currency``); the sign is the kind's business."""
    dec = _decimal(options)

    def fn(value: Any) -> Decimal | None:
        d = dec(value)
        return None if d is None else abs(d)

    return fn


def _abs_diff(options: Mapping[str, Any]) -> Coerce:
    """``args: [a, b]`` -> |a - b| (a receivable line's amount from its credit and debit)."""
    diff = _diff(options)

    def fn(values: Any) -> Decimal | None:
        d = diff(values)
        return None if d is None else abs(d)

    return fn


def _sign(options: Mapping[str, Any]) -> Coerce:
    """``args: [a, b]`` -> the ``positive:`` text when a > b, the ``negative:`` text when a < b, else None.

    E.g. a receivable line: ``{args: [credit, debit], coerce: sign, positive: payment, negative: refund}``.
    """
    labels = {1: options.get("positive"), -1: options.get("negative")}
    if not all(isinstance(v, str) and v for v in labels.values()):
        raise CoercionError("`sign` needs `positive:` and `negative:` (the text for each sign)")
    diff = _diff(options)

    def fn(values: Any) -> str | None:
        d = diff(values)
        if d is None or d == 0:
            return None
        return labels[1 if d > 0 else -1]

    return fn


def _minor_diff(options: Mapping[str, Any]) -> Coerce:
    def fn(values: Any) -> int | None:
        a, b = values
        if not isinstance(a, int) or not isinstance(b, int) or isinstance(a, bool) or isinstance(b, bool):
            return None
        return a - b

    return fn


def _hubspot_association(options: Mapping[str, Any]) -> Coerce:
    """The associated record's id from a HubSpot record's embedded associations.

    Accepts the v3 embed (``{"results": [{"id": "456", "type": "deal_to_company"}]}``), the
    connector's association sweep (``[{"id": "456", "types": [5]}]``) and the v4
    shape (``[{"toObjectId": 456, "associationTypes": [{"typeId": 5, ...}]}]`` or ``{"results": [...]}``).
    A primary (labelled) association wins over an ``_unlabeled`` one; then the lowest id, so the
    choice does not depend on the order HubSpot lists them in.
    """
    primary_ids = {int(x) for x in options.get("primary_type_ids", [1, 5, 20, 175, 179, 410])}
    # With `entity` (a foreign key) the result is the canonical id; without, the HubSpot id as text.
    prefix = canonical_id(str(options["system"]), str(options["entity"]), "") if options.get("entity") else ""

    def fn(value: Any) -> str | None:
        if empty(value):
            return None
        items = value.get("results", []) if isinstance(value, dict) else value
        best: tuple[int, str] | None = None
        for item in items or ():
            if not isinstance(item, dict):
                continue
            if "toObjectId" in item:
                rid = str(item["toObjectId"])
                primary = any(
                    int(t.get("typeId", -1)) in primary_ids for t in item.get("associationTypes") or ()
                )
            elif "types" in item:  # the connector's association sweep: {"id": "456", "types": [5]}
                rid = str(item.get("id", ""))
                primary = any(int(t) in primary_ids for t in item.get("types") or ())
            else:
                rid = str(item.get("id", ""))
                primary = not str(item.get("type", "")).endswith("unlabeled")
            if not rid:
                continue
            key = (0 if primary else 1, rid)
            if best is None or key < (best[0], best[1]):
                best = key
        return None if best is None else _fits(prefix + best[1], "association id")

    return fn


# name -> (factory, the Python type it produces; "money" and "money_minor" produce Money fields)
COERCIONS: dict[str, tuple[Callable[[Mapping[str, Any]], Coerce], Any]] = {
    "str": (_str, str),
    "lower": (_lower, str),
    "text_lines": (_text_lines, str),
    "email": (_email, str),
    "domain": (_domain, str),
    "tax_id": (_tax_id, str),
    "country": (_country, str),
    "currency": (_currency, str),
    "ref": (_ref, str),
    "source_id": (_source_id, str),
    "hubspot_association": (_hubspot_association, str),
    "join": (_join, str),
    "ref_text": (_ref_text, str),
    "decimal": (_decimal, Decimal),
    "diff": (_diff, Decimal),
    "int": (_integer, int),
    "bool": (_bool, bool),
    "date": (_date, date),
    "instant": (_instant, datetime),
    "money": (_money, "money"),
    "money_diff": (_diff, "money"),
    "money_abs": (_abs, "money"),
    "money_abs_diff": (_abs_diff, "money"),
    "sign": (_sign, str),
    "money_minor": (_money_minor, "money_minor"),
    "money_minor_diff": (_minor_diff, "money_minor"),
    "json": (_json, object),
}
# Coercions that take several inputs (``args:``) instead of one (``from:``).
MULTI_INPUT = frozenset({"join", "ref_text", "diff", "money_diff", "money_minor_diff", "money_abs_diff", "sign"})
