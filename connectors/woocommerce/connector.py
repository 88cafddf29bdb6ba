"""The WooCommerce connector: canonical operations over the `wc/v3` REST API and the
Shipment Tracking extension.

Orders are pulled by `modified_after`/`modified_before` (GMT) with page numbers. Page numbers
over a set that changes while we read can skip rows: an order on an unread page modified
mid-pull leaves the window, everything after it moves up one place, and the row that slid
onto the page just read is never seen. Rows only ever *leave* a window that ends in the
past, so the pages are read backwards (last page first, page 1 last): a row leaving then
pushes unread rows onto pages still to come, never onto pages already read. Page 1 is also
read at the start, to learn the page count; its rows are kept too, so a row that leaves
meanwhile is still seen in this window. `core.paging.read_backwards` does the walk.

Stock is an absolute `stock_quantity` written through the products and variations batch
routes (≤ 100 items a call, per-item errors inside a 200 answer). WooCommerce has no
compare-and-swap and no idempotency key; an absolute write is naturally idempotent.

Shipping adds a tracking item (per order: the extension has no line-level shipments, so no
partial shipment) and then marks the order completed, which sends the "order completed"
mail with the tracking link. A tracking POST is not idempotent, so it is sent once and, if
the answer is lost, the tracking list is read back to see whether it landed.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from connectors.woocommerce.client import (
    WooClient,
    WooReply,
    WooSettings,
    webhook_signature,
)
from connectors.woocommerce.mapping import (
    STATUS_TABLE,
    decimal_amount,
    format_gmt,
    listing_record,
    order_from_rest,
    parse_gmt,
    stock_facts,
    variation_title,
)
from connectors.woocommerce.sandbox import WooCommerceSandbox
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import (
    AuthExpired,
    BadResponse,
    NotFound,
    Rejected,
    SignatureInvalid,
    Transient,
    UnmappedCarrier,
)
from core.http import HttpSession
from core.paging import read_backwards
from core.records import (
    Capability,
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

ORDERS = "wc/v3/orders"
PRODUCTS = "wc/v3/products"

# canonical carrier -> Shipment Tracking provider name. Names the store's provider list
# does not contain are sent as custom providers (name + `custom_tracking_link`).
WOO_CARRIERS = {
    "UPS": "UPS",
    "USPS": "USPS",
    "FEDEX": "Fedex",
    "DHL": "DHL Express",
    "SF": "SF Express",
    "EMS": "China EMS",
    "POSTB": "China Post",
    "YTO": "YTO Express",
    "ZTO": "ZTO Express",
    "STO": "STO Express",
    "YUNDA": "Yunda Express",
    "JT": "J&T Express",
    "JD": "JD Logistics",
    "DBL": "Deppon Express",
}

_CLOSED = {"cancelled", "refunded", "failed", "trash"}


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class WooCommerceConnector(Connector):
    platform: ClassVar[str] = "woocommerce"
    title: ClassVar[str] = "WooCommerce (REST API v3)"
    version: ClassVar[str] = "1.0.0"
    # no PARTIAL_SHIP (tracking is per order), no REFRESH_TOKEN (REST keys do not expire)
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LIST_LISTINGS, Capability.UPSERT_LISTING, Capability.SET_STOCK,
        Capability.SET_PRICE, Capability.SHELVE, Capability.PULL_ORDERS, Capability.GET_ORDER,
        Capability.PUSH_ORDERS, Capability.SHIP,
    })
    limits: ClassVar[Limits] = Limits(
        page_size=100, max_window=timedelta(days=7), max_batch=100,
        # no limit in WooCommerce itself; hosts and WAFs throttle: stay gentle
        requests_per_second=2.0, burst=2, modified_lag=timedelta(minutes=2))
    carriers: ClassVar[CarrierTable] = CarrierTable("woocommerce", WOO_CARRIERS)
    status_table: ClassVar[Mapping[str, OrderStatus]] = STATUS_TABLE
    default_base_url: ClassVar[str] = "https://{shop}"
    sandbox_class = WooCommerceSandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.settings = WooSettings.from_options(shop.options)
        self.client = WooClient(shop, http, rate=self.limits.requests_per_second,
                                burst=self.limits.burst, settings=self.settings)
        self._providers: frozenset[str] | None = None

    # -- listings --------------------------------------------------------------------------
    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        currency = self.settings.currency
        page = 1
        while True:
            reply = await self.client.call(f"GET {PRODUCTS}", {
                "page": page, "per_page": self.limits.page_size, "orderby": "id",
                "order": "asc"})
            for product in reply.data:
                facts = stock_facts(product, currency)
                if facts.kind == "variable":
                    async for variation in self._variations(facts.platform_id):
                        yield listing_record(
                            product, stock_facts(variation, currency, kind="variation"),
                            parent=facts, title_suffix=variation_title(variation))
                elif facts.kind == "simple":
                    yield listing_record(product, facts)
                # grouped and external products hold no stock of their own
            if page >= (reply.total_pages or 1):
                return
            page += 1

    async def _variations(self, product_id: str) -> AsyncIterator[Mapping[str, Any]]:
        page = 1
        while True:
            reply = await self.client.call(f"GET {PRODUCTS}/{product_id}/variations", {
                "page": page, "per_page": self.limits.page_size, "orderby": "id",
                "order": "asc"})
            for variation in reply.data:
                yield variation
            if page >= (reply.total_pages or 1):
                return
            page += 1

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        return await self._batch_write(updates, lambda u: {
            "manage_stock": True, "stock_quantity": u.quantity})

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        currency = self.settings.currency
        return await self._batch_write(updates, lambda u: {
            "regular_price": decimal_amount(u.price_fen, currency)})

    async def _batch_write(self, updates: Sequence[Any], fields: Any) -> list[UpdateOutcome]:
        """Simple products through products/batch, variations through their product's
        variations/batch; ≤ limits.max_batch per call; per-item errors kept per item."""
        errors: dict[int, Exception | None] = {}
        routes: dict[str, list[int]] = {}
        for index, update in enumerate(updates):
            route = f"{PRODUCTS}/batch" if not update.platform_sku_id else \
                f"{PRODUCTS}/{update.platform_item_id}/variations/batch"
            routes.setdefault(route, []).append(index)
        for route, indexes in routes.items():
            for chunk in _chunks(indexes, self.limits.max_batch):
                body = [{"id": int(updates[i].platform_sku_id or updates[i].platform_item_id),
                         **fields(updates[i])} for i in chunk]
                try:
                    reply = await self.client.call(f"POST {route}", {"update": body})
                except (Rejected, NotFound) as exc:
                    errors.update(dict.fromkeys(chunk, exc))
                    continue
                answers = (reply.data or {}).get("update") or []
                for position, index in enumerate(chunk):
                    answer = answers[position] if position < len(answers) else None
                    errors[index] = self._item_error(answer)
        return [UpdateOutcome(u.platform_item_id, u.platform_sku_id, errors.get(i))
                for i, u in enumerate(updates)]

    def _item_error(self, answer: Any) -> Exception | None:
        if not isinstance(answer, Mapping):
            return BadResponse("woocommerce batch: no answer for this item")
        error = answer.get("error")
        if not error:
            return None
        code = str(error.get("code", ""))
        return self.client.errors.error(code, str(error.get("message", "")))

    async def set_on_sale(self, platform_item_id: str, on_sale: bool) -> None:
        await self.client.call(f"PUT {PRODUCTS}/{platform_item_id}",
                               {"status": "publish" if on_sale else "draft"})

    async def upsert_listing(self, draft: ListingDraft) -> ListingPushResult:
        """A draft without specs is a simple product; with specs, a variable product whose
        attributes come from the specs and whose variations are the SKUs. Stock is written
        only when creating; afterwards set_stock owns it."""
        currency = self.settings.currency
        creating = draft.platform_item_id is None
        common: dict[str, Any] = {"name": draft.title, "description": draft.description}
        if draft.images and creating:
            common["images"] = [{"src": url} for url in draft.images]
        specs = [sku for sku in draft.skus if sku.spec]
        if not specs:
            sku = draft.skus[0] if draft.skus else None
            code = sku.merchant_code if sku else draft.merchant_code
            body = {**common, "type": "simple", "sku": code,
                    "regular_price": decimal_amount(sku.price_fen if sku else draft.price_fen,
                                                    currency)}
            if creating:
                body.update(status="publish", manage_stock=True,
                            stock_quantity=sku.quantity if sku else 0)
            product = await self._save_product(draft.platform_item_id, body)
            return ListingPushResult(str(product["id"]), {code: ""})
        names: list[str] = []
        for sku in draft.skus:
            names.extend(n for n in sku.spec if n not in names)
        options = {n: list(dict.fromkeys(s.spec[n] for s in draft.skus if n in s.spec))
                   for n in names}
        body = {**common, "type": "variable", "sku": draft.merchant_code,
                "attributes": [{"name": n, "options": options[n], "variation": True,
                                "visible": True} for n in names]}
        if creating:
            body["status"] = "publish"
        product = await self._save_product(draft.platform_item_id, body)
        product_id = str(product["id"])
        existing: dict[str, str] = {}
        if not creating:
            existing = {str(v.get("sku")): str(v["id"])
                        async for v in self._variations(product_id) if v.get("sku")}
        items = []
        for sku in draft.skus:
            item: dict[str, Any] = {
                "sku": sku.merchant_code,
                "regular_price": decimal_amount(sku.price_fen, currency),
                "attributes": [{"name": n, "option": v} for n, v in sku.spec.items()]}
            if sku.merchant_code in existing:
                items.append(("update", {"id": int(existing[sku.merchant_code]), **item}))
            else:
                items.append(("create", {**item, "manage_stock": True,
                                         "stock_quantity": sku.quantity}))
        sku_ids = dict(existing)
        for chunk in _chunks(items, self.limits.max_batch):
            payload: dict[str, list[Any]] = {"create": [], "update": []}
            for action, entry in chunk:
                payload[action].append(entry)
            reply = await self.client.call(f"POST {PRODUCTS}/{product_id}/variations/batch",
                                           {k: v for k, v in payload.items() if v})
            for action in ("create", "update"):
                for answer in (reply.data or {}).get(action) or []:
                    error = self._item_error(answer)
                    if error is not None:
                        raise error
                    sku_ids[str(answer.get("sku") or "")] = str(answer["id"])
        return ListingPushResult(product_id, sku_ids)

    async def _save_product(self, product_id: str | None, body: Mapping[str, Any]
                            ) -> Mapping[str, Any]:
        if product_id is None:
            reply = await self.client.call(f"POST {PRODUCTS}", body)
        else:
            reply = await self.client.call(f"PUT {PRODUCTS}/{product_id}", body)
        if not isinstance(reply.data, Mapping) or "id" not in reply.data:
            raise BadResponse("woocommerce: product save answered without an id")
        return reply.data

    # -- orders ----------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        if end - start > self.limits.max_window:
            raise ValueError(f"woocommerce: window {end - start} exceeds "
                             f"{self.limits.max_window}")
        # both bounds are exclusive and to the second: start one second early ([start, …));
        # end as given (…, end)), rounded up when it carries a fraction
        after = start.replace(microsecond=0) - timedelta(seconds=1)
        before = end.replace(microsecond=0) + timedelta(seconds=1 if end.microsecond else 0)
        params = {"modified_after": format_gmt(after), "modified_before": format_gmt(before),
                  "dates_are_gmt": True, "orderby": "id", "order": "asc",
                  "per_page": self.limits.page_size, "status": "any"}
        seen: set[tuple[str, datetime]] = set()

        async def fetch(page: int) -> tuple[int, list[Mapping[str, Any]]]:
            reply = await self._orders_page(params, page)
            return reply.total_pages or 0, list(reply.data or [])

        async for body in read_backwards(fetch, self.limits.page_size, total_is_pages=True,
                                         yield_probe=True):
            tracking = await self._tracking_numbers(body)
            try:
                record = order_from_rest(body, tracking)
            except BadResponse as exc:  # this order is quarantined, the page goes on
                yield UnreadableOrder.of(body.get("id"), body, exc)
                continue
            key = (record.platform_order_id, record.modified_at)
            if key not in seen:
                seen.add(key)
                yield record

    async def _orders_page(self, params: Mapping[str, Any], page: int) -> WooReply:
        try:
            reply: WooReply = await self.client.call(f"GET {ORDERS}", {**params, "page": page})
            return reply
        except Rejected as exc:
            if exc.reason == "page_out_of_range":  # the set shrank while we read
                return WooReply([], 400, 0, 0)
            raise

    async def _order_record(self, body: Mapping[str, Any]) -> OrderRecord:
        return order_from_rest(body, await self._tracking_numbers(body))

    async def _tracking_numbers(self, body: Mapping[str, Any]) -> list[str] | None:
        """Read from the tracking route when the order's meta does not carry them."""
        if self.settings.tracking_from_meta or \
                body.get("status") not in self.settings.tracking_statuses:
            return None
        items = await self._trackings(str(body["id"]))
        return [str(i.get("tracking_number")) for i in items]

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        reply = await self.client.call(f"GET {ORDERS}/{platform_order_id}")
        return await self._order_record(reply.data)

    def verify_push(self, headers: Mapping[str, str], body: bytes) -> list[PushEvent]:
        """X-WC-Webhook-Signature = base64 HMAC-SHA256 of the body bytes with the
        webhook's secret (`extra_secrets["webhook_secret"]`; without one, the consumer
        secret, which is what erpsync sets when it registers the webhook itself).
        WooCommerce HTML-decodes the secret before keying, so both spellings are tried.
        The unsigned creation ping (`webhook_id=N`, form-encoded) yields no events."""
        h = {k.lower(): v for k, v in headers.items()}
        signature = h.get("x-wc-webhook-signature", "")
        if not signature:
            if not h.get("x-wc-webhook-topic") and _is_ping(body):
                return []
            raise SignatureInvalid("woocommerce webhook: no signature")
        stored = self.shop.extra_secrets.get("webhook_secret")
        secret = stored.reveal() if stored else self.shop.app_secret.reveal()
        keys = {secret, html.unescape(secret)}
        if not any(constant_time_equal(webhook_signature(k, body), signature) for k in keys):
            raise SignatureInvalid("woocommerce webhook: signature does not verify")
        topic = h.get("x-wc-webhook-topic", "")
        resource = h.get("x-wc-webhook-resource") or topic.partition(".")[0]
        event = h.get("x-wc-webhook-event") or topic.partition(".")[2]
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise BadResponse("woocommerce webhook: body is not JSON", body=body) from exc
        if not isinstance(payload, Mapping):
            raise BadResponse("woocommerce webhook: body is not an object", body=body)
        # the delivery id is wp_hash(webhook id + unix second): two deliveries of one
        # webhook in the same second share it (and date_modified_gmt is to the second too),
        # so the body's digest joins it: a repeated body is the same event, a changed one not
        event_id = ":".join((h.get("x-wc-webhook-delivery-id", ""), topic,
                             str(payload.get("id", "")), hashlib.sha256(body).hexdigest()[:20]))
        occurred = parse_gmt(payload.get("date_modified_gmt"))
        if resource == "order":
            if event == "deleted" or "status" not in payload:
                return [PushEvent(event_id, PushKind.ORDER, topic, str(payload.get("id", "")),
                                  occurred)]
            order = order_from_rest(payload)
            return [PushEvent(event_id, PushKind.ORDER, topic, order.platform_order_id,
                              occurred, order)]
        return [PushEvent(event_id, PushKind.OTHER, topic, None, occurred)]

    def push_ack(self, events: Sequence[PushEvent]) -> PushAck:
        return PushAck(200, b"", "text/plain")

    # -- logistics -------------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        if request.line_ids:
            raise Rejected("woocommerce: Shipment Tracking records shipments per order, not "
                           "per line", reason="partial_ship_unsupported")
        try:
            provider = self.carrier_table().to_platform(request.carrier)
        except UnmappedCarrier as exc:
            raise Rejected(str(exc), reason="bad_carrier") from exc
        order = (await self.client.call(f"GET {ORDERS}/{request.platform_order_id}")).data
        if order.get("status") in _CLOSED:
            raise Rejected(f"woocommerce: order is {order.get('status')}",
                           reason="order_cancelled")
        existing = await self._trackings(request.platform_order_id)
        if existing:
            numbers = sorted(str(i.get("tracking_number")) for i in existing)
            raise Rejected(f"woocommerce: order already carries {numbers}",
                           reason="already_shipped")
        # no date_shipped: the extension then uses "today" in the store's own time zone
        body: dict[str, Any] = {"tracking_number": request.tracking_number}
        if provider in await self._provider_names():
            body["tracking_provider"] = provider
        else:
            body["custom_tracking_provider"] = provider
            body["custom_tracking_link"] = self.settings.custom_tracking_link
        route = f"{self.settings.tracking_namespace}/orders/{request.platform_order_id}" \
                "/shipment-trackings"
        try:
            await self.client.call_once(f"POST {route}", body)
        except Transient:
            landed = await self._trackings(request.platform_order_id)
            if request.tracking_number not in {str(i.get("tracking_number")) for i in landed}:
                raise
        if self.settings.complete_on_ship and order.get("status") != "completed":
            await self.client.call(f"PUT {ORDERS}/{request.platform_order_id}",
                                   {"status": "completed"})

    async def _trackings(self, order_id: str) -> list[Mapping[str, Any]]:
        route = f"{self.settings.tracking_namespace}/orders/{order_id}/shipment-trackings"
        try:
            reply = await self.client.call(f"GET {route}")
        except NotFound as exc:
            if exc.code == "rest_no_route":
                raise Rejected("woocommerce: the Shipment Tracking extension is not installed",
                               reason="tracking_extension_missing") from exc
            raise
        return [i for i in reply.data or [] if isinstance(i, Mapping)]

    async def _provider_names(self) -> frozenset[str]:
        if self._providers is None:
            reply = await self.client.call(
                f"GET {self.settings.tracking_namespace}/shipment-trackings/providers")
            names: set[str] = set()
            for group in (reply.data or {}).values():
                if isinstance(group, Mapping):
                    names.update(str(n) for n in group)
            self._providers = frozenset(names)
        return self._providers

    # -- auth ------------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        """REST keys do not expire and cannot be refreshed: a refused key is final."""
        raise AuthExpired("woocommerce: the REST API key was refused (revoked, deleted or "
                          "wrong): issue a new key in WooCommerce → Settings → Advanced → "
                          "REST API and update the shop's credentials")


def _is_ping(body: bytes) -> bool:
    try:
        form = dict(parse_qsl(body.decode(), strict_parsing=True))
    except (ValueError, UnicodeDecodeError):
        return False
    return set(form) == {"webhook_id"} and form["webhook_id"].isdigit()
