"""One digest over every row and column of the two legacy databases (the determinism check)."""

from __future__ import annotations

import hashlib

from runeshift.connections import mysql_connect
from runeshift.sample.legacy_ddl import check_database_name


def legacy_checksum(server_url: str, forums_db: str, repo_db: str) -> str:
    """SHA-256 over every table of both databases, rows in primary-key order, values as stored.

    Values are read as ``HEX()`` of what the server stores (DATETIMEs as their text, latin1 as
    its bytes), so a zero date never reads like NULL and no charset conversion can hide a
    difference. Table and database names do not enter the digest: a renamed copy of the same
    world has the same checksum.
    """
    digest = hashlib.sha256()
    conn = mysql_connect(server_url, database="", streaming=True)
    try:
        for database in (check_database_name(forums_db), check_database_name(repo_db)):
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_KEY FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
                    (database,),
                )
                columns: dict[str, list[tuple[str, str]]] = {}
                for table, column, key in cur.fetchall():
                    columns.setdefault(table, []).append((column, key))
            for table, cols in columns.items():
                values = ", ".join(f"IFNULL(HEX(`{c}`), 'NULL')" for c, _ in cols)
                order = ", ".join(f"`{c}`" for c, key in cols if key == "PRI") or "1"
                digest.update(f"table {table}\n".encode())
                with conn.cursor() as cur:
                    cur.execute(
                        f"SELECT CONCAT_WS('|', {values}) FROM `{database}`.`{table}` "
                        f"ORDER BY {order}"
                    )
                    for (line,) in cur:
                        digest.update(line.encode() if isinstance(line, str) else line)
                        digest.update(b"\n")
    finally:
        conn.close()
    return digest.hexdigest()
