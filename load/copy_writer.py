"""Fast, idempotent writes of mapped Arrow tables into Postgres.

The fast path COPYs a chunk straight into the target table, in Postgres's
binary COPY format written from Arrow by ``pgpq`` (Rust) when every column maps
onto the target column's type exactly (:class:`BinaryCopyEncoder`), else as CSV
produced by Arrow's C++ writer; neither runs per-row Python. If any row already exists (a resumed
or repeated backfill, or the catch-up got there first) the COPY fails on the
primary key inside a savepoint and the chunk goes through a temporary table
and ``INSERT .. ON CONFLICT (id) DO UPDATE`` that only touches rows whose
values differ, so a rerun changes nothing. Rows the target's constraints
reject are isolated one by one and returned for quarantine instead of failing
the chunk.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from pgpq import ArrowToPostgresBinaryEncoder, encoders, schema
from psycopg import sql

from transform.column_buffers import binary_buffers

try:
    from transform import _column_kernels
except ImportError:  # installed without a C compiler
    _column_kernels = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from pgpq._pgpq import EncoderBuilder  # a type alias in the stubs only


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


@dataclass(frozen=True)
class EncodedRows:
    """A chunk ready for COPY: its bytes and the COPY format they are in."""

    format: Literal["csv", "binary"]
    data: bytes


def encoded_csv(rows: pa.Table) -> EncodedRows:
    return EncodedRows("csv", csv_bytes(rows))


class _NotExact(Exception):
    """A column cannot be written in binary with exactly the value CSV would give."""


_UUID_HEX = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_UUID_DASH = np.array([8, 13, 18, 23])
_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i


def uuid_text_to_bytes(values: pa.Array) -> pa.Array:
    """Canonical uuid text (``8-4-4-4-12`` hex) -> 16-byte values, in C where the kernels
    are built (``transform/_column_kernels.c``), else vectorised with numpy.

    Postgres's uuid input also takes braces or no dashes; such values (rare) make the
    chunk go through CSV instead, so the server parses them as it always did.
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        raise _NotExact(f"uuid from {arr.type}")
    n = len(arr)
    valid = pc.is_valid(arr)
    if _column_kernels is not None:
        raw_bytes, parsed = _column_kernels.uuid_bytes(*binary_buffers(arr))
        valid_np = valid.to_numpy(zero_copy_only=False)
        if n and not (np.frombuffer(parsed, dtype=np.bool_) | ~valid_np).all():
            raise _NotExact("uuid text not canonical")
        out = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), n, [None, pa.py_buffer(raw_bytes)]
        )
        if valid.false_count:
            out = pc.if_else(valid, out, pa.scalar(None, pa.binary(16)))
        return out
    lengths = pc.binary_length(arr)
    if n and not pc.all(pc.or_kleene(pc.equal(lengths, 36), pc.invert(valid))).as_py():
        raise _NotExact("uuid text not canonical")
    filled = pc.fill_null(arr, "00000000-0000-0000-0000-000000000000")
    offsets = np.frombuffer(filled.buffers()[1], dtype=np.int32)[
        filled.offset : filled.offset + n + 1
    ]
    chars = np.frombuffer(filled.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    chars = chars.reshape(n, 36)
    if n and not (chars[:, _UUID_DASH] == ord("-")).all():
        raise _NotExact("uuid text not canonical")
    nibbles = _NIBBLE[chars[:, _UUID_HEX]]
    if n and (nibbles == 255).any():
        raise _NotExact("uuid text not hex")
    raw = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).astype(np.uint8)
    out = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), n, [None, pa.py_buffer(raw.tobytes())]
    )
    if valid.false_count:
        out = pc.if_else(valid, out, pa.scalar(None, pa.binary(16)))
    return out


_INTS = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}
_INT_BUILDERS: dict[str, Callable[[pa.Field], EncoderBuilder]] = {
    "smallint": encoders.Int16EncoderBuilder,
    "integer": encoders.Int32EncoderBuilder,
    "bigint": encoders.Int64EncoderBuilder,
}


