"""The target schema's revision without importing Alembic (about 0.18 s of start-up).

Commands that only need to know whether the database is at the shipped head (the
backfill's check before it writes) read the version row with psycopg and the head from
the migration files' own ``revision`` / ``down_revision`` lines. ``load.target_schema``
(Alembic) stays the one that migrates; a test keeps the two answers equal.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from runeshift.errors import ConfigError

CONTROL_SCHEMA = "runeshift"
VERSION_TABLE = "alembic_version"
VERSIONS_DIR = Path(__file__).resolve().with_name("migrations") / "versions"
_REVISION = re.compile(r"^revision(?:\s*:\s*[^=]+)?\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN = re.compile(
    r"^down_revision(?:\s*:\s*[^=]+)?\s*=\s*(?:['\"]([^'\"]+)['\"]|None)", re.MULTILINE
)


@functools.lru_cache(maxsize=1)
def shipped_head() -> str:
    """The one revision no other shipped revision builds on."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(VERSIONS_DIR.glob("[0-9]*.py")):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN.search(text)
        if revision is None or down is None:
            raise ConfigError(f"{path}: no 'revision = ...' and 'down_revision = ...' lines")
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise ConfigError(f"the migrations in {VERSIONS_DIR} have heads {sorted(heads)}, not one")
    return heads.pop()


def database_revision(conn: psycopg.Connection[Any]) -> str | None:
    """The revision recorded in the target database, or None when it was never migrated."""
    version_table = sql.Identifier(CONTROL_SCHEMA, VERSION_TABLE)
    table = conn.execute("SELECT to_regclass(%s)", (version_table.as_string(conn),)).fetchone()
    if not table or table[0] is None:
        return None
    row = conn.execute(sql.SQL("SELECT version_num FROM {}").format(version_table)).fetchone()
    return str(row[0]) if row else None
