"""Bank statements (camt.053, MT940): format detection and file import.

A parser (:mod:`connectors.camt053`, :mod:`connectors.mt940`) turns one file into
:class:`~connectors.bank_statement.ParsedStatement` objects (the shared shape and the balance gate
live in :mod:`connectors.bank_statement`): one raw payload per statement and one per entry (or per
transaction detail of a batch-booked entry), all in the entry dict shape documented in
:mod:`connectors.camt053`. This module lands them.

Guarantees:

* **Integrity gate per statement**: opening booked balance + signed booked entries = closing
  booked balance, per currency. A statement that fails (or that cannot be read) is rejected whole:
  nothing of it is landed, it goes to quarantine (object ``<format>.statement``, once per
  statement and reason, however often the file is re-imported) and the import reports it. The
  other statements of the file still import. So is a statement with an absurd amount (beyond the
  currency's sane bound, over 12 decimal places: :func:`~connectors.bank_statement.check_amount`)
  or an id that cannot be a key in the store (over 255 characters, U+0000), alike on every backend.
* **The source** (the raw system the rows land in) is a name the store can hold
  (:func:`check_source_name`); ``ltc import-statement`` also wants it to be a bank source.
* **Idempotent**: entries are keyed on the bank's account-servicer reference, statements on
  account + statement id; re-importing a file writes nothing (the store's same-hash no-op).
* **Imported files** are tracked by content hash (BLAKE2b-128 of the bytes) in the cursor of the
  stream ``statements`` of the source (``stream_state``, no extra table), committed in the same
  transaction as the file's last statement. :func:`import_folder` skips files whose hash is
  there, so renaming or touching a file does not re-import it, and a half-copied file that fails
  to parse is simply retried on the next pass.

Entry points: :func:`import_file` (one file, always parsed), :func:`import_folder` (every file of
a folder not imported yet) and :func:`run_import` (either of them as one recorded run: ``run``
row with counts, stream ``statements`` status and message), which ``ltc import-statement`` and
the Prefect flow call. A whole file is parsed in memory (statement files are daily-sized); each
statement is landed in its own transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from canonical.errors import InputError
from canonical.locks import stage_lock
from canonical.store import RawRecord, Rejected, Store, content_hash, now
from canonical.tables import quarantine
from connectors import camt053, mt940
from connectors.bank_statement import ParsedStatement
from connectors.base import unstorable_id

DEFAULT_SOURCE = "bank"
STREAM = "statements"
# Files import_folder never picks up: hidden files and the usual "still being written" names.
_PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", "~")


# --- import -------------------------------------------------------------------------------------

@dataclass(slots=True)
class StatementResult:
    statement_id: str
    account: str | None
    format: str
    entries: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    error: str | None = None


@dataclass(slots=True)
class FileResult:
    path: Path
    file_hash: str
    format: str | None = None
    statements: list[StatementResult] = field(default_factory=list)
    skipped: bool = False  # import_folder: already imported (same content hash)
    error: str | None = None  # import_folder: the file could not be read at all

    @property
    def rejected(self) -> list[StatementResult]:
        return [s for s in self.statements if s.error]


def file_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def detect_format(data: bytes, name: str) -> str:
    """``camt053`` (XML) or ``mt940`` (SWIFT tags), from the content, not the file name."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "camt053"
    text = head.decode("latin-1")
    if ":20:" in text and (":25:" in text or ":60F:" in text or ":60M:" in text):
        return "mt940"
    raise InputError(f"{name}: neither a camt.053 XML document nor an MT940 statement file")


def parse_bytes(data: bytes, name: str) -> tuple[str, list[ParsedStatement]]:
    """Parse a statement file's bytes. Raises InputError (one line, file and line) for a bad file."""
    kind = detect_format(data, name)
    parser: Callable[[bytes, str], list[ParsedStatement]] = (
        camt053.parse_camt053 if kind == "camt053" else mt940.parse_mt940
    )
    return kind, parser(data, name)


# Parses done elsewhere of files about to be imported: (file hash, name) -> parse_bytes' answer.
_PARSED: dict[tuple[str, str], tuple[str, list[ParsedStatement]]] = {}
_PARSED_MAX = 64  # files: an offer nobody imports never holds more than this


