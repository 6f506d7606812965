"""``ltc db upgrade|current``: the store's schema."""

from __future__ import annotations

import typer

from canonical import db
from ltc.cli.common import ConfigOpt, console, store_url

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(config: str | None = ConfigOpt) -> None:
    """Create the schema in an empty database, or migrate it to this version."""
    url = store_url(config)
    engine = db.make_engine(url)
    before, after = db.upgrade(engine)
    if before == after:
        console.print(f"schema of {db.mask_url(url)} is up to date (revision {after})")
    else:
        console.print(f"schema of {db.mask_url(url)} upgraded: {before or 'empty'} -> {after}")


@app.command("current")
def db_current(config: str | None = ConfigOpt) -> None:
    """Print the schema revision of the database and the one this ltc-hub needs."""
    url = store_url(config)
    engine = db.make_engine(url)
    console.print(f"database {db.mask_url(url)}: revision {db.current_revision(engine) or 'none'}; "
                  f"this ltc-hub needs {db.head_revision()}")
