"""Frame contracts of the reconcile stages: the columns a stage needs, checked in debug mode.

A stage calls :func:`expect` on each frame it reads; with ``LTC_RECON_CHECK=1`` (the test suite sets
it) a missing column raises :class:`ContractError` naming the stage, the frame and the columns, instead
of a Polars error deep inside an expression. Off by default: the check costs a set difference per frame,
but the benchmarks measure the engine, not its assertions.
"""

from __future__ import annotations

import os

import polars as pl

EXCEPTION_COLUMNS = ("code", "chain_id", "keys", "records", "currency", "amount", "cluster_id", "detail")
"""What every stage's exception frames carry (before :func:`reconcile.stages.exceptions.finish_exceptions`)."""

LINK_COLUMNS = ("chain_id", "from_entity", "from_id", "to_entity", "to_id", "rule_id", "confidence",
                "runner_up_id", "margin", "evidence")
"""What every stage's link frames carry (``recon_link`` rows)."""


class ContractError(AssertionError):
    """A stage got a frame without a column it needs (a programming error, not bad data)."""


def checking() -> bool:
    return os.environ.get("LTC_RECON_CHECK", "") not in ("", "0")


def expect(stage: str, frame_name: str, df: pl.DataFrame, columns: tuple[str, ...] | list[str]) -> None:
    """Raise when ``df`` lacks any of ``columns`` (only while ``LTC_RECON_CHECK`` is set)."""
    if not checking():
        return
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ContractError(f"reconcile stage {stage}: frame {frame_name} lacks {', '.join(missing)} "
                            f"(has {', '.join(df.columns)})")


def expect_parts(stage: str, parts: list[pl.DataFrame], columns: tuple[str, ...]) -> None:
    for i, part in enumerate(parts):
        expect(stage, f"part {i}", part, columns)
