"""The work queue over HTTP (FastAPI's test client), on SQLite and PostgreSQL: who may see and do what,
CSRF, escaping, filters, totals, the exception page, actions through the lifecycle with the actor."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from canonical import tables as ct
from canonical.errors import ConfigError
from canonical.store import Store
from ltc.app.config import Config
from reconcile import lifecycle
from reconcile.engine import run_reconciliation
from reconcile.tables import recon_exception
from sandbox.scenario import generate
from ui import queries
from ui.app import create_app
from ui.auth import hash_password, verify_password

WORLD = generate(50, seed=8)
PASSWORDS = {"fiona": "fiona-secret-1", "victor": "victor-secret-1", "ada": "ada-secret-1"}
HASHES = {n: hash_password(p) for n, p in PASSWORDS.items()}
EVIL = '<script>alert("x")</script>'


def config(**ui: Any) -> Config:
    return Config.model_validate({
        "sources": {"salesforce": {"kind": "salesforce", "base_url": "https://acme.my.salesforce.com"},
                    "tryton": {"kind": "tryton", "base_url": "https://erp.example.com", "options": {"database": "ltc"}}},
        "ui": {"users": {"fiona": {"role": "finance", "password_hash": HASHES["fiona"]},
                         "victor": {"role": "viewer", "password_hash": HASHES["victor"]},
                         "ada": {"role": "admin", "password_hash": HASHES["ada"]}}, **ui},
    })


@pytest.fixture
def world(store: Store) -> Store:
    WORLD.load(store)
    run_reconciliation(store, Config(), WORLD.as_of)
    e = recon_exception.c
    with store.engine.begin() as conn:
        fp = conn.execute(sa.select(e.fingerprint).where(e.code == "UNAPPLIED_PAYMENT")).scalar_one()
        conn.execute(recon_exception.update().where(e.fingerprint == fp).values(owner=EVIL))
    return store


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def login(client: TestClient, user: str) -> None:
    page = client.get("/login")
    r = client.post("/login", data={"username": user, "password": PASSWORDS[user], "csrf": csrf(page.text),
                                    "next": "/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text


PEER = ("10.0.0.7", 50000)  # the test client's address (a proxy's, when trusted)


def client_for(store: Store, user: str | None = None, **ui: Any) -> TestClient:
    c = TestClient(create_app(store, config(**ui)), client=PEER)
    if user:
        login(c, user)
    return c


def test_password_hashes() -> None:
    h = hash_password("correct horse")
    assert h.startswith("scrypt$") and verify_password("correct horse", h)
    assert not verify_password("wrong", h) and not verify_password("x", None) and not verify_password("x", "md5$1")
    assert hash_password("correct horse") != h  # salted


def test_no_users_no_queue(sqlite_store: Store) -> None:
    with pytest.raises(ConfigError, match=r"no users in ltc\.yaml"):
        create_app(sqlite_store, Config())


def test_login_required_and_wrong_password_refused(world: Store) -> None:
    c = client_for(world)
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    page = c.get("/login")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY"
    bad = c.post("/login", data={"username": "fiona", "password": "nope", "csrf": csrf(page.text)})
    assert bad.status_code == 401 and "wrong password" in bad.text
    no_token = c.post("/login", data={"username": "fiona", "password": PASSWORDS["fiona"]})
    assert no_token.status_code == 403
    evil_next = c.post("/login", data={"username": "fiona", "password": PASSWORDS["fiona"], "csrf": csrf(page.text),
                                       "next": "//evil.example/"}, follow_redirects=False)
    assert evil_next.headers["location"] == "/"  # no open redirect


def test_queue_totals_filters_sorting_and_escaping(world: Store) -> None:
    c = client_for(world, "victor")
    page = c.get("/")
    assert page.status_code == 200
    rows = lifecycle.list_exceptions(world)
    total = int(re.search(r'data-total="(\d+)"', page.text).group(1))
    amount = Decimal(re.search(r'data-amount="([^"]+)"', page.text).group(1))
    assert total == len(rows)
    assert amount == sum((r["amount_reporting"] for r in rows if r["amount_reporting"] is not None), Decimal(0))
    # escaped everywhere, never run
    assert EVIL not in page.text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    # default order: amount at risk, largest first
    order = re.findall(r'<tr data-fp="([0-9a-f]{32})">', page.text)
    amounts = {r["fingerprint"]: r["amount_reporting"] or Decimal(-1) for r in rows}
    assert [amounts[f] for f in order] == sorted((amounts[f] for f in order), reverse=True)
    code = c.get("/", params={"code": "INVOICE_OVERDUE"})
    assert re.findall(r'<tr data-fp="([0-9a-f]{32})">', code.text) == [
        r["fingerprint"] for r in rows if r["code"] == "INVOICE_OVERDUE"]
    big = max(amounts.values())
    only_big = c.get("/", params={"min_amount": str(big)})
    assert len(re.findall(r"<tr data-fp=", only_big.text)) == sum(1 for a in amounts.values() if a >= big)
    bank = c.get("/", params={"source": "bank"})
    want = {r["fingerprint"] for r in rows if any(i.startswith("bank:") for i in r["subject_ids"])}
    assert set(re.findall(r'<tr data-fp="([0-9a-f]{32})">', bank.text)) == want and want
    by_age = c.get("/", params={"sort": "code", "dir": "asc"})
    codes = re.findall(r'<span class="code muted">([A-Z_]+) ·', by_age.text)
    assert codes == sorted(codes)
    assert c.get("/", params={"min_age": "3650"}).text.count("<tr data-fp=") == 0


def test_exception_page_shows_chain_records_evidence_history(world: Store) -> None:
    c = client_for(world, "victor")
    x = next(r for r in lifecycle.list_exceptions(world) if r["code"] == "INVOICE_OVERDUE")
    page = c.get(f"/x/{x['fingerprint']}")
    assert page.status_code == 200
    text = page.text
    deal = x["chain_id"].split(":", 2)[2]
    assert f'href="https://acme.my.salesforce.com/lightning/r/Opportunity/{deal}/view"' in text
    invoice = x["subject_ids"][0].split(":", 2)[2]
    assert f'href="https://erp.example.com/#ltc/model/account.invoice/{invoice}"' in text
    assert "rule <span class=\"code\">" in text  # the rule that linked each hop
    assert x["evidence"]["detail"] in text and 'data-action="detected"' in text
    assert "<h2>Actions</h2>" not in text  # a viewer sees no action forms
    assert c.get("/x/" + "0" * 32).status_code == 404


def test_viewer_cannot_act_and_csrf_is_checked(world: Store) -> None:
    fp = lifecycle.list_exceptions(world)[0]["fingerprint"]
    v = client_for(world, "victor")
    token = csrf(v.get(f"/x/{fp}").text)
    r = v.post(f"/x/{fp}/act", data={"action": "comment", "note": "hi", "csrf": token})
    assert r.status_code == 403 and "viewer" in r.text
    f = client_for(world, "fiona")
    no = f.post(f"/x/{fp}/act", data={"action": "comment", "note": "hi"})
    assert no.status_code == 403
    stolen = f.post(f"/x/{fp}/act", data={"action": "comment", "note": "hi", "csrf": token})  # victor's token
    assert stolen.status_code == 403
    anonymous = TestClient(create_app(world, config())).post(f"/x/{fp}/act", data={"action": "comment", "note": "x"})
    assert anonymous.status_code == 401
    assert [t["action"] for t in lifecycle.audit_trail(world, fp)] == ["detected"]


def test_actions_go_through_the_lifecycle_with_the_user(world: Store) -> None:
    rows = lifecycle.list_exceptions(world)
    fp = rows[0]["fingerprint"]
    c = client_for(world, "fiona")
    token = csrf(c.get(f"/x/{fp}").text)
    for data in ({"action": "assign", "owner": "ar-team@example.com"}, {"action": "comment", "note": EVIL},
                 {"action": "acknowledge", "note": ""},
                 {"action": "snooze", "until": (date.today() + timedelta(days=5)).isoformat()}):
        r = c.post(f"/x/{fp}/act", data={**data, "csrf": token}, follow_redirects=False)
        assert r.status_code == 303 and "done=" in r.headers["location"], (data, r.headers["location"])
    bad = c.post(f"/x/{fp}/act", data={"action": "resolve", "note": "", "csrf": token}, follow_redirects=False)
    assert "error=" in bad.headers["location"]  # a resolve needs a note: said on the page
    r = c.post(f"/x/{fp}/act", data={"action": "resolve", "note": "credit note CN-7 issued", "csrf": token},
               follow_redirects=False)
    assert r.status_code == 303
    trail = lifecycle.audit_trail(world, fp)
    assert [(t["action"], t["actor"]) for t in trail[1:]] == [
        ("assign", "fiona"), ("comment", "fiona"), ("acknowledge", "fiona"), ("snooze", "fiona"), ("resolve", "fiona")]
    page = c.get(f"/x/{fp}").text
    assert EVIL not in page and "credit note CN-7 issued" in page and 'data-status="resolved"' in page
    reopen = c.post(f"/x/{fp}/act", data={"action": "reopen", "note": "not fixed", "csrf": token})
    assert reopen.status_code == 403  # only an admin reopens
    a = client_for(world, "ada")
    r = a.post(f"/x/{fp}/act", data={"action": "reopen", "note": "not fixed", "csrf": csrf(a.get(f"/x/{fp}").text)},
               follow_redirects=False)
    assert r.status_code == 303 and lifecycle.audit_trail(world, fp)[-1]["actor"] == "ada"


def test_snoozed_are_hidden_and_bulk_acts_on_the_filtered_set(world: Store) -> None:
    c = client_for(world, "fiona")
    page = c.get("/")
    token = csrf(page.text)
    rows = lifecycle.list_exceptions(world)
    first = rows[0]["fingerprint"]
    lifecycle.act(world, [first], "snooze", "fiona", until=date.today() + timedelta(days=2))
    assert f'data-fp="{first}"' not in c.get("/").text
    assert f'data-fp="{first}"' in c.get("/", params={"snoozed": "1"}).text
    medium = [r["fingerprint"] for r in rows if r["severity"] == "medium" and r["fingerprint"] != first]
    r = c.post("/bulk", data={"csrf": token, "action": "acknowledge", "note": "weekly review", "scope": "filtered",
                              "f_severity": "medium"}, follow_redirects=False)
    assert r.status_code == 303 and f"done=acknowledge%3A{len(medium)}%3A0" in r.headers["location"]
    statuses = {x["fingerprint"]: x["status"] for x in lifecycle.list_exceptions(world)}
    assert all(statuses[f] == "acknowledged" for f in medium)
    assert sum(1 for s in statuses.values() if s == "acknowledged") == len(medium)
    two = [x["fingerprint"] for x in rows if x["severity"] != "medium"][:2]
    r = c.post("/bulk", data={"csrf": token, "action": "assign", "owner": "zoe", "scope": "selected", "fp": two},
               follow_redirects=False)
    assert r.status_code == 303
    assert {x["fingerprint"]: x["assignee"] for x in lifecycle.list_exceptions(world)}[two[1]] == "zoe"
    assert all(lifecycle.audit_trail(world, f)[-1]["actor"] == "fiona" for f in [*medium, *two])


@pytest.mark.parametrize("bad", ["NaN", "sNaN", "-nan", "Infinity", "-Infinity", "inf"])
def test_filters_ignore_an_amount_that_is_no_finite_number(bad: str) -> None:
    f = queries.Filters.parse({"min_amount": bad, "min_age": bad, "page": bad})
    assert (f.min_amount, f.min_age, f.page) == (None, None, 1)
    assert queries.Filters.parse({"min_amount": "1e3"}).min_amount == Decimal(1000)


def test_an_unusable_amount_filter_is_ignored_and_an_id_is_a_literal_prefix(world: Store) -> None:
    """``GET /?min_amount=NaN`` (sNaN, Infinity) was a 500 (``decimal.InvalidOperation`` comparing amounts): ignored
    now, as any malformed filter is. And an action on ``/x/%c862735/act`` acted on the exception whose id ends so
    (ids were LIKE patterns): it is no exception's id."""
    c = client_for(world, "fiona")
    listed = re.findall(r'<tr data-fp="([0-9a-f]{32})">', c.get("/").text)
    for bad in ("NaN", "sNaN", "Infinity", "-Infinity"):
        page = c.get("/", params={"min_amount": bad})
        assert page.status_code == 200 and re.findall(r'<tr data-fp="([0-9a-f]{32})">', page.text) == listed
    fp = listed[0]
    token = csrf(c.get(f"/x/{fp}").text)
    r = c.post(f"/x/{fp[:5]}_{fp[6:10]}/act", data={"action": "comment", "note": "x", "csrf": token},
               follow_redirects=False)
    assert r.status_code == 303 and "no+exception+with+id" in r.headers["location"], r.headers["location"]
    bulk = c.post("/bulk", data={"csrf": token, "action": "comment", "note": "x", "scope": "selected",
                                 "fp": ["%" + fp[-7:]]}, follow_redirects=False)
    assert bulk.status_code == 400 and "no exception with id" in html.unescape(bulk.text)
    assert [t["action"] for t in lifecycle.audit_trail(world, fp)] == ["detected"]


