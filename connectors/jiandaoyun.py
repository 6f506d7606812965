"""简道云 Jiandaoyun (API v5): user-built forms read as the CRM's customers, opportunities, contracts,
orders and collections (回款).

Jiandaoyun has no fixed objects: an app (``app_id``) holds forms (``entry_id``) whose fields
(*widgets*) the customer built, named ``_widget_1615357357351`` (or an alias) and labelled in Chinese
(``客户名称``, ``合同金额``). So which form is which entity, and which widget is which canonical field,
is configuration (``options.forms``, see :func:`parse_forms`), by widget name or by label; the mapping
is generated from it (:mod:`mappings.jiandaoyun`), and ``ltc mappings suggest --source <name>``
proposes it from the labels and values it finds.

Streams, as declarations: ``widgets`` first — one record per configured form, its widget list
(``POST /api/v5/app/entry/widget/list``: ``widgets`` with ``name``/``label``/``type``, sub-form
``items``; ``sysWidgets``; ``dataModifyTime``), landed so the mapping resolves labels without calling
the API and a relabelled form is visible — then one stream per form (raw object = the form's key in
``options.forms``).

**Reading a form.** ``POST /api/v5/app/entry/data/list`` with ``{app_id, entry_id, limit, data_id,
filter}``; answers ``{"data": [...]}`` *always in data id order*. ``limit`` is 1–100; the next page
asks ``data_id`` = the last record's ``_id`` (:class:`~connectors.base.LastId`), a short page is the
last. Incremental runs filter ``updateTime`` with ``range`` [window start − lookback, run start]
(inclusive both ends); the high-water mark is the run start, so a record edited while the run pages
(its ``updateTime`` moves past the window) is read by the next run. Records carry the system fields
``_id``, ``appId``, ``entryId``, ``creator``/``updater`` (members), ``createTime``, ``updateTime``
(ISO 8601 UTC, milliseconds) and ``flowState`` (flow forms); a sub-form (子表单) is a list of rows,
each with its own ``_id``.

**Deletes.** Jiandaoyun has no deleted-records endpoint: deletions are found by the engine's deep
check (:func:`connectors.base.deep_check`), which lists every live id of a form (``fields:
["updateTime"]``, id paging) and tombstones the ids the store holds that the form no longer has;
records it finds missing or stale are fetched one by one (``POST /api/v5/app/entry/data/get``).

A committed page (one checkpoint: the records and the ``data_id`` to resume after, in one transaction)
holds up to ``pages_per_commit`` API pages (default 5, 500 records); a worker thread reads the next
batch (one at most, :class:`~connectors.base.PageAhead`: memory stays flat) while the engine commits,
and a run that stopped resumes after its last checkpoint.

**Limits and errors.** 30 requests/s per interface (the whole platform: 50/s): one governor per
tenant (a :class:`~connectors.governor.Pacer`: calls in slots 1/29.4 s apart) paces calls just under it. An error is HTTP 400 ``{"code": <n>, "msg": "..."}``; the frequency
limit is ``code`` 8303 (documented as a 400) or HTTP 429 — both retried through the one retry layer
after the governor empties its bucket. An unknown or disabled API key is one line naming
``credentials.api_key``; an unknown app or form names ``options.app_id`` / ``forms.<form>.entry_id``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from canonical.errors import ConfigError
from connectors.base import Connector, LastId, Page, PageAhead, StreamSpec, Window, parse_instant
from connectors.errors import AuthenticationError, ConnectorError
from connectors.governor import Pacer, RateGovernor, governor_for
from connectors.http import HttpClient, RetryPolicy

DEFAULT_BASE_URL = "https://api.jiandaoyun.com"
API = "/api/v5/app/entry"
MAX_LIMIT = 100
RATE_PER_S = 30.0  # per interface (开发指南: 30 次/秒)
RATE_LIMIT_CODE = 8303  # 超出请求频率限制
WIDGETS = "widgets"

# a form's role -> the canonical entity it maps to by default
ROLES: dict[str, str] = {
    "customers": "account", "contacts": "contact", "opportunities": "deal", "quotes": "quote",
    "contracts": "contract", "orders": "order", "invoices": "invoice", "collections": "payment",
    "deliveries": "delivery",
}
# the line entity of an entity whose form has a sub-form, and the field that points at the parent
LINES: dict[str, tuple[str, str]] = {
    "deal": ("deal_line", "deal_id"), "quote": ("quote_line", "quote_id"), "order": ("order_line", "order_id"),
    "invoice": ("invoice_line", "invoice_id"), "delivery": ("delivery_line", "delivery_id"),
}
SYSTEM_FIELDS = ("_id", "appId", "entryId", "creator", "updater", "deleter", "createTime", "updateTime",
                 "deleteTime", "flowState")


@dataclass
class FormSurvey:
    """What the app shows about one form: its name, widget list and a sample of its records."""

    entry_id: str
    name: str
    widgets: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class LinesConfig:
    """A sub-form read as lines: ``widget`` (the sub-form, by name or label) and its item widgets."""

    widget: str
    fields: dict[str, str]


@dataclass(frozen=True)
class FormConfig:
    """One form of ``options.forms``: ``key`` is the stream and raw object name."""

    key: str
    entry_id: str
    entity: str
    fields: dict[str, str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    lines: LinesConfig | None = None
    currency: str | None = None


def _where(name: str, *parts: str) -> str:
    return ".".join((f"sources.{name}.options", *parts))


def parse_forms(name: str, options: Mapping[str, Any]) -> list[FormConfig]:
    """``options.forms`` -> form configurations; a bad one is a one-line ConfigError naming it::

        forms:
          customers:                     # a role (customers, contacts, opportunities, quotes, contracts,
            entry_id: 5f0c...            #   orders, invoices, collections, deliveries) or any key + entity:
            fields: {name: 客户名称, tax_id: 统一社会信用代码}
          opportunities:
            entry_id: 5f0d...
            fields: {name: 商机名称, account_id: 客户, amount: 商机金额, stage: 销售阶段, close_date: 预计成交日期}
            values: {stage: {赢单: closed_won, 输单: closed_lost}}
            lines: {widget: 产品明细, fields: {product_name: 产品, quantity: 数量, unit_price: 单价, amount: 小计}}
    """
    forms = options.get("forms")
    if not isinstance(forms, Mapping) or not forms:
        raise ConfigError(f"{_where(name, 'forms')} is required: which form is customers / opportunities / "
                          "contracts / orders / collections, e.g. {customers: {entry_id: ..., fields: {name: 客户名称}}}")
    return [_form(name, str(key), spec) for key, spec in forms.items()]


def _form(name: str, key: str, spec: Any) -> FormConfig:
    """One form of ``options.forms``, checked in the order its keys are explained."""
    _check_form_keys(name, key, spec)
    entry_id = spec.get("entry_id")
    if not isinstance(entry_id, str) or not entry_id.strip():
        raise ConfigError(f"{_where(name, 'forms', key, 'entry_id')} is required (the form's id: 表单 ID)")
    entity = _form_entity(name, key, spec)
    fields = _form_fields(name, key, spec, entity)
    values = spec.get("values") or {}
    if not isinstance(values, Mapping) or not all(isinstance(v, Mapping) for v in values.values()):
        raise ConfigError(f"{_where(name, 'forms', key, 'values')} must map a field to {{source value: canonical value}}")
    lines = _form_lines(name, key, spec["lines"], entity) if spec.get("lines") is not None else None
    currency = spec.get("currency")
    return FormConfig(key, entry_id.strip(), entity, fields,
                      {str(k): {str(a): str(b) for a, b in v.items()} for k, v in values.items()},
                      lines, str(currency) if currency else None)


def _check_form_keys(name: str, key: str, spec: Any) -> None:
    """A form is a mapping of known keys, under a key that is not reserved."""
    if key == WIDGETS or key.startswith("_"):
        raise ConfigError(f"{_where(name, 'forms', key)}: {key!r} is reserved (the forms' widget lists); "
                          "name the form by its role or another key")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{_where(name, 'forms', key)} must be a mapping with entry_id and fields")
    unknown = set(spec) - {"entry_id", "entity", "fields", "values", "lines", "currency"}
    if unknown:
        raise ConfigError(f"{_where(name, 'forms', key)}: unknown key {sorted(unknown)[0]!r}; known: entry_id, "
                          "entity, fields, values, lines, currency")


def _form_entity(name: str, key: str, spec: Mapping[str, Any]) -> str:
    """The form's canonical entity: ``entity:``, else its role's (a line entity is a sub-form's)."""
    from canonical import model

    entity = str(spec.get("entity") or ROLES.get(key) or "")
    if entity not in model.ENTITIES or entity.endswith("_line"):
        raise ConfigError(f"{_where(name, 'forms', key)}: entity {entity or '(none)'!r} is not a canonical entity; "
                          f"name the form by its role ({', '.join(ROLES)}) or set entity:")
    return entity


def _form_fields(name: str, key: str, spec: Mapping[str, Any], entity: str) -> dict[str, str]:
    """``fields:`` (canonical field -> widget), each a field of the entity or an attribute."""
    known = set(_fields_of(entity))
    fields = _str_map(name, spec.get("fields") or {}, key, "fields")
    if not fields:
        raise ConfigError(f"{_where(name, 'forms', key, 'fields')} is required: canonical field -> widget name or label")
    bad = sorted(f for f in fields if f not in known and not f.startswith("attributes."))
    if bad:
        raise ConfigError(f"{_where(name, 'forms', key, 'fields', bad[0])}: {entity} has no field {bad[0]!r}; "
                          f"known: {', '.join(sorted(known))} (or attributes.<name>)")
    return fields


def _form_lines(name: str, key: str, raw: Any, entity: str) -> LinesConfig:
    """``lines:``, the sub-form read as the entity's lines (only entities with lines have one)."""
    if entity not in LINES:
        raise ConfigError(f"{_where(name, 'forms', key, 'lines')}: a {entity} has no lines in the canonical model; "
                          f"lines belong to {', '.join(LINES)} forms (e.g. entity: order for a contract with products)")
    if not isinstance(raw, Mapping) or not isinstance(raw.get("widget"), str):
        raise ConfigError(f"{_where(name, 'forms', key, 'lines')} needs widget: <the sub-form's name or label> "
                          "and fields:")
    line_fields = _str_map(name, raw.get("fields") or {}, key, "lines.fields")
    line_known = set(_fields_of(LINES[entity][0]))
    bad = sorted(f for f in line_fields if f not in line_known and not f.startswith("attributes."))
    if bad:
        raise ConfigError(f"{_where(name, 'forms', key, 'lines', 'fields', bad[0])}: {LINES[entity][0]} has no "
                          f"field {bad[0]!r}; known: {', '.join(sorted(line_known))}")
    return LinesConfig(raw["widget"], line_fields)


def _fields_of(entity: str) -> list[str]:
    import dataclasses

    from canonical import model

    skip = {"id", "source_system", "source_object", "source_id", "raw_id", "deleted_at", "attributes"}
    return [f.name for f in dataclasses.fields(model.ENTITIES[entity]) if f.name not in skip]


def _str_map(name: str, value: Any, key: str, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) and v for v in value.values()):
        raise ConfigError(f"{_where(name, 'forms', key, what)} must map canonical fields to widget names or labels (text)")
    return {str(k): str(v) for k, v in value.items()}


