"""Company-name normalization for identity resolution.

``normalize_name("ＡＣＭＥ, Inc.")`` -> ``"acme"``. Steps, in order:

1. Unicode NFKC (full-width ``ＡＣＭＥ`` -> ``ACME``, compatibility forms folded), case-folded.
2. CJK legal forms (``株式会社``, ``有限会社``, ``合同会社``, ``股份有限公司``, ``有限公司``, ``(株)``...)
   removed wherever they stand: Japanese puts 株式会社 before or after the name.
3. Transliterated to ASCII (accents dropped, Cyrillic/Greek/CJK romanized); German umlaut
   spellings fold to the same key (``Müller`` and ``Mueller`` -> ``muller``).
4. ``&`` -> ``and``; punctuation becomes spaces; dotted abbreviations join (``s.a.`` -> ``sa``).
5. Legal-form tokens at the end (and a few at the start) are removed, repeatedly
   (``gmbh & co kg``, ``pty ltd``, ``sp z o o``), unless nothing would be left.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import polars as pl
from rapidfuzz import fuzz, process
from text_unidecode import unidecode

# Legal forms as token sequences (after steps 1-4). Longest first when matching.
_LEGAL = """
inc incorporated corp corporation co company cos llc lc llp lp ltd limited plc pllc pc
gmbh mbh ag kg kgaa ohg ug eg ev gbr se
sa sas sasu sarl eurl sca snc sc scs
srl spa sapa sas snc scarl
bv nv vof cv
kk gk yk tk
ab oy oyj as asa aps a s hf ehf
pty pty ltd pte pte ltd sdn bhd bhd berhad tbk pt
pvt pvt ltd private limited opc
ltda eireli me epp
sl slu sll sa de cv s de rl de cv sab de cv
sro as spol s r o zrt kft nyrt bt
doo dd ad ead ood
sp z o o spzoo sa sk spk
ooo oao zao pao ao ip tov pp
kft
jsc ojsc cjsc
"""
_CJK_FORMS = (
    "股份有限公司", "有限責任公司", "有限责任公司", "有限公司", "株式会社", "有限会社", "合同会社", "合資会社",
    "合名会社", "(株)", "（株）", "㈱", "(有)", "（有）", "㈲", "주식회사", "(주)", "유한회사", "公司",
)
# Words that say what kind of company, not which one: kept in the name, but a name must not be
# reduced to them alone and blocking ignores them.
GENERIC = frozenset(
    ["the", "and", "of", "group", "holding", "holdings", "international", "intl", "global", "services", "service", "solutions", "systems", "technologies", "technology", "tech", "industries", "industrial", "enterprises", "trading", "company", "partners", "consulting", "management", "capital"]
)


def _phrases() -> tuple[tuple[str, ...], ...]:
    seen: set[tuple[str, ...]] = set()
    for line in _LEGAL.strip().splitlines():
        tokens = line.split()
        # each line lists single-token forms, plus known multi-token forms written with spaces
        for t in tokens:
            seen.add((t,))
    for multi in ("pty ltd", "pte ltd", "sdn bhd", "pvt ltd", "private limited", "sa de cv", "s de rl de cv",
                  "sab de cv", "sp z o o", "sp z oo", "spol s r o", "s r o", "a s", "gmbh and co kg", "gmbh co kg",
                  "and co kg", "co kg", "co ltd", "co inc", "s a", "s a s", "s l", "b v", "n v", "k k",
                  "s p a", "s r l", "l l c", "l p", "l l p", "p l c", "kabushiki kaisha", "godo kaisha",
                  "yugen kaisha", "aktiengesellschaft", "aktiebolag", "aksjeselskap", "osakeyhtio", "gesellschaft mit beschrankter haftung",
                  "societe anonyme", "societe par actions simplifiee", "naamloze vennootschap",
                  "besloten vennootschap", "sociedad anonima", "societa per azioni", "limited liability company"):
        seen.add(tuple(multi.split()))
    return tuple(sorted(seen, key=len, reverse=True))


LEGAL_FORMS: tuple[tuple[str, ...], ...] = _phrases()
_MAX_FORM = max(len(p) for p in LEGAL_FORMS)
_LEGAL_SET = frozenset(LEGAL_FORMS)
_LEADING = frozenset({("the",), ("pt",), ("ooo",), ("oao",), ("zao",), ("pao",), ("ao",), ("tov",), ("cv",)})

_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_DOTTED = re.compile(r"\b(?:[a-z]\.){2,}", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_UMLAUT = re.compile(r"(?<=[a-z])(ae|oe|ue)")


def _fold_umlauts(token: str) -> str:
    while True:
        folded = _UMLAUT.sub(lambda m: m.group(1)[0], token)
        if folded == token:
            return token
        token = folded


def _strip_cjk(text: str) -> str:
    for form in _CJK_FORMS:
        if form in text:
            stripped = text.replace(form, " ").strip()
            if stripped:
                text = stripped
    return text


@lru_cache(maxsize=200_000)
def normalize_name(name: str) -> str:
    """The comparison key of a company name (see the module docstring)."""
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = _strip_cjk(text)
    text = (text if text.isascii() else unidecode(text)).lower().replace("'", "").replace("`", "")
    text = text.replace("&", " and ").replace("+", " and ")
    text = _DOTTED.sub(lambda m: m.group(0).replace(".", "") + " ", text)
    text = _PUNCT.sub(" ", text)
    # "and" carries no identity ("Baker & McKenzie" is "Baker McKenzie") — unless it is all there is
    words = [_fold_umlauts(t) for t in _SPACES.split(text) if t]
    tokens = [t for t in words if t != "and"] or words
    tokens = _drop_legal(tokens)
    return " ".join(tokens)


_LONG_FORMS = tuple(sorted({p[0] for p in LEGAL_FORMS if len(p) == 1 and len(p[0]) >= 7}))


def _misspelt_form(token: str) -> bool:
    """``corportion`` is ``corporation``: a long legal-form word with one or two letters off."""
    return len(token) >= 7 and process.extractOne(token, _LONG_FORMS, scorer=fuzz.ratio, score_cutoff=88) is not None


def _drop_legal(tokens: list[str]) -> list[str]:
    changed = True
    while changed and tokens:
        changed = False
        for n in range(min(_MAX_FORM, len(tokens) - 1), 0, -1):
            if tuple(tokens[-n:]) in _LEGAL_SET:
                tokens = tokens[:-n]
                changed = True
                break
        if not changed and len(tokens) > 1 and _misspelt_form(tokens[-1]):
            tokens = tokens[:-1]
            changed = True
        if not changed and len(tokens) > 1 and tuple(tokens[:1]) in _LEADING:
            tokens = tokens[1:]
            changed = True
    return tokens


def normalize_series(names: pl.Series) -> pl.Series:
    """:func:`normalize_name` of every value of a column (null stays null): the one name key identity and
    reconciliation (payer matching, bucketing) share.

    Most names are plain printable ASCII, where NFKC, case folding and transliteration change nothing:
    those are normalized column-wise (:func:`_ascii_keys`, the non-null values row by row: cheaper than finding
    the distinct names first); the rest (other scripts, dotted abbreviations, umlaut spellings, control characters) go
    through :func:`normalize_name`, each distinct name once. Both give the same key
    (``tests/identity/test_names_vectorised.py``)."""
    names = names.cast(pl.String)
    nulls = names.null_count()
    if nulls:  # the string steps are not free on null rows: the values only, put back in place
        out = pl.repeat(None, len(names), dtype=pl.String, eager=True).rename(names.name)
        return out if nulls == len(names) else out.scatter(names.is_not_null().arg_true(),
                                                           normalize_series(names.drop_nulls()))
    keys = _ascii_keys(names)
    slow = keys.is_null()
    if slow.any():
        left = names.filter(slow)
        distinct = left.unique()
        got = pl.Series([normalize_name(x) for x in distinct.to_list()], dtype=pl.String)
        keys = keys.scatter(slow.arg_true(), left.replace_strict(distinct, got, return_dtype=pl.String))
    return keys.rename(names.name)


#: what the column-wise path takes: printable ASCII only (NFKC, casefold and unidecode are the identity there)
_PRINTABLE = r"^[\x20-\x7e]*$"
#: what it leaves to ``normalize_name``: dotted abbreviations (``s.a.``) and umlaut spellings (``mueller``)
_SLOW = r"[a-z]\.[a-z]\.|[a-z](?:ae|oe|ue)"
#: a legal form ending a name of more words (the leftmost such start is the longest form, as in _drop_legal)
_LEGAL_END = r" (?:" + "|".join(sorted((" ".join(f) for f in LEGAL_FORMS), key=len, reverse=True)) + r")$"
_LEADING_WORDS = [w for (w,) in _LEADING]
#: every digit as ``0`` (:func:`_ascii_keys`' templates)
_ZEROS = {str(d): "0" for d in range(1, 10)}


def _ascii_keys(names: pl.Series) -> pl.Series:
    """The key of every printable ASCII name (:func:`normalize_name`'s steps as Polars string expressions, words
    kept one space apart), null for a null name and for the names left to :func:`normalize_name`.

    The legal forms are dropped (:func:`_drop_legal`) from *templates*: the keys with every digit written ``0``.
    No legal form, leading form or long form has a digit, so a template drops the same words as its key (words of
    the same length; a misspelt form's ratio counts only characters the form has). Names mostly differ by their
    numbers: their few distinct templates are cut, and each key is sliced as its template was."""
    df = pl.DataFrame({"name": names}).with_columns(
        pl.col("name").str.to_lowercase().str.replace_all(r"['`]", "").str.replace_all(r"[&+]", " and ").alias("key"))
    ok = pl.col("name").str.contains(_PRINTABLE) & ~pl.col("key").str.contains(_SLOW)
    key = df.select(pl.when(ok).then(pl.col("key").str.replace_all(r"[^a-z0-9]+", " ").str.strip_chars(" ")))["key"]
    del df
    # "and" carries no identity unless it is all there is: only the keys with the word "and" are looked at
    has_and = key.str.contains(r"\band\b").fill_null(False)
    if has_and.any():
        key = key.scatter(has_and.arg_true(), _drop_and(key.filter(has_and)))
    rows = pl.DataFrame({"key": key, "t": key.str.replace_many(_ZEROS)})
    templates = rows.select(pl.col("t").filter(pl.col("t").str.contains(" ", literal=True)).unique())["t"]
    if templates.is_empty():
        return key
    cuts = _legal_cuts(templates)
    return rows.join(cuts, on="t", how="left", maintain_order="left").select(
        pl.when(pl.col("lead").is_null()).then(pl.col("key"))
        .otherwise(pl.col("key").str.slice(pl.col("lead"), pl.col("keep"))))["key"]


def _drop_and(keys: pl.Series) -> pl.Series:
    """The keys without their words "and" (the key itself when nothing else is left); spaces doubled: "and and"
    are two matches."""
    no_and = (pl.lit("  ") + pl.col("key").str.replace_all(" ", "  ", literal=True) + pl.lit("  ")).str.replace_all(
        " and ", " ", literal=True).str.replace_all(" +", " ").str.strip_chars(" ")
    return pl.DataFrame({"key": keys}).with_columns(no_and.alias("__k")).select(
        pl.when(pl.col("__k") != "").then(pl.col("__k")).otherwise(pl.col("key")).alias("key"))["key"]


def _legal_cuts(templates: pl.Series) -> pl.DataFrame:
    """(t, lead, keep) for distinct keys of two words or more: what :func:`_drop_legal` keeps of each, as the
    characters ``[lead, lead + keep)``."""
    todo = pl.DataFrame({"t": templates}).with_columns(
        pl.col("t").alias("key"), pl.lit(0, pl.UInt32).alias("lead"))
    done: list[pl.DataFrame] = []
    while not todo.is_empty():  # _drop_legal: one removal per round, every name at once
        todo = _drop_round(todo)
        more = pl.col("changed") & pl.col("key").str.contains(" ", literal=True)
        done.append(todo.filter(~more).select("t", "lead", pl.col("key").str.len_bytes().alias("keep")))
        todo = todo.filter(more).select("t", "key", "lead")
    return pl.concat(done)


def _drop_round(todo: pl.DataFrame) -> pl.DataFrame:
    """One pass of :func:`_drop_legal`'s loop over names of two words or more: the longest legal form at
    the end (never the whole name), else a misspelt long form at the end, else a leading form (``lead``: the
    characters dropped at the start so far)."""
    key = pl.col("key")
    last = key.str.extract(r" ([a-z0-9]+)$")
    todo = todo.with_columns(key.str.replace(_LEGAL_END, "").alias("cut"), last.alias("last"))
    long = todo.filter(pl.col("last").str.len_chars() >= 7)["last"].unique().to_list()
    misspelt = [t for t in long if _misspelt_form(t)]
    first = key.str.extract(r"^([a-z0-9]+) ")
    leading = (pl.col("cut") == key) & ~pl.col("last").is_in(misspelt) & first.is_in(_LEADING_WORDS)
    return todo.select("t", pl.when(pl.col("cut") != key).then(pl.col("cut"))
                       .when(pl.col("last").is_in(misspelt)).then(key.str.replace(r" [a-z0-9]+$", ""))
                       .when(leading).then(key.str.replace(r"^[a-z0-9]+ ", "")).otherwise(key).alias("key"),
                       pl.when(leading).then(pl.col("lead") + first.str.len_bytes() + 1).otherwise(pl.col("lead"))
                       .cast(pl.UInt32).alias("lead")).with_columns((pl.col("key") != todo["key"]).alias("changed"))


def name_key(col: str | pl.Expr) -> pl.Expr:
    """The expression form of :func:`normalize_series`."""
    e = pl.col(col) if isinstance(col, str) else col
    return e.cast(pl.String).map_batches(normalize_series, return_dtype=pl.String, is_elementwise=True)


def name_tokens(normalized: str) -> list[str]:
    return [t for t in normalized.split() if t not in GENERIC and len(t) > 1]


_ACRONYM_SKIP = frozenset(["the", "of", "and", "de", "des", "du", "la", "le", "les", "der", "die", "das", "von", "van", "y", "e", "di", "del"])


def acronym(normalized: str) -> str | None:
    """Initials of a multi-word name (``international business machines`` -> ``ibm``)."""
    words = [w for w in normalized.split() if w not in _ACRONYM_SKIP]
    return "".join(w[0] for w in words) if len(words) >= 2 else None