def _strings(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        return arr.cast(pa.string())
    raise _NotExact(f"text from {arr.type}")  # CSV would format it; let it


def _ints(arr: pa.Array, pg_type: str) -> pa.Array:
    if not pa.types.is_integer(arr.type):
        raise _NotExact(f"{pg_type} from {arr.type}")
    try:
        return arr.cast(_INTS[pg_type])  # safe cast: overflow raises, the server would reject it
    except pa.ArrowInvalid as exc:
        raise _NotExact(str(exc)) from None


def _column(name: str, arr: pa.Array, pg_type: str) -> tuple[pa.Array, EncoderBuilder]:
    """The Arrow array pgpq gets for a target column of ``pg_type`` and its encoder."""
    if pg_type == "uuid":
        arr = uuid_text_to_bytes(arr)
        return arr, encoders.FixedSizeBinaryEncoderBuilder(pa.field(name, arr.type))
    if pg_type in _INTS:
        arr = _ints(arr, pg_type)
        return arr, _INT_BUILDERS[pg_type](pa.field(name, arr.type))
    if pg_type == "boolean" and pa.types.is_boolean(arr.type):
        return arr, encoders.BooleanEncoderBuilder(pa.field(name, arr.type))
    if pg_type in ("text", "bpchar", "character", "character varying"):
        # char(n)/varchar(n): the server applies the length (typmod) on binary input too
        arr = _strings(arr)
        return arr, encoders.StringEncoderBuilder(pa.field(name, arr.type))
    if pg_type in ("jsonb", "json"):
        arr = _strings(arr)
        output = schema.Jsonb() if pg_type == "jsonb" else schema.Text()
        return arr, encoders.StringEncoderBuilder.new_with_output(pa.field(name, arr.type), output)
    if pg_type == "timestamp with time zone" and pa.types.is_timestamp(arr.type) and arr.type.tz:
        # Arrow holds UTC instants; CSV text of a naive timestamp would be read in the
        # session's time zone, so naive ones stay on the CSV path.
        arr = arr.cast(pa.timestamp("us", tz="UTC"))
        return arr, encoders.TimestampMicrosecondEncoderBuilder(pa.field(name, arr.type))
    if pg_type.endswith("[]") and (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        if not isinstance(arr, pa.ListArray):
            arr = arr.cast(pa.list_(arr.type.value_type))
        start, end = arr.offsets[0].as_py(), arr.offsets[-1].as_py()
        inner, inner_builder = _column("item", arr.values.slice(start, end - start), pg_type[:-2])
        offsets = pc.subtract(arr.offsets, pa.scalar(start, pa.int32()))
        rebuilt = pa.ListArray.from_arrays(offsets, inner, mask=arr.is_null())
        field = pa.field(name, rebuilt.type)
        return rebuilt, encoders.ListEncoderBuilder.new_with_inner(field, inner_builder)
    raise _NotExact(f"{pg_type} from {arr.type}")


class BinaryCopyEncoder:
    """Encodes mapped chunks of one target table for ``COPY .. (FORMAT binary)``.

    Binary COPY carries no type names: the server runs each column's binary input
    function on the bytes, so every Arrow column is first cast to the exact form
    that function reads (uuid text -> 16 bytes, ints to the column's width, UTC
    instants as microseconds). A chunk with a column that has no exact binary form
    here (naive timestamps, text formatted from numbers, non-canonical uuid text,
    a type not listed) is encoded as CSV instead, so values never depend on the path.
    """

    def __init__(self, column_types: dict[str, str]) -> None:
        self.column_types = column_types

    @classmethod
    def for_table(cls, conn: psycopg.Connection[Any], table: str) -> BinaryCopyEncoder:
        schema_name, _, name = table.partition(".")
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (schema_name, name),
        ).fetchall()
        return cls({str(col): str(kind) for col, kind in rows})

    def binary(self, rows: pa.Table) -> bytes:
        """The chunk in binary COPY format; raises ``_NotExact`` if a column has no exact form."""
        arrays: list[pa.Array] = []
        builders: dict[str, EncoderBuilder] = {}
        for name, col in zip(rows.column_names, rows.columns, strict=True):
            pg_type = self.column_types.get(name)
            if pg_type is None:
                raise _NotExact(f"no column {name}")
            arr, builders[name] = _column(name, col.combine_chunks(), pg_type)
            arrays.append(arr)
        batch = pa.RecordBatch.from_arrays(arrays, names=rows.column_names)
        encoder = ArrowToPostgresBinaryEncoder.new_with_encoders(batch.schema, builders)
        return encoder.write_header() + encoder.write_batch(batch) + encoder.finish()

    def encode(self, rows: pa.Table) -> EncodedRows:
        try:
            return EncodedRows("binary", self.binary(rows))
        except _NotExact:
            return encoded_csv(rows)


def _ident(qualified: str) -> sql.Composable:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name) if name else sql.Identifier(schema)


def _copy(
    cur: psycopg.Cursor[Any], table: sql.Composable, columns: Sequence[str], data: EncodedRows
) -> None:
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(data.format)
    )
    with cur.copy(stmt) as copy:
        view = memoryview(data.data)
        for start in range(0, len(view), 1 << 20):
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


