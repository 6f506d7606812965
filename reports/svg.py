"""Static SVG charts for the report and the work queue: a small typed module of our own.

Why not a library: the charts are three simple shapes (horizontal bars, grouped columns, lines),
and this module draws them in ~200 lines with no dependency. Its output is what the pages need:
text stays text (translatable labels, CJK through the browser's fonts, selectable and crisp in
print), a few kilobytes per chart, no script, deterministic for tests. matplotlib's SVG backend
would add a large dependency and emit glyph paths or font settings per chart; Altair/vl-convert
ships a JavaScript engine (~100 MB) to render a JSON spec to the same SVG.

Values are Decimal (money stays exact in the data); only the geometry is computed in float.
Every label is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape

Fmt = Callable[[Decimal], str]
PALETTE = ("#2f6db3", "#e07b24", "#3a9a5b", "#b3261e", "#7a4fb0", "#8a8f98")
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans CJK SC','WenQuanYi Micro Hei',sans-serif"


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal
    text: str | None = None  # the value as shown next to the bar (default: the chart's formatter)
    href: str | None = None  # a link (e.g. to the exceptions of that code)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Decimal | None]  # one per category; None = no data
    color: str | None = None


@dataclass
class _Svg:
    width: int
    height: int
    title: str
    parts: list[str] = field(default_factory=list)

    def text(self, x: float, y: float, s: str, *, anchor: str = "start", size: int = 11, cls: str = "",
             weight: str = "normal") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
                          f'font-weight="{weight}"{c}>{escape(s)}</text>')

    def rect(self, x: float, y: float, w: float, h: float, color: str, tip: str = "") -> None:
        t = f"<title>{escape(tip)}</title>" if tip else ""
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
                          f'fill="{color}">{t}</rect>')

    def line(self, x1: float, y1: float, x2: float, y2: float, color: str = "#d5dbe2", width: float = 1) -> None:
        self.parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                          f'stroke-width="{width}"/>')

    def render(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {self.width} '
                f'{self.height}" width="{self.width}" height="{self.height}" style="{FONT};max-width:100%;height:auto">'
                f"<title>{escape(self.title)}</title>{''.join(self.parts)}</svg>")


def _f(v: Decimal | None) -> float:
    """Geometry only: a finite float, huge or odd values clamped."""
    if v is None:
        return 0.0
    try:
        x = float(v)
    except (ValueError, OverflowError):
        return 0.0
    if math.isnan(x):
        return 0.0
    return max(min(x, 1e300), -1e300)


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (0 included)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        return [0.0, 1.0]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks: list[float] = []
    t = start
    while t < hi + step * 0.999 and len(ticks) < 50:
        ticks.append(round(t, 10))
        t += step
    return ticks


def bar_chart(bars: Sequence[Bar], *, title: str, fmt: Fmt, width: int = 520, color: str = PALETTE[0],
              label_width: int = 190) -> str:
    """Horizontal bars, one per row, the value written after each bar."""
    row, top = 24, 8
    svg = _Svg(width, top + row * max(len(bars), 1) + 8, title)
    if not bars:
        svg.text(8, 20, "—")
        return svg.render()
    hi = max((_f(b.value) for b in bars), default=0.0)
    lo = min((_f(b.value) for b in bars), default=0.0)
    value_w = 110
    plot = width - label_width - value_w
    span = (max(hi, 0) - min(lo, 0)) or 1.0
    zero = label_width + plot * (-min(lo, 0) / span)
    for i, b in enumerate(bars):
        y = top + i * row
        v = _f(b.value)
        w = plot * abs(v) / span
        x = zero if v >= 0 else zero - w
        shown = b.text if b.text is not None else fmt(b.value)
        label = b.label if len(b.label) <= 30 else b.label[:29] + "…"
        if b.href:
            svg.parts.append(f'<a href="{escape(b.href)}">')
        svg.text(label_width - 6, y + 15, label, anchor="end")
        svg.rect(x, y + 4, max(w, 1.5), row - 8, color, f"{b.label}: {shown}")
        if b.href:
            svg.parts.append("</a>")
        svg.text(max(x + w, zero) + 5, y + 15, shown, cls="v")
    svg.line(zero, top, zero, top + row * len(bars), "#8a8f98")
    return svg.render()


@dataclass
class _Plot:
    """A value axis with round ticks and grid lines over [top, height - bottom]."""

    svg: _Svg
    left: float
    right: float
    top: float
    bottom: float
    lo: float = 0.0
    hi: float = 1.0

    @classmethod
    def start(cls, title: str, width: int, height: int, series: Sequence[Series], fmt: Fmt,
              right: float) -> _Plot:
        p = cls(_Svg(width, height, title), 70, right, 24, 34)
        vals = [_f(v) for s in series for v in s.values if v is not None]
        ticks = nice_ticks(min(vals, default=0.0), max(vals, default=0.0))
        p.lo, p.hi = ticks[0], ticks[-1]
        for t in ticks:
            p.svg.line(p.left, p.y(t), width - right, p.y(t))
            p.svg.text(p.left - 4, p.y(t) + 4, fmt(Decimal(repr(t))), anchor="end", size=10)
        return p

    @property
    def pw(self) -> float:
        return self.svg.width - self.left - self.right

    def y(self, v: float) -> float:
        ph = self.svg.height - self.top - self.bottom
        return self.top + ph * (self.hi - v) / ((self.hi - self.lo) or 1.0)

    def labels(self, categories: Sequence[str], x_of: Callable[[int], float], every: int) -> None:
        n = len(categories)
        step = max(1, math.ceil(n / every))
        for i, c in enumerate(categories):
            if i % step == 0 or (every <= 8 and i == n - 1):
                self.svg.text(x_of(i), self.svg.height - self.bottom + 14, c, anchor="middle", size=10)


def column_chart(categories: Sequence[str], series: Sequence[Series], *, title: str, fmt: Fmt,
                 width: int = 560, height: int = 220) -> str:
    """Grouped vertical columns per category (e.g. invoiced vs collected per month), with a legend."""
    p = _Plot.start(title, width, height, series, fmt, right=10)
    group = p.pw / max(len(categories), 1)
    bw = max(min(group * 0.8 / max(len(series), 1), 28), 2)
    for si, s in enumerate(series):
        color = s.color or PALETTE[si % len(PALETTE)]
        for ci, v in enumerate(s.values):
            if v is None:
                continue
            x = p.left + ci * group + (group - bw * len(series)) / 2 + si * bw
            y0, y1 = p.y(0.0), p.y(_f(v))
            p.svg.rect(x, min(y0, y1), bw - 1, abs(y1 - y0), color, f"{s.name} {categories[ci]}: {fmt(v)}")
    p.labels(categories, lambda i: p.left + i * group + group / 2, 12)
    _legend(p.svg, series, p.left, 12)
    return p.svg.render()


def line_chart(categories: Sequence[str], series: Sequence[Series], *, title: str, fmt: Fmt,
               width: int = 560, height: int = 200) -> str:
    """Lines over categories (runs or dates); a single point is drawn as a dot."""
    p = _Plot.start(title, width, height, series, fmt, right=16)
    n = max(len(categories), 1)

    def x_of(i: int) -> float:
        return p.left + (p.pw / 2 if n == 1 else p.pw * i / (n - 1))

    for si, s in enumerate(series):
        color = s.color or PALETTE[si % len(PALETTE)]
        pts = [(x_of(i), p.y(_f(v)), v) for i, v in enumerate(s.values) if v is not None]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
            p.svg.parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, v in pts:
            p.svg.parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                               f"<title>{escape(s.name)}: {escape(fmt(v) if v is not None else '')}</title></circle>")
    p.labels(categories, x_of, 8)
    _legend(p.svg, series, p.left, 12)
    return p.svg.render()


def _legend(svg: _Svg, series: Sequence[Series], x: float, y: float) -> None:
    for si, s in enumerate(series):
        color = s.color or PALETTE[si % len(PALETTE)]
        svg.rect(x, y - 8, 10, 10, color)
        svg.text(x + 14, y + 1, s.name, size=10)
        x += 24 + 7 * len(s.name) + (7 * sum(1 for ch in s.name if ord(ch) > 0x2E80))
