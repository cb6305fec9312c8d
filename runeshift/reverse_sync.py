"""The reverse follower: Rune (PostgreSQL) changes -> the inverse mappings -> legacy MySQL.

Design note (decision 0005). After the write switch, every committed Rune transaction on a
reversible table is read from the ``runeshift_reverse`` logical replication slot
(``extract/logical_decoding_reader.py``), turned back into legacy rows by the inverse of
the mappings (``transform/mapping_inverse.py``) and written by
``load/legacy_writer.py``. What it tracks: per legacy server, the commit LSN of the last
Rune transaction applied, in ``runeshift_state.runeshift_reverse_position``, committed in
the same MySQL transaction as the rows it describes. The slot is advanced only after that
commit. After a crash at any point, the restart peeks again from the slot, skips every
transaction at or below the stored LSN and applies the rest: each Rune transaction is
applied exactly once (and the writes are absolute, so even a MyISAM table written before
a crash converges).

Who calls it: ``runeshift reverse run|drain|status|verify|prepare|stop`` and, in process,
the cutover's soak stage and the drill through :class:`ReverseFollower`. One follower is
active at a time (a PostgreSQL advisory lock); a second waits.

No echo: a Rune transaction that also wrote ``runeshift.source_positions`` was applied by
the forward follower (legacy -> Rune) and is never written back. The forward follower,
symmetrically, must skip binlog transactions that write
``runeshift_state.runeshift_reverse_position`` (every transaction of this writer does).

Rows Rune creates (decision 0007): while the stream is prepared, the sequence
``runeshift.reverse_license_keys`` exists, seeded by :func:`prepare_reverse` above every
legacy license id and above legacy's AUTO_INCREMENT (legacy writes are held then, and stay
fenced during the soak); the Rune service takes each new license's ``legacy_license_id``
from it and derives the row id as ``uuid5(license, key)`` like a migrated row. Such a row
is an ordinary keyed row here: inserted into legacy under that id, and its later updates
and deletes reach the same legacy row. Nothing is written back to PostgreSQL, so there is
nothing to echo. :func:`finish_reverse` drops the sequence: after ``complete`` (or a
rollback) Rune's new rows carry no legacy key again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import pymysql
from psycopg import sql

from extract.binlog_reader import BinlogReader
from extract.binlog_row_decoder import RowDecoder
from extract.logical_decoding_reader import (
    DecodedTransaction,
    LogicalDecodingReader,
    RowEvent,
    lsn_text,
    lsn_to_int,
    rows_to_arrow,
)
from extract.mysql_source_schema import SourceTable, read_source_schema
from extract.snapshot_reader import BinlogPosition, raw_connect
from load.legacy_writer import LegacyWriter, ReversePosition
from reconcile.report_model import ReconcileReport
from runeshift.connections import parse_mysql_url, pg_connect
from runeshift.errors import ConfigError, FatalError, TransientError
from runeshift.heartbeat import HEARTBEAT_TABLE
from runeshift.settings import Settings
from transform.mapping_inverse import (
    InverseFeed,
    InverseMapping,
    ReverseRows,
    build_inverse,
    changed_source_columns,
    invert_rows,
)
from transform.mapping_loader import load_mappings
from transform.mapping_spec import MappingSet, TargetMapping

SLOT = "runeshift_reverse"
PUBLICATION = "runeshift_reverse"
REVERSE_LOCK = 0x52554E45_0008  # pg advisory lock key: one reverse follower per target
# The forward follower's checkpoint table: a Rune transaction writing it came from legacy.
ECHO_TABLE = "runeshift.source_positions"
SOURCES = (("forums", "forums_url"), ("repo", "repo_url"))


@dataclass(frozen=True)
class KeyAllocation:
    """Rune allocates ``column`` of new ``table`` rows from ``sequence`` during the soak."""

    table: str
    column: str
    sequence: str


# Every table the Rune service creates rows in that has a reversible feed (decision 0007).
# Rune also writes rune.orders and rune.order_items: Shopify-side, one-way, not here.
KEY_ALLOCATIONS = (
    KeyAllocation("rune.licenses", "legacy_license_id", "runeshift.reverse_license_keys"),
)


@dataclass(frozen=True)
class ReverseOptions:
    until_caught_up: bool = False
    max_changes: int = 5_000
    poll_seconds: float = 0.2
    timeout_seconds: float | None = None
    lock_wait_seconds: float = 30.0
    # Apply nothing committed after this LSN, and end once everything up to it is applied.
    until_lsn: int | None = None


@dataclass
class ReverseResult:
    status: str
    caught_up: bool
    position: str
    transactions_applied: int
    changes_applied: int
    echo_transactions_skipped: int
    rows_quarantined: int
    one_way_changes: int
    lag_seconds: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}


@dataclass
class ReverseStatus:
    prepared: bool
    position: str | None
    slot_position: str | None
    wal_position: str | None
    lag_bytes: int | None
    lag_seconds: float | None
    pending_transactions: int
    transactions_applied: int
    changes_applied: int
    rows_quarantined: int
    recent_quarantine: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class ReversePrepared:
    slot: str
    publication: str
    tables: tuple[str, ...]
    one_way_tables: tuple[str, ...]
    position: str


def reversible_targets(mappings: MappingSet) -> list[InverseMapping]:
    """Targets with at least one feed written back (the Shopify-only ones are one-way)."""
    out = []
    for target in mappings.targets:
        inverse = build_inverse(target)
        if any(f.reversible for f in inverse.feeds):
            out.append(inverse)
    return out


def _writers(settings: Settings) -> list[LegacyWriter]:
    """One writer per legacy server; forums and repo on one server share a transaction."""
    by_server: dict[str, dict[str, str]] = {}
    urls: dict[str, str] = {}
    for source, setting in SOURCES:
        url = settings.require(setting)
        target = parse_mysql_url(url)
        if not target.database:
            raise ConfigError(f"setting '{setting}' must name the database")
        server = url[: url.rfind("/") + 1]
        key = f"{target.host}:{target.port}"
        urls[key] = server
        by_server.setdefault(key, {})[source] = target.database
    return [LegacyWriter(urls[k], dbs) for k, dbs in sorted(by_server.items())]


def prepare_reverse(settings: Settings, mappings: MappingSet | None = None) -> ReversePrepared:
    """Create the publication, the slot and the legacy-side state (idempotent).

    Call it at the write switch, after writes to legacy are held and the forward follower
    has drained, and before writes open on Rune: the slot's start is then exactly the
    first Rune-side write.
    """
    mappings = mappings or load_mappings()
    inverses = reversible_targets(mappings)
    tables = tuple(i.table for i in inverses)
    writers = _writers(settings)
    try:
        firsts = _first_free_keys(writers, inverses)
        with pg_connect(settings.require("postgres_url"), autocommit=True) as conn:
            reader = LogicalDecodingReader(conn, SLOT, PUBLICATION)
            new_stream = not reader.exists()
            _seed_key_sequences(conn, firsts)
            lsn = reader.create([*tables, ECHO_TABLE])
        for writer in writers:
            writer.ensure_state()
            writer.start_position(SLOT, lsn, new_stream=new_stream)
    finally:
        for writer in writers:
            writer.close()
    one_way = tuple(t.table for t in mappings.targets if t.table not in tables)
    return ReversePrepared(SLOT, PUBLICATION, tables, one_way, lsn_text(lsn))


def _first_free_keys(
    writers: Sequence[LegacyWriter], inverses: Sequence[InverseMapping]
) -> dict[KeyAllocation, int]:
    """Per allocation, the first legacy key neither legacy nor its AUTO_INCREMENT has used."""
    by_table = {i.table: i for i in inverses}
    out: dict[KeyAllocation, int] = {}
    for alloc in KEY_ALLOCATIONS:
        inverse = by_table.get(alloc.table)
        if inverse is None:
            continue
        feed = inverse.primary
        key = next((k for k, holder in feed.key if holder == alloc.column), None)
        writer = next((w for w in writers if feed.source in w.databases), None)
        if key is None or writer is None:
            raise ConfigError(
                f"{alloc.table}.{alloc.column} is not the legacy key of a reversible feed; "
                "fix KEY_ALLOCATIONS in runeshift/reverse_sync.py"
            )
        out[alloc] = writer.next_key(feed.source, feed.table, key)
    return out


def _seed_key_sequences(conn: psycopg.Connection[Any], firsts: Mapping[KeyAllocation, int]) -> None:
    """Create each allocation sequence, never moving it back (prepare is idempotent)."""
    for alloc, first in firsts.items():
        schema, name = alloc.table.split(".", 1)
        seq = sql.Identifier(*alloc.sequence.split(".", 1))
        conn.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} AS bigint").format(seq))
        # Also above every key Rune already holds (a key Rune allocated in an earlier soak
        # that legacy then lost would otherwise be handed out twice).
        conn.execute(
            sql.SQL(
                "SELECT setval(%s::regclass, GREATEST(%s, "
                "(SELECT COALESCE(MAX({col}), 0) + 1 FROM {tbl}), "
                "(SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM {seq})), false)"
            ).format(col=sql.Identifier(alloc.column), tbl=sql.Identifier(schema, name), seq=seq),
            (alloc.sequence, first),
        )


def end_key_allocation(settings: Settings) -> int:
    """Drop the key sequences: Rune's new rows carry no legacy key from here (idempotent).

    Returns a WAL position at or after the commit of every transaction that took a key:
    ``DROP SEQUENCE`` waits for the transactions that used the sequence to end, so
    draining up to it brings every keyed row to legacy, and what Rune commits later (rows
    without a key) need not be applied at all.
    """
    with pg_connect(settings.require("postgres_url"), autocommit=True) as conn:
        for alloc in KEY_ALLOCATIONS:
            seq = sql.Identifier(*alloc.sequence.split(".", 1))
            conn.execute(sql.SQL("DROP SEQUENCE IF EXISTS {}").format(seq))
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return lsn_to_int(str(row[0]))


def finish_reverse(settings: Settings) -> ReverseStatus:
    """Stop the reverse stream for good (``complete``, or the end of a rollback).

    Drops the key sequences (decision 0007), the slot and the publication. The legacy-side
    position row is kept (it records where the stream ended) until a new stream starts.
    """
    status = reverse_status(settings)
    end_key_allocation(settings)
    with pg_connect(settings.require("postgres_url"), autocommit=True) as conn:
        LogicalDecodingReader(conn, SLOT, PUBLICATION).drop()
    return status


class _KeyResolver:
    """Legacy keys of referenced Rune rows: from the stream first, then from PostgreSQL."""

    def __init__(self, conn: psycopg.Connection[Any], inverses: Mapping[str, InverseMapping]):
        self.conn = conn
        self.holders = {t: inv.primary.key[0][1] for t, inv in inverses.items() if inv.primary.key}
        self.seen: dict[str, dict[str, Any]] = {}

    def remember(self, table: str, row: Mapping[str, Any] | None) -> None:
        holder = self.holders.get(table)
        if row is None or holder is None:
            return
        if row.get("id") is not None and row.get(holder) is not None:
            self.seen.setdefault(table, {})[str(row["id"])] = row[holder]

    def __call__(self, table: str, ids: Sequence[str | None]) -> list[Any]:
        holder = self.holders.get(table)
        if holder is None:
            return [None] * len(ids)
        known = self.seen.setdefault(table, {})
        missing = sorted({i for i in ids if i is not None and i not in known})
        if missing:
            schema, name = table.split(".", 1)
            rows = self.conn.execute(
                sql.SQL("SELECT id::text, {} FROM {} WHERE id::text = ANY(%s)").format(
                    sql.Identifier(holder), sql.Identifier(schema, name)
                ),
                (missing,),
            ).fetchall()
            self.conn.rollback()
            for rid, legacy in rows:
                if legacy is not None:
                    known[str(rid)] = legacy
        return [None if i is None else known.get(i) for i in ids]


@dataclass
class _Counts:
    transactions: int = 0
    changes: int = 0
    echo: int = 0
    quarantined: int = 0
    one_way: int = 0


class _Applier:
    """Applies decoded Rune transactions through one legacy writer."""

    def __init__(
        self,
        writer: LegacyWriter,
        inverses: Mapping[str, InverseMapping],
        reader: LogicalDecodingReader,
        resolve: _KeyResolver,
    ) -> None:
        self.writer = writer
        self.inverses = inverses
        self.reader = reader
        self.resolve = resolve
        self.touched: dict[str, set[int]] = {}

    def take_touched(self) -> dict[str, set[int]]:
        """Per Rune table, the legacy keys of the changes applied since the last call."""
        touched, self.touched = self.touched, {}
        return touched

    def feeds(self, table: str) -> list[InverseFeed]:
        inv = self.inverses.get(table)
        if inv is None:
            return []
        return [f for f in inv.feeds if f.reversible and f.source in self.writer.databases]

    def apply(self, txn: DecodedTransaction, counts: _Counts) -> None:
        for change in txn.changes:
            self.resolve.remember(change.table, change.new or change.old)
            feeds = self.feeds(change.table)
            if not feeds:
                counts.one_way += 1
                continue
            for inv in feeds:
                self.writer.savepoint()
                try:
                    self._apply_feed(inv, change, txn, counts)
                except (pymysql.err.DataError, pymysql.err.IntegrityError) as exc:
                    # The legacy column refuses the value (NOT NULL, range): record the row
                    # so the soak's status shows what a rollback would lose; keep going.
                    self.writer.rollback_to_savepoint()
                    reason = f"legacy MySQL refused the row: {exc.args[-1]}"
                    self._quarantine(inv, change, txn, reason, change.new or change.old, counts)
            counts.changes += 1

    def _rows(self, inv: InverseFeed, change: RowEvent, row: Mapping[str, Any]) -> ReverseRows:
        relation = next(r for r in self.reader.relations.values() if r.qualified == change.table)
        table = rows_to_arrow(relation.arrow_schema(), [row])
        return invert_rows(inv, table, self.resolve)

    def _apply_feed(
        self, inv: InverseFeed, change: RowEvent, txn: DecodedTransaction, counts: _Counts
    ) -> None:
        key_cols = [k for k, _ in inv.key]
        old = self._rows(inv, change, change.old) if change.old is not None else None
        new = self._rows(inv, change, change.new) if change.new is not None else None
        # Applied, refused or quarantined below: the row's legacy key is one a rollback's
        # held verification must look at (single-column integer keys, as every feed has).
        for result in (old, new):
            key = result.keys[0] if result is not None else None
            if key is not None and len(key) == 1 and isinstance(key[0], int):
                self.touched.setdefault(change.table, set()).add(key[0])
        for result, row in ((old, change.old), (new, change.new)):
            if result is not None and result.rows[0] is None:
                if inv.feed.primary or result.keys[0] is not None:
                    self._quarantine(inv, change, txn, result.errors[0] or "", row, counts)
                return
        old_key = old.keys[0] if old is not None else None
        new_key = new.keys[0] if new is not None else None
        if change.kind == "delete" or (old_key is not None and old_key != new_key):
            assert old_key is not None
            self.writer.delete(inv.source, inv.table, dict(zip(key_cols, old_key, strict=True)))
            if change.kind == "delete":
                return
        assert new is not None and change.new is not None
        row = new.rows[0]
        assert row is not None
        values = [row[c] for c in row if c not in key_cols]
        if not values:
            return
        if not inv.feed.primary and all(v is None for v in values):
            # A contributing row exists only while it contributes (no auth0 link -> no row).
            self.writer.delete(
                inv.source, inv.table, dict(zip(key_cols, new_key or (), strict=True))
            )
            return
        if change.kind == "update" and old_key == new_key and change.old is not None:
            changed = {c for c, v in change.new.items() if change.old.get(c) != v}
            update = [c for c in changed_source_columns(inv, changed) if c not in key_cols]
            if update:
                self.writer.update(inv.source, inv.table, row, key_cols, update)
            return
        self.writer.upsert(inv.source, inv.table, row, key_cols, [c for c in row])

    def _quarantine(
        self,
        inv: InverseFeed,
        change: RowEvent,
        txn: DecodedTransaction,
        reason: str,
        row: Mapping[str, Any] | None,
        counts: _Counts,
    ) -> None:
        self.writer.quarantine(
            SLOT,
            txn.end_lsn,
            change.table,
            f"{inv.source}.{inv.table}",
            str((row or {}).get("id")),
            reason,
            row or {},
        )
        counts.quarantined += 1


def _wait_for_lock(conn: psycopg.Connection[Any], wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (REVERSE_LOCK,)).fetchone()
        if row and row[0]:
            return
        if time.monotonic() > deadline:
            raise FatalError(
                "another reverse follower is running (it holds the reverse advisory lock); "
                "stop it ('runeshift reverse run' exits on SIGTERM after draining) or let it "
                "drain with 'runeshift reverse status' showing pending_transactions 0"
            )
        time.sleep(0.2)


def run_reverse(
    settings: Settings,
    options: ReverseOptions | None = None,
    *,
    stop: Callable[[], bool] = lambda: False,
    until: Callable[[], int | None] = lambda: None,
    mappings: MappingSet | None = None,
    on_batch: Callable[[ReverseResult], None] | None = None,
    on_touched: Callable[[str, Sequence[int]], None] | None = None,
    wait: Callable[[float], object] = time.sleep,
) -> ReverseResult:
    """Follow the slot and apply Rune's changes to legacy until ``stop()`` (then drain).

    With ``until_caught_up`` it returns as soon as no committed transaction is pending:
    that is the drain of a rollback (writes are held, so nothing new arrives). With an
    upper LSN (``options.until_lsn``, or ``until()`` once it returns one) it applies
    nothing committed after it and returns once everything up to it is applied: the end
    of the stream at ``complete``. ``on_touched(rune_table, legacy_keys)`` is told the
    keys of every change applied or quarantined, once legacy has committed them.
    ``wait(seconds)`` idles between polls (a follower's wakes when it is told to stop).
    """
    options = options or ReverseOptions()
    mappings = mappings or load_mappings()
    inverses = {i.table: i for i in reversible_targets(mappings)}
    started = time.monotonic()
    pg_url = settings.require("postgres_url")
    lock_conn = pg_connect(pg_url, autocommit=True)
    conn = pg_connect(pg_url, autocommit=True)
    lookup_conn = pg_connect(pg_url)
    writers = _writers(settings)
    counts = _Counts()
    lag = 0.0
    caught_up = False
    last_lsn = 0
    try:
        _wait_for_lock(lock_conn, options.lock_wait_seconds)
        reader = LogicalDecodingReader(conn, SLOT, PUBLICATION)
        reader.confirmed_lsn()  # refuses a missing slot with the remedy
        resolve = _KeyResolver(lookup_conn, inverses)
        appliers = [_Applier(w, inverses, reader, resolve) for w in writers]
        positions = {id(a): _position(a.writer) for a in appliers}
        draining = False
        while True:
            if stop():
                draining = True
            upper = until()
            upper = options.until_lsn if upper is None else upper
            txns = reader.peek(options.max_changes)
            floor = min(positions.values())
            done = [t for t in txns if t.end_lsn <= floor]
            pending = [
                t for t in txns if t.end_lsn > floor and (upper is None or t.end_lsn <= upper)
            ]
            if not pending:
                if done:
                    # Applied before a crash, not yet released from the slot: release them
                    # and look again (the peek may have stopped at max_changes).
                    before = reader.confirmed_lsn()
                    reader.advance(max(t.end_lsn for t in done))
                    if reader.confirmed_lsn() != before:
                        continue
                lag = 0.0
                caught_up = True
                if options.until_caught_up or draining or upper is not None:
                    break
                if options.timeout_seconds and time.monotonic() - started > options.timeout_seconds:
                    break
                wait(options.poll_seconds)
                continue
            caught_up = False
            lag = max(0.0, (datetime.now(UTC) - pending[0].commit_time).total_seconds())
            end = pending[-1].end_lsn
            for applier in appliers:
                mine = [t for t in pending if t.end_lsn > positions[id(applier)]]
                batch = _Counts()
                try:
                    for txn in mine:
                        if ECHO_TABLE in txn.tables():
                            batch.echo += 1
                            continue
                        applier.apply(txn, batch)
                        batch.transactions += 1
                    applier.writer.commit(
                        SLOT,
                        end,
                        mine[-1].commit_time if mine else None,
                        batch.transactions,
                        batch.changes,
                        batch.quarantined,
                    )
                except BaseException:
                    applier.writer.rollback()
                    raise
                positions[id(applier)] = end
                touched = applier.take_touched()
                if on_touched is not None:
                    for table, keys in touched.items():
                        on_touched(table, sorted(keys))
                counts.transactions += batch.transactions
                counts.changes += batch.changes
                counts.echo += batch.echo
                counts.quarantined += batch.quarantined
                counts.one_way += batch.one_way
            reader.advance(end)
            last_lsn = end
            if on_batch is not None:
                on_batch(_result("running", False, last_lsn, counts, lag, started))
            if options.timeout_seconds and time.monotonic() - started > options.timeout_seconds:
                break
        last_lsn = max(last_lsn, min(positions.values()))
    finally:
        for w in writers:
            w.close()
        for c in (lookup_conn, conn, lock_conn):
            c.close()
    return _result(
        "caught_up" if caught_up else "stopped", caught_up, last_lsn, counts, lag, started
    )


def _position(writer: LegacyWriter) -> int:
    pos = writer.position(SLOT)
    if pos is None:
        raise FatalError(
            f"no reverse position on {writer.server_url.split('@')[-1]} "
            f"({', '.join(writer.databases.values())}); run 'runeshift reverse prepare' first"
        )
    return pos.lsn


def _result(
    status: str, caught_up: bool, lsn: int, counts: _Counts, lag: float, started: float
) -> ReverseResult:
    return ReverseResult(
        status=status,
        caught_up=caught_up,
        position=lsn_text(lsn),
        transactions_applied=counts.transactions,
        changes_applied=counts.changes,
        echo_transactions_skipped=counts.echo,
        rows_quarantined=counts.quarantined,
        one_way_changes=counts.one_way,
        lag_seconds=lag,
        seconds=time.monotonic() - started,
    )


def drain_reverse(settings: Settings, *, timeout_seconds: float = 60.0) -> ReverseResult:
    """Apply everything committed in Rune so far, then return (writes must be held)."""
    return run_reverse(
        settings,
        ReverseOptions(until_caught_up=True, lock_wait_seconds=timeout_seconds),
    )


def reverse_status(settings: Settings) -> ReverseStatus:
    """Where the reverse stream stands: positions, lag, pending work, quarantine."""
    positions: list[ReversePosition] = []
    recent: list[dict[str, Any]] = []
    for writer in _writers(settings):
        try:
            writer.ensure_state()
            pos = writer.position(SLOT)
            if pos is not None:
                positions.append(pos)
                recent.extend(writer.quarantined(SLOT, 5, since_lsn=writer.stream_start(SLOT)))
        finally:
            writer.close()
    with pg_connect(settings.require("postgres_url"), autocommit=True) as conn:
        reader = LogicalDecodingReader(conn, SLOT, PUBLICATION)
        if not reader.exists() or not positions:
            return ReverseStatus(False, None, None, None, None, None, 0, 0, 0, 0)
        floor = min(p.lsn for p in positions)
        txns = [t for t in reader.peek(1_000) if t.end_lsn > floor]
        wal = reader.current_lsn()
        slot = reader.confirmed_lsn()
    lag = (datetime.now(UTC) - txns[0].commit_time).total_seconds() if txns else 0.0
    return ReverseStatus(
        prepared=True,
        position=lsn_text(floor),
        slot_position=lsn_text(slot),
        wal_position=lsn_text(wal),
        lag_bytes=max(0, wal - floor),
        lag_seconds=max(0.0, lag),
        pending_transactions=len(txns),
        transactions_applied=sum(p.transactions_applied for p in positions),
        changes_applied=sum(p.changes_applied for p in positions),
        rows_quarantined=sum(p.rows_quarantined for p in positions),
        recent_quarantine=recent,
    )


@dataclass(frozen=True)
class _WatchedTable:
    """A legacy table some verified Rune table is fed from, and where its feed key sits."""

    table: str
    decoder: RowDecoder
    key_index: int  # of the feed's key in the decoder's raw tuple
    targets: tuple[str, ...]


@dataclass
class LegacyWrites:
    """Per Rune table, the legacy keys of every row event in the legacy binlogs since a mark."""

    keys: dict[str, set[int]]
    transactions: int
    row_events: int
    start: dict[str, dict[str, object]]
    end: dict[str, dict[str, object]]
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "transactions": self.transactions,
            "row_events": self.row_events,
            "keys": {t: len(k) for t, k in sorted(self.keys.items())},
            "from": self.start,
            "to": self.end,
            "seconds": round(self.seconds, 4),
        }


class LegacyBinlogMark:
    """Each legacy database's binlog position at a moment; later, the keys written since.

    The rollback from soak marks the binlogs before its live verification and, once writes
    are held and the reverse stream drained, reads each binlog from the mark to its current
    end (:meth:`writes_since`) with the catch-up's own reader
    (:class:`extract.binlog_reader.BinlogReader`). Every row event on a table feeding a
    verified Rune table yields its feed key (before and after image), mapped to the Rune
    table the verification compares: that covers a write to legacy behind the fence (a
    cron job, an admin) that the follower's :meth:`ReverseFollower.touched` cannot see. The
    read is bounded by the writes since the mark, not by the tables. The reverse writer's
    own transactions are skipped by the reader (their changes are the follower's touched
    keys already).
    """

    def __init__(
        self,
        sources: Mapping[str, tuple[str, str]],
        watched: Mapping[str, Mapping[str, _WatchedTable]],
        positions: Mapping[str, BinlogPosition],
    ) -> None:
        self._sources = dict(sources)  # source -> (url, database)
        self._watched = {s: dict(t) for s, t in watched.items()}
        self.positions = dict(positions)  # read up to here
        self._marked = dict(positions)
        self._keys: dict[str, set[int]] = {}  # found by the reads so far
        self._transactions = self._row_events = 0

    @classmethod
    def take(cls, settings: Settings, mappings: MappingSet | None = None) -> LegacyBinlogMark:
        """Read each legacy database's schema and binlog end (``SHOW MASTER STATUS``) now."""
        mappings = mappings or load_mappings()
        targets = [i.target for i in reversible_targets(mappings)]
        sources: dict[str, tuple[str, str]] = {}
        watched: dict[str, dict[str, _WatchedTable]] = {}
        positions: dict[str, BinlogPosition] = {}
        for source, setting in SOURCES:
            url = settings.require(setting)
            database = parse_mysql_url(url).database
            if not database:
                raise ConfigError(f"setting '{setting}' must name the database")
            conn = raw_connect(url, database)
            try:
                cur = conn.cursor()
                schema = read_source_schema(cur, database)
                cur.execute("SHOW MASTER STATUS")
                row = cur.fetchone()
                if row is None:
                    raise FatalError(f"{source}: SHOW MASTER STATUS returned nothing (no binlog)")
                file, pos = _text(row[0]), int(row[1])
                cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
                gtid = cur.fetchone()
                cur.close()
            finally:
                conn.close()
            sources[source] = (url, database)
            positions[source] = BinlogPosition(
                file, pos, _text(gtid[0]) if gtid and gtid[0] else ""
            )
            watched[source] = _watched_tables(targets, source, schema)
        return cls(sources, watched, positions)

    def writes_since(self, *, idle_timeout_s: float = 2.0) -> LegacyWrites:
        """Every key written since the mark: each binlog read to its end now; raise if one cannot be.

        Call it with writes held. Each call reads on from where the last one ended and
        returns what all of them found, so a read ahead of the hold (:meth:`read_ahead`)
        leaves the held one only the transactions since. A reader that yields nothing for
        ``idle_timeout_s`` before reaching the end (events after the last transaction, such
        as a rotated file's header, are never yielded) fails rather than guess: the caller
        verifies in full.
        """
        from concurrent.futures import ThreadPoolExecutor

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(self._sources)) as pool:
            futures = {
                source: pool.submit(self._read, source, i, idle_timeout_s)
                for i, source in enumerate(sorted(self._sources))
            }
            results = {source: f.result() for source, f in futures.items()}
        for source, (found, transactions, row_events, end) in results.items():
            for table, table_keys in found.items():
                self._keys.setdefault(table, set()).update(table_keys)
            self._transactions += transactions
            self._row_events += row_events
            self.positions[source] = end
        return LegacyWrites(
            keys={t: set(k) for t, k in self._keys.items()},
            transactions=self._transactions,
            row_events=self._row_events,
            start={s: p.as_dict() for s, p in sorted(self._marked.items())},
            end={s: p.as_dict() for s, p in sorted(self.positions.items())},
            seconds=time.monotonic() - started,
        )

    def read_ahead(self, *, idle_timeout_s: float = 2.0) -> None:
        """Read the binlogs from the mark to their end now, before writes are held.

        What it finds stays for :meth:`writes_since`, which then reads only what came after:
        in a 200 requests/s drill the held read went from 0.47 s (29 transactions since the
        mark, taken before the live verification) to the reader's start-up.
        """
        self.writes_since(idle_timeout_s=idle_timeout_s)

    def _read(
        self, source: str, index: int, idle_timeout_s: float
    ) -> tuple[dict[str, set[int]], int, int, BinlogPosition]:
        url, database = self._sources[source]
        end = _binlog_end(url)
        start = self.positions[source]
        watched = self._watched[source]
        reached = _at_or_after(start, end)
        progress = time.monotonic()

        def stop() -> bool:
            return reached or time.monotonic() - progress > idle_timeout_s

        reader = BinlogReader(
            source,
            url,
            database,
            {name: w.decoder for name, w in watched.items()},
            heartbeat_table=HEARTBEAT_TABLE,
            server_id=_scan_server_id(index),
            stop=stop,
        )
        keys: dict[str, set[int]] = {}
        transactions = row_events = 0
        for txn in reader.transactions(start):
            transactions += 1
            for change in txn.changes:
                table = watched[change.table]
                row_events += 1
                for image in (change.before, change.after):
                    raw = None if image is None else image[table.key_index]
                    if raw is None:
                        continue
                    for target in table.targets:
                        keys.setdefault(target, set()).add(int(raw))
            progress = time.monotonic()
            reached = _at_or_after(txn.position, end)
        if not reached:
            raise TransientError(
                f"{source}: the binlog from {start.file}:{start.position} was not read to "
                f"{end.file}:{end.position} (nothing more for {idle_timeout_s:.1f} s)"
            )
        return keys, transactions, row_events, end


