"""Transactions come out of the binlog whole, savepoints and all.

MariaDB logs each SAVEPOINT after a transaction's first, and each ROLLBACK TO SAVEPOINT,
as a query event in the middle of the transaction. The reverse writer
(load/legacy_writer.py) sets one per change, so a reader that took any query for a
transaction's end split its transactions: the parts before the last lost their
``from_reverse_writer`` mark and the catch-up echoed Rune's own writes back into Rune.
"""

from __future__ import annotations

import pytest

from extract.binlog_reader import REVERSE_POSITION_TABLE, REVERSE_STATE_DATABASE, BinlogReader
from extract.binlog_row_decoder import RowDecoder
from extract.snapshot_reader import BinlogPosition, SnapshotReader, raw_connect
from load.legacy_writer import LegacyWriter
from tests.extract.binlog_positions import master_position

DB = "txn_savepoints"


def _execute(url: str, *statements: str) -> None:
    conn = raw_connect(url, "mysql")
    cur = conn.cursor()
    for statement in statements:
        cur.execute(statement)
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def world(mysql_url: str) -> str:
    _execute(
        mysql_url,
        f"DROP DATABASE IF EXISTS {DB}",
        f"CREATE DATABASE {DB}",
        f"CREATE TABLE {DB}.t (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB",
    )
    # The reverse writer's own state tables, as it creates them (other tests may have).
    writer = LegacyWriter(mysql_url, {})
    writer.ensure_state()
    writer.close()
    return mysql_url


def _transactions(url: str, start: BinlogPosition, end: BinlogPosition) -> list:
    snap = SnapshotReader(url + DB, DB)
    snap.open()
    table = snap.tables["t"]
    snap.close()
    reader = BinlogReader(
        DB,
        url + DB,
        DB,
        {"t": RowDecoder(table, ["id", "v"])},
        heartbeat_table="runeshift_heartbeat",
        server_id=4711,
        stop=lambda: False,
    )
    found = []
    for txn in reader.transactions(start):
        found.append(txn)
        if (txn.position.file, txn.position.position) >= (end.file, end.position):
            return found
    return found


def _savepoint_transaction(*, reverse_writer: bool) -> list[str]:
    statements = [
        "BEGIN",
        "SAVEPOINT runeshift_change",
        f"INSERT INTO {DB}.t VALUES (1, 'one')",
        "SAVEPOINT runeshift_change",
        f"INSERT INTO {DB}.t VALUES (2, 'two')",
        "ROLLBACK TO SAVEPOINT runeshift_change",
        "SAVEPOINT runeshift_change",
        f"INSERT INTO {DB}.t VALUES (3, 'three')",
        "SAVEPOINT runeshift_change",
        f"UPDATE {DB}.t SET v = 'uno' WHERE id = 1",
        "RELEASE SAVEPOINT runeshift_change",
    ]
    if reverse_writer:
        statements.append(
            f"REPLACE INTO {REVERSE_STATE_DATABASE}.{REVERSE_POSITION_TABLE} "
            "(slot, state_version, lsn) VALUES ('binlog-reader-test', 1, 1)"
        )
    return [*statements, "COMMIT"]


def test_a_transaction_with_savepoints_is_read_as_one(world: str) -> None:
    _execute(world, f"DELETE FROM {DB}.t")
    start = master_position(world)
    _execute(world, *_savepoint_transaction(reverse_writer=False))
    txns = _transactions(world, start, master_position(world))
    with_changes = [t for t in txns if t.changes]
    assert len(with_changes) == 1, [[c.kind for c in t.changes] for t in txns]
    changes = with_changes[0].changes
    assert [(c.kind, int(c.after[0])) for c in changes] == [
        ("insert", 1),
        ("insert", 3),
        ("update", 1),
    ]


def test_the_reverse_writers_transaction_is_recognised_whole(world: str) -> None:
    _execute(world, f"DELETE FROM {DB}.t")
    start = master_position(world)
    _execute(world, *_savepoint_transaction(reverse_writer=True))
    txns = _transactions(world, start, master_position(world))
    assert txns, "the transaction was not read"
    # Every change of the reverse writer's transaction is its own echo: none is handed on.
    assert [c for t in txns for c in t.changes] == []
