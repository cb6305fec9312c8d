"""``runeshift archive create | verify | list``: the legacy world kept for auditors."""

from __future__ import annotations

from pathlib import Path

import typer

from runeshift.archive import create_archive, list_archives, verify_archive
from runeshift.console import EXIT_CHECK_FAILED, out, print_json, table
from runeshift.settings import load_settings

app = typer.Typer(no_args_is_help=True)

_LOCATION = typer.Option(
    "", "--location", help="Local folder or s3://bucket/prefix (default: the staging setting)."
)


@app.command("create")
def create(
    archive_id: str = typer.Option("", "--id", help="Archive id (default: legacy-<UTC time>)."),
    location: str = _LOCATION,
    shopify_export: Path | None = typer.Option(
        None, "--shopify-export", help="Folder of Shopify admin CSV exports to archive too."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write both legacy databases (and the Shopify exports) as Parquet with a manifest."""
    result = create_archive(
        load_settings(),
        archive_id=archive_id or None,
        location=location or None,
        shopify_export=shopify_export,
    )
    if as_json:
        print_json(result.as_dict())
        return
    rows = [(t.name, t.rows, len(t.files), ", ".join(t.omitted_columns)) for t in result.tables]
    out.print(table(f"Archive {result.archive_id}", ["table", "rows", "files", "omitted"], rows))
    out.print(f"manifest {result.location}/{result.manifest_path}")
    out.print(f"manifest sha256 {result.manifest_sha256} (record it for the auditor)")


@app.command("verify")
def verify(
    archive_id: str = typer.Argument(..., help="The archive id (see 'runeshift archive list')."),
    location: str = _LOCATION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check every file against the manifest: sha256, size, row counts, nothing unlisted."""
    settings = load_settings()
    result = verify_archive(
        location or settings.require("staging"), archive_id, endpoint_url=settings.s3_endpoint_url
    )
    if as_json:
        print_json(result.as_dict())
    elif result.ok:
        out.print(
            f"[green]ok[/]: {result.files_checked} files, {result.rows_checked:,} rows match the "
            f"manifest (sha256 {result.manifest_sha256})"
        )
    else:
        rows = [(p.kind, p.path, p.detail) for p in result.problems]
        out.print(table(f"Archive {archive_id}: problems", ["problem", "path", "detail"], rows))
    if not result.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("list")
def list_cmd(
    location: str = _LOCATION, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Archive ids that have a manifest."""
    settings = load_settings()
    ids = list_archives(
        location or settings.require("staging"), endpoint_url=settings.s3_endpoint_url
    )
    if as_json:
        print_json(ids)
    else:
        for archive_id in ids:
            out.print(archive_id)
