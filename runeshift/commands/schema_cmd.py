"""``runeshift schema upgrade [--to REV] | current [--json] | downgrade --to REV``."""

from __future__ import annotations

import typer

from load import target_schema
from load.target_schema import SchemaChange, SchemaStatus
from runeshift.console import EXIT_CHECK_FAILED, out, print_json, table
from runeshift.errors import ConfigError
from runeshift.settings import load_settings

app = typer.Typer(no_args_is_help=True)


def _postgres_url() -> str:
    return load_settings().require("postgres_url")


def _name(revision: str | None) -> str:
    return revision if revision is not None else "base (empty)"


def _render_change(change: SchemaChange, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "before": change.before,
                "after": change.after,
                "head": change.head,
                "changed": change.changed,
            }
        )
        return
    if not change.changed:
        out.print(f"schema already at {_name(change.after)}; nothing to do")
        return
    out.print(f"schema {_name(change.before)} -> {_name(change.after)} (head {change.head})")


@app.command("upgrade")
def upgrade(
    to: str = typer.Option("head", "--to", help="Target revision (default: head)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create or upgrade the 'rune' and 'runeshift' schemas in postgres_url."""
    _render_change(target_schema.upgrade(_postgres_url(), to), as_json)


@app.command("downgrade")
def downgrade(
    to: str | None = typer.Option(
        None, "--to", help="Revision to step back to (required); 'base' drops everything."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Step the schemas back to a revision. Tables removed lose their rows."""
    # Checked here rather than by click so that a forgotten --to is a one-line error (exit 2)
    # and never a default: a downgrade destroys data, so the target must be spelled out.
    if not to:
        raise ConfigError(
            "schema downgrade needs --to REV (e.g. --to 0001_control, or --to base to drop "
            "every runeshift-created table); see 'runeshift schema current' for the revision"
        )
    _render_change(target_schema.downgrade(_postgres_url(), to), as_json)


@app.command("current")
def current(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the database's schema revision; exit 1 when it is not at head."""
    state: SchemaStatus = target_schema.status(_postgres_url())
    if as_json:
        print_json({"current": state.current, "head": state.head, "at_head": state.at_head})
    else:
        rows = [(_name(state.current), state.head, "yes" if state.at_head else "no")]
        out.print(table("Schema revision", ["current", "head", "at head"], rows))
    if not state.at_head:
        raise typer.Exit(EXIT_CHECK_FAILED)
