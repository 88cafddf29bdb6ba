"""A stateful simulator of the Kuaishou open platform gateway.

It checks the public parameters (appkey, version=1, ms timestamp within the tolerance, the
sign under the signSecret in MD5 hex or HMAC-SHA256 Base64, the access token), takes only
form-encoded POST bodies, pages orders with a cursor ending in "nomore" (≤ 50 per page,
≤ 7-day window, ≤ 90 days back), applies stock *deltas* (1 add / 2 reduce, 0 < n < 9 999 999),
ships whole orders (one SKU line per order; the same waybill again is a success), refreshes
tokens through /oauth2/refresh_token with single-use refresh tokens, and pushes
AES-128-CBC ciphertext under the msgSecret.

Why the order cursor is keyset-shaped (last update time + oid) rather than an offset: the
real cursor's content is undocumented; a keyset cursor is what a cursor API promises (stable
under concurrent change). The connector does not depend on it: it only passes the cursor on.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from connectors.kuaishou.client import (
    REFRESH_API,
    SUCCESS,
    VERSION,
    KuaishouFacts,
    encrypt_push,
    sign,
)
from core.clock import BEIJING
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

# 物流公司编号 (doc 401927): the codes the sandbox accepts
EXPRESS_CODES: Mapping[int, str] = {
    2: "EMS", 3: "申通", 4: "顺丰速运", 5: "天天", 6: "圆通速递", 7: "韵达快运",
    8: "邮政快递包裹", 9: "中通快递", 10: "宅急送", 11: "韵达快递", 12: "中通快运", 14: "京东",
    15: "优速", 17: "德邦", 40: "安能快递", 53: "德邦快递", 77: "联邦快递", 89: "USPS",
    90: "UPS", 97: "邮政标准快递", 100: "壹米滴答", 109: "极兔速递", 113: "菜鸟速递",
    119: "EMS包裹", 136: "京东快运", 139: "邮政电商标快", 9999: "其他",
}

# base lifecycle state -> orderBaseInfo.status
ORDER_STATES: Mapping[str, int] = {
    "unpaid": 10, "paid": 30, "part_shipped": 40, "shipped": 40, "completed": 70,
    "cancelled": 80, "refunded": 80,
}
VIEW_STATUS = {2: 10, 3: 30, 4: 40, 5: 50, 6: 70, 7: 80}  # orderViewStatus -> status

PUSH_EVENTS = {
    "created": "kwaishop_order_addOrder", "paid": "kwaishop_order_paySuccess",
    "shipped": "kwaishop_order_delivering", "completed": "kwaishop_order_orderSuccess",
    "cancelled": "kwaishop_order_orderFail", "refunded": "kwaishop_aftersales_updateRefund",
}

MAX_STOCK = 9_999_999
DEFAULT_SIGN_SECRET = "sandbox-sign-secret-0001"
DEFAULT_MSG_SECRET = base64.b64encode(b"sandbox-msg-key1").decode()  # AES-128 key


class KuaishouError(Exception):
    def __init__(self, result: int, message: str) -> None:
        super().__init__(message)
        self.result = result
        self.message = message


def _bad_param(message: str) -> KuaishouError:
    return KuaishouError(804000, f"参数错误: {message}")


def _ms(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


class KuaishouSandbox(Sandbox):
    platform = "kuaishou"
    max_lines_per_order = 1
    item_id_base = 2_400_000_000_000
    sku_id_base = 2_500_000_000_000
    order_id_base = 2_418_000_000_000_000
    line_id_base = 2_419_000_000_000_000
    seller_id = 1_880_000_123

    def __init__(self, *, app_key: str = "ks680000000000000001",
                 sign_secret: str = DEFAULT_SIGN_SECRET,
                 msg_secret: str = DEFAULT_MSG_SECRET, **kwargs: Any) -> None:
        super().__init__(app_key=app_key, **kwargs)
        self.sign_secret = sign_secret
        self.msg_secret = msg_secret
        self.facts = KuaishouFacts()
        self._request_ids = itertools.count(1)
        self._event_ids = itertools.count(1)
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "open.order.cursor.list": self._cursor_list,
            "open.order.detail": self._order_detail,
            "open.seller.order.goods.deliver": self._deliver,
            "open.item.sku.stock.update": self._stock_update,
            "open.item.sku.list.get": self._sku_list,
            "open.item.list.get": self._item_list,
            "open.item.sku.price.update": self._price_update,
            "open.item.shelf.status.update": self._shelf_update,
        }

    def new_line_id(self, order_id: str, index: int) -> str:
        return str(self.line_id_base + next(self._ids))

    def client_secrets(self) -> dict[str, str]:
        return {"sign_secret": self.sign_secret, "msg_secret": self.msg_secret}

    # -- protocol ------------------------------------------------------------------------
    def api_name(self, request: SandboxRequest) -> str:
        return request.path.strip("/").replace("/", ".")

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        api = self.api_name(request)
        try:
            if api == REFRESH_API:
                return self._refresh(request)
            params = self._verify(api, request)
            handler = self._handlers.get(api)
            if handler is None:
                raise KuaishouError(804000, f"api {api} 不存在")
            try:
                business = json.loads(params["param"] or "{}")
            except ValueError:
                raise _bad_param("param 不是合法的 JSON") from None
            if not isinstance(business, dict):
                raise _bad_param("param 不是对象")
            return self._ok(handler(business))
        except KuaishouError as exc:
            return self._error(exc.result, exc.message)

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if fault is Fault.RATE_LIMIT:
            return self._error(self.facts.rate_limit_result,
                               f"Exceed qps limit, KEY [apiId:{api};appkey:{self.app_key}], "
                               "MAX_QPS [300.0]")
        return SandboxResponse(self.facts.system_busy_http_status, b"Service Unavailable",
                               {"content-type": "text/plain"})

    def _envelope(self, body: dict[str, Any]) -> SandboxResponse:
        body["request_id"] = f"ks{next(self._request_ids):016d}"
        return SandboxResponse.of_json(body)

    def _ok(self, data: Any) -> SandboxResponse:
        return self._envelope({"result": SUCCESS, "code": "1", "msg": "success", "data": data})

    def _error(self, result: int, message: str) -> SandboxResponse:
        return self._envelope({"result": result, "code": str(result), "msg": message,
                               "error_msg": message, "sub_code": "", "sub_msg": ""})

    def _params(self, request: SandboxRequest) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST":
            kind = request.headers.get("content-type", "")
            if not kind.startswith("application/x-www-form-urlencoded"):
                raise _bad_param("Content-Type 只支持 application/x-www-form-urlencoded")
            params.update(parse_qsl(request.body.decode(), keep_blank_values=True))
        return params

    def _verify(self, api: str, request: SandboxRequest) -> dict[str, str]:
        params = self._params(request)
        for name in ("appkey", "method", "version", "param", "timestamp", "signMethod", "sign",
                     "access_token"):
            if name not in params or (name != "param" and not params[name]):
                raise _bad_param(f"缺少公共参数 {name}")
        if params["method"] != api:
            raise _bad_param("method 与请求路径不一致")
        if params["appkey"] != self.app_key:
            raise KuaishouError(self.facts.bad_sign_result, "appkey 不存在")
        if params["version"] != VERSION:
            raise _bad_param("version 只支持 1")
        if params["signMethod"] not in ("MD5", "HMAC_SHA256"):
            raise _bad_param("signMethod 只支持 MD5 / HMAC_SHA256")
        try:
            stamp = datetime.fromtimestamp(int(params["timestamp"]) / 1000, BEIJING)
        except (ValueError, OverflowError):
            raise _bad_param("timestamp 须为毫秒时间戳") from None
        if abs(stamp - self.clock.now()) > self.facts.timestamp_skew:
            raise _bad_param("timestamp 已过期")
        if not hmac.compare_digest(sign(params, self.sign_secret), params["sign"]):
            raise KuaishouError(self.facts.bad_sign_result, "签名校验失败")
        if not self.token_valid(params["access_token"]):
            raise KuaishouError(self.facts.token_expired_result, "鉴权失败: TOKEN过期")
        return params

    # -- rendering -----------------------------------------------------------------------
    def render_order(self, order: SandboxOrder) -> dict[str, Any]:
        line = order.lines[0]
        item = self.items.get(line.item_id)
        sku = next((s for s in item.skus if s.sku_id == line.sku_id), None) if item else None
        refunded = order.state == "refunded"
        return {
            "orderBaseInfo": {
                "oid": int(order.order_id), "status": ORDER_STATES[order.state],
                "payTime": _ms(order.paid_at), "createTime": _ms(order.created),
                "updateTime": _ms(order.modified),
                "sendTime": _ms(order.shipments[0].shipped_at) if order.shipments else 0,
                "recvTime": 0, "totalFee": order.paid_fen, "expressFee": order.post_fee_fen,
                "discountFee": order.discount_fen, "remark": order.buyer_remark,
                "buyerOpenId": "f19a000000000000000000000000b001", "buyerNick": "快**",
                "sellerOpenId": "f19a000000000000000000000000s001", "sellerNick": "沙箱小店",
                "payType": 1 if order.paid_at else 0, "riskCode": 0, "preSale": 0,
                "validPromiseShipmentTimeStamp": _ms(order.created + timedelta(hours=48)),
                "cpsType": 1, "refundTime": _ms(order.modified) if refunded else 0,
                "coType": 0, "activityType": 0, "commentStatus": 0,
                "disableDeliveryReasonCode": [],
            },
            "orderItemInfo": {
                "orderItemId": int(line.line_id), "skuId": int(line.sku_id or 0),
                "relSkuId": 0, "skuNick": line.outer_id,
                "skuDesc": ";".join(f"{k}:{v}" for k, v in (sku.spec if sku else {}).items()),
                "itemId": int(line.item_id), "relItemId": 0, "itemTitle": line.title,
                "itemType": 1, "num": line.quantity, "price": line.price_fen,
                "originalPrice": line.price_fen, "discountFee": 0, "goodsCode": "",
                "warehouseCode": "", "itemPicUrl": "",
            },
            "orderRefundList": [{
                "refundId": int(order.order_id) + 7, "status": 60, "refundFee": order.paid_fen,
                "handlingWay": 10, "refundType": 1, "negotiateStatus": 2,
            }] if refunded else [],
            "orderLogisticsInfo": [{
                "logisticsId": int(order.order_id) * 10 + n, "expressNo": s.tracking_number,
                "expressCode": int(s.carrier_code)} for n, s in enumerate(order.shipments, 1)],
            "orderNote": {"sellerNote": []},
            "orderAddress": {
                "consignee": order.receiver, "mobile": order.phone,
                "province": order.province, "provinceCode": 330000, "city": order.city,
                "cityCode": 330100, "district": order.district, "districtCode": 330106,
                "address": order.detail, "encryptedConsignee": "#sandbox#consignee#",
                "encryptedMobile": "$sandbox$mobile$", "encryptedAddress": "~sandbox~address~",
                "desensitiseConsignee": order.receiver, "desensitiseMobile": order.phone,
                "desensitiseAddress": order.detail,
            },
            "orderCpsInfo": {"distributorId": 0, "distributorName": ""},
            "orderDeliveryInfo": {"enableAppendPackage": True, "maxPackageNum": 5},
        }

    def render_sku(self, item: SandboxItem, sku: SandboxSku) -> dict[str, Any]:
        return {
            "kwaiSkuId": int(sku.sku_id), "kwaiItemId": int(item.item_id), "relSkuId": 0,
            "skuStock": sku.quantity, "skuSalePrice": sku.price_fen, "skuNick": sku.outer_id,
            "specification": ";".join(f"{k}:{v}" for k, v in sku.spec.items()),
            "isValid": 1, "reserveStock": 0, "gtinCode": "", "goodsId": "",
            "createTime": _ms(item.created), "updateTime": _ms(item.modified),
        }

    def render_item(self, item: SandboxItem) -> dict[str, Any]:
        return {
            "kwaiItemId": int(item.item_id), "relItemId": 0, "title": item.title,
            "price": min((s.price_fen for s in item.skus), default=item.price_fen),
            "shelfStatus": 1 if item.on_sale else 0, "auditStatus": 2, "itemStatus": 1,
            "categoryId": int(item.category_id), "mainImageUrl": "",
            "createTime": _ms(item.created), "updateTime": _ms(item.modified),
            "skuList": [self.render_sku(item, s) for s in item.skus],
        }

    # -- orders --------------------------------------------------------------------------
    def _cursor_list(self, p: dict[str, Any]) -> dict[str, Any]:
        for name in ("orderViewStatus", "pageSize", "beginTime", "endTime", "cursor"):
            if p.get(name) is None:
                raise _bad_param(f"{name} 不能为空")
        size, begin, end = int(p["pageSize"]), int(p["beginTime"]), int(p["endTime"])
        if not 1 <= size <= 50:
            raise _bad_param("pageSize 不能超过50")
        now = self.clock.now()
        if begin >= end:
            raise _bad_param("beginTime 必须小于 endTime")
        if end - begin > 7 * 86_400_000:
            raise _bad_param("查询时间范围不能超过7天")
        if begin < _ms(now - timedelta(days=90)):
            raise _bad_param("beginTime 不能早于90天前")
        by_update = int(p.get("queryType", 1)) == 2
        descending = int(p.get("sort", 1)) == 1
        view = int(p["orderViewStatus"])
        created_floor = _ms(now - timedelta(days=240))
        rows = []
        for order in self.orders.values():
            stamp = _ms(order.modified if by_update else order.created)
            if not begin <= stamp <= end:
                continue
            if by_update and _ms(order.created) < created_floor:
                continue
            if view in VIEW_STATUS and ORDER_STATES[order.state] != VIEW_STATUS[view]:
                continue
            rows.append(((stamp, int(order.order_id)), order))
        rows.sort(key=lambda r: r[0], reverse=descending)
        if p["cursor"]:
            try:
                stamp, oid = (int(v) for v in str(p["cursor"]).split("_"))
            except ValueError:
                raise _bad_param("cursor 无效") from None
            rows = [r for r in rows if (r[0] < (stamp, oid) if descending else r[0] > (stamp, oid))]
        page = rows[:size]
        cursor = (f"{page[-1][0][0]}_{page[-1][0][1]}" if len(rows) > size else "nomore")
        return {"pageSize": size, "beginTime": begin, "endTime": end, "cursor": cursor,
                "orderList": [self.render_order(order) for _, order in page]}

    def _order(self, oid: Any) -> SandboxOrder:
        order = self.orders.get(str(oid))
        if order is None:
            raise KuaishouError(21, "订单不存在")
        return order

    def _order_detail(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("oid") is None:
            raise _bad_param("oid 不能为空")
        return {**self.render_order(self._order(p["oid"])),
                "addressUpdateAuditInfo": {"auditStatus": 0, "auditTime": 0,
                                           "timeoutOfAudit": 0}}

    def _deliver(self, p: dict[str, Any]) -> dict[str, Any]:
        for name in ("orderId", "expressNo", "expressCode"):
            if p.get(name) in (None, ""):
                raise _bad_param(f"{name} 不能为空")
        order = self._order(p["orderId"])
        code, number = int(p["expressCode"]), str(p["expressNo"])
        if code not in EXPRESS_CODES:
            raise KuaishouError(11, "快递公司不存在")
        if order.state in ("shipped", "part_shipped", "completed"):
            if any(s.tracking_number == number and s.carrier_code == str(code)
                   for s in order.shipments):
                return {}  # same waybill again: success since 2024-11-25
            raise KuaishouError(21, f"{self.facts.already_shipped_text}，不能重复发货")
        if order.state != "paid":
            raise KuaishouError(21, "订单状态不是待发货，不能发货")
        for other in self.orders.values():
            if other is not order and any(s.tracking_number == number for s in other.shipments):
                raise KuaishouError(11, "同一个运单号对应收件地址超过1个")
        self.record_shipment(order, str(code), number, ())
        return {}

    # -- items ---------------------------------------------------------------------------
    def _item(self, item_id: Any) -> SandboxItem:
        item = self.items.get(str(item_id))
        if item is None:
            raise KuaishouError(21, "商品不存在")
        return item

    def _sku(self, item: SandboxItem, sku_id: Any) -> SandboxSku:
        sku = next((s for s in item.skus if s.sku_id == str(sku_id)), None)
        if sku is None:
            raise KuaishouError(21, "商品不存在: sku 不属于该商品")
        return sku

    def _stock_update(self, p: dict[str, Any]) -> dict[str, Any]:
        for name in ("kwaiItemId", "skuId", "skuChangeStock", "changeType"):
            if p.get(name) is None:
                raise _bad_param(f"{name} 不能为空")
        change, kind = int(p["skuChangeStock"]), int(p["changeType"])
        if not 0 < change < MAX_STOCK:
            raise _bad_param("skuChangeStock 须大于0且小于9999999")
        if kind not in (1, 2):
            raise _bad_param("changeType 只支持 1(增加) 2(减少)")
        item = self._item(p["kwaiItemId"])
        sku = self._sku(item, p["skuId"])
        quantity = sku.quantity + change if kind == 1 else sku.quantity - change
        if quantity < 0:
            raise KuaishouError(21, "库存不足，减少数量不能大于当前库存")
        if quantity > MAX_STOCK:
            raise _bad_param("库存不能超过9999999")
        self._set_stock(item, sku, quantity)
        return {}

    def _sku_list(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("kwaiItemId") is None:
            raise _bad_param("kwaiItemId 不能为空")
        item = self._item(p["kwaiItemId"])
        return {"skuCount": len(item.skus),
                "skuList": [self.render_sku(item, s) for s in item.skus]}

    def _item_list(self, p: dict[str, Any]) -> dict[str, Any]:
        page, size = int(p.get("pageNumber", 1)), int(p.get("pageSize", 100))
        if page < 1 or not 10 <= size <= 100:
            raise _bad_param("pageNumber 从1开始，pageSize 10-100")
        items = sorted(self.items.values(), key=lambda i: int(i.item_id))
        if p.get("kwaiItemId") is not None:
            items = [i for i in items if i.item_id == str(p["kwaiItemId"])]
        chosen = items[(page - 1) * size:page * size]
        return {"totalItemCount": len(items), "currentPageItemCount": len(chosen),
                "currentPageNumber": page, "totalPage": max(1, -(-len(items) // size)),
                "items": [self.render_item(i) for i in chosen]}

    def _price_update(self, p: dict[str, Any]) -> dict[str, Any]:
        for name in ("itemId", "skuId", "price"):
            if p.get(name) is None:
                raise _bad_param(f"{name} 不能为空")
        if not 1 <= int(p["price"]) <= MAX_STOCK:
            raise _bad_param("price 须在 1-9999999 分之间")
        item = self._item(p["itemId"])
        self._sku(item, p["skuId"]).price_fen = int(p["price"])
        item.modified = self.clock.now()
        return {}

    def _shelf_update(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("kwaiItemId") is None or p.get("shelfStatus") not in (0, 1):
            raise _bad_param("kwaiItemId 不能为空，shelfStatus 只支持 0/1")
        item = self._item(p["kwaiItemId"])
        item.on_sale = p["shelfStatus"] == 1
        item.modified = self.clock.now()
        return {}

    # -- OAuth ---------------------------------------------------------------------------
    def _refresh(self, request: SandboxRequest) -> SandboxResponse:
        form = dict(request.query)
        form.update(parse_qsl(request.body.decode(), keep_blank_values=True))

        def oauth_error(result: int, error: str, message: str) -> SandboxResponse:
            return SandboxResponse.of_json({"result": result, "error": error,
                                            "error_msg": message})

        if form.get("grant_type") != "refresh_token":
            return oauth_error(100200104, "unsupported_grant_type", "grant_type 无效")
        if form.get("app_id") != self.app_key or form.get("app_secret") != self.app_secret:
            return oauth_error(100200101, "unauthorized_client", "app_id 或 app_secret 无效")
        pair = self.rotate_tokens(form.get("refresh_token", ""))
        if pair is None:
            return oauth_error(100200102, "access_denied", "refreshToken.discarded")
        access, refresh = pair
        return SandboxResponse.of_json({
            "result": SUCCESS, "access_token": access, "expires_in": 172800,
            "refresh_token": refresh, "refresh_token_expires_in": 15_552_000,
            "open_id": "f19a000000000000000000000000s001",
            "scopes": ["merchant_order", "merchant_item", "merchant_logistics"]})

    # -- pushes --------------------------------------------------------------------------
    def render_push(self, order: SandboxOrder, topic: str) -> PushDelivery | None:
        event = PUSH_EVENTS.get(topic)
        if event is None:
            return None
        oid = int(order.order_id)
        info: dict[str, Any] = {"oid": oid, "sellerId": self.seller_id,
                                "status": ORDER_STATES[order.state],
                                "updateTime": _ms(order.modified)}
        if topic == "created":
            info = {"oid": oid, "sellerId": self.seller_id, "createTime": _ms(order.created),
                    "buyerOpenId": "f19a000000000000000000000000b001"}
        elif topic == "refunded":
            info = {"orderId": oid, "refundId": oid + 7, "handlingWay": 10, "status": 60,
                    "sellerId": self.seller_id, "updateTime": _ms(order.modified)}
        envelope = {
            "eventId": f"evt{next(self._event_ids):013d}", "msgId": f"msg{oid}{topic}",
            "bizId": oid, "userId": self.seller_id,
            "openId": "f19a000000000000000000000000s001", "appKey": self.app_key,
            "event": event, "info": json.dumps(info, separators=(",", ":")),
            "createTime": _ms(self.clock.now()), "test": False,
        }
        body = encrypt_push(self.msg_secret,
                            json.dumps(envelope, ensure_ascii=False).encode())
        return PushDelivery(topic, {"content-type": "text/plain;charset=utf-8"}, body)

    def heartbeat(self) -> PushDelivery:
        """The periodic `{"test": true}` check, encrypted like every push."""
        body = encrypt_push(self.msg_secret, b'{"test":true}')
        return PushDelivery("test", {"content-type": "text/plain;charset=utf-8"}, body)
