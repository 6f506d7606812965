"""The work queue as a FastAPI application: server-rendered Jinja2 pages and plain HTML forms.

No JavaScript at all (no build step, nothing to load): filters are a GET form, actions are POST
forms answered with a redirect. Every action goes through :func:`reconcile.lifecycle.act`, the
function ``ltc exceptions ...`` calls, and is written to the audit trail with the acting user.

Pages: ``/`` the queue (filter, sort, totals, bulk actions), ``/x/<fingerprint>`` an exception
(chain, records with source links, evidence, history, actions), ``/kpis`` KPIs with their trends
and the sources' freshness, ``/login``. Security: users and roles from ltc.yaml (``ui.users``,
scrypt password hashes) or a trusted proxy's user header; CSRF token on every POST; autoescaped
templates; a strict Content-Security-Policy (no script, no frame); binds 127.0.0.1 by default.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from markupsafe import Markup

from canonical.errors import ConfigError, DatabaseUnavailable, LtcError, StoreProblem, operator_error
from canonical.store import Store
from reconcile import lifecycle
from reports import labels
from reports.finance import build_report
from reports.html import View, charts, environment, kpi_cards
from reports.i18n import LANGUAGES, report_language
from reports.links import SourceLinks
from ui import queries
from ui.auth import CSRF_COOKIE, SESSION_COOKIE, Signer, User, new_csrf_cookie, verify_password

log = logging.getLogger("ltc.ui")

TEMPLATES = Path(__file__).parent / "templates"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
ACTIONS = tuple(lifecycle.ACTIONS)
CSS = Markup((Path(__file__).resolve().parent.parent / "reports" / "templates" / "report.css").read_text(encoding="utf-8"))


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _secret(cfg: Any) -> bytes:
    ref = getattr(cfg.ui, "secret", None)
    if ref is not None:
        return ref.resolve().encode()
    return secrets.token_bytes(32)  # sessions last as long as the process


def check_config(cfg: Any) -> None:
    """Refuse to start a work queue nobody may use, or everybody may."""
    ui = cfg.ui
    if not ui.users and not ui.trusted_proxies:
        raise ConfigError("ltc ui: no users in ltc.yaml (ui.users) and no trusted proxy (ui.trusted_proxies); "
                          "add a user with a password hash from `ltc ui hash-password`")
    for name, u in ui.users.items():
        if u.password_hash is None and not ui.trusted_proxies:
            raise ConfigError(f"ltc ui: user {name!r} has no password_hash and there is no trusted proxy")


@dataclass(frozen=True)
class _Site:
    """Where the browser finds the work queue: under ``ui.base_path`` (``""`` or ``/ltc``, what every link, redirect
    and cookie path starts with), reached directly or through one of ``ui.trusted_proxies``."""

    base: str
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def at(self, path: str) -> str:
        """The URL path the browser uses for the app's ``path``."""
        return self.base + path

    def via_proxy(self, request: Request) -> bool:
        """The request came from a trusted proxy (whose headers are believed)."""
        if request.client is None or not self.proxies:
            return False
        try:
            addr = ipaddress.ip_address(request.client.host)
        except ValueError:  # not an IP address (a Unix socket's peer)
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # ::ffff:10.0.0.5 on a dual-stack socket is 10.0.0.5
        return any(addr in net for net in self.proxies)

    def secure(self, request: Request) -> bool:
        """The browser reached us over HTTPS (directly, or through a trusted proxy that says so): cookies go
        ``Secure``, never sent over plain HTTP."""
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return request.url.scheme == "https" or (self.via_proxy(request) and proto == "https")

    def cookie(self, resp: Response, request: Request, name: str, value: str, **kw: Any) -> None:
        resp.set_cookie(name, value, httponly=True, samesite="strict", secure=self.secure(request),
                        path=self.base or "/", **kw)

    def local_path(self, path: str) -> str | None:
        """The app's path for a path a proxy passed on as the browser sent it (``/ltc/x/…``), or None (stripped)."""
        if self.base and (path == self.base or path.startswith(self.base + "/")):
            return path[len(self.base):] or "/"
        return None


