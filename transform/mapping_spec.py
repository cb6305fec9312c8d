"""Typed model of the YAML mapping specs in ``mappings/``.

One spec drives every path: the backfill applies it to snapshot batches, the
catch-up to binlog rows, reconciliation to both sides, and the reverse path
uses the inverses of its transforms. Every model keeps the ``file:line`` it
came from so errors can point at the spec.

A target table is fed by one *primary* source table (its rows own the target
rows) and any number of *contributing* source tables that fill more columns
of the same target row, matched by the deterministic id (e.g. ``auth0_links``
adds ``auth0_sub`` to the account of the same member).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

OnMissing = Literal["quarantine", "null"]
FilterOp = Literal["==", "!=", "in", "not in", "is null", "is not null"]
SortDirection = Literal["asc", "desc"]


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Call:
    """``fn(arg, ..., param=value)``: args are source columns or nested calls."""

    transform: str
    args: tuple[Expr, ...]
    params: tuple[tuple[str, object], ...] = ()

    def source_columns(self) -> tuple[str, ...]:
        cols: list[str] = []
        for arg in self.args:
            cols.extend(arg.source_columns())
        return tuple(cols)

    def render(self) -> str:
        parts = [a.render() for a in self.args]
        parts += [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self.params]
        return f"{self.transform}({', '.join(parts)})"


@dataclass(frozen=True)
class Column:
    """A bare source column: copied as it is."""

    name: str

    def source_columns(self) -> tuple[str, ...]:
        return (self.name,)

    def render(self) -> str:
        return self.name


@dataclass(frozen=True)
class Literal_:
    """A constant value (``'USD'``, ``0``, ``true``)."""

    value: object

    def source_columns(self) -> tuple[str, ...]:
        return ()

    def render(self) -> str:
        return repr(self.value)


Expr = Call | Column | Literal_


@dataclass(frozen=True)
class Reference:
    """The column holds the id of a row in another target table.

    With ``match_on`` the expression's value is not an id but a value of that
    target column (``shopify_customer_id``, ``sku``); the column then receives
    the matched row's ``take`` column (its id unless stated), e.g. an order's
    account is the account whose ``shopify_customer_id`` is the order's customer.
    """

    table: str
    on_missing: OnMissing
    match_on: str | None = None
    take: str = "id"


@dataclass(frozen=True)
class ColumnRule:
    target: str
    expr: Expr
    reference: Reference | None
    if_null: object | None
    where: Location


@dataclass(frozen=True)
class RowFilter:
    """Rows matching the predicate are excluded by a named rule."""

    rule: str
    reason: str
    column: str
    op: FilterOp
    values: tuple[object, ...]
    where: Location


@dataclass(frozen=True)
class Dedup:
    """Rows whose ``column`` values collide (after normalisation) get one winner.

    Losers are kept (nothing is dropped) with ``loser_set`` applied, e.g.
    ``can_login: false`` or a slug suffixed with the legacy id.
    """

    rule: str
    reason: str
    column: str
    order_by: tuple[tuple[str, SortDirection], ...]
    loser_set: tuple[tuple[str, str], ...]
    where: Location


@dataclass(frozen=True)
class FeedReverse:
    """How target rows are written back to this feed's source table (reverse replication).

    Most source columns are recovered by inverting the forward expression with the
    transforms' declared inverses (``transform/mapping_inverse.py``); this section adds
    what cannot be derived: ``columns`` maps a source column to an expression over *target*
    columns (``temp_ban: ban_to_temp_ban(ban_state, banned_until)``), ``skip`` names
    target columns deliberately not written back (with the reason), and ``one_way`` marks a
    feed that is never replicated back (the Shopify store is being switched off).
    """

    columns: tuple[tuple[str, Expr], ...] = ()
    skip: tuple[tuple[str, str], ...] = ()
    one_way: str | None = None
    where: Location | None = None


@dataclass(frozen=True)
class Feed:
    """One source table feeding a target table.

    A feed with its own ``id_rule`` owns the rows it writes (it is primary), e.g.
    Shopify customers that no member matched become accounts keyed by the
    customer id, beside the accounts keyed by the member id.
    """

    source: str
    table: str
    key: tuple[str, ...]
    primary: bool
    columns: tuple[ColumnRule, ...]
    exclude_columns: tuple[tuple[str, str], ...]
    exclude_rows: tuple[RowFilter, ...]
    dedup: tuple[Dedup, ...]
    on_missing: OnMissing
    where: Location
    id_rule: ColumnRule | None = None
    reverse: FeedReverse | None = None

    @property
    def qualified(self) -> str:
        return f"{self.source}.{self.table}"

    def used_columns(self) -> tuple[str, ...]:
        """Source columns the feed reads (key, expressions, filters, dedup order)."""
        seen: dict[str, None] = dict.fromkeys(self.key)
        if self.id_rule is not None:
            seen.update(dict.fromkeys(self.id_rule.expr.source_columns()))
        for rule in self.columns:
            seen.update(dict.fromkeys(rule.expr.source_columns()))
        for flt in self.exclude_rows:
            seen[flt.column] = None
        for dd in self.dedup:
            for col, _ in dd.order_by:
                seen[col] = None
        return tuple(seen)


@dataclass(frozen=True)
class TargetMapping:
    table: str
    id_rule: ColumnRule
    feeds: tuple[Feed, ...]
    where: Location

    @property
    def primary(self) -> Feed:
        return next(f for f in self.feeds if f.primary)

    def references(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(
                r.reference.table for f in self.feeds for r in f.columns if r.reference is not None
            )
        )


def unique_by_construction(target: TargetMapping, feed: Feed) -> frozenset[str]:
    """Target columns whose values the feed makes unique by construction (no two rows share one).

    A feed reads each source row once, keyed by a single-column source key, so a column that
    is that key copied as it is, or ``id`` computed by ``uuid_from_key`` of that key alone,
    cannot repeat within the feed. Dedup may rewrite a loser's columns, so those never
    qualify. The backfill may build such a column's unique constraints after loading the
    feed into an empty table (decision 0008).
    """
    if len(feed.key) != 1:
        return frozenset()
    key = Column(feed.key[0])
    rewritten = {column for rule in feed.dedup for column, _ in rule.loser_set}
    unique: set[str] = set()
    id_expr = (feed.id_rule or target.id_rule).expr
    if (
        isinstance(id_expr, Call)
        and id_expr.transform == "uuid_from_key"
        and id_expr.args == (key,)
    ):
        unique.add("id")
    unique.update(r.target for r in feed.columns if r.expr == key and r.if_null is None)
    return frozenset(unique - rewritten)


@dataclass(frozen=True)
class ExcludedTable:
    source: str
    table: str
    reason: str
    where: Location


@dataclass(frozen=True)
class MappingSet:
    """Every spec in ``mappings/``, in dependency (foreign-key) order."""

    targets: tuple[TargetMapping, ...]
    excluded_tables: tuple[ExcludedTable, ...]
    checksum: str
    files: tuple[str, ...] = field(default=())

    def target(self, table: str) -> TargetMapping:
        for t in self.targets:
            if t.table == table or t.table.split(".")[-1] == table:
                return t
        from runeshift.errors import ConfigError

        known = ", ".join(t.table for t in self.targets)
        raise ConfigError(f"no mapping for target table '{table}'; mapped tables are {known}")

    def feeds_from(self, source: str, table: str) -> tuple[tuple[TargetMapping, Feed], ...]:
        return tuple(
            (t, f) for t in self.targets for f in t.feeds if f.source == source and f.table == table
        )
