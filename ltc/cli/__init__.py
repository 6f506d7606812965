"""``ltc``: the command line, a thin shell over the application layer (:mod:`ltc.app`).

One module per command group; :mod:`ltc.cli.main` assembles them into one typer app. The console
entry point is ``ltc.cli:main``.
"""

from ltc.cli.main import app, main

__all__ = ["app", "main"]
