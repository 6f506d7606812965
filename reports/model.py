"""What the finance report shows, as data: the report and the records it names (no I/O here).

:mod:`reports.finance` fills a :class:`Report` from the store; :mod:`reports.html` and
:mod:`reports.xlsx` render it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ZERO = Decimal(0)
HTML_CHAIN_LIMIT = 2000  # the HTML lists this many chains (exceptions first); the CSV/XLSX list all


@dataclass(slots=True)
class Record:
    """One source record a chain or an exception names, with the way back to its source system."""

    id: str  # canonical id
    entity: str
    system: str
    object: str
    source_id: str
    label: str  # what a person calls it: the number, the deal's name, the payer reference
    amount: Decimal | None = None
    currency: str | None = None
    day: date | None = None
    status: str | None = None
    url: str | None = None


@dataclass
class Report:
    """What the report shows; every list of rows follows its ``*_COLUMNS`` (plus display-only keys)."""

    as_of: date | None
    run_id: str | None
    reporting_currency: str | None
    kpis: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    by_code: list[dict[str, Any]] = field(default_factory=list)
    chains: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, Record] = field(default_factory=dict)
    previous: dict[tuple[str, str], Decimal | None] = field(default_factory=dict)  # the run before, overall KPIs
    previous_as_of: date | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # [{run_id, as_of, values: {kpi/variant: v}}]
    monthly: list[dict[str, Any]] = field(default_factory=list)  # [{month, invoiced, collected}]
    monthly_unconverted: int = 0  # invoices/payments left out of the monthly chart: no FX rate
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    unconverted: list[dict[str, Any]] = field(default_factory=list)  # open exceptions with no FX rate to convert
    banners: list[str] = field(default_factory=list)  # partial data: which source is missing, since when
    previous_complete: str | None = None
    notes: list[str] = field(default_factory=list)  # about the data: stale FX rates, a rate source not read  # relative link to the last complete report, kept beside a partial one


@dataclass
class ReportFiles:
    directory: Path
    html: Path
    xlsx: Path
    csv: dict[str, Path]
    report: Report | None = None  # what was written

    def all(self) -> list[Path]:
        return [self.html, *self.csv.values(), self.xlsx]
