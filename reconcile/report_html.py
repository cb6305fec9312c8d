"""One self-contained HTML file for auditors: no scripts, no external assets.

Summary per table, the differing rows (personal data already masked by the
model), the quality results and the provenance of the run.
"""

from __future__ import annotations

from html import escape

from reconcile.report_model import ReconcileReport

MAX_ROWS = 500

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1d2433}
h1{font-size:1.6rem;margin:0 0 .3rem}h2{font-size:1.2rem;margin-top:2rem}
.status{display:inline-block;padding:.2rem .7rem;border-radius:1rem;font-weight:600}
.clean{background:#d6f5dd;color:#11622a}.within_tolerance{background:#fff1c2;color:#7a5600}
.failed{background:#fbd5d5;color:#8a1414}
table{border-collapse:collapse;margin:.5rem 0;min-width:50%}
th,td{border:1px solid #d0d5dd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fff5f5}code{font-size:12px}
.totals span{margin-right:1.5rem}
"""


def _e(value: object) -> str:
    return "<i>NULL</i>" if value is None else escape(str(value))


def render_html(report: ReconcileReport) -> str:
    p = report.provenance
    t = report.totals()
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>runeshift reconciliation report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Reconciliation report</h1>",
        f"<p><span class='status {report.status}' id='status'>{escape(report.status.replace('_', ' '))}</span></p>",
        "<p class='totals'>"
        + "".join(f"<span><b>{escape(k.replace('_', ' '))}</b> {v}</span>" for k, v in t.items())
        + (f"<span><b>sample</b> {report.sample:.0%}</span>" if report.sample else "")
        + "</p>",
        "<h2>Summary per table</h2><table id='summary'><tr><th>table</th><th>source</th>"
        "<th>source rows</th><th>expected</th><th>target</th><th>matched</th><th>missing</th>"
        "<th>extra</th><th>changed</th><th>excluded</th><th>quarantined</th><th>settled on recheck</th></tr>",
    ]
    for r in report.tables:
        bad = " class='bad'" if r.differences else ""
        cells = [
            r.source_rows,
            r.expected_rows,
            r.target_rows,
            r.matched,
            r.count("missing"),
            r.count("extra"),
            r.count("changed"),
            sum(r.excluded.values()),
            r.quarantined,
            r.settled,
        ]
        out.append(
            f"<tr{bad}><td>{_e(r.target)}</td><td>{_e(r.source)}</td>"
            + "".join(f"<td class='n'>{c}</td>" for c in cells)
            + "</tr>"
        )
    out.append("</table>")
    diffs = [d for r in report.tables for d in r.differences]
    out.append(f"<h2>Differing rows ({len(diffs)})</h2>")
    if diffs:
        out.append(
            "<table id='differences'><tr><th>table</th><th>source key</th><th>kind</th>"
            "<th>column</th><th>source</th><th>target</th><th>note</th></tr>"
        )
        for d in diffs[:MAX_ROWS]:
            if not d.columns:
                out.append(
                    f"<tr><td>{_e(d.table)}</td><td class='n'>{d.source_key}</td><td>{d.kind}</td>"
                    f"<td></td><td></td><td></td><td>{_e(d.note)}</td></tr>"
                )
            for c in d.columns:
                out.append(
                    f"<tr><td>{_e(d.table)}</td><td class='n'>{d.source_key}</td><td>{d.kind}</td>"
                    f"<td>{_e(c.column)}</td><td><code>{_e(c.source)}</code></td>"
                    f"<td><code>{_e(c.target)}</code></td><td>{_e(d.note)}</td></tr>"
                )
        out.append("</table>")
        if len(diffs) > MAX_ROWS:
            out.append(f"<p>… and {len(diffs) - MAX_ROWS} more in the CSV report.</p>")
    else:
        out.append("<p>None.</p>")
    out.append(
        "<h2>Data quality</h2><table id='quality'><tr><th>suite</th><th>check</th><th>result</th>"
        "<th>unexpected</th><th>sample (masked)</th></tr>"
    )
    for q in report.quality:
        bad = "" if q.success else " class='bad'"
        verdict = "passed" if q.success else ("error: " + q.error if q.error else "failed")
        out.append(
            f"<tr{bad}><td>{_e(q.suite)}</td><td>{_e(q.description)}</td><td>{_e(verdict)}</td>"
            f"<td class='n'>{q.unexpected_count}</td><td>{_e(', '.join(q.sample))}</td></tr>"
        )
    out.append("</table><h2>Provenance</h2><table id='provenance'>")
    rows = [
        ("run id", p.run_id),
        ("tool version", f"runeshift {p.tool_version}"),
        ("mapping checksum", p.mapping_checksum),
        ("source binlog positions (snapshot)", p.source_positions),
        ("follower positions at start", p.follower_positions),
        ("target LSN at start / end", f"{p.target_lsn_start} / {p.target_lsn_end}"),
        ("started / finished", f"{p.started_at} / {p.finished_at}"),
        ("run by", f"{p.invoked_by}@{p.host}"),
        ("arguments", p.arguments),
        ("thresholds (--fail-on)", report.thresholds.as_dict()),
    ]
    for name, value in rows:
        out.append(f"<tr><th>{escape(name)}</th><td><code>{_e(value)}</code></td></tr>")
    out.append("</table></body></html>\n")
    return "\n".join(out)
