"""Same-shape tables: MariaDB and PostgreSQL render every kind to the same digest in SQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from reconcile.plain_table_compare import PlainColumn, compare_plain_tables
from runeshift.connections import mysql_connect

COLUMNS = [
    PlainColumn("id", "int"),
    PlainColumn("n", "int"),
    PlainColumn("amount", "numeric", 2),
    PlainColumn("flag", "bool"),
    PlainColumn("name", "text"),
    PlainColumn("at", "timestamp"),
    PlainColumn("day", "date"),
    PlainColumn("ref", "uuid"),
    PlainColumn("raw", "bytea"),
]
TEXTS = ["plain", "", "a,b", "1:x,2:y", "-", "é€😀", "tab\there", "trailing ", "NULL"]


def _rows(count: int) -> list[tuple]:
    rows = []
    for i in range(1, count + 1):
        rows.append(
            (
                i,
                None if i % 11 == 0 else -i * 7,
                f"{(i % 1000) - 500}.{i % 100:02d}",
                i % 3 == 0,
                None
                if i % 13 == 0
                else f"{TEXTS[i % len(TEXTS)]}{i}"
                if i % 2
                else TEXTS[i % len(TEXTS)],
                f"2021-03-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{i % 60:02d}.{i:06d}"[:26],
                None if i % 17 == 0 else f"19{70 + i % 30}-0{1 + i % 9}-1{i % 10}",
                str(uuid.UUID(int=i * 7919)),
                bytes([i % 256, 0, 44]) if i % 5 else b"",
            )
        )
    return rows


@pytest.fixture
def tables(mysql_url: str, pg_url: str):
    db = f"plain_{uuid.uuid4().hex[:8]}"
    my_url = mysql_url.rstrip("/") + f"/{db}"
    rows = _rows(3000)
    conn = mysql_connect(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
            cur.execute(
                f"CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, n INT, amount DECIMAL(12,2) NOT NULL, "
                "flag TINYINT(1) NOT NULL, name VARCHAR(64), at DATETIME(6) NOT NULL, day DATE, "
                "ref CHAR(36) NOT NULL, raw VARBINARY(8) NOT NULL) CHARACTER SET utf8mb4"
            )
            cur.executemany(f"INSERT INTO {db}.t VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
        conn.commit()
    finally:
        conn.close()
    with psycopg.connect(pg_url) as pg:
        pg.execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int, amount numeric(12,2) NOT NULL, "
            "flag boolean NOT NULL, name text, at timestamp(6) NOT NULL, day date, "
            "ref uuid NOT NULL, raw bytea NOT NULL)"
        )
        with pg.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
    yield my_url, pg_url
    conn = mysql_connect(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE {db}")
    finally:
        conn.close()


def test_equal_tables_of_every_kind_compare_clean(tables):
    my_url, pg_url = tables
    diff = compare_plain_tables(my_url, "t", pg_url, "public.t", "id", COLUMNS, bucket_width=500)
    assert (diff.missing, diff.extra, diff.changed) == ([], [], [])


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE t SET name = 'a' || ',' || name WHERE id = 2",  # a comma at a field boundary
        "UPDATE t SET name = '' WHERE id = 2",  # NULL-free: '' vs the value
        "UPDATE t SET n = NULL WHERE id = 2",
        "UPDATE t SET amount = amount + 0.01 WHERE id = 2",
        "UPDATE t SET flag = NOT flag WHERE id = 2",
        "UPDATE t SET at = at + interval '1 microsecond' WHERE id = 2",
        "UPDATE t SET day = day + 1 WHERE id = 2",
        "UPDATE t SET raw = raw || '\\x00'::bytea WHERE id = 2",
    ],
    ids=["text-comma", "text-empty", "int-null", "numeric", "bool", "timestamp", "date", "bytea"],
)
def test_a_planted_difference_of_each_kind_is_found_alone(tables, change):
    my_url, pg_url = tables
    with psycopg.connect(pg_url) as pg:
        pg.execute(change)
        pg.execute("DELETE FROM t WHERE id = 1500")
        pg.execute(
            "INSERT INTO t SELECT 99999, n, amount, flag, name, at, day, ref, raw FROM t WHERE id = 3"
        )
    diff = compare_plain_tables(my_url, "t", pg_url, "public.t", "id", COLUMNS, bucket_width=500)
    assert (diff.missing, diff.extra, diff.changed) == ([1500], [99999], [2])
