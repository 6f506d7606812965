"""The SVG charts: well-formed, escaped, and drawn whatever the values."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal
from itertools import pairwise

import pytest

from reports import svg

NS = "{http://www.w3.org/2000/svg}"


def _fmt(x: Decimal) -> str:
    return f"{x:,.0f}"


def _parse(text: str) -> ET.Element:
    return ET.fromstring(text)  # raises on anything not well-formed


def test_bars_are_proportional_and_labels_escaped() -> None:
    bars = [svg.Bar("<script>alert(1)</script>", Decimal(100)), svg.Bar("B & C", Decimal(50), href="#code-X"),
            svg.Bar("zero", Decimal(0))]
    text = svg.bar_chart(bars, title="t <b>", fmt=_fmt)
    assert "<script>" not in text and "&lt;script&gt;" in text and "B &amp; C" in text
    root = _parse(text)
    widths = [float(r.get("width", 0)) for r in root.iter(f"{NS}rect")]
    assert widths[0] == pytest.approx(2 * widths[1], rel=0.01)
    assert [a.get("href") for a in root.iter(f"{NS}a")] == ["#code-X"]
    assert root.find(f"{NS}title").text == "t <b>"


@pytest.mark.parametrize("values", [
    [], [Decimal("1E+308"), Decimal(1)], [Decimal("-5"), Decimal("10")], [Decimal("1E+999999")], [Decimal("NaN")],
])
def test_any_values_draw(values: list[Decimal]) -> None:
    _parse(svg.bar_chart([svg.Bar(str(i), v, text="x") for i, v in enumerate(values)], title="b", fmt=_fmt))
    cats = [f"m{i}" for i in range(len(values))]
    _parse(svg.column_chart(cats, [svg.Series("s", values)], title="c", fmt=_fmt))
    _parse(svg.line_chart(cats, [svg.Series("s", values), svg.Series("none", [None] * len(values))], title="l",
                          fmt=_fmt))


def test_line_chart_draws_one_point_per_known_value() -> None:
    root = _parse(svg.line_chart(["r1", "r2", "r3"], [svg.Series("dso", [Decimal(40), None, Decimal(38)])],
                                 title="dso", fmt=_fmt))
    assert len(list(root.iter(f"{NS}circle"))) == 2 and len(list(root.iter(f"{NS}polyline"))) == 1


def test_ticks_are_round_and_cover_the_range() -> None:
    ticks = svg.nice_ticks(0, 936_512.0)
    assert ticks[0] == 0 and ticks[-1] >= 936_512 and all(t % 50_000 == 0 for t in ticks)
    assert len({round(b - a) for a, b in pairwise(ticks)}) == 1
    assert svg.nice_ticks(0, 0) == [0.0, 1.0]
