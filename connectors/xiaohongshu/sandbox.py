"""A faithful simulator of the Xiaohongshu common_controller gateway.

It verifies what the gateway verifies (appId, timestamp skew, md5 sign over the system
params, accessToken for merchant APIs), enforces the documented limits (getOrderList windows
of 24 h by create time / 30 min by update time, pageNo ≤ 100, pageSize ≤ 100), renders the
shared state in the documented shapes and statuses, and signs pushes with the header scheme.
Codes the docs do not publish come from `XhsErrorCodes` (see client.py), the same table the
client reads, so a change of either stays in one place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from connectors.xiaohongshu.client import (
    API_VERSION,
    GATEWAY_PATH,
    XhsErrorCodes,
    api_sign,
    push_sign,
)
from connectors.xiaohongshu.mapping import EXPRESS_COMPANIES, SELF_DELIVERY
from core.clock import Clock
from core.sandbox import (
    Fault,
    PushDelivery,
    Sandbox,
    SandboxItem,
    SandboxLine,
    SandboxOrder,
    SandboxRequest,
    SandboxResponse,
    SandboxSku,
)
from core.signing import constant_time_equal

ACCESS_TOKEN_LIFETIME = timedelta(days=7)
REFRESH_TOKEN_LIFETIME = timedelta(days=14)
REFRESH_REISSUE_WINDOW = timedelta(minutes=30)  # more time left: refresh returns the same tokens
OLD_TOKEN_GRACE = timedelta(minutes=5)
TIMESTAMP_SKEW = 600  # seconds; the real tolerance is not published
WINDOW_BY_TIME_TYPE = {1: 24 * 3600, 2: 30 * 60}
MAX_PAGE_NO = 100
MAX_PAGE_SIZE = 100
MAX_PRICE_FEN = 10_000_000

ORDER_STATUS_BY_STATE = {"unpaid": 1, "paid": 4, "part_shipped": 5, "shipped": 6,
                         "completed": 7, "cancelled": 9}


class _Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _ms(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


class XhsSandbox(Sandbox):
    platform = "xiaohongshu"
    item_id_base = 0x64FF_0000_0000_0000_0000_0000
    sku_id_base = 0x6123_0000_0000_0000_0000_0000
    order_id_base = 7_682_000_000_000_000

    def __init__(self, *, app_key: str = "sandbox-app", app_secret: str = "sandbox-secret-0001",
                 access_token: str = "sandbox-access-token-1",
                 refresh_token: str = "sandbox-refresh-token-1",
                 clock: Clock | None = None, seed: int = 0, timeout_seconds: float = 30.0,
                 push_url: str = "/erpsync/push/xiaohongshu?shop=test-shop",
                 codes: XhsErrorCodes | None = None) -> None:
        super().__init__(app_key=app_key, app_secret=app_secret, access_token=access_token,
                         refresh_token=refresh_token, clock=clock, seed=seed,
                         timeout_seconds=timeout_seconds)
        self.push_url = push_url
        self.codes = codes or XhsErrorCodes()
        now = self.clock.now()
        self.token_expiry: dict[str, datetime] = {access_token: now + ACCESS_TOKEN_LIFETIME}
        self.refresh_expiry: dict[str, datetime] = {refresh_token: now + REFRESH_TOKEN_LIFETIME}
        self.sku_buyable: dict[str, bool] = {}
        self.express_companies = frozenset(EXPRESS_COMPANIES.values()) | {SELF_DELIVERY}
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "oauth.refreshToken": self._refresh_token,
            "order.getOrderList": self._order_list,
            "order.getOrderDetail": self._order_detail,
            "order.orderDeliver": self._order_deliver,
            "inventory.syncSkuStock": self._sync_stock,
            "product.getDetailSkuList": self._detail_sku_list,
            "product.updateSkuPrice": self._update_price,
            "product.updateSkuAvailable": self._update_available,
            "product.createItemAndSku": self._create_item,
            "product.updateItemAndSku": self._update_item,
        }

    # -- ids: 24-hex item/SKU ids and P-prefixed order ids, as the platform shows them ----
    def new_item_id(self) -> str:
        return f"{self.item_id_base + next(self._ids):024x}"

    def new_sku_id(self) -> str:
        return f"{self.sku_id_base + next(self._ids):024x}"

    def new_order_id(self) -> str:
        return f"P{self.order_id_base + next(self._ids)}"

    # -- tokens: lifetimes and the documented refresh rules ---------------------------------
    def token_valid(self, token: str) -> bool:
        expiry = self.token_expiry.get(token)
        return token in self.access_tokens and expiry is not None and expiry > self.clock.now()

    def _refresh_token(self, body: dict[str, Any]) -> Any:
        refresh = self._required(body, "refreshToken")
        now = self.clock.now()
        if refresh not in self.refresh_tokens or self.refresh_expiry.get(refresh, now) <= now:
            raise _Refusal(self.codes.auth_expired[0], "refreshToken已失效，请重新授权")
        live = [t for t in self.access_tokens if self.token_valid(t)]
        if live and self.token_expiry[live[0]] - now > REFRESH_REISSUE_WINDOW:
            access = live[0]
        else:
            rotated = self.rotate_tokens(refresh)
            assert rotated is not None
            access, refresh = rotated
            self.token_expiry[access] = now + ACCESS_TOKEN_LIFETIME
            self.refresh_expiry[refresh] = now + REFRESH_TOKEN_LIFETIME
            for old in live:  # the previous access token keeps working for five minutes
                self.access_tokens.add(old)
                self.token_expiry[old] = min(self.token_expiry[old], now + OLD_TOKEN_GRACE)
        return {
            "accessToken": access, "accessTokenExpiresAt": _ms(self.token_expiry[access]),
            "refreshToken": refresh, "refreshTokenExpiresAt": _ms(self.refresh_expiry[refresh]),
            "sellerId": "sandbox-seller", "sellerName": "沙箱小店",
        }

    # -- protocol ----------------------------------------------------------------------------
    def api_name(self, request: SandboxRequest) -> str:
        try:
            body = request.json()
        except ValueError:
            return "?"
        return str(body.get("method") or "?") if isinstance(body, dict) else "?"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path != GATEWAY_PATH:
            return SandboxResponse(404, b'{"status":404,"error":"Not Found"}',
                                   {"content-type": "application/json"})
        if request.method != "POST":
            return SandboxResponse(405, b'{"status":405,"error":"Method Not Allowed"}',
                                   {"content-type": "application/json"})
        try:
            body = request.json()
            if not isinstance(body, dict):
                raise _Refusal(self.codes.bad_request[0], "请求体必须是JSON对象")
            data = self._dispatch_method(body)
        except ValueError:
            return self._envelope_error(self.codes.bad_request[0], "请求体不是合法JSON")
        except _Refusal as refusal:
            return self._envelope_error(refusal.code, refusal.message)
        return SandboxResponse.of_json({"success": True, "error_code": 0, "error_msg": "",
                                        "data": data})

    def _dispatch_method(self, body: dict[str, Any]) -> Any:
        for key in ("appId", "timestamp", "version", "method", "sign"):
            if body.get(key) in (None, ""):
                raise _Refusal(self.codes.bad_request[0], f"缺少系统参数{key}")
        if body["appId"] != self.app_key:
            raise _Refusal(self.codes.bad_sign[0], "appId不存在")
        if str(body["version"]) != API_VERSION:
            raise _Refusal(self.codes.bad_request[0], "version不支持")
        timestamp = str(body["timestamp"])
        if not timestamp.isdigit() or abs(int(timestamp) - self.clock.now().timestamp()) > TIMESTAMP_SKEW:
            raise _Refusal(self.codes.bad_sign[0], "timestamp已过期")
        method = str(body["method"])
        expected = api_sign(method, self.app_key, timestamp, self.app_secret, str(body["version"]))
        if not constant_time_equal(str(body["sign"]), expected):
            raise _Refusal(self.codes.bad_sign[0], "签名错误")
        handler = self._handlers.get(method)
        if handler is None:
            raise _Refusal(self.codes.bad_request[0], f"method {method} 不存在")
        if not method.startswith("oauth.") and not self.token_valid(str(body.get("accessToken") or "")):
            raise _Refusal(self.codes.auth_expired[0], "accessToken已过期或无效")
        return handler(body)

    def _envelope_error(self, code: str, message: str) -> SandboxResponse:
        return SandboxResponse.of_json({"success": False, "error_code": int(code),
                                        "error_msg": message, "data": None})

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if fault is Fault.RATE_LIMIT:
            return self._envelope_error(self.codes.throttled[0], "触发Method维度的限流")
        return self._envelope_error(self.codes.system_error[0], "系统调用异常，请稍后重试")

    # -- param helpers -------------------------------------------------------------------------
    def _required(self, body: Mapping[str, Any], key: str) -> Any:
        value = body.get(key)
        if value is None or value == "" or value == []:
            raise _Refusal(self.codes.bad_request[0], f"参数{key}不能为空")
        return value

    def _int_param(self, body: Mapping[str, Any], key: str, default: int | None = None) -> int:
        value = body.get(key, default)
        if value is None:
            raise _Refusal(self.codes.bad_request[0], f"参数{key}不能为空")
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdigit():
            raise _Refusal(self.codes.bad_request[0], f"参数{key}格式错误")
        return int(value)

    def _order(self, body: Mapping[str, Any]) -> SandboxOrder:
        order = self.orders.get(str(self._required(body, "orderId")))
        if order is None:
            raise _Refusal(self.codes.not_found[0], "订单不存在或不属于该商家")
        return order

    def _sku(self, sku_id: str) -> tuple[SandboxItem, SandboxSku | None]:
        for item in self.items.values():
            if not item.skus and item.item_id == sku_id:
                return item, None
            for sku in item.skus:
                if sku.sku_id == sku_id:
                    return item, sku
        raise _Refusal(self.codes.not_found[0], f"sku {sku_id} 不存在")

    # -- orders --------------------------------------------------------------------------------
    def _order_list(self, body: dict[str, Any]) -> Any:
        start = self._int_param(body, "startTime")
        end = self._int_param(body, "endTime")
        time_type = self._int_param(body, "timeType")
        if time_type not in WINDOW_BY_TIME_TYPE:
            raise _Refusal(self.codes.bad_request[0], "timeType只能为1或2")
        if end < start or end - start > WINDOW_BY_TIME_TYPE[time_type]:
            raise _Refusal(self.codes.bad_request[0],
                           "查询时间范围超过限制（创建时间≤24小时，更新时间≤30分钟）")
        page_no = self._int_param(body, "pageNo", 1)
        page_size = self._int_param(body, "pageSize", 50)
        if not 1 <= page_no <= MAX_PAGE_NO or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _Refusal(self.codes.bad_request[0], "pageNo最大100，pageSize最大100")
        wanted_status = body.get("orderStatus")

        def moment(order: SandboxOrder) -> int:
            return _ms(order.created if time_type == 1 else order.modified)

        chosen = sorted(
            (o for o in self.orders.values()
             if start * 1000 <= moment(o) <= end * 1000
             and (wanted_status in (None, 0, "") or self._status(o)[0] == int(wanted_status))),
            key=lambda o: (moment(o), o.order_id))
        page = chosen[(page_no - 1) * page_size: page_no * page_size]
        return {"total": len(chosen), "pageNo": page_no, "pageSize": page_size,
                "maxPageNo": math.ceil(len(chosen) / page_size),
                "orderList": [self._order_row(o) for o in page]}

    def _order_detail(self, body: dict[str, Any]) -> Any:
        return self._order_detail_json(self._order(body))

    def _order_deliver(self, body: dict[str, Any]) -> Any:
        order = self._order(body)
        express_no = str(self._required(body, "expressNo"))
        company = str(self._required(body, "expressCompanyCode"))
        if company not in self.express_companies:
            raise _Refusal(self.codes.bad_request[0], f"快递公司编码{company}不存在")
        if order.state == "unpaid":
            raise _Refusal(self.codes.bad_request[0], "订单未支付，不能发货")
        if order.state in ("cancelled", "refunded"):
            raise _Refusal(self.codes.bad_request[0], "订单已取消或已关闭，不能发货")
        if body.get("unpack"):
            sku_ids = body.get("skuIdList")
            if not isinstance(sku_ids, list) or not sku_ids:
                raise _Refusal(self.codes.bad_request[0], "拆包发货时skuIdList必填")
            by_sku = {self._line_sku(line): line for line in order.lines}
            unknown = [s for s in sku_ids if s not in by_sku]
            if unknown:
                raise _Refusal(self.codes.bad_request[0], f"sku {unknown[0]} 不属于该订单")
            chosen = [by_sku[s] for s in sku_ids]
        else:
            chosen = [line for line in order.lines if line.state == "open"]
        if not chosen or any(line.state != "open" for line in chosen):
            raise _Refusal(self.codes.bad_request[0], "订单商品已发货，请勿重复发货")
        self.record_shipment(order, company, express_no, [line.line_id for line in chosen])
        return None

    # -- listings ------------------------------------------------------------------------------
    def _occupied(self, sku_id: str) -> int:
        return sum(line.quantity for o in self.orders.values() if o.state == "unpaid"
                   for line in o.lines if self._line_sku(line) == sku_id)

    def _sync_stock(self, body: dict[str, Any]) -> Any:
        sku_id = str(self._required(body, "skuId"))
        qty = self._int_param(body, "qty")
        if qty < 0:
            raise _Refusal(self.codes.bad_request[0], "库存数量不能为负数")
        item, sku = self._sku(sku_id)
        occupied = self._occupied(sku_id)
        # qty is the new total; holds by unpaid orders stay, the sellable part takes the rest
        self._set_stock(item, sku, max(qty - occupied, 0))
        available = sku.quantity if sku else item.quantity
        return {"skuStock": {"available": available, "total": available + occupied,
                             "occupiedQuantity": occupied, "productChannelQuantity": 0,
                             "productChannelOccupiedQuantity": 0, "activityChannelQuantity": 0,
                             "activityChannelOccupiedQuantity": 0},
                "skuStockInfoWithWhcode": [], "apiVersion": "v1"}

    def _sku_rows(self) -> list[tuple[SandboxItem, SandboxSku | None]]:
        rows: list[tuple[SandboxItem, SandboxSku | None]] = []
        for item in sorted(self.items.values(), key=lambda i: (i.created, i.item_id)):
            rows.extend([(item, s) for s in item.skus] if item.skus else [(item, None)])
        return rows

    def _detail_sku_list(self, body: dict[str, Any]) -> Any:
        page_no = self._int_param(body, "pageNo", 1)
        page_size = self._int_param(body, "pageSize", 50)
        if page_no < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _Refusal(self.codes.bad_request[0], "pageSize最大100")
        rows = self._sku_rows()
        if body.get("id"):
            rows = [(i, s) for i, s in rows if i.item_id == str(body["id"])]
        page = rows[(page_no - 1) * page_size: page_no * page_size]
        return {"data": [self._sku_row(i, s) for i, s in page], "pageNO": page_no,
                "pageSize": page_size, "total": len(rows)}

    def _update_price(self, body: dict[str, Any]) -> Any:
        sku_id = str(self._required(body, "skuId"))
        prices = self._required(body, "price")
        if not isinstance(prices, list):
            raise _Refusal(self.codes.bad_request[0], "price必须是列表")
        item, sku = self._sku(sku_id)
        for entry in prices:
            fen = self._int_param(entry, "price")
            if entry.get("skuId") != sku_id:
                raise _Refusal(self.codes.bad_request[0], "price.skuId与skuId不一致")
            if not 0 < fen <= MAX_PRICE_FEN:
                raise _Refusal(self.codes.bad_request[0], "售价需大于0且不超过10万元")
            if sku is None:
                item.price_fen = fen
            else:
                sku.price_fen = fen
        item.modified = self.clock.now()
        return None

    def _update_available(self, body: dict[str, Any]) -> Any:
        sku_id = str(self._required(body, "skuId"))
        available = body.get("available")
        if not isinstance(available, bool):
            raise _Refusal(self.codes.bad_request[0], "available必须为布尔值")
        item, _ = self._sku(sku_id)
        self.sku_buyable[sku_id] = available
        ids = [s.sku_id for s in item.skus] or [item.item_id]
        item.on_sale = any(self.sku_buyable.get(i, True) for i in ids)
        item.modified = self.clock.now()
        return None

    def _new_sku(self, entry: Mapping[str, Any]) -> SandboxSku:
        for key in ("deliveryTime", "logisticsPlanId", "price"):
            self._required(entry, key)
        price = self._int_param(entry, "price")
        original = entry.get("originalPrice")
        if not 0 < price <= MAX_PRICE_FEN or (original is not None and int(original) <= price):
            raise _Refusal(self.codes.bad_request[0], "售价需大于0、小于市场价且不超过10万元")
        stock = self._int_param(entry, "stock", 0)
        if stock < 0:
            raise _Refusal(self.codes.bad_request[0], "库存不能为负数")
        spec = {str(v.get("name")): str(v.get("value")) for v in entry.get("variants") or ()}
        return SandboxSku(self.new_sku_id(), str(entry.get("erpCode") or ""), stock, price, spec)

    def _create_item(self, body: dict[str, Any]) -> Any:
        for key in ("name", "createSkuList", "shippingTemplateId", "categoryId", "images"):
            self._required(body, key)
        now = self.clock.now()
        skus = [self._new_sku(entry) for entry in body["createSkuList"]]
        item = SandboxItem(
            item_id=self.new_item_id(), title=str(body["name"]),
            outer_id=str(body.get("articleNo") or ""), price_fen=min(s.price_fen for s in skus),
            on_sale=True, skus=skus, category_id=str(body["categoryId"]), modified=now,
            created=now, images=[str(i.get("link")) for i in body["images"]])
        self.items[item.item_id] = item
        return self._item_answer(item)

    def _update_item(self, body: dict[str, Any]) -> Any:
        item_id = str(self._required(body, "itemId"))
        item = self.items.get(item_id)
        if item is None:
            raise _Refusal(self.codes.not_found[0], f"item {item_id} 不存在")
        if body.get("name"):
            item.title = str(body["name"])
        for entry in body.get("updateSkuList") or ():
            _, sku = self._sku(str(self._required(entry, "skuId")))
            if sku is None:
                continue
            if entry.get("price") is not None:
                sku.price_fen = self._int_param(entry, "price")
            if entry.get("erpCode") is not None:
                sku.outer_id = str(entry["erpCode"])
        item.skus.extend(self._new_sku(entry) for entry in body.get("createSkuList") or ())
        item.modified = self.clock.now()
        return self._item_answer(item)

    def _item_answer(self, item: SandboxItem) -> Any:
        return {"itemId": item.item_id, "name": item.title,
                "skuList": [{"skuId": s.sku_id, "erpCode": s.outer_id, "price": s.price_fen,
                             "stock": s.quantity, "variants": [
                                 {"name": k, "value": v} for k, v in s.spec.items()]}
                            for s in item.skus]}

    # -- rendering -------------------------------------------------------------------------------
    @staticmethod
    def _line_sku(line: SandboxLine) -> str:
        return line.sku_id or line.item_id

    def _status(self, order: SandboxOrder) -> tuple[int, int]:
        """(orderStatus, orderAfterSalesStatus)"""
        if order.state == "refunded":
            return (8 if order.shipments else 9), 3
        return ORDER_STATUS_BY_STATE[order.state], 1

    def _order_row(self, order: SandboxOrder) -> dict[str, Any]:
        status, after_sale = self._status(order)
        first_ship = order.shipments[0].shipped_at if order.shipments else None
        return {
            "orderId": order.order_id, "orderType": 1, "orderStatus": status,
            "orderAfterSalesStatus": after_sale, "cancelStatus": 0,
            "createdTime": _ms(order.created), "paidTime": _ms(order.paid_at),
            "updateTime": _ms(order.modified), "deliveryTime": _ms(first_ship),
            "cancelTime": _ms(order.modified) if order.state in ("cancelled", "refunded") else 0,
            "finishTime": _ms(order.modified) if order.state == "completed" else 0,
            "promiseLastDeliveryTime": _ms(order.created + timedelta(hours=48)),
            "planInfoId": "sandbox-plan", "planInfoName": "默认物流方案",
            "receiverCountryId": "null", "receiverCountryName": "中国",
            "receiverProvinceId": "null", "receiverProvinceName": order.province,
            "receiverCityId": "null", "receiverCityName": order.city,
            "receiverDistrictId": "null", "receiverDistrictName": order.district,
            "customerRemark": order.buyer_remark, "sellerRemark": "", "sellerRemarkFlag": 0,
            "originalOrderId": "", "logistics": "red_auto", "orderTagList": [],
        }

    def _order_detail_json(self, order: SandboxOrder) -> dict[str, Any]:
        detail = self._order_row(order)
        skus = []
        for line in order.lines:
            paid = line.price_fen * line.quantity
            skus.append({
                "skuId": self._line_sku(line), "skuName": line.title, "erpcode": line.outer_id,
                "skuSpec": "", "skuImage": "", "skuQuantity": line.quantity,
                "skuDetailList": [{"skuId": self._line_sku(line), "erpCode": line.outer_id,
                                   "quantity": 1, "pricePerSku": line.price_fen,
                                   "paidAmountPerSku": line.price_fen,
                                   "merchantDiscountPerSku": 0, "redDiscountPerSku": 0,
                                   "rawPricePerSku": line.price_fen}],
                "totalPaidAmount": paid, "totalMerchantDiscount": 0, "totalRedDiscount": 0,
                "totalTaxAmount": 0, "skuTag": 0, "isChannel": False, "deliveryMode": 0,
                "skuAfterSaleStatus": 3 if line.state == "refunded" else 1,
                "itemId": line.item_id,
            })
        first = order.shipments[0] if order.shipments else None
        by_line = {line.line_id: self._line_sku(line) for line in order.lines}
        detail.update({
            "skuList": skus,
            "totalPayAmount": order.paid_fen, "totalShippingFree": order.post_fee_fen,
            "merchantActualReceiveAmount": order.paid_fen,
            "unpack": len(order.shipments) > 1,
            "expressTrackingNo": first.tracking_number if first else "",
            "expressCompanyCode": first.carrier_code if first else "",
            "receiverName": order.receiver, "receiverPhone": order.phone,
            "receiverAddress": order.detail, "openAddressId": f"addr-{order.order_id}",
            "simpleDeliveryOrderList": [
                {"status": 1, "expressTrackingNo": s.tracking_number,
                 "expressCompanyCode": s.carrier_code,
                 "skuIdList": [by_line[i] for i in s.line_ids]}
                for s in order.shipments],
            "paymentType": 1, "shopId": "sandbox-shop", "userId": "sandbox-buyer",
        })
        return detail

    def _sku_row(self, item: SandboxItem, sku: SandboxSku | None) -> dict[str, Any]:
        sku_id = sku.sku_id if sku else item.item_id
        return {
            "item": {"id": item.item_id, "name": item.title, "categoryId": item.category_id,
                     "attributes": [], "images": list(item.images), "variantIds": [],
                     "isChannel": False, "enableMultiWarehouse": False},
            "sku": {"id": sku_id, "itemId": item.item_id,
                    "erpCode": sku.outer_id if sku else item.outer_id,
                    "price": sku.price_fen if sku else item.price_fen,
                    "originalPrice": (sku.price_fen if sku else item.price_fen) * 2,
                    "stock": sku.quantity if sku else item.quantity,
                    "barcode": "", "ipq": 1, "whcode": "CPartner",
                    "variants": [{"name": k, "value": v} for k, v in (sku.spec if sku else {}).items()],
                    "buyable": item.on_sale and self.sku_buyable.get(sku_id, True)},
        }

    # -- pushes ----------------------------------------------------------------------------------
    def render_push(self, order: SandboxOrder, topic: str) -> PushDelivery | None:
        status, _ = self._status(order)
        message = {"orderId": order.order_id, "orderStatus": status,
                   "updateTime": _ms(order.modified)}
        body = json.dumps([{"msgTag": "msg_fulfillment_status_change", "sellerId": "sandbox-seller",
                            "data": json.dumps(message, separators=(",", ":"))}],
                          ensure_ascii=False).encode()
        parts = urlsplit(self.push_url)
        timestamp = str(int(self.clock.now().timestamp()))
        sign = push_sign(parts.path, dict(parse_qsl(parts.query)), self.app_key, timestamp,
                         self.app_secret)
        return PushDelivery("msg_fulfillment_status_change",
                            {"content-type": "application/json", "app-key": self.app_key,
                             "timestamp": timestamp, "sign": sign}, body)
