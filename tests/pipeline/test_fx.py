"""FX rates from real sources: the ERP's rate stream (Tryton ``currency.currency.rate``, Odoo
``res.currency.rate``), the ECB's euro reference rates (``eurofxref-hist`` CSV, XML, zip; path or URL),
our CSV; stale pairs named."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from canonical.errors import InputError
from canonical.store import Store
from ltc.app.config import Config, FxConfig
from ltc.app.fx import cross_rates, erp_rates, parse_rates, refresh_rates
from reconcile.tables import fx_rate
from sandbox.server import serve
from tests.sandbox.test_world_replay import replay

ECB_CSV = """Date,USD,JPY,BGN,CYP,GBP,
2026-10-30,1.0791,162.11,1.9558,N/A,0.8420,
2026-10-29,1.0810,161.80,1.9558,N/A,0.8431,
"""
ECB_XML = """<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
  <Cube>
    <Cube time="2026-10-30"><Cube currency="USD" rate="1.0791"/><Cube currency="GBP" rate="0.8420"/></Cube>
    <Cube time="2026-10-29"><Cube currency="USD" rate="1.0810"/><Cube currency="GBP" rate="0.8431"/></Cube>
  </Cube>
</gesmes:Envelope>
"""


def _rates(store: Store) -> dict[tuple[str, str, date], Decimal]:
    with store.engine.connect() as conn:
        return {(r.base, r.quote, r.rate_date): Decimal(r.rate) for r in conn.execute(sa.select(fx_rate))}


def test_ecb_csv_and_xml_read_the_same_rates() -> None:
    csv_rows = parse_rates(ECB_CSV.encode(), "eurofxref-hist.csv")
    xml_rows = parse_rates(ECB_XML.encode(), "eurofxref-hist.xml")
    key = lambda r: (r["rate_date"], r["quote"])  # noqa: E731
    assert {key(r): r["rate"] for r in xml_rows}.items() <= {key(r): r["rate"] for r in csv_rows}.items()
    assert {r["base"] for r in csv_rows} == {"EUR"} and not any(r["quote"] == "CYP" for r in csv_rows)  # N/A
    assert next(r["rate"] for r in csv_rows if key(r) == (date(2026, 10, 30), "USD")) == Decimal("1.0791")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("eurofxref-hist.csv", ECB_CSV)
    assert parse_rates(buf.getvalue(), "eurofxref-hist.zip") == csv_rows
    with pytest.raises(InputError, match="not a rate file"):
        parse_rates(b"a,b\n1,2\n", "x.csv")
    with pytest.raises(InputError, match="DOCTYPE"):
        parse_rates(b'<!DOCTYPE x [<!ENTITY a "b">]><x/>', "evil.xml")
    # the same parser as the bank statements' (defusedxml): an external DTD refused too, a broken file's line named
    with pytest.raises(InputError, match=r"^dtd.xml: refused unsafe XML \(DTDForbidden"):
        parse_rates(b'<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd"><x/>', "dtd.xml")
    with pytest.raises(InputError, match=r"^cut.xml:3: not well-formed XML \(column \d+\)"):
        parse_rates(b'<Envelope>\n<Cube>\n<Cube time="2026-10-30"></Envelope>', "cut.xml")


def test_a_rate_zip_that_unpacks_past_any_rate_file_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip bomb among the rate files (fetched from a URL, say): refused by the size it claims (zipfile unpacks no
    more than that); before, read whole into memory (fails on f5614c6)."""
    import ltc.app.fx as fx

    monkeypatch.setattr(fx, "MAX_RATE_FILE", 1000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("eurofxref-hist.csv", "Date,USD\n" + "2026-10-30,1.0921\n" * 200)  # 3.6 kB, a few hundred zipped
    with pytest.raises(InputError, match=r"^bomb.zip!eurofxref-hist.csv: 3,609 bytes unpacked, more than a rate file"):
        parse_rates(buf.getvalue(), "bomb.zip")
    lying = bytearray(buf.getvalue())
    central = lying.rfind(b"PK\x01\x02")  # the central directory's record claims a small size
    lying[central + 24:central + 28] = (100).to_bytes(4, "little")
    with pytest.raises(InputError, match=r"^lying.zip!eurofxref-hist.csv: a broken zip \(Bad CRC-32"):
        parse_rates(bytes(lying), "lying.zip")


def test_cross_rates_for_a_usd_reporting_currency() -> None:
    rows = parse_rates(ECB_CSV.encode(), "ecb.csv")
    cross = {(r["rate_date"], r["quote"]): r["rate"] for r in cross_rates(rows, "USD") if r["base"] == "USD"}
    # 1 USD = (EUR->GBP) / (EUR->USD) GBP
    assert cross[(date(2026, 10, 30), "GBP")] == (Decimal("0.8420") / Decimal("1.0791")).quantize(Decimal("1e-10"))


def test_ecb_file_from_a_url_and_our_csv_from_a_path_with_stale_pairs(sqlite_store: Store, tmp_path: Path) -> None:
    app = Starlette(routes=[Route("/eurofxref-hist.xml", lambda _r: Response(ECB_XML, media_type="text/xml"))])
    ours = tmp_path / "fx.csv"
    ours.write_text("rate_date,base,quote,rate\n2026-08-01,USD,CHF,0.8800\n")
    with serve(app) as server:
        cfg = Config(reporting_currency="USD",
                     fx=FxConfig(files=[f"{server.url}/eurofxref-hist.xml", str(ours)], max_age_days=5))
        out = refresh_rates(sqlite_store, cfg, date(2026, 10, 31))
    got = _rates(sqlite_store)
    assert got[("EUR", "USD", date(2026, 10, 30))] == Decimal("1.0791")
    assert ("USD", "GBP", date(2026, 10, 30)) in got  # the cross rate for the USD reporting currency
    assert got[("USD", "CHF", date(2026, 8, 1))] == Decimal("0.8800")
    assert out["loaded"] == len(got)
    assert out["stale"] == ["USD/CHF (newest 2026-08-01 on 2026-10-31)"]  # 91 days > 5
    # a rate file that cannot be read is named; the rates loaded before stay, the run goes on
    missing = refresh_rates(sqlite_store, Config(fx=FxConfig(files=[str(tmp_path / "missing.csv")])),
                            date(2026, 10, 31))
    assert missing["errors"] == [f"fx.files: {tmp_path / 'missing.csv'} does not exist or is not a file"]
    assert _rates(sqlite_store) == got


def test_a_rate_url_that_sends_more_than_any_rate_file_is_cut_off(sqlite_store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Read as it arrives and stopped past the limit, not held whole in memory (fails on f5614c6)."""
    import ltc.app.fx as fx

    monkeypatch.setattr(fx, "MAX_RATE_FILE", 1000)
    app = Starlette(routes=[Route("/big.csv", lambda _r: Response("Date,USD\n" + "2026-10-30,1.0921\n" * 500))])
    with serve(app) as server:
        out = refresh_rates(sqlite_store, Config(fx=FxConfig(files=[f"{server.url}/big.csv"])), date(2026, 10, 31))
    assert out["errors"] == [f"fx.files: {server.url}/big.csv sends more than 1,000 bytes, more than a rate file holds"]
    assert _rates(sqlite_store) == {}


@pytest.mark.parametrize("world", ["tryton", "odoo"])
def test_the_erps_own_rate_stream(world: str, sqlite_store: Store) -> None:
    cfg, counts = replay(world, sqlite_store)
    assert counts[world]["quarantined"] == 0
    rates = erp_rates(sqlite_store, cfg)[world]
    # the company currency (the world's EUR) is the base: 1 EUR = rate USD/GBP
    assert {(r["base"], r["quote"], r["rate_date"], r["rate"]) for r in rates} == {
        ("EUR", "USD", date(2026, 10, 1), Decimal("1.0842")), ("EUR", "USD", date(2026, 10, 30), Decimal("1.0791")),
        ("EUR", "GBP", date(2026, 9, 1), Decimal("0.842"))}
    out = refresh_rates(sqlite_store, cfg, date(2026, 10, 31))
    assert out["sources"] == {f"erp:{world}": 3}
    assert out["stale"] == ["EUR/GBP (newest 2026-09-01 on 2026-10-31)"]  # older than the default 7 days
    assert _rates(sqlite_store)[("EUR", "USD", date(2026, 10, 30))] == Decimal("1.0791")


def test_a_rate_that_cannot_be_used_is_rejected_with_its_row_and_the_others_read() -> None:
    """The ECB's CSV and XML alike; a rate of 0 (no amount converts at it), one that rounds to 0 at the ten places
    rates are kept to, or text Decimal would take but no rate file writes (NaN, 1_000, other scripts' digits, a
    space inside) is rejected (before, a bad row failed the whole file, and the XML's were left out unsaid)."""
    text = ("Date,USD,JPY,GBP\n2026-10-30,1.0791,0,0.8420\n2026-10-29,1_081,١٦١,0.00000000001\n"
            "30.10.2026,1.08,161,0.84\n2026-10-28,Infinity,1 61,1E+1\n")
    rejected: list[str] = []
    rows = parse_rates(text.encode(), "ecb.csv", rejected)
    assert {(r["rate_date"].day, r["quote"]): r["rate"] for r in rows} == {
        (30, "USD"): Decimal("1.0791"), (30, "GBP"): Decimal("0.8420"), (28, "GBP"): Decimal("10")}
    assert rejected == ["ecb.csv:2: JPY: rate '0' is zero: no amount converts at it",
                        "ecb.csv:3: USD: rate '1_081' is not a positive decimal number",
                        "ecb.csv:3: JPY: rate '١٦١' is not a positive decimal number",
                        "ecb.csv:3: GBP: rate '0.00000000001' is below 0.0000000001, the smallest rate kept (ten places)",
                        "ecb.csv:4: '30.10.2026' is not a date (YYYY-MM-DD)",
                        "ecb.csv:5: USD: rate 'Infinity' is not a positive decimal number",
                        "ecb.csv:5: JPY: rate '1 61' is not a positive decimal number"]
    with pytest.raises(InputError, match=r"^ecb.csv:2: JPY: rate '0' is zero"):  # nobody collects: the first stops it
        parse_rates(text.encode(), "ecb.csv")
    xml = ECB_XML.replace('rate="0.8420"', 'rate="-0.8420"').replace('currency="USD" rate="1.0810"',
                                                                      'currency="XYZ" rate="1.0810"')
    rejected = []
    rows = parse_rates(xml.encode(), "ecb.xml", rejected)
    assert {(r["rate_date"].day, r["quote"]) for r in rows} == {(30, "USD"), (29, "GBP")}
    assert rejected == ["ecb.xml: <Cube time=2026-10-30> <Cube currency='GBP' rate='-0.8420'>: rate '-0.8420' is not "
                        "a positive decimal number",
                        "ecb.xml: <Cube time=2026-10-29> <Cube currency='XYZ' rate='1.0810'>: currency is not an "
                        "ISO 4217 code"]


def test_a_rate_url_that_answers_an_error_fails_with_the_exit_code_of_its_kind(sqlite_store: Store) -> None:
    """A 404 is a wrong URL (exit 2, the operator's to fix); a 503 the server's, which the next run may not meet
    (exit 1); the rates of before stay."""
    app = Starlette(routes=[Route("/gone.csv", lambda _r: Response("no", status_code=404)),
                            Route("/busy.csv", lambda _r: Response("later", status_code=503))])
    with serve(app) as server:
        busy = refresh_rates(sqlite_store, Config(fx=FxConfig(files=[f"{server.url}/busy.csv"])), date(2026, 10, 31))
        both = refresh_rates(sqlite_store, Config(fx=FxConfig(files=[f"{server.url}/busy.csv",
                                                                     f"{server.url}/gone.csv"])), date(2026, 10, 31))
    assert busy["errors"] == [f"fx.files: cannot fetch {server.url}/busy.csv: the server answered 503"]
    assert busy["errors_exit_code"] == 1
    assert both["errors"][1] == f"fx.files: cannot fetch {server.url}/gone.csv: the server answered 404; check the URL"
    assert both["errors_exit_code"] == 2
