"""The inverse of a target mapping: a Rune row -> the legacy source row(s) it came from.

Reverse replication (decision 0005) writes every change made in Rune back to the legacy
databases during the soak. It uses the same specs as the forward path (invariant 2): for
each feed of a target table, every source column is recovered by running the forward
expression backwards through the transforms' declared inverses:

* ``legacy_license_id: id`` gives ``id = legacy_license_id`` (a bare column is copied);
* ``expires_at: ny_local_to_utc(zero_date_to_null(expires_at))`` gives
  ``expires_at = null_to_zero_date(utc_to_ny_local(expires_at))`` (outermost first);
* ``account_id: uuid_from_key(member_id, entity='account')`` with ``references:`` gives
  ``member_id`` = the legacy key of the referenced account (uuid5 is one-way, so the key is
  looked up, see :class:`ReferenceInverse`);
* constants (``can_login: true``) have no source column and write nothing.

What cannot be derived is declared in the feed's ``reverse:`` section
(:class:`transform.mapping_spec.FeedReverse`): an expression over target columns for a
source column (``temp_ban: ban_to_temp_ban(ban_state, banned_until)``: two target columns
feed one source column), target columns deliberately not written back (``skip``, with the
reason), or a feed that is never written back at all (``one_way``: the Shopify store).
:func:`check_reversibility` reports every target column Rune may write whose source
column(s) no rule recovers: changes to it would be lost by a rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

import transform.mapping_record_builders  # noqa: F401  (registers its transforms)
from transform.mapping_spec import (
    Call,
    Column,
    ColumnRule,
    Expr,
    Feed,
    Literal_,
    MappingSet,
    TargetMapping,
)
from transform.registry import get_transform

ReversibilityKind = Literal["no_inverse", "no_key", "unknown_column", "one_way"]
Severity = Literal["error", "info"]
# ResolveKeys(table, ids) -> the legacy key (first key column) of each referenced target row,
# None where the row is unknown.
ResolveKeys = Callable[[str, Sequence[str | None]], list[Any]]


@dataclass(frozen=True)
class ReversibilityFinding:
    """A target column or table whose Rune-side changes a rollback would lose (or, as
    ``info``, a table declared one-way)."""

    kind: ReversibilityKind
    table: str
    column: str | None
    detail: str
    fix: str
    severity: Severity = "error"

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "table": self.table,
            "column": self.column,
            "detail": self.detail,
            "fix": self.fix,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class InverseColumn:
    """``source_column`` = ``expr`` evaluated over the target row's columns."""

    source_column: str
    expr: Expr
    declared: bool

    @property
    def reads(self) -> tuple[str, ...]:
        """The target columns the expression reads."""
        return self.expr.source_columns()


@dataclass(frozen=True)
class ReferenceInverse:
    """``source_column`` is the legacy key of the ``table`` row whose id is ``target_column``."""

    source_column: str
    target_column: str
    table: str


@dataclass(frozen=True)
class InverseFeed:
    """How target rows are written back to one source table."""

    target: str
    feed: Feed
    key: tuple[tuple[str, str], ...]  # (source key column, target column holding it)
    columns: tuple[InverseColumn, ...]
    references: tuple[ReferenceInverse, ...]
    skipped: tuple[tuple[str, str], ...]
    one_way: str | None

    @property
    def source(self) -> str:
        return self.feed.source

    @property
    def table(self) -> str:
        return self.feed.table

    @property
    def reversible(self) -> bool:
        return self.one_way is None and len(self.key) == len(self.feed.key)

    def source_columns(self) -> tuple[str, ...]:
        """Every source column written back: the key, then the recovered columns."""
        cols = dict.fromkeys(k for k, _ in self.key)
        cols.update(dict.fromkeys(c.source_column for c in self.columns))
        cols.update(dict.fromkeys(r.source_column for r in self.references))
        return tuple(cols)

    def reads(self, source_column: str) -> tuple[str, ...]:
        """The target columns ``source_column`` is computed from."""
        for k, t in self.key:
            if k == source_column:
                return (t,)
        for c in self.columns:
            if c.source_column == source_column:
                return c.reads
        for r in self.references:
            if r.source_column == source_column:
                return (r.target_column,)
        return ()


