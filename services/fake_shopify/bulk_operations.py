"""Bulk operations: ``bulkOperationRunQuery``, polling, cancel, and the JSONL result file.

Design note: each operation runs in its own thread, reading the root connection a page at a
time straight from the store (no snapshot), so a record updated mid-export appears with old
values if its page was already written and new values otherwise, which is why a real client
needs an incremental catch-up with a lookback window after a bulk export. Lines are written as
Shopify writes them: one node per line, nested connection nodes on their own lines with
``__parentId``; with ``groupObjects: false`` (the default from 2026-01) children come after
all the roots of their page, shuffled, never right after their parent. Operations live in
memory: a restarted server forgets them (their files stay in the results folder).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    parse,
    validate,
)

from services.fake_shopify.graphql_api import BulkPage, BulkPageReader, gid
from services.fake_shopify.graphql_schema import admin_schema
from services.fake_shopify.store_db import utc_now

Status = Literal["CREATED", "RUNNING", "COMPLETED", "FAILED", "CANCELING", "CANCELED", "EXPIRED"]
ErrorCode = Literal["ACCESS_DENIED", "INTERNAL_SERVER_ERROR", "TIMEOUT"]

MAX_CONNECTIONS = 5
MAX_NESTING = 2


class BulkQueryError(Exception):
    """A bulk query Shopify would refuse with a ``userErrors`` entry (code INVALID)."""


@dataclass
class ConnectionPlan:
    """Where a connection's nodes are in the data and which nested connections they hold."""

    key: str
    edges_key: str | None
    node_key: str | None
    nodes_key: str | None
    children: list[ConnectionPlan] = field(default_factory=list)

    def nodes(self, parent: dict[str, Any]) -> list[dict[str, Any]]:
        value = parent.get(self.key) or {}
        if self.nodes_key is not None and value.get(self.nodes_key) is not None:
            return list(value[self.nodes_key])
        if self.edges_key is not None and self.node_key is not None:
            return [e[self.node_key] for e in value.get(self.edges_key) or []]
        return []


@dataclass
class BulkKnobs:
    """How exports behave; tests and the CLI change these (fault injection)."""

    page_size: int = 250
    page_delay: float = 0.0
    start_delay: float = 0.05
    escape_slashes: bool = False
    trailing_newline: bool = True
    fail_next: ErrorCode | None = None
    fail_after_pages: int = 1
    group_objects: bool | None = None


@dataclass
class BulkOperation:
    id: int
    query: str
    group_objects: bool
    status: Status = "CREATED"
    error_code: ErrorCode | None = None
    created_at: str = field(default_factory=utc_now)
    completed_at: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    has_url: bool = False
    has_partial: bool = False
    cancel_requested: bool = False


def plan_bulk_query(document: DocumentNode) -> ConnectionPlan:
    """Check a bulk query against Shopify's rules and return its connection plan."""
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(ops) != 1 or ops[0].operation != OperationType.QUERY:
        raise BulkQueryError("Bulk queries must contain exactly one query operation.")
    schema = admin_schema()
    root_type = schema.query_type
    assert root_type is not None
    fields = [s for s in ops[0].selection_set.selections if isinstance(s, FieldNode)]
    if len(fields) != 1:
        raise BulkQueryError("Bulk queries must select exactly one top-level field.")
    top = fields[0]
    if top.name.value in ("node", "nodes"):
        raise BulkQueryError("Bulk queries cannot contain a top-level `node` or `nodes` field.")
    definition = root_type.fields[top.name.value]
    named = get_named_type(definition.type)
    if not (isinstance(named, GraphQLObjectType) and named.name.endswith("Connection")):
        raise BulkQueryError("Bulk queries must contain at least one connection.")
    plan, count = _plan_connection(top, named, depth=1)
    if count > MAX_CONNECTIONS:
        raise BulkQueryError(
            f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections."
        )
    return plan


