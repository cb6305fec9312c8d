"""Fast, idempotent writes of mapped Arrow tables into Postgres.

The fast path COPYs a chunk straight into the target table (CSV produced by
Arrow's C++ writer, no per-row Python). If any row already exists (a resumed
or repeated backfill, or the catch-up got there first) the COPY fails on the
primary key inside a savepoint and the chunk goes through a temporary table
and ``INSERT .. ON CONFLICT (id) DO UPDATE`` that only touches rows whose
values differ, so a rerun changes nothing. Rows the target's constraints
reject are isolated one by one and returned for quarantine instead of failing
the chunk.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql


@dataclass(frozen=True)
class RejectedRow:
    index: int
    reason: str


def _pg_array_literal(values: pa.Array) -> pa.Array:
    """list<...> -> Postgres array text '{"a","b"}' (vectorised)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    flat = pc.cast(values.flatten(), pa.string())
    escaped = pc.replace_substring(pc.replace_substring(flat, "\\", "\\\\"), '"', '\\"')
    quoted = pc.binary_join_element_wise('"', escaped, '"', "")
    quoted = pc.fill_null(quoted, "NULL")
    rebuilt = pa.ListArray.from_arrays(values.offsets, quoted, mask=values.is_null())
    joined = pc.binary_join(rebuilt, ",")
    return pc.binary_join_element_wise("{", joined, "}", "")


def to_copy_table(rows: pa.Table) -> pa.Table:
    """Make every column CSV-writable in a form Postgres parses."""
    columns = []
    for col in rows.columns:
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            arr = _pg_array_literal(arr)
        elif pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
            arr = pa.array(
                [None if v is None else "\\x" + v.hex() for v in arr.to_pylist()], pa.string()
            )
        columns.append(arr)
    return pa.table(columns, names=rows.column_names)


def csv_bytes(rows: pa.Table) -> bytes:
    sink = io.BytesIO()
    pcsv.write_csv(
        to_copy_table(rows), sink, pcsv.WriteOptions(include_header=False, quoting_style="needed")
    )
    return sink.getvalue()


def _ident(qualified: str) -> sql.Composable:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name) if name else sql.Identifier(schema)


def _copy(
    cur: psycopg.Cursor[Any], table: sql.Composable, columns: Sequence[str], data: bytes
) -> None:
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(stmt) as copy:
        view = memoryview(data)
        for start in range(0, len(data), 1 << 20):
            copy.write(view[start : start + (1 << 20)])


def _temp_table(cur: psycopg.Cursor[Any], target: str, columns: Sequence[str]) -> sql.Composable:
    tmp = sql.Identifier("_runeshift_stage")
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tmp))
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            tmp, sql.SQL(", ").join(map(sql.Identifier, columns)), _ident(target)
        )
    )
    return tmp


def upsert_rows(
    conn: psycopg.Connection[Any], target: str, rows: pa.Table, *, encoded: bytes | None = None
) -> list[RejectedRow]:
    """Write ``rows`` (keyed by ``id``) into ``target`` idempotently, inside the caller's transaction.

    ``encoded`` is ``csv_bytes(rows)`` when the caller already encoded them (the backfill
    encodes on another thread so the writer only talks to Postgres).
    """
    if rows.num_rows == 0:
        return []
    columns = rows.column_names
    data = encoded if encoded is not None else csv_bytes(rows)
    with conn.cursor() as cur:
        try:
            with conn.transaction():
                _copy(cur, _ident(target), columns, data)
            return []
        except psycopg.errors.IntegrityError:
            pass  # some rows exist already (or break a constraint): merge instead
        try:
            with conn.transaction():
                tmp = _stage(cur, target, columns, data)
                cur.execute(_merge_sql(target, columns, tmp, None))
                cur.execute(sql.SQL("DROP TABLE {}").format(tmp))
            return []
        except psycopg.errors.IntegrityError:
            return _isolate_rejects(conn, target, columns, data, rows.num_rows)


def _stage(
    cur: psycopg.Cursor[Any], target: str, columns: Sequence[str], data: bytes
) -> sql.Composable:
    tmp = _temp_table(cur, target, columns)
    _copy(cur, tmp, columns, data)
    return tmp


def _merge_sql(
    target: str, columns: Sequence[str], source: sql.Composable, row_filter: sql.Composable | None
) -> sql.Composed:
    """INSERT .. SELECT .. ON CONFLICT (id) DO UPDATE, touching only rows whose values differ."""
    updates = [c for c in columns if c != "id"]
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    where = sql.SQL(" WHERE {}").format(row_filter) if row_filter is not None else sql.SQL("")
    if not updates:
        return sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM {}{} ON CONFLICT (id) DO NOTHING"
        ).format(_ident(target), cols, cols, source, where)
    set_list = sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in updates
    )
    distinct = sql.SQL("({}) IS DISTINCT FROM ({})").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in updates),
        sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in updates),
    )
    return sql.SQL(
        "INSERT INTO {} AS t ({}) SELECT {} FROM {}{} ON CONFLICT (id) DO UPDATE SET {} WHERE {}"
    ).format(_ident(target), cols, cols, source, where, set_list, distinct)


