"""The JD (POP shops) connector: class attributes say what JOS is; the methods are thin.

Why some capabilities are missing:
- PUSH_ORDERS: no public message-push contract for POP orders is known (JD's message
  services are tied to its cloud hosting, 云鼎, with unconfirmed topics and auth), so
  orders are pulled by modification time.
- PARTIAL_SHIP: `jingdong.pop.order.shipment` ships the whole order (several waybills
  allowed, no line selection).
- UPSERT_LISTING: `jingdong.ware.write.add` needs category sale attributes, images and
  descriptions we do not model yet.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from connectors.jd.client import PRODUCTION_HOST, REFRESH_API, JdAssumptions, JdClient
from connectors.jd.mapping import (
    ORDER_FIELDS,
    STATUS_TABLE,
    listing_from_sku,
    order_from_jd,
    token_set,
)
from connectors.jd.sandbox import JdSandbox
from core.clock import BEIJING, format_beijing
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import BadResponse, NotFound, Rejected
from core.http import HttpSession
from core.money import fen_to_yuan
from core.paging import read_backwards, split_window
from core.records import (
    Capability,
    LineStatus,
    ListingRecord,
    OrderRecord,
    OrderStatus,
    PriceUpdate,
    ShipRequest,
    StockUpdate,
    TokenSet,
    UnreadableOrder,
    UpdateOutcome,
    mapped_or_unreadable,
)
from core.sandbox import Sandbox

SEARCH = "jingdong.pop.order.search"
SKU_FIELDS = "skuId,wareId,skuName,wareTitle,outerId,jdPrice,stockNum,status,modified"


class JdConnector(Connector):
    platform: ClassVar[str] = "jd"
    title: ClassVar[str] = "京东 JD (POP)"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LIST_LISTINGS, Capability.SET_STOCK, Capability.SET_PRICE,
        Capability.SHELVE, Capability.PULL_ORDERS, Capability.GET_ORDER, Capability.SHIP,
        Capability.REFRESH_TOKEN,
    })
    limits: ClassVar[Limits] = Limits(
        page_size=100, max_window=timedelta(days=30), max_batch=50,
        requests_per_second=10, burst=5,
        # dateType=0 (modification time) reaches back about three months
        max_lookback=timedelta(days=90))
    # logiCoprId from 360buy.get.vender.all.delivery.company as seen in public ERP code.
    # 极兔 (JT) has no id in any public source we found: add it per shop with
    # shop.options["carriers"] = {"JT": "<logiCoprId>"} (the vendor's carrier list has it).
    carriers: ClassVar[CarrierTable] = CarrierTable("jd", {
        "SF": "467", "YTO": "463", "EMS": "465", "STO": "470", "YUNDA": "1327",
        "ZTO": "1499", "JD": "2087", "POSTB": "2170", "DBL": "3046",
    })
    status_table: ClassVar[Mapping[str, OrderStatus]] = STATUS_TABLE
    default_base_url: ClassVar[str] = PRODUCTION_HOST
    sandbox_class: ClassVar[type[Sandbox] | None] = JdSandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.assumptions = JdAssumptions.from_options(shop.options)
        self.client = JdClient(shop, http, rate=self.limits.requests_per_second,
                               burst=self.limits.burst, assumptions=self.assumptions,
                               production_base=self.default_base_url)

    # -- orders ------------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        window = self.limits.max_window
        for low, high in split_window(start, end, window):
            first = datetime.fromtimestamp(math.floor(low.timestamp()), BEIJING)
            # JD dates have whole seconds and both bounds are inclusive
            last = min(datetime.fromtimestamp(math.ceil(high.timestamp()), BEIJING),
                       first + window)
            async for order in self._search(first, last):
                yield order

    async def _search(self, first: datetime, last: datetime,
                      ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        """One window by modification time, ascending, read from its last page back.

        An order modified while we read leaves the window and the orders after it move up
        one place: read forwards, the one sliding onto an already-read page is lost; read
        backwards, it slides onto a page still to come.
        """
        size = self.limits.page_size

        async def fetch(page: int) -> tuple[int, list[dict[str, Any]]]:
            return await self._search_page(first, last, page, size)

        async for info in read_backwards(fetch, size):
            yield mapped_or_unreadable(info, order_from_jd, "orderId")

    async def _search_page(self, first: datetime, last: datetime, page: int,
                           size: int) -> tuple[int, list[dict[str, Any]]]:
        answer = await self.client.call(SEARCH, {
            "start_date": format_beijing(first), "end_date": format_beijing(last),
            "order_state": ",".join(self.assumptions.order_states),
            "optional_fields": ",".join(ORDER_FIELDS), "page": str(page),
            "page_size": str(size), "sortType": 0, "dateType": 0})
        result = answer.get("searchorderinfo_result")
        if not isinstance(result, dict):
            raise BadResponse("jd order search: searchorderinfo_result missing",
                              body=str(answer)[:2000])
        self.client.check_result(SEARCH, result.get("apiResult"))
        try:
            return int(result.get("orderTotal") or 0), list(result.get("orderInfoList") or [])
        except (TypeError, ValueError) as exc:
            raise BadResponse("jd order search: orderTotal unreadable",
                              body=str(result)[:2000]) from exc

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        api = "jingdong.pop.order.get"
        if not platform_order_id.isdigit():
            raise NotFound(f"jd order ids are numbers: {platform_order_id!r}")
        answer = await self.client.call(api, {"order_id": int(platform_order_id),
                                              "optional_fields": ",".join(ORDER_FIELDS)})
        detail = answer.get("orderDetailInfo") or {}
        if "apiResult" in detail:
            self.client.check_result(api, detail["apiResult"])
        info = detail.get("orderInfo")
        if not info:
            raise NotFound(f"jd order {platform_order_id} not found")
        return order_from_jd(info)

    # -- logistics ---------------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        carrier_id = self.carrier_table().to_platform(request.carrier)
        if request.line_ids:
            order = await self.get_order(request.platform_order_id)
            open_lines = {line.platform_line_id for line in order.lines
                          if line.status is LineStatus.OPEN}
            if set(request.line_ids) != open_lines:
                raise Rejected("jd ships whole orders only", reason="partial_ship_unsupported")
        api = "jingdong.pop.order.shipment"
        answer = await self.client.call(api, {
            "orderId": int(request.platform_order_id), "logiCoprId": carrier_id,
            "logiNo": request.tracking_number})
        self.client.check_result(api, answer.get("sopjosshipment_result"))

    # -- listings ----------------------------------------------------------------------------
    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        size = self.assumptions.sku_page_size
        page = 1
        while True:
            answer = await self.client.call("jingdong.sku.read.searchSkuList", {
                "pageNo": page, "page_size": size, "field": SKU_FIELDS})
            found = answer.get("page") or {}
            rows = found.get("data") or []
            for row in rows:
                yield listing_from_sku(row)
            if not rows or page * size >= int(found.get("totalItem") or 0):
                return
            page += 1

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        # JD sets stock one SKU per call (no batch method is published)
        outcomes: list[UpdateOutcome] = []
        for update in updates:
            api = self.assumptions.stock_method
            error: Exception | None = None
            try:
                answer = await self.client.call(api, {"skuId": int(update.platform_sku_id),
                                                      "stockNum": update.quantity})
                self.client.check_result(api, answer)
            except (Rejected, NotFound) as exc:
                error = exc
            outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id,
                                          error))
        return outcomes

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        outcomes: list[UpdateOutcome] = []
        for update in updates:
            api = "jingdong.price.write.updateSkuJdPrice"
            error: Exception | None = None
            try:
                answer = await self.client.call(api, {"skuId": int(update.platform_sku_id),
                                                      "jdPrice": fen_to_yuan(update.price_fen)})
                self.client.check_result(api, answer)
            except (Rejected, NotFound) as exc:
                error = exc
            outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id,
                                          error))
        return outcomes

    async def set_on_sale(self, platform_item_id: str, on_sale: bool) -> None:
        api = "jingdong.ware.write.upOrDown"
        answer = await self.client.call(api, {"wareId": int(platform_item_id),
                                              "opType": 1 if on_sale else 2})
        self.client.check_result(api, answer)

    # -- auth --------------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        answer = await self.client.call(REFRESH_API, {"refresh_token": current.refresh_token},
                                        authenticated=False)
        return token_set(answer, current)
