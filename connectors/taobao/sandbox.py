"""TaobaoSandbox: the TOP gateway over the shared sandbox state.

It checks what the real gateway checks, in its order (method, app key, timestamp within
±10 min, version, signature, session), answers with `<api>_response` bodies whose lists are
double-wrapped and whose empty lists are left out, and refuses with TOP's own codes: 40/41
for missing or invalid arguments, 15 + sub_code for business refusals, 7 + "This ban will
last for N more seconds" for flow control. Only JSON is spoken: a request without
`format=json` (the real default is XML) is refused with 23.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.taobao.client import API_VERSION, GATEWAY_PATH, SIGN_METHODS, response_key, sign
from connectors.taobao.mapping import CARRIER_CODES
from core.carriers import tracking_matches
from core.clock import beijing, format_beijing, from_epoch, parse_beijing
from core.money import MoneyError, fen_to_yuan, yuan_to_fen
from core.sandbox import (
    Fault,
    Sandbox,
    SandboxItem,
    SandboxLine,
    SandboxOrder,
    SandboxRequest,
    SandboxResponse,
    SandboxShipment,
    SandboxSku,
)
from core.signing import constant_time_equal

TRADE_STATUS = {
    "unpaid": "WAIT_BUYER_PAY",
    "paid": "WAIT_SELLER_SEND_GOODS",
    "part_shipped": "SELLER_CONSIGNED_PART",
    "shipped": "WAIT_BUYER_CONFIRM_GOODS",
    "completed": "TRADE_FINISHED",
    "cancelled": "TRADE_CLOSED_BY_TAOBAO",
    "refunded": "TRADE_CLOSED",
}
SESSIONLESS = frozenset({"taobao.top.auth.token.refresh"})
TIMESTAMP_SKEW = timedelta(minutes=10)
MAX_INCREMENT_WINDOW = timedelta(days=1)
LOOKBACK = timedelta(days=90)
OFFLINE = "isv.logistics-offline-service-error"
DERIVED_PID = "1627207"  # a colour-like sale property for SKUs seeded without property ids
_CANONICAL_CARRIER = {code: canonical for canonical, code in CARRIER_CODES.items()}
KNOWN_COMPANIES = frozenset(CARRIER_CODES.values()) | {"POST", "ZJS", "UC", "TTKDEX", "EYB"}

# API -> (handler method, required business arguments)
ROUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "taobao.trades.sold.increment.get": ("_increment", ("fields", "start_modified",
                                                        "end_modified")),
    "taobao.trade.fullinfo.get": ("_fullinfo", ("fields", "tid")),
    "taobao.items.onsale.get": ("_onsale", ("fields",)),
    "taobao.items.inventory.get": ("_inventory", ("fields",)),
    "taobao.items.seller.list.get": ("_seller_list", ("fields", "num_iids")),
    "taobao.skus.quantity.update": ("_skus_quantity", ("num_iid",)),
    "taobao.item.quantity.update": ("_item_quantity", ("num_iid", "quantity")),
    "taobao.item.sku.update": ("_sku_update", ("num_iid", "properties")),
    "taobao.item.update": ("_item_update", ("num_iid",)),
    "taobao.item.add": ("_item_add", ("location.state", "location.city", "num", "type",
                                      "stuff_status", "title", "desc", "cid")),
    "taobao.item.update.listing": ("_listing", ("num_iid", "num")),
    "taobao.item.update.delisting": ("_delisting", ("num_iid",)),
    "taobao.logistics.offline.send": ("_offline_send", ("tid", "out_sid", "company_code")),
    "taobao.top.auth.token.refresh": ("_token_refresh", ("refresh_token",)),
}


class TopFault(Exception):
    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.sub_code:
            error.update(sub_code=self.sub_code, sub_msg=self.sub_msg)
        return {"error_response": {**error, "request_id": request_id}}


def _missing(name: str) -> TopFault:
    return TopFault(40, f"Missing required arguments:{name}")


def _invalid(name: str, why: str = "") -> TopFault:
    return TopFault(41, f"Invalid arguments:{name}", "isv.invalid-parameter" if why else "", why)


def _refused(sub_code: str, sub_msg: str) -> TopFault:
    return TopFault(15, "Remote service error", sub_code, sub_msg)


def _int(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    if not params.get(name):
        if default is None:
            raise _missing(name)
        return default
    try:
        return int(params[name])
    except ValueError:
        raise _invalid(name) from None


def _fen(text: str, name: str) -> int:
    try:
        return yuan_to_fen(text)
    except MoneyError:
        raise _invalid(name) from None


def _time(params: Mapping[str, str], name: str) -> datetime:
    try:
        return parse_beijing(params[name])
    except ValueError:
        raise _invalid(name) from None


def _pick(rendered: Mapping[str, Any], fields: str) -> dict[str, Any]:
    wanted = set(fields.split(","))
    picked = {k: v for k, v in rendered.items() if k in wanted}
    if "sku" in wanted and "skus" in rendered:  # TOP asks for `sku`, answers `skus`
        picked["skus"] = rendered["skus"]
    return picked


def sku_properties(sku: SandboxSku) -> str:
    """`pid:vid;…` — SKUs published through item.add carry real ids in `spec`."""
    if sku.spec and all(k.isdigit() and v.isdigit() for k, v in sku.spec.items()):
        return ";".join(f"{k}:{v}" for k, v in sku.spec.items())
    return f"{DERIVED_PID}:{int(sku.sku_id) % 100_000_000}"


def properties_name(sku: SandboxSku) -> str:
    labels = list(sku.spec.items()) or [("规格", sku.outer_id)]
    return ";".join(f"{pair}:{name}:{value}"
                    for pair, (name, value) in zip(sku_properties(sku).split(";"), labels,
                                                   strict=False))


def _check_price_range(prices: list[int], item_price: int) -> None:
    """TOP keeps the item price inside its SKUs' price range."""
    if prices and not min(prices) <= item_price <= max(prices):
        raise _refused("isv.invalid-parameter:price",
                       "商品价格必须在 SKU 价格区间之内，可传 item_price 调整商品价格")


