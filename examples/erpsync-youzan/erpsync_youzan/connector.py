"""YouzanConnector: the connector contract over Youzan Cloud's trade, item and logistics APIs.

Orders are read by update time with `youzan.trades.sold.get` (start_update/end_update: the
doc says the results are then sorted by update time and that "the orders in the range
change while you page"). Paging forwards over a list that shifts skips orders: one on page 1
is updated again and leaves, every later one moves up a place, and the one crossing from
page 2 to page 1 is never seen. So the connector learns the total from page 1 and then
reads from the last page back, where a shift only repeats an order. The list already holds
whole trades (`full_order_info`), so no second read per order is needed.

Push: Youzan pushes trade messages signed md5(client_id + body + client_secret); they are
hints (the body carries the tid, not the whole trade): the core re-reads the order.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote

from core.clock import format_beijing
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import BadResponse, ConnectorError, Rejected, SignatureInvalid
from core.http import HttpSession
from core.paging import page_count, split_window
from core.records import (
    Capability,
    ListingRecord,
    OrderRecord,
    PushEvent,
    PushKind,
    ShipRequest,
    StockUpdate,
    TokenSet,
    UnreadableOrder,
    UpdateOutcome,
    mapped_or_unreadable,
)
from core.signing import constant_time_equal
from erpsync_youzan.client import (
    PUSH_SIGN_HEADER,
    TOKEN_PATH,
    YOUZAN,
    YouzanClient,
    push_sign,
)
from erpsync_youzan.mapping import EXPRESS_IDS, STATUS_TABLE, item_to_listings, trade_to_order
from erpsync_youzan.sandbox import YouzanSandbox

ITEM_PAGE_SIZE = 100  # youzan.items.onsale.get (A)


class YouzanConnector(Connector):
    platform = "youzan"
    title = "Youzan (有赞)"
    version = "0.1.0"
    capabilities = frozenset({
        Capability.LIST_LISTINGS, Capability.SET_STOCK, Capability.PULL_ORDERS,
        Capability.GET_ORDER, Capability.PUSH_ORDERS, Capability.SHIP,
        Capability.PARTIAL_SHIP, Capability.REFRESH_TOKEN,
    })
    limits = Limits(
        page_size=YOUZAN.page_size,
        max_window=timedelta(days=365),  # "每次可搜索一年订单记录"
        max_batch=1,  # item.quantity.update sets one SKU per call
        requests_per_second=10.0,  # not published per API: conservative (A)
        burst=5,
        modified_lag=timedelta(seconds=30),  # the doc: query more than 30 s after a change
    )
    carriers: ClassVar[CarrierTable] = CarrierTable("youzan", EXPRESS_IDS)
    status_table = STATUS_TABLE
    default_base_url = "https://open.youzanyun.com"
    sandbox_class = YouzanSandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.facts = replace(YOUZAN, **shop.options.get("youzan", {}))
        self.client = YouzanClient(shop, http, rate=self.limits.requests_per_second,
                                   burst=self.limits.burst, facts=self.facts)

    # -- orders --------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        seen: set[str] = set()
        for low, high in split_window(start, end, self.limits.max_window):
            async for trade in self._updated_trades(low, high):
                # one trade that does not map is quarantined; the window goes on
                found = mapped_or_unreadable(trade, trade_to_order, "order_info", "tid")
                # the API's bounds are inclusive seconds: [start, end) is kept exactly
                if isinstance(found, OrderRecord) and not low <= found.modified_at < high:
                    continue
                if found.platform_order_id not in seen:
                    seen.add(found.platform_order_id)
                    yield found

    async def _updated_trades(self, start: datetime, end: datetime) -> AsyncIterator[
            Mapping[str, Any]]:
        size = self.facts.page_size
        params = {"start_update": format_beijing(start), "end_update": format_beijing(end),
                  "page_size": size}
        first = await self._trades({**params, "page_no": 1})
        pages = page_count(int(first.get("total_results") or 0), size)
        for page_no in range(pages, 0, -1):
            page = first if page_no == 1 else await self._trades({**params, "page_no": page_no})
            for entry in page.get("full_order_info_list") or []:
                yield entry["full_order_info"]

    async def _trades(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        data = await self.client.api("youzan.trades.sold.get", self.facts.trades_version, params)
        if not isinstance(data, Mapping):
            raise BadResponse("youzan trades.sold.get: no data", body=repr(data))
        return data

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        data = await self.client.api("youzan.trade.get", self.facts.trade_version,
                                     {"tid": platform_order_id})
        if not isinstance(data, Mapping) or "full_order_info" not in data:
            raise BadResponse("youzan trade.get: no full_order_info", body=repr(data))
        return trade_to_order(data["full_order_info"])

    # -- listings ------------------------------------------------------------------------
    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        page_no, pages = 1, 1
        while page_no <= pages:
            page = await self.client.api("youzan.items.onsale.get", self.facts.onsale_version,
                                         {"page_no": page_no, "page_size": ITEM_PAGE_SIZE})
            pages = page_count(int(page.get("count") or 0), ITEM_PAGE_SIZE)
            for summary in page.get("items") or []:
                detail = await self.client.api("youzan.item.get", self.facts.item_version,
                                               {"item_id": summary["item_id"]})
                for listing in item_to_listings(detail["item"]):
                    yield listing
            page_no += 1

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        outcomes = []
        for update in updates:  # one SKU per call (limits.max_batch = 1)
            params: dict[str, Any] = {"item_id": update.platform_item_id,
                                      "quantity": update.quantity, "type": 0}  # 0: absolute
            if update.platform_sku_id:
                params["sku_id"] = update.platform_sku_id
            try:
                await self.client.api("youzan.item.quantity.update",
                                      self.facts.quantity_version, params)
                error: Exception | None = None
            except ConnectorError as exc:
                error = exc
            outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id, error))
        return outcomes

    # -- logistics -----------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        params: dict[str, Any] = {
            "tid": request.platform_order_id, "out_sid": request.tracking_number,
            "out_stype": self.carrier_table().to_platform(request.carrier), "is_no_express": 0,
        }
        if request.line_ids:
            params["oids"] = ",".join(request.line_ids)
        result = await self.client.api("youzan.logistics.online.confirm",
                                       self.facts.ship_version, params)
        if not (isinstance(result, Mapping) and result.get("is_success")):
            raise Rejected(f"youzan refused shipping trade {request.platform_order_id}")

    # -- push ----------------------------------------------------------------------------
    def verify_push(self, headers: Mapping[str, str], body: bytes) -> list[PushEvent]:
        given = {k.lower(): v for k, v in headers.items()}.get(PUSH_SIGN_HEADER.lower(), "")
        expected = push_sign(self.shop.app_key, body, self.shop.app_secret.reveal())
        if not given or not constant_time_equal(given, expected):
            raise SignatureInvalid("youzan push: Event-Sign does not verify")
        try:
            message = json.loads(body)
            payload = json.loads(unquote(str(message["msg"])))
            tid = str(payload["tid"])
            event_id = f"{message['id']}:{message.get('version', '')}:{message['type']}"
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse("youzan push: body does not parse", body=body) from exc
        return [PushEvent(event_id, PushKind.ORDER, str(message["type"]), tid)]

    # -- auth ----------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        data = await self.client.call(TOKEN_PATH, {
            "client_id": self.shop.app_key, "client_secret": self.shop.app_secret.reveal(),
            "authorize_type": "refresh_token", "refresh_token": current.refresh_token,
        }, authenticated=False)
        try:
            access = str(data["access_token"])
            expires = datetime.fromtimestamp(int(data["expires"]) / 1000,
                                             self.client.clock.now().tzinfo)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse("youzan token refresh: no access_token/expires") from exc
        return TokenSet(access_token=access,
                        refresh_token=str(data.get("refresh_token") or current.refresh_token),
                        expires_at=expires,
                        # "refresh_token 有效期 30 天" (F, secondary: the FAQ as mirrored)
                        refresh_expires_at=self.client.clock.now() + timedelta(days=30))
