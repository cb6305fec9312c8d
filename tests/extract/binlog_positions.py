"""The server's current binlog position, for tests that read what they just wrote."""

from __future__ import annotations

from extract.snapshot_reader import BinlogPosition, raw_connect


def master_position(url: str) -> BinlogPosition:
    conn = raw_connect(url, "mysql")
    cur = conn.cursor()
    cur.execute("SHOW MASTER STATUS")
    row = cur.fetchone()
    conn.close()
    return BinlogPosition(row[0].decode(), int(row[1]), "")
