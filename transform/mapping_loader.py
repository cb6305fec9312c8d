"""Load ``mappings/*.yaml`` into a validated :class:`MappingSet`.

Every error names ``file:line``, the rule broken and the fix, e.g.
``mappings/accounts.yaml:14: unknown transform 'repair_mojibak'; did you mean
'repair_mojibake'?``. Validation covers structure, transform names and
parameters, references between target tables (which also give the load
order) and exclusions that carry a reason.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml

import transform.mapping_record_builders  # noqa: F401  (registers its transforms)
from runeshift.errors import ConfigError
from transform import store_values  # noqa: F401  (registers its transforms)
from transform.mapping_expression import ExpressionError, parse_expression
from transform.mapping_spec import (
    Call,
    ColumnRule,
    Dedup,
    ExcludedTable,
    Expr,
    Feed,
    FeedReverse,
    FilterOp,
    Literal_,
    Location,
    MappingSet,
    OnMissing,
    Reference,
    RowFilter,
    SortDirection,
    TargetMapping,
)

SOURCES = ("forums", "repo", "shopify")
BASELINE_FILE = (
    "source_baseline.yaml"  # the recorded source schema, read by transform.mapping_drift
)
_FILTER_OPS: tuple[FilterOp, ...] = ("==", "!=", "in", "not in", "is null", "is not null")


class _LineDict(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class _LineList(list[Any]):
    line: int = 0


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings and sequences remember their line numbers."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    result = _LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[str(key)] = loader.construct_object(value_node, deep=True)
        result.key_lines[str(key)] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _LineList:
    result = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class _Spec:
    """Helpers bound to one file for located errors."""

    def __init__(self, file: str) -> None:
        self.file = file

    def loc(self, node: object, key: str | None = None) -> Location:
        line = 0
        if isinstance(node, _LineDict):
            line = node.key_lines.get(key, node.line) if key else node.line
        elif isinstance(node, _LineList):
            line = node.line
        return Location(self.file, line)

    def fail(self, where: Location, message: str) -> ConfigError:
        return ConfigError(f"{where}: {message}")

    def mapping(
        self, node: object, where: Location, what: str, allowed: Iterable[str]
    ) -> _LineDict:
        if not isinstance(node, _LineDict):
            raise self.fail(where, f"{what} must be a mapping (key: value lines)")
        allowed_set = set(allowed)
        for key in node:
            if key not in allowed_set:
                hint = difflib.get_close_matches(key, allowed_set, n=1)
                fix = (
                    f"did you mean '{hint[0]}'?"
                    if hint
                    else f"allowed keys: {', '.join(sorted(allowed_set))}"
                )
                raise self.fail(self.loc(node, key), f"unknown key '{key}' in {what}; {fix}")
        return node

    def text(self, node: _LineDict, key: str, what: str) -> str:
        value = node.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(self.loc(node, key), f"{what} needs '{key}' (a non-empty text)")
        return value.strip()


def _check_call(spec: _Spec, expr: Expr, where: Location) -> None:
    from transform.registry import get_transform

    if not isinstance(expr, Call):
        return
    try:
        transform = get_transform(expr.transform)
    except ConfigError as exc:
        raise spec.fail(where, str(exc)) from None
    try:
        transform.validate_params(dict(expr.params), where=str(where))
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None
    if len(expr.args) < transform.min_arrays or (
        transform.max_arrays is not None and len(expr.args) > transform.max_arrays
    ):
        most = (
            "any number of" if transform.max_arrays is None else f"at most {transform.max_arrays}"
        )
        raise spec.fail(
            where,
            f"transform '{expr.transform}' takes at least {transform.min_arrays} and {most} "
            f"column argument(s), got {len(expr.args)}",
        )
    for arg in expr.args:
        _check_call(spec, arg, where)


def _expression(spec: _Spec, text: object, where: Location) -> Expr:
    if isinstance(text, (bool, int, float)):
        return Literal_(text)  # YAML already typed it: `can_login: true`
    if not isinstance(text, str):
        raise spec.fail(where, "a column expression must be text such as 'repair_mojibake(name)'")
    try:
        expr = parse_expression(text)
    except ExpressionError as exc:
        raise spec.fail(where, f"cannot parse expression {text!r}: {exc}") from None
    _check_call(spec, expr, where)
    return expr


def _column_rule(spec: _Spec, target: str, raw: object, where: Location) -> ColumnRule:
    if isinstance(raw, _LineDict):
        node = spec.mapping(
            raw,
            where,
            f"column '{target}'",
            ("expr", "references", "on_missing", "if_null", "match_on", "take"),
        )
        expr = _expression(spec, node.get("expr"), spec.loc(node, "expr"))
        reference = None
        if "references" in node:
            on_missing = node.get("on_missing", "quarantine")
            if on_missing not in ("quarantine", "null"):
                raise spec.fail(
                    spec.loc(node, "on_missing"), "on_missing must be 'quarantine' or 'null'"
                )
            match_on = node.get("match_on")
            reference = Reference(
                str(node["references"]),
                cast(OnMissing, on_missing),
                str(match_on) if match_on else None,
                str(node.get("take") or "id"),
            )
        elif "match_on" in node or "take" in node:
            raise spec.fail(
                spec.loc(node), f"column '{target}' has 'match_on'/'take' but no 'references'"
            )
        return ColumnRule(target, expr, reference, node.get("if_null"), where)
    return ColumnRule(target, _expression(spec, raw, where), None, None, where)


def _row_filter(spec: _Spec, raw: object, where: Location) -> RowFilter:
    node = spec.mapping(raw, where, "an exclude_rows rule", ("rule", "reason", "where"))
    cond = spec.mapping(
        node.get("where"), spec.loc(node, "where"), "'where'", ("column", "op", "value", "values")
    )
    op = cond.get("op", "==")
    if op not in _FILTER_OPS:
        raise spec.fail(spec.loc(cond, "op"), f"op {op!r} is not one of {', '.join(_FILTER_OPS)}")
    values: tuple[object, ...]
    if op in ("in", "not in"):
        raw_values = cond.get("values")
        if not isinstance(raw_values, list):
            raise spec.fail(spec.loc(cond), f"op '{op}' needs 'values: [...]'")
        values = tuple(raw_values)
    elif op in ("is null", "is not null"):
        values = ()
    else:
        values = (cond.get("value"),)
    return RowFilter(
        rule=spec.text(node, "rule", "an exclude_rows rule"),
        reason=spec.text(node, "reason", "an exclude_rows rule"),
        column=spec.text(cond, "column", "'where'"),
        op=cast(FilterOp, op),
        values=values,
        where=where,
    )


def _dedup(spec: _Spec, raw: object, where: Location) -> Dedup:
    node = spec.mapping(
        raw, where, "a dedup rule", ("rule", "reason", "column", "order_by", "losers")
    )
    order: list[tuple[str, SortDirection]] = []
    for item in node.get("order_by") or []:
        parts = str(item).split()
        direction = parts[1].lower() if len(parts) > 1 else "asc"
        if len(parts) > 2 or direction not in ("asc", "desc"):
            raise spec.fail(
                spec.loc(node, "order_by"), f"order_by item {item!r} must be 'column [asc|desc]'"
            )
        order.append((parts[0], cast(SortDirection, direction)))
    if not order:
        raise spec.fail(
            spec.loc(node), "a dedup rule needs 'order_by' to pick its winner deterministically"
        )
    losers = node.get("losers")
    if not isinstance(losers, dict) or not losers:
        raise spec.fail(
            spec.loc(node, "losers"),
            "a dedup rule needs 'losers: {column: value}' saying what losers get",
        )
    return Dedup(
        rule=spec.text(node, "rule", "a dedup rule"),
        reason=spec.text(node, "reason", "a dedup rule"),
        column=spec.text(node, "column", "a dedup rule"),
        order_by=tuple(order),
        loser_set=tuple((str(k), str(v)) for k, v in losers.items()),
        where=where,
    )


def _source_ref(spec: _Spec, text: str, where: Location) -> tuple[str, str]:
    source, _, table = text.partition(".")
    if source not in SOURCES or not table:
        raise spec.fail(
            where,
            f"source {text!r} must be '<source>.<table>' with source one of {', '.join(SOURCES)}",
        )
    return source, table


def _feed(spec: _Spec, raw: object, where: Location, *, primary: bool) -> Feed:
    node = spec.mapping(
        raw,
        where,
        "a feed",
        (
            "source",
            "key",
            "id",
            "columns",
            "exclude_columns",
            "exclude_rows",
            "dedup",
            "on_missing",
            "reverse",
        ),
    )
    id_rule = None
    if "id" in node:
        id_rule = ColumnRule(
            "id",
            _expression(spec, node.get("id"), spec.loc(node, "id")),
            None,
            None,
            spec.loc(node, "id"),
        )
    source, table = _source_ref(spec, spec.text(node, "source", "a feed"), spec.loc(node, "source"))
    key = node.get("key")
    if not isinstance(key, list) or not key:
        raise spec.fail(
            spec.loc(node, "key"),
            f"feed {source}.{table} needs 'key: [column, ...]' (its primary key)",
        )
    columns_node = node.get("columns") or _LineDict()
    if not isinstance(columns_node, _LineDict):
        raise spec.fail(
            spec.loc(node, "columns"), "'columns' must map target columns to expressions"
        )
    columns = tuple(
        _column_rule(spec, target, value, spec.loc(columns_node, target))
        for target, value in columns_node.items()
    )
    excludes_node = node.get("exclude_columns") or {}
    excludes: list[tuple[str, str]] = []
    for column, reason in excludes_node.items():
        if not isinstance(reason, str) or not reason.strip():
            raise spec.fail(
                spec.loc(excludes_node, column),
                f"excluded column {table}.{column} needs a reason: '{column}: why it is not migrated'",
            )
        excludes.append((column, reason.strip()))
    on_missing = node.get("on_missing", "quarantine")
    if on_missing not in ("quarantine", "null"):
        raise spec.fail(spec.loc(node, "on_missing"), "on_missing must be 'quarantine' or 'null'")
    return Feed(
        source=source,
        table=table,
        key=tuple(str(k) for k in key),
        primary=primary or id_rule is not None,
        columns=columns,
        exclude_columns=tuple(excludes),
        exclude_rows=tuple(
            _row_filter(spec, r, spec.loc(r)) for r in node.get("exclude_rows") or []
        ),
        dedup=tuple(_dedup(spec, d, spec.loc(d)) for d in node.get("dedup") or []),
        on_missing=cast(OnMissing, on_missing),
        where=where,
        id_rule=id_rule,
        reverse=_reverse(spec, node["reverse"], spec.loc(node, "reverse"))
        if "reverse" in node
        else None,
    )


def _reverse(spec: _Spec, raw: object, where: Location) -> FeedReverse:
    """A feed's optional ``reverse:`` section (see :class:`FeedReverse`)."""
    node = spec.mapping(raw, where, "'reverse'", ("columns", "skip", "one_way"))
    columns_node = node.get("columns") or _LineDict()
    if not isinstance(columns_node, _LineDict):
        raise spec.fail(
            spec.loc(node, "columns"),
            "'reverse: columns:' must map source columns to expressions over target columns",
        )
    skip_node = node.get("skip") or _LineDict()
    skips: list[tuple[str, str]] = []
    for column, reason in skip_node.items():
        if not isinstance(reason, str) or not reason.strip():
            raise spec.fail(
                spec.loc(skip_node, column),
                f"'reverse: skip:' column {column} needs a reason: '{column}: why changes to it "
                "are not written back'",
            )
        skips.append((str(column), reason.strip()))
    one_way = node.get("one_way")
    if one_way is not None and (not isinstance(one_way, str) or not one_way.strip()):
        raise spec.fail(spec.loc(node, "one_way"), "'one_way' needs a reason (a non-empty text)")
    return FeedReverse(
        columns=tuple(
            (str(col), _expression(spec, text, spec.loc(columns_node, col)))
            for col, text in columns_node.items()
        ),
        skip=tuple(skips),
        one_way=one_way.strip() if isinstance(one_way, str) else None,
        where=where,
    )


