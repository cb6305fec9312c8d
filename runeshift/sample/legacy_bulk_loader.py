"""Bulk-loads generated rows into MySQL/MariaDB with ``LOAD DATA LOCAL INFILE``.

Rows are written to a tab-separated file in chunks; while the server loads one chunk, the next
is being generated (one loader thread, one connection). Files are read by the server with
``CHARACTER SET binary`` so each value's bytes land unchanged: UTF-8 bytes in a latin1 column stay
mojibake, real latin1 stays latin1, and utf8mb4 columns get their UTF-8 as is.

``LOAD DATA LOCAL`` turns duplicate keys and bad values into warnings and skips rows, so every
chunk's affected-row count is checked against the rows written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pymysql

from runeshift.connections import parse_mysql_url
from runeshift.errors import FatalError
from runeshift.sample.legacy_generator import Row

CHUNK_ROWS = 100_000
CHUNK_BYTES = 48 * 1024 * 1024

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def open_bulk_session(server_url: str) -> pymysql.connections.Connection[Any]:
    """A connection allowed to send local files, in the legacy session settings.

    ``runeshift.connections.mysql_connect`` does not enable ``local_infile`` (nothing else should
    send files to a server), so the generator opens its own with the same session settings.
    """
    target = parse_mysql_url(server_url)
    return pymysql.connect(
        **{**target.connect_kwargs(), "database": None},
        charset="utf8mb4",
        autocommit=True,
        local_infile=True,
        init_command=(
            "SET time_zone = '+00:00', sql_mode = '', unique_checks = 0, foreign_key_checks = 0"
        ),
        connect_timeout=10,
    )


def _field(value: int | str | None) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, int):
        return str(value)
    return value.translate(_ESCAPES)


class BulkLoader:
    """Loads tables chunk by chunk through ``LOAD DATA LOCAL INFILE``; one per generation run."""

    def __init__(self, conn: pymysql.connections.Connection[Any], workdir: Path) -> None:
        self._conn = conn
        self._workdir = workdir
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="legacy-loader")
        self._files = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def load(
        self,
        database: str,
        table: str,
        columns: tuple[str, ...],
        rows: Iterable[Row],
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Load ``rows`` into ``database.table``; returns the number of rows loaded."""
        pending: Future[int] | None = None
        loaded = 0
        written = 0
        lines: list[str] = []
        size = 0
        for row in rows:
            line = "\t".join(map(_field, row)) + "\n"
            lines.append(line)
            size += len(line)
            if len(lines) >= CHUNK_ROWS or size >= CHUNK_BYTES:
                path = self._write(lines)
                written += len(lines)
                if pending is not None:
                    loaded += pending.result()
                    if on_progress is not None:
                        on_progress(loaded)
                pending = self._pool.submit(
                    self._load_file, path, database, table, columns, len(lines)
                )
                lines, size = [], 0
        if lines:
            path = self._write(lines)
            written += len(lines)
            if pending is not None:
                loaded += pending.result()
            pending = self._pool.submit(self._load_file, path, database, table, columns, len(lines))
        if pending is not None:
            loaded += pending.result()
        if on_progress is not None:
            on_progress(loaded)
        return loaded

    def _write(self, lines: list[str]) -> Path:
        self._files += 1
        path = self._workdir / f"chunk-{self._files:05d}.tsv"
        with path.open("w", encoding="latin-1", newline="\n") as fh:
            fh.write("".join(lines))
        return path

    def _load_file(
        self, path: Path, database: str, table: str, columns: tuple[str, ...], expected: int
    ) -> int:
        column_list = ", ".join(f"`{c}`" for c in columns)
        try:
            with self._conn.cursor() as cur:
                loaded: int = cur.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE `{database}`.`{table}` "
                    "CHARACTER SET binary "
                    "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
                    f"({column_list})",
                    (str(path),),
                )
        finally:
            os.unlink(path)
        if loaded != expected:
            raise FatalError(
                f"{database}.{table}: LOAD DATA stored {loaded} of {expected} rows; the generator "
                "produced a duplicate key or a value the column rejects (see SHOW WARNINGS)"
            )
        return loaded
