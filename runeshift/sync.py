"""The catch-up follower: legacy binlogs -> the same mappings -> Rune, exactly once.

This module wires the components: one :class:`extract.binlog_reader.BinlogReader` thread
per legacy database decodes whole source transactions into a bounded queue (so decoding
overlaps applying); the main thread drains the queue in batches, folds each batch into
the net state per changed key, hands it to :class:`load.change_applier.ChangeApplier` and
commits the target changes together with every source's binlog position (and heartbeat
lag, and paused tables) in ONE Postgres transaction. A crash at any point leaves the
target at the last commit, positions included; the restart resumes from them and,
because applying is idempotent, converges with nothing lost or duplicated.

One follower is active per target: it holds a Postgres advisory lock for its whole life.
A second one waits as a standby, polling the lock, and takes over when the first dies
(its session ends, the lock goes with it). ``stop`` (SIGTERM in the CLI) drains: readers
stop at a transaction boundary, what is queued is applied and committed, then it exits.

DDL on a mapped source table is checked against the mapping by the drift guard; a table
that drifted is paused (its changes skipped and the pause recorded with the schema diff)
while the other tables keep flowing. The Shopify store is followed beside the binlogs
(``runeshift/shopify_follow.py``: its own thread, connection and checkpoints, plus the
optional webhook receiver) while this follower holds the lock; ``SyncOptions.shopify``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from extract.binlog_reader import BinlogReader, BinlogTransaction, RowChange
from extract.binlog_row_decoder import RawRow, RowDecoder
from extract.binlog_source_lookup import SourceLookup
from extract.mysql_source_schema import SourceTable
from extract.snapshot_reader import BinlogPosition
from load.change_applier import ChangeApplier, FeedChanges
from load.target_schema import current, head_revision
from runeshift import control_store
from runeshift.backfill import database_from_url
from runeshift.connections import pg_connect
from runeshift.errors import ConfigError, FatalError, RuneshiftError
from runeshift.heartbeat import HEARTBEAT_TABLE, HeartbeatWriter
from runeshift.settings import Settings
from runeshift.shopify_follow import follow_lag_seconds, start_shopify_follow
from runeshift.sync_metrics import SyncMetrics
from transform.mapping_drift import DriftFinding, check_drift
from transform.mapping_loader import load_mappings
from transform.mapping_spec import MappingSet

SYNC_LOCK = 0x52554E45_0005  # pg advisory lock key: one active follower per target
SOURCES = (("forums", "forums_url"), ("repo", "repo_url"))
MAX_BATCH_CHANGES = 5_000
MAX_BATCH_SECONDS = 0.05
QUEUE_TRANSACTIONS = 20_000
# Row changes decoded but not yet applied: bounds memory under a backlog (a row change is
# about 1 KB of Python objects) and how long a SIGTERM drain takes (everything queued is
# applied first), while keeping the readers a few batches ahead of the applier.
QUEUE_CHANGES = 20_000


@dataclass
class SyncOptions:
    until_caught_up: bool = False
    max_batch_changes: int = MAX_BATCH_CHANGES
    max_batch_seconds: float = MAX_BATCH_SECONDS
    heartbeat_interval: float = 0.5
    standby_poll_seconds: float = 0.5
    timeout_seconds: float | None = None
    # Decode each binlog in a forked child process (beside the applier, not under its GIL).
    decode_in_process: bool = True
    # Follow the Shopify store too (None: when shopify_base_url is set); webhooks on a port.
    shopify: bool | None = None
    shopify_poll_interval: float = 5.0
    shopify_webhook_port: int | None = None


@dataclass
class SyncResult:
    run_id: str
    status: str
    caught_up: bool
    positions: dict[str, dict[str, Any]]
    changes_applied: int
    transactions_applied: int
    seconds: float
    paused_tables: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    shopify: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        extra = {"shopify": self.shopify} if self.shopify is not None else {}
        return {
            **extra,
            "run_id": self.run_id,
            "status": self.status,
            "caught_up": self.caught_up,
            "positions": self.positions,
            "changes_applied": self.changes_applied,
            "transactions_applied": self.transactions_applied,
            "seconds": round(self.seconds, 3),
            "paused_tables": self.paused_tables,
            "metrics": self.metrics,
        }


@dataclass
class _Ended:
    source: str
    error: BaseException | None


@dataclass
class _Pause:
    source: str
    table: str
    statement: str
    findings: list[DriftFinding]
    position: BinlogPosition


def _decoders(
    mappings: MappingSet, source: str, schema: Mapping[str, SourceTable]
) -> dict[str, RowDecoder]:
    columns: dict[str, dict[str, None]] = {}
    for target in mappings.targets:
        for feed in target.feeds:
            if feed.source != source:
                continue
            table = schema.get(feed.table)
            if table is None:
                raise ConfigError(
                    f"{feed.where}: source table {feed.qualified} does not exist; run 'runeshift mappings check'"
                )
            wanted = columns.setdefault(feed.table, dict.fromkeys(table.primary_key))
            wanted.update(dict.fromkeys(feed.used_columns()))
    return {name: RowDecoder(schema[name], list(cols)) for name, cols in columns.items()}


def _drift_for(
    mappings: MappingSet, source: str, schema: Mapping[str, SourceTable], table: str | None = None
) -> dict[str, list[DriftFinding]]:
    found: dict[str, list[DriftFinding]] = {}
    for finding in check_drift(mappings, {source: schema}):
        if finding.kind == "unmapped_table":
            continue
        name = finding.table.split(".", 1)[1]
        if table is None or name == table:
            found.setdefault(name, []).append(finding)
    return found


class _ChangeBudget:
    """How many decoded row changes may wait in the queue; readers wait for room.

    A transaction larger than the whole budget still goes through when the queue is empty.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0
        self._room = threading.Condition()

    def take(self, changes: int, stop: threading.Event) -> None:
        with self._room:
            while self.queued and self.queued + changes > self.limit and not stop.is_set():
                self._room.wait(0.2)
            self.queued += changes

    def give(self, changes: int) -> None:
        with self._room:
            self.queued -= changes
            self._room.notify_all()


