"""Apply a mapping feed to a batch of raw source rows.

The engine is pure: given a record batch of raw source values (decision 0001)
and the lookups it needs (which referenced ids exist, which keys lost a dedup
tie), it returns the target rows plus the accounting for every input row:
migrated, excluded by a named rule, or quarantined with a reason. The backfill,
the catch-up and reconciliation all call :func:`map_batch`, which is what makes
them agree.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import transform.mapping_record_builders  # noqa: F401  (registers its transforms)
from runeshift.errors import ConfigError
from transform.mapping_spec import (
    Call,
    Column,
    ColumnRule,
    Expr,
    Feed,
    Literal_,
    RowFilter,
    TargetMapping,
)
from transform.registry import get_transform
from transform.secret_scrubbing import (
    MASK,
    SECRET_VALUE_PATTERN,
    is_secret_column,
    scrub_secrets,
)

# ReferenceCheck(table, ids) -> boolean array: does each id exist in that target table?
ReferenceCheck = Callable[[str, pa.Array], pa.Array]
# ReferenceLookup(table, match_on, take, values) -> the ``take`` column (as text) of the row
# of ``table`` whose ``match_on`` column equals each value; null where no row matches.
ReferenceLookup = Callable[[str, str, str, pa.Array], pa.Array]

KEY_SEPARATOR = "|"


@dataclass(frozen=True)
class QuarantinedRow:
    source_key: str
    rule: str
    reason: str
    raw_row: dict[str, Any]


@dataclass(frozen=True)
class UnresolvedColumn:
    """Rows of one column set to NULL because the row their reference names is missing.

    ``wanted`` is aligned with the batch's rows: the id the row wanted (as text), null
    for rows whose reference resolved or that wanted nothing.
    """

    referenced_table: str
    wanted: pa.Array


@dataclass
class MappedBatch:
    """The result of mapping one batch: target rows and the fate of every source row.

    ``unresolved`` names, per target column referencing by id with ``on_missing: null``,
    the rows set to NULL and the id each wanted (empty when no row was nulled, the
    common case), so writers can record them (``runeshift.unresolved_references``).
    """

    target: str
    feed: Feed
    rows: pa.Table
    source_keys: pa.Array
    read: int
    excluded: Counter[str] = field(default_factory=Counter)
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)
    unresolved: dict[str, UnresolvedColumn] = field(default_factory=dict)

    @property
    def migrated(self) -> int:
        return int(self.rows.num_rows)


def null_id_references(feed: Feed) -> dict[str, str]:
    """The feed's columns referencing by id with ``on_missing: null``: column -> referenced table."""
    return {
        rule.target: rule.reference.table
        for rule in feed.columns
        if rule.reference is not None
        and rule.reference.on_missing == "null"
        and rule.reference.match_on is None
    }


