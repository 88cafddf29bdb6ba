"""The Shopify connector: canonical operations over the Admin GraphQL API.

Stock is an absolute set of `available` at one location with `inventorySetQuantities`,
guarded by compare-and-swap (`changeFromQuantity` = the value just read) and an
`@idempotent` key. Why both: the key makes a retried request (timeout after Shopify applied
it) a replay instead of a second write; the compare-and-swap makes a write computed from a
stale read fail instead of silently undoing a sale. A worked race: we read available=9 for
SKU A and want 7; meanwhile a buyer takes one (available=8). Our write says "9 → 7", Shopify
answers CHANGE_FROM_QUANTITY_STALE, we read 8 and write "8 → 7": the call stays an absolute
set of 7, and the sale is not lost because the core's 7 was computed after reserving it.

Tracking goes through fulfillment orders: `fulfillmentCreate` per location, all remaining
lines (or only the requested ones: partial shipment). A closed fulfillment order is
Shopify's "already shipped".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from connectors.shopify import operations as ops
from connectors.shopify.client import (
    TOKEN_API,
    ShopifyClient,
    ShopifySettings,
    webhook_signature,
)
from connectors.shopify.mapping import (
    FINANCIAL_STATUS,
    available_of,
    decimal_amount,
    gid,
    listing_from_variant,
    numeric_id,
    order_from_graphql,
    order_from_rest,
    parse_time,
    stock_tracked,
)
from connectors.shopify.sandbox import ShopifySandbox
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import (
    BadResponse,
    NotFound,
    Rejected,
    SignatureInvalid,
    UnmappedCarrier,
)
from core.http import HttpSession
from core.records import (
    Capability,
    DraftSku,
    ListingDraft,
    ListingPushResult,
    ListingRecord,
    OrderRecord,
    OrderStatus,
    PriceUpdate,
    PushAck,
    PushEvent,
    PushKind,
    ShipRequest,
    StockUpdate,
    TokenSet,
    UnreadableOrder,
    UpdateOutcome,
)
from core.signing import constant_time_equal

# canonical carrier -> tracking company name as Shopify spells it (case-sensitive)
SHOPIFY_CARRIERS = {
    "UPS": "UPS",
    "FEDEX": "FedEx",
    "DHL": "DHL Express",
    "USPS": "USPS",
    "SF": "SF Express",
    "EMS": "China EMS (ePacket)",
    "POSTB": "China Post",
    "YTO": "YTO Express",
    "ZTO": "ZTO Express",
    "STO": "STO Express",
    "YUNDA": "Yunda Express",
    "JT": "J&T Express",
    "JD": "JD Logistics",
    "DBL": "Deppon Express",
}

_OPEN_FULFILLMENT_ORDERS = {"OPEN", "IN_PROGRESS"}


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _search_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ShopifyConnector(Connector):
    platform: ClassVar[str] = "shopify"
    title: ClassVar[str] = "Shopify (Admin GraphQL API)"
    version: ClassVar[str] = "1.0.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LIST_LISTINGS, Capability.UPSERT_LISTING, Capability.SET_STOCK,
        Capability.SET_PRICE, Capability.SHELVE, Capability.PULL_ORDERS, Capability.GET_ORDER,
        Capability.PUSH_ORDERS, Capability.SHIP, Capability.PARTIAL_SHIP,
        Capability.REFRESH_TOKEN,
    })
    limits: ClassVar[Limits] = Limits(
        page_size=ops.ORDER_PAGE, max_window=timedelta(days=7), max_batch=100,
        requests_per_second=2.0, burst=4,
        # without read_all_orders only the last 60 days are visible [corroborated]
        max_lookback=timedelta(days=60), modified_lag=timedelta(minutes=1))
    carriers: ClassVar[CarrierTable] = CarrierTable("shopify", SHOPIFY_CARRIERS)
    status_table: ClassVar[Mapping[str, OrderStatus]] = FINANCIAL_STATUS
    default_base_url: ClassVar[str] = "https://{shop}.myshopify.com"
    sandbox_class = ShopifySandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.settings = ShopifySettings.from_options(shop.options)
        self.client = ShopifyClient(shop, http, rate=self.limits.requests_per_second,
                                    burst=self.limits.burst, settings=self.settings)
        self._location: str | None = None
        self._currency: str | None = shop.options.get("currency")

    # -- helpers ---------------------------------------------------------------------------
    async def _mutate(self, api: str, variables: Mapping[str, Any]) -> Mapping[str, Any]:
        data = await self.client.call(api, variables)
        payload = data.get(ops.PAYLOAD_FIELD[api])
        if not isinstance(payload, Mapping):
            raise BadResponse(f"shopify {api}: no payload", body=json.dumps(data, default=str))
        errors = payload.get("userErrors") or []
        if errors:
            raise self.client.user_error(api, errors)
        return payload

    async def _location_id(self) -> str:
        if self._location is None:
            if self.settings.location_id:
                self._location = gid("Location", self.settings.location_id)
            else:
                data = await self.client.call("ErpsyncPrimaryLocation")
                location = data.get("location") or {}
                if not location.get("id"):
                    raise BadResponse("shopify: the shop reports no primary location")
                self._location = str(location["id"])
        return self._location

    async def _shop_currency(self) -> str:
        if self._currency is None:
            data = await self.client.call("ErpsyncShop")
            self._currency = str((data.get("shop") or {}).get("currencyCode") or "")
        return self._currency

    # -- listings --------------------------------------------------------------------------
    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        after: str | None = None
        while True:
            data = await self.client.call("ErpsyncVariants",
                                          {"first": ops.VARIANT_PAGE, "after": after})
            currency = str((data.get("shop") or {}).get("currencyCode") or "")
            self._currency = self._currency or currency
            connection = data["productVariants"]
            for node in connection["nodes"]:
                yield listing_from_variant(node, currency)
            after = self._next_cursor(connection)
            if after is None:
                return

    @staticmethod
    def _next_cursor(connection: Mapping[str, Any]) -> str | None:
        info = connection.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return None
        cursor = info.get("endCursor")
        if not cursor:
            raise BadResponse("shopify: hasNextPage without endCursor")
        return str(cursor)

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        outcomes: list[UpdateOutcome] = []
        for chunk in _chunks(list(updates), self.limits.max_batch):
            outcomes.extend(await self._set_stock_chunk(chunk))
        return outcomes

    async def _set_stock_chunk(self, chunk: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        location = await self._location_id()
        failed: dict[int, Exception] = {}
        pending = list(range(len(chunk)))
        for attempt in range(self.settings.stale_retries + 1):
            last = attempt == self.settings.stale_retries
            data = await self.client.call("ErpsyncInventoryLevels", {
                "ids": [gid("ProductVariant", chunk[i].platform_sku_id) for i in pending],
                "locationId": location})
            nodes = {numeric_id(n.get("id")): n for n in data.get("nodes") or [] if n}
            sent: list[int] = []
            quantities: list[dict[str, Any]] = []
            for index in pending:
                update = chunk[index]
                node = nodes.get(update.platform_sku_id)
                if node is None:
                    failed[index] = NotFound(f"shopify: no variant {update.platform_sku_id}")
                    continue
                if not stock_tracked(node):
                    failed[index] = Rejected("shopify: inventory not tracked for this variant",
                                             reason="stock_not_tracked")
                    continue
                current = available_of(node)
                if current is None:
                    failed[index] = Rejected("shopify: variant not stocked at the location",
                                             reason="not_stocked_at_location")
                    continue
                if current == update.quantity:
                    continue  # already there: an absolute set needs no write
                sent.append(index)
                quantities.append({
                    "inventoryItemId": node["inventoryItem"]["id"], "locationId": location,
                    "quantity": update.quantity, "changeFromQuantity": current})
            if not quantities:
                break
            # one key per logical write: transport retries of this call replay it; a new
            # read (new compare values) is a new write and needs a new key
            data = await self.client.call("ErpsyncInventorySet", {
                "key": str(uuid.uuid4()),
                "input": {
                    "name": "available", "reason": self.settings.inventory_reason,
                    "referenceDocumentUri": self.settings.reference_document_uri.format(
                        shop=self.shop.name),
                    "quantities": quantities}})
            payload = data.get("inventorySetQuantities") or {}
            errors = payload.get("userErrors") or []
            if not errors:
                break
            retry = self._classify_stock_errors(errors, sent, failed, last=last)
            pending = [i for i in sent if i not in failed] if retry else []
            if not pending:
                break
        return [UpdateOutcome(u.platform_item_id, u.platform_sku_id, failed.get(i))
                for i, u in enumerate(chunk)]

    def _classify_stock_errors(self, errors: list[Mapping[str, Any]], sent: list[int],
                               failed: dict[int, Exception], *, last: bool) -> bool:
        """Sort userErrors onto the updates they name. Stale compare values (and a key
        Shopify will not reuse) are retried after a fresh read; the rest are final. The
        mutation is all-or-nothing, so updates without an error of their own are re-sent.
        Returns whether another round is worth it."""
        per_index: dict[int, list[Mapping[str, Any]]] = {}
        general: list[Mapping[str, Any]] = []
        for error in errors:
            path = [str(p) for p in error.get("field") or []]
            if len(path) >= 3 and path[1] == "quantities" and path[2].isdigit() \
                    and int(path[2]) < len(sent):
                per_index.setdefault(sent[int(path[2])], []).append(error)
            else:
                general.append(error)
        retriable = {"stale_quantity", "idempotency_key_spent"}
        if general:
            exc = self.client.user_error("ErpsyncInventorySet", general)
            if isinstance(exc, Rejected) and exc.reason in retriable and not last:
                return True
            for index in sent:
                failed[index] = exc
            return False
        for index, errs in per_index.items():
            exc = self.client.user_error("ErpsyncInventorySet", errs)
            if not (isinstance(exc, Rejected) and exc.reason in retriable) or last:
                failed[index] = exc
        return not last

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        currency = await self._shop_currency()
        by_product: dict[str, list[PriceUpdate]] = {}
        for update in updates:
            by_product.setdefault(update.platform_item_id, []).append(update)
        outcomes: dict[tuple[str, str], Exception | None] = {}
        for product_id, group in by_product.items():
            try:
                await self._mutate("ErpsyncVariantPrices", {
                    "productId": gid("Product", product_id),
                    "variants": [{"id": gid("ProductVariant", u.platform_sku_id),
                                  "price": decimal_amount(u.price_fen, currency)}
                                 for u in group]})
                error: Exception | None = None
            except (Rejected, NotFound) as exc:
                error = exc
            for update in group:
                outcomes[(update.platform_item_id, update.platform_sku_id)] = error
        return [UpdateOutcome(u.platform_item_id, u.platform_sku_id,
                              outcomes[(u.platform_item_id, u.platform_sku_id)])
                for u in updates]

    async def set_on_sale(self, platform_item_id: str, on_sale: bool) -> None:
        await self._mutate("ErpsyncProductStatus", {"product": {
            "id": gid("Product", platform_item_id), "status": "ACTIVE" if on_sale else "DRAFT"}})

    async def upsert_listing(self, draft: ListingDraft) -> ListingPushResult:
        """`productSet`: the draft's SKUs become the product's variants (options from each
        SKU's spec). Stock is written only when creating; afterwards set_stock owns it."""
        currency = await self._shop_currency()
        creating = draft.platform_item_id is None
        location = await self._location_id() if creating else ""
        skus = draft.skus or ()
        option_names: list[str] = []
        for draft_sku in skus:
            option_names.extend(n for n in draft_sku.spec if n not in option_names)
        if not option_names:
            option_names = ["Title"]
        values: dict[str, list[str]] = {name: [] for name in option_names}
        variants: list[dict[str, Any]] = []
        units: list[DraftSku | None] = list(skus) or [None]
        for index, sku in enumerate(units):
            spec = dict(sku.spec) if sku is not None else {}
            chosen = []
            for name in option_names:
                value = spec.get(name) or ("Default Title" if len(units) == 1 else
                                           (sku.merchant_code if sku else draft.merchant_code))
                if value not in values[name]:
                    values[name].append(value)
                chosen.append({"optionName": name, "name": value})
            code = sku.merchant_code if sku is not None else draft.merchant_code
            price = sku.price_fen if sku is not None else draft.price_fen
            variant: dict[str, Any] = {
                "optionValues": chosen, "position": index + 1,
                "price": decimal_amount(price, currency),
                "inventoryItem": {"sku": code, "tracked": True}}
            if creating:
                variant["inventoryQuantities"] = [{
                    "locationId": location, "name": "available",
                    "quantity": sku.quantity if sku is not None else 0}]
            variants.append(variant)
        product_input: dict[str, Any] = {
            "title": draft.title, "descriptionHtml": draft.description,
            "productOptions": [{"name": n, "position": i + 1,
                                "values": [{"name": v} for v in values[n]]}
                               for i, n in enumerate(option_names)],
            "variants": variants}
        if not creating:
            product_input["id"] = gid("Product", str(draft.platform_item_id))
        payload = await self._mutate("ErpsyncProductSet", {"input": product_input})
        product = payload.get("product") or {}
        if not product.get("id"):
            raise BadResponse("shopify productSet: no product in the answer")
        sku_ids = {str(v.get("sku") or ""): numeric_id(v.get("id"))
                   for v in (product.get("variants") or {}).get("nodes") or []}
        return ListingPushResult(numeric_id(product["id"]), sku_ids)

    # -- orders ----------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        if end - start > self.limits.max_window:
            raise ValueError(f"shopify: window {end - start} exceeds {self.limits.max_window}")
        # second precision in the search: round outward so nothing at the edges is missed
        floor = start.replace(microsecond=0)
        ceiling = end if end.microsecond == 0 else end.replace(microsecond=0) + timedelta(
            seconds=1)
        query = f"updated_at:>='{_search_time(floor)}' updated_at:<'{_search_time(ceiling)}'"
        after: str | None = None
        seen: set[tuple[str, datetime]] = set()
        while True:
            data = await self.client.call("ErpsyncOrders", {
                "query": query, "first": self.limits.page_size, "after": after})
            connection = data["orders"]
            for node in connection["nodes"]:
                extra = await self._extra_lines(node)
                try:
                    record = order_from_graphql(node, extra)
                except BadResponse as exc:  # this order is quarantined, the page goes on
                    yield UnreadableOrder.of(numeric_id(node.get("id")), node, exc)
                    continue
                key = (record.platform_order_id, record.modified_at)
                if key not in seen:
                    seen.add(key)
                    yield record
            after = self._next_cursor(connection)
            if after is None:
                return

    async def _complete_order(self, node: Mapping[str, Any]) -> OrderRecord:
        return order_from_graphql(node, await self._extra_lines(node))

    async def _extra_lines(self, node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Line nodes past the first page of `lineItems`."""
        extra: list[Mapping[str, Any]] = []
        connection = node.get("lineItems") or {}
        after = self._next_cursor(connection)
        while after is not None:
            data = await self.client.call("ErpsyncOrderLines", {
                "id": node["id"], "first": ops.LINE_PAGE, "after": after})
            lines = (data.get("order") or {}).get("lineItems") or {}
            extra.extend(lines.get("nodes") or [])
            after = self._next_cursor(lines)
        return extra

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        data = await self.client.call("ErpsyncOrder", {"id": gid("Order", platform_order_id)})
        node = data.get("order")
        if not node:
            raise NotFound(f"shopify: no order {platform_order_id}")
        return await self._complete_order(node)

    def verify_push(self, headers: Mapping[str, str], body: bytes) -> list[PushEvent]:
        """Webhooks: X-Shopify-Hmac-Sha256 over the raw bytes with the app secret (or the
        previous secret during a rotation: Shopify may sign with it for up to an hour).
        Shopify's own libraries also accept the headers without the X- prefix."""
        h = {k.lower(): v for k, v in headers.items()}

        def header(name: str) -> str:
            return h.get(f"x-{name}") or h.get(name) or ""

        signature = header("shopify-hmac-sha256")
        secrets = [self.shop.app_secret.reveal()]
        previous = self.shop.extra_secrets.get("previous_app_secret")
        if previous:
            secrets.append(previous.reveal())
        if not signature or not any(
                constant_time_equal(webhook_signature(s, body), signature) for s in secrets):
            raise SignatureInvalid("shopify webhook: HMAC does not verify")
        topic = header("shopify-topic")
        event_id = header("shopify-webhook-id")
        if not event_id:
            raise BadResponse("shopify webhook: no X-Shopify-Webhook-Id", body=body)
        occurred = parse_time(header("shopify-triggered-at") or None)
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise BadResponse("shopify webhook: body is not JSON", body=body) from exc
        if not isinstance(payload, Mapping):
            raise BadResponse("shopify webhook: body is not an object", body=body)
        if topic.startswith("orders/") and topic != "orders/delete":
            order = order_from_rest(payload)
            return [PushEvent(event_id, PushKind.ORDER, topic, order.platform_order_id,
                              occurred, order)]
        if topic == "orders/delete":
            return [PushEvent(event_id, PushKind.ORDER, topic, str(payload.get("id", "")),
                              occurred)]
        if topic.startswith("refunds/"):
            return [PushEvent(event_id, PushKind.REFUND, topic,
                              str(payload.get("order_id", "")) or None, occurred)]
        if topic.startswith("fulfillments/"):
            return [PushEvent(event_id, PushKind.ORDER, topic,
                              str(payload.get("order_id", "")) or None, occurred)]
        return [PushEvent(event_id, PushKind.OTHER, topic, None, occurred)]

    def push_ack(self, events: Sequence[PushEvent]) -> PushAck:
        return PushAck(200, b"", "text/plain")

    # -- logistics -------------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        try:
            company = self.carrier_table().to_platform(request.carrier)
        except UnmappedCarrier as exc:
            raise Rejected(str(exc), reason="bad_carrier") from exc
        data = await self.client.call("ErpsyncFulfillmentOrders",
                                      {"id": gid("Order", request.platform_order_id)})
        order = data.get("order")
        if not order:
            raise NotFound(f"shopify: no order {request.platform_order_id}")
        if order.get("cancelledAt"):
            raise Rejected("shopify: the order is cancelled", reason="order_cancelled")
        wanted = set(request.line_ids)
        known: set[str] = set()
        groups: dict[str, list[dict[str, Any]]] = {}
        for fo in (order.get("fulfillmentOrders") or {}).get("nodes") or []:
            items = (fo.get("lineItems") or {}).get("nodes") or []
            known.update(numeric_id((li.get("lineItem") or {}).get("id")) for li in items)
            if fo.get("status") not in _OPEN_FULFILLMENT_ORDERS:
                continue
            chosen = [li for li in items if int(li.get("remainingQuantity") or 0) > 0 and
                      (not wanted or numeric_id((li.get("lineItem") or {}).get("id")) in wanted)]
            if not chosen:
                continue
            entry: dict[str, Any] = {"fulfillmentOrderId": fo["id"]}
            if wanted:
                entry["fulfillmentOrderLineItems"] = [
                    {"id": li["id"], "quantity": int(li["remainingQuantity"])} for li in chosen]
            location = str(((fo.get("assignedLocation") or {}).get("location") or {}).get("id"))
            groups.setdefault(location, []).append(entry)
        unknown = wanted - known
        if unknown:
            raise Rejected(f"shopify: order has no lines {sorted(unknown)}", reason="unknown_line")
        if not groups:
            raise Rejected("shopify: nothing left to fulfil on this order",
                           reason="already_shipped")
        tracking: dict[str, Any] = {"company": company, "number": request.tracking_number}
        if company not in self.settings.recognised_companies:
            tracking["url"] = self.settings.fallback_tracking_url.format(
                number=request.tracking_number)
        # fulfillment orders of one call must share a location: one fulfilment per location
        for entries in groups.values():
            try:
                await self._mutate("ErpsyncFulfillmentCreate", {"fulfillment": {
                    "lineItemsByFulfillmentOrder": entries,
                    "notifyCustomer": self.settings.notify_customer,
                    "trackingInfo": tracking}})
            except Rejected:
                # fulfillmentCreate has no idempotency key: when an answer was lost and the
                # retry is refused (closed / quantity gone), our own fulfilment may be there
                order_now = await self.get_order(request.platform_order_id)
                if request.tracking_number not in order_now.tracking_numbers:
                    raise

    # -- auth ------------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        """Expiring offline tokens: exchange the refresh token; Shopify rotates it on every
        use, so the answer's refresh token replaces ours."""
        data = await self.client.call(TOKEN_API, {"refresh_token": current.refresh_token},
                                      authenticated=False)
        now = self.client.clock.now()

        def after(seconds: Any) -> datetime | None:
            try:
                return now + timedelta(seconds=int(seconds)) if seconds else None
            except (TypeError, ValueError):
                return None

        try:
            return TokenSet(
                access_token=str(data["access_token"]),
                refresh_token=str(data.get("refresh_token") or current.refresh_token),
                expires_at=after(data.get("expires_in")),
                refresh_expires_at=after(data.get("refresh_token_expires_in")))
        except KeyError as exc:
            raise BadResponse("shopify token refresh: no access_token") from exc

