"""Alembic environment: runs on the connection ltc-hub hands it (``config.attributes['connection']``)."""

from alembic import context

from canonical.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - ltc always passes its own connection
    raise RuntimeError("run migrations through `ltc db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
