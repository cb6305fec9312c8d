"""Alembic ``env.py``: runs revisions on the connection ``load.target_schema`` opened.

The version table lives in the ``runeshift`` schema, so that schema is created
before Alembic looks for it. The caller has already taken the migration advisory lock
in the same transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from load.schema_revision import CONTROL_SCHEMA, VERSION_TABLE
from runeshift.errors import ConfigError


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, sa.Connection):
        raise ConfigError(
            "load/migrations is driven by load.target_schema (runeshift schema upgrade), "
            "which passes it a connection; running the alembic CLI directly is not supported"
        )
    connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{CONTROL_SCHEMA}"'))
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema=CONTROL_SCHEMA,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise ConfigError("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
