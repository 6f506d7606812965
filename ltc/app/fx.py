"""FX rates from where they really are: the ERP's own rate table, ECB reference-rate files, CSV files.

``ltc.yaml``::

    fx:
      files:                       # paths or http(s) URLs; the format is read from the content
        - .ltc/world/fx_rates.csv  #   rate_date,base,quote,rate (1 base = rate quote)
        - https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip   # ECB: CSV, XML or the zip
      erp_rates: true              # load the rates the ERP sources synced (Tryton currency.currency.rate,
                                   # Odoo res.currency.rate); the ERP's company currency is the base
      max_age_days: 7              # a pair whose newest rate is older than this at the as-of is stale

Each file and the ERP replace their own rows (``fx_rate.source``); a later source wins a day and pair
an earlier one also gives. A row that gives no usable rate (a rate of 0, negative or not a decimal number, no
date, an unknown currency) is rejected with its file and line and the others load; a file or URL that cannot be
read, or holds no usable rate, fails the fx stage (:class:`RatesNotRefreshed`) and keeps its rates of before. ECB rates are per euro; for another reporting currency the cross rate
reporting → X (on the ECB's days) is derived too, so an amount in any ECB currency converts.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from canonical.errors import ConfigError, InputError, LtcError
from canonical.money import normalize_currency
from canonical.store import Store
from connectors.safe_xml import parse_untrusted

ERP_RATE_OBJECTS = {"tryton": "currency.currency.rate", "odoo": "res.currency.rate"}
OUR_HEADER = ["rate_date", "base", "quote", "rate"]
PLACES = Decimal("1e-10")


#: a rate as a rate file writes it: ASCII digits, one decimal point, an optional exponent (``Decimal`` itself would
#: also take ``NaN``, ``Infinity``, ``1_000``, spaces and other scripts' digits)
_RATE_TEXT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: the smallest and largest rate kept: rates are kept to ten places (a smaller one would be 0), and no currency is
#: worth 10^18 of another
MIN_RATE, MAX_RATE = Decimal("1e-10"), Decimal("1e18")


def rate_problem(text: str) -> str | None:
    """Why ``text`` is no usable rate (not a decimal number, 0 or negative, out of range), or None."""
    value = text.strip()
    if not _RATE_TEXT.fullmatch(value):
        return f"rate {text!r} is not a positive decimal number" + (
            " (a decimal comma? write the rate with a point)" if re.fullmatch(r"[0-9]+,[0-9]+", value) else "")
    rate = Decimal(value)
    if rate == 0:
        return f"rate {text!r} is zero: no amount converts at it"
    if rate < MIN_RATE:
        return f"rate {text!r} is below {MIN_RATE:f}, the smallest rate kept (ten places)"
    if rate >= MAX_RATE:
        return f"rate {text!r} is 10^18 or more, no exchange rate"
    return None


def _positive(text: str) -> Decimal | None:
    return None if rate_problem(str(text)) is not None else Decimal(str(text).strip())


#: the largest rate file read, fetched or unpacked (the ECB's whole history since 1999, ~30 currencies: under 1 MB
#: zipped, ~6 MB as CSV): a bigger one is not a rate file, and a zip that unpacks past it would only fill memory
MAX_RATE_FILE = 64 * 1024 * 1024


Reject = Callable[[str], None]


def parse_rates(data: bytes, name: str, rejected: list[str] | None = None) -> list[dict[str, Any]]:
    """The rates in a file's bytes: our CSV, the ECB's CSV (``Date,USD,JPY,…``), its XML, or a zip of one.

    A row that gives no usable rate (no date, no currency, a rate that is not a positive decimal) is added to
    ``rejected`` as ``file:line: why`` and the others are read; without ``rejected`` it raises :class:`InputError`.
    A file that is no rate file, or holds no usable rate at all, raises :class:`InputError` either way."""
    def reject(message: str) -> None:
        if rejected is None:
            raise InputError(message)
        rejected.append(message)

    seen = len(rejected) if rejected is not None else 0
    rows = _parse(data, name, reject)
    if not rows:
        bad = rejected[seen:] if rejected is not None else []
        raise InputError(f"{name}: no usable rate in it" + (
            f" ({len(bad)} row(s) rejected, the first: {bad[0]})" if bad else " (no rows after the header)"))
    return rows


def _parse(data: bytes, name: str, reject: Reject) -> list[dict[str, Any]]:
    if data[:4] == b"PK\x03\x04":
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as exc:
            raise InputError(f"{name}: a broken zip ({exc})") from None
        with zf:
            members = [m for m in zf.infolist() if m.filename.lower().endswith((".csv", ".xml"))]
            if not members:
                raise InputError(f"{name}: the zip holds no .csv or .xml rate file")
            member = members[0]
            if member.file_size > MAX_RATE_FILE:
                raise InputError(f"{name}!{member.filename}: {member.file_size:,} bytes unpacked, more than a rate "
                                 f"file holds (at most {MAX_RATE_FILE:,})")
            try:  # zipfile unpacks no more than the size the zip claims (past it: a CRC error)
                unpacked = zf.read(member)
            except zipfile.BadZipFile as exc:
                raise InputError(f"{name}!{member.filename}: a broken zip ({exc})") from None
            return _parse(unpacked, f"{name}!{member.filename}", reject)
    try:
        text = data.decode("utf-8-sig", errors="strict").lstrip()
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text (byte {exc.start}): not a rate file") from None
    if text.startswith("<"):
        return _ecb_xml(text, name, reject)
    first = text.splitlines()[0] if text else ""
    header = [h.strip().lower() for h in first.split(",")]
    if header == OUR_HEADER:
        return _our_csv(text, name, reject)
    if header and header[0] == "date":
        return _ecb_csv(text, name, reject)
    raise InputError(f"{name}:1: " + ("an empty file" if not text.strip() else "not a rate file") + ": expected the "
                     f"header {','.join(OUR_HEADER)}, the ECB's Date,USD,JPY,… or the ECB's XML")


def _row(day: date, base: str, quote: str, rate: str, where: str, reject: Reject) -> list[dict[str, Any]]:
    """The rate row (in a list), or none with ``where: why`` rejected when ``rate`` is no usable rate."""
    why = rate_problem(rate)
    if why is not None:
        reject(f"{where}: {why}")
        return []
    return [{"rate_date": day, "base": base, "quote": quote, "rate": Decimal(rate.strip())}]


def _our_csv(text: str, name: str, reject: Reject) -> list[dict[str, Any]]:
    rows = []
    reader = csv.reader(io.StringIO(text))
    next(reader)
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        n = reader.line_num
        while len(row) > len(OUR_HEADER) and not row[-1].strip():  # a trailing comma
            row = row[:-1]
        if len(row) != len(OUR_HEADER):
            comma = len(row) == 5 and all(re.fullmatch(r"\s*[0-9]+\s*", c) for c in row[3:])
            reject(f"{name}:{n}: {len(row)} fields, expected {len(OUR_HEADER)} ({','.join(OUR_HEADER)})"
                   + (f"; a decimal comma? write the rate {row[3].strip()}.{row[4].strip()} with a point" if comma
                      else ""))
            continue
        try:
            day = date.fromisoformat(row[0].strip())
            base, quote = normalize_currency(row[1].strip()), normalize_currency(row[2].strip())
        except ValueError:
            reject(f"{name}:{n}: expected rate_date (YYYY-MM-DD), base and quote (ISO 4217), got {','.join(row[:3])}")
            continue
        rows += _row(day, base, quote, row[3], f"{name}:{n}", reject)
    return rows


def _ecb_csv(text: str, name: str, reject: Reject) -> list[dict[str, Any]]:
    """``Date,USD,JPY,…`` then one row per day; ``N/A`` or empty where the ECB published no rate."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader)]
    ccys = [h if re.fullmatch(r"[A-Z]{3}", h) else None for h in header[1:]]
    rows = []
    for row in reader:
        if not row or not row[0].strip():
            continue
        try:
            day = date.fromisoformat(row[0].strip())
        except ValueError:
            reject(f"{name}:{reader.line_num}: {row[0]!r} is not a date (YYYY-MM-DD)")
            continue
        for ccy, cell in zip(ccys, row[1:], strict=False):
            if ccy is None or not cell.strip() or cell.strip().upper() == "N/A":
                continue
            rows += _row(day, "EUR", ccy, cell, f"{name}:{reader.line_num}: {ccy}", reject)
    return rows


