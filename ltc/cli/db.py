"""``ltc db upgrade|current|backup|restore``: the store's schema, a consistent copy of the store, and putting one
back."""

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


@app.command("restore")
def db_restore(backup_file: str = typer.Argument(..., metavar="BACKUP", help="A file `ltc db backup` wrote (SQLite: "
                                                 "a store file; PostgreSQL: pg_dump's custom format)."),
               yes: bool = typer.Option(False, "--yes", help="Replace the store without asking."),
               no_safety_copy: bool = typer.Option(False, "--no-safety-copy", help="Do not copy the store as it is "
                                                   "before replacing it."),
               config: str | None = ConfigOpt) -> None:
    """Replace the store's content with a backup (a safety copy of the store first; upgraded if older)."""
    import sys

    import ltc.app.schema  # noqa: F401  (every table in the shared metadata: those a PostgreSQL restore drops)
    from canonical.errors import InputError
    from canonical.restore import check, restore

    url = store_url(config)
    plan = check(url, backup_file)
    what = (f"{plan.target} will be replaced by the backup {plan.backup} (schema revision {plan.revision})"
            + ("" if no_safety_copy else ", after a safety copy of it"))
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(f"{what}: give --yes to restore without a terminal to confirm on")
        typer.confirm(f"{what}. Go on?", abort=True)
    done = restore(plan, safety_copy=not no_safety_copy)
    say = lambda line: console.print(line, soft_wrap=True, highlight=False, markup=False)  # noqa: E731
    for note in done.notes:
        say(f"note: {note}")
    if done.safety_copy is not None:
        say(f"safety copy of the store as it was: {done.safety_copy}")
    elif no_safety_copy:
        say("no safety copy made (--no-safety-copy)")
    say(f"restored {plan.backup} (schema revision {plan.revision}) into {plan.target}")
    if done.upgraded is not None:
        say(f"schema upgraded as `ltc db upgrade` does: {done.upgraded[0]} -> {done.upgraded[1]}")