class _Stopped:
    """``threading.Event``'s ``is_set`` over a callable (the decoding child's stop)."""

    def __init__(self, check: Callable[[], bool]) -> None:
        self.is_set = check


class _PipeOut:
    """The child's end of the queue: transactions go down the pipe as plain tuples."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.reconnects = 0

    def put(self, item: Any, timeout: float | None = None) -> None:
        del timeout  # a full pipe blocks; the parent's relay thread always drains it
        if isinstance(item, _Ended):
            self._send.send(item)
            return
        txn, pauses = item
        changes = [(c.table, c.kind, c.before, c.after) for c in txn.changes]
        self._send.send(
            (
                txn.source,
                txn.position,
                changes,
                txn.ddl,
                txn.heartbeats,
                txn.timestamp,
                txn.from_reverse_writer,
                pauses,
                self.reconnects,
            )
        )


def _row_change(table: str, kind: Any, before: Any, after: Any) -> RowChange:
    return RowChange(table, kind, before, after)


def _picklable(exc: BaseException) -> BaseException:
    """The error as the parent can receive it (not every exception pickles)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return FatalError(f"{type(exc).__name__}: {exc}")
    return exc


class _SourceFollower:
    """One decoding thread (or process): binlog -> transactions on the shared queue."""

    def __init__(
        self,
        source: str,
        url: str,
        mappings: MappingSet,
        schema: dict[str, SourceTable],
        out: queue.Queue[Any],
        stop: threading.Event,
        paused: set[str],
        metrics: SyncMetrics,
        server_id: int,
        budget: _ChangeBudget | None = None,
    ) -> None:
        self.source = source
        self.budget: _ChangeBudget | None = budget or _ChangeBudget(QUEUE_CHANGES)
        self.process: multiprocessing.process.BaseProcess | None = None
        self.child_stop: Any = None
        self.url = url
        self.mappings = mappings
        self.schema = schema
        self.out = out
        self.stop = stop
        self.paused = paused
        self.metrics = metrics
        self.decoders = _decoders(mappings, source, schema)
        self.database = database_from_url(url, f"{source}_url")
        self.reader = BinlogReader(
            source,
            url,
            self.database,
            self.decoders,
            heartbeat_table=HEARTBEAT_TABLE,
            server_id=server_id,
            stop=stop.is_set,
            paused=lambda t: t in self.paused,
        )
        self.thread: threading.Thread | None = None

    def start(self, position: BinlogPosition, *, in_process: bool = False) -> None:
        """Decode on a thread, or in a forked child process (``in_process``).

        In a child the decoding (most of the follower's Python work) runs beside the applier
        instead of sharing its GIL; a relay thread here takes the child's transactions off a
        pipe (as plain tuples: a tenth of the cost of pickling dataclasses) onto the queue.
        """
        if not in_process:
            self.thread = threading.Thread(
                target=self._run, args=(position,), name=f"binlog-{self.source}", daemon=True
            )
            self.thread.start()
            return
        context = multiprocessing.get_context("fork")
        sys.stdout.flush()  # or the child flushes a copy of what is buffered when it exits
        sys.stderr.flush()
        receive, send = context.Pipe(duplex=False)
        self.child_stop = context.Event()
        self.process = context.Process(
            target=self._run_child,
            args=(position, send, receive, os.getpid()),
            name=f"binlog-{self.source}",
            daemon=True,
        )
        self.process.start()
        send.close()
        self.thread = threading.Thread(
            target=self._relay, args=(receive,), name=f"binlog-relay-{self.source}", daemon=True
        )
        self.thread.start()

    def finish(self) -> None:
        """Stop and reap the child process, if any (the caller has set ``stop``)."""
        if self.process is None:
            return
        assert self.child_stop is not None
        self.child_stop.set()
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if not self.process.is_alive():
            self.process.close()
        self.process = None

    def _run_child(self, position: BinlogPosition, send: Any, receive: Any, parent: int) -> None:
        # Runs in the forked child: the parent stops it (or dies: kill -9 leaves no one to).
        # Close the child's copy of the parent's end, or a send to a dead parent blocks
        # forever on a pipe that still has a reader (this very process).
        receive.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        child_stop = self.child_stop
        assert child_stop is not None

        def stopped() -> bool:
            return child_stop.is_set() or os.getppid() != parent

        self.stop = _Stopped(stopped)  # type: ignore[assignment]
        self.reader._stop = stopped
        self.budget = None  # the relay thread in the parent takes the budget
        self.out = _PipeOut(send)  # type: ignore[assignment]
        try:
            self._run(position)
        except OSError:
            pass  # the parent is gone (broken pipe): nothing left to tell
        finally:
            send.close()

    def _relay(self, receive: Any) -> None:
        """Parent side: child pipe -> budget -> the shared queue, until the child ends."""
        child_stop = self.child_stop
        try:
            while True:
                if self.stop.is_set():
                    child_stop.set()  # the child stops at its next transaction boundary
                try:
                    if not receive.poll(0.2):
                        continue
                    item = receive.recv()
                except (EOFError, OSError):
                    error = (
                        None
                        if self.stop.is_set()
                        else FatalError(
                            f"{self.source}: the binlog decoding process ended unexpectedly"
                        )
                    )
                    self._put(_Ended(self.source, error))
                    return
                if isinstance(item, _Ended):
                    self._put(item)
                    return
                source, position, changes, ddl, heartbeats, timestamp, reverse, pauses, n = item
                self.metrics.source(self.source).reconnects = n
                txn = BinlogTransaction(
                    source,
                    position,
                    [_row_change(*c) for c in changes],
                    ddl,
                    heartbeats,
                    timestamp,
                    reverse,
                )
                if self.budget is not None:
                    self.budget.take(len(txn.changes), self.stop)
                self._put((txn, pauses))
        finally:
            receive.close()

    def _put(self, item: Any) -> None:
        while True:
            try:
                self.out.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set() and not isinstance(item, _Ended):
                    continue

    def _run(self, position: BinlogPosition) -> None:
        lookup = SourceLookup(self.url, self.database)
        error: BaseException | None = None
        try:
            for txn in self.reader.transactions(position):
                if isinstance(self.out, _PipeOut):
                    # In the child no lock of the parent is touched: one held by another
                    # thread at fork time would stay held here forever.
                    self.out.reconnects = self.reader.reconnects
                else:
                    self.metrics.source(self.source).reconnects = self.reader.reconnects
                pauses: list[_Pause] = []
                for change in txn.ddl:
                    if change.table not in self.decoders or change.table in self.paused:
                        continue
                    schema = lookup.schema()
                    drift = _drift_for(self.mappings, self.source, schema, change.table)
                    if drift.get(change.table):
                        self.paused.add(change.table)
                        pauses.append(
                            _Pause(
                                self.source,
                                change.table,
                                change.statement,
                                drift[change.table],
                                txn.position,
                            )
                        )
                    elif change.table in schema:
                        old = self.decoders[change.table]
                        self.decoders[change.table] = RowDecoder(schema[change.table], old.names)
                        self.reader.decoders[change.table] = self.decoders[change.table]
                if self.budget is not None:
                    self.budget.take(len(txn.changes), self.stop)
                self._put((txn, pauses))
        except BaseException as exc:
            error = exc if self.process is None else _picklable(exc)
        finally:
            lookup.close()
            self._put(_Ended(self.source, error))


