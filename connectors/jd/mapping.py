"""JD JSON ⇄ canonical records, and the order-state table.

JD money fields are yuan decimal strings ("12.30"); order times are Beijing
`yyyy-MM-dd HH:mm:ss`; SKU `modified` is epoch milliseconds. Order lines carry no id of
their own: the SKU id is the line id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.clock import from_epoch, parse_beijing
from core.errors import BadResponse
from core.money import MoneyError, yuan_to_fen
from core.records import (
    Address,
    LineStatus,
    ListingRecord,
    OrderLineRecord,
    OrderRecord,
    OrderStatus,
    TokenSet,
)


def load_json(raw: bytes | str) -> Any:
    return json.loads(raw, parse_float=Decimal)


# Every orderState JD documents. LOCKED (after-sale/cancel pending), PAUSE and
# POP_ORDER_PAUSE are paid orders that must not ship yet: canonical PAID, the core's
# review rules hold them. The last four appear only in older lists (LBP/SOPL, returns).
STATUS_TABLE: Mapping[str, OrderStatus] = {
    "WAIT_SELLER_STOCK_OUT": OrderStatus.PAID,
    "WAIT_SELLER_DELIVERY": OrderStatus.PAID,  # JD Worldwide: awaiting domestic shipment
    "WAIT_SEND_CODE": OrderStatus.PAID,  # LOC orders: awaiting the service code
    "PAUSE": OrderStatus.PAID,
    "POP_ORDER_PAUSE": OrderStatus.PAID,
    "LOCKED": OrderStatus.PAID,
    "WAIT_GOODS_RECEIVE_CONFIRM": OrderStatus.SHIPPED,
    "FINISHED_L": OrderStatus.COMPLETED,
    "TRADE_CANCELED": OrderStatus.CANCELLED,  # REFUNDED when paid online first: see below
    "SEND_TO_DISTRIBUTION_CENER": OrderStatus.SHIPPED,  # sic, JD's spelling
    "DISTRIBUTION_CENTER_RECEIVED": OrderStatus.SHIPPED,
    "RECEIPTS_CONFIRM": OrderStatus.COMPLETED,
    "DELIVERY_RETURN": OrderStatus.SHIPPED,  # parcel coming back; the after-sale decides
}

# TRADE_CANCELED is JD's one closed state, before or after payment (a paid order the buyer
# cancels before shipment, a parcel refused and returned). JD keeps the payment on the
# order: `paymentConfirmTime` (JD's zero date "0001-01-01 00:00:00" or empty when unpaid)
# and `payType` ("1-货到付款" cash on delivery, "4-在线支付" online, …). An order closed
# after an online payment was refunded: canonical REFUNDED. A cash-on-delivery order that
# closes never collected money (delivered and paid it finishes as FINISHED_L; after-sales
# on a finished order leave it FINISHED_L): canonical CANCELLED.
CASH_ON_DELIVERY = "1"  # payType code of 货到付款
CLOSED_STATES = frozenset({"TRADE_CANCELED"})

LINE_STATUS: Mapping[OrderStatus, LineStatus] = {
    OrderStatus.UNPAID: LineStatus.OPEN,
    OrderStatus.PAID: LineStatus.OPEN,
    OrderStatus.SHIPPED: LineStatus.SHIPPED,
    OrderStatus.COMPLETED: LineStatus.SHIPPED,
    OrderStatus.CANCELLED: LineStatus.CANCELLED,
    OrderStatus.REFUNDED: LineStatus.REFUNDED,
}

# orderInfo fields the connector asks pop.order.search / pop.order.get for
ORDER_FIELDS = (
    "orderId", "orderState", "orderStateRemark", "orderStartTime", "modified",
    "paymentConfirmTime", "orderEndTime", "orderTotalPrice", "orderSellerPrice",
    "orderPayment", "freightPrice", "sellerDiscount", "orderRemark", "venderRemark",
    "consigneeInfo", "itemInfoList", "waybill", "logisticsId", "payType",
)


def fen(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, float):
        raise MoneyError("a yuan amount arrived as a float: parse bodies with load_json")
    return yuan_to_fen(value)


def when(value: Any) -> datetime | None:
    if value in (None, "", "0001-01-01 00:00:00"):
        return None
    return parse_beijing(str(value)[:19])


def text(value: Any) -> str:
    return "" if value is None else str(value)


def waybills(value: Any) -> tuple[str, ...]:
    """`waybill` holds one number, or several joined by `,` (one carrier) and `|`."""
    return tuple(part for part in re.split(r"[,|]", text(value)) if part.strip())


def pay_type(value: Any) -> str:
    """The numeric code of `payType` ("4-在线支付" -> "4")."""
    return text(value).split("-", 1)[0].strip()


def canonical_status(state: str, info: Mapping[str, Any]) -> OrderStatus:
    """The table's status, refined: a closed order that had been paid online is REFUNDED."""
    status = STATUS_TABLE[state]
    if (state in CLOSED_STATES and when(info.get("paymentConfirmTime")) is not None
            and pay_type(info.get("payType")) != CASH_ON_DELIVERY):
        return OrderStatus.REFUNDED
    return status