def open_transaction(conn: psycopg.Connection[Any]) -> None:
    """Make sure the caller's transaction is open, so a ``conn.transaction()`` block is a savepoint.

    On an idle connection psycopg's ``transaction()`` opens a transaction of its own and
    commits it when the block ends: a chunk's rows would commit before the checkpoint the
    caller writes after them, and a kill between the two would load them twice.
    """
    if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.execute("SELECT 1")  # psycopg sends BEGIN first


def upsert_rows(
    conn: psycopg.Connection[Any],
    target: str,
    rows: pa.Table,
    *,
    encoded: EncodedRows | None = None,
    fresh: bool = False,
) -> list[RejectedRow]:
    """Write ``rows`` (keyed by ``id``) into ``target`` idempotently, inside the caller's transaction.

    ``encoded`` is ``rows`` already encoded (``BinaryCopyEncoder.encode`` or
    ``encoded_csv``) when the caller did it elsewhere: the backfill encodes on another
    thread so the writer only talks to Postgres. Without it the rows go as CSV.
    ``fresh`` says none of the rows can exist yet and the table's key constraints are
    being built after the load (decision 0008): a refused COPY then goes straight to
    isolating the refused rows, with plain inserts (there is no key to conflict on).
    """
    if rows.num_rows == 0:
        return []
    columns = rows.column_names
    data = encoded if encoded is not None else encoded_csv(rows)
    open_transaction(conn)
    with conn.cursor() as cur:
        try:
            with conn.transaction():
                _copy(cur, _ident(target), columns, data)
            return []
        except psycopg.errors.IntegrityError:
            if fresh:  # nothing exists, so a row broke a constraint
                return _isolate_rejects(conn, target, columns, data, rows.num_rows, fresh=True)
            # some rows exist already (or break a constraint): merge instead
        try:
            with conn.transaction():
                tmp = _stage(cur, target, columns, data)
                cur.execute(_merge_sql(target, columns, tmp, None))
                cur.execute(sql.SQL("DROP TABLE {}").format(tmp))
            return []
        except (psycopg.errors.IntegrityError, psycopg.errors.CardinalityViolation):
            return _isolate_rejects(conn, target, columns, data, rows.num_rows)


def _stage(
    cur: psycopg.Cursor[Any], target: str, columns: Sequence[str], data: EncodedRows
) -> sql.Composable:
    tmp = _temp_table(cur, target, columns)
    _copy(cur, tmp, columns, data)
    return tmp


def _merge_sql(
    target: str,
    columns: Sequence[str],
    source: sql.Composable,
    row_filter: sql.Composable | None,
    *,
    fresh: bool = False,
) -> sql.Composed:
    """INSERT .. SELECT .. ON CONFLICT (id) DO UPDATE, touching only rows whose values differ.

    ``fresh`` (rows that cannot exist yet, see :func:`upsert_rows`): a plain INSERT .. SELECT.
    """
    updates = [c for c in columns if c != "id"]
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    where = sql.SQL(" WHERE {}").format(row_filter) if row_filter is not None else sql.SQL("")
    if fresh:
        return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}{}").format(
            _ident(target), cols, cols, source, where
        )
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
    conn: psycopg.Connection[Any],
    target: str,
    columns: Sequence[str],
    data: EncodedRows,
    n_rows: int,
    *,
    fresh: bool = False,
) -> list[RejectedRow]:
    """Slow path: stage once, then merge ranges of rows in savepoints, halving a range that
    fails until the rejected rows stand alone.

    ``k`` bad rows among ``n`` cost about ``2k log2(n)`` statements, not ``n``: row by row, a
    20,000-row catch-up batch with one bad row kept the server busy for minutes.
    """
    rejected: list[RejectedRow] = []
    with conn.cursor() as cur:
        tmp = _stage(cur, target, columns, data)
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN _n bigserial PRIMARY KEY").format(tmp))
        rejected += _reject_nulls(cur, target, columns, tmp)
        cur.execute(sql.SQL("ANALYZE {}").format(tmp))
        stmt = _merge_sql(target, columns, tmp, sql.SQL("_n BETWEEN %s AND %s"), fresh=fresh)
        ranges = [(1, n_rows)] if n_rows else []
        while ranges:
            first, last = ranges.pop()
            try:
                with conn.transaction():
                    cur.execute(stmt, (first, last))
            except (
                psycopg.errors.IntegrityError,
                psycopg.errors.DataError,
                psycopg.errors.CardinalityViolation,  # one id twice in the range: split it
            ) as exc:
                if first == last:
                    detail = exc.diag.message_primary or str(exc)
                    rejected.append(RejectedRow(first - 1, f"rejected by {target}: {detail}"))
                    continue
                middle = (first + last) // 2
                ranges += [(middle + 1, last), (first, middle)]  # lower half first, in order
        cur.execute(sql.SQL("DROP TABLE {}").format(tmp))
    return sorted(rejected, key=lambda r: r.index)


