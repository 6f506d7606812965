"""Edits of a copied test world's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def edit_line(path: Path, line: int, change: Any) -> None:
    """``change(record)`` applied to the JSON record on ``line`` (1-based) of a JSON Lines file."""
    rows = path.read_text(encoding="utf-8").splitlines()
    rec = json.loads(rows[line - 1])
    change(rec)
    rows[line - 1] = json.dumps(rec)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
