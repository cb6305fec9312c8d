"""The fake store's state: customers, products, orders and deletions in one SQLite file.

Design note: every record is one JSON document (``doc``) in the store's neutral shape
(snake_case, UTC timestamps ending in ``Z``, money as decimal strings with a shop and a
presentment amount), beside the few columns the APIs filter and sort on. The GraphQL and
REST layers render the same document in their own shapes, so both APIs always agree.

Several processes share the file (the seeder, the server, a test that mutates a record
while a bulk export runs), so the database is in WAL mode and every write is its own short
transaction. Reads are not snapshotted across pages on purpose: a bulk export that reads
page by page sees a record updated mid-export with old or new values, as Shopify does.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Resource = Literal["customers", "products", "orders"]
RESOURCES: tuple[Resource, ...] = ("customers", "products", "orders")
SortColumn = Literal["id", "created_at", "updated_at", "processed_at"]

GID_TYPES: dict[Resource, str] = {"customers": "Customer", "products": "Product", "orders": "Order"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
  id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  processed_at TEXT NOT NULL, email TEXT, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
  id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  processed_at TEXT NOT NULL, email TEXT, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  processed_at TEXT NOT NULL, email TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS customers_updated ON customers (updated_at, id);
CREATE INDEX IF NOT EXISTS products_updated ON products (updated_at, id);
CREATE INDEX IF NOT EXISTS orders_updated ON orders (updated_at, id);
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at, id);
CREATE INDEX IF NOT EXISTS orders_processed ON orders (processed_at, id);
CREATE TABLE IF NOT EXISTS deletion_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT NOT NULL, subject_id INTEGER NOT NULL,
  occurred_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shop (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def utc_now() -> str:
    """Now as the store writes timestamps: UTC, second precision, ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    """One search-syntax comparison, already mapped to a column: ``updated_at >= '...'``."""

    column: str
    op: Literal["=", ">", ">=", "<", "<=", "IS", "IS NOT"]
    value: str | int | None


@dataclass(frozen=True)
class Filter:
    """Conditions in disjunctive normal form: any group matches when all its conditions do."""

    groups: tuple[tuple[Condition, ...], ...] = ()

    def sql(self) -> tuple[str, list[Any]]:
        if not self.groups:
            return "1=1", []
        parts: list[str] = []
        params: list[Any] = []
        for group in self.groups:
            if not group:
                parts.append("1=1")
                continue
            parts.append("(" + " AND ".join(f"{c.column} {c.op} ?" for c in group) + ")")
            params.extend(c.value for c in group)
        return "(" + " OR ".join(parts) + ")", params


@dataclass(frozen=True)
class PageKey:
    """Where a page starts: the sort value and id of the row just before it."""

    sort_value: str | int
    id: int


@dataclass(frozen=True)
class DeletionEvent:
    seq: int
    resource: Resource
    subject_id: int
    occurred_at: str


