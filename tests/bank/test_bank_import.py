"""Landing statements in the store (SQLite and PostgreSQL): idempotency, rejection, folder import."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from canonical.errors import InputError
from canonical.store import Store
from connectors.statements import STREAM, import_file, import_folder, run_import

FIXTURES = Path(__file__).parent / "fixtures"


def counts(result) -> list[tuple[str, int, int, int, int, bool]]:  # type: ignore[no-untyped-def]
    return [(s.statement_id, s.entries, s.new, s.changed, s.unchanged, s.error is not None) for s in result.statements]


def test_import_then_reimport_changes_nothing(store: Store) -> None:
    path = FIXTURES / "camt053_v02_nov.xml"
    first = import_file(store, path)
    assert counts(first) == [("STMT-2026-11-01", 6, 6, 0, 0, False), ("STMT-2026-11-02", 0, 0, 0, 0, True)]
    assert store.count_raw("bank", "camt053.entry") == 6
    assert store.count_raw("bank", "camt053.statement") == 1  # the failing statement landed nothing
    assert store.get_raw("bank", "camt053.entry", "ASR-2001") is None
    raw = store.get_raw("bank", "camt053.entry", "ASR-1002#2")
    assert raw is not None and raw["payload"]["amount"] == "70.50" and raw["payload"]["debtor_name"] == "Gamma SARL"
    before = {r["source_id"]: (r["content_hash"], r["fetched_at"]) for r in _raw_rows(store)}
    [q] = store.quarantined("bank")
    assert q["object"] == "camt053.statement" and "difference 50.00 EUR" in q["reason"]

    second = import_file(store, path)
    assert counts(second) == [("STMT-2026-11-01", 6, 0, 0, 6, False), ("STMT-2026-11-02", 0, 0, 0, 0, True)]
    after = {r["source_id"]: (r["content_hash"], r["fetched_at"]) for r in _raw_rows(store)}
    assert after == before  # nothing rewritten
    assert len(store.quarantined("bank")) == 1  # the same rejection is not quarantined twice
    cursor = store.get_cursor("bank", STREAM)
    assert cursor["files"] == {first.file_hash: "camt053_v02_nov.xml"}


def _raw_rows(store: Store) -> list[dict]:
    import sqlalchemy as sa

    from canonical.tables import raw_record

    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(raw_record))]


def test_corrected_statement_updates_changed_entries_only(store: Store, tmp_path: Path) -> None:
    original = (FIXTURES / "camt053_v02_nov.xml").read_text()
    import_file(store, FIXTURES / "camt053_v02_nov.xml", source="bank-de")
    # The bank re-sends the file: the second statement now balances, one remittance text changed.
    fixed = original.replace("<Amt Ccy=\"EUR\">2430.50</Amt>", "<Amt Ccy=\"EUR\">2480.50</Amt>")
    fixed = fixed.replace("<Ustrd>customer 10077</Ustrd>", "<Ustrd>customer 10078</Ustrd>")
    path = tmp_path / "nov-corrected.xml"
    path.write_text(fixed)
    result = import_file(store, path, source="bank-de")
    assert counts(result) == [("STMT-2026-11-01", 6, 0, 1, 5, False), ("STMT-2026-11-02", 1, 1, 0, 0, False)]
    raw = store.get_raw("bank-de", "camt053.entry", "ASR-1001")
    assert raw is not None and raw["payload"]["remittance_unstructured"].endswith("customer 10078")
    assert store.count_raw("bank-de", "camt053.entry") == 7
    assert store.count_raw("bank", "camt053.entry") == 0  # the source name is the raw system


def test_multi_currency_and_mt940_land_in_their_own_objects(store: Store) -> None:
    import_file(store, FIXTURES / "camt053_v08_multi.xml")
    mt = import_file(store, FIXTURES / "mt940_nov.sta")
    assert counts(mt) == [("STARTUMS/00042", 2, 2, 0, 0, False), ("STARTUMS/00043", 0, 0, 0, 0, True)]
    assert store.count_raw("bank", "camt053.entry") == 2
    assert store.count_raw("bank", "mt940.entry") == 2
    assert store.count_raw("bank", "mt940.statement") == 1
    entry = store.get_raw("bank", "mt940.entry", "BREF-0001")
    assert entry is not None and Decimal(entry["payload"]["amount"]) == Decimal("1190.00")
    reasons = sorted(q["object"] for q in store.quarantined("bank"))
    assert reasons == ["mt940.statement"]


def test_import_folder_is_idempotent_and_retries_bad_files(store: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("camt053_v02_nov.xml", "camt053_v04_single.xml", "mt940_nov.sta", "malformed.xml"):
        shutil.copy(FIXTURES / name, inbox / name)
    (inbox / ".hidden.xml").write_text("ignored")
    (inbox / "incoming.xml.part").write_text("<Doc")
    first = import_folder(store, inbox)
    by_name = {r.path.name: r for r in first}
    assert sorted(by_name) == ["camt053_v02_nov.xml", "camt053_v04_single.xml", "malformed.xml", "mt940_nov.sta"]
    assert by_name["malformed.xml"].error == "malformed.xml:7: not well-formed XML (column 6): mismatched tag"
    assert [s.new for s in by_name["camt053_v04_single.xml"].statements] == [1]
    landed = store.count_raw("bank")

    # A second pass imports nothing; the same content under another name is still "imported".
    shutil.copy(FIXTURES / "camt053_v04_single.xml", inbox / "copy-of-gbp.xml")
    second = import_folder(store, inbox)
    assert {r.path.name: r.skipped for r in second} == {
        "camt053_v02_nov.xml": True, "camt053_v04_single.xml": True, "copy-of-gbp.xml": True,
        "malformed.xml": False, "mt940_nov.sta": True,
    }
    assert store.count_raw("bank") == landed
    # The broken file is fixed in place: the next pass imports it.
    (inbox / "malformed.xml").write_bytes((FIXTURES / "camt053_v08_multi.xml").read_bytes())
    third = {r.path.name: r for r in import_folder(store, inbox)}
    assert [s.new for s in third["malformed.xml"].statements] == [1, 1]
    assert len(store.get_cursor("bank", STREAM)["files"]) == 4


def test_missing_folder_or_file_is_one_line(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"statement folder does not exist"):
        import_folder(store, tmp_path / "nope")
    with pytest.raises(InputError, match=r"nope.xml: cannot read statement file"):
        import_file(store, tmp_path / "nope.xml")


def test_run_import_records_run_counts_and_stream_status(store: Store) -> None:
    summary = run_import(store, file=FIXTURES / "camt053_v04_single.xml", source="bank-gb")
    assert summary.ok and summary.counts["new"] == 1 and summary.counts["rejected"] == 0
    [state] = store.stream_states()
    assert (state["connector"], state["stream"], state["status"], state["message"]) == ("bank-gb", STREAM, "success", None)
    summary = run_import(store, file=FIXTURES / "camt053_v02_nov.xml", source="bank-gb")
    assert not summary.ok and summary.counts == {
        "files": 1, "skipped": 0, "bad_files": 0, "statements": 2, "rejected": 1, "entries": 6, "new": 6,
        "changed": 0, "unchanged": 0,
    }
    [state] = store.stream_states()
    assert state["status"] == "failed" and "difference 50.00 EUR" in state["message"]
    with pytest.raises(InputError):
        run_import(store, file=FIXTURES / "malformed.xml", source="bank-gb")
    [state] = store.stream_states()
    assert state["status"] == "failed" and state["message"].startswith("malformed.xml:7:")


def test_an_offered_parse_is_used_once_and_imports_the_same(store: Store, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import connectors.statements as statements

    path = FIXTURES / "camt053_v02_nov.xml"
    data = path.read_bytes()
    offered = statements.parse_bytes(data, path.name)
    statements.offer_parsed(statements.file_hash(data), path.name, offered)
    calls: list[str] = []
    parse = statements.parse_bytes
    monkeypatch.setattr(statements, "parse_bytes", lambda d, n: calls.append(n) or parse(d, n))
    first = import_file(store, path)  # the offered parse: not parsed again
    assert calls == []
    assert counts(first) == [("STMT-2026-11-01", 6, 6, 0, 0, False), ("STMT-2026-11-02", 0, 0, 0, 0, True)]
    assert store.count_raw("bank", "camt053.entry") == 6
    import_file(store, path)  # used once: parsed now
    assert calls == [path.name]
    # an offer under another name (or of other bytes) is not used
    statements.offer_parsed(statements.file_hash(data), "other.xml", offered)
    import_file(store, path)
    assert calls == [path.name, path.name]
    statements.forget_parsed()
    assert statements._PARSED == {}


def _runs(store: Store) -> list[tuple[str | None, str, str | None]]:
    import sqlalchemy as sa

    from canonical.tables import run

    with store.engine.connect() as conn:
        return [(r.source, r.status, r.message) for r in conn.execute(sa.select(run).order_by(run.c.started_at))]


V04 = (FIXTURES / "camt053_v04_single.xml").read_text()
MT940 = (FIXTURES / "mt940_nov.sta").read_text().split("-\n")[0] + "-\n"  # its first statement, which balances


def test_ids_that_cannot_be_keys_quarantine_their_statement_on_every_backend(store: Store, tmp_path: Path) -> None:
    # PostgreSQL refused these with StringDataRightTruncation or a NUL error (a traceback); SQLite took them
    long = "X" * 256
    files = {
        "ref.xml": V04.replace("<AcctSvcrRef>", f"<AcctSvcrRef>{long}", 1),
        "stmt.xml": V04.replace("<Id>GBP-0601</Id>", f"<Id>{long}</Id>", 1),
        "iban.xml": V04.replace("<IBAN>GB29NWBK60161331926819</IBAN>", f"<IBAN>{long}</IBAN>", 1),
        "ref.sta": MT940.replace("//BREF-0001", "//BREF\x00-0001"),
        "stmt.sta": MT940.replace(":20:STARTUMS", ":20:START\x00UMS"),
    }
    for name, text in files.items():
        assert text not in (V04, MT940), name
        (tmp_path / name).write_text(text)
    expected = {
        "ref.xml": "entry 1: reference 'XXXX",
        "stmt.xml": "statement id 'GB29NWBK60161331926819:XXXX",
        "iban.xml": "statement id 'XXXX",
        "ref.sta": "entry 1: reference 'BREF\\x00-0001': contains U+0000",
        "stmt.sta": "statement id 'DE89370400440532013000:START\\x00UMS/00042:2026-11-01': contains U+0000",
    }
    for _ in range(2):  # the same rejection is quarantined once
        for name in files:
            [stmt] = import_file(store, tmp_path / name).statements
            assert stmt.error is not None and expected[name] in stmt.error, (name, stmt.error)
    assert store.count_raw("bank") == 0
    rows = sorted(store.quarantined("bank"), key=lambda q: q["reason"])
    assert len(rows) == 5
    for q in rows:
        assert ("longer than 255 characters" in q["reason"]) != ("contains U+0000" in q["reason"])
        assert "\x00" not in q["reason"]  # the :20: of stmt.sta is in it as U+FFFD
        unkeyed = "statement id" in q["reason"]
        assert (q["source_id"] is None) == unkeyed, q  # an id that cannot be a key is not the quarantine's either


def test_absurd_amount_rejects_its_statement_and_the_folder_pass_goes_on(store: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a-huge.xml").write_text(V04.replace('<Amt Ccy="GBP">12.34</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>',
                                                  f'<Amt Ccy="GBP">{"9" * 38}.99</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>'))
    shutil.copy(FIXTURES / "mt940_nov.sta", inbox / "b.sta")
    summary = run_import(store, folder=inbox)
    [huge, other] = summary.results
    [stmt] = huge.statements
    assert stmt.error is not None and f"amount {'9' * 38}.99 GBP is beyond the sane bound" in stmt.error
    assert [s.new for s in other.statements] == [2, 0]
    assert summary.counts["rejected"] == 2 and store.count_raw("bank", "mt940.entry") == 2
    assert [status for _, status, _ in _runs(store)] == ["failed"]  # finished, not left running


def test_an_unforeseen_error_fails_the_run_instead_of_leaving_it_running(store: Store,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import connectors.statements as statements

    def boom(*args: object, **kwargs: object) -> None:
        raise ArithmeticError("boom")

    monkeypatch.setattr(statements, "import_bytes", boom)
    with pytest.raises(ArithmeticError):
        run_import(store, file=FIXTURES / "camt053_v04_single.xml")
    assert _runs(store) == [("bank", "failed", "ArithmeticError: boom")]
    [state] = store.stream_states()
    assert (state["status"], state["message"]) == ("failed", "ArithmeticError: boom")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "import-statement: source name '' is empty; give the name of a bank source (--source, default 'bank')"),
        ("b" * 65, f"import-statement: source name {'b' * 65!r} is longer than 64 characters;"),
        ("bank\x00", "import-statement: source name 'bank\\x00' contains a control character;"),
    ],
)
def test_a_source_name_the_store_cannot_hold_is_one_line(store: Store, source: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        run_import(store, file=FIXTURES / "camt053_v04_single.xml", source=source)
    assert str(err.value).startswith(message) and err.value.exit_code == 2
    assert _runs(store) == []
