"""The JSON report for CI: the versioned document of docs/reconcile-report-schema.md."""

from __future__ import annotations

import json

from reconcile.report_model import ReconcileReport


def render_json(report: ReconcileReport) -> str:
    return json.dumps(report.as_dict(), indent=2, default=str, ensure_ascii=False) + "\n"
