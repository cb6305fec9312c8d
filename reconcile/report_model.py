"""The typed result of a reconciliation, which every report format renders.

``as_dict`` is the versioned JSON document (``schema_version`` "1", described in
docs/reconcile-report-schema.md). Values of personal columns are masked and
secrets never appear: masking happens when the model is built, so no renderer
can forget it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = "1"
DifferenceKind = Literal["missing", "extra", "changed"]


@dataclass(frozen=True)
class ColumnDifference:
    column: str
    source: str | None
    target: str | None


@dataclass
class RowDifference:
    table: str
    source_key: int
    kind: DifferenceKind
    columns: list[ColumnDifference] = field(default_factory=list)
    note: str = ""
    rechecks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_key": self.source_key,
            "kind": self.kind,
            "columns": [
                {"column": c.column, "source": c.source, "target": c.target} for c in self.columns
            ],
            "note": self.note,
            "rechecks": self.rechecks,
        }


@dataclass
class TableResult:
    target: str
    source: str
    key_column: str
    compared_columns: list[str]
    source_rows: int = 0
    expected_rows: int = 0
    target_rows: int = 0
    matched: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    quarantined_by_mapping: int = 0
    quarantined_by_target: int = 0
    kept_after_source_delete: int = 0
    target_rows_without_source_key: int = 0
    chunks: int = 0
    chunks_differing: int = 0
    settled: int = 0
    sampled: bool = False
    seconds: float = 0.0
    differences: list[RowDifference] = field(default_factory=list)
    # Source keys a dedup rule made losers, in any plan of the run (the first pass and each
    # recheck). Not in the report (not a finding): a rollback from soak verifies them under
    # held writes, since a loser's expected row changes when a rival's row does.
    dedup_losers: frozenset[int] = field(default_factory=frozenset, repr=False)

    @property
    def quarantined(self) -> int:
        """Rows accounted through runeshift.quarantine (mapping, target rejects, kept deletes)."""
        return (
            self.quarantined_by_mapping + self.quarantined_by_target + self.kept_after_source_delete
        )

    def count(self, kind: DifferenceKind) -> int:
        return sum(1 for d in self.differences if d.kind == kind)

    @property
    def clean(self) -> bool:
        return not self.differences

    def column_mismatches(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for d in self.differences:
            counts.update(c.column for c in d.columns)
        return dict(sorted(counts.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "source": self.source,
            "key_column": self.key_column,
            "compared_columns": self.compared_columns,
            "counts": {
                "source_rows": self.source_rows,
                "expected_rows": self.expected_rows,
                "target_rows": self.target_rows,
                "matched": self.matched,
                "excluded": sum(self.excluded.values()),
                "quarantined_by_mapping": self.quarantined_by_mapping,
                "quarantined_by_target": self.quarantined_by_target,
                "kept_after_source_delete": self.kept_after_source_delete,
                "target_rows_without_source_key": self.target_rows_without_source_key,
                "missing": self.count("missing"),
                "extra": self.count("extra"),
                "changed": self.count("changed"),
            },
            "excluded_by_rule": dict(self.excluded),
            "column_mismatches": self.column_mismatches(),
            "chunks": {"compared": self.chunks, "differing": self.chunks_differing},
            "settled_on_recheck": self.settled,
            "sampled": self.sampled,
            "seconds": round(self.seconds, 3),
            "clean": self.clean,
            "differences": [d.as_dict() for d in self.differences],
        }


@dataclass
class QualityResult:
    suite: str
    expectation: str
    description: str
    success: bool
    unexpected_count: int
    element_count: int | None = None
    sample: list[str] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "expectation": self.expectation,
            "description": self.description,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "element_count": self.element_count,
            "sample": self.sample,
            "error": self.error,
        }


@dataclass(frozen=True)
class Thresholds:
    """``--fail-on``: how many of each are tolerated before the run fails (exit 1)."""

    missing: int = 0
    extra: int = 0
    changed: int = 0
    quality: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "missing": self.missing,
            "extra": self.extra,
            "changed": self.changed,
            "quality": self.quality,
        }


@dataclass
class Provenance:
    run_id: str
    tool_version: str
    mapping_checksum: str
    source_positions: dict[str, dict[str, Any]]
    follower_positions: dict[str, dict[str, Any]]
    target_lsn_start: str
    target_lsn_end: str
    started_at: str
    finished_at: str
    invoked_by: str
    host: str
    arguments: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ReconcileReport:
    provenance: Provenance
    thresholds: Thresholds
    tables: list[TableResult]
    quality: list[QualityResult]
    sample: float | None = None

    def totals(self) -> dict[str, int]:
        return {
            "tables": len(self.tables),
            "missing": sum(t.count("missing") for t in self.tables),
            "extra": sum(t.count("extra") for t in self.tables),
            "changed": sum(t.count("changed") for t in self.tables),
            "quality_failed": sum(1 for q in self.quality if not q.success),
            "settled_on_recheck": sum(t.settled for t in self.tables),
        }

    @property
    def passed(self) -> bool:
        t = self.totals()
        th = self.thresholds
        return (
            t["missing"] <= th.missing
            and t["extra"] <= th.extra
            and t["changed"] <= th.changed
            and t["quality_failed"] <= th.quality
        )

    @property
    def status(self) -> str:
        t = self.totals()
        if not (t["missing"] or t["extra"] or t["changed"] or t["quality_failed"]):
            return "clean"
        return "within_tolerance" if self.passed else "failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "passed": self.passed,
            "sample": self.sample,
            "thresholds": self.thresholds.as_dict(),
            "totals": self.totals(),
            "provenance": self.provenance.as_dict(),
            "tables": [t.as_dict() for t in self.tables],
            "quality": [q.as_dict() for q in self.quality],
        }
