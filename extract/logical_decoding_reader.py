"""Read committed Rune changes from a PostgreSQL logical replication slot (pgoutput).

Design note. The reader owns nothing durable but the slot: a logical replication slot
with the built-in ``pgoutput`` plugin, fed by a publication over the Rune tables that
are written back (decision 0005). It reads through the SQL interface
(``pg_logical_slot_peek_binary_changes``): a peek decodes whole committed transactions
from the slot's confirmed position without consuming them, the caller applies them and
commits its own checkpoint (in the legacy MySQL transaction, the only place that knows
what was applied), and only then calls :meth:`advance` so PostgreSQL may recycle the WAL.
A crash between the two re-reads transactions the caller has already applied; the
caller skips them by their commit LSN, so each is applied exactly once.

Tables are published with ``REPLICA IDENTITY FULL``: an update or delete then carries the
whole old row, which the reverse path needs (the legacy key of a deleted row is a
``legacy_*`` column, not the uuid primary key; a TOASTed value left unchanged by an
update is taken from the old row). Values arrive in PostgreSQL's text format and are
parsed with psycopg's own loaders, then typed as Arrow columns for the inverse transforms.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
import pyarrow as pa
from psycopg import pq, sql
from psycopg.adapt import Transformer

from runeshift.errors import ConfigError, FatalError

ChangeKind = Literal["insert", "update", "delete"]
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Columns whose text form the inverse transforms take as it is (JSON text, uuids, enums).
_RAW_TEXT_OIDS = frozenset({114, 3802, 2950, 25, 1043, 1042, 19})
_ARROW_BY_OID: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    1184: pa.timestamp("us", tz="UTC"),
    1114: pa.timestamp("us"),
    1082: pa.date32(),
    1005: pa.list_(pa.int64()),
    1007: pa.list_(pa.int64()),
    1016: pa.list_(pa.int64()),
    1009: pa.list_(pa.string()),
    1015: pa.list_(pa.string()),
}


def lsn_to_int(text: str) -> int:
    """``'0/1948C10'`` -> its 64-bit position."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    columns: tuple[str, ...]
    type_oids: tuple[int, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [
                (c, _ARROW_BY_OID.get(t, pa.string()))
                for c, t in zip(self.columns, self.type_oids, strict=True)
            ]
        )


@dataclass(frozen=True)
class RowEvent:
    table: str
    kind: ChangeKind
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass
class DecodedTransaction:
    """One committed Rune transaction: its row changes and its commit (end) LSN."""

    xid: int
    end_lsn: int
    commit_time: datetime
    changes: list[RowEvent] = field(default_factory=list)

    def tables(self) -> set[str]:
        return {c.table for c in self.changes}


_UNCHANGED_TOAST = object()


