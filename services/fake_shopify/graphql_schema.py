"""The subset of Shopify's Admin GraphQL schema the fake serves, as SDL.

Names, nullability, enums and argument defaults follow Shopify's reference (2024-10 to
2026-01): ``ID`` values are ``gid://shopify/Type/N`` strings, ``UnsignedInt64`` and
``Decimal``/``Money`` are serialized as strings, ``DateTime`` as ISO 8601 with ``Z``.
A client that selects a field Shopify does not have fails validation here too.
"""

from __future__ import annotations

from functools import cache

from graphql import GraphQLSchema, build_schema

_CONNECTION_ARGS = "first: Int, after: String, last: Int, before: String, reverse: Boolean = false"

SDL = f"""
scalar DateTime
scalar Decimal
scalar Money
scalar UnsignedInt64
scalar URL

interface Node {{ id: ID! }}

enum CurrencyCode {{ USD EUR GBP CAD AUD }}
enum CustomerState {{ DECLINED DISABLED ENABLED INVITED }}
enum ProductStatus {{ ACTIVE ARCHIVED DRAFT }}
enum OrderCancelReason {{ CUSTOMER DECLINED FRAUD INVENTORY OTHER STAFF }}
enum OrderDisplayFinancialStatus {{
  AUTHORIZED EXPIRED PAID PARTIALLY_PAID PARTIALLY_REFUNDED PENDING REFUNDED VOIDED
}}
enum OrderDisplayFulfillmentStatus {{
  FULFILLED IN_PROGRESS ON_HOLD OPEN PARTIALLY_FULFILLED PENDING_FULFILLMENT RESTOCKED
  SCHEDULED UNFULFILLED REQUEST_DECLINED
}}
enum OrderTransactionKind {{
  AUTHORIZATION CAPTURE CHANGE EMV_AUTHORIZATION REFUND SALE SUGGESTED_REFUND VOID
}}
enum OrderTransactionStatus {{ AWAITING_RESPONSE ERROR FAILURE PENDING SUCCESS UNKNOWN }}
enum RefundLineItemRestockType {{ CANCEL LEGACY_RESTOCK NO_RESTOCK RETURN }}
enum CustomerSortKeys {{ CREATED_AT ID LOCATION NAME RELEVANCE UPDATED_AT }}
enum ProductSortKeys {{
  CREATED_AT ID INVENTORY_TOTAL PRODUCT_TYPE PUBLISHED_AT RELEVANCE TITLE UPDATED_AT VENDOR
}}
enum OrderSortKeys {{
  CREATED_AT CUSTOMER_NAME FINANCIAL_STATUS FULFILLMENT_STATUS ID ORDER_NUMBER PROCESSED_AT
  RELEVANCE TOTAL_PRICE UPDATED_AT
}}
enum DeletionEventSortKeys {{ CREATED_AT ID RELEVANCE }}
enum DeletionEventSubjectType {{ COLLECTION PRODUCT }}
enum BulkOperationStatus {{ CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }}
enum BulkOperationErrorCode {{ ACCESS_DENIED INTERNAL_SERVER_ERROR TIMEOUT }}
enum BulkOperationType {{ MUTATION QUERY }}
enum BulkOperationUserErrorCode {{ INVALID LIMIT_REACHED OPERATION_IN_PROGRESS }}
enum DiscountApplicationAllocationMethod {{ ACROSS EACH ONE }}
enum DiscountApplicationTargetSelection {{ ALL ENTITLED EXPLICIT }}
enum DiscountApplicationTargetType {{ LINE_ITEM SHIPPING_LINE }}

type MoneyV2 {{ amount: Decimal! currencyCode: CurrencyCode! }}
type MoneyBag {{ shopMoney: MoneyV2! presentmentMoney: MoneyV2! }}
type PricingPercentageValue {{ percentage: Float! }}
union PricingValue = MoneyV2 | PricingPercentageValue
type PageInfo {{
  hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String
}}

type Shop implements Node {{
  id: ID! name: String! email: String! myshopifyDomain: String! currencyCode: CurrencyCode!
  ianaTimezone: String!
}}

type AccessScope {{ handle: String! description: String! }}
type AppInstallation implements Node {{ id: ID! accessScopes: [AccessScope!]! }}

type MailingAddress implements Node {{
  id: ID! address1: String address2: String city: String company: String country: String
  countryCodeV2: String firstName: String lastName: String name: String phone: String
  province: String provinceCode: String zip: String
}}
type CustomerEmailAddress {{ emailAddress: String! }}

type Customer implements Node {{
  id: ID! legacyResourceId: UnsignedInt64! email: String
  defaultEmailAddress: CustomerEmailAddress firstName: String lastName: String
  displayName: String! phone: String state: CustomerState! tags: [String!]! note: String
  verifiedEmail: Boolean! taxExempt: Boolean! createdAt: DateTime! updatedAt: DateTime!
  numberOfOrders: UnsignedInt64! amountSpent: MoneyV2! defaultAddress: MailingAddress
  addresses(first: Int): [MailingAddress!]!
}}
type CustomerEdge {{ cursor: String! node: Customer! }}
type CustomerConnection {{ edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }}

type ProductOption implements Node {{ id: ID! name: String! position: Int! values: [String!]! }}
type SelectedOption {{ name: String! value: String! }}
type ProductVariant implements Node {{
  id: ID! legacyResourceId: UnsignedInt64! title: String! sku: String price: Money!
  compareAtPrice: Money position: Int! inventoryQuantity: Int taxable: Boolean!
  barcode: String createdAt: DateTime! updatedAt: DateTime!
  selectedOptions: [SelectedOption!]! product: Product!
}}
type ProductVariantEdge {{ cursor: String! node: ProductVariant! }}
type ProductVariantConnection {{
  edges: [ProductVariantEdge!]! nodes: [ProductVariant!]! pageInfo: PageInfo!
}}
type Product implements Node {{
  id: ID! legacyResourceId: UnsignedInt64! title: String! handle: String!
  descriptionHtml: String! vendor: String! productType: String! status: ProductStatus!
  tags: [String!]! createdAt: DateTime! updatedAt: DateTime! publishedAt: DateTime
  totalInventory: Int! options(first: Int): [ProductOption!]!
  variants({_CONNECTION_ARGS}): ProductVariantConnection!
}}
type ProductEdge {{ cursor: String! node: Product! }}
type ProductConnection {{ edges: [ProductEdge!]! nodes: [Product!]! pageInfo: PageInfo! }}

type TaxLine {{ title: String! rate: Float ratePercentage: Float priceSet: MoneyBag! }}
type LineItem implements Node {{
  id: ID! name: String! title: String! sku: String variantTitle: String vendor: String
  quantity: Int! currentQuantity: Int! refundableQuantity: Int!
  originalUnitPriceSet: MoneyBag! discountedUnitPriceSet: MoneyBag!
  originalTotalSet: MoneyBag! totalDiscountSet: MoneyBag!
  taxable: Boolean! requiresShipping: Boolean! product: Product variant: ProductVariant
  taxLines(first: Int): [TaxLine!]!
}}
type LineItemEdge {{ cursor: String! node: LineItem! }}
type LineItemConnection {{ edges: [LineItemEdge!]! nodes: [LineItem!]! pageInfo: PageInfo! }}

interface DiscountApplication {{
  allocationMethod: DiscountApplicationAllocationMethod! index: Int!
  targetSelection: DiscountApplicationTargetSelection!
  targetType: DiscountApplicationTargetType! value: PricingValue!
}}
type DiscountCodeApplication implements DiscountApplication {{
  allocationMethod: DiscountApplicationAllocationMethod! index: Int!
  targetSelection: DiscountApplicationTargetSelection!
  targetType: DiscountApplicationTargetType! value: PricingValue! code: String!
}}
type DiscountApplicationEdge {{ cursor: String! node: DiscountApplication! }}
type DiscountApplicationConnection {{
  edges: [DiscountApplicationEdge!]! nodes: [DiscountApplication!]! pageInfo: PageInfo!
}}

type ShippingLine {{
  id: ID title: String! code: String originalPriceSet: MoneyBag!
  discountedPriceSet: MoneyBag! taxLines: [TaxLine!]!
}}
type ShippingLineEdge {{ cursor: String! node: ShippingLine! }}
type ShippingLineConnection {{
  edges: [ShippingLineEdge!]! nodes: [ShippingLine!]! pageInfo: PageInfo!
}}

type OrderTransaction implements Node {{
  id: ID! kind: OrderTransactionKind! status: OrderTransactionStatus! gateway: String
  amountSet: MoneyBag! createdAt: DateTime! processedAt: DateTime test: Boolean!
  errorCode: String
}}
type OrderTransactionEdge {{ cursor: String! node: OrderTransaction! }}
type OrderTransactionConnection {{
  edges: [OrderTransactionEdge!]! nodes: [OrderTransaction!]! pageInfo: PageInfo!
}}

type RefundLineItem {{
  id: ID lineItem: LineItem! quantity: Int! restockType: RefundLineItemRestockType!
  priceSet: MoneyBag! subtotalSet: MoneyBag! totalTaxSet: MoneyBag!
}}
type RefundLineItemEdge {{ cursor: String! node: RefundLineItem! }}
type RefundLineItemConnection {{
  edges: [RefundLineItemEdge!]! nodes: [RefundLineItem!]! pageInfo: PageInfo!
}}
type Refund implements Node {{
  id: ID! legacyResourceId: UnsignedInt64! createdAt: DateTime updatedAt: DateTime!
  note: String totalRefundedSet: MoneyBag!
  refundLineItems({_CONNECTION_ARGS}): RefundLineItemConnection!
  transactions({_CONNECTION_ARGS}): OrderTransactionConnection!
}}

type Order implements Node {{
  id: ID! legacyResourceId: UnsignedInt64! name: String! number: Int! email: String
  createdAt: DateTime! updatedAt: DateTime! processedAt: DateTime! cancelledAt: DateTime
  cancelReason: OrderCancelReason closedAt: DateTime test: Boolean! note: String
  tags: [String!]! currencyCode: CurrencyCode! presentmentCurrencyCode: CurrencyCode!
  displayFinancialStatus: OrderDisplayFinancialStatus
  displayFulfillmentStatus: OrderDisplayFulfillmentStatus!
  subtotalPriceSet: MoneyBag totalPriceSet: MoneyBag! totalDiscountsSet: MoneyBag
  totalShippingPriceSet: MoneyBag! totalTaxSet: MoneyBag totalRefundedSet: MoneyBag!
  currentTotalPriceSet: MoneyBag! discountCode: String discountCodes: [String!]!
  discountApplications({_CONNECTION_ARGS}): DiscountApplicationConnection!
  lineItems({_CONNECTION_ARGS}): LineItemConnection!
  shippingLines({_CONNECTION_ARGS}, includeRemovals: Boolean = false): ShippingLineConnection!
  shippingLine: ShippingLine taxLines(first: Int): [TaxLine!]!
  transactions(first: Int, capturable: Boolean, manuallyResolvable: Boolean): [OrderTransaction!]!
  refunds(first: Int): [Refund!]! customer: Customer
}}
type OrderEdge {{ cursor: String! node: Order! }}
type OrderConnection {{ edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }}

type DeletionEvent {{
  occurredAt: DateTime! subjectId: ID! subjectType: DeletionEventSubjectType!
}}
type DeletionEventEdge {{ cursor: String! node: DeletionEvent! }}
type DeletionEventConnection {{
  edges: [DeletionEventEdge!]! nodes: [DeletionEvent!]! pageInfo: PageInfo!
}}

type BulkOperation implements Node {{
  id: ID! status: BulkOperationStatus! errorCode: BulkOperationErrorCode
  createdAt: DateTime! completedAt: DateTime objectCount: UnsignedInt64!
  rootObjectCount: UnsignedInt64! fileSize: UnsignedInt64 url: URL partialDataUrl: URL
  query: String! type: BulkOperationType!
}}
type BulkOperationUserError {{
  field: [String!] message: String! code: BulkOperationUserErrorCode
}}
type UserError {{ field: [String!] message: String! }}
type BulkOperationRunQueryPayload {{
  bulkOperation: BulkOperation userErrors: [BulkOperationUserError!]!
}}
type BulkOperationCancelPayload {{ bulkOperation: BulkOperation userErrors: [UserError!]! }}

type QueryRoot {{
  shop: Shop!
  currentAppInstallation: AppInstallation!
  customers({_CONNECTION_ARGS}, query: String, sortKey: CustomerSortKeys = ID): CustomerConnection!
  customer(id: ID!): Customer
  products({_CONNECTION_ARGS}, query: String, sortKey: ProductSortKeys = ID): ProductConnection!
  product(id: ID!): Product
  orders({_CONNECTION_ARGS}, query: String, sortKey: OrderSortKeys = PROCESSED_AT): OrderConnection!
  order(id: ID!): Order
  deletionEvents({_CONNECTION_ARGS}, query: String, sortKey: DeletionEventSortKeys = ID,
    subjectTypes: [DeletionEventSubjectType!]): DeletionEventConnection!
  node(id: ID!): Node
  nodes(ids: [ID!]!): [Node]!
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
}}

type Mutation {{
  bulkOperationRunQuery(query: String!, groupObjects: Boolean): BulkOperationRunQueryPayload
  bulkOperationCancel(id: ID!): BulkOperationCancelPayload
}}

schema {{ query: QueryRoot mutation: Mutation }}
"""


@cache
def admin_schema() -> GraphQLSchema:
    """The built schema (built once per process)."""
    return build_schema(SDL)