def _feeds(spec: _Spec, table: str, node: _LineDict, *, owner: bool) -> tuple[Feed, ...]:
    feeds_node = node.get("from")
    if not isinstance(feeds_node, list) or not feeds_node:
        raise spec.fail(
            spec.loc(node), f"target {table} needs 'from:' with at least one source feed"
        )
    return tuple(
        _feed(spec, f, spec.loc(f), primary=owner and i == 0) for i, f in enumerate(feeds_node)
    )


def _target(spec: _Spec, table: str, raw: object, where: Location) -> TargetMapping:
    node = spec.mapping(raw, where, f"target {table}", ("id", "from"))
    feeds = _feeds(spec, table, node, owner=True)
    id_rule = ColumnRule(
        "id",
        _expression(spec, node.get("id"), spec.loc(node, "id")),
        None,
        None,
        spec.loc(node, "id"),
    )
    return _checked_target(spec, table, id_rule, feeds, where)


def _checked_target(
    spec: _Spec, table: str, id_rule: ColumnRule, feeds: tuple[Feed, ...], where: Location
) -> TargetMapping:
    for feed in feeds:
        feed_id = feed.id_rule or id_rule
        missing = [c for c in feed_id.expr.source_columns() if c not in feed.key]
        if missing:
            raise spec.fail(
                feed.where,
                f"the id of {table} is computed from {', '.join(missing)}, which feed {feed.qualified} "
                f"does not have in its key {list(feed.key)}",
            )
    return TargetMapping(table, id_rule, feeds, where)


