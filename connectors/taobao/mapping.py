"""Taobao JSON <-> canonical records: trades, items, the status tables and carrier codes.

Money arrives as yuan strings and becomes fen; times are Beijing `yyyy-MM-dd HH:mm:ss` and
become aware datetimes. A payload that does not map is a BadResponse (quarantined), never a
silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.taobao.client import unwrap_list
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

# Every trade status the API documents (reference §8).
STATUS_TABLE: Mapping[str, OrderStatus] = {
    "TRADE_NO_CREATE_PAY": OrderStatus.UNPAID,
    "WAIT_BUYER_PAY": OrderStatus.UNPAID,
    "PAY_PENDING": OrderStatus.UNPAID,
    "WAIT_PRE_AUTH_CONFIRM": OrderStatus.UNPAID,
    "WAIT_SELLER_SEND_GOODS": OrderStatus.PAID,
    # paid but the platform forbids shipping for now (group buy in progress): stock is
    # sold, the review rules hold it
    "PAID_FORBID_CONSIGN": OrderStatus.PAID,
    "SELLER_CONSIGNED_PART": OrderStatus.PAID,  # lines carry SHIPPED where shipped
    "WAIT_BUYER_CONFIRM_GOODS": OrderStatus.SHIPPED,
    "TRADE_BUYER_SIGNED": OrderStatus.SHIPPED,
    "TRADE_FINISHED": OrderStatus.COMPLETED,
    "TRADE_CLOSED": OrderStatus.REFUNDED,  # closed after payment: full refund
    "TRADE_CLOSED_BY_TAOBAO": OrderStatus.CANCELLED,  # closed before payment
}

# Sub-order (子订单) statuses that mean its goods left the warehouse.
_SHIPPED_LINE = frozenset({"WAIT_BUYER_CONFIRM_GOODS", "TRADE_BUYER_SIGNED", "TRADE_FINISHED"})

# Canonical carrier -> Taobao `company_code` (taobao.logistics.companies.get codes, which
# Cainiao's cp_code list shares). Overridable per shop through options["carriers"].
CARRIER_CODES: Mapping[str, str] = {
    "SF": "SF",
    "ZTO": "ZTO",
    "YTO": "YTO",
    "STO": "STO",
    "YUNDA": "YUNDA",
    # J&T took over Best Express's network and Alibaba lists it as "极兔速递-原百世快递" under
    # Best's old code; unconfirmed in an official list.
    "JT": "HTKY",
    "EMS": "EMS",
    "POSTB": "POSTB",  # 邮政快递包裹
    "JD": "LE04284890",  # 京东快递 (Cainiao-registered code, not "JD")
    "DBL": "DBKD",  # 德邦快递
}


def _time(value: Any) -> datetime | None:
    return parse_beijing(str(value)) if value else None


def _line_status(order: Mapping[str, Any]) -> LineStatus:
    status = order.get("status", "")
    if order.get("refund_status") == "SUCCESS" or status == "TRADE_CLOSED":
        return LineStatus.REFUNDED
    if status == "TRADE_CLOSED_BY_TAOBAO":
        return LineStatus.CANCELLED
    if status in _SHIPPED_LINE:
        return LineStatus.SHIPPED
    return LineStatus.OPEN


def order_line(order: Mapping[str, Any]) -> OrderLineRecord:
    return OrderLineRecord(
        platform_line_id=str(order["oid"]),
        platform_item_id=str(order["num_iid"]),
        platform_sku_id=str(order.get("sku_id") or ""),
        merchant_code=str(order.get("outer_sku_id") or order.get("outer_iid") or ""),
        title=str(order.get("title", "")),
        quantity=int(order["num"]),
        unit_price_fen=yuan_to_fen(order["price"]),
        paid_fen=yuan_to_fen(order.get("payment") or order["total_fee"]),
        status=_line_status(order),
    )


def trade_to_order(trade: Mapping[str, Any]) -> OrderRecord:
    """A `taobao.trade.fullinfo.get` trade as an OrderRecord."""
    try:
        orders = unwrap_list(trade, "orders", "order")
        waybills = [str(o["invoice_no"]) for o in orders if o.get("invoice_no")]
        created = parse_beijing(trade["created"])
        return OrderRecord(
            platform_order_id=str(trade["tid"]),
            status=STATUS_TABLE[trade["status"]],
            platform_status=trade["status"],
            created_at=created,
            modified_at=_time(trade.get("modified")) or created,
            paid_at=_time(trade.get("pay_time")),
            total_fen=yuan_to_fen(trade["total_fee"]),
            paid_fen=yuan_to_fen(trade["payment"]),
            post_fee_fen=yuan_to_fen(trade.get("post_fee") or "0"),
            address=Address(
                province=trade.get("receiver_state", ""),
                city=trade.get("receiver_city", ""),
                district=trade.get("receiver_district", ""),
                detail=trade.get("receiver_address", ""),
                name=trade.get("receiver_name", ""),
                phone=trade.get("receiver_mobile") or trade.get("receiver_phone", ""),
            ),
            lines=tuple(order_line(o) for o in orders),
            buyer_remark=trade.get("buyer_message", ""),
            seller_remark=trade.get("seller_memo", ""),
            tracking_numbers=tuple(dict.fromkeys(waybills)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"taobao trade {trade.get('tid')!r} does not map: {exc!r}",
                          body=repr(dict(trade))) from exc


def sku_prices(item: Mapping[str, Any]) -> tuple[int, dict[str, tuple[str, int]]]:
    """The item price and, per live SKU id, the `properties` that locate it and its price
    (all in fen) — what a price update needs to keep the item inside its SKUs' range."""
    try:
        return yuan_to_fen(item["price"]), {
            str(s["sku_id"]): (str(s["properties"]), yuan_to_fen(s["price"]))
            for s in unwrap_list(item, "skus", "sku") if s.get("status") != "delete"}
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"taobao item {item.get('num_iid')!r} has no usable SKU prices: "
                          f"{exc!r}", body=repr(dict(item))) from exc


def item_to_listings(item: Mapping[str, Any]) -> list[ListingRecord]:
    """An item from `taobao.items.seller.list.get` (fields incl. `sku`): one record per live
    SKU, or one with platform_sku_id "" for an item without SKUs."""
    try:
        item_id = str(item["num_iid"])
        on_sale = item.get("approve_status") == "onsale"
        title = str(item.get("title", ""))
        item_code = str(item.get("outer_id") or "")
        skus = [s for s in unwrap_list(item, "skus", "sku") if s.get("status") != "delete"]
        if not skus:
            return [ListingRecord(item_id, "", item_code, title, yuan_to_fen(item["price"]),
                                  int(item["num"]), on_sale, item_code, _time(item.get("modified")))]
        return [
            ListingRecord(item_id, str(s["sku_id"]), str(s.get("outer_id") or ""), title,
                          yuan_to_fen(s["price"]), int(s["quantity"]), on_sale, item_code,
                          _time(s.get("modified") or item.get("modified")))
            for s in skus
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"taobao item {item.get('num_iid')!r} does not map: {exc!r}",
                          body=repr(dict(item))) from exc