def _ecb_xml(text: str, name: str, reject: Reject) -> list[dict[str, Any]]:
    """``<gesmes:Envelope>…<Cube><Cube time="…"><Cube currency="USD" rate="1.0921"/>…`` (the parser keeps no line
    numbers: a rejected rate is named by its day and currency)"""
    root = parse_untrusted(text, name)
    rows = []
    for cube in root.iter():
        if not cube.tag.endswith("Cube") or "time" not in cube.attrib:
            continue
        try:
            day = date.fromisoformat(cube.attrib["time"])
        except ValueError:
            reject(f"{name}: <Cube time={cube.attrib['time']!r}>: not a date (YYYY-MM-DD)")
            continue
        for c in cube:
            ccy, rate = c.attrib.get("currency"), c.attrib.get("rate", "")
            where = f"{name}: <Cube time={day}> <Cube currency={ccy!r} rate={rate!r}>"
            try:
                quote = normalize_currency(ccy or "")
            except ValueError:
                reject(f"{where}: currency is not an ISO 4217 code")
                continue
            rows += _row(day, "EUR", quote, rate, where, reject)
    if not rows and not any(c.tag.endswith("Cube") and "time" in c.attrib for c in root.iter()):
        raise InputError(f"{name}: no <Cube time=…><Cube currency=… rate=…/> rates in this XML")
    return rows


