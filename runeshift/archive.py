"""Archive the legacy world at ``complete``, and verify an archive with one command.

Design note. ``create_archive`` reads every table of both legacy databases inside one
consistent snapshot per database (``extract/snapshot_reader.py``, raw values as the
source stored them: decision 0001) and the Shopify CSV exports, and writes them as Parquet
(zstd) to the staging store, local or ``s3://`` (``load/staging_store.py``). Excluded
secret columns and tables are never read (invariant 6); the manifest names them with the
reason. The manifest is written last, so an archive without ``manifest.json`` is
incomplete; rerunning with the same id rewrites it whole.

``verify_archive`` trusts nothing but the manifest: for every listed file it checks that
the file exists, that its sha256 and byte size match and that it reads back as Parquet
with the listed row count; per table, that the files add up to the table's row count; and
that no file under the archive is unlisted. It reports the manifest's own sha256 so an
auditor can compare it with the value recorded when the archive was made.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from extract.snapshot_reader import SnapshotReader
from load.staging_store import StagingStore, open_staging, parquet_bytes
from runeshift import __version__
from runeshift.connections import parse_mysql_url
from runeshift.errors import ConfigError
from runeshift.settings import Settings
from transform.mapping_drift import RUNESHIFT_SOURCE_TABLES
from transform.mapping_loader import load_mappings
from transform.mapping_spec import MappingSet

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
CHUNK_ROWS = 50_000
SOURCES = (("forums", "forums_url"), ("repo", "repo_url"))
ProblemKind = Literal[
    "missing_file", "checksum_mismatch", "size_mismatch", "row_count_mismatch",
    "unreadable_file", "unlisted_file", "table_total_mismatch", "no_manifest",
]  # fmt: skip


@dataclass(frozen=True)
class ArchivedFile:
    path: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class ArchivedTable:
    name: str  # 'forums.core_members', 'shopify.orders_export'
    rows: int = 0
    files: list[ArchivedFile] = field(default_factory=list)
    omitted_columns: dict[str, str] = field(default_factory=dict)


@dataclass
class ArchiveResult:
    archive_id: str
    location: str
    manifest_path: str
    manifest_sha256: str
    tables: list[ArchivedTable]
    omitted_tables: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArchiveProblem:
    kind: ProblemKind
    path: str
    detail: str


@dataclass
class ArchiveVerification:
    archive_id: str
    location: str
    manifest_sha256: str | None
    files_checked: int
    rows_checked: int
    problems: list[ArchiveProblem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _secret_exclusions(mappings: MappingSet) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Columns and tables the specs exclude as secrets: {'forums.core_members': {col: why}}."""
    columns: dict[str, dict[str, str]] = {}
    for target in mappings.targets:
        for feed in target.feeds:
            for col, reason in feed.exclude_columns:
                if reason.lower().startswith("secret"):
                    columns.setdefault(feed.qualified, {})[col] = reason
    tables = {
        f"{e.source}.{e.table}": e.reason
        for e in mappings.excluded_tables
        if "secret" in e.reason.lower()
    }
    return columns, tables


def _store(settings: Settings, location: str | None) -> StagingStore:
    where = location or settings.require("staging")
    return open_staging(where, endpoint_url=settings.s3_endpoint_url)


def create_archive(
    settings: Settings,
    *,
    archive_id: str | None = None,
    location: str | None = None,
    shopify_export: Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    mappings: MappingSet | None = None,
) -> ArchiveResult:
    """Write the legacy databases (and Shopify CSV exports) as Parquet plus a manifest."""
    mappings = mappings or load_mappings()
    store = _store(settings, location)
    archive_id = archive_id or datetime.now(UTC).strftime("legacy-%Y%m%dT%H%M%SZ")
    root = f"archive/{archive_id}"
    secret_columns, secret_tables = _secret_exclusions(mappings)
    tables: list[ArchivedTable] = []
    positions: dict[str, Any] = {}
    for source, setting in SOURCES:
        url = settings.require(setting)
        database = parse_mysql_url(url).database
        if not database:
            raise ConfigError(f"setting '{setting}' must name the database")
        reader = SnapshotReader(url, database)
        try:
            positions[source] = reader.open().as_dict()
            for name, table in sorted(reader.tables.items()):
                qualified = f"{source}.{name}"
                if qualified in secret_tables or name in RUNESHIFT_SOURCE_TABLES:
                    continue
                omitted = secret_columns.get(qualified, {})
                columns = [c for c in table.columns if c.name not in omitted]
                entry = ArchivedTable(qualified, omitted_columns=dict(omitted))
                chunks = (c.batch for c in reader.chunks(table, columns, chunk_rows=chunk_rows))
                _write_parts(store, f"{root}/legacy/{source}/{name}", chunks, entry)
                tables.append(entry)
        finally:
            reader.close()
    if shopify_export is not None:
        tables.extend(_archive_shopify(store, f"{root}/shopify", shopify_export))
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "archive_id": archive_id,
        "created_at": datetime.now(UTC).isoformat(),
        "tool_version": __version__,
        "binlog_positions": positions,
        "tables": [asdict(t) for t in tables],
        "omitted_tables": secret_tables,
    }
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    store.put(f"{root}/{MANIFEST}", data)
    return ArchiveResult(
        archive_id,
        store.location,
        f"{root}/{MANIFEST}",
        hashlib.sha256(data).hexdigest(),
        tables,
        secret_tables,
    )


