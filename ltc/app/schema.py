"""The whole store schema: every layer's tables, on the one shared ``MetaData`` of :mod:`canonical.tables`.

Each layer declares its tables in its own ``tables`` module and adds them to
:data:`canonical.tables.metadata`; a lower layer never imports a higher one to complete it. This
module imports every such module, so :data:`metadata` here holds every table: it is what Alembic
compares the migrations with (``db.alembic_config(conn, target_metadata=metadata)`` for
autogenerate; tests/test_migrations.py checks there is no drift). Running the migrations needs no
table module: the scripts in canonical/migrations/versions are plain DDL.

A new layer with tables: import its ``tables`` module here and add a migration.
"""

from __future__ import annotations

import ltc.app.notify_tables  # noqa: F401  (adds notify_sent)
import reconcile.tables  # noqa: F401  (adds recon_*, fx_rate, kpi_snapshot to the shared metadata)
from canonical.tables import metadata

__all__ = ["metadata"]
