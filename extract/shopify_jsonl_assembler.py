"""Reassembles a bulk operation's JSONL (roots + ``__parentId`` children) into records.

Design note: Shopify writes one node per line; nodes of nested connections get
their own line with ``"__parentId"``. With ``groupObjects: true`` children come
right after their parent; without it (the default from 2026-01, and what a
fall-forward from a pinned version gives) they come *somewhere after* it, and
Shopify says not to rely on any order at all. So no line can be emitted until
the whole file is known, and holding the file in memory does not scale (a
100,000-order store is hundreds of MB as Python dicts).

The assembler therefore spools lines into a SQLite file on disk: roots in file
order, children indexed by parent id (the "orphans-in-waiting" of a parent that
has not been seen yet simply wait in that index). ``records()`` then walks the
roots in file order and attaches each one's children in file order.

Memory bound: one assembled record plus SQLite's page cache (``cache_kib``,
16 MiB by default), independent of the export size. Disk: about the size of the
JSONL. The spool is a temporary file, deleted by ``close()``; it is not state:
after a crash the JSONL is downloaded again (its URL stays valid for 7 days).

Guarantee: every line ends up in a record or in an error. A child whose parent
never appears, or whose ``__typename`` belongs to no connection of the stream,
raises ``FatalError`` rather than being dropped.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from extract.shopify_streams import ShopifyRecord, StreamSpec
from runeshift.errors import FatalError, SourceDataError


class JsonlAssembler:
    """Spools bulk JSONL lines and yields the stream's records with children attached."""

    def __init__(
        self, spec: StreamSpec, *, spool_dir: Path | None = None, cache_kib: int = 16_384
    ) -> None:
        self._spec = spec
        fd, name = tempfile.mkstemp(prefix=f"shopify-{spec.name}-", suffix=".spool", dir=spool_dir)
        os.close(fd)
        self.path = Path(name)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        self._db.execute(
            "CREATE TABLE roots (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, line BLOB)"
        )
        self._db.execute(
            "CREATE TABLE children (seq INTEGER PRIMARY KEY, parent TEXT NOT NULL, line BLOB)"
        )
        self._seq = 0
        self.root_count = 0
        self.child_count = 0
        self.orphan_count = 0
        self._indexed = False

    def feed(self, lines: Iterable[bytes], *, source: str = "bulk result") -> None:
        """Spool lines (bytes, one JSON object each; blank lines are skipped)."""
        roots: list[tuple[int, str, bytes]] = []
        children: list[tuple[int, str, bytes]] = []
        self._db.execute("BEGIN")
        try:
            for raw in lines:
                line = raw.strip()
                if not line:
                    continue
                self._seq += 1
                parent, node_id = _peek_ids(line, source, self._seq)
                if parent is None:
                    roots.append((self._seq, node_id or "", line))
                else:
                    children.append((self._seq, parent, line))
                if len(roots) + len(children) >= 5_000:
                    self._flush(roots, children)
            self._flush(roots, children)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _flush(
        self, roots: list[tuple[int, str, bytes]], children: list[tuple[int, str, bytes]]
    ) -> None:
        self._db.executemany("INSERT INTO roots VALUES (?, ?, ?)", roots)
        self._db.executemany("INSERT INTO children VALUES (?, ?, ?)", children)
        self.root_count += len(roots)
        self.child_count += len(children)
        roots.clear()
        children.clear()

    def records(self, *, skip: int = 0, allow_orphans: bool = False) -> Iterator[ShopifyRecord]:
        """Yield the records in the order their roots appear, skipping the first ``skip``.

        ``allow_orphans`` is for partial results (a failed operation), whose
        missing parents are re-read by the caller; ``orphan_count`` says how many.
        """
        if not self._indexed:
            self._db.execute("CREATE INDEX children_parent ON children (parent, seq)")
            self._indexed = True
        reader = sqlite3.connect(self.path)
        try:
            roots = reader.execute(
                "SELECT id, line FROM roots ORDER BY seq LIMIT -1 OFFSET ?", (skip,)
            )
            for root_id, line in roots:
                node: dict[str, Any] = json.loads(line)
                for child in self._spec.children:
                    node[child.field] = []
                for (child_line,) in self._db.execute(
                    "SELECT line FROM children WHERE parent = ? ORDER BY seq", (root_id,)
                ):
                    self._attach(node, json.loads(child_line))
                yield to_record(self._spec, node)
            if allow_orphans:
                self.orphan_count = self._count_orphans()
            else:
                self._check_orphans()
        finally:
            reader.close()

    def _attach(self, node: dict[str, Any], child: dict[str, Any]) -> None:
        child.pop("__parentId", None)
        typename = str(child.get("__typename", ""))
        connection = self._spec.child_for_typename(typename)
        if connection is None:
            raise FatalError(
                f"bulk result for {self._spec.name}: child of {node.get('id')} has __typename "
                f"{typename!r}, which belongs to none of "
                f"{', '.join(c.field for c in self._spec.children) or 'no connections'}; "
                "the stream spec and the bulk query disagree"
            )
        node[connection.field].append(child)

    def _count_orphans(self) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM children WHERE parent NOT IN (SELECT id FROM roots)"
        ).fetchone()
        return int(row[0])

    def _check_orphans(self) -> None:
        rows = self._db.execute(
            "SELECT parent, count(*) FROM children "
            "WHERE parent NOT IN (SELECT id FROM roots) GROUP BY parent LIMIT 5"
        ).fetchall()
        if rows:
            shown = ", ".join(f"{parent} ({n} lines)" for parent, n in rows)
            raise FatalError(
                f"bulk result for {self._spec.name}: children whose parent never appeared: "
                f"{shown}; the file is incomplete, rerun the export"
            )

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> JsonlAssembler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_record(spec: StreamSpec, node: dict[str, Any]) -> ShopifyRecord:
    """Wrap an assembled node as the stream's record, children in canonical order.

    Ungrouped bulk output loses the order of a connection's nodes, so both paths
    order children by their numeric id (or ``index`` for discount applications,
    which have no id); the sort is stable, so nodes with neither keep their order.
    """
    node.pop("__parentId", None)
    for child in spec.children:
        nodes = node.get(child.field)
        if isinstance(nodes, list):
            nodes.sort(key=_child_order)
    updated = node.get("updatedAt")
    return ShopifyRecord(
        stream=spec.name,
        id=str(node.get("id", "")),
        updated_at=str(updated) if updated is not None else None,
        data=node,
    )


def _child_order(child: dict[str, Any]) -> tuple[int, int]:
    gid = child.get("id")
    if isinstance(gid, str):
        tail = gid.rsplit("/", 1)[-1].split("?", 1)[0]
        if tail.isdigit():
            return (0, int(tail))
    index = child.get("index")
    return (1, index) if isinstance(index, int) else (2, 0)


def _peek_ids(line: bytes, source: str, number: int) -> tuple[str | None, str | None]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise SourceDataError(f"{source}:{number}: not a JSON line ({exc})") from exc
    if not isinstance(obj, dict):
        raise SourceDataError(f"{source}:{number}: expected a JSON object")
    parent = obj.get("__parentId")
    node_id = obj.get("id")
    return (str(parent) if parent is not None else None, str(node_id) if node_id else None)