def run_sync(
    settings: Settings,
    *,
    options: SyncOptions | None = None,
    stop: threading.Event | None = None,
    metrics: SyncMetrics | None = None,
    mappings: MappingSet | None = None,
    on_batch: Callable[[SyncMetrics], None] | None = None,
) -> SyncResult:
    """Follow both legacy binlogs into the target until ``stop`` is set (or caught up).

    Returns when ``stop`` is set (after draining and committing), when
    ``options.until_caught_up`` and every source has applied a heartbeat written after
    start, or raises when a source fails for good (purged binlog, ...).
    """
    options = options or SyncOptions()
    stop = stop or threading.Event()
    metrics = metrics or SyncMetrics()
    mappings = mappings or load_mappings()
    pg_url = settings.require("postgres_url")
    at = current(pg_url)
    if at != head_revision():
        raise ConfigError(
            f"the target schema is at {at or 'nothing'}, not {head_revision()}; run 'runeshift schema upgrade'"
        )
    lock_conn = pg_connect(pg_url, autocommit=True)
    unfinished = control_store.tables_missing_keys(lock_conn)
    if unfinished:
        lock_conn.close()
        raise ConfigError(
            f"the backfill of {', '.join(unfinished)} is not finished: their key constraints "
            "are built when it ends; run 'runeshift backfill' to finish it, then 'runeshift sync'"
        )
    started = time.monotonic()
    try:
        metrics.role = "standby"
        while True:
            row = lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (SYNC_LOCK,)).fetchone()
            if row and row[0]:
                break
            if stop.wait(options.standby_poll_seconds):
                return SyncResult("", "stopped", False, {}, 0, 0, time.monotonic() - started)
        metrics.role = "active"
        shopify = start_shopify_follow(
            settings,
            mappings,
            enabled=options.shopify,
            poll_interval=options.shopify_poll_interval,
            webhook_port=options.shopify_webhook_port,
            on_failure=stop.set,
        )
        try:
            result = _follow(settings, options, stop, metrics, mappings, pg_url, on_batch, started)
            if shopify is not None:
                wait = options.until_caught_up and result.caught_up
                result.shopify = shopify.finish(wait=wait, timeout=options.timeout_seconds or 120)
                result.caught_up = result.caught_up and (not wait or result.shopify["caught_up"])
                if shopify.follower.error is not None:
                    raise FatalError(
                        f"the Shopify follower stopped: {result.shopify['error']}; the binlog "
                        "catch-up stopped with it (its positions are committed); fix the cause "
                        "and restart 'runeshift sync' (or run it with --no-shopify)"
                    ) from shopify.follower.error
            return result
        finally:
            if shopify is not None:
                shopify.stop()
    finally:
        metrics.role = "stopped"
        lock_conn.close()


