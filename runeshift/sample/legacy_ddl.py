"""The legacy DDL shipped with the package, and how to (re)create the databases from it.

The ``ddl/*.sql`` files are byte-identical copies of ``shared/legacy/*.sql``: the schema the
project migrates from and must never change. The only rewrite allowed is the database name in
``CREATE DATABASE`` / ``USE``, so tests can build isolated copies side by side on one server.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Literal

import pymysql

from runeshift.errors import ConfigError

LegacyDatabase = Literal["tribot_forums", "tribot_repo"]
LEGACY_DATABASES: tuple[LegacyDatabase, ...] = ("tribot_forums", "tribot_repo")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def shipped_ddl(database: LegacyDatabase) -> str:
    """The shipped DDL text of one legacy database, exactly as the legacy server holds it."""
    return resources.files("runeshift.sample").joinpath(f"ddl/{database}.sql").read_text("utf-8")


def check_database_name(name: str) -> str:
    """``name`` if it is a plain identifier usable unquoted, else a ConfigError."""
    if not _NAME.match(name):
        raise ConfigError(
            f"database name {name!r} is not a plain identifier; use letters, digits and '_' "
            "(at most 64 characters, not starting with a digit)"
        )
    return name


def rename_database(ddl: str, original: LegacyDatabase, target: str) -> str:
    """The DDL with its ``CREATE DATABASE`` and ``USE`` statements pointed at ``target``."""
    check_database_name(target)
    create = re.compile(rf"(CREATE DATABASE IF NOT EXISTS\s+){original}\b")
    use = re.compile(rf"(^USE\s+){original}(\s*;)", re.MULTILINE)
    renamed, n_create = create.subn(rf"\g<1>{target}", ddl)
    renamed, n_use = use.subn(rf"\g<1>{target}\g<2>", renamed)
    if n_create != 1 or n_use != 1:
        raise ConfigError(
            f"the DDL of {original} no longer has exactly one CREATE DATABASE and one USE "
            "statement; the generator cannot rename it"
        )
    return renamed


def split_statements(sql: str) -> list[str]:
    """SQL statements of a script, with ``--`` and ``#`` comments removed.

    Comments in the legacy DDL hold ';' and quotes ("-- member ids ...; no foreign keys"),
    so a plain ``split(';')`` would cut statements in half.
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    quote: str | None = None
    while i < n:
        ch = sql[i]
        if quote is not None:
            current.append(ch)
            if ch == "\\" and i + 1 < n:
                current.append(sql[i + 1])
                i += 2
                continue
            if ch == quote:
                if i + 1 < n and sql[i + 1] == quote:
                    current.append(sql[i + 1])
                    i += 2
                    continue
                quote = None
            i += 1
            continue
        if ch in ("'", '"', "`"):
            quote = ch
            current.append(ch)
        elif ch == "#" or (sql.startswith("--", i) and (i + 2 >= n or sql[i + 2] in " \t\r\n")):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == ";":
            text = "".join(current).strip()
            if text:
                statements.append(text)
            current = []
        else:
            current.append(ch)
        i += 1
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def legacy_statements(database: LegacyDatabase, target: str | None = None) -> list[str]:
    """The statements that create ``database`` (named ``target``) from the shipped DDL."""
    ddl = shipped_ddl(database)
    if target is not None and target != database:
        ddl = rename_database(ddl, database, target)
    return split_statements(ddl)


def recreate_database(
    conn: pymysql.connections.Connection[Any], database: LegacyDatabase, target: str
) -> None:
    """Drop ``target`` and create it again, empty, from the shipped DDL of ``database``.

    Runs with ``sql_mode=''``: the DDL declares ``DEFAULT '0000-00-00 00:00:00'``.
    """
    statements = legacy_statements(database, target)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute(f"DROP DATABASE IF EXISTS {check_database_name(target)}")
        for statement in statements:
            cur.execute(statement)
