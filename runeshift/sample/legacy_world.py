"""``generate_legacy_world``: (re)create ``tribot_forums`` and ``tribot_repo`` and fill them.

This is the one place that wires the pieces together: the shipped DDL (``legacy_ddl``), the row
generator (``legacy_generator``) and the bulk loader (``legacy_bulk_loader``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runeshift.errors import ConfigError
from runeshift.sample.legacy_bulk_loader import BulkLoader, open_bulk_session
from runeshift.sample.legacy_ddl import LEGACY_DATABASES, check_database_name, recreate_database
from runeshift.sample.legacy_generator import TABLE_SPECS, LegacyWorldGenerator

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``"<db>.<table>"`` or ``"schema"``; total estimated."""

DEFAULT_FORUMS_DB = "tribot_forums"
DEFAULT_REPO_DB = "tribot_repo"


@dataclass(frozen=True)
class LegacyWorldSummary:
    """What ``generate_legacy_world`` built: row counts per ``db.table`` and how long it took."""

    scale: float
    seed: int
    forums_db: str
    repo_db: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "seed": self.seed,
            "forums_db": self.forums_db,
            "repo_db": self.repo_db,
            "rows": dict(self.rows),
            "total_rows": self.total_rows,
            "seconds": round(self.seconds, 3),
        }


def _estimates(gen: LegacyWorldGenerator) -> dict[str, int]:
    versions = gen.n_scripts * 4
    return {
        "core_groups": 12,
        "core_members": gen.n_members,
        "core_pfields_content": int(gen.n_members * 0.83),
        "scripts": gen.n_scripts,
        "script_versions": versions,
        "compile_jobs": int(versions * 1.08),
        "licenses": gen.n_licenses,
        "instance_packs": gen.n_packs,
        "script_reviews": gen.n_reviews,
        "auth0_links": int(gen.n_members * 0.69),
        "api_sessions": gen.n_sessions,
    }


def generate_legacy_world(
    server_url: str,
    *,
    scale: float,
    seed: int,
    forums_db: str = DEFAULT_FORUMS_DB,
    repo_db: str = DEFAULT_REPO_DB,
    progress: Progress | None = None,
) -> LegacyWorldSummary:
    """Drop, recreate and fill the two legacy databases on the server at ``server_url``.

    Deterministic: the same ``(scale, seed)`` gives byte-identical tables (no wall clock, no
    implicit ``CURRENT_TIMESTAMP``); another seed gives other data. Scale 1 is about 2,000
    members and 10,000 licenses; every quirk of ``shared/legacy/README.md`` is present at every
    scale (see ``runeshift.sample.legacy_quirks``). ``forums_db``/``repo_db`` rename the
    databases so isolated copies can live side by side on one server.
    """
    started = time.perf_counter()
    names = {
        LEGACY_DATABASES[0]: check_database_name(forums_db),
        LEGACY_DATABASES[1]: check_database_name(repo_db),
    }
    generator = LegacyWorldGenerator(scale=scale, seed=seed)
    estimates = _estimates(generator)
    conn = open_bulk_session(server_url)
    rows: dict[str, int] = {}
    try:
        if progress is not None:
            progress("schema", 0, 2)
        for done, (database, target) in enumerate(names.items(), start=1):
            recreate_database(conn, database, target)
            if progress is not None:
                progress("schema", done, 2)
        with tempfile.TemporaryDirectory(prefix="runeshift-legacy-") as workdir:
            loader = BulkLoader(conn, Path(workdir))
            try:
                for spec in TABLE_SPECS:
                    stage = f"{names[spec.database]}.{spec.table}"  # type: ignore[index]
                    total = estimates[spec.table]

                    def report(done: int, stage: str = stage, total: int = total) -> None:
                        if progress is not None:
                            progress(stage, done, max(total, done))

                    report(0)
                    loaded = loader.load(
                        names[spec.database],  # type: ignore[index]
                        spec.table,
                        spec.columns,
                        spec.rows(generator),
                        on_progress=report,
                    )
                    rows[stage] = loaded
                    if progress is not None:
                        progress(stage, loaded, loaded)
            finally:
                loader.close()
    finally:
        conn.close()
    return LegacyWorldSummary(
        scale=scale,
        seed=seed,
        forums_db=forums_db,
        repo_db=repo_db,
        rows=rows,
        seconds=time.perf_counter() - started,
    )


def legacy_targets(forums_url: str, repo_url: str) -> tuple[str, str, str]:
    """``(server_url, forums_db, repo_db)`` from the ``forums_url`` and ``repo_url`` settings.

    The generator builds both databases on one server, so the settings must agree on it; a URL
    without a database name means the default name.
    """
    parts = [urlsplit(url) for url in (forums_url, repo_url)]
    servers = {urlunsplit(p._replace(path="/", query="", fragment="")) for p in parts}
    if len(servers) != 1:
        raise ConfigError(
            "forums_url and repo_url point at different servers; the sample generator builds both "
            "legacy databases on one server: give both the same mysql://user:pw@host:port/"
        )
    forums_db = parts[0].path.strip("/") or DEFAULT_FORUMS_DB
    repo_db = parts[1].path.strip("/") or DEFAULT_REPO_DB
    return servers.pop(), check_database_name(forums_db), check_database_name(repo_db)