def _follow(
    settings: Settings,
    options: SyncOptions,
    stop: threading.Event,
    metrics: SyncMetrics,
    mappings: MappingSet,
    pg_url: str,
    on_batch: Callable[[SyncMetrics], None] | None,
    started: float,
) -> SyncResult:
    conn = pg_connect(pg_url)
    urls = {source: settings.require(setting) for source, setting in SOURCES}
    lookups = {s: SourceLookup(u, database_from_url(u, f"{s}_url")) for s, u in urls.items()}
    schemas = {s: lookup.schema() for s, lookup in lookups.items()}
    positions: dict[str, BinlogPosition] = {}
    for source in urls:
        stored = control_store.get_position(conn, source)
        if stored is None:
            raise ConfigError(
                f"no binlog position recorded for '{source}'; run 'runeshift backfill' first"
            )
        positions[source] = BinlogPosition(
            str(stored["file"]), int(stored["position"]), str(stored.get("gtid", ""))
        )
    paused = _load_paused(conn, mappings, schemas)
    conn.commit()
    run_id = control_store.start_run(
        conn, "sync", {"until_caught_up": options.until_caught_up}, mappings.checksum
    )
    heart = HeartbeatWriter(urls, interval=options.heartbeat_interval)
    heart.ensure_tables()
    work: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_TRANSACTIONS)
    budget = _ChangeBudget(QUEUE_CHANGES)
    reader_stop = threading.Event()
    followers = {
        source: _SourceFollower(
            source,
            url,
            mappings,
            schemas[source],
            work,
            reader_stop,
            paused[source],
            metrics,
            server_id=_server_id(source),
            budget=budget,
        )
        for source, url in urls.items()
    }
    decoders = {
        (source, table): dec for source, f in followers.items() for table, dec in f.decoders.items()
    }
    applier = ChangeApplier(conn, mappings, decoders, lookups, run_id=run_id)
    applier.paused = {(s, t) for s, tables in paused.items() for t in tables}
    applier.prepare()
    conn.commit()
    metrics.paused_tables = sorted(f"{s}.{t}" for s, t in applier.paused)
    status = "failed"
    caught_up = False
    totals = [0, 0]
    applied_seq: dict[str, int | None] = dict.fromkeys(urls)
    ended: set[str] = set()
    failure: BaseException | None = None
    try:
        for source, follower in followers.items():
            follower.start(positions[source], in_process=options.decode_in_process)
        heart.start()
        while len(ended) < len(followers):
            if stop.is_set():
                reader_stop.set()
            if options.timeout_seconds and time.monotonic() - started > options.timeout_seconds:
                reader_stop.set()
            batch, done, error = _drain(work, options, budget)
            ended |= done
            if error is not None and failure is None:
                failure = error
                reader_stop.set()
            metrics.queue_depth = work.qsize()
            if batch:
                _apply_batch(conn, applier, batch, positions, heart, applied_seq, metrics, totals)
                if on_batch is not None:
                    on_batch(metrics)
            _refresh_lag_floor(heart, applied_seq, metrics)
            if (
                options.until_caught_up
                and not caught_up
                and all(s is not None and s >= heart.first_seq for s in applied_seq.values())
                and applier.unsettled_retries() == 0
            ):
                caught_up = True
                reader_stop.set()
        if failure is not None:
            raise failure
        status = "stopped" if stop.is_set() or not options.until_caught_up else "caught_up"
        if options.until_caught_up and caught_up:
            status = "caught_up"
    finally:
        reader_stop.set()
        for follower in followers.values():
            follower.finish()
        heart.stop()
        for lookup in lookups.values():
            lookup.close()
        conn.rollback()
        result = SyncResult(
            run_id,
            status,
            caught_up,
            {s: p.as_dict() for s, p in positions.items()},
            totals[0],
            totals[1],
            time.monotonic() - started,
            _paused_rows(conn),
            metrics.snapshot(),
        )
        run_status = "failed" if status == "failed" else "succeeded"
        control_store.finish_run(conn, run_id, run_status, result.as_dict())
        conn.close()
    return result