@dataclass(frozen=True)
class InverseMapping:
    target: TargetMapping
    feeds: tuple[InverseFeed, ...]

    @property
    def table(self) -> str:
        return self.target.table

    @property
    def primary(self) -> InverseFeed:
        return next(f for f in self.feeds if f.feed.primary)


@dataclass
class ReverseRows:
    """Source rows computed from target rows: ``rows[i]`` is None where row i failed."""

    feed: InverseFeed
    keys: list[tuple[Any, ...] | None]
    rows: list[dict[str, Any] | None]
    errors: list[str | None]
    notes: dict[str, int] = field(default_factory=dict)


def _invert(expr: Expr, value: Expr) -> list[tuple[str, Expr]] | None:
    """[(source column, expression over target columns)], or None if ``expr`` has no inverse."""
    if isinstance(expr, Column):
        return [(expr.name, value)]
    if isinstance(expr, Literal_):
        return []
    assert isinstance(expr, Call)
    spec = get_transform(expr.transform)
    if spec.inverse is None or len(expr.args) != 1:
        return None
    inverse = get_transform(spec.inverse)
    if inverse.min_arrays > 1:
        return None  # needs several target columns: declare it under 'reverse: columns:'
    params = tuple((k, v) for k, v in expr.params if k in inverse.params)
    if inverse.required_params - {k for k, _ in params}:
        return None
    return _invert(expr.args[0], Call(inverse.name, (value,), params))


def _reference_key(rule: ColumnRule) -> tuple[str, str] | None:
    """(source column, referenced table) for ``uuid_from_key(col, ...)`` references."""
    if rule.reference is None or rule.reference.match_on is not None:
        return None
    expr = rule.expr
    if isinstance(expr, Call) and expr.transform == "uuid_from_key" and len(expr.args) == 1:
        arg = expr.args[0]
        if isinstance(arg, Column):
            return arg.name, rule.reference.table
    return None


def _key_columns(target: TargetMapping, feed: Feed) -> tuple[tuple[str, str], ...]:
    """Where each key column of ``feed`` is found in the target row."""
    found: list[tuple[str, str]] = []
    id_expr = (feed.id_rule or target.id_rule).expr
    for key in feed.key:
        if isinstance(id_expr, Column) and id_expr.name == key:
            found.append((key, "id"))
            continue
        holder = next(
            (
                r.target
                for f in target.feeds
                for r in f.columns
                if isinstance(r.expr, Column) and r.expr.name == key and r.reference is None
            ),
            None,
        )
        if holder is not None:
            found.append((key, holder))
    return tuple(found)


def build_inverse_feed(target: TargetMapping, feed: Feed) -> InverseFeed:
    """The inverse of one feed: derived from the transforms, completed by ``reverse:``."""
    declared = feed.reverse
    one_way = declared.one_way if declared else None
    columns: dict[str, InverseColumn] = {}
    references: dict[str, ReferenceInverse] = {}
    key = _key_columns(target, feed)
    key_names = {k for k, _ in key}
    for rule in feed.columns:
        ref = _reference_key(rule)
        if ref is not None:
            references.setdefault(ref[0], ReferenceInverse(ref[0], rule.target, ref[1]))
            continue
        if rule.reference is not None and not isinstance(rule.expr, Column):
            continue
        inverted = _invert(rule.expr, Column(rule.target))
        for source_column, expr in inverted or []:
            if source_column not in key_names:
                columns.setdefault(source_column, InverseColumn(source_column, expr, False))
    for source_column, expr in declared.columns if declared else ():
        columns[source_column] = InverseColumn(source_column, expr, True)
    return InverseFeed(
        target=target.table,
        feed=feed,
        key=key,
        columns=tuple(columns.values()),
        references=tuple(references.values()),
        skipped=declared.skip if declared else (),
        one_way=one_way,
    )


def build_inverse(target: TargetMapping) -> InverseMapping:
    """The inverse of every feed of ``target``."""
    return InverseMapping(target, tuple(build_inverse_feed(target, f) for f in target.feeds))


