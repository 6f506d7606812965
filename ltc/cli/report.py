"""``ltc report``: the finance report of the latest reconciliation in the store."""

from __future__ import annotations

import typer

from ltc.cli.common import ConfigOpt, console, open_store


def report(
    out: str = typer.Option(".ltc/reports", "--out", help="Directory of the report files."),
    title: str | None = typer.Option(None, help="Title of the HTML report."),
    lang: str | None = typer.Option(None, "--lang", help="Language of the report: en or zh "
                                    "(default: that of reporting_locale in ltc.yaml)."),
    config: str | None = ConfigOpt,
) -> None:
    """Write the finance report of the latest reconciliation: report.html, CSV files, report.xlsx."""
    from ltc.app.config import load_config
    from reports.finance import write_reports

    files = write_reports(open_store(config, auto_create=False), out, title=title, config=load_config(config), lang=lang)
    for path in files.all():
        console.print(str(path))