def _write_parts(
    store: StagingStore, prefix: str, batches: Iterable[pa.RecordBatch], entry: ArchivedTable
) -> None:
    schema: pa.Schema | None = None
    for n, batch in enumerate(batches):
        schema = batch.schema
        _put_part(store, f"{prefix}/part-{n:06d}.parquet", batch, entry)
    if not entry.files and schema is None:
        # An empty table still gets a file, so its existence (and emptiness) is verifiable.
        _put_part(store, f"{prefix}/part-000000.parquet", pa.table({}), entry)


def _put_part(
    store: StagingStore, path: str, batch: pa.RecordBatch | pa.Table, entry: ArchivedTable
) -> None:
    data, sha = parquet_bytes(batch)
    store.put(path, data)
    entry.files.append(ArchivedFile(path, batch.num_rows, len(data), sha))
    entry.rows += batch.num_rows


def _archive_shopify(store: StagingStore, prefix: str, folder: Path) -> list[ArchivedTable]:
    """Each CSV export as Parquet with every column as text, exactly as exported."""
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise ConfigError(f"--shopify-export {folder}: no *.csv files (Shopify admin exports)")
    out = []
    for path in files:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
        header, body = (rows[0], rows[1:]) if rows else ([], [])
        names = _unique(header)
        table = pa.table(
            {n: pa.array([r[i] if i < len(r) else None for r in body], pa.string())
             for i, n in enumerate(names)}
        )  # fmt: skip
        entry = ArchivedTable(f"shopify.{path.stem}")
        _put_part(store, f"{prefix}/{path.stem}.parquet", table, entry)
        out.append(entry)
    return out


def _unique(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for h in header:
        n = seen.get(h, 0)
        seen[h] = n + 1
        names.append(h if n == 0 else f"{h}.{n}")
    return names


def verify_archive(
    location: str, archive_id: str, *, endpoint_url: str = ""
) -> ArchiveVerification:
    """Check every file of the archive against its manifest (see the design note)."""
    store = open_staging(location, endpoint_url=endpoint_url)
    root = f"archive/{archive_id}"
    manifest_path = f"{root}/{MANIFEST}"
    if not store.exists(manifest_path):
        problem = ArchiveProblem(
            "no_manifest", manifest_path, "no manifest: the archive is missing or incomplete"
        )
        return ArchiveVerification(archive_id, store.location, None, 0, 0, [problem])
    raw = store.get(manifest_path)
    manifest = json.loads(raw)
    problems: list[ArchiveProblem] = []
    listed: set[str] = set()
    files = rows = 0
    for table in manifest["tables"]:
        total = 0
        for f in table["files"]:
            listed.add(f["path"])
            files += 1
            counted = _check_file(store, f, problems)
            total += counted
            rows += counted
        if total != table["rows"] and not any(p.path.startswith(_dir(table)) for p in problems):
            problems.append(
                ArchiveProblem(
                    "table_total_mismatch",
                    table["name"],
                    f"files hold {total} rows, the manifest says {table['rows']}",
                )
            )
    for path in store.list(root):
        if path != manifest_path and path not in listed:
            problems.append(ArchiveProblem("unlisted_file", path, "not in the manifest"))
    return ArchiveVerification(
        archive_id, store.location, hashlib.sha256(raw).hexdigest(), files, rows, problems
    )


def _dir(table: dict[str, Any]) -> str:
    files = table.get("files") or [{"path": "\0"}]
    return str(files[0]["path"]).rsplit("/", 1)[0]


def _check_file(store: StagingStore, f: dict[str, Any], problems: list[ArchiveProblem]) -> int:
    path = str(f["path"])
    if not store.exists(path):
        problems.append(ArchiveProblem("missing_file", path, "listed in the manifest, not found"))
        return 0
    data = store.get(path)
    sha = hashlib.sha256(data).hexdigest()
    if sha != f["sha256"]:
        problems.append(
            ArchiveProblem("checksum_mismatch", path, f"sha256 {sha}, manifest {f['sha256']}")
        )
    if len(data) != f["bytes"]:
        problems.append(
            ArchiveProblem("size_mismatch", path, f"{len(data)} bytes, manifest {f['bytes']}")
        )
    try:
        n = pq.read_metadata(io.BytesIO(data)).num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        problems.append(ArchiveProblem("unreadable_file", path, f"not readable as Parquet: {exc}"))
        return 0
    if n != f["rows"]:
        problems.append(
            ArchiveProblem("row_count_mismatch", path, f"{n} rows, manifest {f['rows']}")
        )
    return int(n)


def list_archives(location: str, *, endpoint_url: str = "") -> list[str]:
    """Archive ids under ``location`` that have a manifest."""
    store = open_staging(location, endpoint_url=endpoint_url)
    return sorted(p.split("/")[1] for p in store.list("archive") if p.endswith(f"/{MANIFEST}"))


__all__ = [
    "ArchiveProblem",
    "ArchiveResult",
    "ArchiveVerification",
    "create_archive",
    "list_archives",
    "verify_archive",
]