def source_key_array(batch: pa.RecordBatch | pa.Table, key: Sequence[str]) -> pa.Array:
    """One text key per row: the key columns joined with '|'."""
    parts = [pc.cast(_column(batch, k), pa.string()) for k in key]
    if len(parts) == 1:
        return parts[0]
    joined = pc.binary_join_element_wise(*parts, KEY_SEPARATOR)
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _column(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    try:
        col = batch.column(name)
    except KeyError:
        raise ConfigError(
            f"source batch has no column '{name}' (columns: {', '.join(batch.schema.names)})"
        ) from None
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _literal_array(value: object, length: int) -> pa.Array:
    return pa.array([value] * length)


class _Evaluation:
    """Evaluates expressions over one batch, collecting errors and notes."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch
        self.notes: Counter[str] = Counter()

    def run(self, expr: Expr, where: str) -> tuple[pa.Array, pa.Array | None]:
        if isinstance(expr, Column):
            return _column(self.batch, expr.name), None
        if isinstance(expr, Literal_):
            return _literal_array(expr.value, self.batch.num_rows), None
        assert isinstance(expr, Call)
        arrays: list[pa.Array] = []
        errors: list[pa.Array] = []
        for arg in expr.args:
            values, errs = self.run(arg, where)
            arrays.append(values)
            if errs is not None:
                errors.append(errs)
        spec = get_transform(expr.transform)
        result = spec.fn(*arrays, **dict(expr.params))
        for note, count in result.notes.items():
            if count:
                self.notes[f"{where}: {note}"] += count
        if result.errors is not None:
            errors.append(result.errors)
        combined = pc.coalesce(*errors) if len(errors) > 1 else (errors[0] if errors else None)
        return result.values, combined


def _filter_mask(batch: pa.RecordBatch, flt: RowFilter) -> pa.Array:
    col = _column(batch, flt.column)
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        col = pc.cast(col, pa.string(), safe=False)
    if flt.op == "is null":
        return pc.is_null(col)
    if flt.op == "is not null":
        return pc.is_valid(col)
    values = pa.array(list(flt.values)).cast(col.type)
    member = pc.fill_null(pc.is_in(col, value_set=values), False)
    return pc.invert(member) if flt.op in ("!=", "not in") else member


def excluded_rules(feed: Feed, batch: pa.RecordBatch) -> pa.Array:
    """Per row of ``batch``, the rule that excludes it (the first that matches, as map_batch), else null."""
    rules = pa.nulls(batch.num_rows, pa.string())
    left = pa.array([True] * batch.num_rows, pa.bool_())
    for flt in feed.exclude_rows:
        hit = pc.fill_null(pc.and_(left, _filter_mask(batch, flt)), False)
        rules = pc.if_else(hit, pa.scalar(flt.rule, pa.string()), rules)
        left = pc.and_(left, pc.invert(hit))
    return rules


def _json_plain(value: Any) -> Any:
    """``value`` as JSON has it: text, numbers, booleans and null as they are, bytes as
    UTF-8 (undecodable bytes replaced), times and decimals as their text."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict | list):
        return json.loads(json.dumps(value, default=str))
    return str(value)


def _raw_rows(batch: pa.RecordBatch, indices: pa.Array) -> list[dict[str, Any]]:
    """The source values of the rows at ``indices``, secrets masked, ready for JSON.

    Column by column, not value by value: a million-row backfill quarantines tens of
    thousands of rows (36k licenses: 0.48 s of the mapping thread when every value went
    through ``scrub_secrets``). What ``scrub_secrets`` decides per value is decided here
    per column: a secret column is masked where not null, text and bytes that look like a
    password hash are found by one regex pass, and values of other types (none in the
    raw batches of decision 0001) still go through ``scrub_secrets`` one by one.
    """
    taken = batch.take(indices)
    names = taken.schema.names
    columns = [_raw_column(name, column) for name, column in zip(names, taken.columns, strict=True)]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _raw_column(name: str, column: pa.Array) -> list[Any]:
    """One column of :func:`_raw_rows`: JSON-ready values, secrets masked."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    if is_secret_column(name):
        return [MASK if valid else None for valid in pc.is_valid(column).to_pylist()]
    values: list[Any] = column.to_pylist()
    if _is_text_or_bytes(kind):
        hashed = pc.fill_null(pc.match_substring_regex(column, SECRET_VALUE_PATTERN), False)
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            values = [None if v is None else v.decode("utf-8", errors="replace") for v in values]
        if pc.any(hashed).as_py():
            values = [MASK if h else v for v, h in zip(values, hashed.to_pylist(), strict=True)]
        return values
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return values
    # anything else (nested, decimals, times, other text types) value by value, as before
    return [scrub_secrets({name: _json_plain(v)})[name] for v in values]


def _is_text_or_bytes(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _apply_loser_values(
    rule: ColumnRule,
    values: pa.Array,
    template: str,
    rows: list[int],
    out_cols: Mapping[str, pa.Array],
) -> pa.Array:
    py = values.to_pylist()
    for i in rows:
        context = {name: col[i].as_py() for name, col in out_cols.items()}
        text = template.format(**context)
        py[i] = (
            {"true": True, "false": False}.get(text, text)
            if pa.types.is_boolean(values.type)
            else text
        )
    return pa.array(py, type=values.type)


def map_batch(
    target: TargetMapping,
    feed: Feed,
    batch: pa.RecordBatch,
    *,
    references: ReferenceCheck | None = None,
    dedup_losers: Mapping[str, frozenset[str]] | None = None,
    lookups: ReferenceLookup | None = None,
    raw_rows: bool = True,
) -> MappedBatch:
    """Map ``batch`` (raw rows of ``feed``'s source table) to rows of ``target``.

    ``references`` answers whether referenced ids exist (orphans are quarantined or
    nulled as the spec says); ``dedup_losers`` maps a dedup rule to the source keys
    that lost its tie (computed over the whole table by :mod:`transform.dedup_planner`);
    ``lookups`` resolves columns whose reference has ``match_on`` (a value of a target
    column, not an id). ``raw_rows=False`` leaves quarantined rows without their (scrubbed)
    source values, for callers that only count them (reconciliation).
    """
    read = batch.num_rows
    excluded: Counter[str] = Counter()
    keep = pa.array([True] * read, pa.bool_())
    for flt in feed.exclude_rows:
        hit = pc.and_(keep, _filter_mask(batch, flt))
        count = int(pc.sum(pc.cast(hit, pa.int64())).as_py() or 0)
        if count:
            excluded[flt.rule] += count
        keep = pc.and_(keep, pc.invert(hit))
    if excluded:
        batch = batch.filter(keep)

    ev = _Evaluation(batch)
    out: dict[str, pa.Array] = {}
    wanted: dict[str, tuple[str, pa.Array]] = {}  # column -> (referenced table, wanted ids)
    errors: list[pa.Array] = []
    id_rule = feed.id_rule or target.id_rule
    id_values, id_errors = ev.run(id_rule.expr, f"{target.table}.id")
    out["id"] = id_values
    if id_errors is not None:
        errors.append(id_errors)
    for rule in feed.columns:
        where = f"{target.table}.{rule.target}"
        values, errs = ev.run(rule.expr, where)
        if rule.if_null is not None:
            values = pc.fill_null(values, pa.scalar(rule.if_null).cast(values.type))
        if rule.reference is not None and rule.reference.match_on is not None:
            if lookups is None:
                raise ConfigError(
                    f"{rule.where}: {where} is matched on {rule.reference.table}."
                    f"{rule.reference.match_on}; map_batch needs 'lookups' for it"
                )
            found = lookups(
                rule.reference.table, rule.reference.match_on, rule.reference.take, values
            )
            exists = pc.is_valid(found)
            missing = pc.and_(pc.invert(exists), pc.is_valid(values))
            values = found
        if rule.reference is not None and (
            references is not None or rule.reference.match_on is not None
        ):
            if rule.reference.match_on is None:
                assert references is not None
                exists = pc.fill_null(references(rule.reference.table, values), True)
                missing = pc.and_(pc.invert(exists), pc.is_valid(values))
            n_missing = int(pc.sum(pc.cast(missing, pa.int64())).as_py() or 0)
            if n_missing:
                if rule.reference.on_missing == "null":
                    if rule.reference.match_on is None:
                        wanted[rule.target] = (
                            rule.reference.table,
                            pc.if_else(
                                missing,
                                pc.cast(values, pa.string()),
                                pa.scalar(None, pa.string()),
                            ),
                        )
                    values = pc.if_else(missing, pa.scalar(None, values.type), values)
                    ev.notes[
                        f"{where}: referenced row missing in {rule.reference.table}, set to NULL"
                    ] += n_missing
                else:
                    sources = ", ".join(rule.expr.source_columns())
                    reason = f"orphan: no row in {rule.reference.table} for {sources}"
                    errors.append(
                        pc.if_else(missing, pa.scalar(reason), pa.scalar(None, pa.string()))
                    )
        if errs is not None:
            errors.append(pc.binary_join_element_wise(pa.scalar(f"{rule.target}: "), errs, ""))
        out[rule.target] = values

    keys = source_key_array(batch, feed.key)
    for dd in feed.dedup:
        losers = (dedup_losers or {}).get(dd.rule, frozenset())
        if not losers:
            continue
        is_loser = pc.fill_null(
            pc.is_in(keys, value_set=pa.array(sorted(losers), pa.string())), False
        )
        rows = [i for i, flag in enumerate(is_loser.to_pylist()) if flag]
        if not rows:
            continue
        ev.notes[f"{target.table}: {dd.rule} (tie lost, kept with {dict(dd.loser_set)})"] += len(
            rows
        )
        snapshot = dict(out)
        for column, template in dd.loser_set:
            rule = next(r for r in feed.columns if r.target == column)
            out[column] = _apply_loser_values(rule, out[column], template, rows, snapshot)

    quarantined: list[QuarantinedRow] = []
    if errors:
        reason = pc.coalesce(*errors) if len(errors) > 1 else errors[0]
        bad = pc.is_valid(reason)
        bad_rows = pc.indices_nonzero(bad)
        if len(bad_rows):
            texts: list[str] = pc.take(reason, bad_rows).to_pylist()
            bad_keys: list[str] = pc.take(keys, bad_rows).to_pylist()
            raws = _raw_rows(batch, bad_rows) if raw_rows else [{} for _ in texts]
            quarantined = [
                QuarantinedRow(
                    key,
                    "orphan" if text.startswith("orphan:") else "unmappable_value",
                    text,
                    raw,
                )
                for key, text, raw in zip(bad_keys, texts, raws, strict=True)
            ]
            good = pc.invert(bad)
            out = {name: pc.filter(col, good) for name, col in out.items()}
            wanted = {name: (ref, pc.filter(w, good)) for name, (ref, w) in wanted.items()}
            keys = pc.filter(keys, good)
    table = pa.table(out)
    unresolved = {
        name: UnresolvedColumn(ref, w) for name, (ref, w) in wanted.items() if w.null_count < len(w)
    }
    return MappedBatch(
        target.table, feed, table, keys, read, excluded, quarantined, ev.notes, unresolved
    )
