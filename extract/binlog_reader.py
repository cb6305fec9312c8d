"""Follow one legacy MySQL database's binlog as a stream of whole source transactions.

Design note. A reader tracks one thing: the position (file, offset, GTID) just after the
last *complete* transaction it handed out. It opens the stream there (``log_file`` /
``log_pos``), groups ROW events up to the transaction's end (an XID event for InnoDB, a
``COMMIT`` query for MyISAM/MEMORY statements; ``SAVEPOINT`` and ``ROLLBACK TO`` queries
are inside one) and yields them with that end position, so
a consumer that stores the position with the applied changes resumes exactly after them.
It keeps no state of its own across restarts: the caller passes the stored position in.
A lost connection (server restart, network) reconnects from the last handed-out position
and carries on, so nothing is skipped or read twice from the consumer's point of view. A
start position whose binlog file the server has purged is refused with the remedy.

DDL arrives as ``QueryEvent``s; the reader reports the statement and the table it names so
the follower can check drift and pause that table. Row events of tables nobody asked for
are skipped before decoding, which is most of the cost.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from extract.binlog_row_decoder import RawRow, RowDecoder, install_raw_strings
from extract.snapshot_reader import BinlogPosition
from runeshift.connections import parse_mysql_url
from runeshift.errors import FatalError, TransientError

ChangeKind = Literal["insert", "update", "delete"]
_DDL = re.compile(
    r"^\s*(?:/\*.*?\*/\s*)*(ALTER|DROP|RENAME|TRUNCATE|CREATE)\s+(?:ONLINE\s+|IGNORE\s+)?"
    r"(?:TABLE|TABLES)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?`?(?:(\w+)`?\.`?)?(\w+)`?",
    re.IGNORECASE | re.DOTALL,
)


# Statements MariaDB logs as query events INSIDE a transaction: a SAVEPOINT after the first
# (the reverse writer sets one per change) and rolling back to one. They do not end it.
_IN_TRANSACTION = re.compile(
    r"^\s*(?:SAVEPOINT|ROLLBACK\s+(?:WORK\s+)?TO|RELEASE\s+SAVEPOINT)\b", re.IGNORECASE
)


# The reverse writer's bookkeeping (load/legacy_writer.py): a transaction that moves this row
# was written by reverse replication, and the forward follower must not apply it again.
REVERSE_STATE_DATABASE = "runeshift_state"
REVERSE_POSITION_TABLE = "runeshift_reverse_position"


@dataclass(frozen=True)
class RowChange:
    table: str
    kind: ChangeKind
    before: RawRow | None
    after: RawRow | None


@dataclass(frozen=True)
class SchemaChange:
    table: str
    statement: str


@dataclass
class BinlogTransaction:
    """One source transaction: its row changes and the position just after it."""

    source: str
    position: BinlogPosition
    changes: list[RowChange] = field(default_factory=list)
    ddl: list[SchemaChange] = field(default_factory=list)
    heartbeats: list[int] = field(default_factory=list)
    timestamp: int = 0
    # Written by the reverse writer (it moves its position row in the same transaction):
    # applying it again would echo Rune's own change back into Rune.
    from_reverse_writer: bool = False


def _server_connection(url: str) -> Any:
    """A plain connection to the server of ``url`` (no database selected)."""
    import pymysql

    target = parse_mysql_url(url)
    return pymysql.connect(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        connect_timeout=10,
        **target.tls_kwargs(),
    )


def binlog_files(url: str) -> list[str]:
    """The binlog files the server still has (``SHOW BINARY LOGS``)."""
    conn = _server_connection(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            return [str(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()


def check_not_purged(source: str, url: str, position: BinlogPosition) -> None:
    """Refuse a start position the server no longer has, naming the remedy."""
    files = binlog_files(url)
    if position.file not in files:
        first = files[0] if files else "none"
        raise FatalError(
            f"{source}: the binlog at the checkpoint ({position.file}:{position.position}) has been "
            f"purged (the oldest binlog on the server is {first}); changes since then are lost to "
            f"the catch-up. Re-snapshot the affected tables with 'runeshift backfill --tables "
            f"<tables of {source}>' (or all of them), then run 'runeshift sync' again; keep "
            f"binlogs longer (expire_logs_days / binlog_expire_logs_seconds) while migrating"
        )


class BinlogReader:
    """Streams ``BinlogTransaction``s of one database from a position.

    ``decoders`` maps each followed table to its :class:`RowDecoder`; ``heartbeat_table``
    rows are reported as heartbeat sequence numbers instead of changes.
    """

    def __init__(
        self,
        source: str,
        url: str,
        database: str,
        decoders: Mapping[str, RowDecoder],
        *,
        heartbeat_table: str,
        server_id: int,
        stop: Callable[[], bool],
        reconnect_delay: float = 0.5,
        paused: Callable[[str], bool] | None = None,
    ) -> None:
        self.source = source
        self.url = url
        self.database = database
        self.decoders = dict(decoders)
        self.heartbeat_table = heartbeat_table
        self.server_id = server_id
        self._stop = stop
        self._reconnect_delay = reconnect_delay
        self._paused = paused or (lambda _t: False)
        self.reconnects = 0

    def _open(self, position: BinlogPosition) -> Any:
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import (
            HeartbeatLogEvent,
            MariadbGtidEvent,
            QueryEvent,
            RotateEvent,
            XidEvent,
        )
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        install_raw_strings()
        target = parse_mysql_url(self.url)
        # On MariaDB python-mysql-replication ignores log_file/log_pos: it asks for the
        # GTID state in auto_position, and without one the server streams from the start
        # of its oldest binlog, so every restart replayed the whole binlog. Ask from the
        # GTID state at the stored file:offset instead.
        gtid = _gtid_at(self.url, position)
        return BinLogStreamReader(
            connection_settings={
                "host": target.host,
                "port": target.port,
                "user": target.user,
                "passwd": target.password,
                "connect_timeout": 10,
                # its stream and control connections: 45 ms of TLS set-up each here
                **target.tls_kwargs(),
            },
            server_id=self.server_id,
            resume_stream=True,
            blocking=True,
            log_file=position.file,
            log_pos=position.position,
            auto_position=gtid or None,
            only_events=[
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                XidEvent,
                QueryEvent,
                RotateEvent,
                MariadbGtidEvent,
                HeartbeatLogEvent,
            ],
            only_schemas=[self.database, REVERSE_STATE_DATABASE],
            is_mariadb=True,
            slave_heartbeat=0.5,
            enable_logging=False,
        )

    def transactions(self, start: BinlogPosition) -> Iterator[BinlogTransaction]:
        """Yield complete transactions after ``start`` until ``stop()`` says so."""
        import pymysql

        check_not_purged(self.source, self.url, start)
        position = start
        while not self._stop():
            try:
                stream = self._open(position)
            except pymysql.err.MySQLError:
                self.reconnects += 1
                time.sleep(self._reconnect_delay)
                continue
            try:
                for txn in self._read(stream, position):
                    position = txn.position
                    yield txn
                    if self._stop():
                        return
            except (pymysql.err.MySQLError, OSError, EOFError, struct_error()) as exc:
                if _purged(exc):
                    check_not_purged(self.source, self.url, position)
                    raise FatalError(f"{self.source}: binlog stream failed: {exc}") from exc
                self.reconnects += 1
                time.sleep(self._reconnect_delay)
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

    def _read(self, stream: Any, start: BinlogPosition) -> Iterator[BinlogTransaction]:
        from pymysqlreplication.event import (
            HeartbeatLogEvent,
            MariadbGtidEvent,
            QueryEvent,
            RotateEvent,
            XidEvent,
        )
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        gtid = start.gtid
        pending_gtid = gtid
        current = BinlogTransaction(self.source, start)
        log_file = start.file
        for event in stream:
            if isinstance(event, RotateEvent):
                log_file = event.next_binlog
                continue
            if isinstance(event, HeartbeatLogEvent):
                if self._stop():
                    return
                continue
            if isinstance(event, MariadbGtidEvent):
                pending_gtid = event.gtid
                continue
            if isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                self._add_rows(current, event)
                continue
            end = isinstance(event, XidEvent)
            if isinstance(event, QueryEvent):
                query = _text(event.query).strip()
                if query.upper() == "BEGIN" or _IN_TRANSACTION.match(query):
                    continue
                if query.upper() != "COMMIT":
                    match = _DDL.match(query)
                    if match and (match.group(2) or _text(event.schema)) == self.database:
                        current.ddl.append(SchemaChange(match.group(3), query))
                end = True
            if end:
                if current.from_reverse_writer:
                    current.changes.clear()  # the position still advances past it
                gtid = pending_gtid
                current.position = BinlogPosition(log_file, int(stream.log_pos), gtid)
                current.timestamp = int(event.timestamp)
                yield current
                current = BinlogTransaction(self.source, current.position)

    def _add_rows(self, txn: BinlogTransaction, event: Any) -> None:
        table = str(event.table)
        if _text(event.schema) == REVERSE_STATE_DATABASE:
            if table == REVERSE_POSITION_TABLE:
                txn.from_reverse_writer = True
            return
        if table == self.heartbeat_table:
            for row in event.rows:
                if "after_values" in row:
                    seq = row["after_values"].get("seq")
                elif event.__class__.__name__ == "WriteRowsEvent":
                    seq = row["values"].get("seq")
                else:
                    continue
                if seq is not None:
                    txn.heartbeats.append(int(seq))
            return
        decoder = self.decoders.get(table)
        if decoder is None or self._paused(table):
            return
        from pymysqlreplication.row_event import DeleteRowsEvent, WriteRowsEvent

        changes = txn.changes
        if self._add_fast(changes, table, decoder, event):
            return
        if isinstance(event, WriteRowsEvent):
            for row in event.rows:
                changes.append(
                    RowChange(
                        table, "insert", None, decoder.raw(row["values"], row["none_sources"])
                    )
                )
        elif isinstance(event, DeleteRowsEvent):
            for row in event.rows:
                changes.append(
                    RowChange(
                        table, "delete", decoder.raw(row["values"], row["none_sources"]), None
                    )
                )
        else:
            for row in event.rows:
                changes.append(
                    RowChange(
                        table,
                        "update",
                        decoder.raw(row["before_values"], row["before_none_sources"]),
                        decoder.raw(row["after_values"], row["after_none_sources"]),
                    )
                )

    @staticmethod
    def _add_fast(changes: list[RowChange], table: str, decoder: RowDecoder, event: Any) -> bool:
        """Cut the event's row images with the decoder's fast codec; False if it cannot."""
        from pymysqlreplication.row_event import UpdateRowsEvent, WriteRowsEvent

        codec = decoder.codec(event)
        if codec is None or not _full(event.columns_present_bitmap, len(event.columns)):
            return False
        update = isinstance(event, UpdateRowsEvent)
        if update and not _full(event.columns_present_bitmap2, len(event.columns)):
            return False
        body = event.packet.read(event.event_size - event.packet.read_bytes)
        images = codec.images(body, 2 if update else 1)
        if update:
            for i in range(0, len(images), 2):
                changes.append(RowChange(table, "update", images[i], images[i + 1]))
        elif isinstance(event, WriteRowsEvent):
            changes.extend(RowChange(table, "insert", None, image) for image in images)
        else:
            changes.extend(RowChange(table, "delete", image, None) for image in images)
        return True


def _gtid_at(url: str, position: BinlogPosition) -> str:
    """MariaDB's GTID state at a binlog file:offset (``''`` before the first GTID)."""
    conn = _server_connection(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (position.file, position.position))
            row = cur.fetchone()
    finally:
        conn.close()
    value = row[0] if row else None
    if value is None:  # not an event boundary of a file the server has: trust what was stored
        return position.gtid
    return value.decode() if isinstance(value, bytes) else str(value)


def _full(bitmap: bytes, columns: int) -> bool:
    """Whether a columns-present bitmap has every column (binlog_row_image=FULL)."""
    return int.from_bytes(bitmap, "little") == (1 << columns) - 1


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _purged(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "could not find first log file" in text or "1236" in text


def struct_error() -> type[Exception]:
    import struct

    return struct.error


__all__ = [
    "BinlogReader",
    "BinlogTransaction",
    "RowChange",
    "SchemaChange",
    "TransientError",
    "check_not_purged",
]