def _server_id(source: str) -> int:
    # Every binlog client needs a server id unique on the server; derive one per process+source.
    return 100_000 + (os.getpid() % 50_000) * 2 + (0 if source == "forums" else 1)


def _drain(
    work: queue.Queue[Any], options: SyncOptions, budget: _ChangeBudget
) -> tuple[list[tuple[BinlogTransaction, list[_Pause]]], set[str], BaseException | None]:
    """Take up to a batch of transactions: wait briefly for the first, then whatever is ready."""
    batch: list[tuple[BinlogTransaction, list[_Pause]]] = []
    ended: set[str] = set()
    error: BaseException | None = None
    changes = 0
    deadline = time.monotonic() + options.max_batch_seconds
    while changes < options.max_batch_changes:
        timeout = 0.1 if not batch else max(0.0, deadline - time.monotonic())
        try:
            item = work.get(timeout=timeout) if timeout > 0 else work.get_nowait()
        except queue.Empty:
            break
        if isinstance(item, _Ended):
            ended.add(item.source)
            if item.error is not None and error is None:
                error = item.error
            continue
        batch.append(item)
        changes += len(item[0].changes)
        budget.give(len(item[0].changes))
        if item[1]:
            break  # a pause ends the batch so the skip starts exactly there
    return batch, ended, error