def _plan_connection(
    node: FieldNode, conn: GraphQLObjectType, depth: int
) -> tuple[ConnectionPlan, int]:
    if depth > MAX_NESTING:
        raise BulkQueryError(
            "Bulk queries cannot contain connections with a nesting depth greater than "
            f"{MAX_NESTING}."
        )
    key = node.alias.value if node.alias else node.name.value
    plan = ConnectionPlan(key, None, None, None)
    node_type = get_named_type(conn.fields["nodes"].type)
    assert isinstance(node_type, GraphQLObjectType | GraphQLInterfaceType)
    count = 1
    node_sets: list[SelectionSetNode] = []
    for sel in node.selection_set.selections if node.selection_set else ():
        if not isinstance(sel, FieldNode):
            continue
        sel_key = sel.alias.value if sel.alias else sel.name.value
        if sel.name.value == "nodes" and sel.selection_set:
            plan.nodes_key = sel_key
            node_sets.append(sel.selection_set)
        elif sel.name.value == "edges" and sel.selection_set:
            plan.edges_key = sel_key
            for inner in sel.selection_set.selections:
                if (
                    isinstance(inner, FieldNode)
                    and inner.name.value == "node"
                    and inner.selection_set
                ):
                    plan.node_key = inner.alias.value if inner.alias else "node"
                    node_sets.append(inner.selection_set)
    for node_set in node_sets:
        children, child_count = _plan_children(node_type, node_set, depth, in_list=False)
        if children and not _selects_plain_id(node_set):
            raise BulkQueryError(
                "The parent 'node' field for a nested connection must select the 'id' field "
                "without an alias and must be of 'ID' return type."
            )
        plan.children.extend(children)
        count += child_count
    return plan, count


def _plan_children(
    parent: GraphQLObjectType | GraphQLInterfaceType,
    sel: SelectionSetNode,
    depth: int,
    in_list: bool,
) -> tuple[list[ConnectionPlan], int]:
    plans: list[ConnectionPlan] = []
    count = 0
    schema = admin_schema()
    for item in sel.selections:
        if isinstance(item, InlineFragmentNode):
            cond = (
                schema.get_type(item.type_condition.name.value) if item.type_condition else parent
            )
            if isinstance(cond, GraphQLObjectType | GraphQLInterfaceType):
                more, more_count = _plan_children(cond, item.selection_set, depth, in_list)
                plans.extend(more)
                count += more_count
            continue
        if not isinstance(item, FieldNode) or item.name.value not in parent.fields:
            continue
        ftype = parent.fields[item.name.value].type
        named = get_named_type(ftype)
        if isinstance(named, GraphQLObjectType) and named.name.endswith("Connection"):
            if in_list:
                raise BulkQueryError(
                    "Queries that contain a connection field within a list field are not "
                    "currently supported."
                )
            child, child_count = _plan_connection(item, named, depth + 1)
            plans.append(child)
            count += child_count
        elif isinstance(named, GraphQLObjectType | GraphQLInterfaceType) and item.selection_set:
            inner = ftype.of_type if isinstance(ftype, GraphQLNonNull) else ftype
            nested, nested_count = _plan_children(
                named, item.selection_set, depth, in_list or isinstance(inner, GraphQLList)
            )
            if nested:
                raise BulkQueryError("Bulk queries support connections only directly under a node.")
            count += nested_count
    return plans, count


def _selects_plain_id(sel: SelectionSetNode) -> bool:
    return any(
        isinstance(s, FieldNode) and s.name.value == "id" and s.alias is None
        for s in sel.selections
    )


def _strip(node: dict[str, Any], plan: ConnectionPlan) -> dict[str, Any]:
    drop = {c.key for c in plan.children}
    return {k: v for k, v in node.items() if k not in drop}


