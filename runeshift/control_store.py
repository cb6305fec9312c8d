"""runeshift's own state in the ``runeshift`` Postgres schema.

Design note: every write here that describes data (a loaded chunk, a
quarantined row, an exclusion count, a source position) is made on the
caller's connection inside the caller's transaction, so state and data commit
or vanish together; that is what makes ``kill -9`` safe. Runs are the only
records written in their own transactions (they describe the process, not
the data).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.types.json import Jsonb

from runeshift import __version__
from runeshift.errors import ConfigError
from transform.mapping_engine import MappedBatch, QuarantinedRow, null_id_references


def start_run(
    conn: psycopg.Connection[Any], command: str, args: Mapping[str, Any], mapping_checksum: str
) -> str:
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO runeshift.runs (command, status, tool_version, mapping_checksum, host, invoked_by, args) "
            "VALUES (%s, 'running', %s, %s, %s, %s, %s) RETURNING id::text",
            (
                command,
                __version__,
                mapping_checksum,
                socket.gethostname(),
                _who(),
                Jsonb(dict(args)),
            ),
        ).fetchone()
    assert row is not None
    return str(row[0])


def finish_run(
    conn: psycopg.Connection[Any], run_id: str, status: str, summary: Mapping[str, Any]
) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE runeshift.runs SET status = %s, finished_at = now(), summary = %s WHERE id = %s",
            (status, Jsonb(json.loads(json.dumps(summary, default=str))), run_id),
        )


def _who() -> str:
    try:
        return os.environ.get("RUNESHIFT_OPERATOR") or getpass.getuser()
    except OSError:
        return "unknown"


def unfinished_backfill(conn: psycopg.Connection[Any]) -> str | None:
    """The backfill id of the newest backfill run that did not succeed, if any."""
    row = conn.execute(
        "SELECT args->>'backfill_id', status FROM runeshift.runs WHERE command = 'backfill' "
        "ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    if row is None or row[1] == "succeeded":
        return None
    return str(row[0]) if row[0] else None


@dataclass(frozen=True)
class ChunkProgress:
    chunks: int
    last_key: list[Any] | None
    read: int
    migrated: int
    excluded: int
    quarantined: int


def chunk_progress(
    conn: psycopg.Connection[Any], backfill_id: str, source: str, table: str
) -> ChunkProgress:
    row = conn.execute(
        "SELECT count(*), coalesce(sum(rows_read),0), coalesce(sum(rows_migrated),0), "
        "coalesce(sum(rows_excluded),0), coalesce(sum(rows_quarantined),0) "
        "FROM runeshift.backfill_chunks WHERE backfill_id = %s AND source = %s AND source_table = %s "
        "AND status = 'loaded'",
        (backfill_id, source, table),
    ).fetchone()
    assert row is not None
    last = conn.execute(
        "SELECT upper_key FROM runeshift.backfill_chunks WHERE backfill_id = %s AND source = %s "
        "AND source_table = %s AND status = 'loaded' ORDER BY chunk_no DESC LIMIT 1",
        (backfill_id, source, table),
    ).fetchone()
    return ChunkProgress(
        int(row[0]), last[0] if last else None, int(row[1]), int(row[2]), int(row[3]), int(row[4])
    )


def record_chunk(
    conn: psycopg.Connection[Any],
    *,
    backfill_id: str,
    source: str,
    table: str,
    chunk_no: int,
    lower_key: list[Any] | None,
    upper_key: list[Any],
    read: int,
    migrated: int,
    excluded: int,
    quarantined: int,
    checksum: str,
    staged_path: str,
) -> None:
    conn.execute(
        "INSERT INTO runeshift.backfill_chunks (backfill_id, source, source_table, chunk_no, lower_key, "
        "upper_key, status, rows_read, rows_migrated, rows_excluded, rows_quarantined, checksum, staged_path, "
        "loaded_at) VALUES (%s,%s,%s,%s,%s,%s,'loaded',%s,%s,%s,%s,%s,%s, now()) "
        "ON CONFLICT (backfill_id, source, source_table, chunk_no) DO UPDATE SET status = 'loaded', "
        "upper_key = EXCLUDED.upper_key, rows_read = EXCLUDED.rows_read, rows_migrated = EXCLUDED.rows_migrated, "
        "rows_excluded = EXCLUDED.rows_excluded, rows_quarantined = EXCLUDED.rows_quarantined, "
        "checksum = EXCLUDED.checksum, staged_path = EXCLUDED.staged_path, loaded_at = now()",
        (
            backfill_id,
            source,
            table,
            chunk_no,
            Jsonb(lower_key),
            Jsonb(upper_key),
            read,
            migrated,
            excluded,
            quarantined,
            checksum,
            staged_path,
        ),
    )


def quarantine_rows(
    conn: psycopg.Connection[Any],
    rows: Iterable[QuarantinedRow],
    *,
    run_id: str | None,
    source: str,
    source_table: str,
    target_table: str,
) -> int:
    """Record quarantined rows, one statement for the lot; a row seen before gets the new reason.

    A key listed twice keeps its last entry, as row-by-row upserts would (the chunk of a
    million-row backfill quarantined about 700 rows; one statement per row kept its
    writer waiting on Postgres for 6% of the run).
    """
    listed = list(rows)
    latest = {str(r.source_key): r for r in listed}
    if not latest:
        return 0
    # One JSON document for the lot: psycopg renders text[] parameters element by element
    # in Python (a third of the writer's time at a million licenses), json.dumps in C.
    # Read as json, each raw row made jsonb on its own: a chunk's 540 orphan licenses
    # took Postgres 6 ms this way against 9 ms parsing the whole document as jsonb.
    document = json.dumps(
        [
            {"key": key, "rule": r.rule, "reason": r.reason, "raw": r.raw_row}
            for key, r in latest.items()
        ],
        default=str,
    )
    conn.execute(
        "INSERT INTO runeshift.quarantine (run_id, source, source_table, source_key, target_table, "
        "rule, reason, raw_row) "
        "SELECT %s, %s, %s, u.key, %s, u.rule, u.reason, u.raw::jsonb "
        "FROM json_to_recordset(%s::json) AS u(key text, rule text, reason text, raw json) "
        "ON CONFLICT (source, source_table, source_key, target_table) DO UPDATE SET rule = EXCLUDED.rule, "
        "reason = EXCLUDED.reason, raw_row = EXCLUDED.raw_row, run_id = EXCLUDED.run_id, "
        "last_seen = now(), resolved_at = NULL",
        (run_id, source, source_table, target_table, document),
    )
    return len(listed)


def resolve_quarantine(
    conn: psycopg.Connection[Any],
    *,
    source: str,
    source_table: str,
    target_table: str,
    keys: Iterable[str],
) -> None:
    """Rows that now migrate cleanly leave quarantine (marked resolved, kept for the audit trail)."""
    conn.execute(
        "UPDATE runeshift.quarantine SET resolved_at = now() WHERE source = %s AND source_table = %s "
        "AND target_table = %s AND source_key = ANY(%s) AND resolved_at IS NULL",
        (source, source_table, target_table, list(keys)),
    )


def reset_exclusions(
    conn: psycopg.Connection[Any], source: str, source_table: str, target_table: str
) -> None:
    conn.execute(
        "UPDATE runeshift.exclusions SET row_count = 0, updated_at = now() WHERE source = %s "
        "AND source_table = %s AND target_table = %s",
        (source, source_table, target_table),
    )


def add_exclusions(
    conn: psycopg.Connection[Any],
    counts: Mapping[str, int],
    reasons: Mapping[str, str],
    *,
    run_id: str | None,
    source: str,
    source_table: str,
    target_table: str,
) -> None:
    for rule, count in counts.items():
        conn.execute(
            "INSERT INTO runeshift.exclusions (source, source_table, target_table, rule, reason, row_count, "
            "last_run_id) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (source, source_table, target_table, rule) "
            "DO UPDATE SET row_count = runeshift.exclusions.row_count + EXCLUDED.row_count, "
            "reason = EXCLUDED.reason, last_run_id = EXCLUDED.last_run_id, updated_at = now()",
            (source, source_table, target_table, rule, reasons.get(rule, rule), count, run_id),
        )


def set_position(
    conn: psycopg.Connection[Any],
    source: str,
    kind: str,
    position: Mapping[str, Any],
    recorded_by: str,
) -> None:
    conn.execute(
        "INSERT INTO runeshift.source_positions (source, kind, position, recorded_by) VALUES (%s,%s,%s,%s) "
        "ON CONFLICT (source) DO UPDATE SET kind = EXCLUDED.kind, position = EXCLUDED.position, "
        "recorded_by = EXCLUDED.recorded_by, updated_at = now()",
        (source, kind, Jsonb(dict(position)), recorded_by),
    )


def get_position(conn: psycopg.Connection[Any], source: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT position FROM runeshift.source_positions WHERE source = %s", (source,)
    ).fetchone()
    return dict(row[0]) if row else None


def replace_dedup_decisions(
    conn: psycopg.Connection[Any],
    source_table: str,
    rule: str,
    decisions: Iterable[tuple[str, str, str, str]],
) -> None:
    """Store (contested value, winner key, loser key, action) for one rule, replacing earlier ones."""
    conn.execute(
        "DELETE FROM runeshift.dedup_decisions WHERE source_table = %s AND rule = %s",
        (source_table, rule),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO runeshift.dedup_decisions (source_table, key, winner_source_key, loser_source_key, "
            "rule, action) VALUES (%s,%s,%s,%s,%s,%s)",
            [
                (source_table, key, winner, loser, rule, action)
                for key, winner, loser, action in decisions
            ],
        )


def remember_webhook_event(conn: psycopg.Connection[Any], event_id: str, topic: str) -> bool:
    """Record an accepted webhook event id; False when it was recorded before (a duplicate)."""
    row = conn.execute(
        "INSERT INTO runeshift.shopify_webhook_events (event_id, topic) VALUES (%s, %s) "
        "ON CONFLICT (event_id) DO NOTHING RETURNING 1",
        (event_id, topic),
    ).fetchone()
    return row is not None


def forget_webhook_events(conn: psycopg.Connection[Any], older_than: timedelta) -> int:
    """Delete webhook event ids received more than ``older_than`` ago; returns how many."""
    return conn.execute(
        "DELETE FROM runeshift.shopify_webhook_events WHERE received_at < now() - %s",
        (older_than,),
    ).rowcount


def move_exclusions(
    conn: psycopg.Connection[Any],
    deltas: Mapping[str, int],
    reasons: Mapping[str, str],
    *,
    run_id: str | None,
    source: str,
    source_table: str,
    target_table: str,
) -> None:
    """Add (or, negative, take away) rows counted under exclusion rules; never below zero."""
    for rule, delta in deltas.items():
        if delta == 0:
            continue
        conn.execute(
            "INSERT INTO runeshift.exclusions (source, source_table, target_table, rule, reason, row_count, "
            "last_run_id) VALUES (%s,%s,%s,%s,%s,GREATEST(0, %s),%s) "
            "ON CONFLICT (source, source_table, target_table, rule) DO UPDATE SET "
            "row_count = GREATEST(0, runeshift.exclusions.row_count + %s), "
            "last_run_id = EXCLUDED.last_run_id, updated_at = now()",
            (
                source,
                source_table,
                target_table,
                rule,
                reasons.get(rule, rule),
                delta,
                run_id,
                delta,
            ),
        )


@dataclass(frozen=True)
class BackfillReach:
    """How far the latest backfill of a source table read: its id and highest numeric key."""

    backfill_id: str
    high_key: int | None


def backfill_reach(
    conn: psycopg.Connection[Any], source: str, source_table: str
) -> BackfillReach | None:
    """The latest backfill of ``source`` and the highest numeric key it loaded of ``source_table``."""
    latest = conn.execute(
        "SELECT backfill_id FROM runeshift.backfill_chunks WHERE source = %s AND status = 'loaded' "
        "ORDER BY loaded_at DESC LIMIT 1",
        (source,),
    ).fetchone()
    if latest is None:
        return None
    row = conn.execute(
        "SELECT max((upper_key->>0)::numeric) FROM runeshift.backfill_chunks WHERE backfill_id = %s "
        "AND source = %s AND source_table = %s AND status = 'loaded' AND upper_key->>0 ~ '^[0-9]+$'",
        (latest[0], source, source_table),
    ).fetchone()
    high = None if row is None or row[0] is None else int(row[0])
    return BackfillReach(str(latest[0]), high)


def unresolved_quarantine_keys(
    conn: psycopg.Connection[Any],
    *,
    source: str,
    source_table: str,
    target_table: str,
    keys: Iterable[str],
) -> set[str]:
    """Which of ``keys`` sit in quarantine, unresolved."""
    rows = conn.execute(
        "SELECT source_key FROM runeshift.quarantine WHERE source = %s AND source_table = %s "
        "AND target_table = %s AND source_key = ANY(%s) AND resolved_at IS NULL",
        (source, source_table, target_table, list(keys)),
    ).fetchall()
    return {str(r[0]) for r in rows}


@dataclass(frozen=True)
class ExcludedKey:
    """A source row a follower counts under ``rule`` (None: known, counted under none)."""

    source_key: str
    record_key: str
    rule: str | None


def excluded_keys(
    conn: psycopg.Connection[Any],
    *,
    source: str,
    source_table: str,
    target_table: str,
    backfill_id: str,
    keys: Iterable[str] = (),
    record_keys: Iterable[str] = (),
) -> dict[str, ExcludedKey]:
    """Recorded rows with these source keys or belonging to these records, by source key."""
    rows = conn.execute(
        "SELECT source_key, record_key, rule FROM runeshift.excluded_keys WHERE source = %s "
        "AND source_table = %s AND target_table = %s AND backfill_id = %s "
        "AND (source_key = ANY(%s) OR record_key = ANY(%s))",
        (source, source_table, target_table, backfill_id, list(keys), list(record_keys)),
    ).fetchall()
    return {str(k): ExcludedKey(str(k), str(r), rule) for k, r, rule in rows}


def record_excluded_keys(
    conn: psycopg.Connection[Any],
    rows: Iterable[ExcludedKey],
    *,
    source: str,
    source_table: str,
    target_table: str,
    backfill_id: str,
) -> None:
    """Record (replace) the rule each of ``rows`` is counted under, for ``backfill_id``."""
    params = [
        (source, source_table, target_table, r.source_key, r.record_key, r.rule, backfill_id)
        for r in rows
    ]
    if not params:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO runeshift.excluded_keys (source, source_table, target_table, source_key, "
            "record_key, rule, backfill_id) VALUES (%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (source, source_table, target_table, source_key) DO UPDATE SET "
            "record_key = EXCLUDED.record_key, rule = EXCLUDED.rule, "
            "backfill_id = EXCLUDED.backfill_id, updated_at = now()",
            params,
        )


def forget_excluded_keys_before(
    conn: psycopg.Connection[Any], source: str, backfill_id: str
) -> None:
    """Drop recorded rows of backfills older than ``backfill_id`` (its counts start afresh)."""
    conn.execute(
        "DELETE FROM runeshift.excluded_keys WHERE source = %s AND backfill_id <> %s",
        (source, backfill_id),
    )


def copy_excluded_keys(
    conn: psycopg.Connection[Any],
    keys: Sequence[str],
    rules: Sequence[str],
    *,
    source: str,
    source_table: str,
    target_table: str,
    backfill_id: str,
) -> None:
    """Record the keys a backfill chunk excluded, each under its rule (the row is its record).

    One COPY: a chunk of a mostly excluded table names as many keys as rows, and one
    INSERT per key (``record_excluded_keys``) cost more than the chunk's own load. The
    backfill forgets a table's keys when it starts the table and its chunks never
    overlap, so a key is never recorded twice.
    """
    if not keys:
        return
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY runeshift.excluded_keys (source, source_table, target_table, source_key, "
            "record_key, rule, backfill_id) FROM STDIN"
        ) as copy,
    ):
        for key, rule in zip(keys, rules, strict=True):
            copy.write_row((source, source_table, target_table, key, key, rule, backfill_id))


def forget_excluded_keys(
    conn: psycopg.Connection[Any],
    *,
    source: str,
    source_table: str,
    target_table: str,
    keys: Iterable[str] | None = None,
) -> None:
    """Forget recorded keys of one table (``keys``; None: all of them, a backfill starting it)."""
    if keys is None:
        conn.execute(
            "DELETE FROM runeshift.excluded_keys WHERE source = %s AND source_table = %s "
            "AND target_table = %s",
            (source, source_table, target_table),
        )
        return
    wanted = list(keys)
    if wanted:
        conn.execute(
            "DELETE FROM runeshift.excluded_keys WHERE source = %s AND source_table = %s "
            "AND target_table = %s AND source_key = ANY(%s)",
            (source, source_table, target_table, wanted),
        )


@dataclass(frozen=True)
class CountedTable:
    """The backfill whose exclusion counts of one table a follower continues."""

    backfill_id: str
    counted: int  # rows counted under the table's rules now
    recorded: int  # keys recorded as counted for that backfill


def counted_table(
    conn: psycopg.Connection[Any], source: str, source_table: str, target_table: str
) -> CountedTable | None:
    """The latest backfill that loaded ``source_table`` (else ``source``), and what it recorded."""
    row = conn.execute(
        "SELECT backfill_id FROM runeshift.backfill_chunks WHERE source = %s AND status = 'loaded' "
        "ORDER BY (source_table = %s) DESC, loaded_at DESC LIMIT 1",
        (source, source_table),
    ).fetchone()
    if row is None:
        return None
    counts = conn.execute(
        "SELECT (SELECT coalesce(sum(row_count), 0) FROM runeshift.exclusions WHERE source = %s "
        "AND source_table = %s AND target_table = %s), (SELECT count(*) FROM "
        "runeshift.excluded_keys WHERE source = %s AND source_table = %s AND target_table = %s "
        "AND backfill_id = %s AND rule IS NOT NULL)",
        (source, source_table, target_table, source, source_table, target_table, row[0]),
    ).fetchone()
    assert counts is not None
    return CountedTable(str(row[0]), int(counts[0]), int(counts[1]))


DEFERRED_INDEXES = "backfill-deferred-indexes"  # runs.command of a table's deferred index set


@dataclass(frozen=True)
class DeferredIndex:
    name: str
    definition: str  # pg_get_indexdef, or ALTER TABLE .. ADD CONSTRAINT .. pg_get_constraintdef


def defer_indexes(
    conn: psycopg.Connection[Any], table: str, indexes: Iterable[DeferredIndex], backfill_id: str
) -> None:
    """Record, in the caller's transaction (the one that drops them), indexes to build later.

    The record is a ``runs`` row (command ``backfill-deferred-indexes``, status
    ``running`` while any index is missing), so a crash between the drop and the
    rebuild leaves the definitions where the next backfill finds them.
    """
    conn.execute(
        "INSERT INTO runeshift.runs (command, status, tool_version, host, invoked_by, args) "
        "VALUES (%s, 'running', %s, %s, %s, %s)",
        (
            DEFERRED_INDEXES,
            __version__,
            socket.gethostname(),
            _who(),
            Jsonb(
                {
                    "table": table,
                    "backfill_id": backfill_id,
                    "indexes": [{"name": i.name, "definition": i.definition} for i in indexes],
                }
            ),
        ),
    )


def deferred_indexes(conn: psycopg.Connection[Any]) -> dict[str, list[DeferredIndex]]:
    """Indexes dropped for a backfill and not rebuilt yet, by target table."""
    rows = conn.execute(
        "SELECT args->>'table', args->'indexes' FROM runeshift.runs "
        "WHERE command = %s AND status = 'running' ORDER BY started_at",
        (DEFERRED_INDEXES,),
    ).fetchall()
    pending: dict[str, list[DeferredIndex]] = {}
    for table, indexes in rows:
        pending.setdefault(str(table), []).extend(
            DeferredIndex(i["name"], i["definition"]) for i in indexes
        )
    return pending


def tables_missing_keys(conn: psycopg.Connection[Any]) -> list[str]:
    """Target tables whose key or unique constraints a backfill dropped and has not built yet.

    Only a backfill may write them until it builds them: nothing else could tell an insert
    from an update there (decision 0008).
    """
    return [
        table
        for table, indexes in deferred_indexes(conn).items()
        if any(i.definition.startswith("ALTER TABLE ") for i in indexes)
    ]


def indexes_rebuilt(conn: psycopg.Connection[Any], table: str) -> None:
    """Mark ``table``'s deferred indexes built, in the transaction that built them."""
    conn.execute(
        "UPDATE runeshift.runs SET status = 'succeeded', finished_at = now() "
        "WHERE command = %s AND status = 'running' AND args->>'table' = %s",
        (DEFERRED_INDEXES, table),
    )


