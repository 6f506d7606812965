"""``ltc.yaml``: sources, the ERP that receives pushed orders, mappings, reconciliation, notifications.

The file is optional: with none, defaults make the demo run. ``ltc config check`` validates it and
reports each problem as ``file:line: dotted.path: what is wrong``.

Secrets never live in the file. A credential is a reference: ``{env: SF_PASSWORD}`` (an
environment variable) or ``{secret: sf-password}`` (a Prefect Secret block), resolved at run time
and never logged.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from canonical.errors import ConfigError, yaml_problem, yaml_text
from canonical.money import SANE_BOUND, normalize_currency

DEFAULT_PATH = "ltc.yaml"
SOURCE_KINDS = ("salesforce", "hubspot", "tryton", "odoo", "stripe", "camt053", "zoho", "jiandaoyun")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(_Model):
    """Where a credential comes from: an environment variable, a file, or a Prefect Secret block.

    ``file:`` is a container's or a service manager's way: a Docker or Kubernetes secret mounted as a file
    (``/run/secrets/stripe_key``), a systemd credential (``$CREDENTIALS_DIRECTORY/…``; ``$VAR`` and ``~`` are
    expanded). Unlike an environment variable it is not in ``/proc/<pid>/environ`` or ``docker inspect``. One
    trailing line end is not part of the value (``echo`` and editors add it).

    ``value:`` (the credential itself, in the file) is only for the local emulators' throwaway
    credentials (``ltc sandbox start --write-config``): a source whose ``base_url`` is not on this
    machine refuses it."""

    env: str | None = None
    file: str | None = None
    secret: str | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SecretRef:
        if sum(1 for v in (self.env, self.file, self.secret, self.value) if v) != 1:
            raise ValueError("give exactly one of `env: VARIABLE`, `file: /run/secrets/name` or "
                             "`secret: prefect-block-name`")
        return self

    def resolve(self) -> str:
        """The secret's value. Raises ConfigError naming the variable or block (never the value)."""
        if self.value:
            return self.value
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set (a credential ltc.yaml refers to)")
            return value
        if self.file:
            return _secret_file(self.file)
        from prefect.blocks.system import Secret  # only the shell touches Prefect

        assert self.secret is not None
        try:
            block: Any = Secret.load(self.secret)  # sync call outside an event loop
            return str(block.get())
        except Exception as exc:
            raise ConfigError(f"cannot load Prefect Secret block {self.secret!r}: {exc}") from None

    def describe(self) -> str:
        if self.file:
            return f"file:{self.file}"
        return f"env:{self.env}" if self.env else f"secret:{self.secret}" if self.secret else "value:(in the file)"


