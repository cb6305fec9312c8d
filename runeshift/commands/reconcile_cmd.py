"""``runeshift reconcile [--tables ...] [--sample F] [--fail-on k=n] [--report-dir DIR]``."""

from __future__ import annotations

from pathlib import Path

import typer

from reconcile.parallel_compare import default_workers
from reconcile.reconcile_run import ReconcileOptions, run_reconcile
from reconcile.report_csv import render_csv
from reconcile.report_html import render_html
from reconcile.report_json import render_json
from reconcile.report_markdown import render_markdown
from reconcile.report_model import ReconcileReport, TableResult, Thresholds
from runeshift.console import EXIT_CHECK_FAILED, err, out, table
from runeshift.errors import ConfigError
from runeshift.settings import load_settings


class _Progress:
    def table_started(self, name: str) -> None:
        err.print(f"comparing {name} …", highlight=False)

    def table_finished(self, name: str, result: TableResult) -> None:
        err.print(
            f"  {name}: {result.expected_rows} expected, {len(result.differences)} differing "
            f"({result.seconds:.2f} s)",
            highlight=False,
        )


def parse_fail_on(items: list[str]) -> Thresholds:
    values: dict[str, int] = {}
    for item in (i for raw in items for i in raw.split(",") if i.strip()):
        name, eq, number = item.partition("=")
        name = name.strip()
        if not eq or name not in ("missing", "extra", "changed", "quality"):
            raise ConfigError(
                f"--fail-on '{item}': expected missing=N, extra=N, changed=N or quality=N"
            )
        try:
            values[name] = int(number)
        except ValueError:
            raise ConfigError(f"--fail-on '{item}': {number!r} is not a whole number") from None
    return Thresholds(**values)


def write_reports(report: ReconcileReport, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stem = "reconcile-" + report.provenance.started_at[:19].replace(":", "").replace("-", "")
    files = {
        "json": (render_json(report), ".json"),
        "markdown": (render_markdown(report), ".md"),
        "html": (render_html(report), ".html"),
        "csv": (render_csv(report), ".csv"),
    }
    paths = {}
    for kind, (text, suffix) in files.items():
        path = directory / (stem + suffix)
        path.write_text(text, encoding="utf-8")
        paths[kind] = path
    return paths


def reconcile(
    tables: list[str] = typer.Option(
        [], "--tables", help="Only these target or source tables (repeatable or comma-separated)."
    ),
    sample: float = typer.Option(
        0.0, "--sample", help="Quick check: compare this fraction of each table's key ranges."
    ),
    fail_on: list[str] = typer.Option(
        [],
        "--fail-on",
        help="Tolerances before exit 1, e.g. 'changed=5,quality=1' (default: all 0).",
    ),
    settle_timeout: float = typer.Option(
        30.0, "--settle-timeout", help="Seconds to wait for the follower on each recheck."
    ),
    chunk_rows: int = typer.Option(0, "--chunk-rows", help="Source rows per compared chunk."),
    no_quality: bool = typer.Option(False, "--no-quality", help="Skip the quality suites."),
    workers: int = typer.Option(
        default_workers(),
        "--workers",
        min=1,
        help="Processes that share the full compare of a large table (1: one process).",
    ),
    report_dir: Path = typer.Option(
        None,
        "--report-dir",
        help="Where the JSON/Markdown/HTML/CSV reports go (default: <home>/reports).",
    ),
    output: str = typer.Option("table", "--output", help="What to print: table, json or markdown."),
) -> None:
    """Compare every mapped table through the mapping with the target; run the quality suites."""
    if output not in ("table", "json", "markdown"):
        raise ConfigError(f"--output must be table, json or markdown, not '{output}'")
    settings = load_settings()
    options = ReconcileOptions(
        tables=tuple(n.strip() for item in tables for n in item.split(",") if n.strip()),
        sample=sample or None,
        thresholds=parse_fail_on(fail_on),
        settle_timeout=settle_timeout,
        chunk_rows=chunk_rows or None,
        quality=not no_quality,
        workers=workers,
    )
    report = run_reconcile(settings, options, progress=None if output != "table" else _Progress())
    paths = write_reports(report, report_dir or settings.home / "reports")
    if output == "json":
        out.file.write(render_json(report))
    elif output == "markdown":
        out.file.write(render_markdown(report))
    else:
        rows = [
            (
                r.target,
                r.expected_rows,
                r.target_rows,
                r.matched,
                r.count("missing"),
                r.count("extra"),
                r.count("changed"),
                r.quarantined,
            )
            for r in report.tables
        ]
        out.print(
            table(
                f"Reconciliation: {report.status}",
                [
                    "table",
                    "expected",
                    "target",
                    "matched",
                    "missing",
                    "extra",
                    "changed",
                    "quarantined",
                ],
                rows,
            )
        )
        failed = [q for q in report.quality if not q.success]
        out.print(
            f"quality: {len(report.quality) - len(failed)}/{len(report.quality)} checks passed"
        )
        for q in failed:
            out.print(f"  [red]failed[/] {q.expectation} ({q.unexpected_count}) {q.error}")
        for kind, path in paths.items():
            out.print(f"{kind} report: {path}", highlight=False)
    err.print(f"HTML report: {paths['html']}", highlight=False)
    if not report.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)