def target_columns(target: TargetMapping) -> tuple[str, ...]:
    """Every column the mapping writes in ``target`` (id first)."""
    return tuple(dict.fromkeys(["id", *(r.target for f in target.feeds for r in f.columns)]))


def check_reversibility(mappings: MappingSet) -> list[ReversibilityFinding]:
    """Every target column whose changes reverse replication cannot write back.

    Errors: a column computed from a source column that no inverse or ``reverse:`` rule
    recovers (``no_inverse``), a feed whose key cannot be found in the target row
    (``no_key``), a ``reverse:`` rule naming a column the target does not have
    (``unknown_column``). Info: a table whose feeds are all declared ``one_way``.
    """
    findings: list[ReversibilityFinding] = []
    for target in mappings.targets:
        inverse = build_inverse(target)
        known = set(target_columns(target))
        if all(f.one_way for f in inverse.feeds):
            reasons = "; ".join(dict.fromkeys(f.one_way or "" for f in inverse.feeds))
            findings.append(
                ReversibilityFinding(
                    "one_way",
                    target.table,
                    None,
                    f"not written back to the legacy systems: {reasons}",
                    "nothing to do: a rollback from soak loses Rune's writes to this table "
                    "(runbooks/rollback-from-soak.md says so)",
                    "info",
                )
            )
            continue
        for inv in inverse.feeds:
            findings.extend(_feed_findings(target, inv, known))
    return findings


def _feed_findings(
    target: TargetMapping, inv: InverseFeed, known: set[str]
) -> list[ReversibilityFinding]:
    if inv.one_way is not None:
        return []
    feed = inv.feed
    where = str(feed.reverse.where if feed.reverse and feed.reverse.where else feed.where)
    out: list[ReversibilityFinding] = []
    found = {k for k, _ in inv.key}
    for key in feed.key:
        if key not in found:
            out.append(
                ReversibilityFinding(
                    "no_key",
                    target.table,
                    None,
                    f"feed {feed.qualified} is keyed by {key}, which no target column holds as it is",
                    f"map {key} to a legacy_* column of {target.table}, or declare the feed "
                    f"'reverse: {{one_way: <reason>}}' ({feed.where})",
                )
            )
    for inv_col in inv.columns:
        for col in inv_col.reads:
            if col not in known:
                out.append(
                    ReversibilityFinding(
                        "unknown_column",
                        target.table,
                        col,
                        f"'reverse:' rule for {feed.table}.{inv_col.source_column} reads {col}, "
                        f"which {target.table} does not have",
                        f"use a column the mapping writes ({where})",
                    )
                )
    for col, _ in inv.skipped:
        if col not in known:
            out.append(
                ReversibilityFinding(
                    "unknown_column",
                    target.table,
                    col,
                    f"'reverse: skip:' names {col}, which {target.table} does not have",
                    f"remove it ({where})",
                )
            )
    recovered = set(inv.source_columns())
    skipped = {c for c, _ in inv.skipped}
    for rule in feed.columns:
        missing = [c for c in rule.expr.source_columns() if c not in recovered]
        if missing and rule.target not in skipped:
            out.append(
                ReversibilityFinding(
                    "no_inverse",
                    target.table,
                    rule.target,
                    f"{rule.expr.render()} reads {feed.table}.{', '.join(missing)}; no inverse "
                    "transform or 'reverse:' rule writes it back, so a rollback would lose "
                    "Rune's changes to it",
                    f"declare 'reverse: columns: {{{missing[0]}: <expression over {target.table} "
                    f"columns>}}' or 'reverse: skip: {{{rule.target}: <reason>}}' ({feed.where})",
                )
            )
    return out


