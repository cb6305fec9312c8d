"""Every command group, registered in pipeline order and shown in panels by stage.

Keeping the list in one place makes ``runeshift --help`` read like the pipeline:
set up, migrate, verify, switch over.
"""

from __future__ import annotations

import typer

SETUP, MIGRATE, VERIFY, SWITCH = "Set up", "Migrate", "Verify", "Switch over"


def register_all(app: typer.Typer) -> None:
    from runeshift.commands import (
        archive_cmd,
        backfill_cmd,
        config_cmd,
        cutover_cmd,
        drill_cmd,
        mappings_cmd,
        reconcile_cmd,
        reverse_cmd,
        sample_cmd,
        sandbox_cmd,
        schema_cmd,
        services_cmd,
        sync_cmd,
    )

    def group(sub: typer.Typer, name: str, panel: str, text: str) -> None:
        app.add_typer(sub, name=name, help=text, rich_help_panel=panel)

    group(config_cmd.app, "config", SETUP, "Show the effective settings (secrets masked).")
    group(sandbox_cmd.app, "sandbox", SETUP, "Throwaway local MariaDB + PostgreSQL servers.")
    group(
        sample_cmd.app, "sample", SETUP, "Sample data: the legacy world, the store, live traffic."
    )
    group(schema_cmd.app, "schema", SETUP, "Create or upgrade the Postgres schemas.")
    group(
        mappings_cmd.app, "mappings", SETUP, "Check the mapping specs against the source; show one."
    )
    app.command(
        "backfill",
        help="Snapshot the legacy databases and load them into Rune.",
        rich_help_panel=MIGRATE,
    )(backfill_cmd.backfill)
    group(sync_cmd.app, "sync", MIGRATE, "Follow the legacy binlogs into Rune; 'sync status'.")
    app.command(
        "reconcile",
        help="Compare source (through the mappings) and target; reports.",
        rich_help_panel=VERIFY,
    )(reconcile_cmd.reconcile)
    group(
        services_cmd.app,
        "services",
        SWITCH,
        "The services being cut over: up, status, route, down.",
    )
    group(cutover_cmd.app, "cutover", SWITCH, "The staged, journaled switch to Rune.")
    group(
        reverse_cmd.app, "reverse", SWITCH, "Write Rune's changes back to legacy (soak, rollback)."
    )
    group(archive_cmd.app, "archive", SWITCH, "Archive the legacy world at complete; verify it.")
    app.command(
        "drill",
        help="The whole world under load through a complete cutover; scorecard.",
        rich_help_panel=SWITCH,
    )(drill_cmd.drill)