# -- references stored NULL while the row they name is missing ---------------------------

# pg_advisory_xact_lock(classid, objid) key space, objid = hashtext(referenced table): a
# writer recording entries and a writer inserting the rows they name (the store follower
# and the binlog catch-up run in parallel) take it in turn, so neither misses the other.
_UNRESOLVED_LOCK = 0x52554E45


@dataclass(frozen=True)
class WantedReference:
    """A target row whose ``column`` was stored NULL: the id it wanted in ``referenced_table``."""

    row_id: str
    column: str
    referenced_table: str
    wanted_value: str


Resolved = dict[tuple[str, str], list[str]]  # (target table, column) -> ids of rows linked


def record_unresolved(
    conn: psycopg.Connection[Any],
    target_table: str,
    columns: Sequence[str],
    row_ids: Callable[[], Sequence[str]],
    wanted: Sequence[WantedReference],
    leaving: Mapping[str, set[str]] | None = None,
) -> Resolved:
    """Record what ``row_ids`` (just written) wanted in ``columns``, replacing what they had.

    ``columns`` are the written columns that reference by id with ``on_missing: null``;
    ``wanted`` the rows among ``row_ids`` (called only when needed: building the list of
    a large chunk costs more than the lookup) stored NULL in one of them. Entries of the other
    rows are deleted (their reference resolved, or they want nothing now). Costs nothing
    but one indexed lookup when no row was nulled and ``target_table`` has no entries.
    A wanted row that another transaction inserted since this one looked is linked now
    (returned like :func:`resolve_unresolved`'s result), unless it is in ``leaving``
    (table -> ids this transaction is about to delete: its dependants were nulled first).
    """
    if not columns:
        return {}
    if not wanted and not _has_unresolved(conn, "target_table", target_table):
        return {}
    conn.execute(
        'DELETE FROM runeshift.unresolved_references WHERE target_table = %s AND "column" = ANY(%s) '
        "AND row_id = ANY(%s)",
        (target_table, list(columns), list(row_ids())),
    )
    if not wanted:
        return {}
    by_table: dict[str, set[str]] = {}
    for w in wanted:
        by_table.setdefault(w.referenced_table, set()).add(w.wanted_value)
    for table in sorted(by_table):
        _lock_unresolved(conn, table)
    with (
        conn.cursor() as cur,
        cur.copy(
            'COPY runeshift.unresolved_references (target_table, row_id, "column", '
            "referenced_table, wanted_value) FROM STDIN"
        ) as copy,
    ):
        for w in {(w.row_id, w.column): w for w in wanted}.values():
            copy.write_row((target_table, w.row_id, w.column, w.referenced_table, w.wanted_value))
    resolved: Resolved = {}
    for table, values in sorted(by_table.items()):
        going = (leaving or {}).get(table, set())
        present = [i for i in _present_ids(conn, table, sorted(values)) if i not in going]
        for link, ids in _resolve_locked(conn, table, present).items():
            resolved.setdefault(link, []).extend(ids)
    return resolved


