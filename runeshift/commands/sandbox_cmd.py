"""``runeshift sandbox up | status | down``."""

from __future__ import annotations

import typer

from runeshift.console import EXIT_CHECK_FAILED, out, print_json, table
from runeshift.sandbox import Sandbox, SandboxStatus
from runeshift.settings import runeshift_home

app = typer.Typer(no_args_is_help=True)


def _render(status: SandboxStatus, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "root": str(status.root),
                "exists": status.exists,
                "up": status.all_up,
                "servers": [s.as_dict(reveal=True) for s in status.servers],
                "settings": status.settings,
            }
        )
        return
    if not status.exists:
        out.print(f"no sandbox at {status.root}")
        return
    rows = [
        (s.name, "up" if s.up else "down", s.as_dict(reveal=False)["url"], s.pid, s.port)
        for s in status.servers
    ]
    out.print(table(f"Sandbox at {status.root}", ["server", "state", "url", "pid", "port"], rows))


@app.command("up")
def up(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (URLs with passwords)."),
) -> None:
    """Start throwaway MariaDB and PostgreSQL servers (idempotent)."""
    _render(Sandbox(runeshift_home()).up(), as_json)


@app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (URLs with passwords)."),
) -> None:
    """Show the sandbox servers and their URLs; exit 1 when a server is down."""
    current = Sandbox(runeshift_home()).status()
    _render(current, as_json)
    if not current.all_up:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("down")
def down() -> None:
    """Stop both servers and delete their data."""
    Sandbox(runeshift_home()).down()
    out.print("sandbox removed")
