"""``ltc``: a thin command-line shell over the same functions the Prefect flows call (:mod:`ltc.app`).

Every error an operator can act on is printed as one line on stderr with a non-zero exit code;
no traceback. Each command group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import sys

import typer

from canonical.errors import InputError, LtcError, operator_error
from ltc.cli import (
    config,
    db,
    demo,
    mapping,
    notify,
    push,
    push_crm,
    reconcile,
    report,
    sandbox,
    serve,
    statements,
    sync,
    ui,
)
from ltc.cli.common import err_console

app = typer.Typer(
    help="ltc-hub: Lead-to-Cash integration hub.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def version() -> str:
    """The installed distribution's version (``ltc-hub``), or ``unknown`` when run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("ltc-hub")
    except PackageNotFoundError:
        return "unknown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ltc-hub {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", "-V", help="Print the version of ltc-hub and exit.",
                                      callback=_version, is_eager=True),
) -> None:
    """ltc-hub: Lead-to-Cash integration hub."""


app.add_typer(db.app, name="db")
app.add_typer(config.app, name="config")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(ui.app, name="ui")
app.add_typer(notify.app, name="notify")
app.command()(sync.sync)
app.command()(sync.status)
app.command()(sync.run)
app.command()(demo.demo)
app.command()(report.report)
app.command()(serve.serve)
app.command("import-statement")(statements.import_statement)
app.command("push-orders")(push.push_orders_cmd)
app.command("push-crm")(push_crm.push_crm_cmd)
app.command("reconcile")(reconcile.reconcile)
app.add_typer(reconcile.exceptions_app, name="exceptions")
app.command("remap")(mapping.remap)
app.command("identity")(mapping.identity)
app.add_typer(mapping.mappings_app, name="mappings")


def utf8_arguments(argv: list[str]) -> None:
    """:class:`InputError` (one line) for an argument that is not UTF-8 text: a terminal in another encoding (Latin-1,
    GBK) passed its bytes, which Python keeps as lone surrogates, and every store, file and console write refused
    them later with a traceback ("surrogates not allowed")."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            raw = arg.encode("utf-8", "surrogateescape")
            shown = raw.decode("utf-8", "backslashreplace")
            shown = shown if len(shown) <= 60 else shown[:59] + "…"
            bad = next((ord(c) & 0xFF for c in arg[exc.start:exc.end]), 0)
            raise InputError(f"the argument '{shown}' is not valid UTF-8 text (byte 0x{bad:02x}): set the terminal "
                             "to UTF-8 (e.g. LANG=C.UTF-8 or LC_ALL=C.UTF-8) or give the text in UTF-8") from None


def main() -> None:
    """Console entry point: LtcError (or an error an operator must fix: :func:`operator_error`) -> one line on
    stderr and its exit code."""
    try:
        utf8_arguments(sys.argv[1:])
        app()
    except LtcError as exc:
        err_console.print(f"error: {exc}", soft_wrap=True, highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as exc:  # a full disk, a read-only store...: one line too; anything else is a bug
        problem = operator_error(exc)
        if problem is None:
            raise
        err_console.print(f"error: {problem}", soft_wrap=True, highlight=False, markup=False)
        sys.exit(problem.exit_code)
