"""Consistent, chunked reads of a legacy MySQL database.

Design note. One connection per source database holds a
``START TRANSACTION WITH CONSISTENT SNAPSHOT``; MariaDB reports the exact
binlog file/position of that snapshot (``binlog_snapshot_file/position``), and
we derive its GTID with ``BINLOG_GTID_POS``. InnoDB tables are read inside the
snapshot. MyISAM and MEMORY tables have no MVCC snapshot: they are read on the
same connection *after* the position was taken, so what we read is at least as
new as the position. The catch-up replays ROW events from the recorded position
as idempotent upserts/deletes of full row images, so every table converges to
the source whichever moment in between it was read (the same argument covers a
resumed backfill whose later chunks come from a later snapshot: the position
kept is the first one).

Tables are read in primary-key order with keyset pagination
(``WHERE (pk) > (last) ORDER BY pk LIMIT n``); memory is bounded by one chunk,
sized from the table's average row length.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import MySQLdb
import pyarrow as pa

from extract.mysql_source_schema import (
    SourceColumn,
    SourceTable,
    column_to_arrow,
    read_source_schema,
    select_list,
    typed_column,
)
from runeshift.connections import parse_mysql_url
from runeshift.errors import FatalError, TransientError
from runeshift.gc_pause import gc_paused

try:
    from extract import _mysql_columns
except ImportError:  # built without libmariadb's headers: mysqlclient's rows instead
    _mysql_columns = None  # type: ignore[assignment]

CHUNK_BYTES = 8 * 1024 * 1024
MIN_CHUNK_ROWS = 500
# 1M licenses, three runs each (2026-11-28 12:52-12:54): 25k-row chunks peaked at 293-305 MB
# over the 300 MB target, 20k at 285 MB, 15k at 269 MB; wall time the same within noise.
# On a slower machine (20:06-20:17) 20k peaked at 311-314 MB and 15k at 297-300 MB, before
# pyarrow stopped importing pandas (runeshift/arrow_runtime.py; 263-267 MB with 15k).
MAX_CHUNK_ROWS = 15_000


@dataclass(frozen=True)
class BinlogPosition:
    file: str
    position: int
    gtid: str

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "position": self.position, "gtid": self.gtid}


@dataclass(frozen=True)
class Chunk:
    """One slice of a table in key order; ``last_key`` resumes after it."""

    batch: pa.RecordBatch
    last_key: tuple[Any, ...]


def chunk_rows_for(table: SourceTable) -> int:
    if table.avg_row_length <= 0:
        return 10_000
    return max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, CHUNK_BYTES // table.avg_row_length))


def raw_connect(url: str, database: str) -> Any:
    """A mysqlclient connection returning raw bytes for every value (decision 0001)."""
    target = parse_mysql_url(url)
    try:
        conn = MySQLdb.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database=database,
            charset="utf8mb4",
            conv={},
            connect_timeout=10,
        )
    except MySQLdb.OperationalError as exc:
        raise TransientError(
            f"cannot connect to MySQL at {target.host}:{target.port}/{database}: {exc}"
        ) from exc
    cur = conn.cursor()
    cur.execute("SET time_zone = '+00:00', sql_mode = '', character_set_results = binary")
    cur.execute("SET SESSION net_read_timeout = 600, net_write_timeout = 600")
    cur.close()
    return conn


class SnapshotReader:
    """Reads one source database inside one consistent snapshot."""

    def __init__(self, url: str, database: str) -> None:
        self.database = database
        self._conn = raw_connect(url, database)
        self.position: BinlogPosition | None = None
        self.tables: dict[str, SourceTable] = {}

    def open(self) -> BinlogPosition:
        """Start the snapshot and return the binlog position it corresponds to."""
        cur = self._conn.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
        status = {k.decode().lower(): v.decode() for k, v in cur.fetchall()}
        file = status.get("binlog_snapshot_file", "")
        if not file:
            raise FatalError(
                f"{self.database}: the server has no binary log (log_bin is off); catch-up needs "
                "log_bin=ON, binlog_format=ROW, binlog_row_image=FULL"
            )
        pos = int(status["binlog_snapshot_position"])
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        row = cur.fetchone()
        gtid = row[0].decode() if row and row[0] is not None else ""
        self.tables = read_source_schema(cur, self.database)
        cur.close()
        self.position = BinlogPosition(file, pos, gtid)
        return self.position

    def key_bounds(self, table: SourceTable) -> tuple[int, int] | None:
        """The least and greatest value of a single integer key, in the snapshot; None if empty."""
        (key,) = table.primary_key
        cur = self._conn.cursor()
        cur.execute(f"SELECT MIN(`{key}`), MAX(`{key}`) FROM `{table.name}`")
        low, high = cur.fetchone()
        cur.close()
        return None if low is None else (int(low), int(high))

    def estimated_rows(self, table: str) -> int:
        """The server's estimate of the table's rows (``TABLE_ROWS``: cheap, not exact)."""
        cur = self._conn.cursor()
        cur.execute(
            "SELECT COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (self.database, table),
        )
        row = cur.fetchone()
        cur.close()
        return int(row[0]) if row else 0

    def count(self, table: str) -> int:
        cur = self._conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM `{table}`")
        (n,) = cur.fetchone()
        cur.close()
        return int(n)

    def chunks(
        self,
        table: SourceTable,
        columns: Sequence[SourceColumn],
        *,
        after: tuple[Any, ...] | None = None,
        until: tuple[Any, ...] | None = None,
        chunk_rows: int | None = None,
    ) -> Generator[Chunk, None, None]:
        """Yield the table in key order, ``chunk_rows`` rows at a time, for keys in
        (``after``, ``until``] (``None``: that end is open)."""
        if not table.primary_key:
            raise FatalError(
                f"{self.database}.{table.name} has no primary key; it cannot be read in chunks"
            )
        key_cols = [table.column(k) for k in table.primary_key]
        wanted = list(columns)
        for kc in key_cols:
            if kc not in wanted:
                wanted.append(kc)
        limit = chunk_rows or chunk_rows_for(table)
        key_list = ", ".join(f"`{k}`" for k in table.primary_key)
        placeholders = ", ".join(["%s"] * len(key_cols))
        base = f"SELECT {select_list(wanted)} FROM `{table.name}`"
        bound: tuple[Any, ...] = ()
        if until is not None:
            base += f" WHERE ({key_list}) <= ({placeholders})"
            bound = tuple(until)
        joiner = " AND" if until is not None else " WHERE"
        key_index = [wanted.index(kc) for kc in key_cols]
        last = after
        cur = self._conn.cursor()
        try:
            while True:
                if last is None:
                    query, params = f"{base} ORDER BY {key_list} LIMIT {limit}", bound or None
                else:
                    query = (
                        f"{base}{joiner} ({key_list}) > ({placeholders}) "
                        f"ORDER BY {key_list} LIMIT {limit}"
                    )
                    params = (*bound, *last)
                fetched = self._fetch(cur, query, params, wanted)
                if fetched is None:
                    return
                batch, last_row = fetched
                n_rows = batch.num_rows
                last = tuple(_key_value(last_row[i], key_cols[n]) for n, i in enumerate(key_index))
                yield Chunk(batch, last)
                if n_rows < limit:
                    return
        finally:
            cur.close()

    def _fetch(
        self,
        cur: Any,
        query: str,
        params: tuple[Any, ...] | None,
        wanted: Sequence[SourceColumn],
    ) -> tuple[pa.RecordBatch, Sequence[Any]] | None:
        """One chunk as a batch of ``wanted`` and its last row's raw values; None if empty.

        Read in C straight into Arrow buffers where the module is built, else as
        mysqlclient's row tuples; a chunk whose resume key holds bytes (a binary primary
        key) goes through the cursor, which formats those parameters itself.
        """
        if _mysql_columns is not None and not any(isinstance(v, bytes) for v in params or ()):
            raw = self._read_columns(cur.mogrify(query, params))
            if not raw or not len(raw[0]):
                return None
            last_row = [column[len(column) - 1].as_py() for column in raw]
            arrays = [typed_column(c, raw[i]) for i, c in enumerate(wanted)]
            return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in wanted]), last_row
        cur.execute(query, params)
        with gc_paused():  # the row tuples make no cycles (runeshift/gc_pause.py)
            rows = cur.fetchall()
            if not rows:
                return None
            # the Python tuples cost more memory than the Arrow arrays: gone on return
            return _to_batch(rows, wanted), rows[-1]

    def _read_columns(self, query: str) -> list[pa.Array]:
        """The result of ``query`` as one binary array per column, read in C with the GIL
        released (``extract/_mysql_columns.c``); server errors as mysqlclient raises them."""
        assert _mysql_columns is not None
        try:
            rows, columns = _mysql_columns.read_columns(
                self._conn._get_native_connection(), query.encode("utf-8", "surrogateescape")
            )
        except RuntimeError as exc:
            raise MySQLdb.OperationalError(*exc.args) from None
        return [
            pa.BinaryArray.from_buffers(
                pa.binary(),
                rows,
                [
                    None if validity is None else pa.py_buffer(validity),
                    pa.py_buffer(offsets),
                    pa.py_buffer(data),
                ],
            )
            for data, offsets, validity in columns
        ]

    def rows_with_keys(
        self, table: SourceTable, columns: Sequence[SourceColumn], keys: Sequence[Any]
    ) -> pa.RecordBatch | None:
        """The rows of ``table`` (single-column key) whose key is in ``keys``, in key order."""
        if len(table.primary_key) != 1:
            raise FatalError(
                f"{self.database}.{table.name}: reading by key needs a single-column primary key"
            )
        key = table.column(table.primary_key[0])
        wanted = list(columns) if key in columns else [*columns, key]
        wanted_keys = sorted(set(keys))
        rows: list[tuple[Any, ...]] = []
        cur = self._conn.cursor()
        try:
            for start in range(0, len(wanted_keys), 1000):
                part = wanted_keys[start : start + 1000]
                cur.execute(
                    f"SELECT {select_list(wanted)} FROM `{table.name}` "
                    f"WHERE `{key.name}` IN ({', '.join(['%s'] * len(part))}) ORDER BY `{key.name}`",
                    part,
                )
                with gc_paused():
                    rows.extend(cur.fetchall())
        finally:
            cur.close()
        with gc_paused():
            return _to_batch(rows, wanted) if rows else None

    def close(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._conn.close()


def _to_batch(rows: Sequence[tuple[Any, ...]], columns: Sequence[SourceColumn]) -> pa.RecordBatch:
    transposed = list(zip(*rows, strict=True))
    arrays = [column_to_arrow(col, transposed[i]) for i, col in enumerate(columns)]
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])


def _key_value(raw: bytes, column: SourceColumn) -> Any:
    if column.arrow_type in (pa.int64(), pa.uint64()):
        return int(raw)
    return (
        raw.decode("utf-8", errors="surrogateescape") if column.arrow_type == pa.string() else raw
    )
