"""Tryton JSON-RPC codec and client, without a server: exact types both ways, the envelope, the
session header, errors mapped to clear exceptions, warnings acknowledged, re-login on expiry."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.errors import ConnectorError
from connectors.http import RetryPolicy
from connectors.tryton import codec
from connectors.tryton.rpc import (
    TrytonAuthError,
    TrytonClient,
    TrytonConcurrencyError,
    TrytonError,
    TrytonUserError,
    TrytonUserWarning,
)


def test_decode_is_exact_and_typed() -> None:
    body = json.dumps({"id": 1, "result": [{
        "total_amount": {"__class__": "Decimal", "decimal": "151.24"},
        "tiny": {"__class__": "Decimal", "decimal": "0.10"},
        "invoice_date": {"__class__": "date", "year": 2026, "month": 2, "day": 28},
        "write_date": {"__class__": "datetime", "year": 2026, "month": 11, "day": 22, "hour": 19, "minute": 47,
                       "second": 21, "microsecond": 279631},
        "quantity": 3.0, "lines": [1, 2], "currency.": {"id": 2, "code": "EUR"},
        "delay": {"__class__": "timedelta", "seconds": 90},
        "blob": {"__class__": "bytes", "base64": base64.b64encode(b"\x00pdf").decode()},
    }]}).encode()
    (rec,) = codec.loads(body)["result"]
    assert rec["total_amount"] == Decimal("151.24") and str(rec["tiny"]) == "0.10"
    assert rec["invoice_date"] == date(2026, 2, 28)
    assert rec["write_date"] == datetime(2026, 11, 22, 19, 47, 21, 279631, tzinfo=UTC)
    assert rec["quantity"] == Decimal("3.0") and isinstance(rec["quantity"], Decimal)
    assert rec["currency."] == {"id": 2, "code": "EUR"} and rec["lines"] == [1, 2]
    assert rec["delay"] == timedelta(seconds=90) and rec["blob"] == b"\x00pdf"


def test_encode_tags_values_and_sends_instants_as_naive_utc() -> None:
    cet = timezone(timedelta(hours=1))
    sent = json.loads(codec.dumps({"params": [
        [["last_modified_at", ">=", datetime(2026, 1, 1, 13, 0, 0, 5, tzinfo=cet)]],
        {"unit_price": Decimal("12.50"), "sale_date": date(2026, 3, 1), "ids": (1, 2)},
    ]}))
    domain, values = sent["params"]
    assert domain[0][2] == {"__class__": "datetime", "year": 2026, "month": 1, "day": 1, "hour": 12,
                            "minute": 0, "second": 0, "microsecond": 5}
    assert values["unit_price"] == {"__class__": "Decimal", "decimal": "12.50"}
    assert values["sale_date"] == {"__class__": "date", "year": 2026, "month": 3, "day": 1}
    assert values["ids"] == [1, 2]
    with pytest.raises(TypeError):  # never str()-ed silently
        codec.dumps({"x": object()})


def test_tagged_objects_that_do_not_decode_stay_dicts_and_members_are_decoded() -> None:
    body = json.dumps({"result": [
        {"__class__": "date", "year": 2026, "month": 2, "day": 30},  # no such day: the tagged dict as sent
        {"__class__": "Decimal", "decimal": "twelve"},
        {"__class__": "timedelta", "seconds": 1.5},  # a float member is decoded (Decimal) before the object
        {"__class__": "Unknown", "x": {"__class__": "Decimal", "decimal": "1.0"}},
    ]}).encode()
    bad_day, bad_amount, delay, unknown = codec.loads(body)["result"]
    assert bad_day == {"__class__": "date", "year": 2026, "month": 2, "day": 30}
    assert bad_amount == {"__class__": "Decimal", "decimal": "twelve"}
    assert delay == {"__class__": "timedelta", "seconds": Decimal("1.5")}
    assert unknown == {"__class__": "Unknown", "x": Decimal("1.0")}
    raw = {"__class__": "date", "year": 2026, "month": 2, "day": 30}
    assert codec.decode(raw) == raw and codec.decode(raw) is not raw  # a copy, as for any dict


def test_a_body_parsed_is_the_walk_over_its_plain_parse() -> None:
    """``loads`` (json's parser, decoding each object as it is made) gives exactly what ``decode`` gives over a plain
    parse of the same body, types and Decimal exponents included; NaN, trailing text and bad UTF-8 are refused."""
    import orjson

    from tests.same import same

    body = json.dumps({"id": 7, "result": [{
        "amount": {"__class__": "Decimal", "decimal": "1200.50"}, "qty": 2.50, "rate": 1e-05, "n": -0.0,
        "when": {"__class__": "datetime", "year": 2026, "month": 1, "day": 2, "hour": 3},
        "nested": [[{"__class__": "date", "year": 2026, "month": 3, "day": 1}], {"k": {"__class__": "Decimal",
                                                                                       "decimal": "1.0"}}],
        "odd": {"__class__": "timedelta", "seconds": 2.5}, "name": "caf\u00e9 \u0000", "empty": {}, "none": None,
    }]}).encode()
    assert same(codec.loads(body), codec.decode(orjson.loads(body)))
    assert codec.loads(b'{"big": 1000000000000000000000000000001}') == {"big": 10**30 + 1}  # exact (orjson: a float)
    for bad in (b'{"x": NaN}', b'{"x": Infinity}', b'{"x": 1} trailing', b'{"x": "\xff"}',
                b"[" * 100_000, b""):
        with pytest.raises(ValueError):  # what the client names as "not JSON" (connectors.http)
            codec.loads(bad)


def test_a_lone_surrogate_escape_is_kept_not_taken_for_a_broken_page() -> None:
    (rec,) = codec.loads(b'{"result": [{"description": "a\\ud800b"}]}')["result"]
    assert rec["description"] == "a\ud800b"


def test_a_repeated_instant_is_tagged_the_same_each_time() -> None:
    stamp = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    naive_day = date(2026, 1, 1)
    rows = json.loads(codec.dumps([{"create_date": stamp, "write_date": stamp, "day": naive_day,
                                    "at": stamp.astimezone(timezone(timedelta(hours=2)))} for _ in range(3)]))
    tagged = {"__class__": "datetime", "year": 2026, "month": 1, "day": 1, "hour": 12, "minute": 0,
              "second": 0, "microsecond": 0}
    day = {"__class__": "date", "year": 2026, "month": 1, "day": 1}
    assert rows == [{"create_date": tagged, "write_date": tagged, "day": day, "at": tagged}] * 3


class FakeTryton:
    """Answers JSON-RPC like trytond 8.2 and records what it received."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.sessions = 0
        self.expire_next = False
        self.warn_once = True
        self.acks: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        self.headers.append(request.headers)
        method, params = body["method"], body["params"]
        assert set(body) == {"id", "method", "params"}  # any other key changes Tryton's envelope
        if method == "common.db.login":
            if params[1] != {"password": "secret"}:
                return httpx.Response(401)
            self.sessions += 1
            return self._ok(body, [7, f"tok{self.sessions}", None])
        if request.url.path != "/ltc/rpc/":
            return httpx.Response(405)
        if self.expire_next:
            self.expire_next = False
            return httpx.Response(401)
        if method == "model.res.user.get_preferences":
            return self._ok(body, {"company": 1, "companies": [1], "language": "en"})
        if method == "model.res.user.warning.create":
            self.acks.append(params[0])
            return self._ok(body, [1])
        if method == "model.account.invoice.post" and self.warn_once:
            self.warn_once = False
            return self._ok(body, None, error=["UserWarning", ["invoice_taxes_1", "Taxes differ", ""]])
        if method == "model.sale.sale.create":
            return self._ok(body, None, error=["UserError", ['A value is required for field "Party".', "", None]])
        if method == "model.sale.sale.write":
            return self._ok(body, None, error=["ConcurrencyException", ["Records were modified in the meanwhile"]])
        if method == "model.boom.boom.read":
            return self._ok(body, None, error=["KeyError: 'x'", "Traceback (most recent call last): ..."])
        if method.startswith("model.busy.busy.") and len([r for r in self.requests if r["method"] == method]) < 3:
            return httpx.Response(503)
        return self._ok(body, {"echo": params})

    @staticmethod
    def _ok(body: dict[str, Any], result: Any, error: Any = None) -> httpx.Response:
        return httpx.Response(200, json={"id": body["id"], "result": result, "error": error})


@pytest.fixture
def fake() -> FakeTryton:
    return FakeTryton()


@pytest.fixture
def client(fake: FakeTryton) -> TrytonClient:
    c = TrytonClient("http://tryton.test", "ltc", transport=httpx.MockTransport(fake),
                     policy=RetryPolicy(max_attempts=4, sleep=lambda _s: None))
    c.login("admin", "secret")
    return c


def test_login_sends_session_header_and_context_last(client: TrytonClient, fake: FakeTryton) -> None:
    result = client.model("party.party", "search_read", [["name", "=", "x"]], 0, 5, None, ["name"])
    assert result == {"echo": [[["name", "=", "x"]], 0, 5, None, ["name"],
                               {"company": 1, "companies": [1], "language": "en"}]}
    auth = fake.headers[-1]["Authorization"]
    assert auth == "Session " + base64.b64encode(b"admin:7:tok1").decode()
    assert fake.requests[0]["params"] == ["admin", {"password": "secret"}, "en"]


def test_wrong_password_is_an_auth_error() -> None:
    c = TrytonClient("http://tryton.test", "ltc", transport=httpx.MockTransport(FakeTryton()))
    with pytest.raises(TrytonAuthError, match="login refused or session expired"):
        c.login("admin", "nope")


def test_errors_are_mapped_to_clear_exceptions(client: TrytonClient) -> None:
    with pytest.raises(TrytonUserError) as user_error:
        client.create("sale.sale", [{}])
    assert str(user_error.value) == 'Tryton refused model.sale.sale.create: A value is required for field "Party".'
    with pytest.raises(TrytonConcurrencyError, match="modified in the meanwhile"):
        client.write("sale.sale", [1], {"description": "x"})
    with pytest.raises(TrytonError, match=r"^Tryton model.boom.boom.read failed on the server: KeyError: 'x'$"):
        client.read("boom.boom", [1], ["id"])


def test_reads_are_retried_on_5xx_and_writes_are_not(client: TrytonClient, fake: FakeTryton) -> None:
    assert client.model("busy.busy", "read", [1], ["id"]) == {"echo": [[1], ["id"], client.context]}
    assert [r["method"] for r in fake.requests].count("model.busy.busy.read") == 3
    fake.requests.clear()
    with pytest.raises(ConnectorError, match="answered 503"):  # a write is sent once: never created twice
        client.model("busy.busy", "create", [{}])
    assert [r["method"] for r in fake.requests] == ["model.busy.busy.create"]


def test_a_warning_is_acknowledged_then_the_call_repeated(client: TrytonClient, fake: FakeTryton) -> None:
    client.button("account.invoice", "post", [4])
    assert fake.acks == [[{"user": 7, "name": "invoice_taxes_1", "always": False}]]
    assert [r["method"] for r in fake.requests].count("model.account.invoice.post") == 2
    with pytest.raises(TrytonUserWarning):
        fake.warn_once = True
        client.call("model.account.invoice.post", [5])


def test_an_expired_session_logs_in_again_once(client: TrytonClient, fake: FakeTryton) -> None:
    fake.expire_next = True
    assert client.model("party.party", "search_count", []) == {"echo": [[], client.context]}
    assert fake.sessions == 2
    assert [r["method"] for r in fake.requests][-3:] == [
        "common.db.login", "model.res.user.get_preferences", "model.party.party.search_count"]
    assert fake.headers[-1]["Authorization"] == "Session " + base64.b64encode(b"admin:7:tok2").decode()
