"""Schema migrations: empty -> head on both backends, and refusal of a schema that is not head."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from canonical import db
from canonical.errors import SchemaOutdated
from canonical.store import Store
from ltc.app import schema as tables  # the whole schema: every layer's tables


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A database with nothing in it, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    new_database = request.getfixturevalue("pg_new_database")
    return str(new_database())


def test_empty_to_head_creates_every_table(empty_url: str) -> None:
    engine = db.make_engine(empty_url)
    assert db.current_revision(engine) is None
    before, after = db.upgrade(engine)
    assert (before, after) == (None, db.head_revision())
    assert set(tables.metadata.tables) <= set(sa.inspect(engine).get_table_names())
    assert db.upgrade(engine) == (after, after)  # running it again is a no-op
    engine.dispose()


def test_migrated_schema_matches_the_model(empty_url: str) -> None:
    """Autogenerate finds nothing to do: the migrations and tables.py agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = db.make_engine(empty_url)
    db.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    assert [d for d in diff if d[0] != "remove_table"] == []
    engine.dispose()


def test_store_refuses_a_schema_that_is_not_head(empty_url: str) -> None:
    engine = db.make_engine(empty_url)
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version"))
    with pytest.raises(SchemaOutdated, match="run `ltc db upgrade`"):
        Store.open(empty_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('9999')"))
    with pytest.raises(SchemaOutdated, match="newer than this ltc-hub"):
        Store.open(empty_url)
    # ``ltc db upgrade`` of a later release's store (an ltc-hub rolled back): the same one line, not Alembic's
    # traceback (fails on 0ee0bb2), and the store untouched
    with pytest.raises(SchemaOutdated, match=r"revision 9999, newer than this ltc-hub knows .*never migrated down"):
        db.upgrade_locked(engine)
    assert db.current_revision(engine) == "9999"
    engine.dispose()


def test_empty_database_gets_the_schema_on_first_use(empty_url: str) -> None:
    store = Store.open(empty_url)
    assert db.current_revision(store.engine) == db.head_revision()
    store.close()


def test_another_applications_database_is_not_given_the_schema_unasked(empty_url: str) -> None:
    """LTC_DATABASE_URL at another application's database: ``ltc status`` made ltc-hub's 30 tables in it (fails on
    385e3a3). First use creates the schema in an empty database only; ``ltc db upgrade`` still adds it on purpose."""
    engine = db.make_engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id integer)")
    with pytest.raises(SchemaOutdated, match=r"holds another application's tables \(customers\) and no ltc-hub schema"):
        Store.open(empty_url)
    assert sa.inspect(engine).get_table_names() == ["customers"]
    db.upgrade_locked(engine)
    Store.open(empty_url).close()
    assert {"customers", "raw_record"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_a_schema_creation_cut_short_leaves_nothing_behind(empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed during the first use's schema creation: every table was created, but the
    transaction never committed. The store stays empty and the next start creates the schema."""
    real = db.command.upgrade

    def crash_after_ddl(cfg, revision):  # type: ignore[no-untyped-def]
        real(cfg, revision)
        raise KeyboardInterrupt("killed after the DDL, before the commit")

    engine = db.make_engine(empty_url)
    monkeypatch.setattr(db.command, "upgrade", crash_after_ddl)
    with pytest.raises(KeyboardInterrupt):
        db.ensure_schema(engine)
    monkeypatch.undo()
    assert db.current_revision(engine) is None
    assert not set(tables.metadata.tables) & set(sa.inspect(engine).get_table_names())
    engine.dispose()
    store = Store.open(empty_url)  # no "schema revision none ... run `ltc db upgrade`"
    assert db.current_revision(store.engine) == db.head_revision()
    store.close()


def test_links_lose_their_run_id_and_a_downgrade_gives_back_the_latest_runs(empty_url: str) -> None:
    """0010_i17links: the stored links and allocations stay readable without ``run_id``; a downgrade names the
    latest successful reconcile run on every row again."""
    from alembic import command

    from reconcile.tables import recon_allocation, recon_link

    engine = db.make_engine(empty_url)
    db.upgrade(engine, "0009_i17map_pending2")
    t0 = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        for run_id, at in (("reconcile-old", t0), ("reconcile-new", "2026-01-02 00:00:00")):
            conn.execute(sa.text("INSERT INTO run (id, kind, started_at, status, counts) "
                                 "VALUES (:id, 'reconcile', :at, 'success', '{}')"), {"id": run_id, "at": at})
        conn.execute(sa.text("INSERT INTO recon_link (run_id, chain_id, from_entity, from_id, to_entity, to_id, "
                             "rule_id, evidence, confidence) VALUES ('reconcile-new', 'c1', 'deal', 'd1', 'order', "
                             "'o1', 'order.deal_ref', '{\"text\": \"x\"}', '1.0000000000')"))
        conn.execute(sa.text("INSERT INTO recon_allocation (run_id, payment_id, invoice_id, rule_id, currency, amount, "
                             "payment_currency, payment_amount) VALUES ('reconcile-new', 'p1', 'i1', "
                             "'payment.invoice_ref', 'EUR', '10.0000', 'EUR', '10.0000')"))
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(recon_link.c.from_id, recon_link.c.evidence)).all() == [
            ("d1", {"text": "x"})]
        assert conn.execute(sa.select(recon_allocation.c.invoice_id)).scalars().all() == ["i1"]
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0009_i17map_pending2")
    with engine.connect() as conn:
        for name in ("recon_link", "recon_allocation"):
            assert conn.execute(sa.text(f"SELECT run_id FROM {name}")).scalars().all() == ["reconcile-new"]
    engine.dispose()


def test_link_keys_sort_in_byte_order_on_postgresql(empty_url: str) -> None:
    """0011_i17c_collation: on PostgreSQL the looked-up link keys take the "C" collation (their per-run index rebuild
    sorts bytes, not locale text) and keep their rows; lookups and joins with default-collation ids still match; a
    downgrade gives back the database's default. SQLite's schema is unchanged."""
    from alembic import command

    engine = db.make_engine(empty_url)
    db.upgrade(engine, "0010_i17links")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO recon_link (chain_id, from_entity, from_id, to_entity, to_id, rule_id, "
                             "evidence, confidence) VALUES ('hubspot:deal:Äx', 'deal', 'd1', 'order', 'o1', "
                             "'order.deal_ref', '{\"text\": \"x\"}', '1.0000000000')"))
    pg = engine.dialect.name == "postgresql"

    def collations() -> dict[str, str | None]:
        if not pg:
            return {}
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(
                "SELECT table_name || '.' || column_name, collation_name FROM information_schema.columns "
                "WHERE (table_name, column_name) IN (('recon_link', 'chain_id'), ('recon_allocation', 'invoice_id'))"
            )).all())

    db.upgrade(engine)
    assert collations() == ({"recon_link.chain_id": "C", "recon_allocation.invoice_id": "C"} if pg else {})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT from_id FROM recon_link WHERE chain_id = :c"),
                            {"c": "hubspot:deal:Äx"}).scalars().all() == ["d1"]
        joined = "SELECT l.from_id FROM recon_link l JOIN (SELECT 'hubspot:deal:Äx' AS id) d ON d.id = l.chain_id"
        assert conn.execute(sa.text(joined)).scalars().all() == ["d1"]
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0010_i17links")
    assert collations() == ({"recon_link.chain_id": None, "recon_allocation.invoice_id": None} if pg else {})
    engine.dispose()
