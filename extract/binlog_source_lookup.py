"""Re-reads of current source rows that the binlog follower needs beside the stream.

A binlog event describes one row. Some target rows depend on other source rows too: a new
account takes its ``auth0_sub`` from ``auth0_links``, a license that was an orphan becomes
valid when its member appears, a dedup winner depends on every row sharing the email. For
those the follower asks the source for the rows' *current* values. Reading a state newer
than the stream position is safe: every later change to those rows is still in the stream
and is applied after, so the target converges on the source (the same argument as the
snapshot reader's MyISAM tables).

Rows come back as the raw text-protocol byte tuples of :mod:`extract.binlog_row_decoder`,
so they merge with decoded binlog rows and convert to Arrow the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from extract.binlog_row_decoder import RawRow
from extract.mysql_source_schema import SourceTable, read_source_schema
from extract.snapshot_reader import raw_connect
from runeshift.errors import TransientError

_MAX_IN = 2000


class SourceLookup:
    """One connection to one legacy database, reading raw rows by column values."""

    def __init__(self, url: str, database: str) -> None:
        self._url = url
        self.database = database
        self._conn: Any = None

    def _cursor(self) -> Any:
        if self._conn is None:
            self._conn = raw_connect(self._url, self.database)
            self._conn.autocommit(True)
        return self._conn.cursor()

    def schema(self) -> dict[str, SourceTable]:
        cur = self._cursor()
        try:
            return read_source_schema(cur, self.database)
        finally:
            cur.close()

    def rows_where(
        self, table: str, columns: Sequence[str], column: str, values: Iterable[Any]
    ) -> list[RawRow]:
        """Current rows of ``table`` whose ``column`` is one of ``values`` (raw bytes)."""
        wanted = sorted({v for v in values if v is not None}, key=repr)
        out: list[RawRow] = []
        select = ", ".join(f"`{c}`" for c in columns)
        for start in range(0, len(wanted), _MAX_IN):
            part = wanted[start : start + _MAX_IN]
            marks = ", ".join(["%s"] * len(part))
            out.extend(
                self._fetch(f"SELECT {select} FROM `{table}` WHERE `{column}` IN ({marks})", part)
            )
        return out

    def all_rows(self, table: str, columns: Sequence[str]) -> list[RawRow]:
        select = ", ".join(f"`{c}`" for c in columns)
        return self._fetch(f"SELECT {select} FROM `{table}`", [])

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[RawRow]:
        import MySQLdb

        for attempt in (1, 2):
            try:
                cur = self._cursor()
                try:
                    cur.execute(sql, [_arg(a) for a in args])
                    return [tuple(r) for r in cur.fetchall()]
                finally:
                    cur.close()
            except MySQLdb.OperationalError as exc:
                self.close()
                if attempt == 2:
                    raise TransientError(f"{self.database}: re-reading rows failed: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def _arg(value: Any) -> Any:
    return value
