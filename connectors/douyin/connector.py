"""Douyin Shop connector: orders by update time, absolute stock, shipping (whole order or
per SKU order as separate packages), token refresh with rotation, signed message pushes.

Why orders are paged backwards: `order.searchList` pages by offset (page from 0). Our windows
end in the past, so an order can only *leave* a window while we page (it is modified, its
update_time jumps to now). Read forwards, every order behind the one that left slides one
place towards the front, and the first of them slides onto a page we already read: missed.
Read from the last page to the first, a slide only moves not-yet-read orders onto pages still
to come, and at worst repeats one we have (duplicates are allowed, misses never). Page 0 is
read once to learn the total (and whether the window must be halved) and again at the end,
because it may have changed meanwhile: `core.paging.read_backwards` does the walk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from connectors.douyin import mapping
from connectors.douyin.client import DouyinClient, DouyinFacts, push_sign
from connectors.douyin.sandbox import DouyinSandbox
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import Rejected, SignatureInvalid, UnmappedCarrier
from core.http import HttpSession
from core.paging import read_backwards, split_window
from core.records import (
    Capability,
    ListingDraft,
    ListingPushResult,
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
from core.signing import constant_time_equal

DEFAULT_FACTS = DouyinFacts()
PAGE_SIZE = 100  # order.searchList, product.listV2 and afterSale.List all stop at 100
LISTING_DEPTH = 10_000  # product.listV2: page × size ≤ 10 000

# company_code values of order.logisticsCompanyList as seen in public ERP code (the list
# itself is per shop and can change: override with shop.options["carriers"])
CARRIERS = CarrierTable("douyin", {
    "SF": "shunfeng",
    "ZTO": "zhongtong",
    "YTO": "yuantong",
    "STO": "shentong",
    "YUNDA": "yunda",
    "JT": "jtexpress",
    "EMS": "ems",
    "POSTB": "youzhengguonei",
    "JD": "jd",
    "DBL": "debangkuaidi",
})


class DouyinConnector(Connector):
    platform = "douyin"
    title = "Douyin Shop 抖店"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LIST_LISTINGS, Capability.UPSERT_LISTING, Capability.SET_STOCK,
        Capability.SET_PRICE, Capability.SHELVE, Capability.PULL_ORDERS, Capability.GET_ORDER,
        Capability.PUSH_ORDERS, Capability.SHIP, Capability.PARTIAL_SHIP,
        Capability.REFRESH_TOKEN,
    })
    limits = Limits(page_size=PAGE_SIZE, max_window=DEFAULT_FACTS.order_window,
                    max_batch=DEFAULT_FACTS.stock_batch_max,
                    requests_per_second=DEFAULT_FACTS.requests_per_second, burst=5,
                    max_lookback=DEFAULT_FACTS.order_lookback)
    carriers = CARRIERS
    status_table = mapping.STATUS_TABLE
    default_base_url = "https://openapi-fxg.jinritemai.com"
    sandbox_class = DouyinSandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.facts = DouyinFacts.from_options(shop.options)
        self.client = DouyinClient(shop, http, rate=self.facts.requests_per_second, burst=5)

    # -- listings ------------------------------------------------------------------------
    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        page = 1
        while page * PAGE_SIZE <= LISTING_DEPTH:
            data = await self.client.call("product.listV2", {"page": page, "size": PAGE_SIZE})
            products = data.get("data") or []
            for product in products:
                skus = await self._skus(str(product["product_id"]))
                for record in mapping.listings_from_product(product, skus):
                    yield record
            if page * PAGE_SIZE >= int(data.get("total", 0)) or not products:
                return
            page += 1

    async def _skus(self, product_id: str) -> list[Mapping[str, Any]]:
        data = await self.client.call("sku.list", {"product_id": product_id})
        return list(data if isinstance(data, list) else data.get("data") or [])

    async def upsert_listing(self, draft: ListingDraft) -> ListingPushResult:
        spec_names = list(dict.fromkeys(name for sku in draft.skus for name in sku.spec))
        if len(spec_names) > 3:
            raise Rejected("douyin products take at most three spec dimensions",
                           reason="too_many_specs")
        values = {name: list(dict.fromkeys(sku.spec.get(name, "") for sku in draft.skus))
                  for name in spec_names}
        spec_prices = [
            {**{f"spec_detail_name{i}": sku.spec.get(name, "")
                for i, name in enumerate(spec_names, start=1)},
             "stock_num": sku.quantity, "price": sku.price_fen, "code": sku.merchant_code}
            for sku in draft.skus]
        params: dict[str, Any] = {
            "name": draft.title,
            "category_leaf_id": int(draft.category_id),
            "pic": "|".join(draft.images),
            "description": draft.description,
            "outer_product_id": draft.merchant_code,
            "spec_name": "-".join(spec_names),
            "specs": "^".join(f"{name}|{','.join(v)}" for name, v in values.items()),
            "spec_prices": json.dumps(spec_prices, ensure_ascii=False,
                                              separators=(",", ":")),
            "product_format_new": json.dumps(dict(draft.attributes),
                                                     ensure_ascii=False),
            "commit": True,
        }
        if draft.platform_item_id is None:
            data = await self.client.call("product.addV2", params)
            product_id = str(data["product_id"])
            rows = [{"id": s.get("sku_id"), "code": s.get("code") or s.get("outer_sku_id")}
                    for s in data.get("sku") or []]
        else:
            product_id = draft.platform_item_id
            await self.client.call("product.editV2", {**params, "product_id": product_id})
            rows = [dict(s) for s in await self._skus(product_id)]
        return ListingPushResult(product_id, {str(r["code"]): str(r["id"]) for r in rows
                                              if r.get("code")})

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        """Absolute (`incremental=false`), so a repeat after a lost answer is harmless.
        sku.syncStockBatch takes the SKUs of one product and is all-or-nothing."""
        outcomes: list[UpdateOutcome] = []
        by_product: dict[str, list[StockUpdate]] = {}
        for update in updates:
            by_product.setdefault(update.platform_item_id, []).append(update)
        for product_id, group in by_product.items():
            for start in range(0, len(group), self.facts.stock_batch_max):
                chunk = group[start:start + self.facts.stock_batch_max]
                outcomes.extend(await self._sync_stock(product_id, chunk))
        return outcomes

    async def _sync_stock(self, product_id: str,
                          chunk: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        error: Exception | None = None
        try:
            if any(not u.platform_sku_id for u in chunk):
                raise Rejected("douyin stock needs the SKU id", reason="missing_sku_id")
            if len(chunk) == 1:
                await self.client.call("sku.syncStock", {
                    "product_id": int(product_id), "sku_id": int(chunk[0].platform_sku_id),
                    "stock_num": chunk[0].quantity, "incremental": False})
            else:
                await self.client.call("sku.syncStockBatch", {
                    "product_id": int(product_id), "incremental": False,
                    "sku_sync_list": [{"sku_id": int(u.platform_sku_id), "sku_type": 0,
                                       "stock_num": u.quantity} for u in chunk]})
        except Rejected as exc:
            error = exc
        return [UpdateOutcome(u.platform_item_id, u.platform_sku_id, error) for u in chunk]

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        outcomes = []
        for update in updates:
            error: Exception | None = None
            try:
                await self.client.call("sku.editPrice", {
                    "product_id": int(update.platform_item_id),
                    "sku_id": int(update.platform_sku_id), "price": update.price_fen})
            except Rejected as exc:
                error = exc
            outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id, error))
        return outcomes

    async def set_on_sale(self, platform_item_id: str, on_sale: bool) -> None:
        method = "product.setOnline" if on_sale else "product.setOffline"
        await self.client.call(method, {"product_id": int(platform_item_id)})

    # -- orders --------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        for window_start, window_end in split_window(start, end, self.facts.order_window):
            async for order in self._window(window_start, window_end):
                yield order

    async def _window(self, start: datetime, end: datetime,
                      ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        total, orders = await self._search_page(start, end, 0)
        if total > self.facts.order_paging_depth and end - start > timedelta(seconds=2):
            middle = start + (end - start) / 2
            for half in ((start, middle), (middle, end)):
                async for order in self._window(*half):
                    yield order
            return

        async def fetch(page: int) -> tuple[int, list[Mapping[str, Any]]]:
            return await self._search_page(start, end, page)

        async for shop_order in read_backwards(fetch, PAGE_SIZE, first=0,
                                               probe=(total, orders)):
            yield mapped_or_unreadable(shop_order, mapping.order_from_shop_order, "order_id")

    async def _search_page(self, start: datetime, end: datetime, page: int,
                           ) -> tuple[int, list[Mapping[str, Any]]]:
        # update_time bounds are whole seconds and inclusive: widen to cover [start, end)
        data = await self.client.call("order.searchList", {
            "update_time_start": int(start.timestamp()),
            "update_time_end": -int(-end.timestamp() // 1),
            "order_by": "update_time", "order_asc": True,
            "page": page, "size": PAGE_SIZE,
        })
        return int(data.get("total", 0)), list(data.get("shop_order_list") or [])

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        data = await self.client.call("order.orderDetail", {"shop_order_id": platform_order_id})
        return mapping.order_from_shop_order(data["shop_order_detail"])

    def verify_push(self, headers: Mapping[str, str], body: bytes) -> list[PushEvent]:
        lowered = {k.lower(): v for k, v in headers.items()}
        given = lowered.get("event-sign", "").lower()
        expected = push_sign(self.shop.app_key, body, self.shop.app_secret.reveal())
        if not given or not constant_time_equal(given, expected):
            raise SignatureInvalid("douyin push: event-sign does not match")
        if lowered.get("app-id", self.shop.app_key) != self.shop.app_key:
            raise SignatureInvalid("douyin push: addressed to another app")
        return mapping.push_events(body)

    def push_ack(self, events: Sequence[PushEvent]) -> PushAck:
        return PushAck(200, self.facts.push_ack_body)

    # -- logistics -----------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        try:
            company = self.carrier_table().to_platform(request.carrier)
        except UnmappedCarrier as exc:
            raise Rejected(str(exc), reason="bad_carrier") from exc
        if not request.line_ids:
            await self.client.call("order.logisticsAdd", {
                "order_id": request.platform_order_id, "company_code": company,
                "logistics_code": request.tracking_number})
            return
        # one package holding these SKU orders; request_id makes a repeat return the first
        # result instead of shipping twice
        key = "|".join((request.platform_order_id, company, request.tracking_number,
                        *sorted(request.line_ids)))
        await self.client.call("order.logisticsAddMultiPack", {
            "order_id": request.platform_order_id,
            "request_id": hashlib.sha1(key.encode()).hexdigest(),
            "pack_list": [{
                "shipped_order_info": [{"shipped_order_id": line} for line in request.line_ids],
                "logistics_code": request.tracking_number, "company_code": company}],
        })

    # -- auth ----------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        data = await self.client.call("token.refresh", {
            "grant_type": "refresh_token", "refresh_token": current.refresh_token},
            authenticated=False)
        now = self.http.clock.now()
        return TokenSet(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            expires_at=now + timedelta(seconds=int(data.get("expires_in", 0))),
            refresh_expires_at=now + timedelta(days=14),  # token.refresh doc: 14 days
        )
