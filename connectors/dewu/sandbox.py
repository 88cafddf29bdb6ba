"""A faithful simulator of Dewu's DOP gateway for one seller.

The shared state reads the Dewu way: an item is a platform SPU (outer id = 货号), its SKUs are
the platform's; a SKU's `quantity`/`price_fen` are the seller's live bid on it (its remaining
quantity and price). Bids live in `bids` keyed by `bidding_no`; an update closes the old bid
and opens a new number, a cancel of a closed bid answers 20900020, a quantity can never be set
to 0 (cancel instead). Orders have one SKU line, link to the bid that sold, and move through
`order_status` 2000 → 2010 (seller shipped to the inspection warehouse) → 3000 … → 4000, or
8010 with a `close_type`. Calls are checked like the gateway does: per-path verb (405), app key
and MD5 sign (401/403), timestamp skew, access_token (5044), page sizes and windows. Paths,
field names and the unconfirmed limits come from the same `DewuApiSpec` the client reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connectors.dewu.client import OAUTH_PREFIX, DewuApiSpec, dewu_sign, encrypt_push
from connectors.dewu.mapping import BRAND_CARRIERS, WAREHOUSE_CARRIERS
from core.clock import Clock, format_beijing, parse_beijing
from core.sandbox import (
    Fault,
    PushDelivery,
    Sandbox,
    SandboxItem,
    SandboxOrder,
    SandboxRequest,
    SandboxResponse,
    SandboxSku,
    SoldOut,
)
from core.signing import constant_time_equal

ACCESS_TOKEN_SECONDS = 86_400  # what the gateway is observed to return
REFRESH_TOKEN_SECONDS = 30 * 86_400  # unconfirmed
BID_CANCELLED_CODE = 20900020
MAX_ARTICLE_NUMBERS = 5
# Where warehouse-bound orders go in this sandbox: Dewu's inspection warehouse (made-up data in
# the shape of `delivery_address_platform`).
INSPECTION_WAREHOUSE = {"name": "得物鉴别中心（沙箱）", "mobile": "400-000-0000",
                        "province": "上海市", "city": "上海市", "district": "杨浦区",
                        "address_detail": "沙箱路 1 号 鉴别仓收货口", "postcode": "200000"}
# order/delivery's numeric `carrier` -> the platform's own carrier code (the express_type /
# logistics_code vocabulary): the platform registers which carrier has the parcel, however
# the call numbered it.
WAREHOUSE_CARRIER_CODES = {number: BRAND_CARRIERS[canonical]
                           for canonical, number in WAREHOUSE_CARRIERS.items()}
STATE_STATUS = {"unpaid": (1200, 0), "paid": (2000, 0), "shipped": (2010, 0),
                "completed": (4000, 0), "cancelled": (7000, 10)}
PUSH_TYPES = {"paid": "ORDER_CREATED", "cancelled": "REFUND_ORDER", "refunded": "REFUND_ORDER"}


class _Refusal(Exception):
    def __init__(self, code: int, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class SandboxBid:
    bidding_no: str
    sku_id: str
    spu_id: str
    bidding_type: int
    created: datetime
    qty_sold: int = 0
    closed: bool = False


@dataclass
class _OrderExtra:
    order_type: int
    bidding_no: str
    inspection_status: int | None = None  # 3000…3040 once the warehouse has it


class DewuSandbox(Sandbox):
    platform = "dewu"
    max_lines_per_order = 1
    item_id_base = 1_000_000
    sku_id_base = 400_000_000
    order_id_base = 110_000_000_000_000

    def __init__(self, *, app_key: str = "sandbox-app", app_secret: str = "sandbox-secret-0001",
                 access_token: str = "sandbox-access-token-1",
                 refresh_token: str = "sandbox-refresh-token-1",
                 clock: Clock | None = None, seed: int = 0, timeout_seconds: float = 30.0,
                 spec: DewuApiSpec | None = None) -> None:
        super().__init__(app_key=app_key, app_secret=app_secret, access_token=access_token,
                         refresh_token=refresh_token, clock=clock, seed=seed,
                         timeout_seconds=timeout_seconds)
        self.spec = spec or DewuApiSpec()
        now = self.clock.now()
        self.token_expiry: dict[str, datetime] = {
            access_token: now + timedelta(seconds=ACCESS_TOKEN_SECONDS)}
        self.bids: dict[str, SandboxBid] = {}
        self.order_extra: dict[str, _OrderExtra] = {}
        self._traces = 0
        s = self.spec
        self._routes: dict[str, Callable[[dict[str, Any]], Any]] = {
            s.order_increment_path: self._order_increment,
            s.order_detail_path: self._order_detail,
            s.deliver_path: self._deliver_to_warehouse,
            s.brand_deliver_path: self._deliver_to_buyer,
            s.realtime_qty_path: self._realtime_qty,
            s.stock_update_path: self._stock_update,
            s.bid_create_path: self._bid_create,
            s.bid_update_path: self._bid_update,
            s.bid_cancel_path: self._bid_cancel,
            s.bid_list_path: self._bid_list,
            s.bid_detail_path: self._bid_detail,
            s.spu_by_article_path: self._spu_by_article,
        }

    # -- operator API ------------------------------------------------------------------------
    def add_item(self, title: str, outer_id: str, price_fen: int, *,
                 skus: Sequence[tuple[str, int, int]] = (), quantity: int = 0,
                 on_sale: bool = True, category_id: str = "29",
                 spec_name: str = "尺码") -> SandboxItem:
        """A platform SPU (outer_id = 货号); each SKU seeded with quantity > 0 carries a live
        normal bid of the seller at that price."""
        item = super().add_item(title, outer_id, price_fen, skus=skus, quantity=quantity,
                                on_sale=on_sale, category_id=category_id, spec_name=spec_name)
        for sku in item.skus:
            if sku.quantity > 0:
                self._open_bid(item, sku, self.spec.bidding_type)
        return item

    def place_order(self, lines: Sequence[tuple[str, int]], *, paid: bool = True,
                    buyer_remark: str = "", post_fee_fen: int = 0,
                    address: Mapping[str, str] | None = None,
                    order_type: int = 0) -> SandboxOrder:
        """A buyer takes one SKU from the seller's live bid (Dewu orders have one line)."""
        if len(lines) != 1:
            return super().place_order(lines)  # refused by the base: one line per order
        item, sku = self.find_sku(lines[0][0])
        bid = self.live_bid(sku.sku_id) if sku else None
        if bid is None:
            raise SoldOut(f"{item.title}: no live bid")
        order = super().place_order(lines, paid=paid, buyer_remark=buyer_remark,
                                    post_fee_fen=post_fee_fen, address=address)
        bid.qty_sold += lines[0][1]
        self.order_extra[order.order_id] = _OrderExtra(order_type, bid.bidding_no)
        return order

    def cancel(self, order_id: str) -> None:
        order = self.orders[order_id]
        open_qty = sum(line.quantity for line in order.lines if line.state == "open")
        super().cancel(order_id)
        bid = self.bids.get(self.order_extra[order_id].bidding_no)
        if bid is not None:
            bid.qty_sold -= open_qty  # the quantity goes back on the bid

    def inspect(self, order_id: str, status: int = 3000) -> None:
        """The inspection warehouse moves a delivered order on (3000 received … 3040)."""
        if status not in (3000, 3010, 3020, 3030, 3040):
            raise ValueError(f"not an inspection status: {status}")
        self.order_extra[order_id].inspection_status = status
        order = self.orders[order_id]
        order.modified = self.clock.now()
        order.version += 1

    def live_bid(self, sku_id: str, bidding_type: int | None = None) -> SandboxBid | None:
        wanted = self.spec.bidding_type if bidding_type is None else bidding_type
        return next((b for b in self.bids.values()
                     if b.sku_id == sku_id and not b.closed and b.bidding_type == wanted), None)

    # -- ids -----------------------------------------------------------------------------------
    def new_bidding_no(self) -> str:
        return f"{self.clock.now().strftime('%Y%m%d')}{next(self._ids):010d}"

    def _trace_id(self) -> str:
        self._traces += 1
        return f"0aee{self._traces:028x}"

    # -- bids ----------------------------------------------------------------------------------
    def _sku(self, sku_id: Any) -> tuple[SandboxItem, SandboxSku]:
        for item in self.items.values():
            for sku in item.skus:
                if sku.sku_id == str(sku_id):
                    return item, sku
        raise _Refusal(int(self.spec.business_error_code), f"sku_id {sku_id} 不存在")

    def _open_bid(self, item: SandboxItem, sku: SandboxSku, bidding_type: int) -> SandboxBid:
        bid = SandboxBid(self.new_bidding_no(), sku.sku_id, item.item_id, bidding_type,
                         self.clock.now())
        self.bids[bid.bidding_no] = bid
        return bid

    def _bid_status(self, bid: SandboxBid) -> int:
        if bid.closed:
            return 10
        _, sku = self._sku(bid.sku_id)
        return 1 if sku.quantity > 0 else 20

    def _bid_json(self, bid: SandboxBid) -> dict[str, Any]:
        item, sku = self._sku(bid.sku_id)
        remain = 0 if bid.closed else sku.quantity
        return {"bidding_no": bid.bidding_no, "bidding_type": bid.bidding_type,
                "sku_id": int(bid.sku_id), "spu_id": int(bid.spu_id),
                "article_number": item.outer_id, "title": item.title, "price": sku.price_fen,
                "qty": remain + bid.qty_sold, "qty_sold": bid.qty_sold, "qty_remain": remain,
                "status": self._bid_status(bid), "bidding_time": format_beijing(bid.created),
                "campus_list": []}

    def _live(self, bidding_no: Any) -> SandboxBid:
        bid = self.bids.get(str(bidding_no))
        if bid is None:
            raise _Refusal(int(self.spec.business_error_code), f"出价编号{bidding_no}不存在")
        if bid.closed:
            raise _Refusal(BID_CANCELLED_CODE, "出价已取消，请不要重复操作")
        return bid

    def _positive(self, params: Mapping[str, Any], key: str) -> int:
        value = self._int(params, key)
        if value <= 0:
            raise _Refusal(int(self.spec.business_error_code), f"{key}必须大于0")
        return value

    def _bid_create(self, params: dict[str, Any]) -> Any:
        item, sku = self._sku(self._required(params, "sku_id"))
        price = self._positive(params, self.spec.bid_price_field)
        qty = self._positive(params, self.spec.bid_qty_field)
        if self.live_bid(sku.sku_id) is not None:
            raise _Refusal(int(self.spec.business_error_code), "该SKU已有出价，请修改出价")
        bid = self._open_bid(item, sku, self.spec.bidding_type)
        sku.price_fen, sku.quantity = price, qty
        item.modified = self.clock.now()
        return {"bidding_no": bid.bidding_no}

    def _bid_update(self, params: dict[str, Any]) -> Any:
        old = self._live(self._required(params, "bidding_no"))
        price = self._positive(params, self.spec.bid_price_field)
        qty = self._positive(params, self.spec.bid_qty_field)
        item, sku = self._sku(old.sku_id)
        if self._int(params, self.spec.bid_old_qty_field) != sku.quantity:
            raise _Refusal(int(self.spec.business_error_code), "出价库存已变化，请刷新后重试")
        old.closed = True  # an update replaces the bid: the new number is the one to keep
        bid = self._open_bid(item, sku, old.bidding_type)
        sku.price_fen, sku.quantity = price, qty
        item.modified = self.clock.now()
        return {"bidding_no": bid.bidding_no}

    def _bid_cancel(self, params: dict[str, Any]) -> Any:
        bid = self._live(self._required(params, "bidding_no"))
        item, sku = self._sku(bid.sku_id)
        cancelled, sku.quantity = sku.quantity, 0
        bid.closed = True
        item.modified = self.clock.now()
        return {"qty": cancelled + bid.qty_sold, "qty_cancel": cancelled}

    def _stock_update(self, params: dict[str, Any]) -> Any:
        bid = self._live(self._required(params, "bidding_no"))
        qty = self._positive(params, self.spec.stock_qty_field)  # 0 is refused: cancel instead
        item, sku = self._sku(bid.sku_id)
        sku.quantity = qty
        item.modified = self.clock.now()
        return {"bidding_no": bid.bidding_no}

    def _realtime_qty(self, params: dict[str, Any]) -> Any:
        _, sku = self._sku(self._required(params, "sku_id"))
        types = params.get("bidding_types")
        if isinstance(types, str):
            types = json.loads(types) if types.startswith("[") else types.split(",")
        wanted = {int(t) for t in types} if types else None
        with_sold_out = self._int(params, "sell_out_flag", 0) == 1
        rows = []
        for bid in self.bids.values():
            status = self._bid_status(bid)
            if (bid.sku_id != sku.sku_id or bid.closed or (wanted and bid.bidding_type not in wanted)
                    or (status == 20 and not with_sold_out)):
                continue
            locked = sum(line.quantity for o in self.orders.values()
                         if self.order_extra[o.order_id].bidding_no == bid.bidding_no
                         and o.state == "paid" for line in o.lines)
            rows.append({"bidding_no": bid.bidding_no, "bidding_type": bid.bidding_type,
                         "sku_id": int(bid.sku_id), "realtime_qty": sku.quantity,
                         "use_quantity": locked, "status": status, "price": sku.price_fen,
                         "campus_list": []})
        return rows

    def _bid_list(self, params: dict[str, Any]) -> Any:
        page_no, page_size = self._page(params)
        live = sorted((b for b in self.bids.values() if not b.closed),
                      key=lambda b: (b.created, b.bidding_no))
        page = live[(page_no - 1) * page_size: page_no * page_size]
        return {"total_results": len(live), "page_no": page_no, "page_size": page_size,
                "list": [self._bid_json(b) for b in page]}

    def _bid_detail(self, params: dict[str, Any]) -> Any:
        bid = self.bids.get(str(self._required(params, "bidding_no")))
        if bid is None:
            raise _Refusal(int(self.spec.business_error_code), "出价编号不存在")
        return self._bid_json(bid)

    def _spu_by_article(self, params: dict[str, Any]) -> Any:
        numbers = self._required(params, "article_numbers")
        if not isinstance(numbers, list) or len(numbers) > MAX_ARTICLE_NUMBERS:
            raise _Refusal(int(self.spec.business_error_code), "article_numbers最多5个")
        return [{
            "spu_id": int(item.item_id), "title": item.title, "article_number": item.outer_id,
            "other_numbers": "", "brand_id": 10444, "brand_name": "沙箱品牌",
            "category_id": int(item.category_id), "category_name": "运动鞋",
            "spu_logo": "", "auth_price": item.price_fen, "status": 1 if item.on_sale else 0,
            "has_auth": True,
            "skus": [{"sku_id": int(s.sku_id),
                      "properties": json.dumps(s.spec, ensure_ascii=False, separators=(",", ":")),
                      "barcode": s.outer_id, "extra_code": ""} for s in item.skus],
        } for item in self.items.values() if item.outer_id in numbers]

    # -- orders --------------------------------------------------------------------------------
    def _page(self, params: Mapping[str, Any]) -> tuple[int, int]:
        page_no = self._int(params, "page_no", 1)
        page_size = self._int(params, "page_size", self.spec.order_page_size)
        if page_no < 1 or not 1 <= page_size <= self.spec.max_page_size:
            raise _Refusal(int(self.spec.business_error_code),
                           f"page_size不能超过{self.spec.max_page_size}")
        return page_no, page_size

    def _order_increment(self, params: dict[str, Any]) -> Any:
        try:
            start = parse_beijing(str(self._required(params, "start_modified")))
            end = parse_beijing(str(self._required(params, "end_modified")))
        except ValueError:
            raise _Refusal(int(self.spec.business_error_code),
                           "时间格式应为yyyy-MM-dd HH:mm:ss") from None
        if end < start or (end - start).total_seconds() > self.spec.order_window_seconds:
            raise _Refusal(int(self.spec.business_error_code),
                           f"查询时间跨度不能超过{self.spec.order_window_seconds}秒")
        page_no, page_size = self._page(params)

        def modified(order: SandboxOrder) -> datetime:
            return parse_beijing(format_beijing(order.modified))  # the API speaks whole seconds

        chosen = sorted((o for o in self.orders.values() if start <= modified(o) <= end),
                        key=lambda o: (o.modified, o.order_id))
        page = chosen[(page_no - 1) * page_size: page_no * page_size]
        return {"total_results": len(chosen), "page_no": page_no, "page_size": page_size,
                "orders": [self._order_json(o) for o in page]}

    def _order_detail(self, params: dict[str, Any]) -> Any:
        order = self.orders.get(str(self._required(params, "order_no")))
        return {"total_results": 1 if order else 0,
                "orders": [self._order_json(order)] if order else []}

    def _shippable(self, params: Mapping[str, Any], brand: bool) -> SandboxOrder:
        order = self.orders.get(str(self._required(params, "order_no")))
        code = int(self.spec.business_error_code)
        if order is None:
            raise _Refusal(code, "订单不存在")
        is_brand = self.order_extra[order.order_id].order_type in self.spec.brand_deliver_order_types
        if is_brand != brand:
            raise _Refusal(code, "订单类型与发货接口不匹配" + ("，请使用品牌直发发货" if is_brand else ""))
        if order.state in ("shipped", "completed"):
            raise _Refusal(code, "订单已发货，请勿重复发货")
        if order.state != "paid":
            raise _Refusal(code, "订单当前状态不允许发货")
        return order

    def _deliver_to_warehouse(self, params: dict[str, Any]) -> Any:
        order = self._shippable(params, brand=False)
        number = str(self._required(params, "dispatch_num"))
        carrier = str(self._required(params, "carrier"))
        if carrier not in WAREHOUSE_CARRIER_CODES:
            raise _Refusal(int(self.spec.business_error_code), f"承运商{carrier}不支持")
        self.record_shipment(order, WAREHOUSE_CARRIER_CODES[carrier], number, [])
        return None

    def _deliver_to_buyer(self, params: dict[str, Any]) -> Any:
        order = self._shippable(params, brand=True)
        number = str(self._required(params, "express_no"))
        carrier = str(self._required(params, "express_type"))
        if carrier not in BRAND_CARRIERS.values():
            raise _Refusal(int(self.spec.business_error_code), f"承运商{carrier}不支持")
        self.record_shipment(order, carrier, number, [])
        return None

    def _status(self, order: SandboxOrder) -> tuple[int, int]:
        """(order_status, close_type)"""
        extra = self.order_extra[order.order_id]
        if order.state == "refunded":
            # returned after it left the seller, or closed by the buyer before shipping
            return 8010, (18 if order.shipments else 11)
        if order.state == "shipped" and extra.inspection_status:
            return extra.inspection_status, 0
        return STATE_STATUS[order.state]

    def _order_json(self, order: SandboxOrder) -> dict[str, Any]:
        extra = self.order_extra[order.order_id]
        line = order.lines[0]
        item, sku = self._sku(line.sku_id)
        status, close_type = self._status(order)
        closed = status in (7000, 7500, 8010)
        shipment = order.shipments[0] if order.shipments else None
        goods = line.price_fen * line.quantity
        brand = extra.order_type in self.spec.brand_deliver_order_types
        return {
            "order_no": order.order_id, "order_type": extra.order_type,
            "order_status": status, "close_type": close_type,
            "pay_status": 1 if order.paid_at else 0,
            "pay_time": format_beijing(order.paid_at) if order.paid_at else "",
            "create_time": format_beijing(order.created),
            "modify_time": format_beijing(order.modified),
            "close_time": format_beijing(order.modified) if closed else "",
            "delivery_limit_time": format_beijing(order.created + timedelta(hours=36)),
            "amount": goods + order.post_fee_fen, "pay_amount": order.paid_fen,
            "sku_price": line.price_fen,
            self.spec.freight_field: {"freight": order.post_fee_fen},
            "merchant_subsidy_amount": 0, "poundage": goods * 5 // 100, "poundage_percent": 500,
            "qty": line.quantity, "spu_id": int(item.item_id), "sku_id": int(sku.sku_id),
            "brand_id": 10444, "title": item.title,
            "properties": json.dumps(sku.spec, ensure_ascii=False, separators=(",", ":")),
            "article_number": item.outer_id, "other_numbers": "",
            "other_merchant_sku_codes": [sku.outer_id] if sku.outer_id else [],
            "seller_bidding_no": extra.bidding_no, "package_quantity": 1,
            "express_to_platform": ({"express_no": shipment.tracking_number,
                                     "delivery_time": format_beijing(shipment.shipped_at)}
                                    if shipment else None),
            # a warehouse-bound order goes to Dewu; a brand-direct buyer's address stays hidden
            self.spec.platform_address_field: None if brand else dict(INSPECTION_WAREHOUSE),
        }

    # -- tokens --------------------------------------------------------------------------------
    def token_valid(self, token: str) -> bool:
        expiry = self.token_expiry.get(token)
        return token in self.access_tokens and expiry is not None and expiry > self.clock.now()

    def _oauth(self, path: str, body: Mapping[str, Any]) -> SandboxResponse:
        if body.get("client_id") != self.app_key or not constant_time_equal(
                str(body.get("client_secret") or ""), self.app_secret):
            return self._error(401, "client_id或client_secret错误")
        if path != OAUTH_PREFIX + "refresh_token":
            return self._error(int(self.spec.business_error_code), "无效的authorization_code")
        rotated = self.rotate_tokens(str(body.get("refresh_token") or ""))
        if rotated is None:
            return self._error(int(self.spec.business_error_code), "无效的refresh_token")
        access, refresh = rotated
        self.token_expiry[access] = self.clock.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS)
        return self._ok({"access_token": access, "access_token_expires_in": ACCESS_TOKEN_SECONDS,
                         "refresh_token": refresh, "refresh_token_expires_in": REFRESH_TOKEN_SECONDS,
                         "open_id": "sandbox-open-id", "scope": ["all"]})

    # -- protocol ------------------------------------------------------------------------------
    def api_name(self, request: SandboxRequest) -> str:
        return request.path

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        try:
            if request.path.startswith(OAUTH_PREFIX):
                if request.method != "POST":
                    return self._error(405, "Request method not supported", status=405)
                return self._oauth(request.path, self._body(request))
            route = self._routes.get(request.path)
            if route is None:
                return self._error(404, "请求接口不正确", status=404)
            verb = "GET" if request.path in self.spec.get_paths else "POST"
            if request.method != verb:
                return self._error(405, f"Request method '{request.method}' not supported",
                                   status=405)
            params = dict(request.query) if verb == "GET" else self._body(request)
            self._authenticate(params)
            return self._ok(route(params))
        except _Refusal as refusal:
            return self._error(refusal.code, refusal.message, status=refusal.status)

    def _body(self, request: SandboxRequest) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _Refusal(int(self.spec.business_error_code), "请求体必须是JSON对象")
        return body

    def _authenticate(self, params: Mapping[str, Any]) -> None:
        for key in ("app_key", "timestamp", "sign"):
            if params.get(key) in (None, ""):
                raise _Refusal(401, f"缺少公共参数{key}")
        if params["app_key"] != self.app_key:
            raise _Refusal(403, "签名验证失败，请检查签名方法是否正确以及使用的【appKey,secret】"
                                "是否为沙箱【appKey,secret】")
        stamp = str(params["timestamp"])
        skew = self.spec.timestamp_skew_seconds
        if not stamp.isdigit() or abs(int(stamp) / 1000 - self.clock.now().timestamp()) > skew:
            raise _Refusal(401, "签名认证失败：timestamp无效")
        if not constant_time_equal(str(params["sign"]), dewu_sign(params, self.app_secret)):
            raise _Refusal(401, "签名认证失败")
        if not self.token_valid(str(params.get("access_token") or "")):
            raise _Refusal(5044, "access_token无效或已过期")

    def _ok(self, data: Any) -> SandboxResponse:
        return SandboxResponse.of_json({"code": 200, "msg": "success", "data": data,
                                        "trace_id": self._trace_id()})

    def _error(self, code: int, message: str, status: int = 200) -> SandboxResponse:
        return SandboxResponse.of_json({"code": code, "msg": message, "data": None,
                                        "trace_id": self._trace_id()}, status=status)

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if fault is Fault.RATE_LIMIT:
            return self._error(5030, "调用频次超限，请稍后再试")
        return self._error(500, "系统繁忙，请稍后重试", status=500)

    # -- param helpers -------------------------------------------------------------------------
    def _required(self, params: Mapping[str, Any], key: str) -> Any:
        value = params.get(key)
        if value is None or value == "" or value == []:
            raise _Refusal(int(self.spec.business_error_code), f"参数{key}不能为空")
        return value

    def _int(self, params: Mapping[str, Any], key: str, default: int | None = None) -> int:
        value = params.get(key, default)
        if value is None:
            raise _Refusal(int(self.spec.business_error_code), f"参数{key}不能为空")
        if isinstance(value, bool) or not str(value).lstrip("-").isdigit():
            raise _Refusal(int(self.spec.business_error_code), f"参数{key}格式错误")
        return int(value)

    # -- pushes --------------------------------------------------------------------------------
    def render_push(self, order: SandboxOrder, topic: str) -> PushDelivery | None:
        kind = PUSH_TYPES.get(topic)
        if kind is None:
            return None
        # the event names the order only; receivers re-read it (and it may not be booked yet)
        plain = json.dumps({"orderNo": order.order_id}, separators=(",", ":")).encode()
        body = {"msg": encrypt_push(plain, self.app_secret), "type": kind, "name": kind,
                "uuid": f"{order.order_id}-{order.version}-{kind}"}
        return PushDelivery(kind, {"content-type": "application/json"},
                            json.dumps(body).encode())
