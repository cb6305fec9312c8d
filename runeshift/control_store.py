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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from runeshift import __version__
from transform.mapping_engine import QuarantinedRow


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
    params = [
        (
            run_id,
            source,
            source_table,
            r.source_key,
            target_table,
            r.rule,
            r.reason,
            Jsonb(r.raw_row),
        )
        for r in rows
    ]
    if not params:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO runeshift.quarantine (run_id, source, source_table, source_key, target_table, rule, "
            "reason, raw_row) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (source, source_table, source_key, target_table) DO UPDATE SET rule = EXCLUDED.rule, "
            "reason = EXCLUDED.reason, raw_row = EXCLUDED.raw_row, run_id = EXCLUDED.run_id, "
            "last_seen = now(), resolved_at = NULL",
            params,
        )
    return len(params)


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
    definition: str  # pg_get_indexdef: the exact CREATE INDEX statement


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


def indexes_rebuilt(conn: psycopg.Connection[Any], table: str) -> None:
    """Mark ``table``'s deferred indexes built, in the transaction that built them."""
    conn.execute(
        "UPDATE runeshift.runs SET status = 'succeeded', finished_at = now() "
        "WHERE command = %s AND status = 'running' AND args->>'table' = %s",
        (DEFERRED_INDEXES, table),
    )
