"""A 简道云 Jiandaoyun API v5 emulator: one app of user-built forms, with the vendor's shapes and limits.

Served as an ASGI app (:func:`create_app`) by ``sandbox.server``; ``python -m sandbox.jiandaoyun
--port N`` serves it standalone (the benchmark). Every call is ``POST`` with a JSON body and
``Authorization: Bearer <API key>``:

* ``/api/v5/app/entry/list`` ``{app_id, limit, skip}`` -> ``{"forms": [{app_id, entry_id, name}]}``.
* ``/api/v5/app/entry/widget/list`` ``{app_id, entry_id}`` -> ``{"widgets": [{name, widgetName, label,
  type, items (sub-forms)}], "sysWidgets": [{name}], "dataModifyTime"}``.
* ``/api/v5/app/entry/data/list`` ``{app_id, entry_id, data_id, fields, filter, limit}`` -> ``{"data":
  [...]}``, **always in data id order**, the records after ``data_id``; ``limit`` 1–100 (default 10);
  ``fields`` keeps those fields (``_id``, ``appId``, ``entryId`` always); ``filter`` ``{rel: and|or,
  cond: [{field, type, method, value}]}`` with ``eq ne in nin range gt lt empty not_empty like``
  (``range`` includes both ends; a datetime value is ISO 8601 or epoch ms).
* ``/api/v5/app/entry/data/get`` ``{app_id, entry_id, data_id}`` -> ``{"data": {...}}``.

Records carry ``_id`` (24 hex, ids grow with time), ``appId``, ``entryId``, ``creator``/``updater``
(members ``{name, username, status, type, departments}``), ``deleter``, ``createTime``, ``updateTime``,
``deleteTime`` (ISO 8601 UTC with milliseconds) and, on flow forms, ``flowState``; a sub-form is a list
of rows, each with its own ``_id``. Deleting a record removes it (there is no deleted-records list).

Errors are the documented shape, ``{"code": <n>, "msg": "..."}``: HTTP 400 for a bad request (code 1:
an invalid ``limit``, a missing ``app_id``), an unknown app, form or data id; more than ``rate_per_s``
calls in one second is **429** with code 8303 ``超出请求频率限制`` (``limit_status=400`` answers it as the
400 the developer guide's example shows); a missing, unknown or disabled key is **401**. Codes 1 and
8303 are the developer guide's; the other codes (:data:`CODES`) stand in for the vendor's table and
no client should key on them — the messages say what is wrong.

Data: seeded from ``seed``/``size`` (opportunities; customers, contracts with product sub-forms and
collections in proportion), widget names ``_widget_<13 digits>`` and Chinese labels that vary by seed;
or from a world (``jiandaoyun/``: see docs/world.md).
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.http import dumps_exact

API_KEY = "ltc-sandbox-jdy-key-0000000000000000"
APP_ID = "6650a1b2c3d4e5f600000001"
MAX_LIMIT = 100
BASE = datetime(2026, 1, 5, tzinfo=UTC)
SYS_WIDGETS = ("creator", "createTime", "updater", "updateTime", "flowState")
CODES = {"invalid": 1, "rate": 8303, "auth": 8301, "app": 3000, "form": 3001, "data": 3005}
MESSAGES = {"invalid": "The request is invalid.", "rate": "超出请求频率限制", "auth": "Authorization is invalid.",
            "app": "The app does not exist.", "form": "The form does not exist.",
            "data": "The data does not exist."}

# role -> (form name, [(field key, label choices, widget type)], sub-form)
FORMS: dict[str, tuple[str, list[tuple[str, tuple[str, ...], str]]]] = {
    "customers": ("客户", [("name", ("客户名称", "公司名称", "客户全称"), "text"),
                          ("tax_id", ("统一社会信用代码", "税号", "纳税人识别号"), "text"),
                          ("city", ("所在城市", "城市"), "text"),
                          ("owner", ("负责人", "客户负责人"), "user")]),
    "opportunities": ("商机", [("name", ("商机名称", "机会名称", "项目名称"), "text"),
                              ("customer", ("客户", "关联客户", "所属客户"), "linkdata"),
                              ("amount", ("商机金额", "预计金额", "预计成交金额"), "number"),
                              ("stage", ("销售阶段", "商机阶段", "阶段"), "combo"),
                              ("close_date", ("预计成交日期", "预计签单日期"), "datetime")]),
    "contracts": ("合同", [("number", ("合同编号", "合同号"), "sn"),
                          ("customer", ("客户", "签约客户", "甲方"), "linkdata"),
                          ("opportunity", ("关联商机", "商机", "对应商机"), "linkdata"),
                          ("amount", ("合同金额", "合同总额", "签约金额"), "number"),
                          ("signed", ("签订日期", "签约日期", "合同签订日期"), "datetime"),
                          ("status", ("合同状态", "状态"), "combo"),
                          ("items", ("产品明细", "合同明细", "产品清单"), "subform")]),
    "collections": ("回款", [("number", ("回款编号", "回款单号"), "sn"),
                            ("contract", ("关联合同", "合同", "对应合同"), "linkdata"),
                            ("amount", ("回款金额", "本次回款金额", "实收金额"), "number"),
                            ("date", ("回款日期", "收款日期", "到账日期"), "datetime"),
                            ("method", ("回款方式", "付款方式"), "combo")]),
}
ITEMS: list[tuple[str, tuple[str, ...], str]] = [
    ("product", ("产品名称", "产品", "商品名称"), "text"), ("qty", ("数量", "购买数量"), "number"),
    ("price", ("单价", "销售单价"), "number"), ("subtotal", ("小计", "金额", "行金额"), "number")]
STAGES = ("初步接洽", "需求确认", "方案报价", "商务谈判", "赢单", "输单")
CITIES = ("上海", "北京", "深圳", "杭州", "成都", "苏州")
COMPANIES = ("华信", "远航", "金桥", "博达", "新锐", "恒通", "天宇", "中科", "瑞丰", "东升")
PRODUCTS = (("智能网关", Decimal("12800.00")), ("数据采集终端", Decimal("3650.00")),
            ("年度运维服务", Decimal("24000.00")), ("实施服务", Decimal("8800.00")))


def jdy_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class JdyError(Exception):
    def __init__(self, status: int, kind: str, detail: str | None = None):
        super().__init__(kind)
        self.status, self.kind, self.detail = status, kind, detail

    def response(self) -> Response:
        msg = MESSAGES[self.kind] + (f" {self.detail}" if self.detail else "")
        return Response(json.dumps({"code": CODES[self.kind], "msg": msg}, ensure_ascii=False), self.status,
                        media_type="application/json")


def _member(name: str, username: str) -> dict[str, Any]:
    return {"name": name, "username": username, "status": 1, "type": 0, "departments": [1]}


class Form:
    """One form: its widget list and its records in ``_id`` order."""

    def __init__(self, entry_id: str, name: str, widgets: list[dict[str, Any]], flow: bool = False):
        self.entry_id, self.name, self.widgets, self.flow = entry_id, name, widgets, flow
        self.records: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.modified = BASE
        self.rendered: dict[str, bytes] = {}  # record id -> its JSON (rendered once, as served)

    def render(self, rid: str) -> bytes:
        out = self.rendered.get(rid)
        if out is None:
            out = self.rendered[rid] = dumps_exact(self.records[rid])
        return out

    def put(self, rec: dict[str, Any]) -> None:
        rid = str(rec["_id"])
        if rid not in self.records:
            bisect.insort(self.order, rid)
        self.records[rid] = rec
        self.rendered.pop(rid, None)
        stamp = parse_time(rec.get("updateTime"))
        if stamp is not None and stamp > self.modified:
            self.modified = stamp

    def remove(self, rid: str) -> None:
        if self.records.pop(rid, None) is not None:
            self.order.remove(rid)
            self.rendered.pop(rid, None)


class JdyEmulator:
    """One Jiandaoyun app in memory, served as :attr:`app`."""

    def __init__(self, seed: int = 7, size: int = 100, *, world: Mapping[str, Any] | None = None,
                 api_key: str = API_KEY, app_id: str = APP_ID, rate_per_s: int | None = 30,
                 limit_status: int = 429, latency_ms: float = 0.0, roles: Iterable[str] | None = None):
        self.api_key, self.app_id = api_key, app_id
        self.rate_per_s, self.limit_status, self.latency_ms = rate_per_s, limit_status, latency_ms
        self.forms: dict[str, Form] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.http_429 = 0
        self.clock: Callable[[], float] = time.time
        self._window = (0, 0)  # (second, calls in it)
        self._lock = threading.Lock()
        self._counter = 0
        self._rng = random.Random(seed)
        self.roles: dict[str, str] = {}  # role -> entry id (generated data)
        self.labels: dict[str, dict[str, str]] = {}  # role -> field key -> widget name
        if world is not None:
            self.app_id = str(world.get("app_id") or app_id)
            for spec in world.get("forms") or []:
                form = Form(str(spec["entry_id"]), str(spec.get("name") or spec["entry_id"]),
                            list(spec.get("widgets") or []), bool(spec.get("flow")))
                for rec in spec.get("records") or []:
                    form.put(dict(rec))
                self.forms[form.entry_id] = form
        else:
            self.populate(size, roles=roles)
        self.app = Starlette(routes=[
            Route("/api/v5/app/entry/list", self._endpoint(self.entry_list), methods=["POST"]),
            Route("/api/v5/app/entry/widget/list", self._endpoint(self.widget_list), methods=["POST"]),
            Route("/api/v5/app/entry/data/list", self._endpoint(self.data_list), methods=["POST"]),
            Route("/api/v5/app/entry/data/get", self._endpoint(self.data_get), methods=["POST"]),
        ])

    # --- data ----------------------------------------------------------------------------------------
    def new_id(self, when: datetime) -> str:
        """A 24-hex ObjectId: the seconds since the epoch, then a counter (ids grow with time)."""
        self._counter += 1
        return f"{int(when.timestamp()):08x}{self._counter:016x}"

    def widget_name(self) -> str:
        """``_widget_<13 digits>``: a creation time in milliseconds, as Jiandaoyun names widgets."""
        return f"_widget_{1_615_357_357_351 + self._rng.randrange(10**9):013d}"

    def _make_form(self, role: str) -> Form:
        name, fields = FORMS[role]
        widgets: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        for key, labels, wtype in fields:
            wname = self.widget_name()
            names[key] = wname
            widget: dict[str, Any] = {"name": wname, "widgetName": wname, "label": self._rng.choice(labels),
                                      "type": wtype}
            if wtype == "subform":
                items = []
                for ikey, ilabels, itype in ITEMS:
                    iname = self.widget_name()
                    names[f"items.{ikey}"] = iname
                    items.append({"name": iname, "widgetName": iname, "label": self._rng.choice(ilabels), "type": itype})
                widget["items"] = items
            widgets.append(widget)
        form = Form(self.new_id(BASE)[:8] + f"{len(self.forms) + 1:016x}", name, widgets, flow=role == "contracts")
        self.forms[form.entry_id] = form
        self.roles[role], self.labels[role] = form.entry_id, names
        return form

    def populate(self, size: int, *, roles: Iterable[str] | None = None) -> None:
        """``size`` opportunities; a customer per three, a contract (with 1–3 product rows) per won
        opportunity, one or two collections per contract. ``roles`` seeds only those forms."""
        wanted = set(roles or FORMS)
        forms = {role: self._make_form(role) for role in FORMS if role in wanted}
        rng = self._rng
        sales = _member("王芳", "wangfang")
        t = BASE

        def stamp() -> datetime:
            nonlocal t
            t += timedelta(seconds=rng.randrange(1, 90), milliseconds=rng.randrange(1000))
            return t

        def record(role: str, values: dict[str, Any], flow: bool = False) -> str:
            form = forms[role]
            when = stamp()
            rid = self.new_id(when)
            rec = {"_id": rid, "appId": self.app_id, "entryId": form.entry_id, "creator": sales, "updater": sales,
                   "deleter": None, "createTime": jdy_time(when), "updateTime": jdy_time(when), "deleteTime": None,
                   **{self.labels[role][k]: v for k, v in values.items()}}
            if flow:
                rec["flowState"] = 1
            form.put(rec)
            return rid

        customers: list[str] = []
        n_customers = max(1, size // 3)
        if "customers" in forms:
            for i in range(n_customers):
                name = f"{rng.choice(CITIES)}{rng.choice(COMPANIES)}{'科技' if i % 2 else '实业'}有限公司"
                customers.append(record("customers", {"name": name, "tax_id": _uscc(rng), "city": rng.choice(CITIES),
                                                      "owner": sales}))
        for i in range(size):
            customer = customers[i % len(customers)] if customers else None
            stage = STAGES[rng.randrange(len(STAGES))] if i % 2 else "赢单"
            lines = [(p, price, Decimal(rng.randrange(1, 6))) for p, price in rng.sample(PRODUCTS, rng.randrange(1, 4))]
            amount = sum((price * qty for _, price, qty in lines), Decimal("0"))
            close = BASE + timedelta(days=rng.randrange(0, 300))
            local_midnight = datetime(close.year, close.month, close.day, tzinfo=UTC) - timedelta(hours=8)
            opp = None
            if "opportunities" in forms:
                opp = record("opportunities", {"name": f"商机-{i + 1:05d}", "customer": customer, "amount": amount,
                                               "stage": stage, "close_date": jdy_time(local_midnight)})
            if stage != "赢单" or "contracts" not in forms:
                continue
            items = [{"_id": self.new_id(t), self.labels["contracts"]["items.product"]: p,
                      self.labels["contracts"]["items.qty"]: qty, self.labels["contracts"]["items.price"]: price,
                      self.labels["contracts"]["items.subtotal"]: price * qty} for p, price, qty in lines]
            contract = record("contracts", {"number": f"HT{2026_0000 + i + 1}", "customer": customer,
                                            "opportunity": opp, "amount": amount, "status": "执行中",
                                            "signed": jdy_time(local_midnight), "items": items}, flow=True)
            if "collections" not in forms:
                continue
            parts = [amount] if i % 3 else [(amount / 2).quantize(Decimal("0.01")),
                                            amount - (amount / 2).quantize(Decimal("0.01"))]
            for k, part in enumerate(parts):
                paid = local_midnight + timedelta(days=20 + 15 * k)
                record("collections", {"number": f"HK{2026_0000 + i * 2 + k + 1}", "contract": contract,
                                       "amount": part, "date": jdy_time(paid), "method": "银行转账"})

    def form(self, role_or_entry: str) -> Form:
        return self.forms[self.roles.get(role_or_entry, role_or_entry)]

    def add(self, form: str, values: dict[str, Any], *, when: datetime | None = None) -> dict[str, Any]:
        """A new record (system fields filled in, stamped ``when`` or now)."""
        f = self.form(form)
        at = when or datetime.fromtimestamp(self.clock(), tz=UTC)
        member = _member("王芳", "wangfang")
        rec = {"_id": self.new_id(at), "appId": self.app_id, "entryId": f.entry_id, "creator": member,
               "updater": member, "deleter": None, "createTime": jdy_time(at), "updateTime": jdy_time(at),
               "deleteTime": None, **values}
        f.put(rec)
        return rec

    def modify(self, form: str, rid: str, **values: Any) -> dict[str, Any]:
        f = self.form(form)
        rec = {**f.records[rid], **values, "updateTime": jdy_time(datetime.fromtimestamp(self.clock(), tz=UTC))}
        f.put(rec)
        return rec

    def delete(self, form: str, rid: str) -> None:
        self.form(form).remove(rid)

    # --- HTTP ------------------------------------------------------------------------------------------
    def _endpoint(self, handler: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                body = None
            self.requests.append((request.url.path, body if isinstance(body, dict) else {}))
            try:
                if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
                    raise JdyError(401, "auth")
                self._count_call()
                if not isinstance(body, dict):
                    raise JdyError(400, "invalid", "The body must be a JSON object.")
                if self.latency_ms:
                    import asyncio

                    await asyncio.sleep(self.latency_ms / 1000)
                answer = handler(body)
                content = answer if isinstance(answer, bytes) else dumps_exact(answer)
                return Response(content, 200, media_type="application/json")
            except JdyError as exc:
                return exc.response()

        return endpoint

    def _count_call(self) -> None:
        if self.rate_per_s is None:
            return
        with self._lock:
            second = int(self.clock())
            at, n = self._window
            n = n + 1 if at == second else 1
            self._window = (second, n)
            if n > self.rate_per_s:
                self.http_429 += 1
                raise JdyError(self.limit_status, "rate")

    def _form_of(self, body: Mapping[str, Any]) -> Form:
        app_id, entry_id = body.get("app_id"), body.get("entry_id")
        if not isinstance(app_id, str) or not app_id or not isinstance(entry_id, str) or not entry_id:
            raise JdyError(400, "invalid", "app_id and entry_id are required.")
        if app_id != self.app_id:
            raise JdyError(400, "app")
        form = self.forms.get(entry_id)
        if form is None:
            raise JdyError(400, "form")
        return form

    def entry_list(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("app_id") != self.app_id:
            raise JdyError(400, "app" if body.get("app_id") else "invalid")
        limit, skip = int(body.get("limit") or 100), int(body.get("skip") or 0)
        forms = list(self.forms.values())[skip:skip + limit]
        return {"forms": [{"app_id": self.app_id, "entry_id": f.entry_id, "name": f.name} for f in forms]}

    def widget_list(self, body: dict[str, Any]) -> dict[str, Any]:
        form = self._form_of(body)
        sys_widgets = [{"name": n} for n in SYS_WIDGETS if n != "flowState" or form.flow]
        return {"widgets": form.widgets, "sysWidgets": sys_widgets, "dataModifyTime": jdy_time(form.modified)}

    def data_get(self, body: dict[str, Any]) -> dict[str, Any]:
        form = self._form_of(body)
        rec = form.records.get(str(body.get("data_id") or ""))
        if rec is None:
            raise JdyError(400, "data")
        return {"data": rec}

    def data_list(self, body: dict[str, Any]) -> dict[str, Any] | bytes:
        form = self._form_of(body)
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise JdyError(400, "invalid", f"limit must be a number from 1 to {MAX_LIMIT}.")
        after = body.get("data_id")
        start = bisect.bisect_right(form.order, str(after)) if after else 0
        match = _filter(body.get("filter"))
        fields = body.get("fields")
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            raise JdyError(400, "invalid", "fields must be a list of field names.")
        out: list[dict[str, Any]] = []
        ids: list[str] = []
        for rid in form.order[start:] if match is not None else form.order[start:start + limit]:
            rec = form.records[rid]
            if match is not None and not match(rec):
                continue
            if fields is not None:
                out.append({k: rec.get(k) for k in ("_id", "appId", "entryId", *fields) if k in rec})
            ids.append(rid)
            if len(ids) >= limit:
                break
        if fields is not None:
            return {"data": out}
        return b'{"data": [' + b", ".join(form.render(rid) for rid in ids) + b"]}"


def _filter(spec: Any) -> Callable[[Mapping[str, Any]], bool] | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or spec.get("rel", "and") not in ("and", "or") \
            or not isinstance(spec.get("cond"), list):
        raise JdyError(400, "invalid", "filter is {rel: and|or, cond: [...]}.")
    conds = [_cond(c) for c in spec["cond"]]
    if spec.get("rel", "and") == "or":
        return lambda rec: any(c(rec) for c in conds)
    return lambda rec: all(c(rec) for c in conds)


def _cond(c: Any) -> Callable[[Mapping[str, Any]], bool]:
    if not isinstance(c, Mapping) or not isinstance(c.get("field"), str) or not isinstance(c.get("method"), str):
        raise JdyError(400, "invalid", "a filter condition needs field and method.")
    name, method, values = c["field"], c["method"], c.get("value") or []
    is_time = c.get("type") == "datetime" or name in ("createTime", "updateTime", "deleteTime")
    try:
        conv: Callable[[Any], Any] = parse_time if is_time else (lambda v: v)
        vals = [None if v is None else conv(v) for v in values]
    except (TypeError, ValueError):
        raise JdyError(400, "invalid", f"filter value of {name} is not a {'datetime' if is_time else 'value'}.") \
            from None

    def get(rec: Mapping[str, Any]) -> Any:
        v = rec.get(name)
        return parse_time(v) if is_time and v is not None else v

    if method == "range":
        lo, hi = [*vals, None, None][:2]
        return lambda r: (v := get(r)) is not None and (lo is None or v >= lo) and (hi is None or v <= hi)
    if method in ("gt", "lt"):
        ref = vals[0] if vals else None
        return lambda r: (v := get(r)) is not None and ref is not None and (v > ref if method == "gt" else v < ref)
    if method == "eq":
        return lambda r: get(r) == (vals[0] if vals else None)
    if method == "ne":
        return lambda r: get(r) != (vals[0] if vals else None)
    if method in ("in", "nin"):
        if len(vals) > 200:
            raise JdyError(400, "invalid", "in/nin take at most 200 values.")
        return (lambda r: get(r) in vals) if method == "in" else (lambda r: get(r) not in vals)
    if method == "empty":
        return lambda r: get(r) in (None, "", [])
    if method == "not_empty":
        return lambda r: get(r) not in (None, "", [])
    if method == "like":
        needle = str(vals[0]) if vals else ""
        return lambda r: needle in str(get(r) or "")
    raise JdyError(400, "invalid", f"unknown filter method {method!r}.")


def _uscc(rng: random.Random) -> str:
    """A China USCC (统一社会信用代码) with a valid check character (GB 32100-2015)."""
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    body = "91" + f"{rng.choice(('310000', '110000', '440300', '330100')):s}" + "".join(
        rng.choice(chars[:10] + chars[10:]) for _ in range(9))
    total = sum(chars.index(ch) * w for ch, w in zip(body, weights, strict=True))
    return body + chars[(31 - total % 31) % 31]


def create_app(seed: int = 7, size: int = 100, **options: Any) -> Starlette:
    """The ASGI app (``sandbox.registry``/``sandbox.run``): generated data, or ``world=``."""
    return JdyEmulator(seed, size, **options).app


def main() -> None:
    import gc

    import uvicorn

    ap = argparse.ArgumentParser(description="Serve the Jiandaoyun API v5 emulator on 127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--roles", default=None, help="comma-separated forms to seed (default: all)")
    ap.add_argument("--rate-per-s", type=int, default=None, help="calls per second before 429 (default: none)")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--state", default=None, help="write {entry ids by role} as JSON here once serving")
    args = ap.parse_args()
    emu = JdyEmulator(args.seed, args.size, rate_per_s=args.rate_per_s, latency_ms=args.latency_ms,
                      roles=args.roles.split(",") if args.roles else None)
    for form in emu.forms.values():  # the benchmark measures the client: answers are rendered up front
        for rid in form.order:
            form.render(rid)
    if args.state:
        with open(args.state, "w", encoding="utf-8") as fh:
            json.dump({"app_id": emu.app_id, "roles": emu.roles, "labels": emu.labels}, fh)
    gc.freeze()
    uvicorn.run(emu.app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
