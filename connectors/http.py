"""The one HTTP retry layer (tenacity), for httpx, requests and urllib3 based clients alike.

* 429, 5xx and transport errors are retried with exponential backoff and full jitter, at most
  ``max_attempts`` times; a ``Retry-After`` header (seconds or an HTTP date) wins over the backoff,
  clamped to ``max_wait_s``.
* Any other 4xx fails at once with a :class:`~connectors.errors.ConnectorError` whose message says
  what to fix (the vendor's ``hint`` hook adds e.g. the missing scope of a 403).
* Before each attempt the system's :class:`~connectors.governor.RateGovernor` hands out a token;
  after it, the vendor's rate headers are fed back to the governor (``observe`` hook).
* URLs in messages are stripped of their query string, and no header is ever echoed: secrets
  (API keys in query strings, bearer tokens) never reach a log or an error.

Prefect task retries stay coarse and skip these errors' fatal kinds, so the layers do not multiply.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import orjson
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from canonical import db
from connectors.errors import (
    AuthenticationError,
    ConnectorError,
    NotFound,
    PermissionDenied,
    RetryableError,
    Unreachable,
)
from connectors.governor import RateGovernor

log = logging.getLogger("connectors.http")
T = TypeVar("T")

Hint = Callable[[int, Mapping[str, str], Any], str | None]
"""Vendor hook: (status, headers, parsed body) -> an admin-facing sentence, or None."""
Observe = Callable[[Mapping[str, str]], None]
"""Vendor hook: feed rate-limit headers of every response to the governor."""
RetryBody = Callable[[int, Any], bool]
"""Vendor hook: (status, parsed error body) -> whether this error answer is a rate limit to retry
(Jiandaoyun answers its frequency limit as HTTP 400 with ``code`` 8303)."""
ShouldRetry = Callable[[int, Mapping[str, str]], bool | None]
"""Vendor hook: the server's own verdict on retrying this error response (e.g. Stripe's
``Stripe-Should-Retry`` header): True/False overrides the status-based rule, None keeps it."""


def dumps_exact(value: Any) -> bytes:
    """JSON with Decimals written as number literals of their exact digits (never through a float),
    dates as ISO text: what a JSON API that reads numbers gets from us (Odoo, the emulators)."""
    decimals: list[str] = []

    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            if not o.is_finite():
                raise ValueError(f"cannot write {o} as a JSON number")
            decimals.append(str(o))
            return f"\x00dec{len(decimals) - 1}\x00"
        if isinstance(o, date):
            return o.isoformat()
        raise TypeError(f"cannot write {type(o).__name__} as JSON")

    text = json.dumps(value, default=default)
    if decimals:
        text = re.sub(r'"\\u0000dec(\d+)\\u0000"', lambda m: decimals[int(m.group(1))], text)
    return text.encode()


_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log a warning the first time ``key`` is seen in this process (a vendor header with a bad value
    is ignored; saying so once per header and value is enough)."""
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


def parse_retry_after(value: str | None, *, now: datetime | None = None, cap: float = 300.0) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), clamped to [0, cap]."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(Decimal(value))
        if not math.isfinite(seconds):
            raise ArithmeticError(value)
    except (ArithmeticError, ValueError):  # sNaN does not convert to float; NaN and 1e400 are no wait
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            warn_once(f"Retry-After {value[:40]}", f"ignoring the header Retry-After: {value[:40]!r} (not a "
                      "number of seconds nor an HTTP date); the usual back-off applies")
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, min(seconds, cap))


# Transport failures worth another attempt: refused or reset connections, timeouts, and a body
# cut off mid-stream (requests' ChunkedEncodingError / ContentDecodingError).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TransportError, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def certificate_problem(exc: BaseException) -> str | None:
    """The reason, if ``exc`` (or what caused it) is a failed TLS certificate verification: no
    retry fixes that, only a trusted CA (``ca_file``) does."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return str(cur.verify_message or cur.reason or cur)
        text = str(cur)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            m = re.search(r"certificate verify failed: ([^(\])'\"]+)", text)
            return m.group(1).strip() if m else "certificate verify failed"
        nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]  # requests wraps urllib3's error as an argument
        cur = nxt
    return None


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, RetryableError):
        return True
    return isinstance(exc, TRANSPORT_ERRORS) and certificate_problem(exc) is None


def not_json(system: str, url: str | httpx.URL, status: int, content: bytes, content_type: str | None) -> RetryableError:
    """A 2xx answer whose body is not the JSON the API promises: cut off, or a proxy's HTML page."""
    kind = "an HTML page" if (content_type or "").startswith("text/html") or content.lstrip()[:1] == b"<" \
        else ("an empty body" if not content.strip() else "truncated or invalid JSON")
    return RetryableError(f"{system}: {redact_url(url)} answered {status} with {kind} instead of JSON "
                          "(a proxy or load balancer in the way, or the answer was cut off); check base_url",
                          status=status, in_the_way=kind == "an HTML page")


