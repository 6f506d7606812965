"""The column-wise name key (``normalize_series``) equals ``normalize_name`` name by name."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from canonical.names import LEGAL_FORMS, _ascii_keys, normalize_name, normalize_series

NAMES = [
    "ACME, Inc.", "Acme Inc", "acme inc.", "  Acme   Incorporated  ", "Acme Corporation", "Acme Corportion",
    "Acme Corporaton Ltd", "Globex GmbH & Co. KG", "Globex GmbH + Co KG", "Globex gmbh co kg", "Müller Milch GmbH",
    "Mueller Milch", "Queue Ltd", "Blue Ocean AG", "Joe's Pizza LLC", "O'Brien & Sons Ltd.", "`Quoted` Ltd",
    "Société Générale S.A.", "Ça va SARL", "S.A. Foo", "Foo S.A.", "Foo S.A. de C.V.", "Foo s de rl de cv",
    "Allegro sp. z o.o.", "Allegro Sp z o o", "Atlassian Pty Ltd", "Atlassian pty. ltd.", "Foo Private Limited",
    "Foo  Limited   Liability Company", "The Coca-Cola Company", "the the", "The Inc", "PT Bank Mandiri Tbk",
    "ooo gazprom", "OOO Gazprom", "ООО Тинькофф", "pt", "the pt ooo foo", "and", "& Co", "Foo and Bar", "and and",
    "Baker & McKenzie LLP", "AG", "ltd", "Inc Inc", "co kg", "Co. KG Foo", "A B C", "x+y", "foo_bar llc",
    "Foo\tBar Ltd", "Foo\x1cBar", "", "   ", "...", "Company 19752 Inc.", "COMPANY 17565, INC.", "Company 123-B, Inc",
    "Acme Japan K.K.", "Acme Kabushiki Kaisha", "ＡＣＭＥ　Ｉｎｃ．", "ＡＢＣ有限公司", "华为技术股份有限公司",
    "华为技术有限公司", "株式会社トヨタ自動車", "トヨタ自動車株式会社", "任天堂㈱", "Foo (株)", "삼성전자 주식회사",
    "Zoë Ltd", "Straße GmbH", "Ålborg A/S", "Nestlé S.A.", "Øresund ApS", "Ελληνικά Α.Ε.", None,
    # digits: the legal forms are cut from templates with every digit 0 (same words, same lengths)
    "Acme corpora1ion", "Acme 1234567 corporat1on", "the 12 inc", "pt 007 tbk", "0 0 0", "cv 1 cv", "Acme 12345678",
    "and 1 and", "Foo 12 and Bar 3 Inc", "the the 1", "ooo 1 ltd ltd", "Company 19752", "Company 29752 Ltd", "A1 Ltd",
]


def test_names_differing_by_digits_share_a_template_but_keep_their_own_key() -> None:
    names = ["Company 1 Inc", "Company 22 Inc", "the 333 ltd", "the 4444", "Acme 55555 corporat1on", "Acme 7 corpor9tion",
             None, "Company 1 Inc"]
    _check(names)
    assert normalize_series(pl.Series("name", names)).to_list()[:4] == ["company 1", "company 22", "333", "4444"]


def _check(names: list[str | None]) -> None:
    got = normalize_series(pl.Series("name", names, dtype=pl.String)).to_list()
    want = [None if n is None else normalize_name(n) for n in names]
    assert got == want


def test_varied_names_equal_the_one_by_one_key() -> None:
    _check(NAMES)
    _check(list(reversed(NAMES)) * 3)  # repeated values, other order


def test_plain_ascii_names_take_the_column_wise_path() -> None:
    names = ["ACME, Inc.", "Company 19752 Inc.", "Atlassian Pty Ltd", "The Coca-Cola Company", "Soylent Corportion"]
    got = _ascii_keys(pl.Series("name", names))
    assert got.null_count() == 0
    assert got.to_list() == [normalize_name(n) for n in names]
    # and what it leaves to normalize_name: other scripts, dotted abbreviations, umlaut spellings
    left = _ascii_keys(pl.Series("name", ["Müller AG", "Foo S.A.", "Mueller AG", "株式会社トヨタ"]))
    assert left.null_count() == 4


_FORMS = [" ".join(f) for f in LEGAL_FORMS]
_WORD = st.one_of(
    st.sampled_from(_FORMS), st.sampled_from(["the", "and", "&", "+", "co", "pt", "ooo", "Group", "Müller", "Mueller",
                                               "corportion", "corpora1ion", "limted", "S.A.", "s.a", "K.K.", "有限公司",
                                               "(株)", "Ｉｎｃ", "0", "12", "1234567"]),
    st.integers(min_value=0, max_value=10**9).map(str),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=8),
    st.text(min_size=1, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_WORD, min_size=0, max_size=6).map(
    lambda ws: " ".join(w.upper() if len(w) % 3 == 0 else w for w in ws)), min_size=1, max_size=20))
def test_generated_names_equal_the_one_by_one_key(names: list[str]) -> None:
    _check(names)
