"""Translations of the report and the work queue (gettext catalogs, Babel tools).

Catalogs live in ``reports/locale/<lang>/LC_MESSAGES/messages.po`` with the compiled ``.mo``
beside them (shipped in the package, so a plain or editable install needs no build step). If a
``.mo`` is missing or older than its ``.po`` (an edit not yet compiled), the ``.po`` is compiled in
memory, so what is shown is always the ``.po``'s text.

Maintainers: ``python -m reports.i18n update`` extracts the messages of the Python code (``N_``,
``_``, ``gettext``) and the Jinja2 templates of ``reports/`` and ``ui/`` into ``messages.pot`` and
merges them into each ``.po``; ``python -m reports.i18n compile`` writes the ``.mo`` files.
"""

from __future__ import annotations

import gettext
import io
import sys
from functools import lru_cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.support import Translations

from canonical.errors import ConfigError

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LANGUAGES = ("en", "zh")  # en is the source language: its texts are the message ids
DEFAULT_LOCALE = {"en": "en_US", "zh": "zh_Hans_CN"}
ROOT = Path(__file__).resolve().parent.parent
SOURCES = (ROOT / "reports", ROOT / "ui")
METHODS = [("**/locale/**", "ignore"), ("**.py", "python"), ("**/templates/**.j2", "jinja2")]
JINJA_OPTIONS = {"extensions": "jinja2.ext.i18n", "trimmed": "true"}


def check_language(lang: str | None) -> str:
    lang = (lang or "en").strip().lower()
    if lang not in LANGUAGES:
        raise ConfigError(f"--lang {lang!r}: the report speaks {', '.join(LANGUAGES)}")
    return lang


def report_language(lang: str | None, locale: str | None) -> tuple[str, str]:
    """The language of the labels and the locale of numbers and dates.

    No ``lang``: the language of ``locale`` (``reporting_locale``) if there is a catalog for it, else
    English. A ``lang`` whose language differs from ``locale``'s uses that language's usual locale
    (``zh`` -> ``zh_Hans_CN``), so ``--lang zh`` never writes German separators under Chinese labels.
    """
    from babel import Locale, UnknownLocaleError

    try:
        loc = Locale.parse(locale.replace("-", "_")) if locale else None
    except (ValueError, UnknownLocaleError):
        raise ConfigError(f"unknown locale {locale!r}; e.g. en_US, de_DE, zh_Hans_CN") from None
    if lang is None:
        lang = loc.language if loc is not None and loc.language in LANGUAGES else "en"
    lang = check_language(lang)
    if loc is None or (loc.language != lang and loc.language in LANGUAGES) or (
            loc.language not in LANGUAGES and lang != "en"):
        return lang, DEFAULT_LOCALE[lang]
    return lang, str(loc)


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=8)
def translations(lang: str) -> gettext.NullTranslations:
    """The catalog of ``lang`` (English: the message ids themselves)."""
    lang = check_language(lang)
    if lang == "en":
        return gettext.NullTranslations()
    po = po_path(lang)
    mo = po.with_suffix(".mo")
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as fh:
            return Translations(fh, domain=DOMAIN)
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def extract() -> Catalog:
    """Every translatable message of the code and the templates."""
    catalog = Catalog(project="ltc-hub", domain=DOMAIN)
    for base in SOURCES:
        if not base.exists():
            continue
        options = {"**/templates/**.j2": JINJA_OPTIONS}
        for filename, lineno, message, comments, context in extract_from_dir(
                base, METHODS, options_map=options, keywords={"_": None, "gettext": None, "N_": None,
                                                              "ngettext": (1, 2)}):
            catalog.add(message, locations=[(f"{base.name}/{filename}", lineno)], auto_comments=comments,
                        context=context)
    return catalog


def update() -> None:
    template = extract()
    with (LOCALE_DIR / f"{DOMAIN}.pot").open("wb") as fh:
        write_po(fh, template, omit_header=False, sort_output=True)
    for lang in LANGUAGES[1:]:
        po = po_path(lang)
        po.parent.mkdir(parents=True, exist_ok=True)
        if po.exists():
            with po.open("rb") as fh:
                catalog = read_po(fh, locale=lang)
        else:
            catalog = Catalog(locale=lang, domain=DOMAIN, project="ltc-hub")
        catalog.update(template, no_fuzzy_matching=True)
        with po.open("wb") as fh:
            write_po(fh, catalog, sort_output=True, ignore_obsolete=True, width=110)


def compile_all() -> None:
    for lang in LANGUAGES[1:]:
        po = po_path(lang)
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        with po.with_suffix(".mo").open("wb") as fh:
            write_mo(fh, catalog)


if __name__ == "__main__":
    {"update": update, "compile": compile_all}[sys.argv[1]]()