def read_file(location: str) -> bytes:
    """A rate file's bytes from a path or an http(s) URL (one clear line when it cannot be read: a
    :class:`ConfigError` for what an operator fixes (no such file, a server that cannot be reached or answers
    4xx), a :class:`ConnectorError` for a server error the next run may not meet (5xx, a read cut off))."""
    if location.startswith(("http://", "https://")):
        return _fetch(location)
    path = Path(location)
    if not path.is_file():
        raise ConfigError(f"fx.files: {location} does not exist or is not a file")
    try:
        size = path.stat().st_size
        if size > MAX_RATE_FILE:
            raise InputError(f"fx.files: {location} is {size:,} bytes, more than a rate file holds "
                             f"(at most {MAX_RATE_FILE:,})")
        return path.read_bytes()
    except OSError as exc:  # a file this user may not read
        raise ConfigError(f"fx.files: {location} cannot be read ({exc.strerror or type(exc).__name__})") from None


def _fetch(url: str) -> bytes:
    import httpx

    from connectors.errors import ConnectorError, Unreachable

    try:
        with httpx.stream("GET", url, timeout=30, follow_redirects=True) as resp:
            resp.raise_for_status()
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_RATE_FILE:
                    raise InputError(f"fx.files: {url} sends more than {MAX_RATE_FILE:,} bytes, more than "
                                     "a rate file holds")
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status >= 500 or status == 429:
            raise ConnectorError(f"fx.files: cannot fetch {url}: the server answered {status}", status=status) \
                from None
        raise ConfigError(f"fx.files: cannot fetch {url}: the server answered {status}; check the URL") from None
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
        raise Unreachable(f"fx.files: cannot reach {url} ({type(exc).__name__}: {exc}); check the URL and the "
                          "network") from None
    except httpx.HTTPError as exc:  # a read cut off or timed out
        raise ConnectorError(f"fx.files: cannot fetch {url}: {type(exc).__name__}: {exc}") from None
    except httpx.InvalidURL as exc:
        raise ConfigError(f"fx.files: {url} is not a valid URL ({exc})") from None
    return bytes(body)


