"""The GraphQL documents the Shopify connector sends, one named operation each.

The operation name is the `api` of a client call (and what the sandbox routes on), so a
log line, a fault switch and a test all speak of the same thing. Page sizes are chosen so
that the *requested* cost of every query stays well under Shopify's 1,000-point ceiling
for a single query: a connection costs roughly `first ×` its nested objects, so orders
carry only the first `ORDER_LINES` lines and longer orders are completed with
`ErpsyncOrderLines`.
"""

from __future__ import annotations

ORDER_PAGE = 15  # orders per page
ORDER_LINES = 10  # lines fetched with each order; more are paged with ErpsyncOrderLines
LINE_PAGE = 100
VARIANT_PAGE = 100
FULFILLMENT_ORDERS = 5
FULFILLMENT_ORDER_LINES = 50

_MONEY = "shopMoney { amount currencyCode }"
_ADDRESS = "name phone address1 address2 city province provinceCode zip countryCodeV2"

LINE_FIELDS = f"""
fragment ErpsyncLineFields on LineItem {{
  id sku title quantity currentQuantity unfulfilledQuantity
  originalUnitPriceSet {{ {_MONEY} }}
  discountedTotalSet {{ {_MONEY} }}
  variant {{ id }}
  product {{ id }}
}}"""

ORDER_FIELDS = f"""
fragment ErpsyncOrderFields on Order {{
  id name createdAt updatedAt processedAt cancelledAt closedAt note
  displayFinancialStatus displayFulfillmentStatus currencyCode
  totalPriceSet {{ {_MONEY} }}
  totalShippingPriceSet {{ {_MONEY} }}
  shippingAddress {{ {_ADDRESS} }}
  billingAddress {{ {_ADDRESS} }}
  fulfillments(first: 10) {{ status trackingInfo(first: 5) {{ company number url }} }}
  lineItems(first: {ORDER_LINES}) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{ ...ErpsyncLineFields }}
  }}
}}""" + LINE_FIELDS

ORDERS = """
query ErpsyncOrders($query: String!, $first: Int!, $after: String) {
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes { ...ErpsyncOrderFields }
  }
}""" + ORDER_FIELDS

ORDER = """
query ErpsyncOrder($id: ID!) {
  order(id: $id) { ...ErpsyncOrderFields }
}""" + ORDER_FIELDS

ORDER_LINES_QUERY = """
query ErpsyncOrderLines($id: ID!, $first: Int!, $after: String) {
  order(id: $id) {
    id
    lineItems(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { ...ErpsyncLineFields }
    }
  }
}""" + LINE_FIELDS

SHOP = """
query ErpsyncShop {
  shop { currencyCode }
}"""

VARIANTS = """
query ErpsyncVariants($first: Int!, $after: String) {
  shop { currencyCode }
  productVariants(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id sku title price inventoryQuantity updatedAt
      inventoryItem { id tracked }
      product { id title status }
    }
  }
}"""

PRIMARY_LOCATION = """
query ErpsyncPrimaryLocation {
  location { id isActive }
}"""

INVENTORY_LEVELS = """
query ErpsyncInventoryLevels($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on ProductVariant {
      id
      product { id }
      inventoryItem {
        id tracked
        inventoryLevel(locationId: $locationId) {
          quantities(names: ["available"]) { name quantity }
        }
      }
    }
  }
}"""

# 2026-04+: every quantity carries `changeFromQuantity` and the mutation an idempotency key.
INVENTORY_SET = """
mutation ErpsyncInventorySet($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { createdAt reason changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"""

VARIANT_PRICES = """
mutation ErpsyncVariantPrices($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id price }
    userErrors { code field message }
  }
}"""

PRODUCT_STATUS = """
mutation ErpsyncProductStatus($product: ProductUpdateInput!) {
  productUpdate(product: $product) {
    product { id status }
    userErrors { field message }
  }
}"""

PRODUCT_SET = """
mutation ErpsyncProductSet($input: ProductSetInput!) {
  productSet(input: $input, synchronous: true) {
    product { id variants(first: 100) { nodes { id sku } } }
    userErrors { code field message }
  }
}"""

FULFILLMENT_ORDERS_QUERY = f"""
query ErpsyncFulfillmentOrders($id: ID!) {{
  order(id: $id) {{
    id cancelledAt
    fulfillmentOrders(first: {FULFILLMENT_ORDERS}) {{
      nodes {{
        id status
        assignedLocation {{ location {{ id }} }}
        lineItems(first: {FULFILLMENT_ORDER_LINES}) {{
          nodes {{ id remainingQuantity totalQuantity lineItem {{ id }} }}
        }}
      }}
    }}
  }}
}}"""

FULFILLMENT_CREATE = """
mutation ErpsyncFulfillmentCreate($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status trackingInfo(first: 5) { company number url } }
    userErrors { field message }
  }
}"""

DOCUMENTS: dict[str, str] = {
    "ErpsyncOrders": ORDERS,
    "ErpsyncOrder": ORDER,
    "ErpsyncOrderLines": ORDER_LINES_QUERY,
    "ErpsyncShop": SHOP,
    "ErpsyncVariants": VARIANTS,
    "ErpsyncPrimaryLocation": PRIMARY_LOCATION,
    "ErpsyncInventoryLevels": INVENTORY_LEVELS,
    "ErpsyncInventorySet": INVENTORY_SET,
    "ErpsyncVariantPrices": VARIANT_PRICES,
    "ErpsyncProductStatus": PRODUCT_STATUS,
    "ErpsyncProductSet": PRODUCT_SET,
    "ErpsyncFulfillmentOrders": FULFILLMENT_ORDERS_QUERY,
    "ErpsyncFulfillmentCreate": FULFILLMENT_CREATE,
}

# the mutation payload each operation answers under (its userErrors live there)
PAYLOAD_FIELD: dict[str, str] = {
    "ErpsyncInventorySet": "inventorySetQuantities",
    "ErpsyncVariantPrices": "productVariantsBulkUpdate",
    "ErpsyncProductStatus": "productUpdate",
    "ErpsyncProductSet": "productSet",
    "ErpsyncFulfillmentCreate": "fulfillmentCreate",
}