def _evaluate(
    expr: Expr, rows: pa.Table, notes: dict[str, int]
) -> tuple[pa.Array, pa.Array | None]:
    """Evaluate an expression over target columns; returns values and per-row errors."""
    if isinstance(expr, Column):
        col = rows.column(expr.name)
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col, None
    if isinstance(expr, Literal_):
        return pa.array([expr.value] * rows.num_rows), None
    assert isinstance(expr, Call)
    arrays: list[pa.Array] = []
    errors: pa.Array | None = None
    for arg in expr.args:
        values, errs = _evaluate(arg, rows, notes)
        arrays.append(values)
        errors = _merge(errors, errs)
    result = get_transform(expr.transform).fn(*arrays, **dict(expr.params))
    for note, count in result.notes.items():
        if count:
            notes[f"{expr.transform}: {note}"] = notes.get(f"{expr.transform}: {note}", 0) + count
    return result.values, _merge(errors, result.errors)


def _merge(a: pa.Array | None, b: pa.Array | None) -> pa.Array | None:
    if a is None:
        return b
    if b is None:
        return a
    import pyarrow.compute as pc

    return pc.coalesce(a, b)


def invert_rows(
    inv: InverseFeed,
    rows: pa.Table,
    resolve: ResolveKeys,
    *,
    only: Sequence[str] | None = None,
) -> ReverseRows:
    """Compute the source rows of ``inv``'s table for target ``rows`` (Arrow, target types).

    ``only`` limits the recovered columns to those source columns (the ones whose target
    columns changed); the key is always computed. A row whose key is null (a row Rune made
    without a legacy key) or whose inverse transform rejects a value gets an error instead.
    """
    n = rows.num_rows
    notes: dict[str, int] = {}
    errors: list[str | None] = [None] * n
    keys: list[list[Any]] = [[] for _ in range(n)]
    for _, target_column in inv.key:
        for i, value in enumerate(rows.column(target_column).to_pylist()):
            if value is None and errors[i] is None:
                errors[i] = (
                    f"{inv.target} row has no legacy key ({target_column} is null): rows Rune "
                    f"creates during the soak must carry their legacy key (decision 0005)"
                )
            keys[i].append(value)
    wanted = set(only) if only is not None else None
    values: dict[str, list[Any]] = {}
    for col in inv.columns:
        if wanted is not None and col.source_column not in wanted:
            continue
        arr, errs = _evaluate(col.expr, rows, notes)
        values[col.source_column] = arr.to_pylist()
        if errs is not None:
            for i, reason in enumerate(errs.to_pylist()):
                if reason is not None and errors[i] is None:
                    errors[i] = f"{inv.table}.{col.source_column}: {reason}"
    for ref in inv.references:
        if wanted is not None and ref.source_column not in wanted:
            continue
        ids = rows.column(ref.target_column).to_pylist()
        resolved = resolve(ref.table, [None if v is None else str(v) for v in ids])
        for i, (rid, legacy) in enumerate(zip(ids, resolved, strict=True)):
            if rid is not None and legacy is None and errors[i] is None:
                errors[i] = (
                    f"{inv.table}.{ref.source_column}: {ref.target_column} {rid} names a "
                    f"{ref.table} row without a legacy key"
                )
        values[ref.source_column] = resolved
    out_rows: list[dict[str, Any] | None] = []
    out_keys: list[tuple[Any, ...] | None] = []
    for i in range(n):
        if errors[i] is not None:
            out_rows.append(None)
            out_keys.append(None)
            continue
        row = {k: keys[i][j] for j, (k, _) in enumerate(inv.key)}
        row.update({c: v[i] for c, v in values.items()})
        out_rows.append(row)
        out_keys.append(tuple(keys[i]))
    return ReverseRows(inv, out_keys, out_rows, errors, notes)


def changed_source_columns(
    inv: InverseFeed, changed_targets: Mapping[str, bool] | set[str]
) -> list[str]:
    """Source columns whose value depends on a changed target column."""
    changed = set(changed_targets)
    return [c for c in inv.source_columns() if changed.intersection(inv.reads(c))]


__all__ = [
    "InverseColumn",
    "InverseFeed",
    "InverseMapping",
    "ReferenceInverse",
    "ReverseRows",
    "ReversibilityFinding",
    "build_inverse",
    "build_inverse_feed",
    "changed_source_columns",
    "check_reversibility",
    "invert_rows",
    "target_columns",
]
