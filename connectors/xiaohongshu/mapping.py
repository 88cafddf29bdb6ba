"""Xiaohongshu JSON ⇄ canonical records, and the order status table.

Money is fen throughout the XHS API; order times are epoch milliseconds. The published field
examples use the literal string "null" for absent values (e.g. `erpcode`), so every text field
goes through `_text`, which never lets "null" become a SKU code or a remark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.clock import BEIJING
from core.errors import BadResponse
from core.records import (
    Address,
    LineStatus,
    ListingRecord,
    OrderLineRecord,
    OrderRecord,
    OrderStatus,
)

# orderStatus (doc enum). 10 換货申请中 comes after delivery: the goods are with the buyer.
STATUS_TABLE: Mapping[str, OrderStatus] = {
    "1": OrderStatus.UNPAID,     # 已下单待付款
    "2": OrderStatus.PAID,       # 已支付处理中 (risk check)
    "3": OrderStatus.PAID,       # 清关中
    "4": OrderStatus.PAID,       # 待发货
    "5": OrderStatus.PAID,       # 部分发货 (lines tell which shipped)
    "6": OrderStatus.SHIPPED,    # 待收货
    "7": OrderStatus.COMPLETED,  # 已完成
    "8": OrderStatus.CANCELLED,  # 已关闭
    "9": OrderStatus.CANCELLED,  # 已取消
    "10": OrderStatus.SHIPPED,   # 换货申请中
}
AFTER_SALE_COMPLETED = 3  # orderAfterSalesStatus / skuAfterSaleStatus: 售后完成
CLOSED_STATUSES = frozenset({"8", "9"})


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = str(value).strip()
    return "" if text == "null" else text


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "" or value == "null":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadResponse(f"xiaohongshu: expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise BadResponse(f"xiaohongshu: expected an integer, got {value!r}") from exc


def from_ms(value: Any) -> datetime | None:
    millis = _int(value)
    return datetime.fromtimestamp(millis / 1000, BEIJING) if millis > 0 else None


def _required_time(row: Mapping[str, Any], key: str) -> datetime:
    moment = from_ms(row.get(key))
    if moment is None:
        raise BadResponse(f"xiaohongshu order {row.get('orderId')!r}: no {key}")
    return moment


# -- orders ------------------------------------------------------------------------------
def order_status(row: Mapping[str, Any]) -> OrderStatus:
    code = str(row.get("orderStatus"))
    try:
        status = STATUS_TABLE[code]
    except KeyError:
        raise BadResponse(f"xiaohongshu order {row.get('orderId')!r}: unknown orderStatus {code}") from None
    # a closed order whose after-sale completed was refunded, not merely cancelled
    if code in CLOSED_STATUSES and _int(row.get("orderAfterSalesStatus")) == AFTER_SALE_COMPLETED:
        return OrderStatus.REFUNDED
    return status


def shipments(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(expressCompanyCode, expressTrackingNo) pairs the platform holds for the order."""
    found = [(_text(row.get("expressCompanyCode")), _text(row.get("expressTrackingNo")))]
    found += [(_text(d.get("expressCompanyCode")), _text(d.get("expressTrackingNo")))
              for d in row.get("simpleDeliveryOrderList") or ()]
    return tuple(dict.fromkeys((code, number) for code, number in found if number))


def tracking_numbers(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(number for _, number in shipments(row)))


def _shipped_sku_ids(row: Mapping[str, Any], all_sku_ids: Iterable[str]) -> set[str]:
    shipped: set[str] = set()
    for delivery in row.get("simpleDeliveryOrderList") or ():
        if _text(delivery.get("expressTrackingNo")):
            listed = [str(s) for s in delivery.get("skuIdList") or ()]
            shipped.update(listed or all_sku_ids)
    return shipped


def _line(sku: Mapping[str, Any], status: LineStatus) -> OrderLineRecord:
    quantity = _int(sku.get("skuQuantity"), 1)
    paid = _int(sku.get("totalPaidAmount"))
    gross = paid + _int(sku.get("totalMerchantDiscount")) + _int(sku.get("totalRedDiscount"))
    sku_id = _text(sku.get("skuId"))
    return OrderLineRecord(
        platform_line_id=sku_id,  # XHS has no line id: a SKU appears once per order
        platform_item_id=_text(sku.get("itemId")),
        platform_sku_id=sku_id,
        merchant_code=_text(sku.get("erpcode")),
        title=_text(sku.get("skuName")),
        quantity=quantity,
        unit_price_fen=gross // quantity if quantity else gross,
        paid_fen=paid,
        status=status,
    )


