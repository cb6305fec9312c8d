"""The Shopify streams runeshift extracts, and the record shape each one produces.

One ``StreamSpec`` per stream drives both extraction paths: the bulk query and
the paginated incremental query are generated from the same selection, so a
record has the same shape whichever path it came by (decision 0001: fields keep
their JSON types, ids stay ``gid://`` strings, money stays a decimal string).

Record shape (``ShopifyRecord.data``) is the GraphQL node as Shopify returns it,
camelCase, with every nested *connection* replaced by a plain list of child
nodes under the connection's field name. Children carry ``__typename``.

* ``customers``: Customer scalars, ``amountSpent``, ``emailMarketingConsent``,
  ``defaultAddress {id}``, ``addresses`` (list of MailingAddress). (Real Shopify also
  has ``emailMarketingConsent``/``locale``; not selected until the fake serves them.)
* ``products``: Product scalars, ``options`` (list: id, name, position,
  values), ``variants`` (list of ProductVariant with ``selectedOptions``).
* ``orders``: Order scalars and MoneyBags, ``customer {id}``, ``discountCodes``,
  ``taxLines``, ``transactions`` and
  ``refunds`` (lists), and the connections ``lineItems``,
  ``discountApplications`` and ``shippingLines`` (lists after assembly).
* ``deletions``: ``{"subjectType": "PRODUCT", "subjectId": "gid://...",
  "occurredAt": "..."}``, from Shopify's ``deletionEvents``.

The CSV importer (``extract/shopify_csv_import.py``) produces the same shapes
for the columns a CSV export has; fields the CSV lacks are absent, not null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from extract.shopify_checkpoints import StreamPosition
from runeshift.errors import ConfigError

StreamName = Literal["customers", "products", "orders"]
STREAM_NAMES: tuple[StreamName, ...] = ("customers", "products", "orders")

_MONEY = "{ amount currencyCode }"
_BAG = f"{{ shopMoney {_MONEY} presentmentMoney {_MONEY} }}"
_ADDRESS = (
    "{ id firstName lastName company address1 address2 city province provinceCode "
    "country countryCodeV2 zip phone }"
)


@dataclass(frozen=True)
class ChildConnection:
    """A nested connection whose nodes bulk output puts on their own JSONL lines."""

    field: str
    typenames: frozenset[str]
    selection: str
    page_size: int


@dataclass(frozen=True)
class StreamSpec:
    """How one stream is queried and what its records hold."""

    name: StreamName
    root_field: str
    gid_type: str
    selection: str
    children: tuple[ChildConnection, ...] = ()

    def child_for_typename(self, typename: str) -> ChildConnection | None:
        for child in self.children:
            if typename in child.typenames:
                return child
        return None

    def node_selection(self, *, paginated: bool) -> str:
        """The node's selection; paginated queries size and page nested connections."""
        parts = [self.selection]
        for child in self.children:
            if paginated:
                parts.append(
                    f"{child.field}(first: {child.page_size}) {{ "
                    "pageInfo { hasNextPage endCursor } "
                    f"edges {{ node {{ __typename {child.selection} }} }} }}"
                )
            else:
                parts.append(
                    f"{child.field} {{ edges {{ node {{ __typename {child.selection} }} }} }}"
                )
        return " ".join(parts)

    def bulk_query(self) -> str:
        """The query handed to ``bulkOperationRunQuery``."""
        return (
            f"{{ {self.root_field}(sortKey: ID) {{ edges {{ node {{ "
            f"{self.node_selection(paginated=False)} }} }} }} }}"
        )

    def page_query(self) -> str:
        """A cursor query over the stream, filtered by ``$query`` and sorted by UPDATED_AT."""
        return (
            "query Page($first: Int!, $after: String, $query: String) { "
            f"{self.root_field}(first: $first, after: $after, query: $query, "
            "sortKey: UPDATED_AT) { pageInfo { hasNextPage endCursor } "
            f"edges {{ node {{ {self.node_selection(paginated=True)} }} }} }} }}"
        )

    def child_page_query(self, child: ChildConnection) -> str:
        """Fetches the rest of one parent's nested connection."""
        return (
            "query Children($id: ID!, $first: Int!, $after: String) { node(id: $id) { "
            f"... on {self.gid_type} {{ {child.field}(first: $first, after: $after) {{ "
            "pageInfo { hasNextPage endCursor } "
            f"edges {{ node {{ __typename {child.selection} }} }} }} }} }} }}"
        )


