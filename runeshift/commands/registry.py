"""Command groups of the pipeline stages, registered in pipeline order.

A stage adds one line here when its command module exists; keeping the list in
one place makes ``runeshift --help`` read like the pipeline.
"""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    # Stage command modules are appended below as they land.
    from runeshift.commands import sample_cmd

    app.add_typer(sample_cmd.app, name="sample", help="Generate sample data: the legacy MySQL world.")
    from runeshift.commands import schema_cmd

    app.add_typer(schema_cmd.app, name="schema", help="Create or upgrade the Postgres schemas.")
    return None