def _line_status(order: OrderStatus, sku: Mapping[str, Any], shipped: set[str]) -> LineStatus:
    if _int(sku.get("skuAfterSaleStatus")) == AFTER_SALE_COMPLETED or order is OrderStatus.REFUNDED:
        return LineStatus.REFUNDED
    if order is OrderStatus.CANCELLED:
        return LineStatus.CANCELLED
    if order in (OrderStatus.SHIPPED, OrderStatus.COMPLETED) or _text(sku.get("skuId")) in shipped:
        return LineStatus.SHIPPED
    return LineStatus.OPEN


def order_from_json(row: Mapping[str, Any]) -> OrderRecord:
    """An order from `order.getOrderDetail` data (or a bare `getOrderList` row: no lines)."""
    order_id = _text(row.get("orderId"))
    if not order_id:
        raise BadResponse("xiaohongshu order without orderId")
    status = order_status(row)
    skus = list(row.get("skuList") or ())
    shipped = _shipped_sku_ids(row, [_text(s.get("skuId")) for s in skus])
    lines = tuple(_line(s, _line_status(status, s, shipped)) for s in skus)
    return OrderRecord(
        platform_order_id=order_id,
        status=status,
        platform_status=str(row.get("orderStatus")),
        created_at=_required_time(row, "createdTime"),
        modified_at=_required_time(row, "updateTime"),
        paid_at=None if status is OrderStatus.UNPAID else from_ms(row.get("paidTime")),
        total_fen=sum(line.unit_price_fen * line.quantity for line in lines),
        paid_fen=_int(row.get("totalPayAmount")),
        post_fee_fen=_int(row.get("totalShippingFree")),  # sic: the API's name for 运费
        address=Address(
            province=_text(row.get("receiverProvinceName")),
            city=_text(row.get("receiverCityName")),
            district=_text(row.get("receiverDistrictName")),
            detail=_text(row.get("receiverAddress")),
            name=_text(row.get("receiverName")),
            phone=_text(row.get("receiverPhone")),
        ),
        lines=lines,
        buyer_remark=_text(row.get("customerRemark")),
        seller_remark=_text(row.get("sellerRemark")),
        tracking_numbers=tracking_numbers(row),
    )


# -- listings ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class XhsSku:
    """One `product.getDetailSkuList` row, read once."""

    item_id: str
    sku_id: str
    title: str
    erp_code: str
    barcode: str
    price_fen: int
    market_price_fen: int
    stock: int
    buyable: bool


def sku_from_row(row: Mapping[str, Any]) -> XhsSku:
    item, sku = row.get("item") or {}, row.get("sku") or {}
    sku_id = _text(sku.get("id"))
    if not sku_id:
        raise BadResponse("xiaohongshu SKU row without sku.id")
    return XhsSku(
        # the row pairs the SKU with its item; the ids in the doc example differ only
        # because both are masked placeholders, so the row's item id is the one to trust
        item_id=_text(item.get("id")) or _text(sku.get("itemId")),
        sku_id=sku_id,
        title=_text(item.get("name")),
        erp_code=_text(sku.get("erpCode")),
        barcode=_text(sku.get("barcode")),
        price_fen=_int(sku.get("price")),
        market_price_fen=_int(sku.get("originalPrice")),
        stock=_int(sku.get("stock")),
        buyable=bool(sku.get("buyable")),
    )


def listing_from_sku(sku: XhsSku) -> ListingRecord:
    return ListingRecord(
        platform_item_id=sku.item_id,
        platform_sku_id=sku.sku_id,
        merchant_code=sku.erp_code,
        title=sku.title,
        price_fen=sku.price_fen,
        quantity=sku.stock,
        on_sale=sku.buyable,
    )


# -- logistics ---------------------------------------------------------------------------
# canonical carrier -> `expressCompanyCode` (common.getExpressCompanyList). `zto` and
# `shunfeng` appear in the official examples; the others follow the same lower-case naming
# and are UNCONFIRMED: check them against common.getExpressCompanyList and override with
# `shop.options["carriers"]`.
EXPRESS_COMPANIES: Mapping[str, str] = {
    "SF": "shunfeng",
    "ZTO": "zto",
    "YTO": "yuantong",
    "STO": "shentong",
    "YUNDA": "yunda",
    "JT": "jtexpress",
    "EMS": "ems",
    "POSTB": "youzhengguonei",
    "JD": "jd",
    "DBL": "debangwuliu",
}
SELF_DELIVERY = "selfdelivery"  # 无物流发货: expressNo carries the delivery content
