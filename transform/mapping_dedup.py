"""Deterministic tie-breaking for values the target forbids twice.

The target's case-insensitive unique indexes (account emails that can log in,
script slugs) would reject legacy rows that differ only by case or
whitespace. A dedup rule picks one winner per contested value by a stated
order; every loser is kept, with the rule's ``losers`` values applied, and
each decision is recorded so the run report can list it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from transform.mapping_engine import _Evaluation, source_key_array
from transform.mapping_spec import Dedup, Feed, TargetMapping


@dataclass(frozen=True)
class DedupOutcome:
    rule: str
    losers: frozenset[str]
    decisions: tuple[
        tuple[str, str, str, str], ...
    ]  # (contested value, winner key, loser key, action)


def plan_dedup(target: TargetMapping, feed: Feed, rule: Dedup, rows: pa.Table) -> DedupOutcome:
    """Decide winners over ``rows``: the whole source table's key, inputs and order-by columns."""
    column_rule = next(r for r in feed.columns if r.target == rule.column)
    batch = rows.combine_chunks().to_batches()[0] if rows.num_rows else None
    if batch is None:
        return DedupOutcome(rule.rule, frozenset(), ())
    values, _errors = _Evaluation(batch).run(column_rule.expr, f"{target.table}.{rule.column}")
    normalised = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(values, pa.string())))
    keys = source_key_array(batch, feed.key)
    counts = pc.value_counts(normalised)
    contested = pc.filter(
        counts.field("values"),
        pc.and_(pc.greater(counts.field("counts"), 1), pc.is_valid(counts.field("values"))),
    )
    if len(contested) == 0:
        return DedupOutcome(rule.rule, frozenset(), ())
    mask = pc.fill_null(pc.is_in(normalised, value_set=contested), False)
    table = pa.table(
        {"__value": pc.filter(normalised, mask), "__key": pc.filter(keys, mask)}
        | {col: pc.filter(batch.column(col), mask) for col, _ in rule.order_by}
    )
    order = [("__value", "ascending")] + [
        (col, "ascending" if direction == "asc" else "descending")
        for col, direction in rule.order_by
    ]
    table = table.take(pc.sort_indices(table, sort_keys=order))
    action = ", ".join(f"{k} = {v}" for k, v in rule.loser_set)
    losers: set[str] = set()
    decisions: list[tuple[str, str, str, str]] = []
    winner_of: dict[str, str] = {}
    for value, key in zip(
        table.column("__value").to_pylist(), table.column("__key").to_pylist(), strict=True
    ):
        if value not in winner_of:
            winner_of[value] = key
            continue
        losers.add(key)
        decisions.append((value, winner_of[value], key, action))
    return DedupOutcome(rule.rule, frozenset(losers), tuple(decisions))
