"""Alembic environment: runs on the connection ltc-hub hands it (``config.attributes['connection']``).

Upgrading needs no table declarations (the scripts are plain DDL). Autogenerate compares with the
whole schema, which only the application layer assembles: pass it as
``db.alembic_config(conn, target_metadata=ltc.app.schema.metadata)`` (see docs/architecture.md).
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - ltc always passes its own connection
    raise RuntimeError("run migrations through `ltc db upgrade`")

context.configure(
    connection=connection,
    target_metadata=context.config.attributes.get("target_metadata"),
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
