"""After a bulk load: build the deferred indexes and prove the foreign keys, two sessions at once.

A backfill into an empty table drops its indexes and builds them after the load
(decision 0008), and loads with foreign-key triggers off, proving every foreign key with
an anti-join afterwards (:func:`load.copy_writer.defer_foreign_key_checks`). Run one after
another that tail was a third of a million-license backfill, with the client idle and
one Postgres backend busy. Here the builds and the checks are tasks that the caller's
connection and one helper connection take from a shared list: 1.67-1.79 -> 1.46-1.50 s
for the five indexes and three foreign keys of a million licenses (2 CPUs).

``CREATE INDEX`` statements run side by side (each takes a SHARE lock on the table). A
primary key or unique constraint would take an ACCESS EXCLUSIVE lock for its whole
build, so one of the simple shape (``PRIMARY KEY (cols)``, ``UNIQUE (cols)``) is built as
a unique index with the constraint's name and attached afterwards with ``ADD CONSTRAINT
... USING INDEX``, which takes a moment. Every task commits on its own, so a crash keeps
what was built; the next run skips what exists and attaches what was built but not yet
attached. Anything of another shape runs as it was recorded, after the rest.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from runeshift.connections import pg_connect
from runeshift.errors import FatalError

_CONSTRAINT = re.compile(
    r"^ALTER TABLE (?P<table>\S+) ADD CONSTRAINT (?P<name>\S+) "
    r"(?P<kind>PRIMARY KEY|UNIQUE) \((?P<columns>[^()]+)\)$"
)

Task = Callable[[psycopg.Connection[Any]], None]


@dataclass(frozen=True)
class ForeignKey:
    name: str
    column: str
    ref_table: str
    ref_column: str


def foreign_keys(conn: psycopg.Connection[Any], table: str) -> list[ForeignKey]:
    """``table``'s single-column foreign keys."""
    schema, _, name = table.partition(".")
    rows = conn.execute(
        "SELECT c.conname, a.attname, rn.nspname || '.' || rc.relname, ra.attname "
        "FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "JOIN pg_class rc ON rc.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1] "
        "WHERE c.contype = 'f' AND n.nspname = %s AND t.relname = %s AND cardinality(c.conkey) = 1 "
        "ORDER BY c.conname",
        (schema, name),
    ).fetchall()
    return [ForeignKey(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def check_foreign_key(conn: psycopg.Connection[Any], table: str, key: ForeignKey) -> None:
    """One anti-join: raise if a row of ``table`` names a missing row through ``key``."""
    schema, _, name = table.partition(".")
    ref_schema, _, ref_name = key.ref_table.partition(".")
    dangling = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {} t WHERE t.{} IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM {} r WHERE r.{} = t.{})"
        ).format(
            sql.Identifier(schema, name),
            sql.Identifier(key.column),
            sql.Identifier(ref_schema, ref_name),
            sql.Identifier(key.ref_column),
            sql.Identifier(key.column),
        )
    ).fetchone()
    conn.commit()
    if dangling and dangling[0]:
        raise FatalError(
            f"{table}: {dangling[0]} rows break foreign key {key.name} ({key.column} -> "
            f"{key.ref_table}); this is a bug in the reference checks; the rows are loaded, "
            "reconcile will list them"
        )


def prove_foreign_keys(conn: psycopg.Connection[Any], table: str) -> None:
    """Every foreign key of ``table`` proved on ``conn`` alone, one anti-join each."""
    for key in foreign_keys(conn, table):
        check_foreign_key(conn, table, key)


def _exists(conn: psycopg.Connection[Any], relation: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return bool(row and row[0])


def _constraint_exists(conn: psycopg.Connection[Any], table: str, name: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND conname = %s)",
        (table, name.strip('"').replace('""', '"')),
    ).fetchone()
    return bool(row and row[0])


def _statement(text: str) -> Task:
    def run(conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL(text))  # a statement read from pg_catalog
        conn.commit()

    return run


def plan(
    conn: psycopg.Connection[Any], indexes: Sequence[tuple[str, str]]
) -> tuple[list[Task], list[Task]]:
    """(tasks that may run side by side, tasks to run after them in order) that bring
    ``indexes`` (``(name, create statement)`` pairs) into being, skipping what exists."""
    side_by_side: list[Task] = []
    after: list[Task] = []
    for name, create in indexes:
        shape = _CONSTRAINT.match(create)
        if shape is None:
            if not _exists(conn, name):
                (after if create.startswith("ALTER TABLE") else side_by_side).append(
                    _statement(create)
                )
            continue
        table, constraint = shape["table"], shape["name"]
        if _constraint_exists(conn, table, constraint):
            continue
        if not _exists(conn, name):
            side_by_side.append(
                _statement(f"CREATE UNIQUE INDEX {constraint} ON {table} ({shape['columns']})")
            )
        after.append(
            _statement(
                f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {shape['kind']} "
                f"USING INDEX {constraint}"
            )
        )
    return side_by_side, after


def finish_bulk_load(
    conn: psycopg.Connection[Any],
    indexes: Sequence[tuple[str, str]],
    *,
    helper_url: str | None,
    check_foreign_keys_of: str | None = None,
) -> None:
    """Build ``indexes`` and prove the foreign keys of ``check_foreign_keys_of``, on
    ``conn`` and a helper connection to ``helper_url`` at once (``None``: ``conn`` alone).

    Commits on ``conn`` after each task; the first failure is raised once both are done.
    """
    side_by_side, after = plan(conn, indexes)
    if check_foreign_keys_of is not None:
        table = check_foreign_keys_of
        side_by_side += [
            functools.partial(check_foreign_key, table=table, key=key)
            for key in foreign_keys(conn, table)
        ]
    conn.commit()
    _run_side_by_side(conn, side_by_side, helper_url if len(side_by_side) > 1 else None)
    for task in after:
        task(conn)


def _run_side_by_side(
    conn: psycopg.Connection[Any], tasks: list[Task], helper_url: str | None
) -> None:
    pending = list(reversed(tasks))  # the first task is taken first
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work(on: psycopg.Connection[Any]) -> None:
        while True:
            with lock:
                if failures or not pending:
                    return
                task = pending.pop()
            try:
                task(on)
            except BaseException as exc:
                on.rollback()
                with lock:
                    failures.append(exc)
                return

    helper: threading.Thread | None = None
    if helper_url is not None:

        def help_out() -> None:
            try:
                other = pg_connect(helper_url)
            except psycopg.OperationalError:
                return  # no second connection to be had: the caller's does it all
            with other:
                work(other)

        helper = threading.Thread(target=help_out, name="index builds", daemon=True)
        helper.start()
    work(conn)
    if helper is not None:
        helper.join()
    if failures:
        raise failures[0]