def test_trusted_proxy_header_only_from_the_proxy(world: Store) -> None:
    c = client_for(world, trusted_proxies=["10.0.0.7"], proxy_default_role="viewer")
    page = c.get("/", headers={"X-Forwarded-User": "sso-user@corp"})
    assert page.status_code == 200 and "sso-user@corp" in page.text
    known = c.get("/", headers={"X-Forwarded-User": "fiona"})
    assert "Bulk action" in known.text  # fiona's role from ltc.yaml
    untrusted = client_for(world, trusted_proxies=["10.9.9.9"])
    r = untrusted.get("/", headers={"X-Forwarded-User": "fiona"}, follow_redirects=False)
    assert r.status_code == 303  # the header is ignored: log in first
    strict = client_for(world, trusted_proxies=["10.0.0.7"])
    assert strict.get("/", headers={"X-Forwarded-User": "stranger"}).status_code == 403


def test_kpi_page_and_chinese_pages(world: Store) -> None:
    c = client_for(world, "victor")
    page = c.get("/kpis")
    assert page.status_code == 200 and "Days sales outstanding (DSO)" in page.text and "<svg" in page.text
    zh = c.get("/", params={"lang": "zh"})
    assert "未结异常" in zh.text and "ltc_lang=zh" in zh.headers.get("set-cookie", "")
    assert "工作队列" in c.get("/kpis").text  # the choice is remembered


