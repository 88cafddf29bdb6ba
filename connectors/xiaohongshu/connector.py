"""The Xiaohongshu connector: listings, absolute stock, orders by update time, shipping,
signed pushes and token refresh over the common_controller gateway.

Why orders are paged backwards: `order.getOrderList` by update time (≤ 30 min windows) is
sorted oldest first. If order A on page 1 is updated while we page, it leaves the window and
every later order moves up one place; reading pages 1, 2, 3 … would skip the order that moved
from page 2 to page 1. Reading from the last page to the first (as the docs prescribe) turns
that shift into a duplicate instead of a miss. Page 1 is read once first to learn
`maxPageNo` (and whether the window must be halved) and read again last, so a shift during the
walk still lands on a page still to come: `core.paging.read_backwards` does the walk.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from connectors.xiaohongshu.client import PUSH_ACK_BODY, XhsClient, push_sign
from connectors.xiaohongshu.mapping import (
    EXPRESS_COMPANIES,
    STATUS_TABLE,
    XhsSku,
    from_ms,
    listing_from_sku,
    order_from_json,
    sku_from_row,
)
from connectors.xiaohongshu.sandbox import XhsSandbox
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    RateLimited,
    Rejected,
    SignatureInvalid,
    Transient,
)
from core.http import HttpSession
from core.paging import read_backwards
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
    mapped_or_unreadable,
)
from core.secrets import register as register_secret
from core.signing import constant_time_equal

TIME_TYPE_UPDATED = 2
UPDATE_WINDOW_SECONDS = 30 * 60
MAX_PAGE_NO = 100
# errors that say "try the whole batch later", not "this SKU was refused"
_BATCH_STOPPERS = (AuthExpired, RateLimited, Transient)

ORDER_TAGS = frozenset({"msg_fulfillment_status_change", "msg_fulfillment_receiver_change",
                        "msg_fulfillment_seller_remark_change",
                        "msg_fulfillment_delivery_time_change"})
REFUND_TAGS = frozenset({"msg_after_sale_create", "msg_after_sale_transfer",
                         "msg_after_sale_update"})


class XiaohongshuConnector(Connector):
    platform: ClassVar[str] = "xiaohongshu"
    title: ClassVar[str] = "小红书"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LIST_LISTINGS, Capability.UPSERT_LISTING, Capability.SET_STOCK,
        Capability.SET_PRICE, Capability.SHELVE, Capability.PULL_ORDERS, Capability.GET_ORDER,
        Capability.PUSH_ORDERS, Capability.SHIP, Capability.PARTIAL_SHIP,
        Capability.REFRESH_TOKEN,
    })
    # inventory.syncSkuStock takes one SKU per call: a "batch" is a loop of single calls.
    # 100 QPS is the documented per-app default; a shop gets a modest share of it.
    limits: ClassVar[Limits] = Limits(page_size=100, max_window=timedelta(minutes=30),
                                      max_batch=50, requests_per_second=20, burst=5)
    carriers: ClassVar[CarrierTable] = CarrierTable("xiaohongshu", EXPRESS_COMPANIES)
    status_table: ClassVar[Mapping[str, OrderStatus]] = STATUS_TABLE
    default_base_url: ClassVar[str] = "https://ark.xiaohongshu.com"
    sandbox_class = XhsSandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.client = XhsClient(shop, http, rate=self.limits.requests_per_second,
                                burst=self.limits.burst)

    # -- listings ------------------------------------------------------------------------
    async def _sku_rows(self, item_id: str | None = None) -> AsyncIterator[XhsSku]:
        page_no = 1
        while True:
            params: dict[str, Any] = {"pageNo": page_no, "pageSize": self.limits.page_size}
            if item_id:
                params["id"] = item_id
            data = await self.client.call("product.getDetailSkuList", params)
            rows = (data or {}).get("data") or []
            for row in rows:
                yield sku_from_row(row)
            total = int((data or {}).get("total") or 0)
            if not rows or page_no * self.limits.page_size >= total:
                return
            page_no += 1

    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        async for sku in self._sku_rows():
            yield listing_from_sku(sku)

    async def upsert_listing(self, draft: ListingDraft) -> ListingPushResult:
        """`shippingTemplateId` and `logisticsPlanId` are shop settings on XHS: they come from
        draft.attributes or shop.options (`xhs_shipping_template_id`, `xhs_logistics_plan_id`)."""
        existing: dict[str, str] = {}
        if draft.platform_item_id:
            async for sku in self._sku_rows(draft.platform_item_id):
                existing[sku.erp_code] = sku.sku_id
        plan = self._setting(draft, "xhs_logistics_plan_id")
        new_skus = [self._sku_payload(s, plan) for s in draft.skus
                    if s.merchant_code not in existing]
        if draft.platform_item_id:
            # updateItemAndSku's list names (updateSkuList/createSkuList) are UNCONFIRMED
            params: dict[str, Any] = {
                "itemId": draft.platform_item_id, "name": draft.title,
                "updateSkuList": [{"skuId": existing[s.merchant_code], "price": s.price_fen,
                                   "erpCode": s.merchant_code}
                                  for s in draft.skus if s.merchant_code in existing],
                "createSkuList": new_skus,
            }
            data = await self.client.call("product.updateItemAndSku", params)
        else:
            params = {
                "name": draft.title, "categoryId": draft.category_id,
                "shippingTemplateId": self._setting(draft, "xhs_shipping_template_id"),
                "images": [{"link": url} for url in draft.images],
                "description": draft.description, "articleNo": draft.merchant_code,
                "createSkuList": new_skus,
            }
            data = await self.client.call("product.createItemAndSku", params)
        item_id = str((data or {}).get("itemId") or draft.platform_item_id or "")
        if not item_id:
            raise BadResponse("xiaohongshu createItemAndSku: no itemId in the answer")
        sku_ids = {str(s.get("erpCode")): str(s.get("skuId"))
                   for s in (data or {}).get("skuList") or () if s.get("erpCode")}
        return ListingPushResult(item_id, {**existing, **sku_ids})

    def _setting(self, draft: ListingDraft, key: str) -> str:
        value = draft.attributes.get(key) or self.shop.options.get(key)
        if not value:
            raise Rejected(f"xiaohongshu listing: set {key} in the shop options",
                           reason="missing_setting")
        return str(value)

    @staticmethod
    def _sku_payload(sku: DraftSku, logistics_plan_id: str) -> dict[str, Any]:
        return {
            "price": sku.price_fen, "stock": sku.quantity, "erpCode": sku.merchant_code,
            "logisticsPlanId": logistics_plan_id,
            "deliveryTime": {"type": 4, "time": "48"},  # relative: ship within 48 h
            "variants": [{"name": k, "value": v} for k, v in sku.spec.items()],
        }

    async def _per_sku(self, api: str, updates: Sequence[Any],
                       params_of: Any) -> list[UpdateOutcome]:
        outcomes = []
        for update in updates:
            try:
                await self.client.call(api, params_of(update))
            except _BATCH_STOPPERS:
                raise
            except ConnectorError as exc:
                outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id, exc))
            else:
                outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id))
        return outcomes

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        # qty is the SKU's total (sellable + holds); the platform keeps its holds
        return await self._per_sku("inventory.syncSkuStock", updates,
                                   lambda u: {"skuId": u.platform_sku_id, "qty": u.quantity})

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        return await self._per_sku(
            "product.updateSkuPrice", updates,
            lambda u: {"skuId": u.platform_sku_id,
                       "price": [{"skuId": u.platform_sku_id, "price": u.price_fen}]})

    async def set_on_sale(self, platform_item_id: str, on_sale: bool) -> None:
        # shelving is per SKU on XHS: the item is on sale when its SKUs are
        async for sku in self._sku_rows(platform_item_id):
            await self.client.call("product.updateSkuAvailable",
                                   {"skuId": sku.sku_id, "available": on_sale})

    # -- orders --------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        first, last = math.floor(start.timestamp()), math.ceil(end.timestamp())
        seen: set[tuple[str, int]] = set()
        for window_start in range(first, last, UPDATE_WINDOW_SECONDS):
            window_end = min(window_start + UPDATE_WINDOW_SECONDS, last)
            async for row in self._window_rows(window_start, window_end):
                key = (str(row.get("orderId")), int(row.get("updateTime") or 0))
                if key in seen:
                    continue
                seen.add(key)
                yield mapped_or_unreadable(await self._order_detail(key[0]), order_from_json,
                                           "orderId")

    async def _window_rows(self, start: int, end: int) -> AsyncIterator[Mapping[str, Any]]:
        max_page, rows = await self._order_page(start, end, 1)
        if max_page > MAX_PAGE_NO and end - start > 1:
            # more than 100 pages: the API cannot reach the tail, so halve the window
            middle = (start + end) // 2
            async for row in self._window_rows(start, middle):
                yield row
            async for row in self._window_rows(middle, end):
                yield row
            return

        # a one-second window can still hold more: it is read as far as the API goes
        async def fetch(page_no: int) -> tuple[int, list[Mapping[str, Any]]]:
            pages, page_rows = await self._order_page(start, end, page_no)
            return min(pages, MAX_PAGE_NO), page_rows

        async for row in read_backwards(fetch, self.limits.page_size, total_is_pages=True,
                                        probe=(min(max_page, MAX_PAGE_NO), rows)):
            yield row

    async def _order_page(self, start: int, end: int, page_no: int,
                          ) -> tuple[int, list[Mapping[str, Any]]]:
        data = await self.client.call("order.getOrderList", {
            "startTime": start, "endTime": end, "timeType": TIME_TYPE_UPDATED,
            "pageNo": page_no, "pageSize": self.limits.page_size})
        if not isinstance(data, dict):
            raise BadResponse("xiaohongshu order.getOrderList: data is not an object")
        return int(data.get("maxPageNo") or 0), list(data.get("orderList") or ())

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        return order_from_json(await self._order_detail(platform_order_id))

    async def _order_detail(self, platform_order_id: str) -> dict[str, Any]:
        data = await self.client.call("order.getOrderDetail", {"orderId": platform_order_id})
        if not isinstance(data, dict):
            raise BadResponse(f"xiaohongshu order {platform_order_id}: detail is not an object")
        return data

    # -- pushes --------------------------------------------------------------------------
    def _push_target(self) -> tuple[str, dict[str, str]]:
        # The sign covers the callback URL configured in the XHS console (path + its own
        # query), which verify_push is not handed: it comes from the shop options.
        url = str(self.shop.options.get("push_url") or "")
        if not url:
            raise SignatureInvalid("xiaohongshu push: set shop option push_url (the callback "
                                   "URL registered in the app console)")
        parts = urlsplit(url)
        return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))

    def verify_push(self, headers: Mapping[str, str], body: bytes) -> list[PushEvent]:
        """The platform signs the callback URL and headers, not the body (doc 041): events
        are hints that name an order, and the core re-reads the order before acting."""
        lower = {k.lower(): v for k, v in headers.items()}
        sign, timestamp, app_key = lower.get("sign"), lower.get("timestamp"), lower.get("app-key")
        if not sign or not timestamp or not app_key:
            raise SignatureInvalid("xiaohongshu push: app-key/timestamp/sign headers missing")
        path, query = self._push_target()
        expected = push_sign(path, query, app_key, timestamp, self.shop.app_secret.reveal())
        if app_key != self.shop.app_key or not constant_time_equal(sign, expected):
            raise SignatureInvalid("xiaohongshu push: signature does not verify")
        try:
            messages = json.loads(body)
        except ValueError as exc:
            raise BadResponse("xiaohongshu push: body is not JSON", body=body) from exc
        if isinstance(messages, dict) and messages.get("test") is True:
            return []  # the console's reachability probe
        if not isinstance(messages, list):
            raise BadResponse("xiaohongshu push: body is not a message list", body=body)
        return [self._push_event(m, body) for m in messages]

    @staticmethod
    def _push_event(message: Any, body: bytes) -> PushEvent:
        try:
            tag = str(message["msgTag"])
            data = json.loads(message.get("data") or "{}")
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse("xiaohongshu push: malformed message", body=body) from exc
        order_id = str(data.get("orderId") or "") or None
        updated = data.get("updateTime")
        kind = (PushKind.ORDER if tag in ORDER_TAGS
                else PushKind.REFUND if tag in REFUND_TAGS else PushKind.OTHER)
        marker = data.get("orderStatus", data.get("returnsId", ""))
        return PushEvent(
            event_id=f"{tag}:{order_id or data.get('itemId', '')}:{updated or ''}:{marker}",
            kind=kind, topic=tag, platform_order_id=order_id,
            occurred_at=from_ms(updated) if updated else None)

    def push_ack(self, events: Sequence[PushEvent]) -> PushAck:
        return PushAck(200, json.dumps(PUSH_ACK_BODY).encode())

    # -- logistics -----------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        params: dict[str, Any] = {
            "orderId": request.platform_order_id, "expressNo": request.tracking_number,
            "expressCompanyCode": self.carrier_table().to_platform(request.carrier),
        }
        if request.line_ids:
            # lines are SKUs on XHS (platform_line_id == skuId): an unpacked partial shipment
            params.update(unpack=True, skuIdList=list(request.line_ids))
        await self.client.call("order.orderDeliver", params)

    # -- auth ----------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        # `refreshToken` is not a key the log redactor knows: scrub its value instead
        register_secret(current.refresh_token)
        data = await self.client.call("oauth.refreshToken",
                                      {"refreshToken": current.refresh_token},
                                      authenticated=False)
        try:
            tokens = TokenSet(
                access_token=str(data["accessToken"]),
                refresh_token=str(data["refreshToken"]),
                expires_at=_epoch_ms(data.get("accessTokenExpiresAt")),
                refresh_expires_at=_epoch_ms(data.get("refreshTokenExpiresAt")))
        except (KeyError, TypeError) as exc:
            raise BadResponse("xiaohongshu oauth.refreshToken: no tokens in the answer") from exc
        register_secret(tokens.access_token)
        register_secret(tokens.refresh_token)
        return tokens


def _epoch_ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None