def order_from_jd(info: Mapping[str, Any]) -> OrderRecord:
    try:
        return _order(info)
    except BadResponse:
        raise
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise BadResponse(f"jd order does not map: {exc!r}",
                          body=json.dumps(info, default=str, ensure_ascii=False)) from exc


def _order(info: Mapping[str, Any]) -> OrderRecord:
    order_id = text(info["orderId"])
    state = text(info["orderState"])
    if state not in STATUS_TABLE:
        raise BadResponse(f"jd order {order_id}: unknown orderState {state!r}",
                          body=json.dumps(info, default=str, ensure_ascii=False))
    status = canonical_status(state, info)
    created = when(info["orderStartTime"])
    modified = when(info.get("modified")) or created
    if created is None or modified is None:
        raise ValueError("orderStartTime missing")
    consignee = info.get("consigneeInfo") or {}
    line_status = LINE_STATUS[status]
    lines: list[OrderLineRecord] = []
    seen: set[str] = set()
    for item in info.get("itemInfoList") or ():
        line_id = text(item["skuId"])
        while line_id in seen:
            line_id += "+"
        seen.add(line_id)
        unit = fen(item.get("jdPrice"))
        quantity = int(item["itemTotal"])
        lines.append(OrderLineRecord(
            platform_line_id=line_id, platform_item_id=text(item.get("wareId")),
            platform_sku_id=text(item["skuId"]), merchant_code=text(item.get("outerSkuId")),
            title=text(item.get("skuName")), quantity=quantity, unit_price_fen=unit,
            paid_fen=unit * quantity, status=line_status))
    return OrderRecord(
        platform_order_id=order_id, status=status, platform_status=state,
        created_at=created, modified_at=modified, paid_at=when(info.get("paymentConfirmTime")),
        total_fen=fen(info.get("orderTotalPrice")), paid_fen=fen(info.get("orderPayment")),
        post_fee_fen=fen(info.get("freightPrice")),
        address=Address(
            province=text(consignee.get("province")), city=text(consignee.get("city")),
            district=text(consignee.get("county")),
            detail=text(consignee.get("fullAddress")), name=text(consignee.get("fullname")),
            phone=text(consignee.get("mobile") or consignee.get("telephone"))),
        lines=tuple(lines), buyer_remark=text(info.get("orderRemark")),
        seller_remark=text(info.get("venderRemark")),
        tracking_numbers=waybills(info.get("waybill")),
    )


def listing_from_sku(sku: Mapping[str, Any]) -> ListingRecord:
    """One `jingdong.sku.read.searchSkuList` row; status 1 = on shelf."""
    try:
        modified = sku.get("modified")
        return ListingRecord(
            platform_item_id=text(sku["wareId"]), platform_sku_id=text(sku["skuId"]),
            merchant_code=text(sku.get("outerId")),
            title=text(sku.get("wareTitle") or sku.get("skuName")),
            price_fen=fen(sku.get("jdPrice")), quantity=int(sku.get("stockNum") or 0),
            on_sale=str(sku.get("status")) == "1",
            modified_at=from_epoch(int(modified) / 1000) if modified else None)
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise BadResponse(f"jd sku does not map: {exc!r}",
                          body=json.dumps(sku, default=str, ensure_ascii=False)) from exc


def token_set(body: Mapping[str, Any], previous: TokenSet) -> TokenSet:
    """The OAuth refresh answer; JD asks to always keep the new pair."""
    expires_in = body.get("expires_in")
    issued = body.get("time")
    expires_at = (from_epoch(int(issued) / 1000 + int(expires_in))
                  if issued and expires_in else None)
    return TokenSet(access_token=text(body["access_token"]),
                    refresh_token=text(body.get("refresh_token")) or previous.refresh_token,
                    expires_at=expires_at)
