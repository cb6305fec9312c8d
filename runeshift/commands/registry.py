"""Command groups of the pipeline stages, registered in pipeline order.

A stage adds one line here when its command module exists; keeping the list in
one place makes ``runeshift --help`` read like the pipeline.
"""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    # Stage command modules are appended below as they land.
    from runeshift.commands import sample_cmd

    app.add_typer(
        sample_cmd.app, name="sample", help="Generate sample data: the legacy MySQL world."
    )
    from runeshift.commands import schema_cmd

    app.add_typer(schema_cmd.app, name="schema", help="Create or upgrade the Postgres schemas.")
    from runeshift.commands import backfill_cmd, mappings_cmd

    app.add_typer(
        mappings_cmd.app,
        name="mappings",
        help="Check the mapping specs against the source; show one.",
    )
    app.command("backfill", help="Snapshot the legacy databases and load them into Rune.")(
        backfill_cmd.backfill
    )
    from runeshift.commands import reconcile_cmd

    app.command("reconcile", help="Compare source (through the mappings) and target; reports.")(
        reconcile_cmd.reconcile
    )
    from runeshift.commands import sync_cmd

    app.add_typer(
        sync_cmd.app, name="sync", help="Follow the legacy binlogs into Rune; 'sync status'."
    )
    from runeshift.commands import reverse_cmd

    app.add_typer(
        reverse_cmd.app, name="reverse", help="Write Rune's changes back to legacy (soak)."
    )
    from runeshift.commands import archive_cmd

    app.add_typer(archive_cmd.app, name="archive", help="Archive the legacy world; verify it.")
    from runeshift.commands import cutover_cmd

    app.add_typer(cutover_cmd.app, name="cutover", help="The staged, journaled switch to Rune.")
    from runeshift.commands import services_cmd

    app.add_typer(
        services_cmd.app, name="services", help="The services being cut over: up, status, down."
    )
    from runeshift.commands import drill_cmd

    app.command("drill", help="The whole world under load through a complete cutover; scorecard.")(
        drill_cmd.drill
    )
    return None