# --- widgets ------------------------------------------------------------------------------------------

def resolve_widget(ref: str, widgets: Sequence[Mapping[str, Any]]) -> str | None:
    """The widget ``name`` that ``ref`` means: a name (``_widget_…`` or an alias) or a unique label."""
    names = {str(w.get("name")) for w in widgets}
    if ref in names:
        return ref
    by_label = [str(w.get("name")) for w in widgets if str(w.get("label") or "").strip() == ref.strip()]
    return by_label[0] if len(by_label) == 1 else None


MEMBER_TYPES = {"user", "usergroup", "dept", "deptgroup"}


def _widget_path(source: str, key: str, ref: str, widgets: Sequence[Mapping[str, Any]], what: str) -> str:
    """The record path that config value ``ref`` names: a system field, a widget (by name or label),
    optionally followed by ``.sub`` (``客户.name``); member widgets are read by their ``name``."""
    head, _, rest = ref.partition(".")
    if ref in SYSTEM_FIELDS or head in SYSTEM_FIELDS:
        return ref
    name = resolve_widget(ref, widgets)
    if name is None and rest:
        name = resolve_widget(head, widgets)
    else:
        rest = ""
    if name is None:
        labels = ", ".join(f"{w.get('label')} ({w.get('name')})" for w in widgets)
        raise ConfigError(f"sources.{name_of(source, key)}.{what}: no widget named or labelled {ref!r} in this form "
                          f"(or the label is not unique); widgets: {labels or 'none'}")
    kind = next((str(w.get("type")) for w in widgets if w.get("name") == name), "")
    if not rest and kind in MEMBER_TYPES:
        rest = "name"
    return f"{name}.{rest}" if rest else name


