"""Shopify's calculated query cost, from the query's shape (requested) and its result (actual).

The rules Shopify publishes ("Rate limiting GraphQL APIs by calculating query complexity"):
scalars and enums cost 0, every object costs 1, a connection costs 2 plus ``first`` (or
``last``) times the cost of one node with everything selected under it, a mutation costs 10.
``actualQueryCost`` applies the same rules to what came back: 2 plus each node actually
returned. Inline fragments on different types count the most expensive one. A plain list of
objects (``taxLines``, ``refunds``) counts as one object, with its first element for actual.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_leaf_type,
    value_from_ast_untyped,
)

MUTATION_COST = 10
MAX_SINGLE_QUERY_COST = 1000

_Composite = GraphQLObjectType | GraphQLInterfaceType


class _CostWalker:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def selection(self, parent: _Composite, sel: SelectionSetNode | None, data: Any) -> int:
        if sel is None:
            return 0
        total = 0
        alternatives: list[int] = []
        for node in sel.selections:
            if isinstance(node, FieldNode):
                total += self.field(parent, node, data)
                continue
            if isinstance(node, InlineFragmentNode):
                cond = node.type_condition.name.value if node.type_condition else parent.name
                frag_sel = node.selection_set
            elif isinstance(node, FragmentSpreadNode):
                frag = self.fragments.get(node.name.value)
                if frag is None:
                    continue
                cond, frag_sel = frag.type_condition.name.value, frag.selection_set
            else:
                continue
            frag_type = self.schema.get_type(cond)
            if not isinstance(frag_type, GraphQLObjectType | GraphQLInterfaceType):
                continue
            cost = self.selection(frag_type, frag_sel, data)
            if cond == parent.name:
                total += cost
            else:
                alternatives.append(cost)
        return total + (max(alternatives) if alternatives else 0)

    def field(self, parent: _Composite, node: FieldNode, data: Any) -> int:
        name = node.name.value
        definition = parent.fields.get(name)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        key = node.alias.value if node.alias else name
        value = None
        if data is not None:
            if not isinstance(data, dict) or data.get(key) is None:
                return 0
            value = data[key]
        if named.name.endswith("Connection") and isinstance(named, GraphQLObjectType):
            return self.connection(named, node, value, data is not None)
        target = named if isinstance(named, GraphQLObjectType | GraphQLInterfaceType) else None
        if isinstance(value, list):
            value = value[0] if value else None
            if value is None and data is not None:
                return 1
        if target is None:
            # A union: count the most expensive member selected.
            return 1 + self.selection_union(node, value)
        return 1 + self.selection(target, node.selection_set, value)

    def selection_union(self, node: FieldNode, value: Any) -> int:
        best = 0
        if node.selection_set is None:
            return 0
        for sel in node.selection_set.selections:
            if isinstance(sel, InlineFragmentNode) and sel.type_condition is not None:
                t = self.schema.get_type(sel.type_condition.name.value)
                if isinstance(t, GraphQLObjectType | GraphQLInterfaceType):
                    best = max(best, self.selection(t, sel.selection_set, value))
        return best

    def connection(self, conn: GraphQLObjectType, node: FieldNode, value: Any, actual: bool) -> int:
        node_type = get_named_type(conn.fields["nodes"].type)
        assert isinstance(node_type, GraphQLObjectType | GraphQLInterfaceType)
        node_selections: list[tuple[str, SelectionSetNode | None]] = []
        for sel in node.selection_set.selections if node.selection_set else ():
            if not isinstance(sel, FieldNode):
                continue
            key = sel.alias.value if sel.alias else sel.name.value
            if sel.name.value == "nodes":
                node_selections.append((key, sel.selection_set))
            elif sel.name.value == "edges" and sel.selection_set:
                for inner in sel.selection_set.selections:
                    if isinstance(inner, FieldNode) and inner.name.value == "node":
                        inner_key = inner.alias.value if inner.alias else "node"
                        node_selections.append((key + "/" + inner_key, inner.selection_set))
        if not actual:
            size = self.page_size(node)
            per_node = 1 + sum(self.selection(node_type, s, None) for _, s in node_selections)
            return 2 + size * per_node
        items = _returned_nodes(value, node_selections)
        total = 2
        for per_item in items:
            total += 1 + sum(
                self.selection(node_type, s, per_item.get(k)) for k, s in node_selections
            )
        return total

    def page_size(self, node: FieldNode) -> int:
        for arg in node.arguments or ():
            if arg.name.value in ("first", "last"):
                value = value_from_ast_untyped(arg.value, self.variables)
                if isinstance(value, int):
                    return value
        return 0


def _returned_nodes(value: Any, selections: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Per returned node, the node's data under each selection key (``nodes`` or ``edges/node``)."""
    if not isinstance(value, dict):
        return []
    count = 0
    columns: dict[str, list[Any]] = {}
    for key, _ in selections:
        if "/" in key:
            edges_key, node_key = key.split("/", 1)
            column = [e.get(node_key) for e in value.get(edges_key) or []]
        else:
            column = list(value.get(key) or [])
        columns[key] = column
        count = max(count, len(column))
    return [{k: (c[i] if i < len(c) else None) for k, c in columns.items()} for i in range(count)]


def _operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        ops = [o for o in ops if o.name and o.name.value == operation_name]
    return ops[0] if ops else None


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Requested cost (``data`` None) or actual cost (``data`` the response's ``data``)."""
    op = _operation(document, operation_name)
    if op is None:
        return 0
    if op.operation == OperationType.MUTATION:
        return MUTATION_COST
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walker = _CostWalker(schema, fragments, dict(variables or {}))
    root = schema.query_type
    assert root is not None
    if data is None:
        return walker.selection(root, op.selection_set, None)
    return walker.selection(root, op.selection_set, data)