def _parse_properties(text: str) -> dict[str, str]:
    pairs = [p.split(":") for p in text.split(";") if p]
    if not pairs or any(len(p) != 2 or not (p[0].isdigit() and p[1].isdigit()) for p in pairs):
        raise _invalid("sku_properties", f"not pid:vid;pid:vid: {text!r}")
    return dict((p[0], p[1]) for p in pairs)


class TaobaoSandbox(Sandbox):
    platform = "taobao"

    # -- protocol ------------------------------------------------------------------------
    def params(self, request: SandboxRequest) -> dict[str, str]:
        # the official SDKs put system parameters in the query string: both are signed
        return {**request.query, **request.form()}

    def api_name(self, request: SandboxRequest) -> str:
        return self.params(request).get("method", "")

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        request_id = f"sbx{len(self.requests) + 1:08x}"
        if not request.path.endswith(GATEWAY_PATH):
            return SandboxResponse(404, b"Not Found", {"content-type": "text/plain"})
        try:
            if request.method not in ("GET", "POST"):
                raise TopFault(9, "Http Action Not Allowed")
            params = self.params(request)
            api = self._authenticate(params)
            handler, required = ROUTES[api]
            for name in required:
                if not params.get(name):
                    raise _missing(name)
            result = getattr(self, handler)(params)
        except TopFault as fault:
            return SandboxResponse.of_json(fault.body(request_id))
        return SandboxResponse.of_json({response_key(api): {**result, "request_id": request_id}})

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        request_id = f"sbx{len(self.requests) + 1:08x}"
        if fault is Fault.RATE_LIMIT:
            refusal = TopFault(7, "App Call Limited", "accesscontrol.limited-by-api-access-count",
                               "This ban will last for 1 more seconds")
        else:
            refusal = TopFault(10, "Service Currently Unavailable",
                               "isp.top-remote-service-unavailable", "服务暂时不可用，请稍后重试")
        return SandboxResponse.of_json(refusal.body(request_id))

    def _authenticate(self, params: Mapping[str, str]) -> str:
        api = params.get("method", "")
        if not api:
            raise TopFault(21, "Missing method")
        if api not in ROUTES:
            raise TopFault(22, "Invalid method")
        if not params.get("app_key"):
            raise TopFault(28, "Missing app key")
        if params["app_key"] != self.app_key:
            raise TopFault(29, "Invalid app Key")
        if not params.get("timestamp"):
            raise TopFault(30, "Missing timestamp")
        if not self._timestamp_ok(params["timestamp"]):
            raise TopFault(31, "Invalid timestamp")
        if not params.get("v"):
            raise TopFault(32, "Missing version")
        if params["v"] != API_VERSION:
            raise TopFault(34, "Unsupported version")
        if params.get("format") != "json":
            raise TopFault(23, "Invalid format")
        if not params.get("sign"):
            raise TopFault(24, "Missing signature")
        method = params.get("sign_method", "md5")
        if method not in SIGN_METHODS or not constant_time_equal(
                params["sign"], sign(params, self.app_secret, method)):
            raise TopFault(25, "Invalid signature")
        if api not in SESSIONLESS:
            if not params.get("session"):
                raise TopFault(26, "Missing session")
            if not self.token_valid(params["session"]):
                raise TopFault(27, "Invalid session", "invalid-sessionkey", "SessionKey非法")
        return api

    def _timestamp_ok(self, text: str) -> bool:
        try:  # the official Python SDK sends epoch milliseconds, the doc a Beijing time
            sent = from_epoch(int(text) / 1000) if text.isdigit() else parse_beijing(text)
        except (ValueError, OverflowError):
            return False
        return abs(sent - self.clock.now()) <= TIMESTAMP_SKEW

    # -- trades --------------------------------------------------------------------------
    def _increment(self, params: Mapping[str, str]) -> dict[str, Any]:
        start, end = _time(params, "start_modified"), _time(params, "end_modified")
        if not timedelta(0) <= end - start <= MAX_INCREMENT_WINDOW:
            raise _invalid("end_modified", "end_modified 与 start_modified 的间隔不能超过一天")
        if start < self.clock.now() - LOOKBACK:
            raise _invalid("start_modified", "只能查询三个月内的订单")
        page_no, page_size = _int(params, "page_no", 1), _int(params, "page_size", 40)
        if page_no < 1:
            raise _invalid("page_no")
        if not 1 <= page_size <= 100:
            raise _invalid("page_size", "page_size 取值范围 1-100")
        matched = sorted(
            (o for o in self.orders.values()
             if start <= beijing(o.modified).replace(microsecond=0) <= end),
            key=lambda o: (o.modified, int(o.order_id)), reverse=True)
        page = matched[(page_no - 1) * page_size:page_no * page_size]
        result: dict[str, Any] = {"has_next": page_no * page_size < len(matched)}
        if params.get("use_has_next") != "true":
            result["total_results"] = len(matched)
        if page:
            result["trades"] = {"trade": [_pick(self.render_trade(o), params["fields"])
                                          for o in page]}
        return result

    def _fullinfo(self, params: Mapping[str, str]) -> dict[str, Any]:
        order = self.orders.get(params["tid"])
        if order is None:
            raise _refused("isv.trade-not-exist", "交易订单不存在")
        return {"trade": _pick(self.render_trade(order), params["fields"])}

    def render_trade(self, order: SandboxOrder) -> dict[str, Any]:
        shipped_by = {line_id: s for s in order.shipments for line_id in s.line_ids}
        trade: dict[str, Any] = {
            "tid": int(order.order_id), "status": TRADE_STATUS[order.state], "type": "fixed",
            "created": format_beijing(order.created), "modified": format_beijing(order.modified),
            "payment": fen_to_yuan(order.paid_fen), "total_fee": fen_to_yuan(order.goods_fen),
            "post_fee": fen_to_yuan(order.post_fee_fen),
            "discount_fee": fen_to_yuan(order.discount_fen), "buyer_nick": "t**1",
            "receiver_name": order.receiver, "receiver_mobile": order.phone,
            "receiver_state": order.province, "receiver_city": order.city,
            "receiver_district": order.district, "receiver_address": order.detail,
            "orders": {"order": [self._render_line(order, line, shipped_by.get(line.line_id))
                                 for line in order.lines]},
        }
        if order.paid_at:
            trade["pay_time"] = format_beijing(order.paid_at)
        if order.shipments:
            trade["consign_time"] = format_beijing(order.shipments[0].shipped_at)
        if order.state in ("completed", "cancelled", "refunded"):
            trade["end_time"] = format_beijing(order.modified)
        if order.buyer_remark:
            trade["buyer_message"] = order.buyer_remark
        return trade

    def _render_line(self, order: SandboxOrder, line: SandboxLine,
                     shipment: SandboxShipment | None) -> dict[str, Any]:
        if line.state == "refunded":
            status = "TRADE_CLOSED"
        elif line.state == "cancelled":
            status = "TRADE_CLOSED_BY_TAOBAO"
        elif line.state == "shipped":
            status = "TRADE_FINISHED" if order.state == "completed" else "WAIT_BUYER_CONFIRM_GOODS"
        else:
            status = "WAIT_BUYER_PAY" if order.state == "unpaid" else "WAIT_SELLER_SEND_GOODS"
        item = self.items.get(line.item_id)
        amount = fen_to_yuan(line.price_fen * line.quantity)
        rendered: dict[str, Any] = {
            "oid": int(line.line_id), "num_iid": int(line.item_id), "title": line.title,
            "num": line.quantity, "price": fen_to_yuan(line.price_fen), "total_fee": amount,
            "payment": amount, "status": status,
            "refund_status": "SUCCESS" if line.state == "refunded" else "NO_REFUND",
        }
        if item is not None and item.outer_id:
            rendered["outer_iid"] = item.outer_id
        if line.sku_id:
            rendered.update(sku_id=line.sku_id, outer_sku_id=line.outer_id,
                            sku_properties_name=f"规格:{line.outer_id}")
        if shipment is not None:
            rendered.update(logistics_company=shipment.carrier_code,
                            invoice_no=shipment.tracking_number,
                            consign_time=format_beijing(shipment.shipped_at))
        return rendered

    # -- items ---------------------------------------------------------------------------
    def render_item(self, item: SandboxItem) -> dict[str, Any]:
        modified = format_beijing(item.modified)
        rendered: dict[str, Any] = {
            "num_iid": int(item.item_id), "title": item.title, "price": fen_to_yuan(item.price_fen),
            "num": item.total_quantity, "approve_status": "onsale" if item.on_sale else "instock",
            "cid": int(item.category_id), "modified": modified,
            "list_time": format_beijing(item.created),
        }
        if item.outer_id:
            rendered["outer_id"] = item.outer_id
        if item.skus:
            rendered["skus"] = {"sku": [{
                "sku_id": int(s.sku_id), "num_iid": int(item.item_id),
                "properties": sku_properties(s),
                "properties_name": properties_name(s),
                "quantity": s.quantity, "price": fen_to_yuan(s.price_fen), "outer_id": s.outer_id,
                "status": "normal", "modified": modified,
            } for s in item.skus]}
        return rendered

    def _item(self, params: Mapping[str, str]) -> SandboxItem:
        item = self.items.get(params["num_iid"])
        if item is None:
            raise _refused("isv.item-not-exist:invalid-numIid-or-iid", "商品id对应的商品不存在")
        return item

    def _item_page(self, params: Mapping[str, str], items: list[SandboxItem],
                   max_page: int | None = None) -> dict[str, Any]:
        page_no, page_size = _int(params, "page_no", 1), _int(params, "page_size", 40)
        if page_no < 1 or (max_page is not None and page_no > max_page):
            raise _invalid("page_no")
        if not 1 <= page_size <= 200:
            raise _invalid("page_size", "page_size 最大值 200")
        ordered = sorted(items, key=lambda i: int(i.item_id), reverse=True)
        page = ordered[(page_no - 1) * page_size:page_no * page_size]
        result: dict[str, Any] = {"total_results": len(ordered)}
        if page:
            result["items"] = {"item": [_pick(self.render_item(i), params["fields"])
                                        for i in page]}
        return result

    def _onsale(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self._item_page(params, [i for i in self.items.values() if i.on_sale])

    def _inventory(self, params: Mapping[str, str]) -> dict[str, Any]:
        banner = params.get("banner") or "for_shelved"
        delisted = [i for i in self.items.values() if not i.on_sale]
        if banner in ("for_shelved", "off_shelf"):
            chosen = [i for i in delisted if i.total_quantity > 0]
        elif banner == "sold_out":
            chosen = [i for i in delisted if i.total_quantity == 0]
        elif banner in ("regular_shelved", "never_on_shelf", "violation_off_shelf"):
            chosen = []
        else:
            raise _invalid("banner")
        return self._item_page(params, chosen, max_page=101)

    def _seller_list(self, params: Mapping[str, str]) -> dict[str, Any]:
        ids = [i for i in params["num_iids"].split(",") if i]
        if len(ids) > 20:
            raise _invalid("num_iids", "num_iids 最多 20 个")
        found = [self.items[i] for i in ids if i in self.items]  # others silently left out
        return {"items": {"item": [_pick(self.render_item(i), params["fields"])
                                   for i in found]}} if found else {}

    def _stock_answer(self, item: SandboxItem) -> dict[str, Any]:
        modified = format_beijing(item.modified)
        answer: dict[str, Any] = {"num_iid": int(item.item_id), "num": item.total_quantity,
                                  "modified": modified}
        if item.skus:
            answer["skus"] = {"sku": [{"sku_id": int(s.sku_id), "quantity": s.quantity,
                                       "modified": modified} for s in item.skus]}
        return {"item": answer}

    def _skus_quantity(self, params: Mapping[str, str]) -> dict[str, Any]:
        item = self._item(params)
        kind = _int(params, "type", 1)
        if kind not in (1, 2):
            raise _invalid("type")
        by_id = "skuid_quantities" if params.get("skuid_quantities") else "outerid_quantities"
        if not params.get(by_id):
            raise _missing("skuid_quantities")
        pairs = [p.rsplit(":", 1) for p in params[by_id].split(";") if p]
        if len(pairs) > 20:
            raise _invalid(by_id, "一次最多修改 20 个 SKU")
        changes: list[tuple[SandboxSku, int]] = []
        for pair in pairs:
            if len(pair) != 2 or not pair[1].lstrip("-").isdigit():
                raise _invalid(by_id)
            key, quantity = pair[0], int(pair[1])
            skus = [s for s in item.skus
                    if (s.sku_id if by_id == "skuid_quantities" else s.outer_id) == key]
            if not skus:
                raise _refused("isv.invalid-parameter:sku_id", f"SKU {key} 不属于商品")
            if kind == 1 and quantity < 0:
                raise _refused("isv.invalid-parameter:quantity", "全量更新库存不能小于 0")
            changes += [(s, quantity) for s in skus]
        for sku, quantity in changes:  # all or nothing: applied only once every pair is valid
            self._set_stock(item, sku, quantity if kind == 1 else max(0, sku.quantity + quantity))
        return self._stock_answer(item)

    def _item_quantity(self, params: Mapping[str, str]) -> dict[str, Any]:
        item = self._item(params)
        kind, quantity = _int(params, "type", 1), _int(params, "quantity")
        if kind not in (1, 2):
            raise _invalid("type")
        sku: SandboxSku | None = None
        sku_id, outer_id = params.get("sku_id"), params.get("outer_id")
        if sku_id or outer_id:  # sku_id wins when both are given
            sku = next((s for s in item.skus
                        if (s.sku_id == sku_id if sku_id else s.outer_id == outer_id)), None)
            if sku is None:
                raise _refused("isv.invalid-parameter:sku_id", "SKU 不属于商品")
        elif item.skus:
            raise _refused("isv.invalid-parameter:sku_id", "商品有 SKU，必须指定 sku_id")
        now = sku.quantity if sku else item.quantity
        result = quantity if kind == 1 else now + quantity
        if result < 0:
            raise _refused("isv.invalid-parameter:quantity", "库存不能小于 0")
        self._set_stock(item, sku, result)
        return self._stock_answer(item)

    def _sku_update(self, params: Mapping[str, str]) -> dict[str, Any]:
        item = self._item(params)
        sku = next((s for s in item.skus if sku_properties(s) == params["properties"]), None)
        if sku is None:
            raise _refused("isv.invalid-parameter:sku-properties", "传入的 sku 属性找不到对应的 sku")
        price = _fen(params["price"], "price") if params.get("price") else sku.price_fen
        item_price = (_fen(params["item_price"], "item_price") if params.get("item_price")
                      else item.price_fen)
        quantity = _int(params, "quantity", sku.quantity)
        if quantity < 0:
            raise _refused("isv.invalid-parameter:quantity", "库存不能小于 0")
        _check_price_range([price if s is sku else s.price_fen for s in item.skus], item_price)
        sku.price_fen, item.price_fen = price, item_price
        sku.outer_id = params.get("outer_id", sku.outer_id)
        self._set_stock(item, sku, quantity)
        return {"sku": {"sku_id": int(sku.sku_id), "num_iid": int(item.item_id),
                        "modified": format_beijing(item.modified)}}

    def _published_skus(self, params: Mapping[str, str]) -> list[SandboxSku]:
        """SKUs from the parallel comma lists of item.add / item.update; their sale
        properties must appear in `props` too (item.update may leave `props` out)."""
        if not params.get("sku_properties"):
            return []
        names = ("sku_properties", "sku_quantities", "sku_prices", "sku_outer_ids")
        columns = [params.get(n, "").split(",") for n in names]
        if len({len(c) for c in columns}) != 1:
            raise _invalid("sku_properties", "sku_properties/quantities/prices/outer_ids 要一一对应")
        skus = []
        for props, quantity, price, outer_id in zip(*columns, strict=True):
            if not quantity.isdigit():
                raise _invalid("sku_quantities")
            skus.append(SandboxSku("", outer_id, int(quantity), _fen(price, "sku_prices"),
                                   _parse_properties(props)))
        if len({sku_properties(s) for s in skus}) != len(skus):
            raise _invalid("sku_properties", "SKU 属性重复")
        props = set(params.get("props", "").split(";"))
        if (params.get("method") == "taobao.item.add" or "props" in params) and any(
                f"{k}:{v}" not in props for s in skus for k, v in s.spec.items()):
            raise _invalid("sku_properties", "sku_properties 中的属性需要在 props 中同时包含")
        return skus

    def _item_add(self, params: Mapping[str, str]) -> dict[str, Any]:
        if params["type"] not in ("fixed", "auction"):
            raise _invalid("type")
        if params["stuff_status"] not in ("new", "unused", "second"):
            raise _invalid("stuff_status")
        for name, bad in (("title", len(params["title"]) > 60), ("desc", len(params["desc"]) <= 5),
                          ("cid", not params["cid"].isdigit())):
            if bad:
                raise _invalid(name)
        if not params.get("price"):
            raise _missing("price")
        skus, num = self._published_skus(params), _int(params, "num")
        price = _fen(params["price"], "price")
        if skus and num != sum(s.quantity for s in skus):
            raise _refused("isv.invalid-parameter:num", "商品数量需要等于 SKU 数量之和")
        _check_price_range([s.price_fen for s in skus], price)
        for sku in skus:
            sku.sku_id = self.new_sku_id()
        now = self.clock.now()
        item = SandboxItem(self.new_item_id(), params["title"], params.get("outer_id", ""),
                           price, params.get("approve_status", "onsale") == "onsale", skus,
                           params["cid"], now, now, quantity=0 if skus else num)
        self.items[item.item_id] = item
        return {"item": {"num_iid": int(item.item_id), "created": format_beijing(now)}}

    def _item_update(self, params: Mapping[str, str]) -> dict[str, Any]:
        item = self._item(params)
        published = {sku_properties(s): s for s in self._published_skus(params)}
        current = {sku_properties(s): s for s in item.skus}
        price = _fen(params["price"], "price") if params.get("price") else item.price_fen
        prices = {p: s.price_fen for p, s in current.items()} | {
            p: s.price_fen for p, s in published.items()}
        _check_price_range(list(prices.values()), price)
        for props, new in published.items():  # SKUs are matched by their properties
            old = current.get(props)
            if old is None:
                new.sku_id = self.new_sku_id()
                item.skus.append(new)
            else:
                old.quantity, old.price_fen, old.outer_id = new.quantity, new.price_fen, new.outer_id
        item.price_fen = price
        item.title = params.get("title", item.title)
        item.outer_id = params.get("outer_id", item.outer_id)
        if not item.skus and params.get("num"):
            item.quantity = _int(params, "num")
        item.modified = self.clock.now()
        return {"item": {"num_iid": int(item.item_id), "modified": format_beijing(item.modified)}}

    def _listing(self, params: Mapping[str, str]) -> dict[str, Any]:
        item, num = self._item(params), _int(params, "num")
        if not item.skus:  # without SKUs the listed quantity becomes `num`
            if num <= 0:
                raise _invalid("num", "num 必须大于 0")
            item.quantity = num
        elif item.total_quantity == 0:
            raise _refused("isv.invalid-parameter:num", "商品库存为 0，不能上架")
        item.on_sale, item.modified = True, self.clock.now()
        return {"item": {"num_iid": int(item.item_id), "modified": format_beijing(item.modified)}}

    def _delisting(self, params: Mapping[str, str]) -> dict[str, Any]:
        item = self._item(params)
        item.on_sale, item.modified = False, self.clock.now()
        return {"item": {"num_iid": int(item.item_id), "modified": format_beijing(item.modified)}}

    # -- logistics -----------------------------------------------------------------------
    def _offline_send(self, params: Mapping[str, str]) -> dict[str, Any]:
        order = self.orders.get(params["tid"])
        if order is None:
            raise _refused(f"{OFFLINE}:B01", "订单不存在")
        company, waybill = params["company_code"], params["out_sid"]
        if company not in KNOWN_COMPANIES:
            raise _refused(f"{OFFLINE}:B56", "物流公司不存在或格式不对")
        canonical = _CANONICAL_CARRIER.get(company)
        if canonical and not tracking_matches(canonical, waybill):
            raise _refused(f"{OFFLINE}:B60", "运单号不符合规则或已经被使用")
        if any(s.tracking_number == waybill and s.carrier_code == company
               for other in self.orders.values() if other is not order for s in other.shipments):
            raise _refused(f"{OFFLINE}:F05", "您填写的运单号已被使用")
        split, sub_tids = params.get("is_split", "0") == "1", params.get("sub_tid", "")
        if split != bool(sub_tids):
            raise _refused(f"{OFFLINE}:CD25", "拆单标记和子订单列表两者必须都填或者都不填")
        if order.state == "unpaid":
            raise _refused(f"{OFFLINE}:B02", "订单状态不对")
        if order.state not in ("paid", "part_shipped"):
            raise _refused(f"{OFFLINE}:B04", "订单状态不对该物流订单已经发货或者已关闭，不能重复发货")
        line_ids = [i for i in sub_tids.split(",") if i]
        if order.state == "part_shipped" and not line_ids:
            raise _refused(f"{OFFLINE}:CD22", "订单已拆单，必须传入子交易号列表")
        lines = {line.line_id: line for line in order.lines}
        if any(i not in lines for i in line_ids):
            raise _refused(f"{OFFLINE}:B06", "传入的子订单号必须完全匹配物流包裹中的子订单")
        if any(lines[i].state != "open" for i in line_ids):
            raise _refused(f"{OFFLINE}:B04", "子订单已经发货或者已关闭，不能重复发货")
        self.record_shipment(order, company, waybill, line_ids)
        return {"shipping": {"is_success": True}}

    # -- auth ----------------------------------------------------------------------------
    def _token_refresh(self, params: Mapping[str, str]) -> dict[str, Any]:
        rotated = self.rotate_tokens(params["refresh_token"])
        if rotated is None:
            raise _refused("isv.invalid-parameter:refresh_token", "refresh_token 无效或已过期")
        access, refresh = rotated
        token = {
            "access_token": access, "token_type": "Bearer", "expires_in": 86400,
            "refresh_token": refresh, "re_expires_in": 2592000, "r1_expires_in": 86400,
            "r2_expires_in": 86400, "w1_expires_in": 86400, "w2_expires_in": 86400,
            "taobao_user_nick": "sandbox%E5%BA%97%E9%93%BA", "taobao_user_id": "2200000000001",
        }
        return {"token_result": json.dumps(token)}
