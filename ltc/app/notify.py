"""Notifications: what a pipeline run tells people, routed to each target of ``notifications.targets``.

Events (a target without ``events`` gets all of them):

* ``run_failed`` / ``run_paused``: a source failed or paused on its quota — with its message and the fix hint;
* ``completeness_gap``: a stream's source count and store count disagree;
* ``quarantine``: more records quarantined in the run than ``notifications.quarantine_threshold``;
* ``new_exceptions``: open exceptions of high severity (or the target's ``min_severity``) that this
  target was never told about — by fingerprint, remembered in the store (``notify_sent``), so the
  same exception is never announced twice;
* ``digest``: once a day per target (the company's day: ltc.yaml ``timezone``), the finance digest — open exceptions by code and owner, amount
  at risk (unconverted amounts listed apart, never counted as zero), the KPIs and the report link.

Delivery goes through apprise (``slack://``, ``feishu://``, ``wecombot://``, ``workflows://`` for
Microsoft Teams, ``mailto://``, ``json://`` ...). WeCom group bots get a ``markdown`` message, Feishu a
plain ``text`` one (its bot webhook renders no markdown). A target that cannot be reached is logged
(by its name or scheme, never its URL: webhook keys are secrets) and the run goes on — a notifier
never fails the pipeline.

:func:`notify_run` takes a :class:`RunOutcome` or the pipeline's result (``ltc.app.pipeline``: its
sources, status, mapping, kpis, report, held_back are read), :func:`send_test` sends ``ltc notify
test``'s message.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from canonical.errors import ConfigError
from canonical.store import Store
from ltc.app.config import SEVERITIES, Config, NotifyTarget, SecretRef
from ltc.app.notify_tables import notify_sent
from reconcile.codes import CODES
from reconcile.tables import kpi_snapshot, recon_exception

log = logging.getLogger("ltc.notify")

RUN_EVENT_SEVERITY = {"run_failed": "critical", "run_paused": "high", "completeness_gap": "high",
                      "quarantine": "medium", "digest": "low", "new_exceptions": "high", "test": "low"}
MAX_LISTED = 20  # exceptions listed in one message; the rest are counted


@dataclass
class SourceOutcome:
    """How one source fared in the run: ``ok``, ``paused``, ``failed`` or ``skipped``."""

    name: str
    status: str
    message: str | None = None
    hint: str | None = None  # what the operator does about it
    since: datetime | None = None  # when the source last synced completely


@dataclass
class RunOutcome:
    """What the notifier needs to know about a run (the pipeline fills it)."""

    as_of: date
    status: str = "complete"  # complete | partial | failed
    run_id: str | None = None
    sources: list[SourceOutcome] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # e.g. "crm.deals: 300 at the source, 280 in the store"
    quarantined: int = 0  # records quarantined in this run
    kpis: dict[str, str] = field(default_factory=dict)  # label -> formatted value
    report_path: str | None = None
    report_url: str | None = None
    error: str | None = None  # the run itself failed (not one source)
    hint: str | None = None
    held_back: set[str] = field(default_factory=set)  # fingerprints a missing source could explain


@dataclass
class Message:
    event: str
    title: str
    lines: list[str]  # markdown lines
    severity: str
    exceptions: list[dict[str, Any]] = field(default_factory=list)  # rows the routing filters (code, owner)

    def markdown(self) -> str:
        return "\n".join(self.lines)

    def text(self) -> str:
        return "\n".join(_plain(line) for line in self.lines)


@dataclass
class Delivery:
    target: str  # label, never the URL
    event: str
    ok: bool
    error: str | None = None


@dataclass
class NotifyResult:
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def failures(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.ok]

    def __str__(self) -> str:
        if not self.deliveries:
            return "nothing to send"
        return "; ".join(f"{d.event} → {d.target}: " + ("sent" if d.ok else f"FAILED ({d.error})")
                         for d in self.deliveries)


def _plain(line: str) -> str:
    return line.replace("**", "").replace("`", "").replace("### ", "").replace("## ", "").replace("# ", "")


def _sev_rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def redact(url: str) -> str:
    """A URL as it may appear in a log: the scheme only (webhook keys, tokens and passwords are secrets)."""
    return url.split("://", 1)[0] + "://…" if "://" in url else "(url)"


def _target_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def resolve_url(target: NotifyTarget) -> str:
    return target.url.resolve() if isinstance(target.url, SecretRef) else target.url


# --- what happened -------------------------------------------------------------------------------


def outcome_from(result: Any) -> RunOutcome:
    """A :class:`RunOutcome` from any object with its attributes (the pipeline's result)."""
    if isinstance(result, RunOutcome):
        return result
    sources: list[SourceOutcome] = []
    gaps: list[str] = list(getattr(result, "gaps", None) or [])
    quarantined = getattr(result, "quarantined", None)
    if quarantined is None:  # the pipeline's result: the mapping's and the streams' quarantines
        quarantined = int((getattr(result, "mapping", None) or {}).get("quarantined", 0) or 0)
    raw_sources = getattr(result, "sources", None) or []
    items = raw_sources.items() if isinstance(raw_sources, dict) else ((getattr(s, "name", None), s)
                                                                       for s in raw_sources)
    for name, s in items:
        get = s.get if isinstance(s, dict) else lambda k, d=None, s=s: getattr(s, k, d)
        so = SourceOutcome(name=str(name or get("name")), status=str(get("status", "ok")),
                           message=get("message"), hint=get("hint"), since=get("since"))
        sources.append(so)
        if so.status == "incomplete" and not getattr(result, "gaps", None):
            gaps.append(f"{so.name}: {so.message or 'source and store counts differ'}")
        if getattr(result, "quarantined", None) is None:
            quarantined += sum(int(r.get("quarantined") or 0) for r in get("streams", None) or []
                               if isinstance(r, dict))
    kpis = getattr(result, "kpis", None) or {}
    if isinstance(kpis, list):  # KPI rows (kpi, variant, value, unit)
        kpis = kpi_labels(kpis)
    status = {"completed": "complete", "paused": "partial"}.get(getattr(result, "status", None) or "",
                                                                 getattr(result, "status", None))
    if status not in ("complete", "partial", "failed"):
        status = "failed" if getattr(result, "error", None) else "partial" if getattr(result, "partial", False) \
            else "complete"
    return RunOutcome(
        as_of=result.as_of, status=str(status), run_id=getattr(result, "run_id", None),
        sources=sources, gaps=gaps, quarantined=int(quarantined or 0),
        kpis={str(k): str(v) for k, v in dict(kpis).items()},
        report_path=_str_or_none(getattr(result, "report_path", None) or getattr(result, "report", None)),
        report_url=getattr(result, "report_url", None), error=getattr(result, "error", None),
        hint=getattr(result, "hint", None), held_back=set(getattr(result, "held_back", None) or ()),
    )


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def _report_link(cfg: Config, outcome: RunOutcome) -> str | None:
    return outcome.report_url or cfg.notifications.report_url or outcome.report_path


def run_messages(cfg: Config, outcome: RunOutcome) -> list[Message]:
    """The run-level events of this run (failed, paused, gap, quarantine)."""
    out: list[Message] = []
    link = _report_link(cfg, outcome)
    failed = [s for s in outcome.sources if s.status == "failed"]
    paused = [s for s in outcome.sources if s.status == "paused"]
    if outcome.error or failed:
        lines = [f"**ltc-hub run failed** (as of {outcome.as_of})"]
        if outcome.error:
            lines.append(f"- the run: {outcome.error}" + (f" — fix: {outcome.hint}" if outcome.hint else ""))
        lines += [_source_line(s) for s in failed]
        if link:
            lines.append(f"Report (partial): {link}")
        out.append(Message("run_failed", "ltc-hub: run failed", lines, RUN_EVENT_SEVERITY["run_failed"]))
    if paused:
        lines = [f"**ltc-hub run paused** (as of {outcome.as_of}): the data of "
                 f"{', '.join(s.name for s in paused)} is incomplete; the next run resumes from the saved state."]
        lines += [_source_line(s) for s in paused]
        out.append(Message("run_paused", "ltc-hub: source paused", lines, RUN_EVENT_SEVERITY["run_paused"]))
    if outcome.gaps:
        lines = [f"**ltc-hub completeness gap** (as of {outcome.as_of})"] + [f"- {g}" for g in outcome.gaps]
        out.append(Message("completeness_gap", "ltc-hub: completeness gap", lines,
                           RUN_EVENT_SEVERITY["completeness_gap"]))
    threshold = cfg.notifications.quarantine_threshold
    if outcome.quarantined > threshold:
        lines = [f"**ltc-hub quarantine**: {outcome.quarantined} records quarantined in this run "
                 f"(threshold {threshold}). See `ltc status` or the quarantine table for the reasons."]
        out.append(Message("quarantine", "ltc-hub: records quarantined", lines, RUN_EVENT_SEVERITY["quarantine"]))
    return out


def _source_line(s: SourceOutcome) -> str:
    line = f"- **{s.name}** {s.status}"
    if s.since:
        line += f" (last complete sync {s.since:%Y-%m-%d %H:%M} UTC)"
    if s.message:
        line += f": {s.message}"
    if s.hint:
        line += f" — fix: {s.hint}"
    return line


def open_exceptions(store: Store) -> list[dict[str, Any]]:
    e = recon_exception.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(e.fingerprint, e.code, e.status, e.severity, e.owner, e.assignee, e.currency,
                                      e.amount_at_risk, e.reporting_currency, e.amount_reporting, e.chain_id,
                                      e.first_seen_at).where(e.status != "resolved")
                            .order_by(e.code, e.fingerprint)).all()
    return [{**dict(r._mapping), "owner": r.assignee or r.owner} for r in rows]


