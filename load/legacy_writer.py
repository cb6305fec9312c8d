"""Idempotent writes into the legacy MySQL databases, checkpointed in the same transaction.

Design note. The writer owns the reverse stream's durable state on the legacy side: the
database ``runeshift_state`` on each legacy server (the legacy databases' own tables must
not change) holds ``runeshift_reverse_position`` (slot, state version, the commit LSN of
the last Rune transaction applied, counts) and ``runeshift_reverse_quarantine`` (rows the
inverse mapping could not write, with the reason). The reverse follower opens one
transaction per batch: the legacy rows, any quarantined rows and the position row commit
together, so after ``kill -9`` the position tells exactly what is applied.

Writes are absolute values keyed by the legacy primary key (``INSERT .. ON DUPLICATE KEY
UPDATE`` of the changed columns, ``DELETE .. WHERE key``), so re-applying is harmless. The
legacy MyISAM tables (``core_groups``, ``core_pfields_content``) ignore transactions:
their write is immediate, and a crash before the commit makes the restart re-apply the
same absolute values, which converges just the same.

Every transaction this writer commits also writes the position row, and that row is how
the forward follower recognises (and must skip) the reverse stream's writes in the
binlog: decision 0005, "no echo".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql

from runeshift.connections import mysql_connect
from runeshift.errors import FatalError, TransientError

STATE_DATABASE = "runeshift_state"
POSITION_TABLE = "runeshift_reverse_position"
QUARANTINE_TABLE = "runeshift_reverse_quarantine"
STREAM_TABLE = "runeshift_reverse_stream"
STATE_VERSION = 1

_DDL = (
    f"CREATE DATABASE IF NOT EXISTS `{STATE_DATABASE}` CHARACTER SET utf8mb4",
    f"CREATE TABLE IF NOT EXISTS `{STATE_DATABASE}`.`{POSITION_TABLE}` ("
    " slot VARCHAR(63) NOT NULL PRIMARY KEY,"
    " state_version INT NOT NULL,"
    " lsn BIGINT UNSIGNED NOT NULL,"
    " last_commit_at DATETIME(6) NULL,"
    " transactions_applied BIGINT NOT NULL DEFAULT 0,"
    " changes_applied BIGINT NOT NULL DEFAULT 0,"
    " rows_quarantined BIGINT NOT NULL DEFAULT 0,"
    " updated_at DATETIME(6) NOT NULL"
    ") ENGINE=InnoDB",
    f"CREATE TABLE IF NOT EXISTS `{STATE_DATABASE}`.`{QUARANTINE_TABLE}` ("
    " id BIGINT AUTO_INCREMENT PRIMARY KEY,"
    " slot VARCHAR(63) NOT NULL,"
    " lsn BIGINT UNSIGNED NOT NULL,"
    " target_table VARCHAR(128) NOT NULL,"
    " source_table VARCHAR(128) NOT NULL,"
    " source_key VARCHAR(255) NULL,"
    " reason TEXT NOT NULL,"
    " target_row LONGTEXT NOT NULL,"
    " at DATETIME(6) NOT NULL,"
    " KEY (slot, lsn)"
    ") ENGINE=InnoDB",
    f"CREATE TABLE IF NOT EXISTS `{STATE_DATABASE}`.`{STREAM_TABLE}` ("
    " slot VARCHAR(63) NOT NULL PRIMARY KEY,"
    " started_lsn BIGINT UNSIGNED NOT NULL,"
    " started_at DATETIME(6) NOT NULL"
    ") ENGINE=InnoDB",
)


@dataclass(frozen=True)
class ReversePosition:
    slot: str
    lsn: int
    last_commit_at: datetime | None
    transactions_applied: int
    changes_applied: int
    rows_quarantined: int
    updated_at: datetime


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class LegacyWriter:
    """Writes to the legacy databases of one MySQL server and keeps the reverse position.

    ``databases`` maps a mapping source (``forums``, ``repo``) to its database name on
    this server.
    """

    def __init__(self, server_url: str, databases: Mapping[str, str]) -> None:
        self.server_url = server_url
        self.databases = dict(databases)
        self._conn: pymysql.connections.Connection[Any] | None = None
        self._auto_update: dict[tuple[str, str], frozenset[str]] = {}

    @property
    def conn(self) -> pymysql.connections.Connection[Any]:
        if self._conn is None:
            try:
                self._conn = mysql_connect(self.server_url, database="", autocommit=False)
            except pymysql.err.OperationalError as exc:
                raise TransientError(f"legacy MySQL unreachable: {exc}") from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def ensure_state(self) -> None:
        """Create ``runeshift_state`` and its tables if missing (idempotent)."""
        with self.conn.cursor() as cur:
            for stmt in _DDL:
                cur.execute(stmt)
        self.conn.commit()

    def position(self, slot: str) -> ReversePosition | None:
        """The stored position of ``slot``; refuses state written by another version."""
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT slot, state_version, lsn, last_commit_at, transactions_applied, "
                f"changes_applied, rows_quarantined, updated_at "
                f"FROM {_q(STATE_DATABASE)}.{_q(POSITION_TABLE)} WHERE slot = %s",
                (slot,),
            )
            row = cur.fetchone()
        self.conn.commit()
        if row is None:
            return None
        if int(row[1]) != STATE_VERSION:
            raise FatalError(
                f"{STATE_DATABASE}.{POSITION_TABLE} row {slot!r} has state version {row[1]}, "
                f"this runeshift writes version {STATE_VERSION}; finish the soak with the "
                "runeshift version that started it"
            )
        return ReversePosition(
            str(row[0]),
            int(row[2]),
            _utc(row[3]),
            int(row[4]),
            int(row[5]),
            int(row[6]),
            _utc(row[7]) or datetime.now(UTC),
        )

    def start_position(self, slot: str, lsn: int, *, new_stream: bool = False) -> None:
        """Record where the stream starts (the slot's consistent point), if not yet recorded.

        ``new_stream``: the slot was just created, so a position row left by an earlier
        stream (a soak that was rolled back or completed) is replaced, counts and all, and
        the stream's start is recorded; quarantine rows of earlier streams stay as history.
        """
        verb = "REPLACE" if new_stream else "INSERT IGNORE"
        with self.conn.cursor() as cur:
            cur.execute(
                f"{verb} INTO {_q(STATE_DATABASE)}.{_q(POSITION_TABLE)} "
                "(slot, state_version, lsn, updated_at) VALUES (%s, %s, %s, UTC_TIMESTAMP(6))",
                (slot, STATE_VERSION, lsn),
            )
            cur.execute(
                f"{verb} INTO {_q(STATE_DATABASE)}.{_q(STREAM_TABLE)} "
                "(slot, started_lsn, started_at) VALUES (%s, %s, UTC_TIMESTAMP(6))",
                (slot, lsn),
            )
        self.conn.commit()

    def stream_start(self, slot: str) -> int:
        """The LSN the current stream of ``slot`` started at (0 if never recorded)."""
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT started_lsn FROM {_q(STATE_DATABASE)}.{_q(STREAM_TABLE)} WHERE slot = %s",
                (slot,),
            )
            row = cur.fetchone()
        self.conn.commit()
        return int(row[0]) if row else 0

    def next_key(self, source: str, table: str, column: str) -> int:
        """The first key of ``table`` no legacy row has and AUTO_INCREMENT will not hand out.

        Read while legacy writes are held (the write switch): the larger of the table's
        ``AUTO_INCREMENT`` counter and ``MAX(column) + 1`` (the counter can lag a row
        inserted with an explicit id on servers that do not persist it).
        """
        database = self.databases[source]
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT COALESCE(MAX({_q(column)}), 0) + 1 FROM {_q(database)}.{_q(table)}"
            )
            row = cur.fetchone()
            highest = int(row[0]) if row else 1
            cur.execute(
                "SELECT AUTO_INCREMENT FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = %s",
                (database, table),
            )
            row = cur.fetchone()
        self.conn.commit()
        counter = int(row[0]) if row and row[0] is not None else 0
        return max(highest, counter)

    def forget(self, slot: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                f"DELETE FROM {_q(STATE_DATABASE)}.{_q(POSITION_TABLE)} WHERE slot = %s", (slot,)
            )
        self.conn.commit()

    def auto_update_columns(self, source: str, table: str) -> frozenset[str]:
        """Columns MySQL rewrites on every update (``ON UPDATE CURRENT_TIMESTAMP``)."""
        key = (source, table)
        if key not in self._auto_update:
            with self.conn.cursor() as cur:
                cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s AND LOWER(extra) LIKE %s",
                    (self.databases[source], table, "%on update%"),
                )
                self._auto_update[key] = frozenset(str(r[0]) for r in cur.fetchall())
        return self._auto_update[key]

    def upsert(
        self,
        source: str,
        table: str,
        row: Mapping[str, Any],
        key: Sequence[str],
        update: Sequence[str],
    ) -> None:
        """Insert ``row``, or set its ``update`` columns if the key exists.

        Columns MySQL would stamp itself on update (``updated_at TIMESTAMP ON UPDATE
        CURRENT_TIMESTAMP``) are always written with Rune's value, or the update of
        ``refunded`` alone would move the legacy ``updated_at`` away from Rune's.
        """
        cols = list(row)
        target = f"{_q(self.databases[source])}.{_q(table)}"
        auto = [c for c in cols if c in self.auto_update_columns(source, table)]
        updates = list(dict.fromkeys([c for c in update if c not in key] + auto)) or [key[0]]
        stmt = (
            f"INSERT INTO {target} ({', '.join(_q(c) for c in cols)}) "
            f"VALUES ({', '.join(['%s'] * len(cols))}) ON DUPLICATE KEY UPDATE "
            + ", ".join(f"{_q(c)} = VALUES({_q(c)})" for c in updates)
        )
        with self.conn.cursor() as cur:
            cur.execute(stmt, [row[c] for c in cols])

    def update(
        self,
        source: str,
        table: str,
        row: Mapping[str, Any],
        key: Sequence[str],
        update: Sequence[str],
    ) -> None:
        """Set only the ``update`` columns of the existing row; insert ``row`` if it is missing.

        Unchanged columns are not rewritten: their inverse may be lossy (an email's case) or
        invalid for the legacy column (a NULL role where legacy says NOT NULL).
        """
        auto = [c for c in row if c in self.auto_update_columns(source, table)]
        cols = list(dict.fromkeys([c for c in update if c not in key] + auto))
        target = f"{_q(self.databases[source])}.{_q(table)}"
        where = " AND ".join(f"{_q(c)} = %s" for c in key)
        with self.conn.cursor() as cur:
            cur.execute(
                f"UPDATE {target} SET {', '.join(f'{_q(c)} = %s' for c in cols)} WHERE {where}",
                [row[c] for c in cols] + [row[c] for c in key],
            )
            if cur.rowcount:
                return
            cur.execute(f"SELECT 1 FROM {target} WHERE {where}", [row[c] for c in key])
            if cur.fetchone() is not None:
                return
        self.upsert(source, table, row, key, list(row))

    def savepoint(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SAVEPOINT runeshift_change")

    def rollback_to_savepoint(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("ROLLBACK TO SAVEPOINT runeshift_change")

    def delete(self, source: str, table: str, key: Mapping[str, Any]) -> None:
        target = f"{_q(self.databases[source])}.{_q(table)}"
        where = " AND ".join(f"{_q(c)} = %s" for c in key)
        with self.conn.cursor() as cur:
            cur.execute(f"DELETE FROM {target} WHERE {where}", list(key.values()))

    def quarantine(
        self,
        slot: str,
        lsn: int,
        target_table: str,
        source_table: str,
        source_key: str | None,
        reason: str,
        target_row: Mapping[str, Any],
    ) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {_q(STATE_DATABASE)}.{_q(QUARANTINE_TABLE)} "
                "(slot, lsn, target_table, source_table, source_key, reason, target_row, at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6))",
                (
                    slot,
                    lsn,
                    target_table,
                    source_table,
                    source_key,
                    reason,
                    json.dumps(dict(target_row), default=str),
                ),
            )

    def commit(
        self,
        slot: str,
        lsn: int,
        last_commit_at: datetime | None,
        transactions: int,
        changes: int,
        quarantined: int,
    ) -> None:
        """Write the position row and commit it together with the rows written since begin."""
        with self.conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {_q(STATE_DATABASE)}.{_q(POSITION_TABLE)} (slot, state_version, "
                "lsn, last_commit_at, transactions_applied, changes_applied, rows_quarantined, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6)) "
                "ON DUPLICATE KEY UPDATE lsn = VALUES(lsn), "
                "last_commit_at = COALESCE(VALUES(last_commit_at), last_commit_at), "
                "transactions_applied = transactions_applied + VALUES(transactions_applied), "
                "changes_applied = changes_applied + VALUES(changes_applied), "
                "rows_quarantined = rows_quarantined + VALUES(rows_quarantined), "
                "updated_at = VALUES(updated_at)",
                (
                    slot,
                    STATE_VERSION,
                    lsn,
                    last_commit_at.replace(tzinfo=None) if last_commit_at else None,
                    transactions,
                    changes,
                    quarantined,
                ),
            )
        self.conn.commit()

    def rollback(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            except pymysql.err.MySQLError:
                self.close()

    def quarantined(
        self, slot: str, limit: int = 20, *, since_lsn: int = 0
    ) -> list[dict[str, Any]]:
        """The latest quarantined rows of ``slot`` (of the stream started at ``since_lsn``)."""
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT lsn, target_table, source_table, source_key, reason, at "
                f"FROM {_q(STATE_DATABASE)}.{_q(QUARANTINE_TABLE)} WHERE slot = %s "
                "AND lsn >= %s ORDER BY id DESC LIMIT %s",
                (slot, since_lsn, limit),
            )
            rows = cur.fetchall()
        self.conn.commit()
        names = ("lsn", "target_table", "source_table", "source_key", "reason", "at")
        return [dict(zip(names, r, strict=True)) for r in rows]


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC)


__all__ = [
    "POSITION_TABLE",
    "STATE_DATABASE",
    "STREAM_TABLE",
    "LegacyWriter",
    "ReversePosition",
]