def page_lines(
    roots: list[dict[str, Any]], plan: ConnectionPlan, grouped: bool, rng: random.Random
) -> list[dict[str, Any]]:
    """The JSONL objects for one page of root nodes, grouped or interleaved."""
    if grouped:
        out: list[dict[str, Any]] = []

        def emit(node: dict[str, Any], p: ConnectionPlan, parent_id: str | None) -> None:
            line = _strip(node, p)
            if parent_id is not None:
                line["__parentId"] = parent_id
            out.append(line)
            for child in p.children:
                for sub in child.nodes(node):
                    emit(sub, child, node.get("id"))

        for root in roots:
            emit(root, plan, None)
        return out
    parents: list[dict[str, Any]] = [_strip(r, plan) for r in roots]
    children: list[dict[str, Any]] = []
    level = [(r, plan) for r in roots]
    while level:
        nxt: list[tuple[dict[str, Any], ConnectionPlan]] = []
        for node, p in level:
            for child in p.children:
                for sub in child.nodes(node):
                    line = _strip(sub, child)
                    line["__parentId"] = node.get("id")
                    children.append(line)
                    nxt.append((sub, child))
        level = nxt
    rng.shuffle(children)
    return parents + children


class BulkOperations:
    """Every bulk operation of the shop, and the threads that run them."""

    def __init__(
        self,
        reader: BulkPageReader,
        results_dir: Path,
        base_url: Callable[[], str],
        knobs: BulkKnobs | None = None,
    ) -> None:
        self.reader = reader
        self.results_dir = results_dir
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url
        self.knobs = knobs or BulkKnobs()
        self._ops: dict[int, BulkOperation] = {}
        self._lock = threading.Lock()
        self._next_id = 4039184154813

    def result_path(self, token: str) -> Path | None:
        path = self.results_dir / f"{token}.jsonl"
        return path if path.is_file() else None

    def run_query(self, query: str, group_objects: bool | None, api_version: str) -> dict[str, Any]:
        try:
            document = parse(query)
        except GraphQLSyntaxError as exc:
            return _user_error(f"Invalid bulk query: {exc.message}", "INVALID")
        problems = validate(admin_schema(), document)
        if problems:
            return _user_error(f"Invalid bulk query: {problems[0].message}", "INVALID")
        try:
            plan = plan_bulk_query(document)
        except BulkQueryError as exc:
            return _user_error(str(exc), "INVALID")
        limit = 5 if api_version >= "2026-01" and api_version != "unstable" else 1
        if group_objects is None:
            group_objects = self.knobs.group_objects
        if group_objects is None:
            group_objects = not (api_version >= "2026-01" and api_version != "unstable")
        with self._lock:
            running = [
                o for o in self._ops.values() if o.status in ("CREATED", "RUNNING", "CANCELING")
            ]
            if len(running) >= limit:
                return _user_error(
                    "A bulk query operation for this app and shop is already in progress: "
                    f"{gid('BulkOperation', running[0].id)}.",
                    "OPERATION_IN_PROGRESS",
                    field_name=None,
                )
            self._next_id += 1
            op = BulkOperation(self._next_id, query, group_objects)
            self._ops[op.id] = op
            fail, self.knobs.fail_next = self.knobs.fail_next, None
        thread = threading.Thread(
            target=self._run, args=(op, document, plan, fail), name=f"bulk-{op.id}", daemon=True
        )
        thread.start()
        return {"bulkOperation": self._render(op), "userErrors": []}

    def cancel(self, op_id: int) -> dict[str, Any]:
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                return {
                    "bulkOperation": None,
                    "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
                }
            if op.status not in ("CREATED", "RUNNING"):
                return {
                    "bulkOperation": self._render(op),
                    "userErrors": [
                        {
                            "field": None,
                            "message": "A bulk operation cannot be canceled when it is "
                            + op.status.lower(),
                        }
                    ],
                }
            op.cancel_requested = True
            op.status = "CANCELING"
            return {"bulkOperation": self._render(op), "userErrors": []}

    def current_as_graphql(self, kind: str) -> dict[str, Any] | None:
        if kind != "QUERY":
            return None
        with self._lock:
            if not self._ops:
                return None
            return self._render(self._ops[max(self._ops)])

    def as_graphql(self, op_id: int) -> dict[str, Any] | None:
        with self._lock:
            op = self._ops.get(op_id)
            return None if op is None else self._render(op)

    def wait(self, op_id: int, timeout: float = 60.0) -> Status:
        """Block until an operation ends (for the seed/measure tools, not for clients)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                status = self._ops[op_id].status
            if status in ("COMPLETED", "FAILED", "CANCELED", "EXPIRED"):
                return status
            time.sleep(0.02)
        return status

    def _render(self, op: BulkOperation) -> dict[str, Any]:
        url = f"{self.base_url()}/bulk-results/{op.token}.jsonl"
        return {
            "__typename": "BulkOperation",
            "id": gid("BulkOperation", op.id),
            "status": op.status,
            "errorCode": op.error_code,
            "createdAt": op.created_at,
            "completedAt": op.completed_at,
            "objectCount": str(op.object_count),
            "rootObjectCount": str(op.root_object_count),
            "fileSize": None if op.file_size is None else str(op.file_size),
            "url": url if op.has_url else None,
            "partialDataUrl": url if op.has_partial else None,
            "query": op.query,
            "type": "QUERY",
        }

    def _finish(
        self, op: BulkOperation, status: Status, path: Path, error: ErrorCode | None = None
    ) -> None:
        with self._lock:
            op.status = status
            op.error_code = error
            op.completed_at = utc_now()
            size = path.stat().st_size if path.exists() else 0
            op.file_size = size if size else None
            if status == "COMPLETED":
                op.has_url = op.object_count > 0
            elif size:
                op.has_partial = True
            if not size and path.exists():
                path.unlink()

    def _run(
        self,
        op: BulkOperation,
        document: DocumentNode,
        plan: ConnectionPlan,
        fail: ErrorCode | None,
    ) -> None:
        path = self.results_dir / f"{op.token}.jsonl"
        knobs = self.knobs
        time.sleep(knobs.start_delay)
        with self._lock:
            if op.cancel_requested:
                op.status = "CANCELED"
                op.completed_at = utc_now()
                return
            op.status = "RUNNING"
        if fail == "ACCESS_DENIED":
            self._finish(op, "FAILED", path, "ACCESS_DENIED")
            return
        rng = random.Random(op.id)
        page = BulkPage(after=None, limit=max(1, knobs.page_size))
        pages = 0
        try:
            with path.open("w", encoding="utf-8") as out:
                while True:
                    with self._lock:
                        cancel = op.cancel_requested
                    if cancel:
                        out.close()
                        self._finish(op, "CANCELED", path)
                        return
                    result = self.reader.read(document, page)
                    if result.errors or result.data is None:
                        raise RuntimeError(result.errors[0].message if result.errors else "no data")
                    roots = plan.nodes(result.data)
                    lines = page_lines(roots, plan, op.group_objects, rng)
                    text = "\n".join(self._encode(line) for line in lines)
                    if text:
                        if out.tell() > 0:
                            out.write("\n")
                        out.write(text)
                        out.flush()
                    with self._lock:
                        op.object_count += len(lines)
                        op.root_object_count += len(roots)
                    pages += 1
                    if fail is not None and pages >= knobs.fail_after_pages:
                        out.close()
                        self._finish(op, "FAILED", path, fail)
                        return
                    if not page.has_next or page.last_key is None:
                        break
                    page = BulkPage(after=page.last_key, limit=page.limit)
                    if knobs.page_delay:
                        time.sleep(knobs.page_delay)
                if knobs.trailing_newline and out.tell() > 0:
                    out.write("\n")
        except Exception:
            self._finish(op, "FAILED", path, "INTERNAL_SERVER_ERROR")
            return
        self._finish(op, "COMPLETED", path)

    def _encode(self, line: dict[str, Any]) -> str:
        text = json.dumps(line, separators=(",", ":"), ensure_ascii=False)
        return text.replace("/", "\\/") if self.knobs.escape_slashes else text


def _user_error(message: str, code: str, field_name: str | None = "query") -> dict[str, Any]:
    where = None if field_name is None else [field_name]
    return {
        "bulkOperation": None,
        "userErrors": [{"field": where, "message": message, "code": code}],
    }