def _watched_tables(
    targets: Sequence[TargetMapping], source: str, schema: Mapping[str, SourceTable]
) -> dict[str, _WatchedTable]:
    """The tables of ``source`` that feed ``targets``, each decoding its key and feed key."""
    by_table: dict[str, tuple[str, list[str]]] = {}
    for target in targets:
        for feed in target.feeds:
            if feed.source != source:
                continue
            if len(feed.key) != 1:
                raise ConfigError(
                    f"{feed.where}: {feed.qualified} has a composite key; a rollback's held "
                    "verification names rows by one integer key"
                )
            key, names = by_table.setdefault(feed.table, (feed.key[0], []))
            if key != feed.key[0]:
                raise ConfigError(f"{feed.where}: {feed.qualified} is keyed two ways")
            names.append(target.table)
    out: dict[str, _WatchedTable] = {}
    for name, (key, names) in by_table.items():
        table = schema.get(name)
        if table is None:
            raise ConfigError(f"source table {source}.{name} does not exist")
        columns = list(dict.fromkeys([*table.primary_key, key]))
        out[name] = _WatchedTable(
            name, RowDecoder(table, columns), columns.index(key), tuple(dict.fromkeys(names))
        )
    return out


def _binlog_end(url: str) -> BinlogPosition:
    """Where the server's binlog ends now."""
    conn = pymysql.connect(**_pymysql_args(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        raise FatalError("SHOW MASTER STATUS returned nothing: the server has no binlog")
    return BinlogPosition(str(row[0]), int(row[1]), "")


def _pymysql_args(url: str) -> dict[str, Any]:
    target = parse_mysql_url(url)
    return {
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "password": target.password,
        "connect_timeout": 10,
        **target.tls_kwargs(),
    }


def _at_or_after(position: BinlogPosition, end: BinlogPosition) -> bool:
    # Binlog file names share a base name and a zero-padded sequence number.
    return (position.file, position.position) >= (end.file, end.position)


def _scan_server_id(index: int) -> int:
    # Unique on the server beside the catch-up's ids (100000..199999, runeshift/sync.py).
    return 200_000 + (os.getpid() % 50_000) * 2 + index


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ReverseFollower:
    """The reverse follower on a thread, for the cutover's soak stage and the drill.

    ``start()`` begins following; ``lag_seconds`` is the age of the oldest Rune
    transaction not yet applied (0 when caught up); ``drain()`` returns once everything
    committed so far is applied (call it with writes held); ``stop()`` drains and ends.
    ``track()`` starts recording the legacy keys of the rows it writes, which
    ``touched()`` returns: a rollback verifies those under held writes, not whole tables.
    """

    def __init__(self, settings: Settings, options: ReverseOptions | None = None) -> None:
        self.settings = settings
        self.options = options or ReverseOptions()
        self._stop = threading.Event()
        self._until: int | None = None
        self._thread: threading.Thread | None = None
        self._last: ReverseResult | None = None
        self.result: ReverseResult | None = None
        self.error: BaseException | None = None
        self._touched: dict[str, set[int]] | None = None  # None: not tracking
        self._touched_lock = threading.Lock()

    def start(self) -> None:
        def run() -> None:
            try:
                self.result = run_reverse(
                    self.settings,
                    self.options,
                    stop=self._stop.is_set,
                    until=lambda: self._until,
                    on_batch=self._seen,
                    on_touched=self._touch,
                    # A stop during a rollback is waited for with writes held.
                    wait=self._stop.wait,
                )
            except BaseException as exc:  # reported through .error / stop()
                self.error = exc

        self._thread = threading.Thread(target=run, name="reverse-follower", daemon=True)
        self._thread.start()

    def _seen(self, result: ReverseResult) -> None:
        self._last = result

    def _touch(self, table: str, keys: Sequence[int]) -> None:
        with self._touched_lock:
            if self._touched is not None:
                self._touched.setdefault(table, set()).update(keys)

    def track(self) -> None:
        """Record, from now on, the legacy keys of every change committed to legacy."""
        with self._touched_lock:
            self._touched = {}

    def touched(self) -> dict[str, set[int]]:
        """Per Rune table, the legacy keys committed since :meth:`track` (a copy)."""
        with self._touched_lock:
            return {t: set(k) for t, k in (self._touched or {}).items()}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def lag_seconds(self) -> float:
        return self._last.lag_seconds if self._last else 0.0

    def drain(self, timeout_seconds: float = 60.0) -> ReverseStatus:
        """Wait until no committed Rune transaction is pending; raise if it takes too long."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self.error is not None:
                raise FatalError(f"the reverse follower failed: {self.error}") from self.error
            status = reverse_status(self.settings)
            if status.pending_transactions == 0:
                return status
            if time.monotonic() > deadline:
                raise FatalError(
                    f"the reverse stream did not drain in {timeout_seconds:.0f}s "
                    f"({status.pending_transactions} transactions pending, lag "
                    f"{status.lag_seconds:.1f}s); keep writes held and see "
                    "runbooks/incident-reverse-follower-stuck.md"
                )
            time.sleep(0.1)

    def stop(
        self, timeout_seconds: float = 60.0, *, until_lsn: int | None = None
    ) -> ReverseResult | None:
        """Drain what is committed (up to ``until_lsn`` if given), stop, return the result."""
        self._until = until_lsn
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
        if self.error is not None:
            raise FatalError(f"the reverse follower failed: {self.error}") from self.error
        return self.result


@dataclass(frozen=True)
class QuarantineRule:
    """A named, reasoned rule under which a quarantined reverse row is accepted as lost.

    It matches rows of ``target_table`` whose reason contains ``reason_contains`` (every
    reason when empty). Without a matching rule a quarantined row fails verification.
    """

    name: str
    reason: str
    target_table: str
    reason_contains: str = ""

    def matches(self, row: Mapping[str, Any]) -> bool:
        return row.get("target_table") == self.target_table and (
            self.reason_contains in str(row.get("reason") or "")
        )


@dataclass
class ReverseVerification:
    """The reverse reconcile plus every row the reverse stream quarantined.

    ``passed`` only if legacy equals Rune through the mappings, no quarantined row is left
    unexcluded and no Rune row of a reversible table lacks its legacy key: any of those is
    a write a rollback would lose.
    """

    report: ReconcileReport
    quarantined: list[dict[str, Any]]
    excluded: dict[str, int]
    rows_without_legacy_key: dict[str, int]

    @property
    def tables(self) -> list[Any]:
        return self.report.tables

    @property
    def failures(self) -> list[str]:
        out = []
        if not self.report.passed:
            rows = [(t.target, d) for t in self.tables for d in t.differences]
            named = ", ".join(f"{table} {d.source_key} ({d.kind})" for table, d in rows[:3])
            out.append(
                f"legacy differs from Rune: {self.report.totals()}"
                + (f", e.g. {named}" if named else "")
            )
        if self.quarantined:
            first = self.quarantined[0]
            out.append(
                f"{len(self.quarantined)} row(s) quarantined by the reverse follower and not "
                f"excluded by a rule, e.g. {first['target_table']} {first['source_key']}: "
                f"{first['reason']}"
            )
        for table, count in sorted(self.rows_without_legacy_key.items()):
            out.append(f"{count} {table} row(s) have no legacy key, so legacy cannot have them")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def status(self) -> str:
        if not self.passed:
            return "failed"
        return self.report.status

    def dedup_losers(self) -> dict[str, frozenset[int]]:
        """Per Rune table, the legacy keys the reconcile's dedup plan made losers (if any)."""
        return {t.target: t.dedup_losers for t in self.tables if t.dedup_losers}

    def totals(self) -> dict[str, int]:
        return {
            **self.report.totals(),
            "quarantined": len(self.quarantined),
            "quarantined_excluded": sum(self.excluded.values()),
            "without_legacy_key": sum(self.rows_without_legacy_key.values()),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.report.as_dict(),
            "status": self.status,
            "passed": self.passed,
            "totals": self.totals(),
            "reverse": {
                "failures": self.failures,
                "quarantined": [
                    {k: (str(v) if k == "at" else v) for k, v in row.items()}
                    for row in self.quarantined
                ],
                "quarantined_excluded_by_rule": dict(self.excluded),
                "rows_without_legacy_key": dict(self.rows_without_legacy_key),
            },
        }


def verify_reverse(
    settings: Settings,
    *,
    mappings: MappingSet | None = None,
    accept: Sequence[QuarantineRule] = (),
    keys: Mapping[str, Sequence[int]] | None = None,
) -> ReverseVerification:
    """Reconcile in the reverse direction: legacy (through the mappings) vs Rune.

    Call it after :func:`drain_reverse` with writes held. The reconcile alone cannot see a
    row the inverse quarantined (legacy lacks it, and Rune's row has no legacy key, so no
    side counts it as missing), so every quarantined row of the current stream is listed
    and fails verification unless a rule in ``accept`` names it, and Rune rows of the
    reversible tables without a legacy key are counted as failures too.

    With ``keys`` (per Rune table, legacy keys) the reconcile compares only those rows and
    the dedup losers it plans in the same snapshot: the rollback from soak verifies in full
    before holding writes, then under the hold only the rows changed since on either side,
    those the full pass found differing and its dedup losers (``dedup_losers()``: a loser's
    outcome can change while its row does not). The quarantine and missing-key checks always
    cover everything.
    """
    from reconcile.reconcile_run import ReconcileOptions, run_reconcile

    mappings = mappings or load_mappings()
    inverses = reversible_targets(mappings)
    tables = tuple(i.table for i in inverses)
    report = run_reconcile(
        settings,
        ReconcileOptions(
            tables=tables,
            settle_rounds=0,
            settle_timeout=0.0,
            quality=False,
            keys=keys,
            keyed_losers=keys is not None,
        ),
        mappings=mappings,
    )
    quarantined: list[dict[str, Any]] = []
    excluded: dict[str, int] = {}
    for writer in _writers(settings):
        try:
            writer.ensure_state()
            since = writer.stream_start(SLOT)
            for row in writer.quarantined(SLOT, 1_000_000, since_lsn=since):
                rule = next((r for r in accept if r.matches(row)), None)
                if rule is None:
                    quarantined.append(row)
                else:
                    excluded[rule.name] = excluded.get(rule.name, 0) + 1
        finally:
            writer.close()
    return ReverseVerification(report, quarantined, excluded, _rows_without_key(settings, inverses))


def _rows_without_key(settings: Settings, inverses: Sequence[InverseMapping]) -> dict[str, int]:
    """Rune rows of the reversible tables whose primary feed's legacy key is NULL."""
    out: dict[str, int] = {}
    with pg_connect(settings.require("postgres_url"), autocommit=True) as conn:
        for inv in inverses:
            holders = [h for _, h in inv.primary.key if h != "id"]
            if not holders:
                continue
            # rune.accounts also holds Shopify-only customers (a one-way feed): they never
            # had a legacy row, so a missing legacy key there is no loss.
            if any(f.one_way is not None for f in inv.feeds):
                continue
            schema, name = inv.table.split(".", 1)
            where = sql.SQL(" OR ").join(
                sql.SQL("{} IS NULL").format(sql.Identifier(h)) for h in holders
            )
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                    sql.Identifier(schema, name), where
                )
            ).fetchone()
            if row and row[0]:
                out[inv.table] = int(row[0])
    return out


__all__ = [
    "KEY_ALLOCATIONS",
    "PUBLICATION",
    "SLOT",
    "KeyAllocation",
    "LegacyBinlogMark",
    "LegacyWrites",
    "QuarantineRule",
    "ReverseFollower",
    "ReverseOptions",
    "ReversePrepared",
    "ReverseResult",
    "ReverseStatus",
    "ReverseVerification",
    "drain_reverse",
    "end_key_allocation",
    "finish_reverse",
    "prepare_reverse",
    "reverse_status",
    "reversible_targets",
    "run_reverse",
    "verify_reverse",
]