def _isolate_rejects(
    conn: psycopg.Connection[Any], target: str, columns: Sequence[str], data: bytes, n_rows: int
) -> list[RejectedRow]:
    """Slow path: stage once, then merge row by row in savepoints, collecting the rejected rows."""
    rejected: list[RejectedRow] = []
    with conn.cursor() as cur:
        tmp = _stage(cur, target, columns, data)
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN _n bigserial").format(tmp))
        stmt = _merge_sql(target, columns, tmp, sql.SQL("_n = %s"))
        for i in range(n_rows):
            try:
                with conn.transaction():
                    cur.execute(stmt, (i + 1,))
            except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
                detail = exc.diag.message_primary or str(exc)
                rejected.append(RejectedRow(i, f"rejected by {target}: {detail}"))
        cur.execute(sql.SQL("DROP TABLE {}").format(tmp))
    return rejected


def update_columns(conn: psycopg.Connection[Any], target: str, rows: pa.Table) -> pa.Array:
    """Set the columns of existing rows matched by ``id``; returns a mask of ids that exist.

    Used for contributing feeds (e.g. ``auth0_links`` filling the account's
    ``auth0_sub``). Rows whose id is not in ``target`` are left for the caller to
    quarantine.
    """
    if rows.num_rows == 0:
        return pa.array([], pa.bool_())
    columns = rows.column_names
    updates = [c for c in columns if c != "id"]
    with conn.cursor() as cur:
        tmp = _temp_table(cur, target, columns)
        _copy(cur, tmp, columns, csv_bytes(rows))
        cur.execute(
            sql.SQL("SELECT s.id::text FROM {} s JOIN {} t ON t.id = s.id").format(
                tmp, _ident(target)
            )
        )
        present = {r[0] for r in cur.fetchall()}
        set_list = sql.SQL(", ").join(
            sql.SQL("{} = s.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in updates
        )
        distinct = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in updates),
            sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in updates),
        )
        cur.execute(
            sql.SQL("UPDATE {} t SET {} FROM {} s WHERE t.id = s.id AND {}").format(
                _ident(target), set_list, tmp, distinct
            )
        )
        cur.execute(sql.SQL("DROP TABLE {}").format(tmp))
    ids = pc.cast(rows.column("id"), pa.string()).to_pylist()
    return pa.array([i in present for i in ids], pa.bool_())


def defer_foreign_key_checks(conn: psycopg.Connection[Any]) -> bool:
    """Skip per-row FK triggers for this session when the role may (like pg_restore does).

    Per-row foreign-key triggers more than double the cost of COPY into the Rune tables.
    The backfill already refuses orphans before loading (references are checked against
    the loaded ids), and :func:`validate_foreign_keys` proves it set-wise after each table.
    Roles that may not set ``session_replication_role`` (non-superusers) keep the
    triggers; nothing else changes. Returns whether the checks are deferred.
    """
    try:
        with conn.transaction():
            conn.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def validate_foreign_keys(conn: psycopg.Connection[Any], table: str) -> None:
    """Check every foreign key of ``table`` in one anti-join each; raise if any row dangles."""
    from runeshift.errors import FatalError

    schema, _, name = table.partition(".")
    rows = conn.execute(
        "SELECT c.conname, a.attname, rn.nspname || '.' || rc.relname, ra.attname "
        "FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "JOIN pg_class rc ON rc.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1] "
        "WHERE c.contype = 'f' AND n.nspname = %s AND t.relname = %s AND cardinality(c.conkey) = 1",
        (schema, name),
    ).fetchall()
    for conname, column, ref_table, ref_column in rows:
        ref_schema, _, ref_name = ref_table.partition(".")
        dangling = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} t WHERE t.{} IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM {} r WHERE r.{} = t.{})"
            ).format(
                _ident(table), sql.Identifier(column), sql.Identifier(ref_schema, ref_name),
                sql.Identifier(ref_column), sql.Identifier(column),
            )
        ).fetchone()
        conn.commit()
        if dangling and dangling[0]:
            raise FatalError(
                f"{table}: {dangling[0]} rows break foreign key {conname} ({column} -> {ref_table}); "
                "this is a bug in the reference checks; the rows are loaded, reconcile will list them"
            )
