"""Create, upgrade and downgrade the Rune target schema and runeshift's control schema.

Two PostgreSQL schemas, versioned together by Alembic (revisions in ``load/migrations``):

- ``rune``: the new product's tables, which the migration fills;
- ``runeshift``: the migration's own state (runs, backfill chunks, source positions,
  quarantine, exclusions, dedup decisions, cutover journal) and Alembic's version table.

The Alembic ``Config`` is built here in code, so no ``alembic.ini`` is needed at runtime.
Each call runs in one transaction on its own connection: PostgreSQL DDL is transactional,
so an upgrade that fails half-way leaves the database at the revision it started from. A
transaction-scoped advisory lock serialises concurrent upgrades of one database.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError

from load.schema_revision import CONTROL_SCHEMA, VERSION_TABLE
from runeshift.connections import engine
from runeshift.errors import ConfigError, TransientError
from runeshift.secrets import mask_url

TARGET_SCHEMA = "rune"
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
# Key of the transaction-scoped advisory lock held while migrating ("runeshif" in ASCII).
MIGRATION_LOCK_KEY = 0x72756E6573686966
# Alembic's ``context`` and ``op`` are module-global proxies, so two migrations in threads of one
# process would tear each other's down; across processes env.py's advisory lock serialises them.
_ALEMBIC_IN_PROCESS = threading.Lock()


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands: its current revision against the newest one shipped."""

    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True)
class SchemaChange:
    """What an upgrade or downgrade did: the revision before and after."""

    before: str | None
    after: str | None
    head: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(connection: sa.Connection | None = None) -> Config:
    # Alembic writes command output to Config.stdout; core code never prints, so swallow it.
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of runeshift."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise ConfigError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


@contextmanager
def _connection(postgres_url: str, *, transaction: bool) -> Iterator[sa.Connection]:
    eng = engine(postgres_url)
    try:
        try:
            conn = eng.connect()
        except sa.exc.OperationalError as exc:
            raise TransientError(
                f"cannot connect to {mask_url(postgres_url)}: {exc.orig}; "
                "check postgres_url (runeshift config show) and that the server is up"
            ) from exc
        with conn:
            if transaction:
                with conn.begin():
                    yield conn
            else:
                yield conn
    finally:
        eng.dispose()


def _read_current(conn: sa.Connection) -> str | None:
    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": CONTROL_SCHEMA}
    )
    return context.get_current_revision()


def current(postgres_url: str) -> str | None:
    """The revision the database is at, or None when runeshift never migrated it."""
    with _connection(postgres_url, transaction=False) as conn:
        return _read_current(conn)


def status(postgres_url: str) -> SchemaStatus:
    """The current revision together with the head, for ``runeshift schema current``."""
    return SchemaStatus(current=current(postgres_url), head=head_revision())


def _migrate(postgres_url: str, revision: str, run: Callable[[Config, str], None]) -> SchemaChange:
    with _connection(postgres_url, transaction=True) as conn:
        # Locked before reading the revision: a second run waits here, then sees the first
        # run's result and reports "nothing to do" instead of failing on "relation exists".
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        before = _read_current(conn)
        try:
            with _ALEMBIC_IN_PROCESS:
                run(_config(conn), revision)
        except (CommandError, RevisionError) as exc:
            raise ConfigError(
                f"cannot migrate to revision '{revision}': {exc}; "
                f"known revisions run from 'base' to '{head_revision()}'"
            ) from exc
        after = _read_current(conn)
    return SchemaChange(before=before, after=after, head=head_revision())


def upgrade(postgres_url: str, revision: str = "head") -> SchemaChange:
    """Bring both schemas up to ``revision`` (default: the newest); a no-op when already there."""
    return _migrate(postgres_url, revision, command.upgrade)


def downgrade(postgres_url: str, revision: str) -> SchemaChange:
    """Step both schemas back to ``revision``; ``'base'`` drops every table runeshift created.

    Destructive: tables a downgrade removes lose their rows. After ``'base'`` only the empty
    ``runeshift.alembic_version`` table remains, so a later upgrade starts from scratch.
    """
    return _migrate(postgres_url, revision, command.downgrade)