def _reject_nulls(
    cur: psycopg.Cursor[Any], target: str, columns: Sequence[str], tmp: sql.Composable
) -> list[RejectedRow]:
    """Reject, in one statement, the staged rows with NULL in a NOT NULL column of ``target``.

    They are the common reject (a legacy value the mapping turns into NULL where Rune
    requires one), and each would otherwise cost the halving about ``2 log2(n)``
    statements: a backlog touching 800 such licenses spent 35 s there. The reason is the
    one Postgres gives, naming the first such column in the table's order.
    """
    cur.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND attnotnull AND NOT attisdropped ORDER BY attnum",
        (target,),
    )
    required = [name for (name,) in cur.fetchall() if name in columns]
    if not required:
        return []
    any_null = sql.SQL(" OR ").join(
        sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in required
    )
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE {} RETURNING _n, ARRAY[{}]").format(
            tmp,
            any_null,
            sql.SQL(", ").join(sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in required),
        )
    )
    relation = target.rsplit(".", 1)[-1]
    rejected = []
    for n, nulls in cur.fetchall():
        column = required[nulls.index(True)]
        reason = (
            f'rejected by {target}: null value in column "{column}" of relation "{relation}" '
            "violates not-null constraint"
        )
        rejected.append(RejectedRow(n - 1, reason))
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
        _copy(cur, tmp, columns, encoded_csv(rows))
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


@dataclass(frozen=True)
class DeferrableIndex:
    """An index a bulk load may drop and build afterwards: its name and the two statements."""

    name: str  # schema-qualified; a constraint's index has the constraint's name
    create: str  # pg_get_indexdef, or ALTER TABLE .. ADD CONSTRAINT .. pg_get_constraintdef
    drop: str


def deferrable_indexes(
    conn: psycopg.Connection[Any], table: str, unique_columns: frozenset[str] = frozenset()
) -> list[DeferrableIndex]:
    """``table``'s indexes that may be built after a bulk load into it.

    Plain indexes qualify: not unique, not backing a constraint, valid. Unique indexes
    stay, because the writer relies on the target rejecting a duplicate row while it
    loads, so the row is quarantined instead of failing the index build later; except a
    primary key or unique constraint on a column in ``unique_columns``, which the loading
    feed makes unique by construction (``transform.mapping_spec.unique_by_construction``),
    and which no foreign key references. The statements come from ``pg_get_indexdef`` and
    ``pg_get_constraintdef``, so they recreate exactly what was there.
    """
    schema, _, name = table.partition(".")
    qualified = sql.Identifier(schema, name).as_string(conn)
    plain = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(ic.relname), pg_get_indexdef(i.indexrelid) "
        "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = %s AND NOT i.indisunique AND NOT i.indisprimary "
        "AND i.indisvalid AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
        "ORDER BY ic.relname",
        (schema, name),
    ).fetchall()
    found = [
        DeferrableIndex(str(index), str(definition), f"DROP INDEX IF EXISTS {index}")
        for index, definition in plain
    ]
    if not unique_columns:
        return found
    constraints = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.conname), quote_ident(c.conname), "
        "pg_get_constraintdef(c.oid), "
        "ARRAY(SELECT a.attname FROM pg_attribute a "
        "      WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey))::text[] "
        "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = %s AND c.contype IN ('p', 'u') "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid) "
        "ORDER BY c.conname",
        (schema, name),
    ).fetchall()
    for index, constraint, definition, columns in constraints:
        if unique_columns.intersection(columns):
            found.append(
                DeferrableIndex(
                    str(index),
                    f"ALTER TABLE {qualified} ADD CONSTRAINT {constraint} {definition}",
                    f"ALTER TABLE {qualified} DROP CONSTRAINT IF EXISTS {constraint}",
                )
            )
    return found


def drop_indexes(conn: psycopg.Connection[Any], indexes: Sequence[DeferrableIndex]) -> None:
    """Drop what :func:`deferrable_indexes` found, in the caller's transaction."""
    for index in indexes:
        conn.execute(sql.SQL(index.drop))  # statements built from pg_catalog


def defer_foreign_key_checks(conn: psycopg.Connection[Any]) -> bool:
    """Skip per-row FK triggers for this session when the role may (like pg_restore does).

    Per-row foreign-key triggers more than double the cost of COPY into the Rune tables.
    The backfill already refuses orphans before loading (references are checked against
    the loaded ids), and :func:`load.index_builds.prove_foreign_keys` proves it set-wise
    after each table.
    Roles that may not set ``session_replication_role`` (non-superusers) keep the
    triggers; nothing else changes. Returns whether the checks are deferred.
    """
    try:
        with conn.transaction():
            conn.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
