"""An independent labelled Lead-to-Cash world generator (issue 11, "Measure it honestly").

``make_world(directory, chains=…, seed=…)`` writes a world directory (docs/world.md) whose
conventions vary with the seed (Stripe metadata keys, where references live, tax-id field names,
remittance styles, FX, fees), and returns the truth: every planted break with its exception code and
the source records (system, object, id) it involves. The truth is written *outside* the world
directory (``write_truth``), since a world directory refuses unknown files.

    python -m sandbox.scenarios DIR --chains 300 --seed 3 [--breaks none] [--crm jiandaoyun] [--truth FILE]
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from sandbox.scenarios.build import CODES, build, labels
from sandbox.scenarios.model import Company, Conventions
from sandbox.scenarios.render import write

__all__ = ["CODES", "Company", "Conventions", "make_world", "truth_of", "write_truth"]


def truth_of(co: Company) -> dict[str, Any]:
    return {
        "seed": co.seed, "as_of": co.as_of.isoformat(), "conventions": asdict(co.conventions),
        "breaks": [{"code": b.code, "note": b.note, "tolerated": list(b.tolerated),
                    "records": [{"system": s, "object": o, "id": i} for s, o, i in b.records]}
                   for b in co.breaks],
        "labels": labels(co),
    }


def make_world(directory: str | Path, *, chains: int, seed: int, breaks: bool = True,
               as_of: date = date(2026, 10, 31), crm: str | None = None) -> dict[str, Any]:
    """Write the world into ``directory`` (created) and return its truth (``crm``: another CRM than the
    seed draws, e.g. ``jiandaoyun``; the company is otherwise the seed's)."""
    co = build(chains, seed, breaks=breaks, as_of=as_of, crm=crm)
    write(co, Path(directory))  # (sets the Stripe customer ids the labels use)
    return truth_of(co)


def write_truth(truth: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