def record_unresolved_of(
    conn: psycopg.Connection[Any],
    mapped: MappedBatch,
    landed: pa.Array | None,
    leaving: Mapping[str, set[str]] | None = None,
) -> Resolved:
    """:func:`record_unresolved` for the rows of ``mapped`` that were written (``landed``; None: all).

    Nothing is computed for a feed without ``on_missing: null`` references by id; a
    batch that nulled nothing costs one indexed lookup (to forget entries its rows resolved).
    """
    columns = null_id_references(mapped.feed)
    if not columns:
        return {}
    wanted: list[WantedReference] = []
    for column, unresolved in mapped.unresolved.items():
        hit = pc.is_valid(unresolved.wanted)
        if landed is not None:
            hit = pc.and_(hit, landed)
        ids = mapped.rows.column("id").filter(hit).to_pylist()
        values = unresolved.wanted.filter(hit).to_pylist()
        wanted.extend(
            WantedReference(str(i), column, unresolved.referenced_table, str(v))
            for i, v in zip(ids, values, strict=True)
        )
    return record_unresolved(
        conn, mapped.target, sorted(columns), lambda: _written_ids(mapped, landed), wanted, leaving
    )


def resolve_unresolved_by(
    conn: psycopg.Connection[Any], mapped: MappedBatch, landed: pa.Array | None
) -> Resolved:
    """:func:`resolve_unresolved` for the rows of ``mapped`` that were written."""
    return resolve_unresolved(conn, mapped.target, lambda: _written_ids(mapped, landed))


