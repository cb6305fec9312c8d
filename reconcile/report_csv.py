"""CSV of the differing keys: one line per differing row (and column, for changed rows)."""

from __future__ import annotations

import csv
import io

from reconcile.report_model import ReconcileReport

HEADER = ("table", "source_key", "kind", "column", "source_value", "target_value", "note")


def render_csv(report: ReconcileReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    for table in report.tables:
        for d in table.differences:
            if not d.columns:
                writer.writerow((table.target, d.source_key, d.kind, "", "", "", d.note))
            for c in d.columns:
                writer.writerow(
                    (table.target, d.source_key, d.kind, c.column, c.source, c.target, d.note)
                )
    return buf.getvalue()