def name_of(source: str | None, key: str) -> str:
    return f"{source}.options.forms.{key}"


def resolve_form(source: str, form: FormConfig, widget_list: Mapping[str, Any]) -> dict[str, Any]:
    """The form's configured fields as record paths (and its lines' sub-form and item paths);
    a widget the form does not have is a one-line ConfigError naming the config key."""
    widgets = list(widget_list.get("widgets") or [])
    fields = {f: _widget_path(source, form.key, ref, widgets, f"fields.{f}") for f, ref in form.fields.items()}
    out: dict[str, Any] = {"fields": fields, "lines": None}
    if form.lines is not None:
        sub = resolve_widget(form.lines.widget, widgets)
        spec = next((w for w in widgets if w.get("name") == sub), None)
        if spec is None or spec.get("type") != "subform":
            subforms = ", ".join(f"{w.get('label')} ({w.get('name')})" for w in widgets if w.get("type") == "subform")
            raise ConfigError(f"sources.{name_of(source, form.key)}.lines.widget: {form.lines.widget!r} is not a sub-form "
                              f"(子表单) of this form; sub-forms: {subforms or 'none'}")
        items = list(spec.get("items") or [])
        out["lines"] = {"each": sub, "fields": {
            f: _widget_path(source, form.key, ref, items, f"lines.fields.{f}") for f, ref in form.lines.fields.items()}}
    return out


