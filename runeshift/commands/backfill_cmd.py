"""``runeshift backfill [--tables ...]``."""

from __future__ import annotations

import typer
from rich.progress import (
    Progress,
    TaskID,
)

from runeshift.arrow_runtime import keep_pandas_out_of_pyarrow
from runeshift.backfill import BackfillResult, run_backfill
from runeshift.console import EXIT_CHECK_FAILED, out, print_json, progress_bar, table
from runeshift.settings import load_settings


class _RichProgress:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def table_started(self, name: str, total_rows: int) -> None:
        self._tasks[name] = self._progress.add_task(name, total=total_rows)

    def advanced(self, name: str, rows: int) -> None:
        self._progress.advance(self._tasks[name], rows)

    def table_finished(self, name: str) -> None:
        task = self._tasks[name]
        self._progress.update(task, total=self._progress.tasks[task].completed)


def render_summary(result: BackfillResult) -> None:
    rows = [
        (
            t.source,
            t.target,
            t.read,
            t.migrated,
            t.excluded,
            t.quarantined,
            f"{t.seconds:.2f}",
            f"{t.rows_per_second:,.0f}",
        )
        for t in result.tables
    ]
    title = f"Backfill {result.backfill_id}" + (" (resumed)" if result.resumed else "")
    out.print(
        table(
            title,
            [
                "source",
                "target",
                "read",
                "migrated",
                "excluded",
                "quarantined",
                "seconds",
                "rows/s",
            ],
            rows,
        )
    )
    for ex in result.excluded_tables:
        out.print(f"excluded table [bold]{ex['table']}[/]: {ex['reason']}")
    decisions = sum(len(t.dedup_decisions) for t in result.tables)
    if decisions:
        out.print(
            f"dedup decisions: {decisions} (listed in runeshift.dedup_decisions and in --json)"
        )
    notes = [
        (t.target, note, count) for t in result.tables for note, count in sorted(t.notes.items())
    ]
    if notes:
        out.print(table("Transform notes", ["target", "note", "rows"], notes))
    out.print(f"staged at {result.staging}/{result.backfill_id}; positions {result.positions}")


def backfill(
    tables: list[str] = typer.Option(
        [], "--tables", help="Only these target or source tables (repeatable or comma-separated)."
    ),
    chunk_rows: int = typer.Option(
        0, "--chunk-rows", help="Rows per chunk (default: sized from the table's row length)."
    ),
    stop_after_chunks: int = typer.Option(
        0, "--stop-after-chunks", help="Stop after this many chunks (resumable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Snapshot the legacy databases and load them into Rune (resumes an unfinished run)."""
    keep_pandas_out_of_pyarrow()
    names = [n for item in tables for n in item.split(",") if n.strip()]
    settings = load_settings()
    with progress_bar(disable=as_json) as progress:
        result = run_backfill(
            settings,
            tables=names or None,
            progress=_RichProgress(progress),
            chunk_rows=chunk_rows or None,
            stop_after_chunks=stop_after_chunks or None,
        )
    if as_json:
        print_json(result.as_dict())
    else:
        render_summary(result)
    if not result.balanced:
        raise typer.Exit(EXIT_CHECK_FAILED)