def _order_by_references(targets: list[TargetMapping]) -> tuple[TargetMapping, ...]:
    by_name = {t.table: t for t in targets}
    for t in targets:
        for ref in t.references():
            if ref not in by_name:
                raise ConfigError(
                    f"{t.where}: {t.table} references {ref}, which no mapping defines"
                )
    ordered: list[TargetMapping] = []
    state: dict[str, str] = {}

    def visit(t: TargetMapping, chain: tuple[str, ...]) -> None:
        if state.get(t.table) == "done":
            return
        if state.get(t.table) == "visiting":
            raise ConfigError(f"{t.where}: reference cycle {' -> '.join((*chain, t.table))}")
        state[t.table] = "visiting"
        for ref in t.references():
            if ref != t.table:
                visit(by_name[ref], (*chain, t.table))
        state[t.table] = "done"
        ordered.append(t)

    for t in targets:
        visit(t, ())
    return tuple(ordered)


def load_mapping_texts(texts: Mapping[str, str]) -> MappingSet:
    """Load specs given as {file name: YAML text}; used by tests and by :func:`load_mappings`."""
    targets: list[TargetMapping] = []
    extensions: list[tuple[_Spec, str, _LineDict, Location]] = []
    excluded: list[ExcludedTable] = []
    digest = hashlib.sha256()
    for file, text in sorted(texts.items()):
        digest.update(file.encode() + b"\0" + text.encode() + b"\0")
        spec = _Spec(file)
        try:
            doc = yaml.load(text, Loader=_LineLoader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if doc is None:
            continue
        root = spec.mapping(
            doc, Location(file, 1), "a mapping file", ("targets", "excluded_tables")
        )
        for table, raw in (root.get("targets") or {}).items():
            where = spec.loc(root["targets"], table)
            if isinstance(raw, _LineDict) and "id" not in raw:
                # No 'id:': the declaration adds feeds to a target whose id another file owns
                # (the store's customers feeding rune.accounts).
                node = spec.mapping(raw, where, f"target {table}", ("from",))
                extensions.append((spec, table, node, where))
                continue
            if any(t.table == table for t in targets):
                raise spec.fail(where, f"target {table} is mapped twice")
            targets.append(_target(spec, table, raw, where))
        ex_node = root.get("excluded_tables") or {}
        for ref, reason in ex_node.items():
            where = spec.loc(ex_node, ref)
            source, table = _source_ref(spec, ref, where)
            if not isinstance(reason, str) or not reason.strip():
                raise spec.fail(where, f"excluded table {ref} needs a reason")
            excluded.append(ExcludedTable(source, table, reason.strip(), where))
    for spec, table, node, where in extensions:
        index = next((i for i, t in enumerate(targets) if t.table == table), None)
        if index is None:
            raise spec.fail(
                where, f"target {table} has no 'id:' and no other spec declares it; add 'id: ...'"
            )
        base = targets[index]
        added = _feeds(spec, table, node, owner=False)
        targets[index] = _checked_target(
            spec, table, base.id_rule, (*base.feeds, *added), base.where
        )
    return MappingSet(
        targets=_order_by_references(targets),
        excluded_tables=tuple(excluded),
        checksum=digest.hexdigest()[:16],
        files=tuple(sorted(texts)),
    )


def load_mappings(folder: Path | None = None) -> MappingSet:
    """Load every ``*.yaml`` in ``folder`` (default: the specs shipped in the ``mappings`` package)."""
    if folder is not None:
        texts = {
            f"{folder.name}/{p.name}": p.read_text()
            for p in sorted(folder.glob("*.yaml"))
            if p.name != BASELINE_FILE
        }
    else:
        pkg = resources.files("mappings")
        texts = {
            f"mappings/{p.name}": p.read_text()
            for p in sorted(pkg.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml") and p.name != BASELINE_FILE
        }
    if not texts:
        raise ConfigError(f"no mapping specs (*.yaml) found in {folder or 'the mappings package'}")
    return load_mapping_texts(texts)
