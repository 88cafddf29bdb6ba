"""The Dewu connector: what a seller controls on a bidding/consignment marketplace.

- A listing is the seller's bid (出价) on a platform SKU: (spu_id, sku_id) with the bid's price
  and remaining quantity. `upsert_listing` places or updates bids on SKUs that Dewu already
  has (found by 货号 + spec); creating SPUs is not the seller's business.
- Absolute stock is the bid quantity. A bid's number changes on every update, so the connector
  never stores it: it asks `generic_realtime_qty` for the live bid of a SKU at call time. A
  quantity cannot be set to 0 on Dewu: zero cancels the bid.
- Orders have one SKU each. Shipping means handing the goods to Dewu's inspection warehouse
  (`order/delivery`, status 2000 → 2010), or for brand-direct orders shipping to the buyer.

Every path, field name and limit the public material leaves open lives in `DewuApiSpec`
(client.py), overridable per shop with `shop.options["dewu_api"]`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from connectors.dewu.client import DewuClient, decrypt_push
from connectors.dewu.mapping import (
    BRAND_CARRIERS,
    STATUS_TABLE,
    WAREHOUSE_CARRIERS,
    DewuBid,
    bid_from_json,
    listing_from_bid,
    order_from_json,
    order_type,
)
from connectors.dewu.sandbox import DewuSandbox
from core.clock import format_beijing
from core.connector import CarrierTable, Connector, Limits, ShopContext
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    NotFound,
    RateLimited,
    Rejected,
    SignatureInvalid,
    Transient,
)
from core.http import HttpSession
from core.paging import split_window
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

_BATCH_STOPPERS = (AuthExpired, RateLimited, Transient)
PUSH_KINDS: Mapping[str, PushKind] = {
    "ORDER_CREATED": PushKind.ORDER,
    "ORDER_QUALITY_BAD": PushKind.REFUND,   # 质检不通过
    "REFUND_ORDER": PushKind.REFUND,        # order cancelled
    "ORDER_BUYER_CANCEL": PushKind.REFUND,  # buyer return
    "SELLER_CANCEL_RESULT": PushKind.OTHER,  # bid closed
}


class DewuConnector(Connector):
    platform: ClassVar[str] = "dewu"
    title: ClassVar[str] = "得物"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LIST_LISTINGS, Capability.UPSERT_LISTING, Capability.SET_STOCK,
        Capability.SET_PRICE, Capability.PULL_ORDERS, Capability.GET_ORDER,
        Capability.PUSH_ORDERS, Capability.SHIP, Capability.REFRESH_TOKEN,
    })
    # window, page size and rate are UNCONFIRMED (see DewuApiSpec); stock is one call per bid
    limits: ClassVar[Limits] = Limits(page_size=30, max_window=timedelta(hours=1),
                                      max_batch=50, requests_per_second=5, burst=2)
    # Dewu's own carrier codes (express_type / logistics_code) for every domestic carrier: what
    # brand-direct orders take and how the platform names the carrier of any shipment. The
    # warehouse flow (order/delivery) takes only SF/JD/DBL, numbered 0/1/2 (mapping's
    # WAREHOUSE_CARRIERS, shop.options["warehouse_carriers"]); ship() translates, and refuses
    # the others for warehouse orders with Rejected(reason="bad_carrier").
    carriers: ClassVar[CarrierTable] = CarrierTable("dewu", BRAND_CARRIERS)
    status_table: ClassVar[Mapping[str, OrderStatus]] = STATUS_TABLE
    default_base_url: ClassVar[str] = "https://openapi.dewu.com"
    sandbox_class = DewuSandbox

    def __init__(self, shop: ShopContext, http: HttpSession) -> None:
        super().__init__(shop, http)
        self.client = DewuClient(shop, http, rate=self.limits.requests_per_second,
                                 burst=self.limits.burst)
        self.spec = self.client.spec

    # -- bids ----------------------------------------------------------------------------
    async def _live_bid(self, sku_id: str) -> Mapping[str, Any] | None:
        rows = await self.client.call(self.spec.realtime_qty_path, {
            "sku_id": int(sku_id), "bidding_types": [self.spec.bidding_type],
            "sell_out_flag": 1})
        live = [r for r in rows or () if int(r.get("status", 0)) != 10]
        return live[0] if live else None

    async def iter_listings(self) -> AsyncIterator[ListingRecord]:
        async for bid in self._bids():
            yield listing_from_bid(bid)

    async def _bids(self) -> AsyncIterator[DewuBid]:
        page_no = 1
        while True:
            data = await self.client.call(self.spec.bid_list_path, {
                "page_no": page_no, "page_size": self.limits.page_size})
            rows = (data or {}).get("list") or []
            for row in rows:
                yield bid_from_json(row)
            if not rows or page_no * self.limits.page_size >= int((data or {}).get("total_results") or 0):
                return
            page_no += 1

    async def upsert_listing(self, draft: ListingDraft) -> ListingPushResult:
        """Bid on each draft SKU. The SPU is found by 货号 (`attributes["article_number"]`,
        else the draft's merchant code); a draft SKU matches the platform SKU whose
        properties contain its spec (e.g. {"尺码": "42"}) or whose barcode is its code."""
        article = str(draft.attributes.get("article_number") or draft.merchant_code)
        spus = await self.client.call(self.spec.spu_by_article_path, {"article_numbers": [article]})
        spu = next((s for s in spus or () if s.get("article_number") == article), None)
        if spu is None:
            raise Rejected(f"dewu: no SPU with article number {article!r}; Dewu owns the "
                           "catalogue, ask the platform to list it first", reason="unknown_spu")
        sku_ids: dict[str, str] = {}
        for draft_sku in draft.skus:
            sku_id = _match_sku(spu.get("skus") or (), draft_sku)
            if sku_id is None:
                raise Rejected(f"dewu: SPU {article} has no SKU for {dict(draft_sku.spec)}",
                               reason="unknown_sku")
            await self._bid(sku_id, draft_sku.price_fen, draft_sku.quantity)
            sku_ids[draft_sku.merchant_code] = sku_id
        return ListingPushResult(str(spu.get("spu_id")), sku_ids)

    async def _bid(self, sku_id: str, price_fen: int, quantity: int) -> None:
        live = await self._live_bid(sku_id)
        s = self.spec
        if live is None:
            if quantity > 0:
                await self.client.call(s.bid_create_path, {
                    "sku_id": int(sku_id), s.bid_price_field: price_fen, s.bid_qty_field: quantity})
        elif quantity == 0:
            await self.client.call(s.bid_cancel_path, {"bidding_no": live["bidding_no"]})
        else:
            await self.client.call(s.bid_update_path, {
                "bidding_no": live["bidding_no"], s.bid_price_field: price_fen,
                s.bid_qty_field: quantity, s.bid_old_qty_field: int(live.get("realtime_qty") or 0)})

    async def _per_sku(self, updates: Sequence[Any],
                       action: Callable[[Any], Awaitable[None]]) -> list[UpdateOutcome]:
        outcomes = []
        for update in updates:
            try:
                await action(update)
            except _BATCH_STOPPERS:
                raise
            except ConnectorError as exc:
                outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id, exc))
            else:
                outcomes.append(UpdateOutcome(update.platform_item_id, update.platform_sku_id))
        return outcomes

    async def set_stock(self, updates: Sequence[StockUpdate]) -> list[UpdateOutcome]:
        async def publish(update: StockUpdate) -> None:
            live = await self._live_bid(update.platform_sku_id)
            if update.quantity == 0:
                if live is not None and int(live.get("realtime_qty") or 0) > 0:
                    await self.client.call(self.spec.bid_cancel_path,
                                           {"bidding_no": live["bidding_no"]})
                return
            if live is None:
                raise Rejected(f"dewu SKU {update.platform_sku_id}: no live bid to put stock on; "
                               "place one with upsert_listing", reason="no_bid")
            await self.client.call(self.spec.stock_update_path, {
                "bidding_no": live["bidding_no"], self.spec.stock_qty_field: update.quantity})

        return await self._per_sku(updates, publish)

    async def set_price(self, updates: Sequence[PriceUpdate]) -> list[UpdateOutcome]:
        async def reprice(update: PriceUpdate) -> None:
            live = await self._live_bid(update.platform_sku_id)
            if live is None:
                raise Rejected(f"dewu SKU {update.platform_sku_id}: no live bid to reprice",
                               reason="no_bid")
            qty = int(live.get("realtime_qty") or 0)
            s = self.spec
            await self.client.call(s.bid_update_path, {
                "bidding_no": live["bidding_no"], s.bid_price_field: update.price_fen,
                s.bid_qty_field: qty, s.bid_old_qty_field: qty})

        return await self._per_sku(updates, reprice)

    # -- orders --------------------------------------------------------------------------
    async def iter_orders(self, start: datetime, end: datetime,
                          ) -> AsyncIterator[OrderRecord | UnreadableOrder]:
        # the API speaks whole seconds and includes both bounds: widen the end to a second
        if end.microsecond:
            end += timedelta(microseconds=1_000_000 - end.microsecond)
        seen: set[tuple[str, str]] = set()
        window = timedelta(seconds=self.spec.order_window_seconds)
        for window_start, window_end in split_window(start, end, window):
            page_no = 1
            while True:
                data = await self.client.call(self.spec.order_increment_path, {
                    "start_modified": format_beijing(window_start),
                    "end_modified": format_beijing(window_end),
                    "page_no": page_no, "page_size": self.spec.order_page_size})
                rows = (data or {}).get("orders") or []
                for row in rows:
                    key = (str(row.get("order_no")), str(row.get("modify_time")))
                    if key not in seen:
                        seen.add(key)
                        yield mapped_or_unreadable(row, self._order, "order_no")
                total = int((data or {}).get("total_results") or 0)
                if not rows or page_no * self.spec.order_page_size >= total:
                    break
                page_no += 1

    async def _order_row(self, platform_order_id: str) -> Mapping[str, Any]:
        data = await self.client.call(self.spec.order_detail_path, {"order_no": platform_order_id})
        orders = (data or {}).get("orders") or []
        if not orders:
            raise NotFound(f"dewu order {platform_order_id} not found")
        row = orders[0]
        if not isinstance(row, dict):
            raise BadResponse(f"dewu order {platform_order_id}: not an object")
        return row

    def _order(self, row: Mapping[str, Any]) -> OrderRecord:
        return order_from_json(row, self.spec)

    async def get_order(self, platform_order_id: str) -> OrderRecord:
        return self._order(await self._order_row(platform_order_id))

    # -- logistics -----------------------------------------------------------------------
    async def ship(self, request: ShipRequest) -> None:
        """One line per order, so `line_ids` can only name the whole order. The order's type
        picks the call and the carrier codes it takes (see `carriers`)."""
        row = await self._order_row(request.platform_order_id)
        if order_type(row) in self.spec.brand_deliver_order_types:
            await self.client.call(self.spec.brand_deliver_path, {
                "order_no": request.platform_order_id,
                "express_type": self.carrier_table().to_platform(request.carrier),
                "express_no": request.tracking_number})
            return
        codes = {**WAREHOUSE_CARRIERS, **(self.shop.options.get("warehouse_carriers") or {})}
        if request.carrier not in codes:
            raise Rejected(f"dewu: {request.carrier} cannot deliver to the inspection warehouse "
                           f"(accepted: {', '.join(sorted(codes))})", reason="bad_carrier")
        await self.client.call(self.spec.deliver_path, {
            "order_no": request.platform_order_id, "dispatch_num": request.tracking_number,
            "carrier": int(codes[request.carrier])})

    # -- pushes --------------------------------------------------------------------------
    def verify_push(self, headers: Mapping[str, str], body: bytes) -> list[PushEvent]:
        """No signature header exists: a push is authentic when its `msg` decrypts with our
        secret (AES-128-ECB) into JSON. `type` travels in the clear and is not covered."""
        try:
            envelope = json.loads(body)
            message = envelope["msg"]
            kind = str(envelope["type"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SignatureInvalid("dewu push: not a {msg, type} body") from exc
        try:
            plain = json.loads(decrypt_push(str(message), self.shop.app_secret.reveal()))
        except ValueError as exc:
            raise SignatureInvalid("dewu push: msg does not decrypt with this app's secret") from exc
        if not isinstance(plain, dict):
            raise SignatureInvalid("dewu push: decrypted msg is not an object")
        order_no = str(plain.get("orderNo") or "") or None
        event_id = str(envelope.get("uuid") or f"{kind}:{order_no or plain.get('sellerBiddingNo')}")
        return [PushEvent(event_id=event_id, kind=PUSH_KINDS.get(kind, PushKind.OTHER),
                          topic=kind, platform_order_id=order_no)]

    def push_ack(self, events: Sequence[PushEvent]) -> PushAck:
        uuid = events[0].event_id if events else ""
        return PushAck(200, json.dumps({"msg": "SUCCESS", "code": 200, "data": uuid}).encode())

    # -- auth ----------------------------------------------------------------------------
    async def refresh_token(self, current: TokenSet) -> TokenSet:
        data = await self.client.call(self.spec.refresh_path,
                                      {"refresh_token": current.refresh_token},
                                      authenticated=False)
        now = self.http.clock.now()
        try:
            tokens = TokenSet(
                access_token=str(data["access_token"]),
                refresh_token=str(data["refresh_token"]),
                expires_at=now + timedelta(seconds=int(data["access_token_expires_in"])),
                refresh_expires_at=(now + timedelta(seconds=int(data["refresh_token_expires_in"]))
                                    if data.get("refresh_token_expires_in") else None))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse("dewu refresh_token: no tokens in the answer") from exc
        register_secret(tokens.access_token)
        register_secret(tokens.refresh_token)
        return tokens


def _match_sku(skus: Sequence[Mapping[str, Any]], draft_sku: DraftSku) -> str | None:
    for sku in skus:
        try:
            properties = json.loads(sku.get("properties") or "{}")
        except ValueError:
            properties = {}
        spec_matches = bool(draft_sku.spec) and all(
            properties.get(k) == v for k, v in draft_sku.spec.items())
        if spec_matches or (sku.get("barcode") and sku.get("barcode") == draft_sku.merchant_code):
            return str(sku.get("sku_id"))
    return None