class StoreDB:
    """The store file; one connection per thread, all writes autocommitted."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        conn = self._conn()
        conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def put_many(self, resource: Resource, docs: Iterable[dict[str, Any]]) -> int:
        """Insert or replace documents; returns how many were written."""
        rows = [
            (
                int(d["id"]),
                d["created_at"],
                d["updated_at"],
                d.get("processed_at") or d["created_at"],
                d.get("email"),
                json.dumps(d, separators=(",", ":")),
            )
            for d in docs
        ]
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                f"INSERT OR REPLACE INTO {resource} "
                "(id, created_at, updated_at, processed_at, email, doc) VALUES (?,?,?,?,?,?)",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(rows)

    def put(self, resource: Resource, doc: dict[str, Any]) -> None:
        self.put_many(resource, [doc])

    def get(self, resource: Resource, record_id: int) -> dict[str, Any] | None:
        row = (
            self._conn()
            .execute(f"SELECT doc FROM {resource} WHERE id = ?", (record_id,))
            .fetchone()
        )
        return None if row is None else _load(row[0])

    def delete(self, resource: Resource, record_id: int, *, at: str | None = None) -> bool:
        """Delete a record and remember a deletion event (what ``deletionEvents`` shows)."""
        conn = self._conn()
        conn.execute("BEGIN")
        cur = conn.execute(f"DELETE FROM {resource} WHERE id = ?", (record_id,))
        if cur.rowcount:
            conn.execute(
                "INSERT INTO deletion_events (resource, subject_id, occurred_at) VALUES (?,?,?)",
                (resource, record_id, at or utc_now()),
            )
        conn.execute("COMMIT")
        return cur.rowcount > 0

    def update(
        self, resource: Resource, record_id: int, changes: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Apply top-level field changes to a record and bump its ``updated_at`` (unless given)."""
        doc = self.get(resource, record_id)
        if doc is None:
            return None
        doc.update(changes)
        if "updated_at" not in changes:
            doc["updated_at"] = utc_now()
        self.put(resource, doc)
        return doc

    def count(self, resource: Resource, where: Filter = Filter()) -> int:
        clause, params = where.sql()
        row = (
            self._conn()
            .execute(f"SELECT count(*) FROM {resource} WHERE {clause}", params)
            .fetchone()
        )
        return int(row[0])

    def page(
        self,
        resource: Resource,
        *,
        where: Filter = Filter(),
        sort: SortColumn = "id",
        reverse: bool = False,
        after: PageKey | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """One page of documents in (sort column, id) order, strictly after ``after``."""
        clause, params = where.sql()
        if after is not None:
            cmp = "<" if reverse else ">"
            if sort == "id":
                clause += f" AND id {cmp} ?"
                params.append(after.id)
            else:
                clause += f" AND ({sort}, id) {cmp} (?, ?)"
                params.extend([after.sort_value, after.id])
        direction = "DESC" if reverse else "ASC"
        order = "id " + direction if sort == "id" else f"{sort} {direction}, id {direction}"
        rows = self._conn().execute(
            f"SELECT doc FROM {resource} WHERE {clause} ORDER BY {order} LIMIT ?", [*params, limit]
        )
        return [_load(r[0]) for r in rows]

    def iterate(self, resource: Resource, *, batch: int = 1000) -> Iterator[dict[str, Any]]:
        after: PageKey | None = None
        while True:
            docs = self.page(resource, after=after, limit=batch)
            yield from docs
            if len(docs) < batch:
                return
            after = PageKey(docs[-1]["id"], docs[-1]["id"])

    def ids(self, resource: Resource) -> list[int]:
        return [int(r[0]) for r in self._conn().execute(f"SELECT id FROM {resource} ORDER BY id")]

    def deletion_events(
        self, resources: Sequence[Resource], *, after_seq: int = 0, limit: int = 50
    ) -> list[DeletionEvent]:
        marks = ",".join("?" for _ in resources) or "''"
        rows = self._conn().execute(
            "SELECT seq, resource, subject_id, occurred_at FROM deletion_events "
            f"WHERE resource IN ({marks}) AND seq > ? ORDER BY seq LIMIT ?",
            [*resources, after_seq, limit],
        )
        return [DeletionEvent(int(r[0]), r[1], int(r[2]), r[3]) for r in rows]

    def set_shop(self, key: str, value: str) -> None:
        self._conn().execute("INSERT OR REPLACE INTO shop (key, value) VALUES (?, ?)", (key, value))

    def shop(self, key: str, default: str) -> str:
        row = self._conn().execute("SELECT value FROM shop WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def clear(self) -> None:
        conn = self._conn()
        for table in (*RESOURCES, "deletion_events", "shop"):
            conn.execute(f"DELETE FROM {table}")


def _load(raw: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(raw)
    return doc


def sort_value(doc: dict[str, Any], sort: SortColumn) -> str | int:
    """The value a document sorts by, as stored in its column."""
    if sort == "id":
        return int(doc["id"])
    if sort == "processed_at":
        return str(doc.get("processed_at") or doc["created_at"])
    return str(doc[sort])