@dataclass(frozen=True)
class ShopifyRecord:
    """One extracted record: a stream's node with its children assembled."""

    stream: str
    id: str
    updated_at: str | None
    data: dict[str, Any] = field(compare=True)


@dataclass(frozen=True)
class ShopifyBatch:
    """Records handed over together, and the position that is saved once they are consumed.

    The runners save ``position`` when the consumer asks for the next batch, so
    a consumer must make a batch durable before it asks for the next one.
    """

    stream: str
    records: list[ShopifyRecord]
    position: StreamPosition


CUSTOMERS = StreamSpec(
    name="customers",
    root_field="customers",
    gid_type="Customer",
    selection=(
        "id legacyResourceId email firstName lastName phone state tags note verifiedEmail "
        "taxExempt createdAt updatedAt numberOfOrders "
        f"amountSpent {_MONEY} "
        "defaultAddress { id } "
        f"addresses {_ADDRESS}"
    ),
)

PRODUCTS = StreamSpec(
    name="products",
    root_field="products",
    gid_type="Product",
    selection=(
        "id legacyResourceId title handle descriptionHtml vendor productType status tags "
        "createdAt updatedAt publishedAt "
        "options { id name position values }"
    ),
    children=(
        ChildConnection(
            field="variants",
            typenames=frozenset({"ProductVariant"}),
            selection=(
                "id legacyResourceId title sku barcode price compareAtPrice position "
                "inventoryQuantity taxable createdAt updatedAt "
                "selectedOptions { name value }"
            ),
            page_size=50,
        ),
    ),
)

ORDERS = StreamSpec(
    name="orders",
    root_field="orders",
    gid_type="Order",
    selection=(
        "id legacyResourceId name number email createdAt updatedAt processedAt cancelledAt "
        "closedAt cancelReason test currencyCode presentmentCurrencyCode displayFinancialStatus "
        "displayFulfillmentStatus tags note discountCodes "
        "customer { id } "
        f"totalPriceSet {_BAG} subtotalPriceSet {_BAG} totalTaxSet {_BAG} "
        f"totalDiscountsSet {_BAG} totalShippingPriceSet {_BAG} totalRefundedSet {_BAG} "
        f"currentTotalPriceSet {_BAG} "
        f"taxLines {{ title rate priceSet {_BAG} }} "
        f"transactions {{ id kind status gateway test errorCode createdAt processedAt "
        f"amountSet {_BAG} }} "
        f"refunds {{ id legacyResourceId createdAt updatedAt note totalRefundedSet {_BAG} }}"
    ),
    children=(
        ChildConnection(
            field="lineItems",
            typenames=frozenset({"LineItem"}),
            selection=(
                "id name sku title variantTitle quantity currentQuantity vendor taxable "
                "requiresShipping "
                f"originalUnitPriceSet {_BAG} totalDiscountSet {_BAG} "
                f"taxLines {{ title rate priceSet {_BAG} }} "
                "variant { id } product { id }"
            ),
            # Shopify charges `first` up front whatever comes back; most orders have
            # a handful of line items and the rest are fetched per order.
            page_size=5,
        ),
        ChildConnection(
            field="discountApplications",
            typenames=frozenset(
                {
                    "DiscountCodeApplication",
                    "ManualDiscountApplication",
                    "AutomaticDiscountApplication",
                    "ScriptDiscountApplication",
                }
            ),
            selection=(
                "allocationMethod targetSelection targetType index "
                "value { __typename ... on MoneyV2 { amount currencyCode } "
                "... on PricingPercentageValue { percentage } } "
                "... on DiscountCodeApplication { code }"
            ),
            page_size=2,
        ),
        ChildConnection(
            field="shippingLines",
            typenames=frozenset({"ShippingLine"}),
            selection=(
                f"id title code originalPriceSet {_BAG} discountedPriceSet {_BAG} "
                f"taxLines {{ title rate priceSet {_BAG} }}"
            ),
            page_size=1,
        ),
    ),
)

STREAMS: dict[str, StreamSpec] = {s.name: s for s in (CUSTOMERS, PRODUCTS, ORDERS)}


def stream_spec(name: str) -> StreamSpec:
    """The spec of a stream by name, or a ConfigError listing the known ones."""
    try:
        return STREAMS[name]
    except KeyError:
        raise ConfigError(
            f"unknown Shopify stream {name!r}; known streams are {', '.join(STREAMS)}"
        ) from None
