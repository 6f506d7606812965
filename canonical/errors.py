"""Errors an operator can act on. Each carries a one-line message that says what to fix.

The CLI prints ``str(error)`` on one line and exits with ``exit_code``; no traceback.
"""

from __future__ import annotations


class LtcError(Exception):
    """Base of every error that should reach an operator as one clear line."""

    exit_code = 1


class ConfigError(LtcError):
    """Bad configuration or input: fix the file, variable or argument named in the message."""

    exit_code = 2


class DatabaseUnavailable(LtcError):
    """The store's database cannot be reached or opened."""

    exit_code = 2


class SchemaOutdated(LtcError):
    """The database schema is not the one this version of ltc-hub expects."""

    exit_code = 2


class InputError(LtcError):
    """A file or record given to ltc-hub is malformed; the message names file and line."""

    exit_code = 2


def yaml_problem(path: object, exc: Exception, *, default_line: int | None = None) -> str:
    """``<path>:<line>: not valid YAML: <problem>`` for a YAML parse error (line where the parser knows it)."""
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else default_line
    where = f"{path}:{line}" if line is not None else str(path)
    return f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"
