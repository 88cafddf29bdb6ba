"""A stateful simulator of the Pinduoduo router.

It speaks the real envelope (one POST to `/api/router`, JSON or form), checks what the
router checks (client_id, timestamp within 10 minutes, MD5 signature over what it
received, access token), and answers in PDD's shapes and units: orders in yuan doubles,
goods detail in fen, `error_response{error_code,error_msg,sub_code,sub_msg}` for every
refusal. Merchants never see unpaid orders on PDD, so neither does the sandbox.

The increment list is computed from live state on every page request: a client that
pages forwards while orders change misses orders here exactly as it would on PDD.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar

from connectors.pinduoduo.client import (
    REFRESH_API,
    RESPONSE_KEYS,
    ROUTER_PATH,
    sign,
    wire_value,
)
from core.carriers import tracking_matches
from core.clock import Clock, format_beijing
from core.money import fen_to_yuan
from core.sandbox import (
    Fault,
    Sandbox,
    SandboxItem,
    SandboxOrder,
    SandboxRequest,
    SandboxResponse,
)
from core.signing import constant_time_equal

TIMESTAMP_SKEW = 600  # seconds either side of server time
MAX_INCREMENT_WINDOW = 30 * 60
MAX_PAGE_SIZE = 100

# pdd.logistics.companies.get, the part the sandbox serves: id -> (code, name, available,
# canonical carrier used to check waybill formats)
LOGISTICS_COMPANIES: Mapping[int, tuple[str, str, bool, str]] = {
    1: ("STO", "申通快递", True, "STO"),
    3: ("HT", "百世快递", True, ""),
    44: ("SF", "顺丰快递", True, "SF"),
    85: ("YTO", "圆通快递", True, "YTO"),
    115: ("ZTO", "中通快递", True, "ZTO"),
    116: ("QF", "全峰快递", False, ""),
    118: ("EMS", "邮政EMS", True, "EMS"),
    120: ("JD", "京东配送", True, "JD"),
    121: ("YUNDA", "韵达快递", True, "YUNDA"),
    131: ("DB", "德邦快递", True, "DBL"),
    132: ("YZXB", "邮政快递包裹", True, "POSTB"),
    384: ("JTKD", "极兔快递", True, "JT"),
}


class PddError(Exception):
    def __init__(self, code: int, message: str, sub_msg: str = "",
                 sub_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.sub_msg = sub_msg
        self.sub_code = sub_code


def business(sub_msg: str) -> PddError:
    return PddError(50001, "业务服务错误", sub_msg)


def missing(name: str) -> PddError:
    return PddError(21002, "业务参数缺失", f"{name}不能为空")


def yuan(fen: int) -> float:
    # PDD sends yuan as JSON doubles; two decimals survive a float's shortest repr exactly
    return float(fen_to_yuan(fen))


class PinduoduoSandbox(Sandbox):
    platform: ClassVar[str] = "pinduoduo"
    item_id_base: ClassVar[int] = 300_000_000
    sku_id_base: ClassVar[int] = 50_000_000_000

    def __init__(self, *, clock: Clock | None = None, **kwargs: Any) -> None:
        super().__init__(clock=clock, **kwargs)
        self.single_prices: dict[str, int] = {}  # sku id -> 单买价 (price_fen is 拼单价)
        self.has_refund_address = True
        self.issued_tokens = set(self.access_tokens)
        self.owner_id = "900000001"
        self._order_seq = itertools.count(1)
        self._request_seq = itertools.count(1)
        self._handlers: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
            "pdd.order.number.list.increment.get": self._increment,
            "pdd.order.information.get": self._information,
            "pdd.logistics.online.send": self._online_send,
            "pdd.logistics.companies.get": self._companies,
            "pdd.goods.list.get": self._goods_list,
            "pdd.goods.detail.get": self._goods_detail,
            "pdd.goods.quantity.update": self._quantity_update,
            "pdd.goods.sku.price.update": self._price_update,
            "pdd.goods.sale.status.set": self._sale_status,
            REFRESH_API: self._refresh,
        }

    # -- ids and seeding -------------------------------------------------------------------
    def new_order_id(self) -> str:
        return f"{self.clock.now():%y%m%d}-{470_000_000_000_000 + next(self._order_seq)}"

    def add_item(self, title: str, outer_id: str, price_fen: int, *,
                 skus: Sequence[tuple[str, int, int]] = (), quantity: int = 0,
                 on_sale: bool = True, category_id: str = "6228",
                 spec_name: str = "规格") -> SandboxItem:
        # every PDD goods has at least one SKU
        item = super().add_item(title, outer_id, price_fen,
                                skus=skus or [(outer_id, quantity, price_fen)],
                                on_sale=on_sale, category_id=category_id, spec_name=spec_name)
        for sku in item.skus:
            self.single_prices[sku.sku_id] = sku.price_fen + 100
        return item

    def rotate_tokens(self, refresh_token: str) -> tuple[str, str] | None:
        rotated = super().rotate_tokens(refresh_token)
        if rotated is not None:
            self.issued_tokens.add(rotated[0])
        return rotated

    # -- protocol ----------------------------------------------------------------------------
    def api_name(self, request: SandboxRequest) -> str:
        try:
            return self.params_of(request).get("type", "")
        except ValueError:
            return ""

    @staticmethod
    def params_of(request: SandboxRequest) -> dict[str, str]:
        params = dict(request.query)
        if "json" in request.headers.get("content-type", ""):
            body = json.loads(request.body or b"{}", parse_float=Decimal)
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
            params.update({k: wire_value(v) for k, v in body.items() if v is not None})
        else:
            params.update(request.form())
        return params

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path.rstrip("/") != ROUTER_PATH or request.method != "POST":
            return SandboxResponse(404, b"")
        try:
            params = self.params_of(request)
            api = self._check_envelope(params)
            return SandboxResponse.of_json({RESPONSE_KEYS[api]: self._handlers[api](params)})
        except PddError as exc:
            return self.error_response(exc)
        except ValueError:
            return self.error_response(PddError(10000, "参数错误", "请求体无法解析"))

    def _check_envelope(self, params: dict[str, str]) -> str:
        api = params.get("type", "")
        if not api:
            raise PddError(10001, "公共参数错误:type")
        if params.get("client_id") != self.app_key:
            raise PddError(10016, "client_id不存在或已下线")
        stamp = params.get("timestamp", "")
        now = int(self.clock.now().timestamp())
        if not stamp.isdigit() or abs(int(stamp) - now) > TIMESTAMP_SKEW:
            raise PddError(10001, "公共参数错误:timestamp")
        if "data_type" in params and params["data_type"] not in ("JSON", "XML"):
            raise PddError(10001, "公共参数错误:data_type")
        received = params.get("sign", "")
        if not received:
            raise PddError(10001, "公共参数错误:sign")
        if not constant_time_equal(received, sign(params, self.app_secret)):
            raise PddError(20004, "签名校验失败")
        if api not in self._handlers:
            raise PddError(10017, "type不存在", api)
        if api != REFRESH_API:
            token = params.get("access_token", "")
            if not token:
                raise PddError(10001, "公共参数错误:access_token")
            if not self.token_valid(token):
                if token in self.issued_tokens:
                    raise PddError(10019, "access_token已过期")
                raise PddError(20032, "access_token或client_id错误")
        return api

    def error_response(self, exc: PddError) -> SandboxResponse:
        return SandboxResponse.of_json({"error_response": {
            "error_code": exc.code, "error_msg": exc.message, "sub_code": exc.sub_code,
            "sub_msg": exc.sub_msg, "request_id": f"{17000000000000000 + next(self._request_seq)}",
        }})

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if fault is Fault.RATE_LIMIT:
            return self.error_response(PddError(52101, "接口限流，请稍后重试"))
        return self.error_response(PddError(50000, "系统内部错误"))

    # -- rendering ---------------------------------------------------------------------------
    @staticmethod
    def visible(order: SandboxOrder) -> bool:
        return order.state not in ("unpaid", "cancelled")

    def render_order(self, order: SandboxOrder) -> dict[str, Any]:
        shipped = bool(order.shipments)
        order_status = {"paid": 1, "completed": 3}.get(order.state, 2 if shipped else 1)
        refund_status = 4 if order.state == "refunded" else 1
        first = order.shipments[0] if order.shipments else None
        return {
            "order_sn": order.order_id,
            "confirm_status": 1,
            "confirm_time": format_beijing(order.paid_at or order.created),
            "pay_time": format_beijing(order.paid_at or order.created),
            "created_time": format_beijing(order.created),
            "updated_at": format_beijing(order.modified),
            "order_status": order_status,
            "refund_status": refund_status,
            "after_sales_status": 10 if refund_status == 4 else 0,
            "country": "中国", "province": order.province, "city": order.city,
            "town": order.district, "address": order.detail,
            "receiver_name": "~AgAAAAEAxZz0sandbox~", "receiver_name_mask": order.receiver,
            "receiver_phone": "$sandbox$", "receiver_phone_mask": order.phone,
            "pay_amount": yuan(order.paid_fen), "goods_amount": yuan(order.goods_fen),
            "discount_amount": yuan(order.discount_fen), "postage": yuan(order.post_fee_fen),
            "seller_discount": yuan(order.discount_fen), "platform_discount": 0,
            "logistics_id": int(first.carrier_code) if first else 0,
            "tracking_number": first.tracking_number if first else "",
            "shipping_time": format_beijing(first.shipped_at) if first else "",
            "extra_delivery_list": [
                {"logistics_id": int(s.carrier_code), "tracking_number": s.tracking_number}
                for s in order.shipments[1:]],
            "item_list": [{
                "goods_id": int(line.item_id), "sku_id": int(line.sku_id),
                "outer_id": line.outer_id, "outer_goods_id": self.items[line.item_id].outer_id,
                "goods_name": line.title, "goods_price": yuan(line.price_fen),
                "goods_spec": "", "goods_count": line.quantity, "goods_img": "",
            } for line in order.lines],
            "is_pre_sale": 0, "pre_sale_time": "", "buyer_memo": order.buyer_remark,
            "remark": "", "risk_control_status": 0, "trade_type": 0, "pay_type": "WEIXIN",
            "last_ship_time": format_beijing(order.created + timedelta(hours=48)),
        }

    def render_goods_detail(self, item: SandboxItem) -> dict[str, Any]:
        return {
            "goods_id": int(item.item_id), "goods_name": item.title,
            "outer_goods_id": item.outer_id, "cat_id": int(item.category_id),
            "status": 1 if item.on_sale else 2,
            "market_price": max(self.single_prices[s.sku_id] for s in item.skus) + 1000,
            "sku_list": [{
                "sku_id": int(sku.sku_id), "out_sku_sn": sku.outer_id,
                "price": self.single_prices[sku.sku_id], "multi_price": sku.price_fen,
                "quantity": sku.quantity, "is_onsale": 1, "limit_quantity": 999,
                "spec": [{"parent_name": k, "spec_name": v} for k, v in sku.spec.items()],
            } for sku in item.skus],
        }

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _int(params: Mapping[str, str], name: str, default: int | None = None) -> int:
        raw = params.get(name)
        if raw in (None, ""):
            if default is None:
                raise missing(name)
            return default
        try:
            return int(raw)
        except ValueError:
            raise PddError(21001, "业务参数错误", f"{name}格式错误") from None

    def _order(self, order_sn: str) -> SandboxOrder:
        order = self.orders.get(order_sn)
        if order is None or not self.visible(order):
            raise business("订单不存在")
        return order

    def _item(self, goods_id: str) -> SandboxItem:
        item = self.items.get(goods_id)
        if item is None:
            raise business("商品不存在")
        return item

    def _paging(self, params: Mapping[str, str]) -> tuple[int, int]:
        page = self._int(params, "page", 1)
        size = self._int(params, "page_size", MAX_PAGE_SIZE)
        if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            raise business(f"page从1开始，page_size取值1~{MAX_PAGE_SIZE}")
        return page, size

    # -- orders ------------------------------------------------------------------------------
    def _increment(self, params: dict[str, str]) -> dict[str, Any]:
        start = self._int(params, "start_updated_at")
        end = self._int(params, "end_updated_at")
        if end < start:
            raise business("开始时间不能大于结束时间")
        if end - start > MAX_INCREMENT_WINDOW:
            raise business("时间跨度不能超过30分钟")
        page, size = self._paging(params)
        wanted_status = self._int(params, "order_status", 5)
        wanted_refund = self._int(params, "refund_status", 5)
        rows = []
        for order in self.orders.values():
            if not self.visible(order):
                continue
            updated = int(order.modified.timestamp())
            if not start <= updated <= end:
                continue
            rendered = self.render_order(order)
            if wanted_status != 5 and rendered["order_status"] != wanted_status:
                continue
            if wanted_refund != 5 and rendered["refund_status"] != wanted_refund:
                continue
            rows.append((updated, order.order_id, rendered))
        rows.sort(key=lambda row: (row[0], row[1]))
        chunk = [rendered for _, _, rendered in rows[(page - 1) * size: page * size]]
        answer: dict[str, Any] = {"order_sn_list": chunk, "has_next": page * size < len(rows)}
        if params.get("use_has_next") != "true":
            answer["total_count"] = len(rows)
        return answer

    def _information(self, params: dict[str, str]) -> dict[str, Any]:
        order_sn = params.get("order_sn") or ""
        if not order_sn:
            raise missing("order_sn")
        return {"order_info": self.render_order(self._order(order_sn))}

    def _companies(self, params: dict[str, str]) -> dict[str, Any]:
        return {"logistics_companies": [
            {"id": key, "code": code, "logistics_company": name, "available": int(ok)}
            for key, (code, name, ok, _) in sorted(LOGISTICS_COMPANIES.items())]}

    def _online_send(self, params: dict[str, str]) -> dict[str, Any]:
        for name in ("order_sn", "logistics_id", "tracking_number"):
            if not params.get(name):
                raise missing(name)
        order = self._order(params["order_sn"])
        logistics_id = self._int(params, "logistics_id")
        company = LOGISTICS_COMPANIES.get(logistics_id)
        if company is None or not company[2]:
            raise business("快递公司不存在或不可用")
        number = params["tracking_number"]
        if company[3] and not tracking_matches(company[3], number):
            raise business("运单号不符合规则")
        redelivery = params.get("redelivery_type", "1") or "1"
        if redelivery == "2":
            if order.state not in ("shipped", "part_shipped") or not order.shipments:
                raise business("订单未发货，不能修改发货信息")
        elif order.state in ("shipped", "part_shipped", "completed"):
            raise business("订单已发货，请勿重复发货")
        elif order.state != "paid":
            raise business("订单已取消或已退款，不能发货")
        for other in self.orders.values():
            if other.order_id != order.order_id and any(
                    s.tracking_number == number for s in other.shipments):
                raise business("运单号已被其他订单使用")
        if not params.get("refund_address_id") and not self.has_refund_address:
            raise business("请先设置默认退货地址")
        if redelivery == "2":
            order.shipments.clear()
        self.record_shipment(order, str(logistics_id), number, ())
        return {"is_success": True}

    # -- goods -------------------------------------------------------------------------------
    def _goods_list(self, params: dict[str, str]) -> dict[str, Any]:
        page, size = self._paging(params)
        items = sorted(self.items.values(), key=lambda i: int(i.item_id))
        if params.get("is_onsale") in ("0", "1"):
            items = [i for i in items if i.on_sale == (params["is_onsale"] == "1")]
        elif params.get("outer_id"):
            items = [i for i in items if any(s.outer_id == params["outer_id"] for s in i.skus)]
        chunk = items[(page - 1) * size: page * size]
        return {"total_count": len(items), "goods_list": [{
            "goods_id": int(item.item_id), "goods_name": item.title,
            "goods_quantity": item.total_quantity, "goods_reserve_quantity": 0,
            "is_onsale": int(item.on_sale), "is_more_sku": int(len(item.skus) > 1),
            "thumb_url": "", "image_url": "", "created_at": int(item.created.timestamp()),
            "sku_list": [{
                "sku_id": int(sku.sku_id), "outer_id": sku.outer_id,
                "outer_goods_id": item.outer_id, "sku_quantity": sku.quantity,
                "reserve_quantity": 0, "is_sku_onsale": 1,
                "spec": " ".join(sku.spec.values()),
            } for sku in item.skus],
        } for item in chunk]}

    def _goods_detail(self, params: dict[str, str]) -> dict[str, Any]:
        return self.render_goods_detail(self._item(str(self._int(params, "goods_id"))))

    def _quantity_update(self, params: dict[str, str]) -> dict[str, Any]:
        item = self._item(str(self._int(params, "goods_id")))
        quantity = self._int(params, "quantity")
        sku_id, outer_id = params.get("sku_id"), params.get("outer_id")
        if sku_id:
            sku = next((s for s in item.skus if s.sku_id == sku_id), None)
        elif outer_id:
            sku = next((s for s in item.skus if s.outer_id == outer_id), None)
        else:
            raise missing("sku_id")
        if sku is None:
            raise business("sku不存在或不属于该商品")
        update_type = self._int(params, "update_type", 1)
        if update_type not in (1, 2):
            raise PddError(21001, "业务参数错误", "update_type只能为1或2")
        target = quantity if update_type == 1 else sku.quantity + quantity
        if target < 0:
            raise business("库存不能小于0")
        self._set_stock(item, sku, target)
        return {"is_success": True}

    def _price_update(self, params: dict[str, str]) -> dict[str, Any]:
        item = self._item(str(self._int(params, "goods_id")))
        raw = params.get("sku_price_list")
        if not raw:
            raise missing("sku_price_list")
        try:
            entries = json.loads(raw)
        except ValueError:
            raise PddError(21001, "业务参数错误", "sku_price_list格式错误") from None
        skus = {s.sku_id: s for s in item.skus}
        changes = []
        for entry in entries:
            sku = skus.get(str(entry.get("sku_id")))
            if sku is None:
                raise business("sku不存在或不属于该商品")
            group, single = int(entry["group_price"]), int(entry["single_price"])
            if group <= 0 or single <= group:
                raise business("单买价必须大于拼单价")
            changes.append((sku, group, single))
        for sku, group, single in changes:
            sku.price_fen = group
            self.single_prices[sku.sku_id] = single
        item.modified = self.clock.now()
        return {"is_success": True}

    def _sale_status(self, params: dict[str, str]) -> dict[str, Any]:
        item = self._item(str(self._int(params, "goods_id")))
        wanted = self._int(params, "is_onsale")
        if wanted not in (0, 1):
            raise PddError(21001, "业务参数错误", "is_onsale只能为0或1")
        item.on_sale = wanted == 1
        item.modified = self.clock.now()
        return {"is_success": True}

    # -- auth --------------------------------------------------------------------------------
    def _refresh(self, params: dict[str, str]) -> dict[str, Any]:
        refresh = params.get("refresh_token") or ""
        if not refresh:
            raise missing("refresh_token")
        rotated = self.rotate_tokens(refresh)
        if rotated is None:
            raise PddError(10019, "refresh_token已过期或无效")
        now = int(self.clock.now().timestamp())
        access, new_refresh = rotated
        return {
            "access_token": access, "expires_in": 86400, "expires_at": now + 86400,
            "refresh_token": new_refresh, "refresh_token_expires_in": 30 * 86400,
            "refresh_token_expires_at": now + 30 * 86400,
            "owner_id": self.owner_id, "owner_name": "sandbox-mall",
            "scope": sorted(self._handlers),
        }