def _apply_batch(
    conn: psycopg.Connection[Any],
    applier: ChangeApplier,
    batch: list[tuple[BinlogTransaction, list[_Pause]]],
    positions: dict[str, BinlogPosition],
    heart: HeartbeatWriter,
    applied_seq: dict[str, int | None],
    metrics: SyncMetrics,
    totals: list[int],
) -> None:
    net: dict[tuple[str, str], FeedChanges] = {}
    per_source: dict[str, list[int]] = {}
    seen_seq: dict[str, int] = {}
    pauses: list[_Pause] = []
    for txn, txn_pauses in batch:
        counts = per_source.setdefault(txn.source, [0, 0])
        counts[0] += len(txn.changes)
        counts[1] += 1
        _fold(txn.source, txn.changes, applier, net)
        if txn.heartbeats:
            seen_seq[txn.source] = max(txn.heartbeats)
        positions[txn.source] = txn.position
        pauses.extend(txn_pauses)
    for pause in pauses:
        applier.paused.add((pause.source, pause.table))
        net.pop((pause.source, pause.table), None)
    stats = applier.apply(net)
    for source in per_source:
        control_store.set_position(conn, source, "binlog", positions[source].as_dict(), "sync")
    for pause in pauses:
        conn.execute(
            "INSERT INTO runeshift.sync_paused_tables (source, source_table, statement, findings, position) "
            "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (source, source_table) DO UPDATE SET "
            "statement = EXCLUDED.statement, findings = EXCLUDED.findings, position = EXCLUDED.position, "
            "paused_at = now()",
            (
                pause.source,
                pause.table,
                pause.statement[:4000],
                Jsonb([f.as_dict() for f in pause.findings]),
                Jsonb(pause.position.as_dict()),
            ),
        )
    lags: dict[str, float] = {}
    now = time.monotonic()
    for source, seq in seen_seq.items():
        written = heart.written_at(seq)
        if written is not None:
            lags[source] = now - written
    for source, (n_changes, n_txns) in per_source.items():
        conn.execute(
            "INSERT INTO runeshift.sync_state (source, heartbeat_seq, heartbeat_lag_ms, heartbeat_applied_at, "
            "changes_applied, transactions_applied, follower, updated_at) VALUES (%s,%s,%s,"
            "CASE WHEN %s::bigint IS NULL THEN NULL ELSE now() END,%s,%s,%s, now()) "
            "ON CONFLICT (source) DO UPDATE SET "
            "heartbeat_seq = coalesce(EXCLUDED.heartbeat_seq, runeshift.sync_state.heartbeat_seq), "
            "heartbeat_lag_ms = coalesce(EXCLUDED.heartbeat_lag_ms, runeshift.sync_state.heartbeat_lag_ms), "
            "heartbeat_applied_at = coalesce(EXCLUDED.heartbeat_applied_at, runeshift.sync_state.heartbeat_applied_at), "
            "changes_applied = runeshift.sync_state.changes_applied + EXCLUDED.changes_applied, "
            "transactions_applied = runeshift.sync_state.transactions_applied + EXCLUDED.transactions_applied, "
            "follower = EXCLUDED.follower, updated_at = now()",
            (
                source,
                seen_seq.get(source),
                lags[source] * 1000 if source in lags else None,
                seen_seq.get(source),
                n_changes,
                n_txns,
                f"{socket.gethostname()}:{os.getpid()}",
            ),
        )
    conn.commit()
    done = time.monotonic()
    for source, seq in seen_seq.items():
        applied_seq[source] = seq
        written = heart.written_at(seq)
        if written is not None:
            metrics.record_lag(source, done - written)
    for p in pauses:
        metrics.paused_tables = sorted({*metrics.paused_tables, f"{p.source}.{p.table}"})
    totals[0] += sum(c[0] for c in per_source.values())
    totals[1] += sum(c[1] for c in per_source.values())
    metrics.record_batch(
        {s: (c[0], c[1], _pos_text(positions[s])) for s, c in per_source.items()},
        stats.upserted + stats.deleted,
        stats.quarantined,
    )


