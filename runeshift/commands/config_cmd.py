"""``runeshift config show``."""

from __future__ import annotations

import typer

from runeshift.console import out, print_json, table
from runeshift.settings import load_settings

app = typer.Typer(no_args_is_help=True)


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings and where each came from; passwords and tokens masked."""
    rows = load_settings().describe()
    if as_json:
        print_json({name: {"value": value, "origin": origin} for name, value, origin in rows})
        return
    out.print(table("Effective settings", ["setting", "value", "from"], rows))
