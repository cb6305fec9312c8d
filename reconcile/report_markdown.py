"""The Markdown report: short enough for a pull-request comment or a chat message."""

from __future__ import annotations

from reconcile.report_model import ReconcileReport

MAX_ROWS = 20


def _cell(value: object) -> str:
    text = "NULL" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:80]


def render_markdown(report: ReconcileReport) -> str:
    p = report.provenance
    t = report.totals()
    icon = {"clean": "✅", "within_tolerance": "⚠️", "failed": "❌"}[report.status]
    lines = [
        f"## {icon} Reconciliation: {report.status.replace('_', ' ')}",
        "",
        f"{t['tables']} tables; missing {t['missing']}, extra {t['extra']}, changed {t['changed']}, "
        f"quality checks failed {t['quality_failed']}"
        + (f"; sampled {report.sample:.0%} of key ranges" if report.sample else "")
        + ".",
        "",
        "| table | source rows | expected | target | matched | missing | extra | changed | excluded | quarantined |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.tables:
        lines.append(
            f"| {r.target} | {r.source_rows} | {r.expected_rows} | {r.target_rows} | {r.matched} | "
            f"{r.count('missing')} | {r.count('extra')} | {r.count('changed')} | "
            f"{sum(r.excluded.values())} | {r.quarantined} |"
        )
    diffs = [d for r in report.tables for d in r.differences]
    if diffs:
        lines += ["", "### Differences", "", "| table | key | kind | column | source | target |"]
        lines.append("|---|---:|---|---|---|---|")
        for d in diffs[:MAX_ROWS]:
            if not d.columns:
                lines.append(f"| {d.table} | {d.source_key} | {d.kind} | | | {_cell(d.note)} |")
            for c in d.columns:
                lines.append(
                    f"| {d.table} | {d.source_key} | {d.kind} | {c.column} | {_cell(c.source)} | {_cell(c.target)} |"
                )
        if len(diffs) > MAX_ROWS:
            lines.append(f"\n… and {len(diffs) - MAX_ROWS} more (see the JSON or CSV report).")
    failed = [q for q in report.quality if not q.success]
    lines += ["", f"### Quality: {len(report.quality) - len(failed)}/{len(report.quality)} passed"]
    for q in failed:
        lines.append(f"- ❌ {q.expectation}: {q.unexpected_count} unexpected {q.error}".rstrip())
    lines += [
        "",
        f"<sub>runeshift {p.tool_version}, mapping {p.mapping_checksum[:12]}, run {p.run_id}, "
        f"{p.started_at} – {p.finished_at}, by {p.invoked_by}@{p.host}</sub>",
        "",
    ]
    return "\n".join(lines)