def cross_rates(rows: list[dict[str, Any]], reporting: str) -> list[dict[str, Any]]:
    """For rates per one base (the ECB's euro): ``reporting -> X`` = (base→X) / (base→reporting), per day."""
    by_day: dict[tuple[str, date], dict[str, Decimal]] = {}
    for r in rows:
        by_day.setdefault((r["base"], r["rate_date"]), {})[r["quote"]] = r["rate"]
    out = []
    for (base, day), quotes in by_day.items():
        rep = quotes.get(reporting)
        if base == reporting or rep is None:
            continue
        for quote, rate in quotes.items():
            if quote != reporting:
                out.append({"rate_date": day, "base": reporting, "quote": quote,
                            "rate": (rate / rep).quantize(PLACES)})
    return out


def erp_rates(store: Store, cfg: Any) -> dict[str, list[dict[str, Any]]]:
    """The rates the ERP sources synced, per source: Tryton ``currency.currency.rate`` and Odoo
    ``res.currency.rate``; 1 company currency (``options.company_currency``, default the reporting
    currency) = ``rate`` of the record's currency."""
    from canonical.tables import raw_record as rr

    out: dict[str, list[dict[str, Any]]] = {}
    for name, src in cfg.sources.items():
        obj = ERP_RATE_OBJECTS.get(src.kind)
        if obj is None:
            continue
        company = normalize_currency(str(src.options.get("company_currency") or cfg.reporting_currency))
        rows: dict[tuple[str, date], dict[str, Any]] = {}
        with store.engine.connect() as conn:
            q = sa.select(rr.c.payload).where(rr.c.system == name, rr.c.object == obj, rr.c.deleted.is_(False))
            for (payload,) in conn.execute(q):
                row = _erp_rate(src.kind, payload, company)
                if row is not None:
                    rows[(row["quote"], row["rate_date"])] = row
        if rows:
            out[name] = list(rows.values())
    return out


def _erp_rate(kind: str, p: dict[str, Any], company: str) -> dict[str, Any] | None:
    """One ERP rate record as an fx_rate row (1 company currency = ``rate`` quote), or None if unusable."""
    from connectors.tryton.codec import decode

    try:
        if kind == "tryton":  # the dotted read "currency.code" comes back under "currency."
            cur = p.get("currency.")
            day, rate = decode(p.get("date")), decode(p.get("rate"))
            ccy = cur.get("code") if isinstance(cur, dict) else p.get("currency.code")
        else:  # odoo: name is the day, currency_id an [id, "EUR"] pair
            day, rate, cur = p.get("name"), p.get("rate"), p.get("currency_id")
            ccy = cur[1] if isinstance(cur, list) and len(cur) > 1 else None
        value = _positive(str(rate))
        if not ccy or value is None or day in (None, False, ""):
            return None
        quote = normalize_currency(str(ccy))
        if quote == company:
            return None
        return {"rate_date": date.fromisoformat(str(day)[:10]), "base": company, "quote": quote, "rate": value}
    except (KeyError, TypeError, ValueError):
        return None


def load_rates(store: Store, rates: Iterable[dict[str, Any]], source: str) -> int:
    """Replace the rates of ``source`` with ``rates``; another source's rate for the same day and pair gives way."""
    from reconcile.tables import fx_rate

    rows = {(r["base"], r["quote"], r["rate_date"]): {"base": r["base"], "quote": r["quote"],
                                                      "rate_date": r["rate_date"], "rate": r["rate"],
                                                      "source": source} for r in rates}
    with store.engine.begin() as conn:
        conn.execute(sa.delete(fx_rate).where(fx_rate.c.source == source))
        for base, quote in {(b, q) for b, q, _d in rows}:
            days = sorted(d for b, q, d in rows if (b, q) == (base, quote))
            for i in range(0, len(days), 500):
                conn.execute(sa.delete(fx_rate).where(fx_rate.c.base == base, fx_rate.c.quote == quote,
                                                      fx_rate.c.rate_date.in_(days[i:i + 500])))
        values = list(rows.values())
        for i in range(0, len(values), 5000):
            conn.execute(fx_rate.insert(), values[i:i + 5000])
    return len(rows)