def _said(exc: ConnectorError) -> str:
    """What the server said (its ``msg``), without the URL the error message starts with."""
    return str(exc).split(" answered ", 1)[-1].split(": ", 1)[-1].lower()


def jdy_time(value: datetime) -> str:
    """An instant as Jiandaoyun writes it: ISO 8601 UTC with milliseconds and ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jdy_hint(status: int, headers: Mapping[str, str], body: Any) -> str | None:
    """Jiandaoyun's ``{"code", "msg"}`` error, with what to check."""
    if not isinstance(body, Mapping) or ("code" not in body and "msg" not in body):
        return None
    text = f"{body.get('msg') or 'no message'} (code {body.get('code')})"
    if status in (401, 403):
        return f"{text}; the API key was refused: check credentials.api_key (开放平台 > 密钥管理, enabled, with access to the app)"
    return text


Batch = tuple[list[dict[str, Any]], str | None]  # records, and the id the next batch starts after


class JiandaoyunConnector(Connector):
    kind = "jiandaoyun"

    def __init__(self, name: str, *, api_key: str, app_id: str, forms: Sequence[FormConfig],
                 base_url: str = DEFAULT_BASE_URL, limit: int = MAX_LIMIT, rate_per_s: float = RATE_PER_S,
                 tenant: str | None = None, lookback: timedelta = timedelta(minutes=10),
                 streams: Sequence[str] | None = None, read_ahead: bool = True, pages_per_commit: int = 5,
                 policy: RetryPolicy | None = None, governor: RateGovernor | None = None,
                 timeout: float = 60.0, verify: Any = True):
        super().__init__(name, lookback=lookback)
        if not 1 <= limit <= MAX_LIMIT:
            raise ConfigError(f"sources.{name}.page_size: Jiandaoyun's limit is 1-100, got {limit}")
        if not app_id:
            raise ConfigError(f"sources.{name}.options.app_id is required (the app's id: 应用 ID)")
        self._lock = threading.Lock()
        self.app_id = app_id
        self.forms = {f.key: f for f in forms}
        self.limit = limit
        # paced just under the limit, calls in slots 1/rate apart (no burst a per-second window would refuse)
        rate = rate_per_s * 0.98
        self.governor = governor or governor_for(tenant or name, "jiandaoyun",
                                                 lambda: Pacer(f"jiandaoyun:{name}", 1, 1 / rate))
        self.http = HttpClient("jiandaoyun", base_url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"},
                               governor=self.governor, policy=policy, hint=jdy_hint, retry_body=self._rate_limited,
                               timeout=timeout, verify=verify)
        self.http_429 = 0
        self.pages_per_commit = max(1, pages_per_commit)
        self.read_ahead = read_ahead
        self._batches: PageAhead[Batch] = PageAhead(f"jdy-{name}")
        self._widgets: dict[str, dict[str, Any]] = {}
        specs = [StreamSpec(WIDGETS, "_widgets", primary_key="entry_id", page_size=len(self.forms) or 1,
                            paginator=LastId(), records_path="widgets")]
        specs += [StreamSpec(f.key, f.key, primary_key="_id", cursor_field="updateTime",
                             page_size=limit * self.pages_per_commit,
                             paginator=LastId(), path=f"{API}/data/list", records_path="data",
                             options={"entry_id": f.entry_id}) for f in forms]
        unknown = sorted(set(streams or ()) - {s.name for s in specs})
        if unknown:
            raise ConfigError(f"sources.{name}.streams: unknown stream {unknown[0]!r}; streams: "
                              f"{', '.join(s.name for s in specs)}")
        # the widget lists are always read: the mapping resolves labels with them
        self.streams = tuple(s for s in specs if streams is None or s.name in streams or s.name == WIDGETS)

    def _rate_limited(self, status: int, body: Any) -> bool:
        """The frequency limit: HTTP 429, or 400 with code 8303 (counted in :attr:`http_429`)."""
        hit = status == 429 or (status == 400 and isinstance(body, Mapping) and body.get("code") == RATE_LIMIT_CODE)
        if hit:
            with self._lock:
                self.http_429 += 1
        return hit

    def close(self) -> None:
        self._batches.close()
        self.http.close()

    # --- calls ------------------------------------------------------------------------------------------
    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        """One call; a 400 about the app or the form names the config key to check."""
        try:
            return self.http.json("POST", path, json=dict(body))
        except AuthenticationError:
            raise
        except ConnectorError as exc:
            said = _said(exc)
            if exc.status == 400 and ("form" in said or "表单" in said) and "entry_id" in body:
                form = next((k for k, f in self.forms.items() if f.entry_id == body["entry_id"]), "?")
                raise ConnectorError(f"{exc}; check sources.{self.name}.options.forms.{form}.entry_id "
                                     f"({body['entry_id']}) and options.app_id ({self.app_id})", status=400) from None
            if exc.status == 400 and ("app" in said or "应用" in said):
                raise ConnectorError(f"{exc}; check sources.{self.name}.options.app_id ({self.app_id})",
                                     status=400) from None
            raise

    def widgets(self, form: FormConfig) -> dict[str, Any]:
        """The form's widget list (``widgets``, ``sysWidgets``, ``dataModifyTime``), once per run."""
        with self._lock:
            have = self._widgets.get(form.entry_id)
        if have is None:
            have = self._post(f"{API}/widget/list", {"app_id": self.app_id, "entry_id": form.entry_id}) or {}
            with self._lock:
                self._widgets[form.entry_id] = have
        return have

    def check_form(self, form: FormConfig) -> None:
        """Every configured widget exists (by name or label): else one line naming the config key."""
        resolve_form(self.name, form, self.widgets(form))

    # --- reading ---------------------------------------------------------------------------------------
    def before_stream(self, stream: StreamSpec) -> None:
        form = self.forms.get(stream.name)
        if form is not None:
            self.check_form(form)

    def _body(self, stream: StreamSpec, window: Window, token: Any, *, fields: list[str] | None = None
              ) -> dict[str, Any]:
        body: dict[str, Any] = {"app_id": self.app_id, "entry_id": stream.options["entry_id"], "limit": self.limit}
        if token:
            body["data_id"] = token
        if fields is not None:
            body["fields"] = fields
        if window.since is not None:
            upper = window.until or datetime.now(UTC)
            body["filter"] = {"rel": "and", "cond": [{"field": "updateTime", "type": "datetime", "method": "range",
                                                      "value": [jdy_time(window.since), jdy_time(upper)]}]}
        return body

    def _list(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list((self._post(f"{API}/data/list", body) or {}).get("data") or [])

    def _batch(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``pages_per_commit`` API pages from ``body``'s position: the records, and the id the next
        batch starts after (None: the last API page was short, the form is read to its end)."""
        records: list[dict[str, Any]] = []
        position = body.get("data_id")
        for _ in range(self.pages_per_commit):
            rows = self._list({**body, "data_id": position} if position else body)
            records += rows
            if len(rows) < self.limit:
                return records, None
            position = str(rows[-1]["_id"])
        return records, position

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        if stream.name == WIDGETS:
            records = [{"entry_id": f.entry_id, "app_id": self.app_id, "form": f.key, **self.widgets(f)}
                       for f in self.forms.values()]
            return Page(records)
        body = self._body(stream, window, token)
        shape = (stream.name, repr({k: v for k, v in body.items() if k != "data_id"}))
        batch = self._batches.take("form", (shape, token), partial(self._batch, body))
        if self.read_ahead and batch[1] is not None:
            # the next batch is read by the worker while the engine commits (ids only move forward)
            self._batches.ahead("form", (shape, batch[1]), partial(self._batch, {**body, "data_id": batch[1]}))
        records, nxt = batch
        high = (window.until, "") if window.until is not None else None
        return Page(records, next_token=nxt, high_water=high)

    def survey(self, sample: int = MAX_LIMIT) -> list[FormSurvey]:
        """Every form of the app with its widget list and its first ``sample`` records (for
        ``ltc mappings suggest``: :mod:`mappings.jiandaoyun_suggest`)."""
        out: list[FormSurvey] = []
        skip = 0
        while True:
            forms = list((self._post(f"{API}/list", {"app_id": self.app_id, "limit": 100, "skip": skip}) or {})
                         .get("forms") or [])
            for f in forms:
                entry = str(f.get("entry_id"))
                widgets = self._post(f"{API}/widget/list", {"app_id": self.app_id, "entry_id": entry}) or {}
                rows = self._list({"app_id": self.app_id, "entry_id": entry, "limit": min(sample, MAX_LIMIT)})
                out.append(FormSurvey(entry, str(f.get("name") or entry), list(widgets.get("widgets") or []), rows))
            if len(forms) < 100:
                return out
            skip += len(forms)

    # --- completeness ------------------------------------------------------------------------------------
    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        """Every live ``_id`` of the form with its ``updateTime`` (id paging, only that field asked)."""
        if stream.name == WIDGETS:
            return None
        out: dict[str, datetime | None] = {}
        token: str | None = None
        while True:
            rows = self._list(self._body(stream, Window(None), token, fields=["updateTime"]))
            for row in rows:
                try:
                    out[str(row["_id"])] = parse_instant(row.get("updateTime"))
                except (ValueError, TypeError):
                    out[str(row["_id"])] = None
            if len(rows) < self.limit:
                return out
            token = str(rows[-1]["_id"])

    def fetch_ids(self, stream: StreamSpec, ids: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for data_id in ids:
            try:
                body = self._post(f"{API}/data/get", {"app_id": self.app_id, "entry_id": stream.options["entry_id"],
                                                      "data_id": data_id})
            except ConnectorError as exc:
                said = _said(exc)
                if exc.status == 400 and ("data" in said or "数据" in said) and ("not exist" in said or "不存在" in said):
                    continue  # deleted since the listing: the deep check tombstones it
                raise
            if isinstance(body, Mapping) and isinstance(body.get("data"), Mapping):
                out.append(dict(body["data"]))
        return out


def from_config(name: str, cfg: Any, *, forms_required: bool = True) -> JiandaoyunConnector:
    """Build from ``ltc.yaml``: ``credentials.api_key`` (``{env: JDY_API_KEY}``), ``options.app_id``,
    ``options.forms`` (:func:`parse_forms`; not needed to survey the app), optional ``base_url`` (default https://api.jiandaoyun.com),
    ``page_size`` (1–100, default 100), ``options.rate_per_s`` (default 30), ``options.tenant``,
    ``options.ca_file``."""
    ref = cfg.credentials.get("api_key")
    if ref is None:
        raise ConfigError(f"sources.{name}.credentials.api_key is required (a Jiandaoyun API key, e.g. {{env: JDY_API_KEY}})")
    options = dict(cfg.options or {})
    unknown = sorted(set(options) - {"app_id", "forms", "rate_per_s", "tenant", "ca_file", "currency", "timezone"})
    if unknown:
        raise ConfigError(f"sources.{name}.options.{unknown[0]}: unknown Jiandaoyun option; known: app_id, forms, "
                          "currency, timezone, rate_per_s, tenant, ca_file")
    app_id = options.get("app_id")
    if not isinstance(app_id, str) or not app_id.strip():
        raise ConfigError(f"sources.{name}.options.app_id is required (the app's id: 应用 ID)")
    forms = parse_forms(name, options) if forms_required or options.get("forms") else []
    try:
        rate = float(options.get("rate_per_s", RATE_PER_S))
    except (TypeError, ValueError):
        raise ConfigError(f"sources.{name}.options.rate_per_s must be a number") from None
    return JiandaoyunConnector(
        name, api_key=ref.resolve(), app_id=app_id.strip(), forms=forms, base_url=cfg.base_url or DEFAULT_BASE_URL,
        limit=cfg.page_size or MAX_LIMIT, rate_per_s=rate, tenant=options.get("tenant"),
        lookback=timedelta(minutes=cfg.lookback_minutes), streams=cfg.streams,
        verify=options.get("ca_file") or True)
