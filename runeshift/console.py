"""How the CLI renders results: rich for people, JSON for machines, exit codes for both."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2

out = Console()
err = Console(stderr=True)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for name in columns:
        numeric = name.endswith(("rows", "count", "/s", "seconds")) or name in {
            "read",
            "migrated",
            "excluded",
            "quarantined",
            "rows",
            "port",
            "pid",
        }
        t.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def progress_bar(*, disable: bool = False, transient: bool = False) -> Progress:
    """The one progress display every long command uses (on stderr, so --json stays clean)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=disable,
        transient=transient,
    )
