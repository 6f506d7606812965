"""``ltc db upgrade|current|backup``: the store's schema, and a consistent copy of the store."""

from __future__ import annotations

import typer

from canonical import db
from ltc.cli.common import ConfigOpt, console, store_url

app = typer.Typer(help="The store's database: its schema, and backups.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(config: str | None = ConfigOpt) -> None:
    """Create the schema in an empty database, or migrate it to this version."""
    url = store_url(config)
    engine = db.make_engine(url)
    before, after = db.upgrade_locked(engine)
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


@app.command("backup")
def db_backup(dest: str = typer.Argument(..., help="A new file for the copy (SQLite: a store file; PostgreSQL: "
                                         "pg_dump's custom format, for pg_restore)."),
              config: str | None = ConfigOpt) -> None:
    """Write a consistent copy of the store while runs go on (SQLite: VACUUM INTO; PostgreSQL: pg_dump)."""
    from canonical.backup import backup

    url = store_url(config)
    db.require_existing(url)
    made = backup(url, dest)
    console.print(f"backup of {db.mask_url(url)} (schema revision {made.revision or 'none'}) written to {made.path} "
                  f"({made.size / 1e6:,.1f} MB)", soft_wrap=True, highlight=False, markup=False)