def stale_pairs(store: Store, as_of: date, max_age_days: int) -> list[str]:
    """``BASE/QUOTE (newest YYYY-MM-DD)`` for each pair whose newest rate on or before ``as_of`` is older
    than ``max_age_days`` (or which has none by then)."""
    from reconcile.tables import fx_rate as f

    limit = as_of - timedelta(days=max_age_days)
    with store.engine.connect() as conn:
        newest = conn.execute(sa.select(f.c.base, f.c.quote, sa.func.max(
            sa.case((f.c.rate_date <= as_of, f.c.rate_date)))).group_by(f.c.base, f.c.quote)).all()
    return sorted(f"{b}/{q} (newest {d or 'none'} on {as_of})" for b, q, d in newest if d is None or d < limit)


#: the rejected rows of one rate file listed, the rest counted
REJECTED_SHOWN = 10


class RatesNotRefreshed(LtcError):
    """A configured rate file or URL could not be read, or held no usable rate: the fx stage fails with the
    reasons (exit 2 when an operator fixes one: a missing file, a wrong or unreachable URL, a file that is not a
    rate file; 1 for a server error the next run may not meet). The rates loaded before stay."""

    def __init__(self, errors: list[str], exit_code: int) -> None:
        super().__init__("FX rates not refreshed: " + "; ".join(errors))
        self.exit_code = exit_code


def refresh_rates(store: Store, cfg: Any, as_of: date) -> dict[str, Any]:
    """Load every configured rate source into ``fx_rate``: what was loaded per source, the stale pairs, the
    rows rejected (``rejected``: ``file:line: why``, at most :data:`REJECTED_SHOWN` per file, then how many more;
    ``rejected_rows``: all of them) and the sources that could not be read or held no usable rate (``errors``:
    one line each, ``errors_exit_code``: the worst of theirs; the rates loaded before from such a source stay)."""
    fx = getattr(cfg, "fx", None)
    loaded: dict[str, int] = {}
    errors: list[str] = []
    codes: list[int] = []
    shown: list[str] = []
    count = 0
    for location in (fx.files if fx is not None else []):
        rejected: list[str] = []
        try:
            rows = parse_rates(read_file(location), location, rejected)
        except LtcError as exc:
            errors.append(str(exc))
            codes.append(exc.exit_code)
            rows = []
        count += len(rejected)
        shown += rejected[:REJECTED_SHOWN]
        if len(rejected) > REJECTED_SHOWN:
            shown.append(f"{location}: {len(rejected) - REJECTED_SHOWN} more row(s) rejected")
        if not rows:
            continue
        bases = {r["base"] for r in rows}
        if bases == {"EUR"} and cfg.reporting_currency != "EUR":
            rows += cross_rates(rows, cfg.reporting_currency)
        loaded[f"file:{location}"] = load_rates(store, rows, _source_key(location))
    if fx is None or fx.erp_rates:
        for name, rows in erp_rates(store, cfg).items():
            loaded[f"erp:{name}"] = load_rates(store, rows, f"erp:{name}"[:64])
    max_age = fx.max_age_days if fx is not None else 7
    stale = stale_pairs(store, as_of, max_age)
    return {"loaded": sum(loaded.values()), "sources": loaded, "stale": stale, "max_age_days": max_age,
            "rejected": shown, "rejected_rows": count, "errors": errors,
            "errors_exit_code": (2 if 2 in codes else max(codes)) if codes else 0}


def file_problem(location: str) -> str | None:
    """Why a local rate file of ``fx.files`` would fail the fx stage (missing, unreadable, not a rate file, no
    usable rate in it), or None; a URL is not fetched (``ltc config check`` runs without the network)."""
    if location.startswith(("http://", "https://")):
        return None
    try:
        parse_rates(read_file(location), location, [])
    except LtcError as exc:
        return str(exc).removeprefix("fx.files: ")
    return None


def _source_key(location: str) -> str:
    key = "file:" + (location.rsplit("/", 1)[-1] if "/" in location else location)
    return key[:64]
