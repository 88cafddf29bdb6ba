"""Dewu JSON ⇄ canonical records: orders (one SKU line per order), bids (the seller's
listings), the order status table and the two carrier tables.

Dewu's model is not a shop's: the SPU/SKU catalogue belongs to the platform and the seller
places bids (出价) on its SKUs, so a listing here is (spu_id, sku_id) with the bid's price and
remaining quantity. Most orders ship to Dewu's inspection warehouse, not to the buyer: the
address such an order goes to is Dewu's (the platform's receiving address), and that is what
the order maps as its ship-to address. Brand-direct orders go to the buyer, whose address Dewu
does not put in the order (only `brand_deliver/query_buyer_address`, encrypted, for
merchant-chosen logistics, and the waybill it prints): they map no address. Amounts are fen;
times are Beijing `yyyy-MM-dd HH:mm:ss`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.dewu.client import DewuApiSpec
from core.clock import parse_beijing
from core.errors import BadResponse
from core.records import (
    Address,
    LineStatus,
    ListingRecord,
    OrderLineRecord,
    OrderRecord,
    OrderStatus,
)

# order_status (production client's transcription of the official enum). Once the seller has
# handed the goods to Dewu (2010) the seller's part of shipping is done.
STATUS_TABLE: Mapping[str, OrderStatus] = {
    "1100": OrderStatus.UNPAID,     # 定金已支付 (deposit presale, balance due)
    "1200": OrderStatus.UNPAID,     # 待支付尾款
    "2000": OrderStatus.PAID,       # 支付成功, awaiting seller shipment
    "2007": OrderStatus.PAID,       # 待卖家发货 (众筹成功)
    "2010": OrderStatus.SHIPPED,    # 待平台收货 (seller shipped to the warehouse)
    "3000": OrderStatus.SHIPPED,    # 平台已收货
    "3010": OrderStatus.SHIPPED,    # 质检通过
    "3020": OrderStatus.SHIPPED,    # 鉴别通过
    "3030": OrderStatus.SHIPPED,    # 待平台发货
    "3040": OrderStatus.SHIPPED,    # 待买家收货
    "4000": OrderStatus.COMPLETED,  # 交易成功
    "7000": OrderStatus.CANCELLED,  # 交易失败 (未支付)
    "7500": OrderStatus.CANCELLED,  # 定金已支付，交易关闭 (未支付尾款)
    "8010": OrderStatus.REFUNDED,   # 交易关闭 after payment (CANCELLED if never paid)
}
# 8010 closes a paid order whatever the close_type (buyer closed, seller shipping timeout,
# platform cancelled, QC/authentication failed, returned …): the buyer's money goes back.
# An order that was never paid fails as 7000 instead; an 8010 without `pay_time` (e.g.
# close_type 10, payment timeout) closed nothing paid and maps to CANCELLED.
CLOSED = "8010"

# 品牌直发 express_type codes (transcribed official table). China Post parcels go as EMS.
BRAND_CARRIERS: Mapping[str, str] = {
    "SF": "SF", "ZTO": "ZT", "YTO": "YT", "STO": "ST", "YUNDA": "YD", "JT": "JT",
    "EMS": "EMS", "POSTB": "EMS", "JD": "JD", "DBL": "DB",
}
# `carrier` of order/delivery (to the inspection warehouse): 0 顺丰, 1 京东, 2 德邦 (the
# domestic spot/presale flows accept only these three).
WAREHOUSE_CARRIERS: Mapping[str, str] = {"SF": "0", "JD": "1", "DBL": "2"}

BID_ON_SALE = 1  # bid status: 1 上架, 10 下架, 11 保证金不足下架, 20 售空
BID_LIVE_STATUSES = frozenset({1, 11, 20})  # can still take a quantity


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadResponse(f"dewu: expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise BadResponse(f"dewu: expected an integer, got {value!r}") from exc


def _time(value: Any) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        return parse_beijing(text)
    except ValueError as exc:
        raise BadResponse(f"dewu: bad time {text!r}") from exc


def _first_code(value: Any) -> str:
    if isinstance(value, list | tuple):
        return _text(value[0]) if value else ""
    return _text(value).split(",")[0].strip()


def order_status(row: Mapping[str, Any]) -> OrderStatus:
    code = _text(row.get("order_status"))
    try:
        status = STATUS_TABLE[code]
    except KeyError:
        raise BadResponse(f"dewu order {row.get('order_no')!r}: unknown order_status {code}") from None
    if code == CLOSED and _time(row.get("pay_time")) is None:
        return OrderStatus.CANCELLED
    return status


def _line_status(status: OrderStatus) -> LineStatus:
    return {
        OrderStatus.SHIPPED: LineStatus.SHIPPED, OrderStatus.COMPLETED: LineStatus.SHIPPED,
        OrderStatus.CANCELLED: LineStatus.CANCELLED, OrderStatus.REFUNDED: LineStatus.REFUNDED,
    }.get(status, LineStatus.OPEN)


def tracking_numbers(row: Mapping[str, Any]) -> tuple[str, ...]:
    express = row.get("express_to_platform") or {}
    number = _text(express.get("express_no")) if isinstance(express, dict) else ""
    return (number,) if number else ()


def ship_to(row: Mapping[str, Any], spec: DewuApiSpec) -> Address:
    """The platform's receiving address of a warehouse-bound order; empty when the order
    carries none (brand-direct orders)."""
    block = row.get(spec.platform_address_field)
    if not isinstance(block, dict):
        return Address("", "", "", "")
    return Address(province=_text(block.get("province")), city=_text(block.get("city")),
                   district=_text(block.get("district")),
                   detail=_text(block.get("address_detail")), name=_text(block.get("name")),
                   phone=_text(block.get("mobile")))


def freight(row: Mapping[str, Any], spec: DewuApiSpec) -> int:
    block = row.get(spec.freight_field)
    return _int(block.get("freight")) if isinstance(block, dict) else 0


def order_from_json(row: Mapping[str, Any], spec: DewuApiSpec | None = None) -> OrderRecord:
    spec = spec or DewuApiSpec()
    order_no = _text(row.get("order_no"))
    if not order_no:
        raise BadResponse("dewu order without order_no")
    status = order_status(row)
    created = _time(row.get("create_time"))
    modified = _time(row.get("modify_time")) or created
    if created is None or modified is None:
        raise BadResponse(f"dewu order {order_no}: no create_time")
    quantity = _int(row.get("qty"), 1)
    unit = _int(row.get("sku_price"))
    post_fee = freight(row, spec)
    paid = _int(row.get("pay_amount"), unit * quantity + post_fee)
    line = OrderLineRecord(
        platform_line_id=order_no,  # one SKU per order: the order is the line
        platform_item_id=_text(row.get("spu_id")),
        platform_sku_id=_text(row.get("sku_id")),
        merchant_code=_first_code(row.get("other_merchant_sku_codes")),
        title=_text(row.get("title")),
        quantity=quantity,
        unit_price_fen=unit,
        paid_fen=max(paid - post_fee, 0),  # the freight is the order's, not the line's
        status=_line_status(status),
    )
    return OrderRecord(
        platform_order_id=order_no,
        status=status,
        platform_status=_text(row.get("order_status")),
        created_at=created,
        modified_at=modified,
        paid_at=None if status is OrderStatus.UNPAID else _time(row.get("pay_time")),
        total_fen=unit * quantity,
        paid_fen=paid,
        post_fee_fen=post_fee,
        address=ship_to(row, spec),
        lines=(line,),
        tracking_numbers=tracking_numbers(row),
    )


def order_type(row: Mapping[str, Any]) -> int:
    return _int(row.get("order_type"))


@dataclass(frozen=True, slots=True)
class DewuBid:
    bidding_no: str
    bidding_type: int
    spu_id: str
    sku_id: str
    article_number: str
    title: str
    price_fen: int
    qty: int
    qty_sold: int
    qty_remain: int
    status: int


def bid_from_json(row: Mapping[str, Any]) -> DewuBid:
    bidding_no = _text(row.get("bidding_no"))
    if not bidding_no:
        raise BadResponse("dewu bid without bidding_no")
    qty = _int(row.get("qty"))
    sold = _int(row.get("qty_sold"))
    return DewuBid(
        bidding_no=bidding_no,
        bidding_type=_int(row.get("bidding_type")),
        spu_id=_text(row.get("spu_id")),
        sku_id=_text(row.get("sku_id")),
        article_number=_text(row.get("article_number")),
        title=_text(row.get("title")),
        price_fen=_int(row.get("price")),
        qty=qty,
        qty_sold=sold,
        qty_remain=_int(row.get("qty_remain"), qty - sold),
        status=_int(row.get("status")),
    )


def listing_from_bid(bid: DewuBid) -> ListingRecord:
    return ListingRecord(
        platform_item_id=bid.spu_id,
        platform_sku_id=bid.sku_id,
        merchant_code="",  # the SKU is Dewu's: join on article number + spec instead
        title=bid.title or bid.article_number,
        price_fen=bid.price_fen,
        quantity=bid.qty_remain,
        on_sale=bid.status == BID_ON_SALE,
        item_merchant_code=bid.article_number,
    )