def _written_ids(mapped: MappedBatch, landed: pa.Array | None) -> list[str]:
    ids = mapped.rows.column("id")
    if landed is not None:
        ids = ids.filter(landed)
    return [str(v) for v in ids.to_pylist() if v is not None]


def resolve_unresolved(
    conn: psycopg.Connection[Any], referenced_table: str, ids: Callable[[], Sequence[str]]
) -> Resolved:
    """Link the rows that wanted ``ids``, just written to ``referenced_table``; forget their entries.

    Called by every writer after inserting rows into a table an ``on_missing: null``
    reference by id names, in the same transaction. Returns, per (target table, column),
    the rows whose column was set, for the caller's relinking of references matched on it.
    ``ids`` is called only when entries wait for ``referenced_table``.
    """
    _lock_unresolved(conn, referenced_table)
    if not _has_unresolved(conn, "referenced_table", referenced_table):
        return {}
    return _resolve_locked(conn, referenced_table, ids())


def forget_unresolved(
    conn: psycopg.Connection[Any], target_table: str, row_ids: Sequence[str]
) -> None:
    """Deleted rows want nothing any more."""
    if row_ids and _has_unresolved(conn, "target_table", target_table):
        conn.execute(
            "DELETE FROM runeshift.unresolved_references WHERE target_table = %s AND row_id = ANY(%s)",
            (target_table, list(row_ids)),
        )


