"""The snapshot reader's C column reader gives exactly what mysqlclient's rows gave.

``extract/_mysql_columns.c`` reads each chunk straight into Arrow buffers; the rows
path (mysqlclient tuples) stays as the fallback. Both read the same real MariaDB table of
awkward values, chunk by chunk, and must agree batch for batch and resume key for
resume key.
"""

from __future__ import annotations

from collections.abc import Iterator

import MySQLdb
import pyarrow as pa
import pytest

from extract import snapshot_reader
from extract.snapshot_reader import SnapshotReader, raw_connect
from runeshift.connections import parse_mysql_url

DB = "snapshot_columns"


@pytest.fixture(scope="module")
def database(mysql_url: str) -> Iterator[str]:
    target = parse_mysql_url(mysql_url)
    conn = MySQLdb.connect(  # default conversions, so None is NULL (raw_connect has none)
        host=target.host, port=target.port, user=target.user, password=target.password
    )
    cur = conn.cursor()
    cur.execute("SET SESSION sql_mode = ''")
    cur.execute(f"DROP DATABASE IF EXISTS {DB}")
    cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    cur.execute(f"USE {DB}")
    cur.execute(
        "CREATE TABLE awkward (id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(64) NULL, "
        "legacy VARCHAR(64) CHARACTER SET latin1 NULL, blob_col BLOB NULL, body MEDIUMTEXT NULL, "
        "amount DECIMAL(10,2) NULL, at DATETIME NULL, flag TINYINT NULL) ENGINE=InnoDB"
    )
    rows = []
    for i in range(1, 1001):
        rows.append(
            (
                i,
                None if i % 7 == 0 else ("" if i % 11 == 0 else f"name {i} \U0001f600"),
                None if i % 9 == 0 else "caf\xc3\xa9".encode("latin1") if i % 2 else b"caf\xe9",
                None if i % 8 == 0 else bytes([0, i % 256, 255, 0]),
                "x" * (10_000 if i == 500 else i % 40) if i % 13 else None,
                None if i % 5 == 0 else f"{i}.{i % 100:02d}",
                "0000-00-00 00:00:00" if i % 17 == 0 else "2021-11-07 01:30:00",
                None if i % 3 == 0 else i % 2,
            )
        )
    cur.executemany(
        "INSERT INTO awkward VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [tuple(v.encode() if isinstance(v, str) else v for v in row) for row in rows],
    )
    cur.execute(
        "CREATE TABLE by_text (region VARCHAR(16), code INT, note TEXT NULL, "
        "PRIMARY KEY (region, code)) ENGINE=InnoDB"
    )
    cur.executemany(
        "INSERT INTO by_text VALUES (%s, %s, %s)",
        [(f"r{i % 4}".encode(), i, None if i % 6 == 0 else b"n") for i in range(200)],
    )
    cur.execute("CREATE TABLE by_bytes (k VARBINARY(8) PRIMARY KEY, v INT NULL) ENGINE=InnoDB")
    cur.executemany(
        "INSERT INTO by_bytes VALUES (%s, %s)", [(bytes([i, 0, 255 - i]), i) for i in range(50)]
    )
    conn.commit()
    conn.close()
    yield mysql_url + DB


def _read_all(url: str, table: str, chunk_rows: int) -> list[snapshot_reader.Chunk]:
    reader = SnapshotReader(url, DB)
    reader.open()
    try:
        source = reader.tables[table]
        return list(reader.chunks(source, list(source.columns), chunk_rows=chunk_rows))
    finally:
        reader.close()


def test_the_c_column_reader_is_built() -> None:
    # Without it every value becomes a Python object first (about 4x the reader's CPU,
    # all of it holding the GIL); the install must have built it.
    assert snapshot_reader._mysql_columns is not None


@pytest.mark.parametrize(
    ("table", "chunk_rows"),
    [
        pytest.param("awkward", 333, id="nulls-bytes-latin1-big-text"),
        pytest.param("awkward", 8, id="chunks-on-the-validity-byte-edge"),
        pytest.param("by_text", 37, id="composite-text-key"),
        pytest.param("by_bytes", 7, id="binary-key-uses-the-rows-path-after-the-first"),
    ],
)
def test_columns_equal_rows_chunk_for_chunk(
    database: str, table: str, chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    columns = _read_all(database, table, chunk_rows)
    monkeypatch.setattr(snapshot_reader, "_mysql_columns", None)
    rows = _read_all(database, table, chunk_rows)
    assert len(columns) == len(rows) > 1
    for got, expected in zip(columns, rows, strict=True):
        assert got.last_key == expected.last_key
        assert got.batch.schema == expected.batch.schema
        assert got.batch.equals(expected.batch)
    whole = pa.Table.from_batches([c.batch for c in columns])
    if table == "awkward":
        assert whole.num_rows == 1000
        assert whole.column("name").null_count == 1000 // 7
        assert whole.column("blob_col")[0].as_py() == bytes([0, 1, 255, 0])
        assert len(whole.column("body")[499].as_py()) == 10_000


def test_a_lost_connection_raises_as_mysqlclient_does(database: str) -> None:
    reader = SnapshotReader(database, DB)
    reader.open()
    source = reader.tables["awkward"]
    killer = raw_connect(database, DB)
    try:
        cur = killer.cursor()
        cur.execute(f"KILL CONNECTION {reader._conn.thread_id()}")
        with pytest.raises(MySQLdb.OperationalError):
            next(reader.chunks(source, list(source.columns), chunk_rows=10))
    finally:
        killer.close()
