"""Alembic environment: migrations run on the connection the Index hands over."""

from __future__ import annotations

from alembic import context

from evidence_store.index.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - `evidence db upgrade` always passes one
    raise RuntimeError(
        "run migrations through `evidence db upgrade`, which supplies the connection"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
