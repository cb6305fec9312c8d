"""How the CLI renders results: rich for people, JSON for machines, exit codes for both."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
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
    t = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
    )
    texts = [["" if v is None else str(v) for v in row] for row in rows]
    for i, name in enumerate(columns):
        numeric = name.endswith(("rows", "count", "/s", "seconds")) or name in {
            "read",
            "migrated",
            "excluded",
            "quarantined",
            "missing",
            "extra",
            "changed",
            "expected",
            "target",
            "matched",
            "rows",
            "port",
            "pid",
        }
        # On a narrow terminal the row's name (first column) and numbers keep every
        # character (a header may wrap between words); other text wraps.
        width = None
        if i == 0 or numeric:
            width = max([len(r[i]) for r in texts] + [len(w) for w in name.split()])
        t.add_column(
            name,
            justify="right" if numeric else "left",
            no_wrap=i == 0,
            min_width=width,
            overflow="ellipsis" if width else "fold",  # a long word folds rather than loses
        )
    for row in texts:
        t.add_row(*row)
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
