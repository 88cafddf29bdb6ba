"""A stateful simulator of the JD gateway (`/routerjson`) and its OAuth refresh.

It checks what JOS checks — version, app_key, timestamp (±10 min, Beijing), the MD5
signature over the parameters it received (including the `360buy_param_json` text),
the access token (code 19) — and answers `<method>_responce{code:"0", <result>}` with
the API's own success flag inside. POP merchants only see paid orders, so unpaid ones
stay invisible. Order search reads live state per page, so forward paging while orders
change misses orders here as it would on JD.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from connectors.jd.client import (
    GATEWAY_PATH,
    OAUTH_REFRESH_PATH,
    PARAM_JSON,
    response_key,
    sign,
)
from core.carriers import tracking_matches
from core.clock import BEIJING, Clock, format_beijing
from core.money import MoneyError, fen_to_yuan, yuan_to_fen
from core.sandbox import (
    Fault,
    Sandbox,
    SandboxItem,
    SandboxOrder,
    SandboxRequest,
    SandboxResponse,
    SandboxSku,
)
from core.signing import constant_time_equal

TIMESTAMP_SKEW = timedelta(minutes=10)
MAX_SEARCH_WINDOW = timedelta(days=30)
MAX_ORDER_PAGE_SIZE = 100
MAX_SKU_PAGE_SIZE = 50
SEARCHABLE_STATES = frozenset({
    "WAIT_SELLER_STOCK_OUT", "WAIT_GOODS_RECEIVE_CONFIRM", "WAIT_SELLER_DELIVERY", "PAUSE",
    "POP_ORDER_PAUSE", "FINISHED_L", "TRADE_CANCELED", "LOCKED", "WAIT_SEND_CODE",
})
MANUFACTURER_DELIVERY = "1274"  # 厂家自送: no waybill kept

# 360buy.get.vender.all.delivery.company, the part the sandbox serves: id -> (name,
# canonical carrier used to check waybill formats)
DELIVERY_COMPANIES: Mapping[str, tuple[str, str]] = {
    "463": ("圆通快递", "YTO"),
    "465": ("邮政EMS", "EMS"),
    "467": ("顺丰快递", "SF"),
    "470": ("申通快递", "STO"),
    "1274": ("厂家自送", ""),
    "1327": ("韵达快递", "YUNDA"),
    "1499": ("中通速递", "ZTO"),
    "2087": ("京东快递", "JD"),
    "2170": ("邮政快递包裹", "POSTB"),
    "3046": ("德邦快递", "DBL"),
}


class JdGatewayError(Exception):
    def __init__(self, code: str, zh: str, en: str) -> None:
        super().__init__(zh)
        self.code, self.zh, self.en = code, zh, en


class JdBusinessError(Exception):
    """A refusal the API reports inside its own result object."""

    def __init__(self, zh: str, en: str, code: str = "100") -> None:
        super().__init__(zh)
        self.zh, self.en, self.code = zh, en, code


def yuan(fen: int) -> str:
    return fen_to_yuan(fen)


class JdSandbox(Sandbox):
    platform: ClassVar[str] = "jd"
    item_id_base: ClassVar[int] = 10_000_000_000
    sku_id_base: ClassVar[int] = 100_000_000_000
    order_id_base: ClassVar[int] = 280_000_000_000

    def __init__(self, *, clock: Clock | None = None, **kwargs: Any) -> None:
        super().__init__(clock=clock, **kwargs)
        self._routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "jingdong.pop.order.search": self._order_search,
            "jingdong.pop.order.get": self._order_get,
            "jingdong.pop.order.shipment": self._shipment,
            "jingdong.stock.write.updateSkuStock": self._update_stock,
            "jingdong.sku.read.searchSkuList": self._search_skus,
            "jingdong.price.write.updateSkuJdPrice": self._update_price,
            "jingdong.ware.write.upOrDown": self._up_or_down,
        }
        self._token_seq = itertools.count(1)

    # -- protocol ----------------------------------------------------------------------------
    @staticmethod
    def params_of(request: SandboxRequest) -> dict[str, str]:
        params = dict(request.query)
        if request.body:
            params.update(request.form())
        return params

    def api_name(self, request: SandboxRequest) -> str:
        if request.path.rstrip("/") == OAUTH_REFRESH_PATH:
            return "oauth2.refresh_token"
        return self.params_of(request).get("method", "")

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        path = request.path.rstrip("/")
        params = self.params_of(request)
        if path == OAUTH_REFRESH_PATH:
            return SandboxResponse.of_json(self._refresh(params))
        if path != GATEWAY_PATH:
            return SandboxResponse(404, b"")
        try:
            method, business = self._check_envelope(params)
            try:
                result = self._routes[method](business)
            except JdBusinessError as exc:
                return self.gateway_error(JdGatewayError(exc.code, exc.zh, exc.en))
            return SandboxResponse.of_json({response_key(method): {"code": "0", **result}})
        except JdGatewayError as exc:
            return self.gateway_error(exc)

    def _check_envelope(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        method = params.get("method", "")
        if not method:
            raise JdGatewayError("14", "缺少方法名参数", "Missing Method")
        version = params.get("v", "")
        if not version:
            raise JdGatewayError("4", "缺少版本参数", "Missing Version")
        if version != "2.0":
            raise JdGatewayError("5", "不支持的版本号", "Unsupported Version")
        if params.get("app_key") != self.app_key:
            raise JdGatewayError("21", "无效的app_key", "Invalid App Key")
        stamp = params.get("timestamp", "")
        if not stamp:
            raise JdGatewayError("7", "缺少时间戳参数", "Missing Timestamp")
        moment = self._parse_timestamp(stamp)
        if moment is None or abs(moment - self.clock.now()) > TIMESTAMP_SKEW:
            raise JdGatewayError("8", "非法的时间戳参数", "Invalid Timestamp")
        received = params.get("sign", "")
        if not received:
            raise JdGatewayError("11", "缺少签名参数", "Missing Signature")
        if not constant_time_equal(received, sign(params, self.app_secret)):
            raise JdGatewayError("12", "无效签名", "Invalid Signature")
        if method not in self._routes:
            raise JdGatewayError("15", "不存在的方法名", "Invalid Method")
        if not self.token_valid(params.get("access_token", "")):
            raise JdGatewayError("19", "无效access_token", "Invalid access_token")
        try:
            business = json.loads(params.get(PARAM_JSON) or "{}", parse_float=Decimal)
        except ValueError:
            raise JdGatewayError("100", "360buy_param_json格式错误",
                                 "Invalid 360buy_param_json") from None
        if not isinstance(business, dict):
            raise JdGatewayError("100", "360buy_param_json格式错误", "Invalid 360buy_param_json")
        return method, business

    @staticmethod
    def _parse_timestamp(stamp: str) -> datetime | None:
        for layout, size in (("%Y-%m-%d %H:%M:%S.%f%z", None), ("%Y-%m-%d %H:%M:%S", 19)):
            try:
                moment = datetime.strptime(stamp if size is None else stamp[:size], layout)
            except ValueError:
                continue
            return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)
        return None

    def gateway_error(self, exc: JdGatewayError) -> SandboxResponse:
        return SandboxResponse.of_json(
            {"error_response": {"code": exc.code, "zh_desc": exc.zh, "en_desc": exc.en}})

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if fault is Fault.RATE_LIMIT:
            return self.gateway_error(JdGatewayError(
                "2", "调用次数超限，请稍后再试", "App Call Limited"))
        return self.gateway_error(JdGatewayError(
            "65", "平台连接后端服务超时，请重试", "Platform back-end timeout, try again"))

    # -- rendering ---------------------------------------------------------------------------
    @staticmethod
    def visible(order: SandboxOrder) -> bool:
        return order.state not in ("unpaid", "cancelled")

    @staticmethod
    def order_state(order: SandboxOrder) -> str:
        return {
            "paid": "WAIT_SELLER_STOCK_OUT", "part_shipped": "WAIT_GOODS_RECEIVE_CONFIRM",
            "shipped": "WAIT_GOODS_RECEIVE_CONFIRM", "completed": "FINISHED_L",
            "refunded": "TRADE_CANCELED",
        }[order.state]

    def render_order(self, order: SandboxOrder) -> dict[str, Any]:
        state = self.order_state(order)
        by_carrier: dict[str, list[str]] = {}
        for shipment in order.shipments:
            if shipment.tracking_number:
                by_carrier.setdefault(shipment.carrier_code, []).append(shipment.tracking_number)
        return {
            "orderId": order.order_id, "venderId": "20001", "orderType": "22",
            "payType": "4-在线支付", "orderState": state, "orderStateRemark": state,
            "orderStartTime": format_beijing(order.created),
            "modified": format_beijing(order.modified),
            "paymentConfirmTime": format_beijing(order.paid_at) if order.paid_at else "",
            "orderEndTime": format_beijing(order.modified) if state == "FINISHED_L" else "",
            "orderTotalPrice": yuan(order.goods_fen),
            "orderSellerPrice": yuan(order.goods_fen - order.discount_fen),
            "orderPayment": yuan(order.paid_fen), "freightPrice": yuan(order.post_fee_fen),
            "sellerDiscount": yuan(order.discount_fen), "balanceUsed": "0.00",
            "orderRemark": order.buyer_remark, "venderRemark": "",
            "consigneeInfo": {
                "fullname": order.receiver, "mobile": order.phone, "telephone": "",
                "province": order.province, "city": order.city, "county": order.district,
                "town": "", "fullAddress": f"{order.province}{order.city}{order.district}"
                                           f"{order.detail}"},
            "itemInfoList": [{
                "skuId": line.sku_id, "outerSkuId": line.outer_id, "wareId": line.item_id,
                "skuName": line.title, "jdPrice": yuan(line.price_fen),
                "itemTotal": str(line.quantity), "productNo": "", "giftPoint": "0",
            } for line in order.lines],
            "waybill": "|".join(",".join(numbers) for numbers in by_carrier.values()),
            "logisticsId": "|".join(by_carrier),
        }

    @staticmethod
    def pick(rendered: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
        return {name: rendered[name] for name in fields if name in rendered}

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _fields(business: Mapping[str, Any]) -> list[str]:
        raw = str(business.get("optional_fields") or "").strip()
        if not raw:
            raise JdBusinessError("optional_fields不能为空", "optional_fields is required")
        return [name.strip() for name in raw.split(",") if name.strip()]

    @staticmethod
    def _int(business: Mapping[str, Any], name: str) -> int:
        try:
            return int(str(business[name]))
        except (KeyError, ValueError):
            raise JdBusinessError(f"{name}参数错误", f"invalid {name}") from None

    def _visible_order(self, order_id: str) -> SandboxOrder:
        order = self.orders.get(order_id)
        if order is None or not self.visible(order):
            raise JdBusinessError("订单不存在", "order does not exist")
        return order

    def _sku(self, sku_id: str) -> tuple[SandboxItem, SandboxSku]:
        for item in self.items.values():
            for sku in item.skus:
                if sku.sku_id == sku_id:
                    return item, sku
        raise JdBusinessError("SKU不存在", "sku does not exist")

    # -- orders ------------------------------------------------------------------------------
    @staticmethod
    def _api_failure(zh: str, en: str) -> dict[str, Any]:
        return {"searchorderinfo_result": {"apiResult": {
            "success": False, "chineseErrCode": zh, "englishErrCode": en, "numberCode": 100},
            "orderTotal": 0, "orderInfoList": []}}

    def _order_search(self, business: dict[str, Any]) -> dict[str, Any]:
        try:
            fields = self._fields(business)
            page = self._int(business, "page")
            size = self._int(business, "page_size")
        except JdBusinessError as exc:
            return self._api_failure(exc.zh, exc.en)
        states = [s.strip() for s in str(business.get("order_state") or "").split(",")
                  if s.strip()]
        if not states or any(s not in SEARCHABLE_STATES for s in states):
            return self._api_failure("order_state参数错误", "invalid order_state")
        if page < 1 or not 1 <= size <= MAX_ORDER_PAGE_SIZE:
            return self._api_failure("page_size不能超过100", "page_size must be 1-100")
        start = self._date(business.get("start_date"))
        end = self._date(business.get("end_date"))
        if start is None or end is None:
            if start is None and end is None and states == ["WAIT_SELLER_STOCK_OUT"]:
                end = self.clock.now()
                start = end - MAX_SEARCH_WINDOW
            else:
                return self._api_failure("开始时间和结束时间不能为空", "dates are required")
        if end < start or end - start > MAX_SEARCH_WINDOW:
            return self._api_failure("查询时间跨度不能超过一个月", "window exceeds one month")
        by_created = str(business.get("dateType", "0")) == "1"
        rows = []
        for order in self.orders.values():
            if not self.visible(order) or self.order_state(order) not in states:
                continue
            moment = (order.created if by_created else order.modified).replace(microsecond=0)
            if start <= moment <= end:
                rows.append((moment, order.order_id, order))
        rows.sort(key=lambda row: (row[0], row[1]),
                  reverse=str(business.get("sortType", "0")) == "1")
        chunk = rows[(page - 1) * size: page * size]
        return {"searchorderinfo_result": {
            "apiResult": {"success": True, "chineseErrCode": "成功", "englishErrCode": "success",
                          "numberCode": 10100000},
            "orderTotal": len(rows),
            "orderInfoList": [self.pick(self.render_order(order), fields)
                              for _, _, order in chunk]}}

    def _date(self, raw: Any) -> datetime | None:
        if raw in (None, ""):
            return None
        try:
            return datetime.strptime(str(raw), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        except ValueError:
            raise JdBusinessError("时间格式错误", "bad date format") from None

    def _order_get(self, business: dict[str, Any]) -> dict[str, Any]:
        fields = self._fields(business)
        order_id = str(business.get("order_id") or "")
        if not order_id:
            raise JdBusinessError("order_id不能为空", "order_id is required")
        order = self.orders.get(order_id)
        if order is None or not self.visible(order):
            return {"orderDetailInfo": {"apiResult": {
                "success": False, "chineseErrCode": "订单不存在",
                "englishErrCode": "order does not exist", "numberCode": 100}}}
        return {"orderDetailInfo": {
            "apiResult": {"success": True, "chineseErrCode": "成功", "englishErrCode": "success",
                          "numberCode": 10100000},
            "orderInfo": self.pick(self.render_order(order), fields)}}

    def _shipment(self, business: dict[str, Any]) -> dict[str, Any]:
        try:
            self._ship(business)
        except JdBusinessError as exc:
            return {"sopjosshipment_result": {"success": False, "chineseErrCode": exc.zh,
                                              "englishErrCode": exc.en, "errorCode": exc.code}}
        return {"sopjosshipment_result": {"success": True, "chineseErrCode": "成功",
                                          "englishErrCode": "success", "errorCode": ""}}

    def _ship(self, business: dict[str, Any]) -> None:
        order = self._visible_order(str(business.get("orderId") or ""))
        carriers = [c for c in str(business.get("logiCoprId") or "").split("|") if c]
        numbers = str(business.get("logiNo") or "")
        groups = numbers.split("|") if numbers else []
        if not carriers or any(c not in DELIVERY_COMPANIES for c in carriers):
            raise JdBusinessError("物流公司ID不正确", "invalid logistics company id")
        if carriers != [MANUFACTURER_DELIVERY] and len(groups) != len(carriers):
            raise JdBusinessError("运单号不能为空", "waybill number is required")
        pairs = [(c, n) for c, group in zip(carriers, groups or [""], strict=False)
                 for n in (group.split(",") if group else [""])]
        for carrier, number in pairs:
            canonical = DELIVERY_COMPANIES[carrier][1]
            if canonical and not tracking_matches(canonical, number):
                raise JdBusinessError("运单号不符合规则", "waybill does not match the carrier")
        state = self.order_state(order)
        if state in ("WAIT_GOODS_RECEIVE_CONFIRM", "FINISHED_L"):
            raise JdBusinessError("订单已出库，不能重复出库", "order already shipped")
        if state != "WAIT_SELLER_STOCK_OUT":
            raise JdBusinessError("订单状态不正确，不能出库", "order state does not allow shipping")
        for other in self.orders.values():
            if other.order_id != order.order_id and any(
                    s.tracking_number and s.tracking_number in {n for _, n in pairs}
                    for s in other.shipments):
                raise JdBusinessError("运单号已被其他订单使用", "waybill used by another order")
        for carrier, number in pairs:
            kept = "" if carrier == MANUFACTURER_DELIVERY else number
            self.record_shipment(order, carrier, kept, ())

    # -- listings ----------------------------------------------------------------------------
    def _update_stock(self, business: dict[str, Any]) -> dict[str, Any]:
        item, sku = self._sku(str(business.get("skuId") or ""))
        quantity = self._int(business, "stockNum")
        if quantity < 0:
            raise JdBusinessError("库存数不能为负数", "stockNum must not be negative")
        self._set_stock(item, sku, quantity)
        return {"success": True}

    def _search_skus(self, business: dict[str, Any]) -> dict[str, Any]:
        page = self._int(business, "pageNo") if "pageNo" in business else 1
        size = self._int(business, "page_size") if "page_size" in business else 20
        if page < 1 or not 1 <= size <= MAX_SKU_PAGE_SIZE:
            raise JdBusinessError("page_size超出范围", "page_size out of range")
        statuses = [str(s) for s in business.get("skuStatuValue") or ("1", "2")]
        rows = [(item, sku) for item in sorted(self.items.values(), key=lambda i: i.item_id)
                for sku in item.skus if ("1" if item.on_sale else "2") in statuses]
        chunk = rows[(page - 1) * size: page * size]
        wanted = [f.strip() for f in str(business.get("field") or "").split(",") if f.strip()]
        data = [{
            "skuId": int(sku.sku_id), "wareId": int(item.item_id), "skuName": item.title,
            "wareTitle": item.title, "outerId": sku.outer_id, "jdPrice": yuan(sku.price_fen),
            "stockNum": sku.quantity, "status": 1 if item.on_sale else 2,
            "saleAttrs": [{"attrValueAlias": list(sku.spec.values())}],
            "created": int(item.created.timestamp() * 1000),
            "modified": int(item.modified.timestamp() * 1000),
        } for item, sku in chunk]
        if wanted:  # like every JOS read, only the fields asked for come back
            data = [self.pick(row, wanted) for row in data]
        return {"page": {"pageNo": page, "pageSize": size, "totalItem": len(rows), "data": data}}

    def _update_price(self, business: dict[str, Any]) -> dict[str, Any]:
        item, sku = self._sku(str(business.get("skuId") or ""))
        try:
            price = yuan_to_fen(str(business.get("jdPrice")))
        except MoneyError:
            raise JdBusinessError("京东价格式错误", "invalid jdPrice") from None
        if price <= 0:
            raise JdBusinessError("京东价必须大于0", "jdPrice must be positive")
        sku.price_fen = price
        item.modified = self.clock.now()
        return {"success": True}

    def _up_or_down(self, business: dict[str, Any]) -> dict[str, Any]:
        item = self.items.get(str(business.get("wareId") or ""))
        if item is None:
            raise JdBusinessError("商品不存在", "ware does not exist")
        op = str(business.get("opType") or "")
        if op not in ("1", "2"):
            raise JdBusinessError("opType参数错误", "invalid opType")
        item.on_sale = op == "1"
        item.modified = self.clock.now()
        return {"success": True}

    def add_item(self, title: str, outer_id: str, price_fen: int, *,
                 skus: Sequence[tuple[str, int, int]] = (), quantity: int = 0,
                 on_sale: bool = True,
                 category_id: str = "9765", spec_name: str = "颜色") -> SandboxItem:
        # every JD ware sells through SKUs
        return super().add_item(title, outer_id, price_fen,
                                skus=skus or [(outer_id, quantity, price_fen)],
                                on_sale=on_sale, category_id=category_id, spec_name=spec_name)

    # -- auth --------------------------------------------------------------------------------
    def _refresh(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("app_key") != self.app_key or params.get("app_secret") != self.app_secret:
            return {"code": 1002, "msg": "app_key或app_secret错误", "requestId": self._rid()}
        if params.get("grant_type") != "refresh_token":
            return {"code": 1003, "msg": "grant_type错误", "requestId": self._rid()}
        rotated = self.rotate_tokens(params.get("refresh_token", ""))
        if rotated is None:
            return {"code": 1004, "msg": "refresh_token无效或已过期", "requestId": self._rid()}
        access, refresh = rotated
        return {"code": 0, "access_token": access, "refresh_token": refresh,
                "expires_in": 86400, "scope": "snsapi_base", "open_id": "sandbox-open-id",
                "uid": "sandbox-uid", "time": int(self.clock.now().timestamp() * 1000),
                "token_type": "bearer"}

    def _rid(self) -> str:
        return f"sandbox-{next(self._token_seq)}"
