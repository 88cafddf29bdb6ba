"""TaobaoConnector: the connector contract over TOP's trade, item and logistics APIs.

Orders are read by modified time with `taobao.trades.sold.increment.get`, whose results are
sorted by `modified` descending. Paging it forwards can skip trades: while page 1 is read,
a trade on it gets modified again and leaves the window, every later trade moves up one
place, and the one that crosses from page 2 to page 1 is never seen. Paging from the last
page backwards turns that shift into a duplicate on the next page read, which is harmless.
The list carries a subset of each trade, so every trade is re-read with fullinfo.

Push: TOP pushes through TMC, a binary WebSocket channel (or `taobao.tmc.messages.consume`
polling) whose messages carry no signature; there is no signed HTTP push to verify, so
PUSH_ORDERS is not offered and the periodic increment pull is the source of truth.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from connectors.taobao.client import TaobaoClient, field, unwrap_list
from connectors.taobao.mapping import (
    CARRIER_CODES,
    STATUS_TABLE,
    item_to_listings,
    sku_prices,
    trade_to_order,
)
from connectors.taobao.sandbox import TaobaoSandbox
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import BadResponse, ConnectorError, NotFound, Rejected
from core.http import HttpSession
from core.money import fen_to_yuan
from core.paging import page_count, read_backwards, split_window
from core.records import (
    Capability,
    ListingDraft,
    ListingPushResult,
    ListingRecord,
    OrderRecord,
    PriceUpdate,
    ShipRequest,
    StockUpdate,
    TokenSet,
    UnreadableOrder,
    UpdateOutcome,
)

TRADE_FIELDS = (
    "tid,status,type,created,pay_time,modified,consign_time,end_time,payment,total_fee,"
    "post_fee,discount_fee,buyer_message,seller_memo,receiver_name,receiver_mobile,"
    "receiver_phone,receiver_state,receiver_city,receiver_district,receiver_address,orders"
)
ITEM_FIELDS = "num_iid,title,outer_id,price,num,approve_status,modified,sku"  # `sku` -> skus
ITEM_PAGE_SIZE = 200  # items.onsale.get / items.inventory.get maximum
ITEM_BATCH = 20  # items.seller.list.get num_iids maximum
INVENTORY_MAX_PAGE = 101

T = TypeVar("T")
U = TypeVar("U", StockUpdate, PriceUpdate)


@dataclass(frozen=True, slots=True)
class TopAssumptions:
    """Choices the reference leaves unconfirmed, in one place. A shop overrides any of them
    with options["top_assumptions"] = {field: value}."""

    # legacy price APIs: item.price.update is gone from the current doc mirror, item.sku.update
    # locates the SKU by its `properties` string
    sku_price_api: str = "taobao.item.sku.update"
    item_price_api: str = "taobao.item.update"
    # warehouse listings to bind besides items on sale (for_shelved = scheduled + never
    # listed + delisted by the seller; sold_out is a separate banner)
    inventory_banners: tuple[str, ...] = ("for_shelved", "sold_out")
    # taobao.item.add required fields the canonical draft does not carry
    item_type: str = "fixed"
    stuff_status: str = "new"
    location_state: str = "浙江"
    location_city: str = "杭州"


class TaobaoConnector(Connector):
    platform = "taobao"
    title = "Taobao / Tmall (TOP)"
    capabilities = frozenset({
        Capability.LIST_LISTINGS, Capability.UPSERT_LISTING, Capability.SET_STOCK,
        Capability.SET_PRICE, Capability.SHELVE, Capability.PULL_ORDERS, Capability.GET_ORDER,
        Capability.SHIP, Capability.PARTIAL_SHIP, Capability.REFRESH_TOKEN,
    })
    limits = Limits(
        page_size=100,  # trades.sold.increment.get maximum
        max_window=timedelta(days=1),  # the API's limit; the doc recommends ≤ 30 min windows
        max_batch=20,  # taobao.skus.quantity.update SKUs per call
        requests_per_second=5.0,  # per-API QPS is not published: stay conservative
        burst=5,
        max_lookback=timedelta(days=90),
    )
    carriers: ClassVar[CarrierTable] = CarrierTable("taobao", CARRIER_CODES)
    status_table = STATUS_TABLE
    default_base_url = "https://eco.taobao.com"
    sandbox_class = TaobaoSandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.client = TaobaoClient(shop, http, rate=self.limits.requests_per_second,
                                   burst=self.limits.burst)
        self.assumptions = replace(TopAssumptions(), **shop.options.get("top_assumptions", {}))

    # -- orders --------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        seen: set[str] = set()
        for low, high in split_window(start, end, self.limits.max_window):
            async for tid in self._modified_tids(low, high):
                if tid not in seen:
                    seen.add(tid)
                    trade = await self._trade(tid)
                    try:
                        record: OrderRecord | UnreadableOrder = trade_to_order(trade)
                    except BadResponse as exc:
                        record = UnreadableOrder.of(tid, trade, exc)
                    yield record

    async def _modified_tids(self, start: datetime, end: datetime) -> AsyncIterator[str]:
        api = "taobao.trades.sold.increment.get"
        params = {"fields": "tid,modified", "start_modified": start, "end_modified": end,
                  "page_size": self.limits.page_size}

        async def fetch(page_no: int) -> tuple[int, list[dict[str, Any]]]:
            page = await self.client.call(api, {**params, "page_no": page_no})
            return int(page.get("total_results", 0)), list(unwrap_list(page, "trades", "trade"))

        async for trade in read_backwards(fetch, self.limits.page_size):
            yield str(field(trade, "tid"))

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        return trade_to_order(await self._trade(platform_order_id))

    async def _trade(self, platform_order_id: str) -> dict[str, Any]:
        result = await self.client.call("taobao.trade.fullinfo.get",
                                        {"fields": TRADE_FIELDS, "tid": platform_order_id})
        return dict(result.get("trade") or {})

    # -- listings ------------------------------------------------------------------------
    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        # list calls return a subset of each item: ids first, then details 20 at a time
        ids = [num_iid async for num_iid in self._item_ids()]
        for chunk in _chunks(ids, ITEM_BATCH):
            for item in await self._items(chunk):
                for listing in item_to_listings(item):
                    yield listing

    async def _item_ids(self) -> AsyncIterator[str]:
        seen: set[str] = set()
        sources: list[tuple[str, dict[str, str]]] = [("taobao.items.onsale.get", {})] + [
            ("taobao.items.inventory.get", {"banner": b}) for b in self.assumptions.inventory_banners]
        for api, extra in sources:
            page_no, pages = 1, 1
            while page_no <= pages:
                page = await self.client.call(api, {"fields": "num_iid", "page_no": page_no,
                                                    "page_size": ITEM_PAGE_SIZE, **extra})
                pages = page_count(int(page.get("total_results", 0)), ITEM_PAGE_SIZE)
                if api == "taobao.items.inventory.get":
                    pages = min(pages, INVENTORY_MAX_PAGE)
                for item in unwrap_list(page, "items", "item"):
                    num_iid = str(field(item, "num_iid"))
                    if num_iid not in seen:
                        seen.add(num_iid)
                        yield num_iid
                page_no += 1

    async def _items(self, num_iids: Sequence[str]) -> list[dict[str, Any]]:
        """Full items with SKUs; ids the seller does not own are silently left out."""
        found: list[dict[str, Any]] = []
        for chunk in _chunks(list(num_iids), ITEM_BATCH):
            result = await self.client.call("taobao.items.seller.list.get",
                                            {"fields": ITEM_FIELDS, "num_iids": chunk})
            found.extend(unwrap_list(result, "items", "item"))
        return found

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        outcomes: list[UpdateOutcome] = []
        for item_id, group in _by_item(updates).items():
            for_skus = [u for u in group if u.platform_sku_id]
            for chunk in _chunks(for_skus, self.limits.max_batch):
                quantities = ";".join(f"{u.platform_sku_id}:{u.quantity}" for u in chunk)
                outcomes += await self._apply(chunk, "taobao.skus.quantity.update", {
                    "num_iid": item_id, "skuid_quantities": quantities, "type": 1})
            for update in (u for u in group if not u.platform_sku_id):
                outcomes += await self._apply([update], "taobao.item.quantity.update", {
                    "num_iid": item_id, "quantity": update.quantity, "type": 1})
        return outcomes

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        """SKU prices go one SKU per call, located by its `properties`. The item price must
        stay inside the SKU price range, so it follows the cheapest SKU when it would not."""
        outcomes: list[UpdateOutcome] = []
        grouped = _by_item(updates)
        items = {str(field(i, "num_iid")): i for i in await self._items(list(grouped))}
        for item_id, group in grouped.items():
            item_price, skus = sku_prices(items[item_id]) if item_id in items else (0, {})
            prices = {sku_id: price for sku_id, (_, price) in skus.items()}
            for update in group:
                if item_id not in items or (update.platform_sku_id
                                            and update.platform_sku_id not in skus):
                    missing = NotFound(f"taobao item {item_id} / sku {update.platform_sku_id!r}")
                    outcomes.append(UpdateOutcome(item_id, update.platform_sku_id, missing))
                    continue
                if not update.platform_sku_id:
                    outcomes += await self._apply([update], self.assumptions.item_price_api, {
                        "num_iid": item_id, "price": fen_to_yuan(update.price_fen)})
                    continue
                params = {"num_iid": item_id, "price": fen_to_yuan(update.price_fen),
                          "properties": skus[update.platform_sku_id][0]}
                prices[update.platform_sku_id] = update.price_fen
                if not min(prices.values()) <= item_price <= max(prices.values()):
                    item_price = min(prices.values())
                    params["item_price"] = fen_to_yuan(item_price)
                outcomes += await self._apply([update], self.assumptions.sku_price_api, params)
        return outcomes

    async def _apply(self, updates: Sequence[StockUpdate | PriceUpdate], api: str,
                     params: Mapping[str, Any]) -> list[UpdateOutcome]:
        """One write call; its failure belongs to every SKU it carried."""
        try:
            await self.client.call(api, params)
            error: Exception | None = None
        except ConnectorError as exc:
            error = exc
        return [UpdateOutcome(u.platform_item_id, u.platform_sku_id, error) for u in updates]

    async def set_on_sale(self, platform_item_id: str, on_sale: bool) -> None:
        if not on_sale:
            await self.client.call("taobao.item.update.delisting", {"num_iid": platform_item_id})
            return
        # `num` is required; for an item without SKUs it also sets its stock, so send what
        # the platform holds now
        listings = [r for i in await self._items([platform_item_id]) for r in item_to_listings(i)]
        if not listings:
            raise NotFound(f"taobao item {platform_item_id} not found")
        await self.client.call("taobao.item.update.listing", {
            "num_iid": platform_item_id, "num": sum(r.quantity for r in listings)})

    async def upsert_listing(self, draft: ListingDraft) -> ListingPushResult:
        params = self._item_params(draft)
        if draft.platform_item_id is None:
            result = await self.client.call("taobao.item.add",
                                            {**params, "type": self.assumptions.item_type})
            item_id = str(field(result, "item", "num_iid"))  # item.add answers num_iid, created
        else:
            item_id = draft.platform_item_id
            await self.client.call("taobao.item.update", {"num_iid": item_id, **params})
        listings = [r for item in await self._items([item_id]) for r in item_to_listings(item)]
        return ListingPushResult(item_id, {r.merchant_code: r.platform_sku_id for r in listings})

    def _item_params(self, draft: ListingDraft) -> dict[str, Any]:
        """taobao.item.add / item.update fields. Taobao names properties by category ids, so
        `draft.attributes` and each SKU's `spec` must hold pid -> vid (itemprops ids)."""
        # `props` must also hold every SKU's sale property values
        props = dict.fromkeys([*draft.attributes.items(),
                               *(pair for sku in draft.skus for pair in sku.spec.items())])
        unmapped = [f"{k}:{v}" for k, v in props if not (k.isdigit() and v.isdigit())]
        if unmapped:
            raise Rejected(f"taobao needs category property ids (pid:vid), got {unmapped}",
                           reason="unmapped_properties")
        with_skus = [s for s in draft.skus if s.spec]
        params: dict[str, Any] = {
            "title": draft.title, "desc": draft.description or draft.title,
            "cid": draft.category_id, "price": fen_to_yuan(draft.price_fen),
            "num": sum(s.quantity for s in draft.skus), "outer_id": draft.merchant_code,
            "stuff_status": self.assumptions.stuff_status,
            "location.state": self.assumptions.location_state,
            "location.city": self.assumptions.location_city,
            "props": ";".join(f"{k}:{v}" for k, v in props) or None,
        }
        if with_skus:
            params.update({
                "sku_properties": ",".join(_properties(s.spec) for s in with_skus),
                "sku_quantities": ",".join(str(s.quantity) for s in with_skus),
                "sku_prices": ",".join(fen_to_yuan(s.price_fen) for s in with_skus),
                "sku_outer_ids": ",".join(s.merchant_code for s in with_skus),
            })
        return params

    # -- logistics -----------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        params: dict[str, Any] = {
            "tid": request.platform_order_id, "out_sid": request.tracking_number,
            "company_code": self.carrier_table().to_platform(request.carrier),
        }
        if request.line_ids:
            params.update(is_split=1, sub_tid=list(request.line_ids))
        result = await self.client.call("taobao.logistics.offline.send", params)
        if not (result.get("shipping") or {}).get("is_success"):
            raise Rejected(f"taobao refused shipping trade {request.platform_order_id}")

    # -- auth ----------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        """Only service-market apps can refresh; others get AuthExpired (re-authorise)."""
        result = await self.client.call("taobao.top.auth.token.refresh",
                                        {"refresh_token": current.refresh_token},
                                        authenticated=False)
        try:
            token = json.loads(result["token_result"])
            access = str(token["access_token"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse("taobao token refresh: no access_token in token_result") from exc
        now = self.client.clock.now()
        return TokenSet(
            access_token=access,
            refresh_token=token.get("refresh_token") or current.refresh_token,
            expires_at=_after(now, token.get("expires_in")),
            refresh_expires_at=_after(now, token.get("re_expires_in")),
        )


def _properties(spec: Mapping[str, str]) -> str:
    return ";".join(f"{k}:{v}" for k, v in spec.items())


def _after(now: datetime, seconds: Any) -> datetime | None:
    return now + timedelta(seconds=int(seconds)) if seconds else None


def _chunks(values: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    return (values[i:i + size] for i in range(0, len(values), size))


def _by_item(updates: Iterable[U]) -> dict[str, list[U]]:
    grouped: dict[str, list[U]] = {}
    for update in updates:
        grouped.setdefault(update.platform_item_id, []).append(update)
    return grouped
