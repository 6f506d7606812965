"""Shared fixtures: a store on each backend (SQLite file, real PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from canonical import db
from canonical.store import Store
from ltc.app import schema as tables  # the whole schema: every layer's tables

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# the reconcile stages check their frame contracts (columns in, columns out) under test
os.environ.setdefault("LTC_RECON_CHECK", "1")

PG_ADMIN_URL = os.environ.get("LTC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_admin() -> sa.Engine | None:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return engine
    except Exception:
        return None


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    """An AUTOCOMMIT engine on the PostgreSQL server; skips (saying why) where none answers."""
    admin = _pg_admin()
    if admin is None:
        reason = f"no PostgreSQL answers at {db.mask_url(PG_ADMIN_URL)} (set LTC_TEST_PG_URL)"
        if os.environ.get("LTC_REQUIRE_POSTGRES"):
            pytest.fail(reason + "; CI requires it (LTC_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    yield admin
    admin.dispose()


@pytest.fixture(scope="session")
def pg_new_database(pg_admin: sa.Engine) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases; all are dropped at the end of the session."""
    made: list[str] = []

    def new() -> str:
        name = f"ltc_test_{uuid.uuid4().hex[:12]}"
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield new
    with pg_admin.connect() as conn:
        for name in made:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture(scope="session")
def pg_database_url(pg_new_database: Callable[[], str]) -> str:
    """One PostgreSQL database shared by this test session's store tests."""
    return pg_new_database()


def _truncate(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in reversed(tables.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(scope="session")
def _pg_store(pg_database_url: str) -> Iterator[Store]:
    store = Store.open(pg_database_url)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """An empty, migrated store on each backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("store") / "ltc.db"
        s = Store.open(f"sqlite:///{path}")
        yield s
        s.close()
    else:
        s = request.getfixturevalue("_pg_store")
        _truncate(s)
        yield s
        _truncate(s)


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    s = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    yield s
    s.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, keep every Prefect test on one worker so one test server serves them all."""
    for item in items:
        if item.get_closest_marker("prefect") is not None:
            item.add_marker(pytest.mark.xdist_group("prefect"))
        if item.get_closest_marker("browser") is not None:  # one Chromium and one test world, not one per worker
            item.add_marker(pytest.mark.xdist_group("browser"))
