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
]


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
    assert got["key"].null_count() == 0
    assert got["key"].to_list() == [normalize_name(n) for n in names]
    # and what it leaves to normalize_name: other scripts, dotted abbreviations, umlaut spellings
    left = _ascii_keys(pl.Series("name", ["Müller AG", "Foo S.A.", "Mueller AG", "株式会社トヨタ"]))
    assert left["key"].null_count() == 4


_FORMS = [" ".join(f) for f in LEGAL_FORMS]
_WORD = st.one_of(
    st.sampled_from(_FORMS), st.sampled_from(["the", "and", "&", "+", "co", "pt", "ooo", "Group", "Müller", "Mueller",
                                               "corportion", "limted", "S.A.", "s.a", "K.K.", "有限公司", "(株)", "Ｉｎｃ"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=8),
    st.text(min_size=1, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_WORD, min_size=0, max_size=6).map(
    lambda ws: " ".join(w.upper() if len(w) % 3 == 0 else w for w in ws)), min_size=1, max_size=20))
def test_generated_names_equal_the_one_by_one_key(names: list[str]) -> None:
    _check(names)
