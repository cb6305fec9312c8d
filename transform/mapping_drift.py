"""Compare the mapping specs with the live source schema (the schema-drift guard).

Findings are errors when migrating would silently lose or misread data:
a source column neither mapped nor excluded, a column or table the specs
use that is gone, and a column whose type, charset or nullability differs
from the baseline the specs were written against
(``mappings/source_baseline.yaml``). The catch-up uses the same check to
pause a table whose DDL changed under it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import yaml

from extract.mysql_source_schema import SourceTable
from transform.mapping_loader import BASELINE_FILE
from transform.mapping_spec import MappingSet

# Tables runeshift itself keeps in the legacy databases (not legacy schema, never migrated):
# the catch-up's heartbeat (runeshift.heartbeat) lives in each source so it flows through the binlog.
RUNESHIFT_SOURCE_TABLES = frozenset({"runeshift_heartbeat"})

FindingKind = Literal[
    "unmapped_column", "missing_column", "missing_table", "unmapped_table", "changed_type"
]


@dataclass(frozen=True)
class DriftFinding:
    kind: FindingKind
    table: str
    column: str | None
    detail: str
    fix: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "table": self.table,
            "column": self.column,
            "detail": self.detail,
            "fix": self.fix,
        }


def load_baseline() -> dict[str, dict[str, str]]:
    """{'repo.licenses': {'id': 'bigint(20) unsigned NOT NULL', ...}} as recorded with the specs."""
    path = resources.files("mappings") / BASELINE_FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {str(t): {str(c): str(s) for c, s in cols.items()} for t, cols in data.items()}


def baseline_from(schemas: Mapping[str, Mapping[str, SourceTable]]) -> dict[str, dict[str, str]]:
    return {
        f"{source}.{name}": {c.name: c.signature() for c in table.columns}
        for source, tables in sorted(schemas.items())
        for name, table in sorted(tables.items())
    }


def check_drift(
    mappings: MappingSet,
    schemas: Mapping[str, Mapping[str, SourceTable]],
    baseline: Mapping[str, Mapping[str, str]] | None = None,
) -> list[DriftFinding]:
    """All findings for the sources present in ``schemas`` ({source: {table: SourceTable}})."""
    baseline = load_baseline() if baseline is None else baseline
    findings: list[DriftFinding] = []
    excluded = {(e.source, e.table) for e in mappings.excluded_tables}
    used: dict[tuple[str, str], set[str]] = {}
    excluded_cols: dict[tuple[str, str], set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for target in mappings.targets:
        for feed in target.feeds:
            key = (feed.source, feed.table)
            used.setdefault(key, set()).update(feed.used_columns())
            excluded_cols.setdefault(key, set()).update(c for c, _ in feed.exclude_columns)
            where.setdefault(key, str(feed.where))
    for source, tables in sorted(schemas.items()):
        for (src, table), columns in sorted(used.items()):
            if src != source:
                continue
            qualified = f"{source}.{table}"
            live = tables.get(table)
            if live is None:
                findings.append(
                    DriftFinding(
                        "missing_table",
                        qualified,
                        None,
                        f"mapped at {where[(src, table)]} but not in the source",
                        "restore the table or remove its feed from the mapping",
                    )
                )
                continue
            live_cols = {c.name: c for c in live.columns}
            for column in sorted(columns - live_cols.keys()):
                findings.append(
                    DriftFinding(
                        "missing_column",
                        qualified,
                        column,
                        f"used by the mapping at {where[(src, table)]} but not in the source",
                        "map it from another column or drop it from the mapping",
                    )
                )
            for column in [
                c.name for c in live.columns if c.name not in columns | excluded_cols[(src, table)]
            ]:
                findings.append(
                    DriftFinding(
                        "unmapped_column",
                        qualified,
                        column,
                        f"{live_cols[column].signature()} is neither mapped nor excluded",
                        f"map it under 'columns:' or add it under 'exclude_columns:' with a reason ({where[(src, table)]})",
                    )
                )
            expected = baseline.get(qualified, {})
            for name, col in live_cols.items():
                if name in expected and expected[name] != col.signature():
                    findings.append(
                        DriftFinding(
                            "changed_type",
                            qualified,
                            name,
                            f"was {expected[name]}, now {col.signature()}",
                            "check the transforms for the new type, then update mappings/source_baseline.yaml",
                        )
                    )
        for table in sorted(tables):
            if table in RUNESHIFT_SOURCE_TABLES:
                continue
            if (source, table) not in used and (source, table) not in excluded:
                findings.append(
                    DriftFinding(
                        "unmapped_table",
                        f"{source}.{table}",
                        None,
                        "is neither mapped nor excluded",
                        "map it in a mappings/*.yaml target or list it under 'excluded_tables:' with a reason",
                    )
                )
    return findings
