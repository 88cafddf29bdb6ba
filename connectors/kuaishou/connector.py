"""Kuaishou e-commerce connector: cursor-paged orders, stock through deltas, whole-order
shipping, OAuth refresh with rotation, AES-encrypted pushes.

Absolute stock on a delta-only platform. The contract publishes absolute quantities, but
`open.item.sku.stock.update` only adds or removes (changeType 1/2) and no absolute method
exists in the API catalogue (checked against a 2025 catalogue copy; `open.item.autopass.edit`
documents a "set" type but accepts only add/reduce). So each SKU is *read, then moved by the
difference*:

    current = skuStock from open.item.sku.list.get      (the freshest read we can get)
    delta   = target − current; send |delta| with changeType 1 (add) or 2 (reduce)

The race this opens, worked: we read 10 and want 8; a buyer takes 1 (platform: 9); we send
"reduce 2"; the platform shows 7, one below our target. That is the safe direction and it
heals at once: the order reaches the core, available drops by one, the core publishes 7, we
read 7 and send nothing. The unsafe race is two writers for one SKU that both read 10 and
both reduce 2 (the platform shows 6), or one writer repeating a delta whose answer was lost.
We limit both:
- one writer per SKU in this process (an asyncio lock per shop+SKU, held from read to write;
  the outbox already sends one task per (shop, SKU) at a time across processes);
- read immediately before each write, never from a cache or an earlier page;
- a delta is never blindly retried: when its outcome is unknown (timeout, 5xx, throttled)
  we read again and decide again, so a delta the platform applied before the answer was lost
  is not applied twice.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from connectors.kuaishou import mapping
from connectors.kuaishou.client import REFRESH_API, KuaishouClient, KuaishouFacts, decrypt_push
from connectors.kuaishou.sandbox import KuaishouSandbox
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import (
    BadResponse,
    NotFound,
    RateLimited,
    Rejected,
    SignatureInvalid,
    Transient,
    UnmappedCarrier,
)
from core.http import HttpSession
from core.paging import split_window
from core.records import (
    Capability,
    ListingRecord,
    OrderRecord,
    PriceUpdate,
    PushAck,
    PushEvent,
    ShipRequest,
    StockUpdate,
    TokenSet,
    UnreadableOrder,
    UpdateOutcome,
    mapped_or_unreadable,
)

DEFAULT_FACTS = KuaishouFacts()
ORDER_PAGE_SIZE = 50  # open.order.cursor.list: pageSize ≤ 50
ORDER_WINDOW = timedelta(days=7)  # endTime − beginTime ≤ 7 days
ORDER_LOOKBACK = timedelta(days=90)
ITEM_PAGE_SIZE = 100  # open.item.list.get: 10–100
NO_MORE = "nomore"
MAX_STOCK = 9_999_999

# expressCode table 物流公司编号 (doc 401927, 2025)
CARRIERS = CarrierTable("kuaishou", {
    "SF": "4", "ZTO": "9", "YTO": "6", "STO": "3", "YUNDA": "11", "JT": "109", "EMS": "2",
    "POSTB": "8", "JD": "14", "DBL": "53", "FEDEX": "77", "USPS": "89", "UPS": "90",
})

# one writer per SKU in this process; a lock lives while someone holds or waits for it
_stock_locks: weakref.WeakValueDictionary[tuple[str, str, str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary())


class KuaishouConnector(Connector):
    platform = "kuaishou"
    title = "Kuaishou 快手小店"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LIST_LISTINGS, Capability.SET_STOCK, Capability.SET_PRICE,
        Capability.SHELVE, Capability.PULL_ORDERS, Capability.GET_ORDER,
        Capability.PUSH_ORDERS, Capability.SHIP, Capability.REFRESH_TOKEN,
    })
    limits = Limits(page_size=ORDER_PAGE_SIZE, max_window=ORDER_WINDOW, max_batch=20,
                    requests_per_second=DEFAULT_FACTS.requests_per_second, burst=10,
                    max_lookback=ORDER_LOOKBACK)
    carriers = CARRIERS
    status_table = mapping.STATUS_TABLE
    default_base_url = "https://openapi.kwaixiaodian.com"
    sandbox_class = KuaishouSandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.facts = KuaishouFacts.from_options(shop.options)
        self.client = KuaishouClient(shop, http, rate=self.facts.requests_per_second,
                                     burst=10, facts=self.facts)

    # -- listings ------------------------------------------------------------------------
    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        page = 1
        while True:
            data = await self.client.call("open.item.list.get", {
                "itemStatus": 1, "pageNumber": page, "pageSize": ITEM_PAGE_SIZE})
            items = data.get("items") or []
            for item in items:
                skus = item.get("skuList")
                if skus is None:
                    skus = await self._sku_rows(str(item["kwaiItemId"]))
                for record in mapping.listings_from_item(item, skus):
                    yield record
            if not items or page >= int(data.get("totalPage", page)):
                return
            page += 1

    async def _sku_rows(self, item_id: str) -> list[Mapping[str, Any]]:
        data = await self.client.call("open.item.sku.list.get", {"kwaiItemId": int(item_id)})
        return list(data.get("skuList") or [])

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        outcomes = []
        for update in updates:
            error: Exception | None = None
            try:
                await self._set_one(update)
            except (Rejected, NotFound, RateLimited, Transient, BadResponse) as exc:
                error = exc
            outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id, error))
        return outcomes

    async def _current_stock(self, update: StockUpdate) -> int:
        for row in await self._sku_rows(update.platform_item_id):
            if str(row.get("kwaiSkuId")) == update.platform_sku_id:
                return int(row["skuStock"])
        raise NotFound(f"kuaishou: SKU {update.platform_sku_id} is not on item "
                       f"{update.platform_item_id}")

    async def _set_one(self, update: StockUpdate) -> None:
        if update.quantity > MAX_STOCK:
            raise Rejected(f"kuaishou stock cannot exceed {MAX_STOCK}", reason="out_of_range")
        key = (self.shop.app_key, self.shop.name, update.platform_item_id,
               update.platform_sku_id)
        lock = _stock_locks.setdefault(key, asyncio.Lock())
        async with lock:
            unknown: Exception | None = None
            for attempt in range(self.facts.stock_attempts):
                current = await self._current_stock(update)
                delta = update.quantity - current
                if delta == 0:
                    return
                try:
                    await self.client.call_once("open.item.sku.stock.update", {
                        "kwaiItemId": int(update.platform_item_id),
                        "skuId": int(update.platform_sku_id),
                        "skuChangeStock": abs(delta), "changeType": 1 if delta > 0 else 2})
                    return
                except (Transient, RateLimited) as exc:  # outcome unknown: read, decide again
                    unknown = exc
                    wait = exc.retry_after if isinstance(exc, RateLimited) else None
                    await self.http.clock.sleep(wait if wait is not None else 0.5 * 2 ** attempt)
            assert unknown is not None
            raise unknown

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        outcomes = []
        for update in updates:
            error: Exception | None = None
            try:  # price is a long in fen (the page says only "long"; SDK models say 分)
                await self.client.call("open.item.sku.price.update", {
                    "itemId": int(update.platform_item_id),
                    "skuId": int(update.platform_sku_id), "price": update.price_fen})
            except (Rejected, NotFound) as exc:
                error = exc
            outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id, error))
        return outcomes

    async def set_on_sale(self, platform_item_id: str, on_sale: bool) -> None:
        await self.client.call("open.item.shelf.status.update", {
            "kwaiItemId": int(platform_item_id), "shelfStatus": 1 if on_sale else 0})

    # -- orders --------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        for window_start, window_end in split_window(start, end, ORDER_WINDOW):
            cursor = ""
            while cursor != NO_MORE:
                data = await self.client.call("open.order.cursor.list", {
                    "orderViewStatus": 1, "pageSize": ORDER_PAGE_SIZE, "sort": 1,
                    "queryType": 2, "beginTime": int(window_start.timestamp() * 1000),
                    "endTime": -int(-window_end.timestamp() * 1000 // 1), "cursor": cursor})
                for order in data.get("orderList") or []:
                    yield mapped_or_unreadable(order, mapping.order_from_detail, "orderBaseInfo", "oid")
                next_cursor = str(data.get("cursor") or NO_MORE)
                if next_cursor == cursor:
                    raise BadResponse("kuaishou: the cursor did not advance")
                cursor = next_cursor

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        data = await self.client.call("open.order.detail", {"oid": int(platform_order_id)})
        return mapping.order_from_detail(data)

    def verify_push(self, headers: Mapping[str, str], body: bytes) -> list[PushEvent]:
        """No signature header exists: only the holder of the msgSecret can produce
        ciphertext that decrypts, unpads and parses, and the envelope names our app."""
        secret = self.shop.extra_secrets.get("msg_secret")
        if not secret:
            raise SignatureInvalid("kuaishou push: no msg_secret configured for this shop")
        try:
            envelope = json.loads(decrypt_push(secret.reveal(), body))
        except ValueError as exc:
            raise SignatureInvalid("kuaishou push: body does not decrypt") from exc
        if not isinstance(envelope, dict):
            raise SignatureInvalid("kuaishou push: plaintext is not an object")
        if not envelope.get("test") and envelope.get("appKey") != self.shop.app_key:
            raise SignatureInvalid("kuaishou push: addressed to another app")
        return mapping.push_events(envelope)

    def push_ack(self, events: Sequence[PushEvent]) -> PushAck:
        return PushAck(200, b'{"result":1}')

    # -- logistics -----------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        """Whole-order shipment. An order holds one SKU line, so `line_ids` may only name
        that line; the same waybill again is answered with success (idempotent)."""
        try:
            code = self.carrier_table().to_platform(request.carrier)
        except UnmappedCarrier as exc:
            raise Rejected(str(exc), reason="bad_carrier") from exc
        if request.line_ids:
            order = await self.get_order(request.platform_order_id)
            if set(request.line_ids) != {line.platform_line_id for line in order.lines}:
                raise Rejected("kuaishou ships whole orders only (one SKU line per order)",
                               reason="partial_ship_unsupported")
        await self.client.call("open.seller.order.goods.deliver", {
            "orderId": int(request.platform_order_id), "expressNo": request.tracking_number,
            "expressCode": int(code)})

    # -- auth ----------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        """Every refresh returns a new refresh token (the old one dies within 5 minutes and
        the new one inherits the old expiry)."""
        data = await self.client.call(REFRESH_API, {"refresh_token": current.refresh_token},
                                      authenticated=False)
        now = self.http.clock.now()
        refresh_life = data.get("refresh_token_expires_in")
        return TokenSet(
            access_token=str(data["access_token"]), refresh_token=str(data["refresh_token"]),
            expires_at=now + timedelta(seconds=int(data.get("expires_in", 0))),
            refresh_expires_at=(now + timedelta(seconds=int(refresh_life))
                                if refresh_life else current.refresh_expires_at))