def _secret_file(name: str) -> str:
    """A credential file's value (its one trailing line end dropped); ConfigError naming the file, never its content."""
    path = Path(os.path.expanduser(os.path.expandvars(name)))
    if "$" in str(path):
        raise ConfigError(f"credential file {name}: an environment variable in it is not set")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"credential file {path} does not exist (a credential ltc.yaml refers to)") from None
    except OSError as exc:
        raise ConfigError(f"credential file {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > 64 * 1024:
        raise ConfigError(f"credential file {path} holds {len(data):,} bytes: not a credential (at most 64 KiB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"credential file {path} is not UTF-8 text") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value.strip():
        raise ConfigError(f"credential file {path} is empty")
    return value


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def cron_line(text: str) -> bool:
    """Whether ``text`` is a cron line (five fields); ValueError when it is one that does not parse."""
    if len(text.split()) != 5:
        return False
    from cronsim import CronSim, CronSimError

    try:
        CronSim(text, datetime.now(UTC))
    except CronSimError as exc:
        raise ValueError(f"schedule {text!r} is not a valid cron line: {exc}") from None
    return True


def parse_duration(text: str | int | None) -> timedelta | None:
    """``"24h"``, ``"30m"``, ``"7d"``, ``"90s"`` -> a timedelta; ``off``/``null``/``0`` -> None."""
    if text is None or text == 0 or (isinstance(text, str) and text.strip().lower() in ("off", "never", "0", "")):
        return None
    m = _DURATION.match(str(text))
    if m is None:
        raise ValueError(f"expected a duration such as 24h, 30m, 7d or off, got {text!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why an http(s) URL cannot be requested as written (a bracket or port that does not parse, no host), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed on access: out of range or not a number raises
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if not parts.hostname:
        return f"{url!r} names no host"
    if port == 0:
        return f"{url!r}: port 0 is no port a server listens on"
    if any(c.isspace() for c in parts.netloc):
        return f"{url!r}: a host with a space in it"
    return None


def insecure_urls(source: SourceConfig) -> list[str]:
    """The source's plain http:// URLs that leave this machine (base_url, options.login_url, and
    Zoho's options.accounts_url, where the client secret goes)."""
    urls = [source.base_url, source.options.get("login_url"), source.options.get("accounts_url")]
    return [u for u in urls if isinstance(u, str) and u.lower().startswith("http://") and not is_loopback(u)]


class SourceWeb(_Model):
    """The source's web UI, for links from the report and the work queue to each record.

    ``url``: the web client's base URL (default: the vendor's, or ``base_url`` for Salesforce, Tryton
    and Odoo). ``portal_id``: the HubSpot account (hub) id. ``test_mode``: Stripe test-mode dashboard.
    ``database``: the Tryton database (default ``options.database``).
    """

    url: str | None = None
    portal_id: str | None = None
    test_mode: bool = False
    database: str | None = None

    @field_validator("url")
    @classmethod
    def _web_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"web.url must start with http:// or https://, got {v!r}")
        return v

    @field_validator("portal_id", mode="before")
    @classmethod
    def _portal(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


class SourceConfig(_Model):
    kind: Literal["salesforce", "hubspot", "tryton", "odoo", "stripe", "camt053", "zoho", "jiandaoyun"]
    base_url: str | None = None
    credentials: dict[str, SecretRef] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    streams: list[str] | None = None
    lookback_minutes: int = Field(default=10, ge=0)
    page_size: int | None = Field(default=None, ge=1)
    mapping: str | None = None  # path of a mapping file that overrides or extends the shipped one
    # plain http:// to another host sends credentials and data in clear: refused unless this is set
    allow_insecure_http: bool = False
    # how often the deep completeness check compares the id sets of source and store ("off": never)
    deep_check_every: str | None = "24h"
    # the share of a stream's live records one deep check may tombstone (beyond 20 records): more looks
    # like a source listing cut short, and the check tombstones nothing and ends the stream incomplete
    deep_delete_max_share: float = Field(default=0.1, ge=0, le=1)
    # how far the source's clock may lag ours: the sync cursor stays this far behind each run's start
    clock_skew_seconds: int = Field(default=0, ge=0)
    # the decimal separator of amounts the source sends as text ("1.234,56" needs ","); unset:
    # amount text with a comma that is not plainly thousands grouping is quarantined, never guessed
    decimal_separator: Literal[".", ","] | None = None
    web: SourceWeb = Field(default_factory=lambda: SourceWeb())  # where a person opens this source's records
    # how often this source is synced (an interval such as 1h, or a cron line in UTC): `ltc status`
    # says whether its data is fresh or late; unset, prefect.yaml's deployment schedule is used
    schedule: str | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_alias(cls, v: Any) -> Any:
        return "jiandaoyun" if v == "jdy" else v  # 简道云's usual short name

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://", "file://")):
            raise ValueError(f"base_url must start with http:// or https://, got {v!r}")
        why = url_problem(v) if v is not None and not v.startswith("file://") else None
        if why is not None:
            raise ValueError(why)
        return v

    @field_validator("deep_check_every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Any:
        if v is False:
            return None
        parse_duration(v)
        return None if v is None else str(v)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            v = f"{v}s"
        text = str(v).strip()
        if cron_line(text):
            return text
        try:
            interval = parse_duration(text)
        except ValueError:
            interval = None
        if interval is None:
            raise ValueError(f"{text!r}: give an interval such as 1h or 15m, or a cron line such as '0 * * * *'")
        return text

    @model_validator(mode="after")
    def _tls(self) -> SourceConfig:
        literal = sorted(k for k, ref in self.credentials.items() if ref.value)
        if literal and not (self.base_url and is_loopback(self.base_url)):
            raise ValueError(f"credentials.{literal[0]}: a credential written in the file (`value:`) is only for "
                             "the local sandbox (base_url on 127.0.0.1); use `env: VARIABLE` or "
                             "`secret: prefect-block-name`")
        plain = insecure_urls(self)
        if plain and not self.allow_insecure_http:
            raise ValueError(f"plain http:// to a host that is not this machine ({plain[0]}) sends credentials "
                             "and data unencrypted; use https://, or set allow_insecure_http: true on this source")
        return self

    @property
    def deep_every(self) -> timedelta | None:
        return parse_duration(self.deep_check_every)


class ErpConfig(_Model):
    source: str  # the name of a tryton or odoo source that receives closed-won deals
    dry_run: bool = False


#: reconciliation computes amounts to 4 decimal places and shares to 6 (``reconcile.frames.MONEY``,
#: ``reconcile.stages.expr.tol``): a tolerance finer than that would be cut to zero without a word
_AMOUNT_DECIMALS, _SHARE_DECIMALS = 4, 6


def _amount_setting(name: str, v: Decimal) -> Decimal:
    """An amount in the reconcile settings (``name``: where, when the field's name does not say it): non-negative,
    below any sane amount (canonical.money.SANE_BOUND: what the mapping stage accepts at all) and no finer than
    reconciliation computes."""
    name = f"{name}: " if name else ""
    if v < 0:
        raise ValueError(f"{name}{v} must not be negative")
    if v >= SANE_BOUND:
        raise ValueError(f"{name}{v} is beyond any amount ltc-hub reconciles (below {SANE_BOUND:,})")
    if v.as_tuple().exponent < -_AMOUNT_DECIMALS:  # type: ignore[operator]
        raise ValueError(f"{name}{v}: at most {_AMOUNT_DECIMALS} decimal places (reconciliation computes amounts "
                         f"to {_AMOUNT_DECIMALS})")
    return v


class ReconcileConfig(_Model):
    tolerance_abs: Decimal = Decimal("0.01")
    tolerance_rel: Decimal = Decimal("0.001")
    grace_days_won_not_ordered: int = Field(default=7, ge=0)
    grace_days_ordered_not_invoiced: int = Field(default=30, ge=0)
    grace_days_delivered_not_invoiced: int = Field(default=7, ge=0)
    grace_days_invoiced_not_delivered: int = Field(default=7, ge=0)
    max_subset_invoices: int = Field(default=6, ge=1, le=12)
    # a second bill of one order for the same amount within this many days, billing the order beyond its total
    duplicate_window_days: int = Field(default=7, ge=0, le=90)
    identity_auto_threshold: Decimal = Decimal("0.92")
    identity_review_threshold: Decimal = Decimal("0.80")
    # un-itemised bank charges (docs/reconciliation.md): currency -> the most an invoice may be paid short
    bank_charge_max: dict[str, Decimal] = Field(default_factory=dict)
    bank_charge_rel: Decimal | None = None

    @field_validator("tolerance_abs", "tolerance_rel", "bank_charge_rel", mode="before")
    @classmethod
    def _no_float(cls, v: Any) -> Any:
        if isinstance(v, float):
            raise ValueError("write tolerances as quoted strings (e.g. \"0.01\") so they stay exact")
        return v

    @field_validator("bank_charge_max", mode="before")
    @classmethod
    def _charge_caps(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for ccy, cap in v.items():
            if isinstance(cap, float):
                raise ValueError(f"bank_charge_max.{ccy}: write amounts as quoted strings (e.g. \"25.00\")")
            code = str(ccy).strip().upper()
            if len(code) != 3 or not code.isalpha():
                raise ValueError(f"bank_charge_max: {ccy!r} is not an ISO 4217 currency code")
            out[code] = cap
        return out

    @field_validator("bank_charge_max")
    @classmethod
    def _charge_caps_positive(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = [c for c, cap in v.items() if not cap.is_finite() or cap < 0]
        if bad:
            raise ValueError(f"bank_charge_max: the cap of {', '.join(bad)} must be a non-negative amount")
        for ccy, cap in v.items():
            _amount_setting(f"bank_charge_max.{ccy}", cap)
        return v

    @field_validator("tolerance_abs")
    @classmethod
    def _tolerance_abs(cls, v: Decimal) -> Decimal:
        return _amount_setting("", v)

    @field_validator("tolerance_rel", "bank_charge_rel", "identity_auto_threshold", "identity_review_threshold")
    @classmethod
    def _share(cls, v: Decimal | None) -> Decimal | None:
        if v is None:
            return v
        if not 0 <= v <= 1:
            raise ValueError(f"{v} is not a share between 0 and 1 (0.001 is 0.1 %)")
        if v.as_tuple().exponent < -_SHARE_DECIMALS:  # type: ignore[operator]
            raise ValueError(f"{v}: at most {_SHARE_DECIMALS} decimal places (reconciliation computes shares to "
                             f"{_SHARE_DECIMALS})")
        return v


class PushCrmConfig(_Model):
    """``push_crm``: where the finance status goes (``ltc push-crm``) and where its links point."""

    sources: list[str] | None = None  # CRM sources to write to (default: every salesforce/hubspot source)
    ui_base_url: str | None = None  # the ltc-hub work queue (`ltc ui`): links go to its exception pages
    report_url: str | None = None  # else the published finance report
    deal_link: str | None = None  # link templates: {ui_base_url} {report_url} {fingerprint} {chain_id}
    account_link: str | None = None  # {record_id} {account_id}

    @field_validator("ui_base_url", "report_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {v!r}")
        return v


def _rate_location(v: str) -> str:
    why = url_problem(v) if v.startswith(("http://", "https://")) else None
    if why is not None:
        raise ValueError(why)
    return v


RateLocation = Annotated[str, AfterValidator(_rate_location)]  # an fx.files entry: a path, or a URL that parses


class FxConfig(_Model):
    """``fx``: where FX rates come from (``ltc.app.fx``) and when a rate is stale."""

    files: list[RateLocation] = Field(default_factory=list)  # paths or http(s) URLs: our CSV, ECB CSV/XML/zip
    erp_rates: bool = True  # load the ERP sources' own rate stream (Tryton/Odoo currency rates)
    max_age_days: int = Field(default=7, ge=0)  # newest rate older than this at the as-of: stale


NOTIFY_EVENTS = ("run_failed", "run_paused", "completeness_gap", "quarantine", "new_exceptions", "digest")
SEVERITIES = ("low", "medium", "high", "critical")


class NotifyTarget(_Model):
    """One place alerts go: an apprise URL (``slack://``, ``feishu://``, ``wecombot://``, ``workflows://``
    for Microsoft Teams, ``mailto://``, ``json://``) written out or, since webhook keys are secrets, a
    ``{env: VAR}`` / ``{secret: block}`` reference. With only ``url`` it gets every event; ``events``,
    ``codes``, ``min_severity`` and ``owners`` narrow it (codes and owners narrow the exceptions of the
    ``new_exceptions`` and ``digest`` events)."""

    url: str | SecretRef
    name: str | None = None  # shown in logs instead of the (secret) URL
    events: list[Literal["run_failed", "run_paused", "completeness_gap", "quarantine", "new_exceptions",
                         "digest"]] | None = None
    codes: list[str] | None = None
    min_severity: Literal["low", "medium", "high", "critical"] | None = None
    owners: list[str] | None = None

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, v: str | SecretRef) -> str | SecretRef:
        if isinstance(v, str) and "://" not in v:
            raise ValueError(f"expected an apprise URL such as slack://..., feishu://..., wecombot://..., "
                             f"json://host/path, or {{env: VAR}} / {{secret: block}}; got {v[:12]!r}...")
        return v

    def label(self, index: int) -> str:
        """How logs and messages name this target: its name, else its scheme and position (never the URL)."""
        if self.name:
            return self.name
        if isinstance(self.url, SecretRef):
            return f"target {index + 1} ({self.url.describe()})"
        return f"target {index + 1} ({self.url.split('://', 1)[0]}://…)"


class NotificationsConfig(_Model):
    """``notifications``: the targets, and when the quarantine of a run is worth an alert."""

    targets: list[NotifyTarget] = Field(default_factory=list)
    quarantine_threshold: int = Field(default=50, ge=0)  # records quarantined in one run above which to alert
    report_url: str | None = None  # where people open the finance report (else the report's file path)

    @model_validator(mode="before")
    @classmethod
    def _old_list_form(cls, v: Any) -> Any:
        if isinstance(v, list):
            raise ValueError("notifications is a mapping: `notifications: {targets: [{url: ...}, ...]}`")
        return v


ROLES = ("viewer", "finance", "admin")


class UiUser(_Model):
    """A user of ``ltc ui``: a role and, for form login, a password hash (``ltc ui hash-password``)."""

    role: Literal["viewer", "finance", "admin"] = "viewer"
    password_hash: str | None = None
    name: str | None = None


class UiConfig(_Model):
    """``ltc ui``: users and roles; form login, or a reverse proxy that authenticates (SSO)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=1, le=65535)
    users: dict[str, UiUser] = Field(default_factory=dict)
    # Trust ``proxy_header`` (e.g. X-Forwarded-User) only from these client addresses or networks (10.0.0.5,
    # 10.0.0.0/8: a proxy in a container whose address changes within a range); kept normalized (10.0.0.5/32)
    trusted_proxies: list[str] = Field(default_factory=list)
    proxy_header: str = "X-Forwarded-User"
    proxy_default_role: Literal["viewer", "finance", "admin"] | None = None  # a proxy user not listed in users
    secret: SecretRef | None = None  # signs sessions and CSRF tokens; default: random per process
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    # the path a reverse proxy publishes the work queue under (https://intranet.example.com/ltc/ -> /ltc): links,
    # redirects and the cookies' path carry it; a request is served with it or without it (a proxy that strips it)
    base_path: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, v: list[str]) -> list[str]:
        out = []
        for entry in v:
            try:
                out.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network: give one like 10.0.0.5 or 10.0.0.0/8 "
                                 "(a host name never matches a client's address)") from None
        return out

    @field_validator("base_path")
    @classmethod
    def _base_path(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and (not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", v) or {".", ".."} & set(v.split("/"))):
            raise ValueError(f"{v!r} is not a URL path: give one like /ltc (a leading /; letters, digits, . _ ~ -)")
        return v


class Config(_Model):
    database_url: str | None = None
    reporting_currency: str = "USD"
    reporting_locale: str = "en_US"  # numbers, money and dates in the report (Babel locale, e.g. zh_Hans_CN, de_DE)
    # the company's business day (IANA name): a run without --as-of reconciles as of today there, not in UTC (at
    # 07:00 in Shanghai it is still yesterday in UTC: every invoice's days overdue one short)
    timezone: str = "UTC"
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    erp: ErpConfig | None = None
    reconcile: ReconcileConfig = Field(default_factory=ReconcileConfig)
    fx: FxConfig = Field(default_factory=FxConfig)
    notifications: NotificationsConfig = Field(default_factory=lambda: NotificationsConfig())
    reports_dir: str = ".ltc/reports"  # where `ltc run` and the pipeline flow write the finance report
    ui: UiConfig = Field(default_factory=UiConfig)
    push_crm: PushCrmConfig = Field(default_factory=PushCrmConfig)
    # a stream whose share of quarantined records exceeds this fails the run (`ltc run`, `ltc demo`, the flow)
    quarantine_fail_share: float = Field(default=0.05, ge=0, le=1)
    # apply the identifier fields found in the landed records (`ltc mappings suggest`) automatically
    discover_fields: bool = True

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        return normalize_currency(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; an IANA name, e.g. UTC, Asia/Shanghai, Europe/Berlin") from None
        return v

    def today(self, now: datetime | None = None) -> date:
        """Today in the company's time zone (``now``: that instant instead of the clock's)."""
        from zoneinfo import ZoneInfo

        return (now or datetime.now(UTC)).astimezone(ZoneInfo(self.timezone)).date()

    @field_validator("reporting_locale")
    @classmethod
    def _locale(cls, v: str) -> str:
        from babel import Locale, UnknownLocaleError

        try:
            return str(Locale.parse(v.replace("-", "_")))
        except (ValueError, UnknownLocaleError):
            raise ValueError(f"unknown locale {v!r}; e.g. en_US, de_DE, zh_Hans_CN") from None

    @model_validator(mode="after")
    def _erp_is_a_source(self) -> Config:
        if self.ui.secret is not None and self.ui.secret.value:
            raise ValueError("ui.secret: use `env: VARIABLE`, `file: /run/secrets/name` or `secret: prefect-block-name`, "
                             "not a value in the file")
        if self.erp is not None:
            src = self.sources.get(self.erp.source)
            if src is None:
                raise ValueError(f"erp.source {self.erp.source!r} is not one of the configured sources")
            if src.kind not in ("tryton", "odoo"):
                raise ValueError(f"erp.source {self.erp.source!r} is a {src.kind} source; it must be tryton or odoo")
        for name in self.push_crm.sources or []:
            src = self.sources.get(name)
            if src is None or src.kind not in ("salesforce", "hubspot"):
                raise ValueError(f"push_crm.sources: {name!r} is not a salesforce or hubspot source of this file")
        return self


class ConfigProblems(ConfigError):
    """ltc.yaml does not validate: ``problems`` holds each one as ``file:line: dotted.path: what``
    (the message joins them on one line; ``ltc config check`` prints one per line)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def duplicate_keys(node: yaml.Node | None, path: tuple[str, ...] = ()) -> list[tuple[int, int, str]]:
    """Each key given twice in one mapping of the document ``node``: (its line, the first one's line, its dotted
    path), in file order."""
    found: list[tuple[int, int, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and name in seen:
                found.append((line, seen[name], ".".join((*path, name))))
            seen.setdefault(name, line)
            found += duplicate_keys(value, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += duplicate_keys(item, (*path, str(i)))
    return sorted(found)


def _line_of(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate ``ltc.yaml`` (``LTC_CONFIG`` or ``./ltc.yaml``); absent file -> defaults."""
    explicit = path is not None or "LTC_CONFIG" in os.environ
    p = Path(path or os.environ.get("LTC_CONFIG") or DEFAULT_PATH)
    if not p.exists():
        if explicit:
            raise ConfigError(f"configuration file {p} does not exist")
        return Config()
    try:
        text = yaml_text(p)
    except ValueError as exc:  # not UTF-8 (a Windows editor's "ANSI"): said with the line
        raise ConfigError(str(exc)) from None
    except OSError as exc:  # a directory, a file this user may not read
        raise ConfigError(f"configuration file {p} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(p, exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}:1: the top level must be a mapping of settings")
    twice = duplicate_keys(node)
    if twice:  # YAML keeps the last and drops the first without a word: a second `reconcile:` block, say
        raise ConfigProblems([f"{p}:{line}: {where}: given again (first at line {first}); YAML keeps only the last "
                              "one, without a word: keep one" for line, first, where in twice])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
            dotted = ".".join(str(x) for x in loc) or "(top level)"
            line = _line_of(node, loc)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{p}:{line}: {dotted}: {msg}")
        raise ConfigProblems(problems) from None
    if not Path(cfg.reports_dir).is_absolute():  # relative paths are relative to this file, not the cwd
        cfg.reports_dir = str(p.parent / cfg.reports_dir)
    cfg.fx.files = [f if f.startswith(("http://", "https://")) or Path(f).is_absolute() else str(p.parent / f)
                    for f in cfg.fx.files]
    for src in cfg.sources.values():
        if src.mapping is not None and not Path(src.mapping).is_absolute():
            src.mapping = str(p.parent / src.mapping)
    return cfg