def _fold(
    source: str,
    changes: list[RowChange],
    applier: ChangeApplier,
    net: dict[tuple[str, str], FeedChanges],
) -> None:
    """Fold one transaction's row changes into the net state per key (the hot loop)."""
    tables: dict[str, tuple[Callable[[RawRow], tuple[bytes | None, ...]], FeedChanges]] = {}
    for change in changes:
        entry = tables.get(change.table)
        if entry is None:
            feed = net.get((source, change.table))
            if feed is None:
                feed = net[(source, change.table)] = FeedChanges()
            entry = tables[change.table] = (applier.decoders[(source, change.table)].key, feed)
        key, feed = entry
        before, after = change.before, change.after
        if after is None:
            if before is not None:
                feed.delete(key(before), before)
        elif before is None:
            feed.upsert(key(after), after)
        else:
            old_key, new_key = key(before), key(after)
            if old_key != new_key:
                feed.delete(old_key, before)
                feed.upsert(new_key, after)
            else:
                feed.upsert(new_key, after, before)


def _refresh_lag_floor(
    heart: HeartbeatWriter, applied_seq: dict[str, int | None], metrics: SyncMetrics
) -> None:
    """While a written heartbeat is still unseen, the lag is at least its age."""
    now = time.monotonic()
    for source, seq in applied_seq.items():
        written = heart.oldest_unseen_after(seq)
        if written is None:
            continue
        floor = now - written
        m = metrics.source(source)
        if m.lag_seconds is None or floor > m.lag_seconds:
            m.lag_seconds = floor


def _pos_text(p: BinlogPosition) -> str:
    return f"{p.file}:{p.position}"


def _load_paused(
    conn: psycopg.Connection[Any],
    mappings: MappingSet,
    schemas: Mapping[str, Mapping[str, SourceTable]],
) -> dict[str, set[str]]:
    """Tables paused earlier stay paused until re-snapshotted with no drift left."""
    paused: dict[str, set[str]] = {s: set() for s in schemas}
    rows = conn.execute(
        "SELECT p.source, p.source_table, p.paused_at, sp.recorded_by, sp.updated_at "
        "FROM runeshift.sync_paused_tables p LEFT JOIN runeshift.source_positions sp USING (source)"
    ).fetchall()
    for source, table, paused_at, recorded_by, updated_at in rows:
        drift = _drift_for(mappings, source, schemas[source], table) if source in schemas else {}
        resnapshotted = (
            recorded_by == "backfill" and updated_at is not None and updated_at > paused_at
        )
        if resnapshotted and not drift.get(table):
            conn.execute(
                "DELETE FROM runeshift.sync_paused_tables WHERE source = %s AND source_table = %s",
                (source, table),
            )
        else:
            paused.setdefault(source, set()).add(table)
    for source, schema in schemas.items():
        for table in _drift_for(mappings, source, schema):
            paused[source].add(table)
    return paused