def redact_url(url: str | httpx.URL) -> str:
    """The URL without its query string (where API keys and tokens hide)."""
    return str(url).split("?", 1)[0]


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 0.5
    max_backoff_s: float = 30.0
    max_wait_s: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    attempts_made: int = field(default=0, init=False)

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait_s)
        backoff = min(self.max_backoff_s, self.base_s * 2 ** (state.attempt_number - 1))
        return random.uniform(0, backoff)  # full jitter

    def call(self, fn: Callable[[], T], *, what: str = "request") -> T:
        """Run ``fn``; retry it while it raises :class:`RetryableError` or a transport error."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s failed (%s); retry %d/%d", what, exc, state.attempt_number, self.max_attempts - 1)

        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=self.wait,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self.attempts_made += 1
                    return fn()
        except RetryableError as exc:
            kind = Unreachable if exc.in_the_way else ConnectorError
            raise kind(f"{what} still failing after {self.max_attempts} attempts: {exc}", status=exc.status) from None
        except TRANSPORT_ERRORS as exc:
            problem = certificate_problem(exc)
            if problem is not None:
                raise Unreachable(
                    f"{what}: certificate not trusted: set ca_file in the source's options to the CA bundle "
                    f"that signed the server's certificate ({problem})"
                ) from None
            raise Unreachable(
                f"{what}: cannot reach the server after {self.max_attempts} attempts "
                f"({type(exc).__name__}); check the base_url and the network{proxy_note()}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover


def proxy_note() -> str:
    """For an unreachable server: the proxies the environment sets (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY; both HTTP
    clients send through them), passwords masked, or nothing. A proxy that is down or refuses looks like the server
    being down."""
    proxies = {k: v for k, v in urllib.request.getproxies_environment().items() if k in ("https", "http", "all")}
    if not proxies:
        return ""
    shown = ", ".join(f"{k}: {db.mask_url(v)}" for k, v in sorted(proxies.items()))
    return f", and the proxy the environment sets ({shown}; NO_PROXY names the hosts reached without it)"


def classify(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    system: str,
    url: str,
    hint: Hint | None = None,
    should_retry: ShouldRetry | None = None,
) -> None:
    """Raise the right error for a non-2xx response; return for a success."""
    if status < 400:
        return
    extra = hint(status, headers, body) if hint else None
    where = f"{system}: {redact_url(url)} answered {status}"
    message = f"{where}: {extra}" if extra else where
    verdict = should_retry(status, headers) if should_retry else None
    if verdict is True or (verdict is None and (status == 429 or status >= 500)):
        raise RetryableError(message, status=status, retry_after=parse_retry_after(headers.get("Retry-After")))
    if verdict is False and (status == 429 or status >= 500):
        raise ConnectorError(f"{message} (the server says this request must not be retried)", status=status)
    if status == 401:
        raise AuthenticationError(
            message if extra else f"{where}: credentials rejected; check the source's credentials in ltc.yaml",
            status=status,
        )
    if status == 403:
        raise PermissionDenied(
            message if extra else f"{where}: permission denied; grant the integration user access to this object",
            status=status,
        )
    if status == 404:
        raise NotFound(message, status=status)
    raise ConnectorError(message, status=status)


def _body(text: str) -> Any:
    try:
        return db.loads_exact(text)
    except ValueError:
        return text[:500]


class HttpClient:
    """httpx client with the retry policy, the governor and the vendor hooks applied to every call."""

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        governor: RateGovernor | None = None,
        policy: RetryPolicy | None = None,
        hint: Hint | None = None,
        observe: Observe | None = None,
        should_retry: ShouldRetry | None = None,
        timeout: float = 60.0,
        verify: Any = True,
        transport: httpx.BaseTransport | None = None,
        retry_body: RetryBody | None = None,
    ):
        self.system = system
        self.governor = governor
        self.policy = policy or RetryPolicy()
        self.hint = hint
        self.observe = observe
        self.should_retry = should_retry
        self.retry_body = retry_body
        self.requests_sent = 0
        if isinstance(verify, str):  # a ca_file: httpx wants an SSL context for it
            verify = ssl.create_default_context(cafile=verify)
        self.client = httpx.Client(
            base_url=base_url, headers=dict(headers or {}), timeout=timeout, verify=verify, transport=transport
        )

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.call(method, url, None, **kwargs)[0]

    def call(self, method: str, url: str, parse: Callable[[bytes], Any] | None, **kwargs: Any
             ) -> tuple[httpx.Response, Any]:
        """One request through the retry layer; with ``parse``, a 2xx body that ``parse`` cannot read
        (truncated JSON, an HTML page from a proxy) is retried like a 5xx, then reported as such."""

        def once() -> tuple[httpx.Response, Any]:
            if self.governor is not None:
                self.governor.acquire()
            self.requests_sent += 1
            response = self.client.request(method, url, **kwargs)
            if self.observe is not None:
                self.observe(response.headers)
            if response.status_code >= 400:
                body = _body(response.text)
                if self.retry_body is not None and self.retry_body(response.status_code, body):
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    if self.governor is not None:
                        self.governor.penalize(retry_after or 1.0)
                    extra = self.hint(response.status_code, response.headers, body) if self.hint else None
                    raise RetryableError(f"{self.system}: {redact_url(str(response.request.url))} answered "
                                         f"{response.status_code}" + (f": {extra}" if extra else ""),
                                         status=response.status_code, retry_after=retry_after)
                try:
                    classify(response.status_code, response.headers, body, system=self.system,
                             url=str(response.request.url), hint=self.hint, should_retry=self.should_retry)
                except RetryableError as exc:
                    if response.status_code == 429 and self.governor is not None:
                        self.governor.penalize(exc.retry_after or 1.0)
                    raise
            if parse is None:
                return response, None
            try:
                return response, parse(response.content)
            except ValueError:
                raise not_json(self.system, response.request.url, response.status_code, response.content,
                               response.headers.get("content-type")) from None

        return self.policy.call(once, what=f"{self.system} {method} {redact_url(url)}")

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        """The response body parsed with exact decimals (``parse_float=Decimal``); an empty 2xx body
        is None, one that is not JSON is retried."""
        return self.call(method, url, _parse_json, **kwargs)[1]


def _parse_json(content: bytes) -> Any:
    return db.loads_exact(content) if content else None


class RetryingSession(requests.Session):
    """A ``requests.Session`` (for simple-salesforce) that goes through the same retry layer.

    Only retryable outcomes are turned into exceptions here; other error responses are returned
    untouched so that the SDK raises its own typed errors, which the connector translates.
    """

    def __init__(
        self,
        system: str,
        *,
        governor: RateGovernor | None = None,
        policy: RetryPolicy | None = None,
        observe: Observe | None = None,
        json_loads: Callable[[bytes], Any] | None = None,
    ):
        super().__init__()
        self.system = system
        self.governor = governor
        self.policy = policy or RetryPolicy()
        self.observe = observe
        # how the client parses its JSON answers (simple-salesforce: Decimal floats): given, the body a 2xx answer
        # is checked with is parsed that way once, and the response's ``json()`` answers with it
        self.json_loads = json_loads
        self.requests_sent = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        def once() -> requests.Response:
            if self.governor is not None:
                self.governor.acquire()
            self.requests_sent += 1
            response = super(RetryingSession, self).request(method, url, *args, **kwargs)
            if self.observe is not None:
                self.observe(response.headers)
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if response.status_code == 429 and self.governor is not None:
                    self.governor.penalize(retry_after or 1.0)
                raise RetryableError(
                    f"{self.system}: {redact_url(str(url))} answered {response.status_code}",
                    status=response.status_code,
                    retry_after=retry_after,
                )
            if 200 <= response.status_code < 300 and _wants_json(kwargs):
                _check_json(self.system, url, response, self.json_loads)
            return response

        return self.policy.call(once, what=f"{self.system} {method!s} {redact_url(str(url))}")


def _wants_json(kwargs: Mapping[str, Any]) -> bool:
    """Whether a request through :class:`RetryingSession` expects a JSON answer (every REST call of
    simple-salesforce does; a Bulk 2.0 result download asks for CSV)."""
    headers = kwargs.get("headers") or {}
    accept = next((str(v) for k, v in headers.items() if k.lower() == "accept"), "")
    return "csv" not in accept


def _check_json(system: str, url: str, response: requests.Response,
                loads: Callable[[bytes], Any] | None = None) -> None:
    """Raise (retryable) if a 2xx body that should be JSON is not: the SDK would fail on it later
    with a JSONDecodeError, outside any retry (and the token call would blame the credentials).

    ``loads``: the client's own parse; the value is kept and ``response.json()`` returns it, so a
    page of records is parsed once, not once here and again by the SDK."""
    content = response.content
    if response.status_code == 204 or not content:
        return
    try:
        value = (loads or orjson.loads)(content)
    except ValueError:  # orjson's and json's decode errors are ValueErrors (and so is a bad UTF-8 byte)
        raise not_json(system, url, response.status_code, content, response.headers.get("Content-Type")) from None
    if loads is not None:
        response.json = lambda **_hooks: value  # type: ignore[method-assign]
