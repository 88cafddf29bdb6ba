"""A Shopify store as the connector sees it: the Admin GraphQL endpoint and the token
endpoint, over the shared sandbox state.

GraphQL is served by a small router keyed on the operation name (the connector's named
operations); it does not execute arbitrary GraphQL and refuses operations it does not know.
What it does reproduce is what the connector must cope with:
- `X-Shopify-Access-Token` (401 `[API] Invalid API key or access token`), the rotating
  refresh-token exchange at `/admin/oauth/access_token`;
- the cost bucket: each operation has a requested cost (roughly `first ×` nested objects),
  refused above 1,000 (MAX_COST_EXCEEDED), THROTTLED with `extensions.cost` when the bucket
  cannot pay, refilled at `restore_rate` points per second of the sandbox clock;
- `first ≤ 250`, input arrays ≤ 250, required variables, global ids;
- `inventorySetQuantities`: `changeFromQuantity` compare-and-swap (mandatory key from
  2026-04, `compareQuantity` before 2026-01), the `@idempotent` key (replay, parameter
  mismatch, previous attempt failed), all-or-nothing userErrors;
- fulfillment orders and `fulfillmentCreate` (closed fulfillment order = already shipped,
  quantities ≤ remaining, tracking-input rules); carrier names are free text as on Shopify;
- the last 60 days of orders only, unless `read_all_orders`;
- webhooks signed with the app secret, REST-shaped bodies, Shopify's headers.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from core.sandbox import (
    Fault,
    PushDelivery,
    Sandbox,
    SandboxItem,
    SandboxOrder,
    SandboxRequest,
    SandboxResponse,
    SandboxShipment,
    SandboxSku,
)
from core.signing import hmac_b64

_GRAPHQL = re.compile(r"/admin/api/(?P<version>\d{4}-\d{2}|unstable)/graphql\.json$")
_TOKEN = re.compile(r"/admin/oauth/access_token$")
_OPERATION = re.compile(r"\b(query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")
_SEARCH_TERM = re.compile(r"(updated_at|created_at):(>=|<=|>|<)'?([^' ]+)'?")

MAX_QUERY_COST = 1000
MAX_PAGE = 250
MAX_INPUT = 250
VISIBLE_DAYS = 60
INVENTORY_REASONS = frozenset({
    "correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
    "movement_received", "movement_canceled", "other", "promotion", "quality_control",
    "received", "reservation_created", "reservation_deleted", "reservation_updated",
    "restock", "safety_stock", "shrinkage",
})
AUTH_FAILED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "KWD": 3, "BHD": 3}


class GraphQLError(Exception):
    """A top-level GraphQL error (no data)."""

    def __init__(self, message: str, code: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


def _user_error(field_path: Sequence[str | int], message: str,
                code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"field": [str(p) for p in field_path], "message": message}
    if code is not None:
        error["code"] = code
    return error


@dataclass
class FulfillmentOrderLine:
    fo_line_id: str
    line_id: str
    total: int
    fulfilled: int = 0


@dataclass
class FulfillmentOrder:
    fo_id: str
    order_id: str
    lines: list[FulfillmentOrderLine] = field(default_factory=list)


class ShopifySandbox(Sandbox):
    platform: ClassVar[str] = "shopify"
    item_id_base: ClassVar[int] = 8_000_000_000_000  # products
    sku_id_base: ClassVar[int] = 44_000_000_000_000  # variants
    order_id_base: ClassVar[int] = 5_000_000_000_000

    def __init__(self, *, currency: str = "USD", bucket_size: float = 2000.0,
                 restore_rate: float = 100.0, read_all_orders: bool = False,
                 shop_domain: str = "erpsync-sandbox.myshopify.com",
                 shop_timezone: tzinfo = timezone(timedelta(hours=-5)),
                 **kwargs: Any) -> None:
        kwargs.setdefault("app_key", "sandbox-client-id")
        kwargs.setdefault("app_secret", "shpss_sandbox_app_secret_0001")
        super().__init__(**kwargs)
        self.currency = currency
        self.bucket_size = bucket_size
        self.restore_rate = restore_rate
        self._available = bucket_size
        self._stamp = self.clock.monotonic()
        self.read_all_orders = read_all_orders
        self.shop_domain = shop_domain
        self.shop_timezone = shop_timezone
        self.location_id = "70000000001"
        self.inventory_items: dict[str, str] = {}  # variant id -> inventory item id
        self.untracked: set[str] = set()  # variant ids whose inventory is not tracked
        self.order_numbers: dict[str, int] = {}
        self.fulfillment_orders: dict[str, list[FulfillmentOrder]] = {}
        # the shipments themselves are the shared state's; Shopify adds a URL to each
        self.tracking_urls: dict[tuple[str, str], str] = {}
        self.cancelled_at: dict[str, datetime] = {}
        self.closed_at: dict[str, datetime] = {}
        self.idempotency: dict[str, tuple[str, dict[str, Any], bool]] = {}
        self.webhook_api_version = "2026-10"
        self._deliveries = 0

    # -- ids and seeding -------------------------------------------------------------------
    def _new(self, base: int) -> str:
        return str(base + next(self._ids))

    def add_item(self, title: str, outer_id: str, price_fen: int, *,
                 skus: Sequence[tuple[str, int, int]] = (), quantity: int = 0,
                 on_sale: bool = True, category_id: str = "", spec_name: str = "Option",
                 ) -> SandboxItem:
        """Every Shopify product has at least one variant: a product without SKUs gets
        its "Default Title" variant carrying the product's code and stock."""
        item = super().add_item(title, outer_id, price_fen, skus=skus, quantity=quantity,
                                on_sale=on_sale, category_id=category_id, spec_name=spec_name)
        if not item.skus:
            item.skus = [SandboxSku(self.new_sku_id(), outer_id, quantity, price_fen,
                                    {"Title": "Default Title"})]
            item.quantity = 0
        for sku in item.skus:
            self.inventory_items[sku.sku_id] = self._new(47_000_000_000_000)
        return item

    def place_order(self, lines: Sequence[tuple[str, int]], *, paid: bool = True,
                    buyer_remark: str = "", post_fee_fen: int = 0,
                    address: Mapping[str, str] | None = None) -> SandboxOrder:
        where = {"province": "California", "city": "Los Angeles", "district": "",
                 "detail": "100 Example Street", "receiver": "Example Buyer",
                 "phone": "+1 555 0100", **(address or {})}
        order = super().place_order(lines, paid=paid, buyer_remark=buyer_remark,
                                    post_fee_fen=post_fee_fen, address=where)
        return order

    def notify(self, order: SandboxOrder, topic: str) -> None:
        # first sight of an order: give it its number and its fulfillment order
        if order.order_id not in self.order_numbers:
            self.order_numbers[order.order_id] = 1000 + len(self.order_numbers) + 1
            fo = FulfillmentOrder(self._new(6_000_000_000_000), order.order_id)
            for line in order.lines:
                fo.lines.append(FulfillmentOrderLine(self._new(7_000_000_000_000),
                                                     line.line_id, line.quantity))
            self.fulfillment_orders[order.order_id] = [fo]
        if order.state == "cancelled" or (order.state == "refunded" and not order.shipments):
            self.cancelled_at.setdefault(order.order_id, self.clock.now())
            self.closed_at.setdefault(order.order_id, self.clock.now())
        if order.state == "completed":
            self.closed_at.setdefault(order.order_id, self.clock.now())
        super().notify(order, topic)

    # -- rendering helpers -----------------------------------------------------------------
    def _amount(self, fen: int) -> str:
        exponent = _EXPONENTS.get(self.currency, 2)
        value = Decimal(fen).scaleb(-exponent)
        return f"{value:.{exponent}f}"

    def _money(self, fen: int) -> dict[str, Any]:
        return {"shopMoney": {"amount": self._amount(fen), "currencyCode": self.currency}}

    @staticmethod
    def _iso(moment: datetime | None) -> str | None:
        if moment is None:
            return None
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _local(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        return moment.astimezone(self.shop_timezone).isoformat(timespec="seconds")

    def _variant(self, variant_id: str) -> tuple[SandboxItem, SandboxSku] | None:
        for item in self.items.values():
            for sku in item.skus:
                if sku.sku_id == variant_id:
                    return item, sku
        return None

    def _by_inventory_item(self, inventory_item_id: str) -> tuple[SandboxItem, SandboxSku] | None:
        for variant_id, inv in self.inventory_items.items():
            if inv == inventory_item_id:
                return self._variant(variant_id)
        return None

    def _committed(self, variant_id: str) -> int:
        return sum(line.quantity for order in self.orders.values() for line in order.lines
                   if line.sku_id == variant_id and line.state == "open"
                   and order.state not in ("cancelled", "refunded"))

    def _fulfilled(self, order: SandboxOrder) -> dict[str, int]:
        """Fulfilled quantity per line: what fulfillmentCreate recorded on the fulfillment
        orders, and whole lines shipped through the shared state (the operator API)."""
        done: dict[str, int] = {}
        for fo in self.fulfillment_orders.get(order.order_id, []):
            for fl in fo.lines:
                done[fl.line_id] = done.get(fl.line_id, 0) + fl.fulfilled
        shipped = {line_id for s in order.shipments for line_id in s.line_ids}
        for line in order.lines:
            if line.state == "shipped" or line.line_id in shipped:
                done[line.line_id] = line.quantity
        return done

    def _fulfillment_nodes(self, order: SandboxOrder) -> list[tuple[str, SandboxShipment, str]]:
        return [(str(4_100_000_000_000 + int(order.order_id) % 1_000_000 * 100 + index),
                 shipment, self.tracking_urls.get((order.order_id, shipment.tracking_number), ""))
                for index, shipment in enumerate(order.shipments)]

    def _statuses(self, order: SandboxOrder) -> tuple[str, str]:
        financial = {"unpaid": "PENDING", "cancelled": "VOIDED",
                     "refunded": "REFUNDED"}.get(order.state, "PAID")
        done = self._fulfilled(order)
        shipped = sum(min(done.get(line.line_id, 0), line.quantity) for line in order.lines)
        total = sum(line.quantity for line in order.lines)
        if shipped == 0:
            fulfillment = "UNFULFILLED"
        elif shipped < total:
            fulfillment = "PARTIALLY_FULFILLED"
        else:
            fulfillment = "FULFILLED"
        return financial, fulfillment

    def _visible(self, order: SandboxOrder) -> bool:
        return self.read_all_orders or \
            order.created >= self.clock.now() - timedelta(days=VISIBLE_DAYS)

    # -- GraphQL rendering -----------------------------------------------------------------
    def _line_node(self, order: SandboxOrder, index: int) -> dict[str, Any]:
        line = order.lines[index]
        done = self._fulfilled(order).get(line.line_id, 0)
        current = 0 if line.state in ("refunded", "cancelled") else line.quantity
        return {
            "id": f"gid://shopify/LineItem/{line.line_id}", "sku": line.outer_id or None,
            "title": line.title, "quantity": line.quantity, "currentQuantity": current,
            "unfulfilledQuantity": max(0, current - done),
            "originalUnitPriceSet": self._money(line.price_fen),
            "discountedTotalSet": self._money(line.price_fen * line.quantity),
            "variant": {"id": f"gid://shopify/ProductVariant/{line.sku_id}"}
            if line.sku_id else None,
            "product": {"id": f"gid://shopify/Product/{line.item_id}"},
        }

    def _address_node(self, order: SandboxOrder) -> dict[str, Any]:
        return {"name": order.receiver, "phone": order.phone, "address1": order.detail,
                "address2": order.district or None, "city": order.city,
                "province": order.province, "provinceCode": None, "zip": "90001",
                "countryCodeV2": "US"}

    def _order_node(self, order: SandboxOrder, line_first: int) -> dict[str, Any]:
        financial, fulfillment = self._statuses(order)
        nodes = [self._line_node(order, i) for i in range(min(line_first, len(order.lines)))]
        more = len(order.lines) > line_first
        return {
            "id": f"gid://shopify/Order/{order.order_id}",
            "name": f"#{self.order_numbers[order.order_id]}",
            "createdAt": self._iso(order.created), "updatedAt": self._iso(order.modified),
            "processedAt": self._iso(order.created),
            "cancelledAt": self._iso(self.cancelled_at.get(order.order_id)),
            "closedAt": self._iso(self.closed_at.get(order.order_id)),
            "note": order.buyer_remark or None,
            "displayFinancialStatus": financial, "displayFulfillmentStatus": fulfillment,
            "currencyCode": self.currency,
            "totalPriceSet": self._money(order.paid_fen),
            "totalShippingPriceSet": self._money(order.post_fee_fen),
            "shippingAddress": self._address_node(order),
            "billingAddress": self._address_node(order),
            "fulfillments": [
                {"status": "SUCCESS", "trackingInfo": [
                    {"company": s.carrier_code, "number": s.tracking_number, "url": url or None}]}
                for _, s, url in self._fulfillment_nodes(order)],
            "lineItems": {
                "pageInfo": {"hasNextPage": more,
                             "endCursor": self._cursor(str(line_first - 1)) if nodes else None},
                "nodes": nodes},
        }

    @staticmethod
    def _cursor(value: str) -> str:
        return base64.b64encode(json.dumps({"last": value}).encode()).decode()

    @staticmethod
    def _uncursor(cursor: str | None) -> str | None:
        if cursor is None:
            return None
        try:
            return str(json.loads(base64.b64decode(cursor))["last"])
        except (ValueError, KeyError, TypeError) as exc:
            raise GraphQLError(f"Invalid cursor for current pagination: {cursor}",
                               "BAD_REQUEST") from exc

    # -- protocol --------------------------------------------------------------------------
    def api_name(self, request: SandboxRequest) -> str:
        if _TOKEN.search(request.path):
            return "oauth/access_token"
        try:
            body = json.loads(request.body or b"{}")
            match = _OPERATION.search(str(body.get("query", "")))
        except (ValueError, AttributeError):
            return "graphql"
        return match.group(2) if match else "graphql"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if _TOKEN.search(request.path):
            return self._token(request)
        found = _GRAPHQL.search(request.path)
        if found is None:
            return SandboxResponse.of_json({"errors": "Not Found"}, 404)
        if request.method != "POST":
            return SandboxResponse.of_json({"errors": "Not Found"}, 404)
        if not self.token_valid(request.headers.get("x-shopify-access-token", "")):
            return SandboxResponse.of_json({"errors": AUTH_FAILED}, 401)
        try:
            body = json.loads(request.body)
            document = body["query"]
            if not isinstance(document, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return SandboxResponse.of_json(
                {"errors": {"query": "Required parameter missing or invalid"}}, 400)
        variables = body.get("variables") or {}
        version = found.group("version")
        names = [m.group(2) for m in _OPERATION.finditer(document)]
        name = body.get("operationName") or (names[0] if names else "")
        try:
            if name not in names:
                raise GraphQLError(f"No operation named \"{name}\"", "BAD_REQUEST")
            handler = self._operations().get(name)
            if handler is None:
                raise GraphQLError(f"sandbox: operation {name} is not simulated",
                                   "UNSIMULATED_OPERATION")
            cost = self._requested_cost(name, document, variables)
            if cost > MAX_QUERY_COST:
                raise GraphQLError(
                    f"Query cost is {cost}, which exceeds the single query max cost limit "
                    f"({MAX_QUERY_COST}).", "MAX_COST_EXCEEDED", cost=cost, maxCost=MAX_QUERY_COST)
            available = self._refill()
            if cost > available:
                return self._throttled(cost, available)
            data = handler(document, variables, version)
        except GraphQLError as exc:
            return SandboxResponse.of_json({"errors": [{
                "message": str(exc), "extensions": {"code": exc.code, **exc.extra}}]})
        actual = max(1, cost // 3)
        self._available = max(0.0, self._available - actual)
        return SandboxResponse.of_json({"data": data, "extensions": {"cost": {
            "requestedQueryCost": cost, "actualQueryCost": actual,
            "throttleStatus": self._throttle_status()}}})

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if fault is Fault.RATE_LIMIT:
            requested = int(2 * self.restore_rate)  # the bucket is two seconds short
            return self._throttled(requested, 0.0)
        return SandboxResponse.of_json({"errors": [{
            "message": "Internal error. Looks like something went wrong on our end.\n"
                       "Request ID: 00000000-sandbox",
            "extensions": {"code": "INTERNAL_SERVER_ERROR",
                           "requestId": "00000000-sandbox"}}]}, 500)

    # -- cost bucket -----------------------------------------------------------------------
    def _refill(self) -> float:
        now = self.clock.monotonic()
        self._available = min(self.bucket_size,
                              self._available + (now - self._stamp) * self.restore_rate)
        self._stamp = now
        return self._available

    def _throttle_status(self) -> dict[str, Any]:
        return {"maximumAvailable": self.bucket_size,
                "currentlyAvailable": int(self._available), "restoreRate": self.restore_rate}

    def _throttled(self, requested: int, available: float) -> SandboxResponse:
        return SandboxResponse.of_json({
            "errors": [{"message": "Throttled", "extensions": {
                "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": {"cost": {
                "requestedQueryCost": requested, "actualQueryCost": None,
                "throttleStatus": {"maximumAvailable": self.bucket_size,
                                   "currentlyAvailable": int(available),
                                   "restoreRate": self.restore_rate}}}})

    @staticmethod
    def _first(variables: Mapping[str, Any], name: str = "first") -> int:
        value = variables.get(name)
        if not isinstance(value, int) or value < 0:
            raise GraphQLError(f"Variable ${name} of type Int! was provided invalid value",
                               "INVALID_VARIABLE")
        if value > MAX_PAGE:
            raise GraphQLError(f"The {name} argument must be less than or equal to {MAX_PAGE}",
                               "BAD_REQUEST")
        return value

    @staticmethod
    def _nested_first(document: str, field_name: str, default: int) -> int:
        found = re.search(field_name + r"\(first:\s*(\d+)", document)
        return int(found.group(1)) if found else default

    def _requested_cost(self, name: str, document: str, variables: Mapping[str, Any]) -> int:
        """Roughly Shopify's calculation: a connection costs 2 + first × its node."""
        lines = self._nested_first(document, "lineItems", 0)
        if name == "ErpsyncOrders":
            return 2 + self._first(variables) * (10 + 4 * lines)
        if name == "ErpsyncOrder":
            return 11 + 4 * lines
        if name == "ErpsyncOrderLines":
            return 3 + 4 * self._first(variables)
        if name == "ErpsyncVariants":
            return 3 + 4 * self._first(variables)
        if name == "ErpsyncInventoryLevels":
            return 1 + 4 * len(variables.get("ids") or [])
        if name == "ErpsyncFulfillmentOrders":
            fos = self._nested_first(document, "fulfillmentOrders", 1)
            fo_lines = self._nested_first(document, r"lineItems", 1)
            return 2 + fos * (3 + 2 * fo_lines)
        if name.startswith("Erpsync") and "mutation" in document.split("{", 1)[0]:
            return 10
        return 1

    # -- operations ------------------------------------------------------------------------
    def _operations(self) -> dict[str, Any]:
        return {
            "ErpsyncShop": lambda d, v, ver: {"shop": {"currencyCode": self.currency}},
            "ErpsyncPrimaryLocation": lambda d, v, ver: {"location": {
                "id": f"gid://shopify/Location/{self.location_id}", "isActive": True}},
            "ErpsyncVariants": self._op_variants,
            "ErpsyncInventoryLevels": self._op_inventory_levels,
            "ErpsyncInventorySet": self._op_inventory_set,
            "ErpsyncVariantPrices": self._op_variant_prices,
            "ErpsyncProductStatus": self._op_product_status,
            "ErpsyncProductSet": self._op_product_set,
            "ErpsyncOrders": self._op_orders,
            "ErpsyncOrder": self._op_order,
            "ErpsyncOrderLines": self._op_order_lines,
            "ErpsyncFulfillmentOrders": self._op_fulfillment_orders,
            "ErpsyncFulfillmentCreate": self._op_fulfillment_create,
        }

    @staticmethod
    def _gid(value: Any, kind: str, variable: str) -> str:
        prefix = f"gid://shopify/{kind}/"
        if not isinstance(value, str) or not value.startswith(prefix) \
                or not value[len(prefix):].isdigit():
            raise GraphQLError(f"Variable ${variable} of type ID! was provided invalid value",
                               "INVALID_VARIABLE")
        return value[len(prefix):]

    def _op_variants(self, document: str, variables: Mapping[str, Any],
                     version: str) -> dict[str, Any]:
        first = self._first(variables)
        after = self._uncursor(variables.get("after"))
        variants = sorted(((item, sku) for item in self.items.values() for sku in item.skus),
                          key=lambda pair: int(pair[1].sku_id))
        if after is not None:
            variants = [p for p in variants if int(p[1].sku_id) > int(after)]
        page = variants[:first]
        return {"shop": {"currencyCode": self.currency}, "productVariants": {
            "pageInfo": {"hasNextPage": len(variants) > first,
                         "endCursor": self._cursor(page[-1][1].sku_id) if page else None},
            "nodes": [self._variant_node(item, sku) for item, sku in page]}}

    def _variant_node(self, item: SandboxItem, sku: SandboxSku) -> dict[str, Any]:
        title = " / ".join(sku.spec.values()) or "Default Title"
        return {
            "id": f"gid://shopify/ProductVariant/{sku.sku_id}", "sku": sku.outer_id or None,
            "title": title, "price": self._amount(sku.price_fen),
            "inventoryQuantity": sku.quantity, "updatedAt": self._iso(item.modified),
            "inventoryItem": {"id": f"gid://shopify/InventoryItem/"
                                    f"{self.inventory_items[sku.sku_id]}",
                              "tracked": sku.sku_id not in self.untracked},
            "product": {"id": f"gid://shopify/Product/{item.item_id}", "title": item.title,
                        "status": "ACTIVE" if item.on_sale else "DRAFT"},
        }

    def _op_inventory_levels(self, document: str, variables: Mapping[str, Any],
                             version: str) -> dict[str, Any]:
        ids = variables.get("ids")
        if not isinstance(ids, list):
            raise GraphQLError("Variable $ids of type [ID!]! was provided invalid value",
                               "INVALID_VARIABLE")
        if len(ids) > MAX_INPUT:
            raise GraphQLError(f"The input array size of {len(ids)} is greater than the "
                               f"maximum allowed of {MAX_INPUT}.", "MAX_INPUT_SIZE_EXCEEDED")
        location = self._gid(variables.get("locationId"), "Location", "locationId")
        nodes: list[dict[str, Any] | None] = []
        for value in ids:
            if not isinstance(value, str) or not value.startswith("gid://shopify/"):
                raise GraphQLError(f"Invalid global id '{value}'", "INVALID_VARIABLE")
            found = self._variant(value.rsplit("/", 1)[-1]) \
                if "/ProductVariant/" in value else None
            if found is None:
                nodes.append(None)
                continue
            item, sku = found
            level = None
            if location == self.location_id:
                level = {"quantities": [{"name": "available", "quantity": sku.quantity}]}
            nodes.append({
                "id": value, "product": {"id": f"gid://shopify/Product/{item.item_id}"},
                "inventoryItem": {
                    "id": f"gid://shopify/InventoryItem/{self.inventory_items[sku.sku_id]}",
                    "tracked": sku.sku_id not in self.untracked, "inventoryLevel": level}})
        return {"nodes": nodes}

    def _op_inventory_set(self, document: str, variables: Mapping[str, Any],
                          version: str) -> dict[str, Any]:
        cas_required = version == "unstable" or version >= "2026-04"
        key = None
        directive = re.search(r"@idempotent\(\s*key:\s*\$(\w+)\s*\)", document)
        if directive:
            key = variables.get(directive.group(1))
            if not isinstance(key, str) or not key:
                raise GraphQLError("The idempotency key must be a non-empty string",
                                   "INVALID_VARIABLE")
        elif cas_required:
            raise GraphQLError("An idempotency key is required for this mutation: use the "
                               "@idempotent directive", "BAD_REQUEST")
        payload_input = variables.get("input")
        if not isinstance(payload_input, Mapping):
            raise GraphQLError("Variable $input of type InventorySetQuantitiesInput! was "
                               "provided invalid value", "INVALID_VARIABLE")
        fingerprint = json.dumps(payload_input, sort_keys=True, default=str)
        if key is not None and key in self.idempotency:
            seen, result, ok = self.idempotency[key]
            if seen != fingerprint:
                return self._set_answer([_user_error(
                    ["input"], "The same idempotency key cannot be used with different "
                    "operation parameters.", "IDEMPOTENCY_KEY_PARAMETER_MISMATCH")])
            if not ok:
                return self._set_answer([_user_error(
                    ["input"], "A previous request with this idempotency key failed. Retry "
                    "with a new idempotency key.", "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED")])
            return result
        answer = self._apply_inventory_set(payload_input, cas_required, version)
        if key is not None:
            ok = not answer["inventorySetQuantities"]["userErrors"]
            self.idempotency[key] = (fingerprint, answer, ok)
        return answer

    @staticmethod
    def _set_answer(errors: list[dict[str, Any]],
                    group: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"inventorySetQuantities": {"inventoryAdjustmentGroup": group,
                                           "userErrors": errors}}

    def _apply_inventory_set(self, data: Mapping[str, Any], cas_required: bool,
                             version: str) -> dict[str, Any]:
        quantities = data.get("quantities")
        if not isinstance(quantities, list):
            raise GraphQLError("Variable $input of type InventorySetQuantitiesInput! was "
                               "provided invalid value", "INVALID_VARIABLE")
        if len(quantities) > MAX_INPUT:
            raise GraphQLError(f"The input array size of {len(quantities)} is greater than "
                               f"the maximum allowed of {MAX_INPUT}.", "MAX_INPUT_SIZE_EXCEEDED")
        errors: list[dict[str, Any]] = []
        name = data.get("name")
        if name not in ("available", "on_hand"):
            errors.append(_user_error(["input", "name"], "The quantity name must be either "
                                      "'available' or 'on_hand'.", "INVALID_NAME"))
        if data.get("reason") not in INVENTORY_REASONS:
            errors.append(_user_error(["input", "reason"], "The specified reason is invalid.",
                                      "INVALID_REASON"))
        uri = data.get("referenceDocumentUri")
        if uri is not None and (not isinstance(uri, str) or ":" not in uri):
            errors.append(_user_error(["input", "referenceDocumentUri"], "The specified "
                                      "reference document is invalid.",
                                      "INVALID_REFERENCE_DOCUMENT"))
        ignore = bool(data.get("ignoreCompareQuantity"))
        changes: list[tuple[SandboxItem, SandboxSku, int, int]] = []
        seen: set[tuple[str, str]] = set()
        for index, entry in enumerate(quantities):
            where: list[str | int] = ["input", "quantities", index]
            if not isinstance(entry, Mapping):
                raise GraphQLError("Variable $input was provided invalid value",
                                   "INVALID_VARIABLE")
            if cas_required and "changeFromQuantity" not in entry:
                raise GraphQLError(
                    f"Variable $input of type InventorySetQuantitiesInput! was provided "
                    f"invalid value for quantities.{index}.changeFromQuantity (Expected value "
                    f"to not be omitted: pass an integer or null)", "INVALID_VARIABLE")
            if cas_required and ("compareQuantity" in entry or "ignoreCompareQuantity" in data):
                raise GraphQLError("InventoryQuantityInput isn't a defined input type (on "
                                   "compareQuantity)", "INVALID_VARIABLE")
            inventory = str(entry.get("inventoryItemId", "")).rsplit("/", 1)[-1]
            found = self._by_inventory_item(inventory)
            if found is None:
                errors.append(_user_error([*where, "inventoryItemId"], "The specified "
                                          "inventory item could not be found.",
                                          "INVALID_INVENTORY_ITEM"))
                continue
            location = str(entry.get("locationId", "")).rsplit("/", 1)[-1]
            if location != self.location_id:
                errors.append(_user_error([*where, "locationId"], "The specified location "
                                          "could not be found.", "INVALID_LOCATION"))
                continue
            if (inventory, location) in seen:
                errors.append(_user_error(where, "The combination of inventoryItemId and "
                                          "locationId must be unique.",
                                          "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"))
                continue
            seen.add((inventory, location))
            quantity = entry.get("quantity")
            if not isinstance(quantity, int):
                raise GraphQLError("Variable $input was provided invalid value for quantity",
                                   "INVALID_VARIABLE")
            if quantity < 0:
                errors.append(_user_error([*where, "quantity"], "The quantity can't be "
                                          "negative.", "INVALID_QUANTITY_NEGATIVE"))
                continue
            if quantity > 1_000_000_000:
                errors.append(_user_error([*where, "quantity"], "The total quantity can't be "
                                          "higher than 1,000,000,000.",
                                          "INVALID_QUANTITY_TOO_HIGH"))
                continue
            item, sku = found
            committed = self._committed(sku.sku_id)
            current = sku.quantity if name == "available" else sku.quantity + committed
            if "changeFromQuantity" in entry:
                expected = entry["changeFromQuantity"]
                if expected is not None and expected != current:
                    errors.append(_user_error([*where, "changeFromQuantity"], "The "
                                              "changeFromQuantity value does not match "
                                              "persisted value.", "CHANGE_FROM_QUANTITY_STALE"))
                    continue
            elif not ignore:
                expected = entry.get("compareQuantity")
                if expected is None:
                    errors.append(_user_error([*where, "compareQuantity"], "The "
                                              "compareQuantity argument must be given to each "
                                              "quantity or ignored using "
                                              "ignoreCompareQuantity.",
                                              "COMPARE_QUANTITY_REQUIRED"))
                    continue
                if expected != current:
                    errors.append(_user_error([*where, "compareQuantity"], "The "
                                              "compareQuantity value does not match persisted "
                                              "value.", "COMPARE_QUANTITY_STALE"))
                    continue
            available = quantity if name == "available" else quantity - committed
            changes.append((item, sku, available, quantity - current))
        if errors:  # all or nothing
            return self._set_answer(errors)
        out = []
        for item, sku, available, delta in changes:
            self._set_stock(item, sku, available)
            out.append({"name": name, "delta": delta,
                        "quantityAfterChange": available if name == "available"
                        else available + self._committed(sku.sku_id)})
        return self._set_answer([], {"createdAt": self._iso(self.clock.now()),
                                     "reason": data.get("reason"), "changes": out})

    def _op_variant_prices(self, document: str, variables: Mapping[str, Any],
                           version: str) -> dict[str, Any]:
        product_id = self._gid(variables.get("productId"), "Product", "productId")
        item = self.items.get(product_id)

        def answer(errors: list[dict[str, Any]], variants: Any = None) -> dict[str, Any]:
            return {"productVariantsBulkUpdate": {"productVariants": variants,
                                                  "userErrors": errors}}

        if item is None:
            return answer([_user_error(["productId"], "Product does not exist",
                                       "PRODUCT_DOES_NOT_EXIST")])
        inputs = variables.get("variants")
        if not isinstance(inputs, list) or not inputs:
            raise GraphQLError("Variable $variants was provided invalid value", "INVALID_VARIABLE")
        if len(inputs) > MAX_INPUT:
            raise GraphQLError(f"The input array size of {len(inputs)} is greater than the "
                               f"maximum allowed of {MAX_INPUT}.", "MAX_INPUT_SIZE_EXCEEDED")
        errors = []
        planned: list[tuple[SandboxSku, int]] = []
        for index, entry in enumerate(inputs):
            variant_id = str(entry.get("id", "")).rsplit("/", 1)[-1]
            sku = next((s for s in item.skus if s.sku_id == variant_id), None)
            if sku is None:
                errors.append(_user_error(["variants", index, "id"], "Product variant does "
                                          "not exist", "PRODUCT_VARIANT_DOES_NOT_EXIST"))
                continue
            try:
                price = Decimal(str(entry.get("price")))
                if price < 0 or not price.is_finite():
                    raise InvalidOperation
            except InvalidOperation:
                errors.append(_user_error(["variants", index, "price"], "Price is invalid",
                                          "INVALID_INPUT"))
                continue
            exponent = _EXPONENTS.get(self.currency, 2)
            planned.append((sku, int(price.scaleb(exponent))))
        if errors:
            return answer(errors)
        for sku, fen in planned:
            sku.price_fen = fen
        item.modified = self.clock.now()
        return answer([], [{"id": f"gid://shopify/ProductVariant/{s.sku_id}",
                            "price": self._amount(s.price_fen)} for s, _ in planned])

    def _op_product_status(self, document: str, variables: Mapping[str, Any],
                           version: str) -> dict[str, Any]:
        product = variables.get("product")
        if not isinstance(product, Mapping):
            raise GraphQLError("Variable $product was provided invalid value", "INVALID_VARIABLE")
        item = self.items.get(self._gid(product.get("id"), "Product", "product.id"))
        if item is None:
            return {"productUpdate": {"product": None, "userErrors": [
                _user_error(["id"], "Product does not exist")]}}
        status = product.get("status")
        if status not in ("ACTIVE", "DRAFT", "ARCHIVED", "UNLISTED"):
            raise GraphQLError("Variable $product was provided invalid value for status",
                               "INVALID_VARIABLE")
        item.on_sale = status == "ACTIVE"
        item.modified = self.clock.now()
        return {"productUpdate": {"product": {"id": f"gid://shopify/Product/{item.item_id}",
                                              "status": status}, "userErrors": []}}

    def _op_product_set(self, document: str, variables: Mapping[str, Any],
                        version: str) -> dict[str, Any]:
        data = variables.get("input")
        if not isinstance(data, Mapping):
            raise GraphQLError("Variable $input of type ProductSetInput! was provided invalid "
                               "value", "INVALID_VARIABLE")

        def answer(errors: list[dict[str, Any]], item: SandboxItem | None = None
                   ) -> dict[str, Any]:
            product = None if item is None else {
                "id": f"gid://shopify/Product/{item.item_id}",
                "variants": {"nodes": [{"id": f"gid://shopify/ProductVariant/{s.sku_id}",
                                        "sku": s.outer_id or None} for s in item.skus]}}
            return {"productSet": {"product": product, "userErrors": errors}}

        title = str(data.get("title") or "").strip()
        if not title:
            return answer([_user_error(["input", "title"], "Title can't be blank", "BLANK")])
        options = {str(o.get("name")): [str(v.get("name")) for v in o.get("values") or []]
                   for o in data.get("productOptions") or []}
        variants = data.get("variants") or []
        if not options or not variants:
            return answer([_user_error(["input", "variants"], "Product must have at least "
                                       "one variant and one option", "INVALID_INPUT")])
        combos: set[tuple[str, ...]] = set()
        planned = []
        for index, entry in enumerate(variants):
            chosen = {str(v.get("optionName")): str(v.get("name"))
                      for v in entry.get("optionValues") or []}
            if set(chosen) != set(options) or any(chosen[n] not in options[n] for n in chosen):
                return answer([_user_error(["input", "variants", index, "optionValues"],
                                           "Option values do not match the product options",
                                           "INVALID_VARIANT")])
            combo = tuple(chosen[n] for n in options)
            if combo in combos:
                return answer([_user_error(["input", "variants", index], "The variant "
                                           f"'{' / '.join(combo)}' already exists.",
                                           "DUPLICATED_OPTION_VALUE")])
            combos.add(combo)
            try:
                price = int(Decimal(str(entry.get("price", "0"))).scaleb(
                    _EXPONENTS.get(self.currency, 2)))
            except InvalidOperation:
                return answer([_user_error(["input", "variants", index, "price"],
                                           "Price is invalid", "INVALID_INPUT")])
            code = str((entry.get("inventoryItem") or {}).get("sku") or entry.get("sku") or "")
            quantity = sum(int(q.get("quantity") or 0)
                           for q in entry.get("inventoryQuantities") or []
                           if str(q.get("locationId", "")).endswith("/" + self.location_id))
            planned.append((code, price, quantity, chosen))
        now = self.clock.now()
        product_id = data.get("id")
        if product_id:
            item = self.items.get(self._gid(product_id, "Product", "input.id"))
            if item is None:
                return answer([_user_error(["input", "id"], "Product does not exist",
                                           "PRODUCT_DOES_NOT_EXIST")])
            item.title = title
            kept = {s.outer_id: s for s in item.skus}
            fresh = []
            for code, price, _quantity, chosen in planned:
                sku = kept.get(code)
                if sku is None:
                    sku = SandboxSku(self.new_sku_id(), code, 0, price, chosen)
                    self.inventory_items[sku.sku_id] = self._new(47_000_000_000_000)
                sku.price_fen, sku.spec = price, chosen
                fresh.append(sku)
            item.skus = fresh
            item.modified = now
        else:
            item = SandboxItem(item_id=self.new_item_id(), title=title,
                               outer_id=planned[0][0], price_fen=planned[0][1],
                               on_sale=str(data.get("status", "ACTIVE")) == "ACTIVE",
                               skus=[], category_id="", modified=now, created=now)
            for code, price, quantity, chosen in planned:
                sku = SandboxSku(self.new_sku_id(), code, quantity, price, chosen)
                self.inventory_items[sku.sku_id] = self._new(47_000_000_000_000)
                item.skus.append(sku)
            self.items[item.item_id] = item
        return answer([], item)

    def _search(self, query: Any) -> list[tuple[str, str, datetime]]:
        terms = []
        for field_name, op, value in _SEARCH_TERM.findall(str(query or "")):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError as exc:
                raise GraphQLError(f"Invalid date in search query: {value}",
                                   "BAD_REQUEST") from exc
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.shop_timezone)
            terms.append((field_name, op, moment))
        return terms

    @staticmethod
    def _matches(order: SandboxOrder, terms: list[tuple[str, str, datetime]]) -> bool:
        for field_name, op, moment in terms:
            value = order.modified if field_name == "updated_at" else order.created
            value = value.replace(microsecond=0)
            if (op == ">=" and not value >= moment) or (op == ">" and not value > moment) or \
                    (op == "<=" and not value <= moment) or (op == "<" and not value < moment):
                return False
        return True

    def _op_orders(self, document: str, variables: Mapping[str, Any],
                   version: str) -> dict[str, Any]:
        first = self._first(variables)
        terms = self._search(variables.get("query"))
        lines = self._nested_first(document, "lineItems", 0)
        ordered = sorted((o for o in self.orders.values()
                          if self._visible(o) and self._matches(o, terms)),
                         key=lambda o: (o.modified, int(o.order_id)))
        after = self._uncursor(variables.get("after"))
        if after is not None:
            stamp, _, last_id = after.partition("|")
            mark = (datetime.fromisoformat(stamp), int(last_id))
            ordered = [o for o in ordered if (o.modified, int(o.order_id)) > mark]
        page = ordered[:first]
        end = f"{page[-1].modified.isoformat()}|{page[-1].order_id}" if page else None
        return {"orders": {
            "pageInfo": {"hasNextPage": len(ordered) > first,
                         "endCursor": self._cursor(end) if end else None},
            "nodes": [self._order_node(o, lines) for o in page]}}

    def _find_order(self, variables: Mapping[str, Any]) -> SandboxOrder | None:
        order = self.orders.get(self._gid(variables.get("id"), "Order", "id"))
        return order if order is not None and self._visible(order) else None

    def _op_order(self, document: str, variables: Mapping[str, Any],
                  version: str) -> dict[str, Any]:
        order = self._find_order(variables)
        lines = self._nested_first(document, "lineItems", 0)
        return {"order": self._order_node(order, lines) if order else None}

    def _op_order_lines(self, document: str, variables: Mapping[str, Any],
                        version: str) -> dict[str, Any]:
        first = self._first(variables)
        order = self._find_order(variables)
        if order is None:
            return {"order": None}
        after = self._uncursor(variables.get("after"))
        start = int(after) + 1 if after is not None else 0
        stop = min(start + first, len(order.lines))
        nodes = [self._line_node(order, i) for i in range(start, stop)]
        return {"order": {"id": f"gid://shopify/Order/{order.order_id}", "lineItems": {
            "pageInfo": {"hasNextPage": stop < len(order.lines),
                         "endCursor": self._cursor(str(stop - 1)) if nodes else None},
            "nodes": nodes}}}

    def _fo_status(self, order: SandboxOrder, fo: FulfillmentOrder) -> str:
        if order.state == "cancelled" or self.cancelled_at.get(order.order_id):
            return "CANCELLED"
        states = {line.line_id: line.state for line in order.lines}
        remaining = [fl for fl in fo.lines
                     if states.get(fl.line_id) == "open" and fl.fulfilled < fl.total]
        if not remaining:
            return "CLOSED"
        return "IN_PROGRESS" if any(fl.fulfilled for fl in fo.lines) else "OPEN"

    def _remaining(self, order: SandboxOrder, fl: FulfillmentOrderLine) -> int:
        line = next(x for x in order.lines if x.line_id == fl.line_id)
        return fl.total - fl.fulfilled if line.state == "open" else 0

    def _op_fulfillment_orders(self, document: str, variables: Mapping[str, Any],
                               version: str) -> dict[str, Any]:
        order = self._find_order(variables)
        if order is None:
            return {"order": None}
        return {"order": {
            "id": f"gid://shopify/Order/{order.order_id}",
            "cancelledAt": self._iso(self.cancelled_at.get(order.order_id)),
            "fulfillmentOrders": {"nodes": [{
                "id": f"gid://shopify/FulfillmentOrder/{fo.fo_id}",
                "status": self._fo_status(order, fo),
                "assignedLocation": {"location": {
                    "id": f"gid://shopify/Location/{self.location_id}"}},
                "lineItems": {"nodes": [{
                    "id": f"gid://shopify/FulfillmentOrderLineItem/{fl.fo_line_id}",
                    "remainingQuantity": self._remaining(order, fl), "totalQuantity": fl.total,
                    "lineItem": {"id": f"gid://shopify/LineItem/{fl.line_id}"}}
                    for fl in fo.lines]}}
                for fo in self.fulfillment_orders.get(order.order_id, [])]}}}

    def _op_fulfillment_create(self, document: str, variables: Mapping[str, Any],
                               version: str) -> dict[str, Any]:
        data = variables.get("fulfillment")
        if not isinstance(data, Mapping) or not isinstance(
                data.get("lineItemsByFulfillmentOrder"), list):
            raise GraphQLError("Variable $fulfillment of type FulfillmentInput! was provided "
                               "invalid value", "INVALID_VARIABLE")

        def refuse(message: str) -> dict[str, Any]:
            return {"fulfillmentCreate": {"fulfillment": None, "userErrors": [
                _user_error(["fulfillment"], message)]}}

        groups = data["lineItemsByFulfillmentOrder"]
        if not groups:
            return refuse("Line items by fulfillment order can't be blank")
        tracking = data.get("trackingInfo") or {}
        if tracking.get("number") and tracking.get("numbers"):
            return refuse("Cannot specify both number and numbers")
        if tracking.get("url") and tracking.get("urls"):
            return refuse("Cannot specify both url and urls")
        if tracking.get("url") and not tracking.get("number"):
            return refuse("Tracking url requires a tracking number")
        order: SandboxOrder | None = None
        plan: list[tuple[FulfillmentOrderLine, int]] = []
        for group in groups:
            fo_id = str(group.get("fulfillmentOrderId", "")).rsplit("/", 1)[-1]
            found = next(((o, fo) for o in self.orders.values()
                          for fo in self.fulfillment_orders.get(o.order_id, [])
                          if fo.fo_id == fo_id), None)
            if found is None:
                return refuse("Fulfillment order does not exist.")
            owner, fo = found
            if order is not None and owner is not order:
                return refuse("All fulfillment orders must belong to the same order.")
            order = owner
            status = self._fo_status(owner, fo)
            if status not in ("OPEN", "IN_PROGRESS"):
                return refuse(f"Fulfillment order {fo.fo_id} has an unfulfillable status= "
                              f"{status.lower()}.")
            wanted = group.get("fulfillmentOrderLineItems")
            if not wanted:
                plan.extend((fl, self._remaining(owner, fl)) for fl in fo.lines
                            if self._remaining(owner, fl) > 0)
                continue
            for entry in wanted:
                fl_id = str(entry.get("id", "")).rsplit("/", 1)[-1]
                fl = next((x for x in fo.lines if x.fo_line_id == fl_id), None)
                quantity = entry.get("quantity")
                if fl is None or not isinstance(quantity, int) or quantity <= 0 \
                        or quantity > self._remaining(owner, fl):
                    return refuse("Invalid fulfillment order line item quantity requested.")
                plan.append((fl, quantity))
        if order is None or not plan:
            return refuse("Invalid fulfillment order line item quantity requested.")
        for fl, quantity in plan:
            fl.fulfilled += quantity
        number = str(tracking.get("number") or (tracking.get("numbers") or [""])[0])
        company = str(tracking.get("company") or "")
        url = str(tracking.get("url") or "")
        self.tracking_urls[(order.order_id, number)] = url
        done = self._fulfilled(order)
        finished = [line.line_id for line in order.lines
                    if line.state == "open" and done.get(line.line_id, 0) >= line.quantity]
        if finished:
            self.record_shipment(order, company, number, finished)
        else:  # only part of a line's quantity went: a shipment, no line state change
            order.shipments.append(SandboxShipment(company, number, (), self.clock.now()))
            self._touch(order, order.state if order.state != "paid" else "part_shipped",
                        "shipped")
        fulfillment_id = self._fulfillment_nodes(order)[-1][0]
        return {"fulfillmentCreate": {"fulfillment": {
            "id": f"gid://shopify/Fulfillment/{fulfillment_id}", "status": "SUCCESS",
            "trackingInfo": [{"company": company, "number": number, "url": url or None}]},
            "userErrors": []}}

    # -- token endpoint --------------------------------------------------------------------
    def _token(self, request: SandboxRequest) -> SandboxResponse:
        if request.method != "POST":
            return SandboxResponse.of_json({"errors": "Not Found"}, 404)
        try:
            body = json.loads(request.body) if request.body.strip().startswith(b"{") \
                else request.form()
        except ValueError:
            body = {}
        if body.get("client_id") != self.app_key or \
                body.get("client_secret") != self.app_secret:
            return SandboxResponse.of_json({"error": "invalid_client", "error_description":
                                            "Client authentication failed"}, 401)
        if body.get("grant_type") != "refresh_token":
            return SandboxResponse.of_json({"error": "unsupported_grant_type",
                                            "error_description": "grant_type not supported"},
                                           400)
        rotated = self.rotate_tokens(str(body.get("refresh_token", "")))
        if rotated is None:
            return SandboxResponse.of_json({"error": "invalid_grant", "error_description":
                                            "The refresh token is invalid or expired"}, 400)
        access, refresh = rotated
        return SandboxResponse.of_json({
            "access_token": access, "expires_in": 3600, "refresh_token": refresh,
            "refresh_token_expires_in": 7_776_000, "scope": "read_orders,write_inventory,"
            "read_products,write_products,write_merchant_managed_fulfillment_orders"})

    # -- webhooks --------------------------------------------------------------------------
    def rest_order(self, order: SandboxOrder) -> dict[str, Any]:
        """The REST representation Shopify puts in order webhooks."""
        financial, fulfillment = self._statuses(order)
        done = self._fulfilled(order)

        def money(fen: int) -> dict[str, Any]:
            amount = {"amount": self._amount(fen), "currency_code": self.currency}
            return {"shop_money": amount, "presentment_money": amount}

        address = {"first_name": "Example", "last_name": "Buyer", "name": order.receiver,
                   "address1": order.detail, "address2": order.district or None,
                   "city": order.city, "province": order.province, "zip": "90001",
                   "country": "United States", "country_code": "US", "phone": order.phone}
        line_items = []
        for line in order.lines:
            shipped = done.get(line.line_id, 0)
            line_items.append({
                "id": int(line.line_id), "admin_graphql_api_id":
                    f"gid://shopify/LineItem/{line.line_id}",
                "product_id": int(line.item_id), "variant_id": int(line.sku_id)
                if line.sku_id else None, "sku": line.outer_id, "title": line.title,
                "name": line.title, "quantity": line.quantity,
                "price": self._amount(line.price_fen), "price_set": money(line.price_fen),
                "total_discount": self._amount(0), "total_discount_set": money(0),
                "fulfillable_quantity": max(0, line.quantity - shipped)
                if line.state == "open" else 0,
                "fulfillment_status": "fulfilled" if shipped >= line.quantity
                else ("partial" if shipped else None)})
        refunded = [line for line in order.lines if line.state == "refunded"]
        return {
            "id": int(order.order_id),
            "admin_graphql_api_id": f"gid://shopify/Order/{order.order_id}",
            "name": f"#{self.order_numbers[order.order_id]}",
            "order_number": self.order_numbers[order.order_id],
            "email": "buyer@example.com", "currency": self.currency,
            "created_at": self._local(order.created), "updated_at": self._local(order.modified),
            "processed_at": self._local(order.created),
            "cancelled_at": self._local(self.cancelled_at.get(order.order_id)),
            "closed_at": self._local(self.closed_at.get(order.order_id)),
            "financial_status": financial.lower(),
            "fulfillment_status": {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}
            .get(fulfillment),
            "note": order.buyer_remark or None,
            "total_price": self._amount(order.paid_fen),
            "total_price_set": money(order.paid_fen),
            "total_line_items_price": self._amount(order.goods_fen),
            "total_line_items_price_set": money(order.goods_fen),
            "total_shipping_price_set": money(order.post_fee_fen),
            "line_items": line_items,
            "shipping_address": address, "billing_address": address,
            "fulfillments": [{"id": int(fid), "order_id": int(order.order_id),
                              "status": "success", "tracking_company": s.carrier_code,
                              "tracking_number": s.tracking_number,
                              "tracking_numbers": [s.tracking_number],
                              "tracking_url": url or None}
                             for fid, s, url in self._fulfillment_nodes(order)],
            "refunds": [{"id": int(order.order_id) + 1, "order_id": int(order.order_id),
                         "refund_line_items": [{"line_item_id": int(line.line_id),
                                                "quantity": line.quantity}
                                               for line in refunded]}] if refunded else [],
        }

    def render_push(self, order: SandboxOrder, topic: str) -> PushDelivery | None:
        if order.order_id not in self.order_numbers:
            return None
        webhook_topic = {
            "created": "orders/create", "cancelled": "orders/cancelled",
            "shipped": "orders/fulfilled" if order.state == "shipped"
            else "orders/partially_fulfilled",
        }.get(topic, "orders/updated")
        if topic == "paid":
            webhook_topic = "orders/create" if order.version == 1 else "orders/paid"
        body = json.dumps(self.rest_order(order), separators=(",", ":"),
                          ensure_ascii=False).encode()
        self._deliveries += 1
        now = self.clock.now()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": webhook_topic,
            "X-Shopify-Hmac-Sha256": hmac_b64(self.app_secret, body, "sha256"),
            "X-Shopify-Shop-Domain": self.shop_domain,
            "X-Shopify-API-Version": self.webhook_api_version,
            "X-Shopify-Webhook-Id": f"b54557e4-bdd9-4b37-8a5f-{self._deliveries:012d}",
            "X-Shopify-Event-Id": f"98880550-7158-44d4-b7cd-{order.version:012d}",
            "X-Shopify-Triggered-At": now.astimezone(UTC).isoformat(),
        }
        return PushDelivery(webhook_topic, headers, body)
