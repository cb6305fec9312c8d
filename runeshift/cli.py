"""The ``runeshift`` command: parses options, calls the library, renders, picks the exit code.

Each command group lives in ``runeshift/commands/<group>.py`` and is registered
by ``runeshift/commands/registry.py`` when the command line names it. Core code never prints; errors it raises on purpose (``RuneshiftError``)
become a one-line message and exit code 2, with the traceback only under
``--debug``.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from runeshift.commands import registry
from runeshift.console import EXIT_ERROR, err
from runeshift.errors import RuneshiftError

app = typer.Typer(
    name="runeshift",
    help="Zero-downtime migration of Tribot's legacy MySQL and Shopify data into Rune (PostgreSQL).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    if debug:
        os.environ["RUNESHIFT_DEBUG"] = "1"
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Entry point: click handles usage errors (exit 2) and exit codes; we handle our own errors."""
    registry.register_all(app, only=registry.invoked(sys.argv[1:]))
    try:
        app()
    except RuneshiftError as exc:
        if os.environ.get("RUNESHIFT_DEBUG"):
            raise
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