def create_app(store: Store, cfg: Any, *, lang: str | None = None) -> FastAPI:
    """The work queue on ``store`` with the users and sources of ``cfg`` (an ``ltc.app.config.Config``)."""
    check_config(cfg)
    signer = Signer(_secret(cfg))
    links = SourceLinks.from_config(cfg)
    default_lang = report_language(lang, cfg.reporting_locale)[0]
    app = FastAPI(title="ltc work queue", docs_url=None, redoc_url=None, openapi_url=None)
    ui = cfg.ui
    site = _Site(ui.base_path, tuple(ipaddress.ip_network(p) for p in ui.trusted_proxies))
    app.state.base_path = base = site.base
    at, cookie = site.at, site.cookie

    def language(request: Request) -> str:
        asked = request.query_params.get("lang") or request.cookies.get("ltc_lang")
        return asked if asked in LANGUAGES else default_lang

    def user_of(request: Request) -> User | None:
        if site.via_proxy(request):
            name = _utf8(request.headers.get(ui.proxy_header) or "", ui.proxy_header).strip()
            if name:
                known = ui.users.get(name)
                role = known.role if known else ui.proxy_default_role
                if role is None:
                    raise Denied(403, f"user {name!r} has no role in ltc.yaml (ui.users)")
                return User(name=name, role=role, via="proxy")
        session = signer.session_user(request.cookies.get(SESSION_COOKIE))
        if session and session in ui.users:
            return User(name=session, role=ui.users[session].role, via="session")
        return None

    def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        lg = language(request)
        lg, loc = report_language(lg, cfg.reporting_locale)
        v = View(lg, loc)
        env = environment(lg, str(TEMPLATES))
        csrf_cookie = request.cookies.get(CSRF_COOKIE) or new_csrf_cookie()
        user: User | None = ctx.pop("user", None)
        html = env.get_template(template).render(
            v=v, f=v.f, lang=lg, languages=LANGUAGES, css=CSS, user=user, request_path=request.url.path, base=base,
            csrf=signer.csrf(csrf_cookie, user.name if user else ""), **ctx)
        resp = HTMLResponse(html, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != csrf_cookie:
            cookie(resp, request, CSRF_COOKIE, csrf_cookie)
        if request.query_params.get("lang") in LANGUAGES:
            cookie(resp, request, "ltc_lang", lg)
        return resp

    async def form(request: Request) -> dict[str, list[str]]:
        body = (await request.body()).decode("utf-8", errors="replace")
        return parse_qs(body, keep_blank_values=True)

    def one(data: dict[str, list[str]], key: str) -> str:
        return (data.get(key) or [""])[0]

    def require(request: Request, data: dict[str, list[str]], *, act: bool = True) -> User:
        user = user_of(request)
        if user is None:
            raise Denied(401, "log in first")
        if not signer.csrf_ok(request.cookies.get(CSRF_COOKIE), user.name, one(data, "csrf")):
            raise Denied(403, "the form expired or came from another site (CSRF check failed): reload the page")
        if act and not user.can_act:
            raise Denied(403, f"{user.name} is a {user.role}: viewers cannot change exceptions")
        return user

    if base:
        @app.middleware("http")
        async def under_base(request: Request, call_next: Any) -> Response:
            """A proxy that passes on the path as the browser sent it (``/ltc/x/…``): served as ``/x/…``; one that
            strips ``ui.base_path`` first needs nothing."""
            local = site.local_path(request.scope["path"])
            if local is not None:
                request.scope["path"] = local
            response: Response = await call_next(request)
            return response

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        resp: Response = await call_next(request)
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> Response:
        if exc.status == 401 and request.method == "GET":
            return RedirectResponse(at("/login?") + urlencode({"next": str(request.url.path)}), status_code=303)
        return render(request, "error.html.j2", status=exc.status, message=str(exc), user=None)

    async def store_trouble(request: Request, exc: Exception) -> Response:
        """A store that cannot take the request (down, locked, read-only, full, a row it cannot read): a page with
        the one line an operator acts on, 503 while it is the store's condition, and that line in the log;
        anything else stays a bug (500, its traceback in the server's log)."""
        problem = operator_error(exc)
        if problem is None:
            raise exc
        log.error("%s %s: %s", request.method, request.url.path, problem)
        status = 503 if isinstance(problem, StoreProblem | DatabaseUnavailable) else 500
        return render(request, "error.html.j2", status=status, message=str(problem), user=None)

    for kind in (LtcError, sa.exc.DBAPIError, OSError):
        app.add_exception_handler(kind, store_trouble)

    def viewer(request: Request) -> User:
        user = user_of(request)
        if user is None:
            raise Denied(401, "log in first")
        return user

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> HTMLResponse:
        return render(request, "login.html.j2", error=None, next=_safe_next(request.query_params.get("next")))

    @app.post("/login")
    async def login(request: Request) -> Response:
        data = await form(request)
        nxt = _safe_next(one(data, "next"))
        if not signer.csrf_ok(request.cookies.get(CSRF_COOKIE), "", one(data, "csrf")):
            return render(request, "login.html.j2", status=403, error="csrf", next=nxt)
        name = one(data, "username").strip()
        known = ui.users.get(name)
        if known is None or not verify_password(one(data, "password"), known.password_hash):
            return render(request, "login.html.j2", status=401, error="bad", next=nxt)
        resp = RedirectResponse(at(nxt), status_code=303)
        cookie(resp, request, SESSION_COOKIE, signer.session(name, ui.session_hours), max_age=ui.session_hours * 3600)
        cookie(resp, request, CSRF_COOKIE, new_csrf_cookie())
        return resp

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        data = await form(request)
        require(request, data, act=False)
        resp = RedirectResponse(at("/login"), status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path=base or "/")
        return resp

    @app.get("/", response_class=HTMLResponse)
    def queue_page(request: Request) -> HTMLResponse:
        user = viewer(request)
        f = queries.Filters.parse(dict(request.query_params))
        q = queries.queue(store, f, today=cfg.today())  # snoozes end on the company's day (ltc.yaml timezone)
        return render(request, "queue.html.j2", user=user, q=q, flt=f, codes=list(labels.CODE_TITLES),
                      qs=lambda **kw: urlencode(f.query(**kw)), notice=request.query_params.get("done"))

    @app.get("/x/{fingerprint}", response_class=HTMLResponse)
    def exception_page(request: Request, fingerprint: str) -> HTMLResponse:
        user = viewer(request)
        x = queries.exception(store, fingerprint, links)
        if x is None:
            return render(request, "error.html.j2", status=404, user=user,
                          message=f"no exception {fingerprint[:40]!r}")
        return render(request, "exception.html.j2", user=user, x=x, today=cfg.today(),
                      notice=request.query_params.get("done"), error=request.query_params.get("error"))

    def _apply(user: User, ids: list[str], data: dict[str, list[str]]) -> list[dict[str, Any]]:
        action = one(data, "action")
        if action not in ACTIONS:
            raise Denied(400, f"unknown action {action[:40]!r}")
        if action == "reopen" and not user.is_admin:
            raise Denied(403, "only an admin reopens a resolved exception")
        until = None
        if action == "snooze" and one(data, "until"):
            try:
                until = date.fromisoformat(one(data, "until"))
            except ValueError:
                raise LtcError(f"{one(data, 'until')[:20]!r} is not a date") from None
        return lifecycle.act(store, ids, action, user.name, note=one(data, "note"), owner=one(data, "owner"),
                             until=until, today=cfg.today())

    @app.post("/x/{fingerprint}/act")
    async def act_one(request: Request, fingerprint: str) -> Response:
        data = await form(request)
        user = require(request, data)
        target = at(f"/x/{fingerprint}")
        try:
            res = _apply(user, [fingerprint], data)
        except LtcError as exc:
            return RedirectResponse(target + "?" + urlencode({"error": str(exc)}), status_code=303)
        if res[0]["skipped"]:
            return RedirectResponse(target + "?" + urlencode({"error": res[0]["skipped"]}), status_code=303)
        return RedirectResponse(target + "?" + urlencode({"done": one(data, "action")}), status_code=303)

    @app.post("/bulk")
    async def bulk(request: Request) -> Response:
        data = await form(request)
        user = require(request, data)
        flt = queries.Filters.parse({k[2:]: v[0] for k, v in data.items() if k.startswith("f_") and v})
        ids = queries.filtered_ids(store, flt, today=cfg.today()) if one(data, "scope") == "filtered" else data.get("fp", [])
        back = at("/?") + urlencode(flt.query())
        if not ids:
            return RedirectResponse(back, status_code=303)
        try:
            res = _apply(user, ids, data)
        except LtcError as exc:
            return render(request, "error.html.j2", status=400, user=user, message=str(exc))
        done = sum(1 for r in res if not r["skipped"])
        return RedirectResponse(back + ("&" if flt.query() else "") + urlencode(
            {"done": f"{one(data, 'action')}:{done}:{len(res) - done}"}), status_code=303)

    @app.get("/kpis", response_class=HTMLResponse)
    def kpis_page(request: Request) -> HTMLResponse:
        user = viewer(request)
        lg, loc = report_language(language(request), cfg.reporting_locale)
        v = View(lg, loc)
        report = build_report(store, cfg, chains=False)
        return render(request, "kpis.html.j2", user=user, r=report, cards=kpi_cards(report, v),
                      charts={k: Markup(c) for k, c in charts(report, v).items()}, streams=store.stream_states())

    return app


def _utf8(value: str, header: str) -> str:
    """A header's value as its sender wrote it: Starlette decodes header bytes as Latin-1, a proxy sends a user name
    such as 张三 as UTF-8. Bytes that are no UTF-8 are refused (400), not taken as another user's name."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise Denied(400, f"the {header} header is not UTF-8: the proxy must send user names as UTF-8") from None


def _safe_next(nxt: str | None) -> str:
    """Only a local path is a place to go after login (no open redirect)."""
    if nxt and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return "/"
