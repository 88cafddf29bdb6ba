"""A stateful simulator of the Douyin Shop gateway.

It checks what the gateway checks (app key, v=2, timestamp drift, the HMAC-SHA256 sign over
the `param_json` text exactly as received, the access token), enforces the documented
limits (size ≤ 100, page from 0, 90-day look-back, 50 000-row paging depth, one status in
combine_status) and answers in the new `code/msg/sub_code/sub_msg` envelope with the
sub codes of the official per-API error tables. Shipping refuses unknown company codes, an
already shipped order or SKU order, a waybill already used by another order.
"""

from __future__ import annotations

import hmac
import itertools
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.douyin.client import (
    SIGN_VERSION,
    SUCCESS_CODE,
    TOKEN_METHODS,
    DouyinFacts,
    push_sign,
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

# order.logisticsCompanyList of the sandbox shop: (id, name, code)
LOGISTICS_COMPANIES: tuple[tuple[int, str, str], ...] = (
    (7, "顺丰速运", "shunfeng"),
    (15, "中通快递", "zhongtong"),
    (12, "圆通快递", "yuantong"),
    (4, "申通快递", "shentong"),
    (16, "韵达快递", "yunda"),
    (1082, "极兔速递", "jtexpress"),
    (2, "EMS", "ems"),
    (9, "邮政快递包裹", "youzhengguonei"),
    (8, "京东物流", "jd"),
    (18, "德邦快递", "debangkuaidi"),
)

MAIN_MESSAGES = {
    40001: "缺少必选参数", 40002: "缺少必选参数", 40003: "非法的参数", 40004: "非法的参数",
    50001: "业务处理失败", 50002: "业务处理失败", 20000: "系统错误", 60000: "超过调用频率限制",
    70000: "接口已下线",
}

# base lifecycle state -> (order_status, order_status_desc)
ORDER_STATES: Mapping[str, tuple[int, str]] = {
    "unpaid": (1, "待支付"),
    "paid": (2, "备货中"),
    "part_shipped": (101, "部分发货"),
    "shipped": (3, "已发货"),
    "completed": (5, "已完成"),
    "cancelled": (4, "已取消"),
    "refunded": (4, "已取消"),
}

PUSH_TAGS = {"created": "100", "paid": "101", "shipped": "102", "completed": "103",
             "cancelled": "106", "refunded": "206"}


class DouyinError(Exception):
    """A refusal in the platform's own words, turned into an error envelope."""

    def __init__(self, code: int, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(sub_msg or sub_code)
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = sub_msg


def _missing(name: str) -> DouyinError:
    return DouyinError(40002, "isv.missing-parameter", f"缺少参数 {name}")


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment else 0


class DouyinSandbox(Sandbox):
    platform = "douyin"
    item_id_base = 3_467_000_000_000_000_000
    sku_id_base = 1_693_000_000_000_000
    order_id_base = 6_920_000_000_000_000_000
    line_id_base = 6_930_000_000_000_000_000

    def __init__(self, *, app_key: str = "7000000000000000001", shop_id: int = 4463798,
                 **kwargs: Any) -> None:
        super().__init__(app_key=app_key, **kwargs)
        self.shop_id = shop_id
        self.facts = DouyinFacts()
        self.companies = {code: (cid, name) for cid, name, code in LOGISTICS_COMPANIES}
        self.pack_requests: dict[str, dict[str, Any]] = {}
        self.idempotent_ids: set[str] = set()
        self._log_ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "order.searchList": self._search_list,
            "order.orderDetail": self._order_detail,
            "order.logisticsAdd": self._logistics_add,
            "order.logisticsAddMultiPack": self._logistics_add_multi_pack,
            "order.logisticsCompanyList": self._company_list,
            "sku.syncStock": self._sync_stock,
            "sku.syncStockBatch": self._sync_stock_batch,
            "sku.list": self._sku_list,
            "sku.editPrice": self._edit_price,
            "product.listV2": self._product_list,
            "product.setOnline": lambda p: self._set_online(p, True),
            "product.setOffline": lambda p: self._set_online(p, False),
            "product.addV2": self._product_add,
            "product.editV2": self._product_edit,
            "token.refresh": self._token_refresh,
        }

    def new_line_id(self, order_id: str, index: int) -> str:
        return str(self.line_id_base + next(self._ids))

    # -- protocol ------------------------------------------------------------------------
    def api_name(self, request: SandboxRequest) -> str:
        return request.path.strip("/").replace("/", ".")

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        api = self.api_name(request)
        try:
            self._verify(api, request)
            handler = self._handlers.get(api)
            if handler is None:
                raise DouyinError(70000, "isp.api-service-off", f"{api} 不存在或已下线")
            try:
                params = json.loads(request.body or b"{}")
            except ValueError:
                raise DouyinError(40003, "isv.parameter-format-invalid",
                                  "param_json 不是合法的 JSON") from None
            if not isinstance(params, dict):
                raise DouyinError(40003, "isv.parameter-format-invalid", "param_json 不是对象")
            return self._ok(handler(params))
        except DouyinError as exc:
            return self._error(exc.code, exc.sub_code, exc.sub_msg)

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if fault is Fault.RATE_LIMIT:
            return self._error(60000, "", "请求过于频繁，请稍后重试")
        return self._error(20000, "isp.service-error:20005", "系统繁忙，请稍后重试")

    def _envelope(self, body: dict[str, Any]) -> SandboxResponse:
        stamp = self.clock.now().astimezone(BEIJING).strftime("%Y%m%d%H%M%S")
        body["log_id"] = f"{stamp}{next(self._log_ids):012d}"
        return SandboxResponse.of_json(body)

    def _ok(self, data: Any) -> SandboxResponse:
        return self._envelope({"code": SUCCESS_CODE, "msg": "success", "sub_code": "",
                               "sub_msg": "", "data": data})

    def _error(self, code: int, sub_code: str, sub_msg: str) -> SandboxResponse:
        return self._envelope({"code": code, "msg": MAIN_MESSAGES.get(code, "错误"),
                               "sub_code": sub_code, "sub_msg": sub_msg})

    def _verify(self, api: str, request: SandboxRequest) -> None:
        query = request.query
        if request.method not in ("POST", "GET"):
            raise DouyinError(40003, "isv.parameter-format-invalid", "不支持的 HTTP 方法")
        if not query.get("app_key"):
            raise DouyinError(40001, "isv.app-id-missing", "缺少 app_key")
        if not query.get("sign"):
            raise DouyinError(40001, "isv.signature-missing", "缺少 sign")
        for name in ("method", "timestamp", "v"):
            if not query.get(name):
                raise DouyinError(40001, "isv.missing-parameter", f"缺少 {name}")
        if query["method"] != api:
            raise DouyinError(40003, "isv.parameter-format-invalid", "method 与路径不一致")
        if query["app_key"] != self.app_key:
            raise DouyinError(40003, "isv.app-id-invalid", "app_key 无效")
        if query["v"] != SIGN_VERSION:
            raise DouyinError(40003, "isv.parameter-format-invalid", "v 只支持 2")
        self._check_timestamp(query["timestamp"])
        sign_method = query.get("sign_method", "md5")
        if sign_method not in ("hmac-sha256", "md5"):
            raise DouyinError(40003, "isv.parameter-format-invalid", "sign_method 无效")
        expected = sign(self.app_key, self.app_secret, api, request.body.decode(),
                        query["timestamp"], sign_method)
        if not hmac.compare_digest(expected, query["sign"].lower()):
            raise DouyinError(40003, "isv.signature-invalid", "签名无效")
        if api in TOKEN_METHODS:
            return
        token = query.get("access_token", "")
        if not token:
            raise DouyinError(40001, "isv.access-token-missing", "缺少 access_token")
        if not self.token_valid(token):
            raise DouyinError(40003, "isv.access-token-expired", "access_token 已过期")

    def _check_timestamp(self, text: str) -> None:
        try:
            moment = (datetime.fromtimestamp(int(text), BEIJING) if text.isdigit() else
                      datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING))
        except (ValueError, OverflowError):
            raise DouyinError(40003, "isv.timestamp-format-error", "timestamp 格式错误") from None
        if abs(moment - self.clock.now()) > self.facts.timestamp_skew:
            raise DouyinError(40003, "isv.timestamp-invalid", "timestamp 与服务器时间相差过大")

    # -- rendering -----------------------------------------------------------------------
    def _sku_of(self, item: SandboxItem, sku_id: str) -> SandboxSku | None:
        return next((s for s in item.skus if s.sku_id == sku_id), None)

    def render_order(self, order: SandboxOrder) -> dict[str, Any]:
        status, desc = ORDER_STATES[order.state]
        shipped_status = 5 if order.state == "completed" else 3
        skus = []
        for line in order.lines:
            refunded = line.state == "refunded"
            line_status = {"open": 2 if order.paid_at else 1, "shipped": shipped_status,
                           "refunded": 4, "cancelled": 4}[line.state]
            item = self.items.get(line.item_id)
            sku = self._sku_of(item, line.sku_id) if item else None
            skus.append({
                "order_id": line.line_id, "parent_order_id": order.order_id,
                "order_level": 3, "order_status": line_status,
                "order_status_desc": desc if line.state == "open" else
                ("已发货" if line.state == "shipped" else "已取消"),
                "product_id": int(line.item_id), "product_id_str": line.item_id,
                "sku_id": int(line.sku_id) if line.sku_id else 0,
                "code": line.outer_id, "out_sku_id": "", "out_product_id": "",
                "product_name": line.title, "item_num": line.quantity,
                "goods_price": line.price_fen, "origin_amount": line.price_fen,
                "sum_amount": line.price_fen * line.quantity,
                "pay_amount": line.price_fen * line.quantity,
                "spec": [{"name": k, "value": v} for k, v in (sku.spec if sku else {}).items()],
                "create_time": _epoch(order.created), "update_time": _epoch(order.modified),
                "pay_time": _epoch(order.paid_at), "reduce_stock_type": 1,
                "after_sale_info": {"after_sale_status": 12 if refunded else 0,
                                    "after_sale_type": 2 if refunded else 0,
                                    "refund_status": 3 if refunded else 0},
            })
        lines = {line.line_id: line for line in order.lines}
        packages = [{
            "tracking_no": shipment.tracking_number, "company": shipment.carrier_code,
            "company_name": self.companies.get(shipment.carrier_code, (0, ""))[1],
            "ship_time": _epoch(shipment.shipped_at), "delivery_id": f"{order.order_id}{n:02d}",
            "product_info": [{
                "sku_order_id": line_id, "product_id": int(lines[line_id].item_id),
                "product_id_str": lines[line_id].item_id, "product_name": lines[line_id].title,
                "sku_id": int(lines[line_id].sku_id or 0), "outer_sku_id": lines[line_id].outer_id,
                "product_count": lines[line_id].quantity, "price": lines[line_id].price_fen,
            } for line_id in shipment.line_ids],
        } for n, shipment in enumerate(order.shipments, start=1)]
        return {
            "shop_id": self.shop_id, "shop_name": "沙箱测试店铺", "order_id": order.order_id,
            "order_level": 2, "biz": 2, "order_type": 0, "b_type": 2,
            "order_status": status, "order_status_desc": desc,
            "create_time": _epoch(order.created), "update_time": _epoch(order.modified),
            "pay_time": _epoch(order.paid_at),
            "finish_time": _epoch(order.modified) if order.state == "completed" else 0,
            "ship_time": _epoch(order.shipments[0].shipped_at) if order.shipments else 0,
            "exp_ship_time": _epoch(order.created + timedelta(hours=48)),
            "order_amount": order.goods_fen + order.post_fee_fen,
            "pay_amount": order.paid_fen, "post_amount": order.post_fee_fen,
            "promotion_amount": order.discount_fen, "buyer_words": order.buyer_remark,
            "seller_words": "", "seller_remark_stars": 0,
            "post_receiver": order.receiver, "post_tel": order.phone,
            "post_addr": {"province": {"id": "330000", "name": order.province},
                          "city": {"id": "330100", "name": order.city},
                          "town": {"id": "330106", "name": order.district},
                          "street": {"id": "", "name": ""}, "detail": order.detail},
            "logistics_info": packages, "sku_order_list": skus,
        }

    def render_product(self, item: SandboxItem) -> dict[str, Any]:
        return {
            "product_id": int(item.item_id), "name": item.title,
            "status": 0 if item.on_sale else 1, "check_status": 3,
            "outer_product_id": item.outer_id, "out_product_id": 0,
            "img": item.images[0] if item.images else "", "market_price": item.price_fen,
            "discount_price": item.price_fen, "create_time": _epoch(item.created),
            "update_time": _epoch(item.modified), "is_package_product": False,
        }

    def render_sku(self, item: SandboxItem, sku: SandboxSku) -> dict[str, Any]:
        return {
            "id": int(sku.sku_id), "product_id": int(item.item_id), "code": sku.outer_id,
            "out_sku_id": 0, "price": sku.price_fen, "sku_type": 0,
            "stock_num": sku.quantity, "prehold_stock_num": 0, "prom_stock_num": 0,
            "step_stock_num": 0, "normal_stock_num": sku.quantity, "channel_stock_num": 0,
            "sell_properties": [{"property_name": k, "value_name": v}
                                for k, v in sku.spec.items()],
        }

    # -- orders --------------------------------------------------------------------------
    def _search_list(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("size") is None:
            raise _missing("size")
        if p.get("page") is None:
            raise _missing("page")
        size, page = int(p["size"]), int(p["page"])
        if not 1 <= size <= 100:
            raise DouyinError(40004, "isv.parameter-invalid:20008", "单次查询订单数超过限制")
        if page < 0:
            raise DouyinError(40004, "isv.parameter-invalid:10035", "查询订单列表页数不能小于0")
        if p.get("create_time_start") is None and p.get("update_time_start") is None:
            raise DouyinError(40004, "isv.parameter-invalid:20011", "订单查询开始时间不能为空")
        combine = p.get("combine_status") or []
        if len(combine) > 1:
            raise DouyinError(40004, "isv.parameter-invalid:20012",
                              "订单查询状态条件超过限制，只支持1个元素")
        floor = _epoch(self.clock.now() - self.facts.order_lookback)
        if p.get("create_time_start") is not None and int(p["create_time_start"]) < floor:
            raise DouyinError(40004, "isv.parameter-invalid:20022",
                              "订单查询只支持查询最近90天内的数据")
        if (page + 1) * size > self.facts.order_paging_depth:
            raise DouyinError(40004, "isv.parameter-invalid:20013", "订单查询最多支持查询5万")
        wanted = ({int(s) for s in str(combine[0].get("order_status", "")).split(",") if s}
                  if combine else set())

        def within(value: int, low: Any, high: Any) -> bool:
            return ((low is None or value >= int(low)) and (high is None or value <= int(high)))

        rows = [self.render_order(o) for o in self.orders.values()]
        rows = [r for r in rows
                if r["create_time"] >= floor
                and within(r["create_time"], p.get("create_time_start"), p.get("create_time_end"))
                and within(r["update_time"], p.get("update_time_start"), p.get("update_time_end"))
                and (not wanted or r["order_status"] in wanted)]
        key = "update_time" if p.get("order_by") == "update_time" else "create_time"
        rows.sort(key=lambda r: (r[key], r["order_id"]), reverse=not p.get("order_asc", False))
        return {"page": page, "size": size, "total": len(rows),
                "shop_order_list": rows[page * size:(page + 1) * size]}

    def _order(self, order_id: Any) -> SandboxOrder:
        order = self.orders.get(str(order_id))
        if order is None:
            raise DouyinError(50002, "isv.business-failed:60033", "订单不存在，请仔细检查后重试。")
        return order

    def _order_detail(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("shop_order_id"):
            raise _missing("shop_order_id")
        return {"shop_order_detail": self.render_order(self._order(p["shop_order_id"]))}

    def _company_list(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": cid, "name": name, "code": code} for cid, name, code in LOGISTICS_COMPANIES]

    def _check_shippable(self, order: SandboxOrder, company: str, tracking: str) -> None:
        if order.state == "unpaid":
            raise DouyinError(50002, "isv.business-failed:60137", "订单未支付，禁止发货。")
        if order.state in ("cancelled", "refunded"):
            raise DouyinError(50002, "isv.business-failed:60021", "订单已取消，禁止发货。")
        if order.state == "completed":
            raise DouyinError(50002, "isv.business-failed:60113", "订单已完结，禁止发货。")
        if company not in self.companies:
            raise DouyinError(50002, "isv.business-failed:60018",
                              "暂不支持该物流公司或物流商已失效，请检查。")
        for other in self.orders.values():
            if other.order_id != order.order_id and any(
                    s.tracking_number == tracking for s in other.shipments):
                raise DouyinError(50002, "isv.business-failed:70022",
                                  "70022:运单已被其他订单使用，且收货人手机号/收货地址不一致，请核对运单")

    def _logistics_add(self, p: dict[str, Any]) -> dict[str, Any]:
        for name in ("order_id", "logistics_code"):
            if not p.get(name):
                raise _missing(name)
        if not p.get("company_code"):
            raise DouyinError(50002, "isv.business-failed:60011", "60011:物流公司编码不允许为空")
        order = self._order(p["order_id"])
        if order.state == "shipped":
            raise DouyinError(50002, "isv.business-failed:60110", "订单已发货，不允许再次执行发货。")
        self._check_shippable(order, p["company_code"], p["logistics_code"])
        self.record_shipment(order, p["company_code"], p["logistics_code"], ())
        return {}

    def _logistics_add_multi_pack(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("order_id"):
            raise _missing("order_id")
        if not p.get("request_id"):
            raise DouyinError(40002, "isv.missing-parameter:50050",
                              "发货请求id不能为空，请检查requestId")
        if p["request_id"] in self.pack_requests:
            return self.pack_requests[p["request_id"]]
        packs = p.get("pack_list") or []
        if not packs:
            raise DouyinError(50002, "isv.business-failed:60036", "发货信息为空。")
        order = self._order(p["order_id"])
        lines = {line.line_id: line for line in order.lines}
        for pack in packs:  # all packages are checked before any is applied
            if not pack.get("logistics_code"):
                raise _missing("logistics_code")
            self._check_shippable(order, str(pack.get("company_code", "")),
                                  pack["logistics_code"])
            infos = pack.get("shipped_order_info") or []
            if not infos:
                raise DouyinError(50002, "isv.business-failed:60036", "发货信息为空。")
            for info in infos:
                line = lines.get(str(info.get("shipped_order_id", "")))
                if line is None:
                    raise DouyinError(50002, "isv.business-failed:60102",
                                      "60102:商品单不存在，请仔细检查后重试")
                if line.state == "shipped":
                    raise DouyinError(50002, "isv.business-failed:70023",
                                      "70023:已发货，请检查订单状态")
                if line.state in ("refunded", "cancelled"):
                    raise DouyinError(50002, "isv.business-failed:60068",
                                      "该订单已售前退款成功，不能发货。")
        result: dict[str, list[dict[str, Any]]] = {"pack_list": []}
        for pack in packs:
            chosen = [str(info["shipped_order_id"]) for info in pack["shipped_order_info"]]
            self.record_shipment(order, pack["company_code"], pack["logistics_code"], chosen)
            result["pack_list"].append({
                "pack_id": f"{order.order_id}{len(order.shipments):02d}",
                "logistics_code": pack["logistics_code"],
                "shipped_order_info": [{"shipped_order_id": line_id,
                                        "shipped_num": lines[line_id].quantity}
                                       for line_id in chosen]})
        self.pack_requests[p["request_id"]] = result
        return result

    # -- listings ------------------------------------------------------------------------
    def _product(self, product_id: Any) -> SandboxItem:
        item = self.items.get(str(product_id))
        if item is None:
            raise DouyinError(50002, "isv.business-failed:2010058", "商品不存在或已彻底删除")
        return item

    def _find_sku(self, p: Mapping[str, Any]) -> tuple[SandboxItem, SandboxSku]:
        if p.get("sku_id") is not None:
            for item in self.items.values():
                if p.get("product_id") is not None and item.item_id != str(p["product_id"]):
                    continue
                sku = self._sku_of(item, str(p["sku_id"]))
                if sku is not None:
                    return item, sku
        elif p.get("code"):
            for item in self.items.values():
                for sku in item.skus:
                    if sku.outer_id == p["code"]:
                        return item, sku
        raise DouyinError(40004, "isv.parameter-invalid:5",
                          f"sku_id: {p.get('sku_id')}, 找不到对应的sku")

    def _new_stock(self, current: int, p: Mapping[str, Any], incremental: bool) -> int:
        value = int(p["stock_num"])
        if not incremental:
            if value < 0:
                raise DouyinError(40004, "isv.parameter-invalid:14000", "库存值不能小于0")
            return value
        if current + value < 0:
            raise DouyinError(50002, "isv.business-failed:2010012", "更新库存数失败: 库存不足")
        return current + value

    def _claim_idempotent_id(self, p: Mapping[str, Any]) -> None:
        key = p.get("idempotent_id")
        if not key:
            raise _missing("idempotent_id")
        if key in self.idempotent_ids:
            raise DouyinError(40004, "isv.parameter-invalid:40010", "[idempotent_id]重复，操作已执行")
        self.idempotent_ids.add(str(key))

    def _sync_stock(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("stock_num") is None:
            raise _missing("stock_num")
        item, sku = self._find_sku(p)
        incremental = bool(p.get("incremental", False))
        quantity = self._new_stock(sku.quantity, p, incremental)
        if incremental:
            self._claim_idempotent_id(p)
        self._set_stock(item, sku, quantity)
        return {}

    def _sync_stock_batch(self, p: dict[str, Any]) -> dict[str, Any]:
        for name in ("product_id", "sku_sync_list"):
            if not p.get(name):
                raise DouyinError(40002, "isv.missing-parameter:2010004", f"参数缺失 {name}")
        if p.get("incremental") is None:
            raise DouyinError(40002, "isv.missing-parameter:2010004", "参数缺失 incremental")
        rows = p["sku_sync_list"]
        if len(rows) > self.facts.stock_batch_max:
            raise DouyinError(40004, "isv.parameter-invalid:2010013",
                              f"单次最多同步{self.facts.stock_batch_max}个sku")
        item = self._product(p["product_id"])
        incremental = bool(p["incremental"])
        planned = []
        for row in rows:  # all-or-nothing: check every row first
            if row.get("sku_id") is None or row.get("stock_num") is None:
                raise DouyinError(40002, "isv.missing-parameter:2010004", "参数缺失 sku_id/stock_num")
            sku = self._sku_of(item, str(row["sku_id"]))
            if sku is None:
                raise DouyinError(40004, "isv.parameter-invalid:2010013",
                                  "查询商品信息失败，请检查参数后重试")
            planned.append((sku, self._new_stock(sku.quantity, row, incremental)))
        if incremental:
            self._claim_idempotent_id(p)
        for sku, quantity in planned:
            self._set_stock(item, sku, quantity)
        return {}

    def _sku_list(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        if not p.get("product_id"):
            raise _missing("product_id")
        item = self._product(p["product_id"])
        return [self.render_sku(item, sku) for sku in item.skus]

    def _edit_price(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("price") is None:
            raise _missing("price")
        if int(p["price"]) <= 0:
            raise DouyinError(40004, "isv.parameter-invalid", "价格必须大于0")
        item, sku = self._find_sku(p)
        sku.price_fen = int(p["price"])
        item.modified = self.clock.now()
        return {}

    def _product_list(self, p: dict[str, Any]) -> dict[str, Any]:
        page, size = int(p.get("page", 1)), int(p.get("size", 10))
        if page < 1 or not 1 <= size <= 100 or page * size > 10_000:
            raise DouyinError(40004, "isv.parameter-invalid", "page 从1开始，size 1-100，page*size<=10000")
        rows = sorted(self.items.values(), key=lambda i: i.item_id)
        if p.get("status") is not None:
            rows = [i for i in rows if (0 if i.on_sale else 1) == int(p["status"])]
        return {"data": [self.render_product(i) for i in rows[(page - 1) * size:page * size]],
                "total": len(rows), "page": page, "size": size}

    def _set_online(self, p: dict[str, Any], on_sale: bool) -> dict[str, Any]:
        if not p.get("product_id"):
            raise _missing("product_id")
        item = self._product(p["product_id"])
        item.on_sale = on_sale
        item.modified = self.clock.now()
        return {}

    def _spec_rows(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = json.loads(p["spec_prices"])
        except (KeyError, TypeError, ValueError):
            raise DouyinError(40004, "isv.parameter-invalid", "spec_prices 格式错误") from None
        names = [n for n in str(p.get("spec_name", "")).split("-") if n]
        for row in rows:
            if int(row.get("price", 0)) <= 0 or int(row.get("stock_num", -1)) < 0:
                raise DouyinError(40004, "isv.parameter-invalid", "价格或库存不合法")
            row["_spec"] = {name: str(row.get(f"spec_detail_name{i}", ""))
                            for i, name in enumerate(names, start=1)}
        return rows

    def _product_add(self, p: dict[str, Any]) -> dict[str, Any]:
        for name in ("name", "category_leaf_id", "spec_prices"):
            if not p.get(name):
                raise _missing(name)
        rows = self._spec_rows(p)
        now = self.clock.now()
        item = SandboxItem(
            item_id=self.new_item_id(), title=p["name"], outer_id=str(p.get("outer_product_id", "")),
            price_fen=min(int(r["price"]) for r in rows), on_sale=False,
            category_id=str(p["category_leaf_id"]), modified=now, created=now,
            images=[u for u in str(p.get("pic", "")).split("|") if u],
            skus=[SandboxSku(self.new_sku_id(), str(r.get("code", "")), int(r["stock_num"]),
                             int(r["price"]), r["_spec"]) for r in rows])
        self.items[item.item_id] = item
        return {"product_id": int(item.item_id), "outer_product_id": item.outer_id,
                "out_product_id": 0, "create_time": now.astimezone(BEIJING).strftime(
                    "%Y-%m-%d %H:%M:%S"),
                "sku": [{"sku_id": int(s.sku_id), "outer_sku_id": s.outer_id, "code": s.outer_id,
                         "out_sku_id": 0} for s in item.skus]}

    def _product_edit(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("product_id"):
            raise _missing("product_id")
        item = self._product(p["product_id"])
        if p.get("name"):
            item.title = p["name"]
        if p.get("spec_prices"):
            by_code = {s.outer_id: s for s in item.skus}
            for row in self._spec_rows(p):
                code = str(row.get("code", ""))
                if code in by_code:
                    by_code[code].price_fen = int(row["price"])
                    by_code[code].quantity = int(row["stock_num"])
                else:
                    item.skus.append(SandboxSku(self.new_sku_id(), code, int(row["stock_num"]),
                                                int(row["price"]), row["_spec"]))
        item.modified = self.clock.now()
        return {}

    # -- auth ----------------------------------------------------------------------------
    def _token_refresh(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("grant_type") != "refresh_token":
            raise DouyinError(50001, "dop.token-generate-failed:grant-type-invalid",
                              "grant_type 无效")
        if not p.get("refresh_token"):
            raise DouyinError(50002, "isv.business-failed:31009", "refresh_token 不能为空")
        pair = self.rotate_tokens(str(p["refresh_token"]))
        if pair is None:
            raise DouyinError(50001, "dop.token-generate-failed:token-invalid",
                              "refresh_token 无效或已过期")
        access, refresh = pair
        return {"access_token": access, "expires_in": 604800, "refresh_token": refresh,
                "scope": "SCOPE", "shop_id": self.shop_id, "shop_name": "沙箱测试店铺",
                "authority_id": str(self.shop_id), "auth_subject_type": "MiniShop"}

    # -- pushes --------------------------------------------------------------------------
    def render_push(self, order: SandboxOrder, topic: str) -> PushDelivery | None:
        tag = PUSH_TAGS.get(topic)
        if tag is None:
            return None
        if tag == "102" and order.state == "part_shipped":
            tag = "108"
        status, _ = ORDER_STATES[order.state]
        data: dict[str, Any] = {"p_id": int(order.order_id),
                                "s_ids": [int(line.line_id) for line in order.lines],
                                "shop_id": self.shop_id, "order_status": status,
                                "order_type": 0, "biz": 2,
                                "update_time": _epoch(order.modified)}
        if tag == "100":
            data["create_time"] = _epoch(order.created)
        elif tag == "101":
            data.update(pay_time=_epoch(order.paid_at), pay_amount=order.paid_fen)
        elif tag in ("102", "108") and order.shipments:
            shipment = order.shipments[-1]
            data["logistics_msg"] = {
                "express_company_id": self.companies.get(shipment.carrier_code, (0, ""))[0],
                "logistics_code": shipment.tracking_number}
        elif tag == "206":
            data.update(aftersale_id=int(order.order_id) + 1, refund_amount=order.paid_fen,
                        aftersale_status=12, refund_status=3)
        message = {"tag": tag, "msg_id": str(7_000_000_000_000_000_000 + next(self._msg_ids)),
                   "data": json.dumps(data, ensure_ascii=False, separators=(",", ":"))}
        body = json.dumps([message], ensure_ascii=False, separators=(",", ":")).encode()
        return PushDelivery(topic, {
            "content-type": "application/json", "app-id": self.app_key,
            "event-sign": push_sign(self.app_key, body, self.app_secret)}, body)