def test_deleted_records_do_not_break_the_exception_page(world: Store) -> None:
    x = next(r for r in lifecycle.list_exceptions(world) if r["chain_id"])
    deal = ct.table_for("deal")
    with world.engine.begin() as conn:
        conn.execute(deal.delete().where(deal.c.id == x["chain_id"]))
    assert client_for(world, "victor").get(f"/x/{x['fingerprint']}").status_code == 200


def test_snoozes_end_on_the_companys_day(world: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The company's day (ltc.yaml ``timezone``, ``Config.today``), not the server's, decides when a snooze ends in the
    queue, the earliest date the exception page offers, and what the snooze form accepts: a day ahead of UTC here,
    as Asia/Shanghai is every morning before 08:00."""
    ahead = datetime.now(UTC).date() + timedelta(days=1)
    monkeypatch.setattr(Config, "today", lambda self, now=None: ahead)
    c = client_for(world, "fiona")
    first = lifecycle.list_exceptions(world)[0]["fingerprint"]
    lifecycle.act(world, [first], "snooze", "fiona", until=ahead + timedelta(days=1), today=ahead)
    assert f'data-fp="{first}"' not in c.get("/").text
    page = c.get(f"/x/{first}").text
    assert f'min="{ahead.isoformat()}"' in page
    r = c.post(f"/x/{first}/act", data={"action": "snooze", "until": ahead.isoformat(), "csrf": csrf(page)},
               follow_redirects=False)  # the company's today: refused, though it is tomorrow in UTC
    assert r.status_code == 303 and "error=" in r.headers["location"]
    row = next(x for x in lifecycle.list_exceptions(world) if x["fingerprint"] == first)
    assert row["snoozed_until"] == ahead + timedelta(days=1)

    monkeypatch.setattr(Config, "today", lambda self, now=None: ahead + timedelta(days=1))
    assert f'data-fp="{first}"' in c.get("/").text  # the snooze is over on the company's day (not yet in UTC)


@pytest.mark.parametrize("strips", [False, True])
def test_published_under_a_path_by_a_reverse_proxy(world: Store, strips: bool) -> None:
    """``ui.base_path: /ltc`` (https://intranet.example.com/ltc/ through nginx): every link, form, redirect and
    cookie path carries it, whether the proxy passes the path on as is or strips the prefix first; before, the
    links led to the host's root (another application) and a login redirected out of the work queue."""
    app = create_app(world, config(base_path="/ltc/"))

    async def proxy(scope: dict[str, Any], receive: Any, send: Any) -> None:  # nginx's `proxy_pass http://ui/;`
        if scope["type"] == "http" and scope["path"].startswith("/ltc"):
            scope = {**scope, "path": scope["path"].removeprefix("/ltc") or "/"}
        await app(scope, receive, send)

    c = TestClient(proxy if strips else app)

    first = c.get("/ltc/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/ltc/login?next=%2F"
    page = c.get("/ltc/login")
    assert 'action="/ltc/login"' in page.text
    r = c.post("/ltc/login", data={"username": "fiona", "password": PASSWORDS["fiona"], "csrf": csrf(page.text),
                                        "next": "/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ltc/"
    assert all("Path=/ltc;" in h for h in r.headers.get_list("set-cookie"))  # not sent to the host's other apps
    queue = c.get("/ltc/").text
    hrefs = re.findall(r'(?:href|action)="(/[^"]*)"', queue)
    assert hrefs and all(h.startswith("/ltc/") for h in hrefs), [h for h in hrefs if not h.startswith("/ltc/")]
    fp = re.findall(r'data-fp="([0-9a-f]{32})"', queue)[0]
    detail = c.get(f"/ltc/x/{fp}")
    assert f'action="/ltc/x/{fp}/act"' in detail.text
    done = c.post(f"/ltc/x/{fp}/act", data={"action": "comment", "note": "called", "csrf": csrf(detail.text)},
                  follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/ltc/x/{fp}?done=comment"
    out = c.post("/ltc/logout", data={"csrf": csrf(detail.text)}, follow_redirects=False)
    assert out.headers["location"] == "/ltc/login" and "Path=/ltc" in out.headers["set-cookie"]


def test_cookies_are_secure_behind_an_https_proxy_only(world: Store) -> None:
    """Cookies go ``Secure`` when the browser's connection is HTTPS: ``X-Forwarded-Proto: https`` from a trusted proxy
    (never from anyone else, who could otherwise choose the flag); plain HTTP keeps them usable on a laptop."""
    def login_cookies(headers: dict[str, str], trusted: list[str]) -> list[str]:
        page = TestClient(create_app(world, config(trusted_proxies=trusted)), client=PEER).get("/login", headers=headers)
        assert page.status_code == 200 and page.headers.get_list("set-cookie"), page.text
        return page.headers.get_list("set-cookie")

    https = {"X-Forwarded-Proto": "https"}
    assert all("Secure" in h for h in login_cookies(https, ["10.0.0.7"]))
    assert not any("Secure" in h for h in login_cookies(https, []))
    assert not any("Secure" in h for h in login_cookies({}, ["10.0.0.7"]))


@pytest.mark.parametrize("bad", ["ltc", "/ltc?x=1", "//evil.example", "/ltc/../admin", "/l tc"])
def test_a_base_path_that_is_not_a_path_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a URL path: give one like /ltc"):
        config(base_path=bad)


def test_a_store_that_cannot_take_a_write_is_a_page_saying_what_to_fix(tmp_path: Any,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A store opened read-only (an auditor's copy, a file whose permissions changed): an action used to answer
    "Internal Server Error" with nothing said; now 503 with the one line an operator acts on, also in the log."""
    path = tmp_path / "ltc.db"
    store = Store.open(f"sqlite:///{path}")
    WORLD.load(store)
    run_reconciliation(store, Config(), WORLD.as_of)
    fp = lifecycle.list_exceptions(store)[0]["fingerprint"]
    store.close()
    ro = Store.open(f"sqlite:///file:{path}?mode=ro&uri=true")
    c = client_for(ro, "fiona")
    assert c.get("/").status_code == 200  # reading works
    token = csrf(c.get(f"/x/{fp}").text)
    with caplog.at_level("ERROR", logger="ltc.ui"):
        r = c.post(f"/x/{fp}/act", data={"action": "acknowledge", "note": "", "csrf": token}, follow_redirects=False)
    assert r.status_code == 503, r.text[:300]
    assert "the store's database is read-only for this process" in html.unescape(r.text)
    assert "Traceback" not in r.text and r.headers["Content-Security-Policy"]
    assert any("read-only" in m for m in caplog.messages)
    ro.close()


def test_a_bug_stays_a_bug(world: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an operator's problem becomes a page: any other error is a 500 with its traceback in the server's log."""
    def broken(*_: Any, **__: Any) -> None:
        raise sa.exc.ProgrammingError("SELECT x", {}, Exception("no such column: x"))

    monkeypatch.setattr("ui.queries.queue", broken)
    c = client_for(world, "fiona")
    with pytest.raises(sa.exc.ProgrammingError):
        c.get("/")


@pytest.mark.parametrize("flt", [{"min_age": "1"}, {"min_amount": "1"}])
def test_bulk_on_the_filtered_set_keeps_a_filter_of_one(world: Store, flt: dict[str, str]) -> None:
    """"Apply to all N filtered" with ``Older than (days) = 1`` or ``min. amount = 1``: the filter used to be dropped
    from the bulk form (and the sort and page links) as if it were a default, so the bulk action hit every exception;
    it acts on the page's N now."""
    e = recon_exception.c
    with world.engine.begin() as conn:
        old = conn.execute(sa.select(e.fingerprint).order_by(e.fingerprint).limit(3)).scalars().all()
        conn.execute(recon_exception.update().where(e.fingerprint.in_(old)).values(
            first_seen_at=datetime.now(UTC) - timedelta(days=5)))
        if "min_amount" in flt:  # three exceptions at 1 or more, the others below
            conn.execute(recon_exception.update().values(amount_reporting=Decimal("0.50")))
            conn.execute(recon_exception.update().where(e.fingerprint.in_(old)).values(amount_reporting=Decimal(1)))
    c = client_for(world, "fiona")
    page = c.get("/", params=flt).text
    total = int(re.search(r'data-total="(\d+)"', page).group(1))
    assert total == 3
    hidden = dict(re.findall(r'<input type="hidden" name="(f_[a-z_]+)" value="([^"]*)"', page))
    key = next(iter(flt))
    assert hidden.get(f"f_{key}") == "1"
    assert re.search(rf'href="/\?[^"]*{key}=1[^"]*sort=age', page)  # the sort links keep it too
    r = c.post("/bulk", data={"csrf": csrf(page), **hidden, "action": "comment", "note": "weekly review",
                              "scope": "filtered"}, follow_redirects=False)
    assert r.status_code == 303 and f"done=comment%3A{total}%3A0" in r.headers["location"], r.headers["location"]
    assert f"{key}=1" in r.headers["location"]
    commented = {x["fingerprint"] for x in lifecycle.list_exceptions(world)
                 if lifecycle.audit_trail(world, x["fingerprint"])[-1]["action"] == "comment"}
    assert commented == set(old)


def test_bulk_on_the_filtered_set_ends_snoozes_on_the_companys_day(world: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception snoozed until the company's today (a day ahead of UTC, as in Asia/Shanghai before 08:00) is back
    on the page; "apply to all N filtered" used to decide by the UTC day and left it out of the N the page showed."""
    ahead = datetime.now(UTC).date() + timedelta(days=1)
    monkeypatch.setattr(Config, "today", lambda self, now=None: ahead)
    first = lifecycle.list_exceptions(world)[0]["fingerprint"]
    lifecycle.act(world, [first], "snooze", "fiona", until=ahead)  # accepted on the UTC day
    c = client_for(world, "fiona")
    page = c.get("/").text
    assert f'data-fp="{first}"' in page
    total = int(re.search(r'data-total="(\d+)"', page).group(1))
    r = c.post("/bulk", data={"csrf": csrf(page), "action": "comment", "note": "weekly review", "scope": "filtered"},
               follow_redirects=False)
    assert f"done=comment%3A{total}%3A0" in r.headers["location"], r.headers["location"]
    assert lifecycle.audit_trail(world, first)[-1]["reason"] == "weekly review"


def test_a_non_ascii_session_cookie_or_csrf_token_is_no_session_not_a_500(sqlite_store: Store) -> None:
    """``hmac.compare_digest`` raises TypeError on a str with a non-ASCII character: a cookie ``ltc_session=a.é`` or a
    form's ``csrf=é`` was a 500 for anyone; it is no session (log in) and a failed CSRF check now."""
    c = TestClient(create_app(sqlite_store, config()), raise_server_exceptions=False)
    r = c.get("/", headers=[(b"cookie", "ltc_session=a.\u00e9".encode("latin-1"))], follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login"), r.status_code
    c.get("/login")
    r = c.post("/login", data={"username": "fiona", "password": PASSWORDS["fiona"], "csrf": "\u00e9"},
               follow_redirects=False)
    assert r.status_code == 403 and "ltc_session" not in r.headers.get("set-cookie", "")


def test_a_non_ascii_user_name_from_the_proxy_keeps_its_role(sqlite_store: Store) -> None:
    """An SSO proxy sends 张三 as UTF-8; Starlette decodes header bytes as Latin-1, so the finance user 张三 became an
    unknown 'å¼\\xa0ä¸\\x89' with the default role (a viewer). Bytes that are no UTF-8 are refused."""
    users = {**config().ui.model_dump()["users"], "张三": {"role": "finance"}}
    c = client_for(sqlite_store, trusted_proxies=["10.0.0.7"], proxy_default_role="viewer", users=users)
    page = c.get("/", headers=[(b"x-forwarded-user", "张三".encode())])
    assert page.status_code == 200
    who = re.search(r'class="who">([^·]*)·\s*([^\n<]*)', page.text)
    assert who and who.group(1).strip() == "张三" and who.group(2).strip() == "finance", who and who.groups()
    app = c.app

    async def latin1_proxy(scope: dict[str, Any], receive: Any, send: Any) -> None:  # the test client sends UTF-8
        headers = [(k, b"Jos\xe9") if k == b"x-forwarded-user" else (k, v) for k, v in scope.get("headers", [])]
        await app({**scope, "headers": headers}, receive, send)  # type: ignore[operator]

    bad = TestClient(latin1_proxy, client=PEER).get("/", headers={"X-Forwarded-User": "Jose"})  # Latin-1 bytes, not UTF-8
    assert bad.status_code == 400 and "not UTF-8" in html.unescape(bad.text), bad.text[:300]


def test_trusted_proxies_may_be_networks_and_a_host_name_is_refused(sqlite_store: Store) -> None:
    """``ui.trusted_proxies: [10.0.0.0/8]`` (a proxy in a container, its address changing within a range) and a host
    name were accepted and never matched any client: the range is matched now, a host name refused in one line."""
    c = client_for(sqlite_store, trusted_proxies=["192.168.1.1", "10.0.0.0/8"], proxy_default_role="viewer")
    assert "sso-user@corp" in c.get("/", headers={"X-Forwarded-User": "sso-user@corp"}).text
    ipv6 = TestClient(c.app, client=("::ffff:10.1.2.3", 1))  # a dual-stack socket's form of 10.1.2.3
    assert ipv6.get("/", headers={"X-Forwarded-User": "sso-user@corp"}).status_code == 200
    outside = client_for(sqlite_store, trusted_proxies=["10.0.1.0/24"])
    assert outside.get("/", headers={"X-Forwarded-User": "fiona"}, follow_redirects=False).status_code == 303
    assert config(trusted_proxies=[" 10.0.0.7 ", "fd00::/8"]).ui.trusted_proxies == ["10.0.0.7/32", "fd00::/8"]
    with pytest.raises(ValueError, match=r"'proxy\.internal' is not an IP address or network: give one like 10\.0\."):
        config(trusted_proxies=["proxy.internal"])
