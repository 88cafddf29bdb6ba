"""YouzanSandbox: Youzan Cloud's gateway and APIs over the shared sandbox state.

It refuses what the gateway refuses, in its order — an unknown API or version (4005), a
missing or illegal token (4201), an expired one (4202), an unknown one (4203) — then what the
API refuses: missing parameters, a page size above 100, a search window above a year
(106000001), a negative absolute stock, an unknown express id, shipping an order or a line
twice. 4.x APIs answer `{"success", "code", "data"}`, 3.x APIs `{"response"}` /
`{"error_response"}`, all with HTTP 200. Trades render as `full_order_info`, sorted by update
time, newest first. Pushes are signed md5(client_id + body + client_secret). Every code
that is an assumption is a field of `client.YOUZAN` (see README.md).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from core.carriers import tracking_matches
from core.clock import beijing, format_beijing, parse_beijing
from core.money import fen_to_yuan
from core.sandbox import (
    Fault,
    PushDelivery,
    Sandbox,
    SandboxItem,
    SandboxOrder,
    SandboxRequest,
    SandboxResponse,
    SandboxSku,
)
from erpsync_youzan.client import (
    PUSH_SIGN_HEADER,
    PUSH_TYPE_HEADER,
    TOKEN_PATH,
    YOUZAN,
    push_sign,
)
from erpsync_youzan.mapping import CLOSED_BY_REFUND, EXPRESS_IDS

TRADE_STATUS = {
    "unpaid": "WAIT_BUYER_PAY", "paid": "WAIT_SELLER_SEND_GOODS",
    "part_shipped": "WAIT_SELLER_SEND_GOODS", "shipped": "WAIT_BUYER_CONFIRM_GOODS",
    "completed": "TRADE_SUCCESS", "cancelled": "TRADE_CLOSE", "refunded": "TRADE_CLOSE",
}
PUSH_TYPES = {"created": "trade_TradeCreate", "paid": "trade_TradePaid",
              "shipped": "trade_TradeSellerShip", "completed": "trade_TradeSuccess",
              "cancelled": "trade_TradeClose", "refunded": "trade_TradeClose"}
SEARCH_LIMIT = timedelta(days=365)
ITEM_PAGE_MAX = 300
_CANONICAL = {code: canonical for canonical, code in EXPRESS_IDS.items()}


class Refusal(Exception):
    def __init__(self, code: int, message: str, *, gateway: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.gateway = code, message, gateway


def _missing(name: str) -> Refusal:
    return Refusal(YOUZAN.bad_param, f"参数 {name} 不能为空")


def _int(params: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value in (None, ""):
        if default is None:
            raise _missing(name)
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Refusal(YOUZAN.bad_param, f"参数 {name} 格式错误") from None


class YouzanSandbox(Sandbox):
    platform = "youzan"
    item_id_base = 3_900_000_000
    sku_id_base = 36_000_000_000

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("app_key", "sandbox-client-id-0001")
        kwargs.setdefault("app_secret", "sandbox-client-secret-0001")
        super().__init__(**kwargs)
        self.kdt_id = 10_000_001
        self.expired_tokens: set[str] = set()
        self._tids = itertools.count(1)
        self._oids = itertools.count(1)
        # api -> (versions answered, handler, required parameters)
        self.routes: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], Any],
                                     tuple[str, ...]]] = {
            "youzan.trades.sold.get": (("4.0.0", "4.0.1", "4.0.2", "4.0.3", "4.0.4"),
                                       self._trades, ()),
            "youzan.trade.get": (("4.0.0", "4.0.1", "4.0.2"), self._trade, ("tid",)),
            "youzan.items.onsale.get": (("3.0.0",), self._onsale, ()),
            "youzan.item.get": (("3.0.0",), self._item_get, ("item_id",)),
            "youzan.item.quantity.update": (("3.0.0",), self._quantity,
                                            ("item_id", "quantity")),
            "youzan.logistics.online.confirm": (("3.0.0",), self._confirm, ("tid",)),
        }

    # -- ids -------------------------------------------------------------------------------
    def new_order_id(self) -> str:
        """`E` + 14-digit time + 9 digits, like E20200828154641023700067."""
        return f"E{beijing(self.clock.now()):%Y%m%d%H%M%S}{next(self._tids):09d}"

    def new_line_id(self, order_id: str, index: int) -> str:
        return str(1_500_000_000_000 + next(self._oids))

    def expire_token(self) -> None:
        self.expired_tokens |= self.access_tokens
        super().expire_token()

    # -- protocol ----------------------------------------------------------------------------
    def api_name(self, request: SandboxRequest) -> str:
        parts = request.path.strip("/").split("/")
        if request.path.rstrip("/").endswith(TOKEN_PATH):
            return "auth.token"
        return parts[-2] if len(parts) >= 3 and parts[-3] == "api" else request.path

    def _version(self, request: SandboxRequest) -> str:
        return request.path.rstrip("/").rsplit("/", 1)[-1]

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.method != "POST":
            return SandboxResponse(405, b"Method Not Allowed", {"content-type": "text/plain"})
        if request.path.rstrip("/").endswith(TOKEN_PATH):
            return self._token(request)
        api, version = self.api_name(request), self._version(request)
        try:
            route = self.routes.get(api)
            if route is None or version not in route[0]:
                raise Refusal(YOUZAN.unknown_api, "非法的API", gateway=True)
            self._authenticate(request.query.get("access_token", ""))
            params = self._body(request)
            for name in route[2]:
                if params.get(name) in (None, ""):
                    raise _missing(name)
            result = route[1](params)
        except Refusal as refusal:
            return self._refusal(refusal, version)
        return self._success(result, version)

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        route = self.routes.get(api)
        version = route[0][0] if route else "4.0.0"
        if fault is Fault.RATE_LIMIT:
            return self._refusal(Refusal(YOUZAN.rate_limited, "调用频率超限"), version)
        return self._refusal(Refusal(YOUZAN.system_busy, "系统繁忙，请稍后重试"), version)

    def _authenticate(self, token: str) -> None:
        if not token:
            raise Refusal(YOUZAN.token_illegal, "非法的请求凭证", gateway=True)
        if self.token_valid(token):
            return
        if token in self.expired_tokens:
            raise Refusal(YOUZAN.token_expired, "Token 已过期", gateway=True)
        raise Refusal(YOUZAN.token_unknown, "Token 不存在", gateway=True)

    def _body(self, request: SandboxRequest) -> dict[str, Any]:
        try:
            body = request.json() if request.body else {}
        except ValueError:
            raise Refusal(YOUZAN.bad_param, "请求体不是合法的 JSON") from None
        if not isinstance(body, dict):
            raise Refusal(YOUZAN.bad_param, "请求体必须是 JSON 对象")
        return body

    def _trace(self) -> str:
        return f"yz7-sandbox-{len(self.requests) + 1:08d}"

    def _success(self, result: Any, version: str) -> SandboxResponse:
        if version.startswith("3."):
            return SandboxResponse.of_json({"response": result})
        return SandboxResponse.of_json({"trace_id": self._trace(), "code": 200,
                                        "success": True, "data": result, "message": None})

    def _refusal(self, refusal: Refusal, version: str) -> SandboxResponse:
        if refusal.gateway:
            return SandboxResponse.of_json({"gw_err_resp": {
                "trace_id": self._trace(), "err_msg": refusal.message,
                "err_code": refusal.code}})
        if version.startswith("3."):
            return SandboxResponse.of_json({"error_response": {
                "code": refusal.code, "msg": refusal.message}})
        return SandboxResponse.of_json({"trace_id": self._trace(), "code": refusal.code,
                                        "success": False, "data": None,
                                        "message": refusal.message})

    # -- tokens ----------------------------------------------------------------------------
    def _token(self, request: SandboxRequest) -> SandboxResponse:
        try:
            body = self._body(request)
            if body.get("client_id") != self.app_key or body.get("client_secret") != \
                    self.app_secret:
                raise Refusal(YOUZAN.client_invalid, "client_id 或 client_secret 错误")
            if body.get("authorize_type") != "refresh_token":
                raise Refusal(YOUZAN.bad_param, "authorize_type 不支持")
            rotated = self.rotate_tokens(str(body.get("refresh_token") or ""))
            if rotated is None:
                raise Refusal(YOUZAN.refresh_invalid, "refresh_token 无效或已过期")
        except Refusal as refusal:
            return self._refusal(refusal, "4")
        access, refresh = rotated
        expires = self.clock.now() + timedelta(hours=2)  # "有效期 2 小时"
        return self._success({"access_token": access, "refresh_token": refresh,
                              "expires": int(expires.timestamp() * 1000),
                              "scope": "trade item logistics", "authority_id": str(self.kdt_id)},
                             "4")

    # -- trades ----------------------------------------------------------------------------
    def _trades(self, params: dict[str, Any]) -> dict[str, Any]:
        page_no, page_size = _int(params, "page_no", 1), _int(params, "page_size", 20)
        if page_no < 1 or not 1 <= page_size <= YOUZAN.page_size:
            raise Refusal(YOUZAN.bad_param, f"page_size 取值范围 1-{YOUZAN.page_size}")
        orders = list(self.orders.values())
        # a bound without its pair is ignored, as the doc says
        if params.get("start_update") and params.get("end_update"):
            try:
                start = parse_beijing(str(params["start_update"]))
                end = parse_beijing(str(params["end_update"]))
            except ValueError:
                raise Refusal(YOUZAN.bad_param, "时间格式错误，应为 yyyy-MM-dd HH:mm:ss") from None
            if end - start > SEARCH_LIMIT or end < start:
                raise Refusal(YOUZAN.window_too_long, "每次可搜索一年订单记录,请重新选择起止时间")
            orders = [o for o in orders
                      if start <= beijing(o.modified).replace(microsecond=0) <= end]
        orders.sort(key=lambda o: (o.modified, o.order_id), reverse=True)
        page = orders[(page_no - 1) * page_size:page_no * page_size]
        return {"total_results": len(orders),
                "full_order_info_list": [{"full_order_info": self.render_trade(o)}
                                         for o in page]}

    def _trade(self, params: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(str(params["tid"]))
        if order is None:
            raise Refusal(YOUZAN.trade_not_found, "订单不存在")
        return {"full_order_info": self.render_trade(order)}

    def render_trade(self, order: SandboxOrder) -> dict[str, Any]:
        info: dict[str, Any] = {
            "tid": order.order_id, "status": TRADE_STATUS[order.state], "type": 0,
            "created": format_beijing(order.created),
            "update_time": format_beijing(order.modified),
        }
        if order.paid_at:
            info["pay_time"] = format_beijing(order.paid_at)
        if order.state in ("cancelled", "refunded"):
            info["close_type"] = CLOSED_BY_REFUND if order.state == "refunded" else 1
        if order.state == "completed":
            info["success_time"] = format_beijing(order.modified)
        items = {line.item_id: self.items.get(line.item_id) for line in order.lines}
        return {
            "order_info": info,
            "orders": [{
                "oid": line.line_id, "item_id": int(line.item_id),
                "sku_id": int(line.sku_id) if line.sku_id else 0,
                "outer_sku_id": line.outer_id if line.sku_id else "",
                "outer_item_id": (items[line.item_id].outer_id  # type: ignore[union-attr]
                                  if items.get(line.item_id) else ""),
                "title": line.title, "num": line.quantity, "price": fen_to_yuan(line.price_fen),
                "total_fee": fen_to_yuan(line.price_fen * line.quantity),
                "payment": fen_to_yuan(line.price_fen * line.quantity),
            } for line in order.lines],
            "pay_info": {"total_fee": fen_to_yuan(order.goods_fen),
                         "post_fee": fen_to_yuan(order.post_fee_fen),
                         "payment": fen_to_yuan(order.paid_fen)},
            "address_info": {"delivery_province": order.province, "delivery_city": order.city,
                             "delivery_district": order.district,
                             "delivery_address": order.detail,
                             "receiver_name": order.receiver, "receiver_tel": order.phone},
            "remark_info": {"buyer_message": order.buyer_remark},
            "delivery_order": [{
                "express_state": 1, "express_type": 0,
                "oids": [{"oid": oid} for oid in shipment.line_ids],
                "dists": [{"express_info": {"express_id": int(shipment.carrier_code),
                                            "express_no": shipment.tracking_number}}],
            } for shipment in order.shipments],
        }

    # -- items -----------------------------------------------------------------------------
    def _onsale(self, params: dict[str, Any]) -> dict[str, Any]:
        page_no, page_size = _int(params, "page_no", 1), _int(params, "page_size", 40)
        if page_no < 1 or not 1 <= page_size <= ITEM_PAGE_MAX:
            raise Refusal(YOUZAN.bad_param, f"page_size 取值范围 1-{ITEM_PAGE_MAX}")
        listed = sorted((i for i in self.items.values() if i.on_sale),
                        key=lambda i: int(i.item_id), reverse=True)
        page = listed[(page_no - 1) * page_size:page_no * page_size]
        return {"count": len(listed), "items": [{
            "item_id": int(i.item_id), "title": i.title, "price": fen_to_yuan(i.price_fen),
            "quantity": i.total_quantity, "item_no": i.outer_id} for i in page]}

    def _item(self, params: Mapping[str, Any]) -> SandboxItem:
        item = self.items.get(str(params["item_id"]))
        if item is None:
            raise Refusal(YOUZAN.item_not_found, "商品不存在")
        return item

    def _item_get(self, params: dict[str, Any]) -> dict[str, Any]:
        item = self._item(params)
        return {"item": {
            "item_id": int(item.item_id), "title": item.title, "item_no": item.outer_id,
            "price": fen_to_yuan(item.price_fen), "quantity": item.total_quantity,
            "is_listing": item.on_sale,
            "skus": [{"sku_id": int(s.sku_id), "item_no": s.outer_id, "quantity": s.quantity,
                      "price": fen_to_yuan(s.price_fen)} for s in item.skus]}}

    def _quantity(self, params: dict[str, Any]) -> dict[str, Any]:
        item = self._item(params)
        quantity, kind = _int(params, "quantity"), _int(params, "type", 0)
        if kind not in (0, 1):
            raise Refusal(YOUZAN.bad_param, "type 取值 0（全量）或 1（增量）")
        sku: SandboxSku | None = None
        if params.get("sku_id") not in (None, "", 0):
            sku = next((s for s in item.skus if s.sku_id == str(params["sku_id"])), None)
            if sku is None:
                raise Refusal(YOUZAN.bad_param, "sku_id 不属于该商品")
        elif item.skus:
            raise Refusal(YOUZAN.bad_param, "多规格商品必须指定 sku_id")
        current = sku.quantity if sku else item.quantity
        result = quantity if kind == 0 else current + quantity
        if result < 0:
            raise Refusal(YOUZAN.bad_param, "库存不能小于 0")
        self._set_stock(item, sku, result)
        return {"is_success": True}

    # -- logistics -------------------------------------------------------------------------
    def _confirm(self, params: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(str(params["tid"]))
        if order is None:
            raise Refusal(YOUZAN.trade_not_found, "订单不存在")
        if str(params.get("is_no_express", "0")) != "1":
            for name in ("out_stype", "out_sid"):
                if params.get(name) in (None, ""):
                    raise _missing(name)
        express, waybill = str(params.get("out_stype", "")), str(params.get("out_sid", ""))
        if express not in _CANONICAL:
            raise Refusal(YOUZAN.bad_express, f"物流公司 {express} 不存在")
        if not tracking_matches(_CANONICAL[express], waybill):
            raise Refusal(YOUZAN.bad_param, "运单号格式不正确")
        if order.state == "unpaid":
            raise Refusal(YOUZAN.bad_param, "订单未支付，不能发货")
        if order.state not in ("paid", "part_shipped"):
            raise Refusal(YOUZAN.already_shipped, "订单已发货或已关闭，不能重复发货")
        oids = [o for o in str(params.get("oids") or "").split(",") if o]
        lines = {line.line_id: line for line in order.lines}
        if any(o not in lines for o in oids):
            raise Refusal(YOUZAN.bad_param, "oids 中的交易明细不属于该订单")
        if any(lines[o].state != "open" for o in oids):
            raise Refusal(YOUZAN.already_shipped, "交易明细已发货，不能重复发货")
        self.record_shipment(order, express, waybill, oids)
        return {"is_success": True}

    # -- pushes ----------------------------------------------------------------------------
    def render_push(self, order: SandboxOrder, topic: str) -> PushDelivery | None:
        kind = PUSH_TYPES.get(topic)
        if kind is None:
            return None
        message = {"tid": order.order_id, "update_time": format_beijing(order.modified)}
        body = json.dumps({
            "client_id": self.app_key, "id": order.order_id, "kdt_id": self.kdt_id,
            "kdt_name": "沙盒店铺", "mode": 1, "type": kind, "status": TRADE_STATUS[order.state],
            "msg": quote(json.dumps(message, ensure_ascii=False)), "sendCount": 0,
            "test": False, "version": _ms(order.modified),
        }, ensure_ascii=False).encode()
        return PushDelivery(kind, {
            "Content-Type": "application/json", "Client-Id": self.app_key,
            PUSH_TYPE_HEADER: kind, PUSH_SIGN_HEADER: push_sign(self.app_key, body,
                                                                self.app_secret)}, body)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