def offer_parsed(digest: str, name: str, parsed: tuple[str, list[ParsedStatement]]) -> None:
    """Hand over ``parse_bytes(data, name)`` of a file whose bytes hash to ``digest`` (:func:`file_hash`),
    parsed elsewhere (a world's check of its bank folder): the next import of those bytes under that
    name uses it once instead of parsing them again. The parse is a function of the bytes and the name
    alone, so the import is the same."""
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[digest, name] = parsed


def forget_parsed() -> None:
    """Drop the parses offered and not used."""
    _PARSED.clear()


def _imported_files(cursor: Any) -> dict[str, str]:
    return dict(cursor.get("files", {})) if isinstance(cursor, dict) else {}


def _quarantined_already(store: Store, source: str, keys: list[tuple[str, str | None, str]]
                         ) -> set[tuple[str, str | None, str]]:
    """Which (object, source id, reason) rejections are already open in quarantine (None: a statement
    whose id cannot be a key, quarantined without one)."""
    if not keys:
        return set()
    q = quarantine.c
    ids = q.source_id.in_(sorted({k[1] for k in keys if k[1] is not None}))
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(q.object, q.source_id, q.reason).where(
                q.system == source,
                q.resolved_at.is_(None),
                sa.or_(ids, q.source_id.is_(None)) if any(k[1] is None for k in keys) else ids,
            )
        )
        return {(o, s, r) for o, s, r in rows}


def _rejection(stmt: ParsedStatement) -> Rejected:
    """The quarantine row of a rejected statement (without its id if that cannot be a key: the reason
    says so, and the payload holds it)."""
    assert stmt.error is not None
    sid = stmt.source_id if unstorable_id(stmt.source_id) is None else None
    return Rejected(stmt.statement_object, stmt.error, sid, stmt.payload)


def import_bytes(
    store: Store, data: bytes, name: str, source: str = DEFAULT_SOURCE, *, run_id: str | None = None,
    path: Path | None = None,
) -> FileResult:
    """Parse and land one statement file (see the module docstring). InputError for a bad file."""
    digest = file_hash(data)
    offered = _PARSED.pop((digest, name), None)
    kind, statements = offered if offered is not None else parse_bytes(data, name)
    result = FileResult(path=path or Path(name), file_hash=digest, format=kind)
    cursor = store.get_cursor(source, STREAM)
    rejected: list[Rejected] = []
    pages: list[list[RawRecord]] = []
    for stmt in statements:
        res = StatementResult(stmt.statement_id, stmt.payload.get("account_iban"), stmt.format,
                              entries=len(stmt.entries), error=stmt.error)
        result.statements.append(res)
        if stmt.error is not None:
            rejected.append(_rejection(stmt))
            continue
        known = store.known_hashes(source, stmt.entry_object, [sid for sid, _ in stmt.entries])
        for sid, payload in stmt.entries:
            stored = known.get(sid)
            if stored is None:
                res.new += 1
            elif stored == content_hash(payload):
                res.unchanged += 1
            else:
                res.changed += 1
        pages.append([RawRecord(stmt.statement_object, stmt.source_id, stmt.payload)]
                     + [RawRecord(stmt.entry_object, sid, payload) for sid, payload in stmt.entries])
    # One transaction per statement; the last one also records the file as imported.
    last = pages.pop() if pages else []
    for records in pages:
        store.commit_page(source, STREAM, records, cursor, run_id=run_id)
    open_keys = _quarantined_already(store, source, [(r.object, r.source_id, r.reason) for r in rejected])
    fresh = [r for r in rejected if (r.object, r.source_id, r.reason) not in open_keys]
    files = _imported_files(cursor)
    files[digest] = name
    new_cursor = {"files": files, "last_file": name, "last_imported_at": now().isoformat()}
    store.commit_page(source, STREAM, last, new_cursor, run_id=run_id, rejected=fresh)
    return result


