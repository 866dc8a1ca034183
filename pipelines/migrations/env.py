"""Alembic environment: rebuy always passes an open connection (pipelines.schema.upgrade)."""

from __future__ import annotations

from alembic import context

from pipelines.schema import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