def _paused_rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    try:
        rows = conn.execute(
            "SELECT source, source_table, statement, findings, position, paused_at "
            "FROM runeshift.sync_paused_tables ORDER BY source, source_table"
        ).fetchall()
        conn.rollback()
    except psycopg.Error:
        conn.rollback()
        return []
    return [
        {
            "table": f"{r[0]}.{r[1]}",
            "statement": r[2],
            "findings": r[3],
            "position": r[4],
            "paused_at": r[5].isoformat(),
            "remedy": f"fix mappings for {r[0]}.{r[1]} (runeshift mappings check), then "
            f"'runeshift backfill --tables {r[0]}.{r[1]}' and restart 'runeshift sync'",
        }
        for r in rows
    ]


@dataclass
class SyncStatus:
    active: bool
    sources: list[dict[str, Any]]
    paused_tables: list[dict[str, Any]]
    last_run: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "active_follower": self.active,
            "sources": self.sources,
            "paused_tables": self.paused_tables,
            "last_run": self.last_run,
        }


def sync_status(settings: Settings) -> SyncStatus:
    """Lag, position and rates per source as the target records them (clock-free lag)."""
    conn = pg_connect(settings.require("postgres_url"), autocommit=True)
    try:
        held = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            (SYNC_LOCK,),
        ).fetchone()
        rows = conn.execute(
            "SELECT sp.source, sp.position, sp.recorded_by, sp.updated_at, ss.heartbeat_lag_ms, "
            "ss.heartbeat_applied_at, extract(epoch FROM now() - ss.heartbeat_applied_at), "
            "ss.changes_applied, ss.transactions_applied, ss.follower "
            "FROM runeshift.source_positions sp LEFT JOIN runeshift.sync_state ss USING (source) "
            "ORDER BY sp.source"
        ).fetchall()
        last = conn.execute(
            "SELECT id::text, status, started_at, finished_at, summary FROM runeshift.runs "
            "WHERE command = 'sync' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        sources = []
        for r in rows:
            summary = (last[4] or {}) if last else {}
            rate = None
            metrics = (summary.get("metrics") or {}) if isinstance(summary, dict) else {}
            if metrics:
                rate = metrics.get("changes_per_second")
            lag = None if r[4] is None else round(float(r[4]) / 1000, 3)
            if str(r[0]).startswith("shopify:"):
                lag = follow_lag_seconds(r[1])  # a store stream: the age of its checkpoint
            sources.append(
                {
                    "source": r[0],
                    "position": r[1],
                    "recorded_by": r[2],
                    "position_updated_at": r[3].isoformat() if r[3] else None,
                    "lag_seconds": lag,
                    "lag_measured_seconds_ago": None if r[6] is None else round(float(r[6]), 3),
                    "changes_applied": r[7] or 0,
                    "transactions_applied": r[8] or 0,
                    "follower": r[9],
                    "last_run_changes_per_second": rate,
                }
            )
        paused = _paused_rows(conn)
        last_run = (
            {
                "run_id": last[0],
                "status": last[1],
                "started_at": last[2].isoformat(),
                "finished_at": last[3].isoformat() if last[3] else None,
            }
            if last
            else None
        )
        return SyncStatus(bool(held and held[0]), sources, paused, last_run)
    finally:
        conn.close()


__all__ = [
    "FatalError",
    "RuneshiftError",
    "SyncOptions",
    "SyncResult",
    "SyncStatus",
    "run_sync",
    "sync_status",
]