def run_kpis(store: Store, run_id: str | None = None) -> list[dict[str, Any]]:
    """The KPIs (all owners) of reconcile run ``run_id``, else of the latest run with KPIs: kpi, variant,
    value (Decimal or None), unit, period."""
    k = kpi_snapshot.c
    with store.engine.connect() as conn:
        if run_id is None:
            run_id = conn.execute(sa.select(k.run_id).order_by(k.id.desc()).limit(1)).scalar()
        if run_id is None:
            return []
        rows = conn.execute(sa.select(k.kpi, k.variant, k.value, k.unit, k.period_start, k.period_end)
                            .where(k.run_id == run_id, k.owner.is_(None)).order_by(k.kpi, k.variant)).all()
    return [dict(r._mapping) for r in rows]


def kpi_labels(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """``{"dso (default)": "41.20 days"}``: KPI rows as the digest and the Prefect table show them."""
    out = {}
    for r in rows:
        value = "n/a" if r["value"] is None else f"{Decimal(r['value']).quantize(Decimal('0.01')):,}"
        label = r["kpi"] if r["variant"] in ("default", "", None) else f"{r['kpi']} ({r['variant']})"
        out[label] = f"{value} {r['unit']}".strip()
    return out


def _filter(rows: Iterable[dict[str, Any]], target: NotifyTarget, min_severity: str) -> list[dict[str, Any]]:
    floor = _sev_rank(min_severity)
    return [r for r in rows if _sev_rank(r["severity"]) >= floor
            and (target.codes is None or r["code"] in target.codes)
            and (target.owners is None or (r["owner"] or "") in target.owners)]


def _money(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    return f"{amount.quantize(Decimal('0.01')):,} {currency or ''}".strip()


def new_exceptions_message(rows: Sequence[dict[str, Any]], outcome: RunOutcome, link: str | None) -> Message:
    lines = [f"**{len(rows)} new exception(s) need attention** (as of {outcome.as_of})"]
    for r in rows[:MAX_LISTED]:
        amount = (_money(r["amount_reporting"], r["reporting_currency"]) if r["amount_reporting"] is not None
                  else f"{_money(r['amount_at_risk'], r['currency'])} (unconverted)"
                  if r["amount_at_risk"] is not None else "no amount")
        lines.append(f"- `{r['code']}` {r['severity']} · {amount} · owner {r['owner'] or '(unowned)'}"
                     f" · {r['chain_id'] or r['fingerprint']}")
    if len(rows) > MAX_LISTED:
        lines.append(f"- … and {len(rows) - MAX_LISTED} more")
    if link:
        lines.append(f"Report: {link}")
    return Message("new_exceptions", "ltc-hub: new exceptions", lines, "high", list(rows))


def digest_message(rows: Sequence[dict[str, Any]], cfg: Config, outcome: RunOutcome, link: str | None,
                   kpis_fallback: dict[str, str] | None = None) -> Message:
    """The finance digest: open exceptions by code and owner, amount at risk, KPIs, the report link."""
    reporting = cfg.reporting_currency
    total = Decimal(0)
    unconverted: dict[str, Decimal] = defaultdict(Decimal)
    n_unconverted = 0
    by_code: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_code[r["code"]].append(r)
        if r["amount_reporting"] is not None:
            total += r["amount_reporting"]
        elif r["amount_at_risk"] is not None:
            n_unconverted += 1
            unconverted[r["currency"] or "?"] += r["amount_at_risk"]
    lines = [f"**ltc-hub daily digest** — as of {outcome.as_of}" + (" (partial data)" if outcome.status != "complete"
                                                                     else ""),
             f"{len(rows)} open exception(s), {_money(total, reporting)} at risk"
             + (f" (excluding {n_unconverted} unconverted: "
                + ", ".join(_money(v, c) for c, v in sorted(unconverted.items())) + ")" if n_unconverted else ""),
             "", "**By code**"]
    order = list(CODES)
    for code in sorted(by_code, key=lambda c: order.index(c) if c in order else len(order)):
        xs = by_code[code]
        priced = [x["amount_reporting"] for x in xs if x["amount_reporting"] is not None]
        apart: dict[str, Decimal] = defaultdict(Decimal)
        for x in xs:
            if x["amount_reporting"] is None and x["amount_at_risk"] is not None:
                apart[x["currency"] or "?"] += x["amount_at_risk"]
        amounts = ([_money(sum(priced, Decimal(0)), reporting)] if priced or not apart else []) + [
            f"{_money(v, c)} unconverted" for c, v in sorted(apart.items())]
        owners: dict[str, int] = defaultdict(int)
        for x in xs:
            owners[x["owner"] or "(unowned)"] += 1
        who = ", ".join(f"{o} {n}" for o, n in sorted(owners.items(), key=lambda t: (-t[1], t[0])))
        lines.append(f"- `{code}`: {len(xs)} · {' + '.join(amounts)} · {who}")
    if not by_code:
        lines.append("- none")
    kpis = outcome.kpis or kpis_fallback
    if kpis:
        lines += ["", "**KPIs**"] + [f"- {k}: {v}" for k, v in kpis.items()]
    if link:
        lines += ["", f"Report: {link}"]
    return Message("digest", "ltc-hub: daily finance digest", lines, "low", list(rows))


# --- delivery ------------------------------------------------------------------------------------


def deliver(url: str, message: Message) -> None:
    """Send one message to one apprise URL; raises RuntimeError (without the URL) when it does not arrive."""
    import apprise

    # apprise's and urllib3's debug lines carry the webhook URL (its key): quiet them while sending
    quiet = [logging.getLogger(name) for name in ("apprise", "urllib3")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(max(q.level, logging.WARNING))
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            raise RuntimeError(f"not an apprise URL apprise can use ({redact(url)})")
        plugin = _provider_shaped(plugin, url)
        body, fmt = message.markdown(), apprise.NotifyFormat.MARKDOWN
        if plugin.secure_protocol == "feishu":  # its bot's text message renders no markdown
            body, fmt = message.text(), apprise.NotifyFormat.TEXT
        elif "slack" in _protocols(plugin):  # Slack's mrkdwn: *bold*
            body = body.replace("**", "*")
        ap = apprise.Apprise()
        ap.add(plugin)
        ok = ap.notify(body=body, title=message.title, body_format=fmt,
                       notify_type=apprise.NotifyType.FAILURE if _sev_rank(message.severity) >= 2
                       else apprise.NotifyType.INFO)
    finally:
        for q, lvl in zip(quiet, levels, strict=True):
            q.setLevel(lvl)
    if not ok:
        raise RuntimeError("the service did not accept the message (see the apprise warning above)")


def _protocols(plugin: Any) -> set[str]:
    p = plugin.secure_protocol
    return set(p) if isinstance(p, tuple | list) else {p}


def _provider_shaped(plugin: Any, url: str) -> Any:
    """WeCom group bots get ``msgtype: markdown`` (apprise sends ``text``); the rest as apprise sends them."""
    from apprise.plugins.wecombot import NotifyWeComBot

    if type(plugin) is NotifyWeComBot:
        return _wecom_markdown_class()(**NotifyWeComBot.parse_url(url))
    return plugin


@functools.cache
def _wecom_markdown_class() -> type:
    """apprise's WeCom bot, sending the ``markdown`` message type (headings, bold, links render)."""
    import json

    import requests
    from apprise.plugins.wecombot import NotifyWeComBot

    class WeComMarkdownBot(NotifyWeComBot):
        title_maxlen = 250

        def send(self, body: str, title: str = "", notify_type: Any = None, **kwargs: Any) -> bool:
            text = f"### {title}\n{body}" if title else body
            payload = {"msgtype": "markdown", "markdown": {"content": text[:4096]}}
            self.throttle()
            try:
                r = requests.post(self.api_url, data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                                  headers={"User-Agent": self.app_id,
                                           "Content-Type": "application/json; charset=utf-8"},
                                  verify=self.verify_certificate, timeout=self.request_timeout)
            except requests.RequestException as exc:
                log.warning("WeCom bot: connection error (%s)", type(exc).__name__)
                return False
            try:
                errcode = r.json().get("errcode", 0) if r.status_code == 200 else None
            except ValueError:
                errcode = 0
            if errcode != 0:
                log.warning("WeCom bot: HTTP %s, errcode %s", r.status_code, errcode)
                return False
            return True

    return WeComMarkdownBot


# --- routing and memory --------------------------------------------------------------------------


def _sent_keys(store: Store, target_id: str, keys: Iterable[str]) -> set[str]:
    keys = list(keys)
    found: set[str] = set()
    with store.engine.connect() as conn:
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            found |= set(conn.execute(sa.select(notify_sent.c.key).where(
                notify_sent.c.target == target_id, notify_sent.c.key.in_(chunk))).scalars())
    return found


def _remember(store: Store, target_id: str, event: str, keys: Iterable[str], now: datetime) -> None:
    rows = [{"target": target_id, "key": k, "event": event, "sent_at": now} for k in keys]
    if rows:
        with store.engine.begin() as conn:
            conn.execute(sa.insert(notify_sent), rows)


def _wants(target: NotifyTarget, event: str) -> bool:
    return target.events is None or event in target.events


def notify_run(result: Any, cfg: Config, store: Store | None = None, *, now: datetime | None = None) -> NotifyResult:
    """Tell every target what it asked to hear about this run (``result``: a :class:`RunOutcome` or the
    pipeline's result). Without ``store``, opens the one ltc.yaml names. Never raises: failures are logged
    and returned."""
    out = NotifyResult()
    targets = cfg.notifications.targets
    if not targets:
        return out
    if store is None:
        try:
            from ltc.app.runtime import store_url

            opened = Store.open(store_url(cfg))
        except Exception as exc:
            log.warning("notifications skipped: %s", _safe(exc))
            out.deliveries.append(Delivery("(all)", "prepare", False, _safe(exc)))
            return out
        try:
            return notify_run(result, cfg, opened, now=now)
        finally:
            opened.close()
    try:
        outcome = outcome_from(result)
        now = now or datetime.now(UTC)
        run_level = run_messages(cfg, outcome)
        rows = open_exceptions(store)
    except Exception as exc:  # the notifier never fails the pipeline
        log.warning("notifications skipped: %s", _safe(exc))
        out.deliveries.append(Delivery("(all)", "prepare", False, _safe(exc)))
        return out
    link = _report_link(cfg, outcome)
    for i, target in enumerate(targets):
        label = target.label(i)
        try:
            url = resolve_url(target)
        except ConfigError as exc:
            log.warning("notification target %s: %s", label, exc)
            out.deliveries.append(Delivery(label, "resolve", False, str(exc)))
            continue
        tid = _target_id(url)
        for msg in run_level:
            if _wants(target, msg.event) and _sev_rank(msg.severity) >= _sev_rank(target.min_severity):
                _send(out, url, label, msg)
        try:
            if _wants(target, "new_exceptions"):
                floor = target.min_severity or "high"
                candidates = [r for r in _filter(rows, target, floor)
                              if r["status"] == "open" and r["fingerprint"] not in outcome.held_back]
                sent = _sent_keys(store, tid, (r["fingerprint"] for r in candidates))
                fresh = [r for r in candidates if r["fingerprint"] not in sent]
                if fresh:
                    fresh.sort(key=lambda r: (-_sev_rank(r["severity"]), -(r["amount_reporting"] or 0), r["code"]))
                    if _send(out, url, label, new_exceptions_message(fresh, outcome, link)):
                        _remember(store, tid, "new_exceptions", (r["fingerprint"] for r in fresh), now)
            if _wants(target, "digest"):
                key = f"digest:{cfg.today(now).isoformat()}"  # the company's day (ltc.yaml timezone)
                if not _sent_keys(store, tid, [key]):
                    mine = _filter(rows, target, target.min_severity or "low")
                    kpis = {} if outcome.kpis else kpi_labels(run_kpis(store, outcome.run_id))
                    if _send(out, url, label, digest_message(mine, cfg, outcome, link, kpis)):
                        _remember(store, tid, "digest", [key], now)
        except Exception as exc:  # e.g. the store is busy: log, go on with the next target
            log.warning("notification target %s: %s", label, _safe(exc))
            out.deliveries.append(Delivery(label, "store", False, _safe(exc)))
    return out


def _safe(exc: BaseException) -> str:
    """An exception as one line, with anything that looks like a URL cut to its scheme."""
    import re

    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*)://\S+", lambda m: m.group(1) + "://…", f"{type(exc).__name__}: {exc}")


def _send(out: NotifyResult, url: str, label: str, msg: Message) -> bool:
    try:
        deliver(url, msg)
    except Exception as exc:
        log.warning("notification %s to %s failed: %s", msg.event, label, _safe(exc))
        out.deliveries.append(Delivery(label, msg.event, False, _safe(exc)))
        return False
    log.info("notification %s sent to %s", msg.event, label)
    out.deliveries.append(Delivery(label, msg.event, True))
    return True


def send_test(cfg: Config) -> NotifyResult:
    """``ltc notify test``: one test message to every target, whatever its routing."""
    out = NotifyResult()
    if not cfg.notifications.targets:
        raise ConfigError("no notification targets: add `notifications: {targets: [{url: ...}]}` to ltc.yaml")
    msg = Message("test", "ltc-hub: test message",
                  ["**ltc-hub test message**", "If you can read this, ltc-hub's alerts reach this channel."], "low")
    for i, target in enumerate(cfg.notifications.targets):
        label = target.label(i)
        try:
            url = resolve_url(target)
        except ConfigError as exc:
            out.deliveries.append(Delivery(label, "test", False, str(exc)))
            continue
        _send(out, url, label, msg)
    return out


def check_targets(cfg: Config) -> list[str]:
    """Problems with the targets that ``ltc config check`` reports: a reference that does not resolve,
    a URL apprise does not know. One line each, never the URL."""
    import apprise

    problems = []
    for i, target in enumerate(cfg.notifications.targets):
        label = target.label(i)
        try:
            url = resolve_url(target)
        except ConfigError as exc:
            problems.append(f"notifications.targets[{i}] ({label}): {exc}")
            continue
        if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
            problems.append(f"notifications.targets[{i}] ({label}): not a URL apprise can send to "
                            f"({redact(url)}; see https://appriseit.com/services/)")
        unknown = [c for c in target.codes or [] if c not in CODES]
        if unknown:
            problems.append(f"notifications.targets[{i}] ({label}): unknown exception code(s) {', '.join(unknown)}")
    return problems
