"""``runeshift mappings check | show``."""

from __future__ import annotations

import typer

from extract.mysql_source_schema import read_live_schemas
from runeshift.console import EXIT_CHECK_FAILED, out, print_json, table
from runeshift.settings import load_settings
from transform.mapping_drift import DriftFinding, check_drift
from transform.mapping_inverse import ReversibilityFinding, check_reversibility
from transform.mapping_loader import load_mappings

app = typer.Typer(no_args_is_help=True)


@app.command("check")
def check(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Compare the specs with the live source schema; exit 1 on any drift."""
    settings = load_settings()
    mappings = load_mappings()
    schemas = read_live_schemas(
        {"forums": settings.require("forums_url"), "repo": settings.require("repo_url")}
    )
    # Drift (source vs specs) and reversibility (a Rune-written column no inverse can write
    # back would be lost by a rollback after the write switch); one-way notes are info.
    reversibility = check_reversibility(mappings)
    findings: list[DriftFinding | ReversibilityFinding] = [
        *check_drift(mappings, schemas),
        *(f for f in reversibility if f.severity == "error"),
    ]
    one_way = sorted({f.table for f in reversibility if f.severity != "error"})
    if as_json:
        print_json(
            {
                "mapping_checksum": mappings.checksum,
                "ok": not findings,
                "findings": [f.as_dict() for f in findings],
                "one_way_tables": one_way,
            }
        )
    elif findings:
        rows = [(f.kind, f.table, f.column or "", f.detail, f.fix) for f in findings]
        out.print(table("Mapping findings", ["finding", "table", "column", "detail", "fix"], rows))
    else:
        if one_way:
            out.print(
                "one-way (not reverse-replicated; the store is being switched off): "
                + ", ".join(one_way)
            )
        mapped = sum(len(t.feeds) for t in mappings.targets)
        out.print(
            f"[green]ok[/]: {mapped} source feeds and {len(mappings.excluded_tables)} excluded "
            f"tables match the live schema (mapping checksum {mappings.checksum})"
        )
    if findings:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("show")
def show(
    target: str = typer.Argument(..., help="Target table, e.g. accounts or rune.licenses."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Render source column -> transform -> target column for one target table."""
    mapping = load_mappings().target(target)
    rows = []
    rows.append(
        ("(key) " + ", ".join(mapping.primary.key), mapping.id_rule.expr.render(), "id", "")
    )
    for feed in mapping.feeds:
        for rule in feed.columns:
            sources = (
                ", ".join(f"{feed.table}.{c}" for c in rule.expr.source_columns()) or "(constant)"
            )
            note = ""
            if rule.reference is not None:
                note = f"references {rule.reference.table} (missing: {rule.reference.on_missing})"
            rows.append((sources, rule.expr.render(), rule.target, note))
        for column, reason in feed.exclude_columns:
            rows.append((f"{feed.table}.{column}", "excluded", "", reason))
        for flt in feed.exclude_rows:
            rows.append(
                (
                    f"{feed.table}.{flt.column}",
                    f"rows {flt.op} {list(flt.values)} excluded",
                    "",
                    f"{flt.rule}: {flt.reason}",
                )
            )
        for dd in feed.dedup:
            rows.append(
                (
                    f"{feed.table}.{dd.column}",
                    f"dedup by {dd.order_by}",
                    dd.column,
                    f"{dd.rule}: {dd.reason}",
                )
            )
    if as_json:
        print_json(
            {
                "target": mapping.table,
                "rows": [
                    dict(zip(("source", "transform", "target", "note"), r, strict=True))
                    for r in rows
                ],
            }
        )
        return
    out.print(
        table(f"{mapping.table}", ["source column", "transform", "target column", "note"], rows)
    )