class LogicalDecodingReader:
    """A pgoutput slot over a publication, read through PostgreSQL's SQL interface."""

    def __init__(self, conn: psycopg.Connection[Any], slot: str, publication: str) -> None:
        if not conn.autocommit:
            raise ConfigError("the logical decoding reader needs an autocommit connection")
        self.conn = conn
        self.slot = slot
        self.publication = publication
        self._tx = Transformer(conn)
        self.relations: dict[int, Relation] = {}

    def exists(self) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        ).fetchone()
        return row is not None

    def create(self, tables: Sequence[str]) -> int:
        """Publish ``tables`` (schema-qualified) with full replica identity and make the slot.

        Idempotent: an existing slot is kept (its position is where the reverse stream
        stands). Returns the slot's confirmed position.
        """
        level = self.conn.execute("SHOW wal_level").fetchone()
        if level is None or level[0] != "logical":
            raise ConfigError(
                "PostgreSQL runs with wal_level="
                f"{level[0] if level else '?'}; reverse replication needs wal_level=logical "
                "(set it in postgresql.conf and restart the server)"
            )
        idents = [sql.Identifier(*t.split(".", 1)) for t in tables]
        for ident in idents:
            self.conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(ident))
        exists = self.conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,)
        ).fetchone()
        stmt = (
            sql.SQL("ALTER PUBLICATION {} SET TABLE {}")
            if exists
            else sql.SQL("CREATE PUBLICATION {} FOR TABLE {}")
        )
        self.conn.execute(stmt.format(sql.Identifier(self.publication), sql.SQL(", ").join(idents)))
        if not self.exists():
            self.conn.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,)
            )
        return self.confirmed_lsn()

    def drop(self) -> None:
        """Drop the slot and the publication (the reverse stream is over)."""
        if self.exists():
            self._on_slot("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        self.conn.execute(
            sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(self.publication))
        )

    def confirmed_lsn(self) -> int:
        row = self.conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (self.slot,),
        ).fetchone()
        if row is None or row[0] is None:
            raise FatalError(
                f"replication slot {self.slot!r} does not exist; run 'runeshift reverse prepare' "
                "(after the write switch) before starting the reverse follower"
            )
        return lsn_to_int(str(row[0]))

    def current_lsn(self) -> int:
        row = self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return lsn_to_int(str(row[0]))

    def _on_slot(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        """Run a slot function, waiting while another session holds the slot briefly.

        PostgreSQL lets one session use a slot at a time ("replication slot ... is active
        for PID n"); a status call peeking while the follower peeks is such a collision.
        """
        for attempt in range(100):
            try:
                cur = self.conn.execute(query, params)
                return cur.fetchall() if cur.description else []
            except psycopg.errors.ObjectInUse:
                time.sleep(min(0.5, 0.02 * (attempt + 1)))
        return self.conn.execute(query, params).fetchall()

    def advance(self, lsn: int) -> None:
        """Let PostgreSQL recycle WAL up to ``lsn`` (already applied and checkpointed)."""
        if lsn > self.confirmed_lsn():
            self._on_slot(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, lsn_text(lsn))
            )

    def peek(self, max_changes: int = 5_000) -> list[DecodedTransaction]:
        """Whole committed transactions after the slot's confirmed position (not consumed)."""
        rows = self._on_slot(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, "
            "'proto_version', '1', 'publication_names', %s)",
            (self.slot, max_changes, self.publication),
        )
        return self._decode(bytes(r[0]) for r in rows)

    def _decode(self, messages: Iterable[bytes]) -> list[DecodedTransaction]:
        out: list[DecodedTransaction] = []
        current: DecodedTransaction | None = None
        for msg in messages:
            kind = msg[:1]
            if kind == b"B":
                _final, ts, xid = struct.unpack_from("!QqI", msg, 1)
                current = DecodedTransaction(xid, 0, _PG_EPOCH + timedelta(microseconds=ts))
            elif kind == b"C":
                _flags, _commit, end, _ts = struct.unpack_from("!BQQq", msg, 1)
                assert current is not None
                current.end_lsn = end
                out.append(current)
                current = None
            elif kind == b"R":
                rel = _relation(msg)
                self.relations[rel.oid] = rel
            elif kind in (b"I", b"U", b"D"):
                assert current is not None
                current.changes.append(self._row_event(kind, msg))
            elif kind == b"T":
                raise FatalError(
                    "a TRUNCATE of a published Rune table reached the reverse stream; the "
                    "legacy tables were not truncated. Stop the soak and roll forward or "
                    "restore (runbooks/incident-reverse-follower-stuck.md)"
                )
            # 'Y' (type), 'O' (origin), 'M' (message) carry nothing the reverse path needs.
        return out

    def _row_event(self, kind: bytes, msg: bytes) -> RowEvent:
        (oid,) = struct.unpack_from("!I", msg, 1)
        rel = self.relations[oid]
        pos = 5
        old: dict[str, Any] | None = None
        new: dict[str, Any] | None = None
        tag = msg[pos : pos + 1]
        if tag in (b"K", b"O"):
            old, pos = self._tuple(rel, msg, pos + 1)
            tag = msg[pos : pos + 1]
        if tag == b"N":
            new, pos = self._tuple(rel, msg, pos + 1)
        if new is not None and old is not None:
            for col, value in new.items():
                if value is _UNCHANGED_TOAST:
                    new[col] = old.get(col)
        name = {b"I": "insert", b"U": "update", b"D": "delete"}[kind]
        return RowEvent(rel.qualified, name, old, new)  # type: ignore[arg-type]

    def _tuple(self, rel: Relation, msg: bytes, pos: int) -> tuple[dict[str, Any], int]:
        (ncols,) = struct.unpack_from("!H", msg, pos)
        pos += 2
        row: dict[str, Any] = {}
        for i in range(ncols):
            tag = msg[pos : pos + 1]
            pos += 1
            name, oid = rel.columns[i], rel.type_oids[i]
            if tag == b"n":
                row[name] = None
            elif tag == b"u":
                row[name] = _UNCHANGED_TOAST
            else:
                (length,) = struct.unpack_from("!I", msg, pos)
                pos += 4
                data = msg[pos : pos + length]
                pos += length
                row[name] = self._load(oid, data)
        return row, pos

    def _load(self, oid: int, data: bytes) -> Any:
        if oid in _RAW_TEXT_OIDS or oid not in _ARROW_BY_OID:
            return data.decode("utf-8")
        return self._tx.get_loader(oid, pq.Format.TEXT).load(data)


def _cstring(msg: bytes, pos: int) -> tuple[str, int]:
    end = msg.index(b"\0", pos)
    return msg[pos:end].decode("utf-8"), end + 1


def _relation(msg: bytes) -> Relation:
    (oid,) = struct.unpack_from("!I", msg, 1)
    schema, pos = _cstring(msg, 5)
    name, pos = _cstring(msg, pos)
    pos += 1  # replica identity setting
    (ncols,) = struct.unpack_from("!H", msg, pos)
    pos += 2
    columns: list[str] = []
    oids: list[int] = []
    for _ in range(ncols):
        pos += 1  # flags (part of the key)
        col, pos = _cstring(msg, pos)
        type_oid, _typmod = struct.unpack_from("!Ii", msg, pos)
        pos += 8
        columns.append(col)
        oids.append(type_oid)
    return Relation(oid, schema or "public", name, tuple(columns), tuple(oids))


def rows_to_arrow(relation_schema: pa.Schema, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Target rows (as decoded) as an Arrow table typed for the inverse transforms."""
    arrays = [pa.array([r.get(f.name) for r in rows], type=f.type) for f in relation_schema]
    return pa.Table.from_arrays(arrays, schema=relation_schema)


__all__ = [
    "DecodedTransaction",
    "LogicalDecodingReader",
    "Relation",
    "RowEvent",
    "lsn_text",
    "lsn_to_int",
    "rows_to_arrow",
]
