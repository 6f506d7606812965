"""``ltc config check``: every problem of ltc.yaml an operator can fix before a run meets it.

Beyond what :func:`ltc.app.config.load_config` validates (shape, types, values), the check resolves
what the file only refers to: every credential reference (the environment variable is set, the
Prefect Secret block exists; the value is never shown), every source's mapping (shipped plus
``mapping:`` override: the file exists, loads and compiles), every bank source's folder (set, and a
directory), every local FX rate file (it exists and holds a usable rate; a URL is not fetched). It lists
all problems, one ``file:line: dotted.path: what to fix`` each, instead of stopping at the first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from canonical.errors import ConfigError, yaml_text
from ltc.app.config import DEFAULT_PATH, Config, ConfigProblems, SecretRef, _line_of, load_config


@dataclass
class CheckResult:
    path: Path | None  # the file checked (None: no ltc.yaml, defaults)
    config: Config | None
    problems: list[str] = field(default_factory=list)
    credentials: int = 0  # references checked
    mappings: int = 0  # sources whose mapping compiled

    @property
    def ok(self) -> bool:
        return not self.problems


def secret_refs(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], SecretRef]]:
    """Every credential reference in the configuration, with its location (``sources.crm.credentials.password``)."""
    if isinstance(value, SecretRef):
        yield loc, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_refs(getattr(value, name), (*loc, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from secret_refs(item, (*loc, str(key)))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from secret_refs(item, (*loc, i))


def reference_problem(ref: SecretRef) -> str | None:
    """Why a credential reference does not resolve (never its value), or None."""
    if ref.env:
        return None if os.environ.get(ref.env) else f"environment variable {ref.env} is not set"
    try:
        ref.resolve()
    except ConfigError as exc:
        return str(exc)
    return None


def check_config(path: str | Path | None = None) -> CheckResult:
    """Load ltc.yaml and check everything it refers to; all problems, in file order where known."""
    p = Path(path or os.environ.get("LTC_CONFIG") or DEFAULT_PATH)
    try:
        cfg = load_config(path)
    except ConfigProblems as exc:
        return CheckResult(p, None, list(exc.problems))
    except ConfigError as exc:
        return CheckResult(p, None, [str(exc)])
    if not p.exists():
        return CheckResult(None, cfg)
    try:
        node = yaml.compose(yaml_text(p))
    except yaml.YAMLError:  # load_config parsed it: cannot happen, but a line number is only a nicety
        node = None
    result = CheckResult(p, cfg)
    found: list[tuple[int, str]] = []

    def problem(loc: tuple[str | int, ...], what: str) -> None:
        line = _line_of(node, loc) or 0
        found.append((line, f"{p}:{line}: {'.'.join(str(x) for x in loc)}: {what}"))

    for loc, ref in secret_refs(cfg):
        if loc[:1] == ("notifications",):
            continue  # the targets: check_targets below resolves them (and checks the URL) without showing it
        result.credentials += 1
        why = reference_problem(ref)
        if why is not None:
            problem(loc, why)
    from mappings.engine import GENERATED_KINDS, compile_for

    for name, src in cfg.sources.items():
        if src.kind in GENERATED_KINDS:  # the mapping is the forms configuration (widgets resolved at sync)
            from connectors.jiandaoyun import parse_forms

            try:
                if not str(src.options.get("app_id") or "").strip():
                    raise ValueError(f"sources.{name}.options.app_id is required (the app's id: 应用 ID)")
                parse_forms(name, src.options)
                result.mappings += 1
            except Exception as exc:
                problem(("sources", name, "options"), str(exc))
            continue
        try:
            compile_for(name, src.kind, src.mapping, decimal_separator=src.decimal_separator)
            result.mappings += 1
        except Exception as exc:  # MappingError names file and line; anything else is a broken file too
            problem(("sources", name, "mapping") if src.mapping else ("sources", name, "kind"),
                    f"mapping does not load: {exc}")
        folder = src.options.get("folder")
        if src.kind == "camt053" and not folder:
            problem(("sources", name, "options", "folder"), "not set: the folder to watch for statement files "
                    "(ltc run imports the new files of it)")
        elif src.kind == "camt053" and not Path(str(folder)).is_dir():
            problem(("sources", name, "options", "folder"), f"bank statement folder {folder} does not exist")
    from ltc.app.fx import file_problem

    for i, location in enumerate(cfg.fx.files):  # a URL is not fetched: the check runs without the network
        why = file_problem(location)
        if why is not None:
            problem(("fx", "files", i), why)
    result.problems = [text for _line, text in sorted(found, key=lambda t: t[0])]
    from ltc.app.notify import check_targets

    result.problems += [f"{p}: {line}" for line in check_targets(cfg)]  # URLs apprise knows, codes
    return result
