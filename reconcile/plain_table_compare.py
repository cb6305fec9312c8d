"""Same-shape tables (MySQL table vs PostgreSQL table, no mapping): the checksum runs in SQL.

Both databases render the canonical text and digest every row themselves
(``canonical_sql_mysql`` / ``canonical_sql_postgres``) and return one
``(count, digest sum)`` per key bucket, in parallel; only buckets whose
checksums differ are narrowed, by fetching their ``(key, digest)`` pairs.
Used by the benchmark against reladiff and for tables copied as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import sql

from reconcile import canonical_sql_mysql as my_canon
from reconcile import canonical_sql_postgres as pg_canon
from reconcile.canonical_text import Kind
from reconcile.checksum_differ import ChunkDiff, narrow
from runeshift.connections import mysql_connect, pg_connect


@dataclass(frozen=True)
class PlainColumn:
    name: str
    kind: Kind
    scale: int = 0


def _mysql_buckets(
    url: str, table: str, key: str, digest: str, width: int
) -> dict[int, tuple[int, int]]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT `{key}` DIV {width}, COUNT(*), CAST(SUM({digest}) AS CHAR) "
                f"FROM `{table}` GROUP BY 1"
            )
            return {int(b): (int(n), int(s) % 2**64) for b, n, s in cur.fetchall()}
    finally:
        conn.close()


def _pg_buckets(
    url: str, table: sql.Composable, key: str, columns: list[tuple[str, Kind]], width: int
) -> dict[int, tuple[int, int]]:
    digests = pg_canon.digest_rows(key, columns, table, ordered=False)
    with pg_connect(url) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT k / {w}, count(*), sum(d)::text FROM ({q}) AS digests(k, d) GROUP BY 1"
            ).format(w=sql.Literal(width), q=digests)
        ).fetchall()
    return {int(b): (int(n), int(s) % 2**64) for b, n, s in rows}


def compare_plain_tables(
    mysql_url: str,
    mysql_table: str,
    pg_url: str,
    pg_table: str,
    key: str,
    columns: Sequence[PlainColumn],
    *,
    bucket_width: int = 20_000,
) -> ChunkDiff:
    """Keys missing from, extra in, or changed in the PostgreSQL table, compared with MySQL's."""
    my_digest = my_canon.row_digest([(c.name, c.kind, c.scale) for c in columns])
    pg_cols = [(c.name, c.kind) for c in columns]
    schema, _, name = pg_table.partition(".")
    ident = sql.Identifier(schema, name) if name else sql.Identifier(schema)
    with ThreadPoolExecutor(2) as pool:
        mine = pool.submit(_mysql_buckets, mysql_url, mysql_table, key, my_digest, bucket_width)
        theirs = pool.submit(_pg_buckets, pg_url, ident, key, pg_cols, bucket_width)
        source, target = mine.result(), theirs.result()
    differing = sorted(b for b in set(source) | set(target) if source.get(b) != target.get(b))
    result = ChunkDiff()
    if not differing:
        return result
    bucket_rows = pg_canon.digest_rows(
        key,
        pg_cols,
        ident,
        sql.SQL("{k} >= %s AND {k} < %s").format(k=sql.Identifier(key)),
        ordered=False,
    )
    my_conn = mysql_connect(mysql_url)
    try:
        with pg_connect(pg_url) as pg, my_conn.cursor() as cur:
            for bucket in differing:
                lo, hi = bucket * bucket_width, (bucket + 1) * bucket_width
                cur.execute(  # the digest's own % (DATE_FORMAT) doubled for the driver
                    f"SELECT `{key}`, {my_digest.replace('%', '%%')} FROM `{mysql_table}` "
                    f"WHERE `{key}` >= %s AND `{key}` < %s",
                    (lo, hi),
                )
                s_rows: list[Any] = list(cur.fetchall())
                t_rows = pg.execute(bucket_rows, (lo, hi)).fetchall()
                result.extend(
                    narrow(
                        np.array([int(r[0]) for r in s_rows], np.int64),
                        np.array([int(r[1]) for r in s_rows], np.int64),
                        np.array([int(r[0]) for r in t_rows], np.int64),
                        np.array([int(r[1]) for r in t_rows], np.int64),
                    )
                )
    finally:
        my_conn.close()
    return result
