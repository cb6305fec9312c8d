"""Every command group, registered in pipeline order and shown in panels by stage.

Keeping the list in one place makes ``runeshift --help`` read like the pipeline:
set up, migrate, verify, switch over.

A command's module is imported only when it is needed: ``runeshift reconcile`` loads the
reconcile command and what it uses, not the cutover's HTTP clients or the sandbox's
server management (about 0.4 s of every start-up). Listing the commands (``--help``, a
command name that does not exist) loads them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

import typer

SETUP, MIGRATE, VERIFY, SWITCH = "Set up", "Migrate", "Verify", "Switch over"


@dataclass(frozen=True)
class Entry:
    name: str
    module: str  # in runeshift.commands
    attribute: str  # a Typer group ("app") or one command's function
    panel: str
    help: str

    @property
    def is_group(self) -> bool:
        return self.attribute == "app"


COMMANDS = (
    Entry("config", "config_cmd", "app", SETUP, "Show the effective settings (secrets masked)."),
    Entry("sandbox", "sandbox_cmd", "app", SETUP, "Throwaway local MariaDB + PostgreSQL servers."),
    Entry(
        "sample",
        "sample_cmd",
        "app",
        SETUP,
        "Sample data: the legacy world, the store, live traffic.",
    ),
    Entry("schema", "schema_cmd", "app", SETUP, "Create or upgrade the Postgres schemas."),
    Entry(
        "mappings",
        "mappings_cmd",
        "app",
        SETUP,
        "Check the mapping specs against the source; show one.",
    ),
    Entry(
        "backfill",
        "backfill_cmd",
        "backfill",
        MIGRATE,
        "Snapshot the legacy databases and load them into Rune.",
    ),
    Entry(
        "sync", "sync_cmd", "app", MIGRATE, "Follow the legacy binlogs into Rune; 'sync status'."
    ),
    Entry(
        "reconcile",
        "reconcile_cmd",
        "reconcile",
        VERIFY,
        "Compare source (through the mappings) and target; reports.",
    ),
    Entry(
        "services",
        "services_cmd",
        "app",
        SWITCH,
        "The services being cut over: up, status, route, down.",
    ),
    Entry("cutover", "cutover_cmd", "app", SWITCH, "The staged, journaled switch to Rune."),
    Entry(
        "reverse",
        "reverse_cmd",
        "app",
        SWITCH,
        "Write Rune's changes back to legacy (soak, rollback).",
    ),
    Entry(
        "archive", "archive_cmd", "app", SWITCH, "Archive the legacy world at complete; verify it."
    ),
    Entry(
        "drill",
        "drill_cmd",
        "drill",
        SWITCH,
        "The whole world under load through a complete cutover; scorecard.",
    ),
)


def invoked(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (the first word that is not an option), if it is one."""
    names = {e.name for e in COMMANDS}
    for arg in argv:
        if arg.startswith("-"):
            continue
        return arg if arg in names else None
    return None


def register_all(app: typer.Typer, only: str | None = None) -> None:
    """Register every command, or only the one named ``only``."""
    for entry in COMMANDS:
        if only is not None and entry.name != only:
            continue
        target = getattr(
            importlib.import_module(f"runeshift.commands.{entry.module}"), entry.attribute
        )
        if entry.is_group:
            app.add_typer(target, name=entry.name, help=entry.help, rich_help_panel=entry.panel)
        else:
            app.command(entry.name, help=entry.help, rich_help_panel=entry.panel)(target)
