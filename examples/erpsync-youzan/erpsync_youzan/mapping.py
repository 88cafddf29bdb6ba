"""Youzan JSON <-> canonical records: trades (`full_order_info`), items, the status table and
the express ids.

A trade is `{order_info, orders, address_info, remark_info, pay_info, delivery_order}`;
money arrives as yuan strings and becomes fen, times are Beijing `yyyy-MM-dd HH:mm:ss`. A
payload that does not map is a BadResponse, never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.clock import parse_beijing
from core.errors import BadResponse
from core.money import yuan_to_fen
from core.records import (
    Address,
    LineStatus,
    ListingRecord,
    OrderLineRecord,
    OrderRecord,
    OrderStatus,
)

# Every trade status of youzan.trades.sold.get 4.x. WAIT_BUYER_PAY, WAIT_SELLER_SEND_GOODS
# and TRADE_SUCCESS appear in public integration code; the others are assumptions (README).
STATUS_TABLE: Mapping[str, OrderStatus] = {
    "WAIT_BUYER_PAY": OrderStatus.UNPAID,
    "WAIT_CONFIRM": OrderStatus.PAID,  # 待成团 / 待接单: paid, not shippable yet
    "WAIT_SELLER_SEND_GOODS": OrderStatus.PAID,  # lines carry SHIPPED when partly shipped
    "WAIT_BUYER_CONFIRM_GOODS": OrderStatus.SHIPPED,
    "TRADE_SUCCESS": OrderStatus.COMPLETED,
    "TRADE_CLOSE": OrderStatus.CANCELLED,  # a paid trade closed by refund is REFUNDED
}
CLOSED_BY_REFUND = 2  # order_info.close_type of a trade closed after a full refund (A)

# Canonical carrier -> Youzan express id (`out_stype` of youzan.logistics.online.confirm,
# from youzan.logistics.express.get). UNCONFIRMED: the numbers are placeholders until
# checked against the express list of a real shop; override with options["carriers"].
EXPRESS_IDS: Mapping[str, str] = {
    "SF": "7", "ZTO": "2", "YTO": "3", "STO": "1", "YUNDA": "4", "JT": "1001",
    "EMS": "11", "POSTB": "12", "JD": "138", "DBL": "5",
}


def _time(value: Any) -> datetime | None:
    return parse_beijing(str(value)) if value else None


def _shipped_oids(trade: Mapping[str, Any]) -> dict[str, str]:
    """oid -> waybill, from the trade's packages."""
    found: dict[str, str] = {}
    for package in trade.get("delivery_order") or []:
        for dist in package.get("dists") or []:
            number = str((dist.get("express_info") or {}).get("express_no") or "")
            for oid in package.get("oids") or []:
                found[str(oid.get("oid"))] = number
    return found


def trade_status(info: Mapping[str, Any]) -> OrderStatus:
    status = STATUS_TABLE[str(info["status"])]
    if status is OrderStatus.CANCELLED and (info.get("close_type") == CLOSED_BY_REFUND
                                            or info.get("pay_time")):
        return OrderStatus.REFUNDED
    return status


def _line_status(order_status: OrderStatus, shipped: bool) -> LineStatus:
    if order_status is OrderStatus.REFUNDED:
        return LineStatus.REFUNDED
    if order_status is OrderStatus.CANCELLED:
        return LineStatus.CANCELLED
    if shipped or order_status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED):
        return LineStatus.SHIPPED
    return LineStatus.OPEN


def trade_to_order(trade: Mapping[str, Any]) -> OrderRecord:
    """A `full_order_info` (youzan.trade.get / trades.sold.get) as an OrderRecord."""
    try:
        info = trade["order_info"]
        address = trade.get("address_info") or {}
        pay = trade.get("pay_info") or {}
        shipped = _shipped_oids(trade)
        status = trade_status(info)
        created = parse_beijing(info["created"])
        lines = tuple(OrderLineRecord(
            platform_line_id=str(line["oid"]),
            platform_item_id=str(line["item_id"]),
            platform_sku_id=str(line.get("sku_id") or ""),
            merchant_code=str(line.get("outer_sku_id") or line.get("outer_item_id") or ""),
            title=str(line.get("title", "")),
            quantity=int(line["num"]),
            unit_price_fen=yuan_to_fen(line["price"]),
            paid_fen=yuan_to_fen(line.get("payment") or line["total_fee"]),
            status=_line_status(status, str(line["oid"]) in shipped),
        ) for line in trade.get("orders") or [])
        return OrderRecord(
            platform_order_id=str(info["tid"]),
            status=status,
            platform_status=str(info["status"]),
            created_at=created,
            modified_at=_time(info.get("update_time")) or created,
            paid_at=_time(info.get("pay_time")),
            total_fen=yuan_to_fen(pay["total_fee"]),
            paid_fen=yuan_to_fen(pay["payment"]),
            post_fee_fen=yuan_to_fen(pay.get("post_fee") or "0"),
            address=Address(
                province=str(address.get("delivery_province", "")),
                city=str(address.get("delivery_city", "")),
                district=str(address.get("delivery_district", "")),
                detail=str(address.get("delivery_address", "")),
                name=str(address.get("receiver_name", "")),
                phone=str(address.get("receiver_tel", "")),
            ),
            lines=lines,
            buyer_remark=str((trade.get("remark_info") or {}).get("buyer_message", "")),
            tracking_numbers=tuple(dict.fromkeys(n for n in shipped.values() if n)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"youzan trade does not map: {exc!r}", body=repr(dict(trade))) from exc


def item_to_listings(item: Mapping[str, Any]) -> list[ListingRecord]:
    """A youzan.item.get item: one record per SKU, or one for an item without SKUs."""
    try:
        item_id = str(item["item_id"])
        title = str(item.get("title", ""))
        code = str(item.get("item_no") or "")
        on_sale = bool(item.get("is_listing", True))
        skus = item.get("skus") or []
        if not skus:
            return [ListingRecord(item_id, "", code, title, yuan_to_fen(item["price"]),
                                  int(item["quantity"]), on_sale, code)]
        return [ListingRecord(item_id, str(s["sku_id"]), str(s.get("item_no") or ""), title,
                              yuan_to_fen(s["price"]), int(s["quantity"]), on_sale, code)
                for s in skus]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"youzan item does not map: {exc!r}", body=repr(dict(item))) from exc