def import_file(store: Store, path: str | Path, source: str = DEFAULT_SOURCE, *, run_id: str | None = None) -> FileResult:
    """Import one camt.053 or MT940 file (always parsed, even if imported before: that is a no-op)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read statement file: {exc.strerror or exc}") from None
    return import_bytes(store, data, p.name, source, run_id=run_id, path=p)


def import_folder(store: Store, folder: str | Path, source: str = DEFAULT_SOURCE, *, run_id: str | None = None) -> list[FileResult]:
    """Import every file of ``folder`` (not recursive, name order) whose content was not imported yet.

    Idempotent: a second pass over the same folder imports nothing (each result has
    ``skipped=True``). A file that cannot be read or parsed is reported in its result's ``error``
    and not marked imported, so the next pass retries it; the other files still import.
    """
    base = Path(folder)
    if not base.is_dir():
        raise InputError(f"{base}: statement folder does not exist or is not a directory")
    results: list[FileResult] = []
    for p in sorted(base.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.name.endswith(_PARTIAL_SUFFIXES):
            continue
        try:
            data = p.read_bytes()
        except OSError as exc:
            results.append(FileResult(p, "", error=f"{p.name}: cannot read: {exc.strerror or exc}"))
            continue
        digest = file_hash(data)
        if digest in _imported_files(store.get_cursor(source, STREAM)):
            results.append(FileResult(p, digest, skipped=True))
            continue
        try:
            results.append(import_bytes(store, data, p.name, source, run_id=run_id, path=p))
        except InputError as exc:
            results.append(FileResult(p, digest, error=str(exc)))
    return results


@dataclass(slots=True)
class ImportSummary:
    """What one import run did: per-file results and the totals (also stored as the run's counts)."""

    run_id: str
    results: list[FileResult]
    counts: dict[str, int]

    @property
    def ok(self) -> bool:
        return not (self.counts["rejected"] or self.counts["bad_files"])


def run_import(
    store: Store, *, file: str | Path | None = None, folder: str | Path | None = None, source: str = DEFAULT_SOURCE
) -> ImportSummary:
    """One import run (a file, or a folder pass) with its run record and stream status, as the CLI
    and the flow record it. A file that cannot be read raises InputError (the run is marked failed);
    in a folder pass it is reported in its result and the other files still import."""
    if (file is None) == (folder is None):
        raise InputError("import-statement: give either a FILE or --folder DIR (one of them)")
    check_source_name(source)
    with stage_lock(store.engine, f"import:{source}"):
        store.close_interrupted("import", source, streams=True)
        return _run_import(store, file, folder, source)


_SOURCE_MAX = 64  # characters of raw_record.system and stream_state.connector, which the source name becomes


def check_source_name(source: str) -> None:
    """InputError unless ``source`` can name a raw system: 1 to 64 characters, no control character."""
    problem = ("is empty" if not source.strip() else
               f"is longer than {_SOURCE_MAX} characters" if len(source) > _SOURCE_MAX else
               "contains a control character" if any(ord(c) < 32 or ord(c) == 127 for c in source) else None)
    if problem is not None:
        raise InputError(f"import-statement: source name {source[:80]!r} {problem}; give the name of a bank source "
                         f"(--source, default {DEFAULT_SOURCE!r})")


def _run_import(store: Store, file: str | Path | None, folder: str | Path | None, source: str) -> ImportSummary:
    run_id = store.begin_run("import", source)
    store.start_stream(source, STREAM, run_id)
    try:
        results = (import_folder(store, folder, source, run_id=run_id) if folder is not None
                   else [import_file(store, file, source, run_id=run_id)])  # type: ignore[arg-type]
    except Exception as exc:  # InputError, or anything unforeseen: the run is not left `running`
        why = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"[:500]
        with contextlib.suppress(Exception):  # a store that fails here: its own error is the one to see
            store.finish_run(run_id, "failed", message=why)
            store.finish_stream(source, STREAM, "failed", message=why)
        raise
    stmts = [st for r in results for st in r.statements]
    counts = {
        "files": len(results),
        "skipped": sum(r.skipped for r in results),
        "bad_files": sum(r.error is not None for r in results),
        "statements": len(stmts),
        "rejected": sum(st.error is not None for st in stmts),
        "entries": sum(st.entries for st in stmts),
        "new": sum(st.new for st in stmts),
        "changed": sum(st.changed for st in stmts),
        "unchanged": sum(st.unchanged for st in stmts),
    }
    summary = ImportSummary(run_id, results, counts)
    problems = [r.error for r in results if r.error] + [st.error for st in stmts if st.error]
    status = "success" if summary.ok else "failed"
    message = f"{len(problems)} problem(s); first: {problems[0]}" if problems else None
    store.finish_run(run_id, status, counts, message)
    store.finish_stream(source, STREAM, status, message=message)
    return summary