def unresolved_references(
    conn: psycopg.Connection[Any], target_table: str
) -> list[WantedReference]:
    """The recorded entries of ``target_table`` (for tests and reports)."""
    rows = conn.execute(
        'SELECT row_id, "column", referenced_table, wanted_value FROM runeshift.unresolved_references '
        'WHERE target_table = %s ORDER BY row_id, "column"',
        (target_table,),
    ).fetchall()
    return [WantedReference(*row) for row in rows]


def _lock_unresolved(conn: psycopg.Connection[Any], referenced_table: str) -> None:
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_UNRESOLVED_LOCK, referenced_table)
    )


def _has_unresolved(conn: psycopg.Connection[Any], column: str, table: str) -> bool:
    query = {
        "target_table": "SELECT EXISTS (SELECT 1 FROM runeshift.unresolved_references "
        "WHERE target_table = %s)",
        "referenced_table": "SELECT EXISTS (SELECT 1 FROM runeshift.unresolved_references "
        "WHERE referenced_table = %s)",
    }[column]
    row = conn.execute(query, (table,)).fetchone()
    return bool(row and row[0])


def _present_ids(conn: psycopg.Connection[Any], table: str, ids: Sequence[str]) -> list[str]:
    schema, _, name = table.partition(".")
    rows = conn.execute(
        sql.SQL("SELECT id::text FROM {} WHERE id = ANY(CAST(%s AS {}[]))").format(
            sql.Identifier(schema, name), sql.SQL(_column_type(conn, table, "id"))
        ),
        (list(ids),),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _resolve_locked(
    conn: psycopg.Connection[Any], referenced_table: str, ids: Sequence[str]
) -> Resolved:
    if not ids:
        return {}
    rows = conn.execute(
        "DELETE FROM runeshift.unresolved_references WHERE referenced_table = %s "
        'AND wanted_value = ANY(%s) RETURNING target_table, "column", row_id, wanted_value',
        (referenced_table, list(ids)),
    ).fetchall()
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for table, column, row_id, value in rows:
        groups.setdefault((str(table), str(column)), []).append((str(row_id), str(value)))
    resolved: Resolved = {}
    for (table, column), pairs in sorted(groups.items()):
        schema, _, name = table.partition(".")
        linked = conn.execute(
            sql.SQL(
                "UPDATE {tbl} d SET {c} = CAST(v.wanted AS {typ}) "
                "FROM unnest(%s::text[], %s::text[]) AS v(row_id, wanted) "
                "WHERE d.id = CAST(v.row_id AS {id_typ}) AND d.{c} IS NULL RETURNING d.id::text"
            ).format(
                tbl=sql.Identifier(schema, name),
                c=sql.Identifier(column),
                typ=sql.SQL(_column_type(conn, table, column)),
                id_typ=sql.SQL(_column_type(conn, table, "id")),
            ),
            ([p[0] for p in pairs], [p[1] for p in pairs]),
        ).fetchall()
        if linked:
            resolved[(table, column)] = [str(r[0]) for r in linked]
    return resolved


def _column_type(conn: psycopg.Connection[Any], table: str, column: str) -> str:
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attname = %s",
        (table, column),
    ).fetchone()
    if row is None:
        raise ConfigError(f"{table} has no column {column}; run 'runeshift schema upgrade'")
    return str(row[0])
