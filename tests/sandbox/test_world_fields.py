"""docs/world.md's "Fields read" table is generated from the connectors and the mappings: no drift."""

from __future__ import annotations

from pathlib import Path

from sandbox.world_fields import BEGIN, END, table

DOC = Path(__file__).resolve().parents[2] / "docs" / "world.md"


def test_docs_world_fields_table_matches_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == table(), "docs/world.md drifted: paste `python -m sandbox.world_fields` into it"


def test_the_table_shows_tryton_dotted_reads_and_mapping_paths() -> None:
    rows = {line.split(" | ")[1]: line for line in table().splitlines() if line.startswith("| tryton |")}
    invoice = rows["`account.invoice.jsonl`"]
    assert '`"lines_to_pay."`: {`maturity_date`}' in invoice and '`"currency."`: {`code`}' in invoice
    assert "`lines_to_pay.0.maturity_date`" in invoice and "`due_date` **(not requested)**" in invoice
