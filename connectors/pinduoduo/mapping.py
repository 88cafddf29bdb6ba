"""Pinduoduo JSON ⇄ canonical records, and the order status table.

Units differ by API and are easy to get wrong twice:
- order APIs give yuan as JSON numbers (`pay_amount: 11.01`): bodies are parsed with
  Decimal (`load_json`) so 11.01 becomes 1101 fen without binary-float drift;
- `pdd.goods.detail.get` gives integer fen (`price: 8800`), never scaled again;
- `pdd.goods.information.get` gives yuan strings (`group_price: "70.00"`).
Naive times are Beijing time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
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
    """PDD bodies with every JSON fraction as Decimal (amounts are yuan doubles)."""
    return json.loads(raw, parse_float=Decimal)


# -- statuses ------------------------------------------------------------------------------
# PDD has no single status string: `order_status` (1 待发货, 2 已发货待签收, 3 已签收) and
# the after-sale summary `refund_status` (1 none/closed, 2 in progress, 3 refunding,
# 4 refunded) together say where an order is. The platform status we keep is
# "<order_status>/<refund_status>"; a finished refund wins, an open one does not (the
# refund may still be refused, so the order stays where its shipping state puts it).
# `confirm_status` 0 (not yet a deal) / 2 (cancelled) overrides both when present.
STATUS_TABLE: Mapping[str, OrderStatus] = {
    "1/1": OrderStatus.PAID,
    "1/2": OrderStatus.PAID,
    "1/3": OrderStatus.PAID,
    "1/4": OrderStatus.REFUNDED,
    "2/1": OrderStatus.SHIPPED,
    "2/2": OrderStatus.SHIPPED,
    "2/3": OrderStatus.SHIPPED,
    "2/4": OrderStatus.REFUNDED,
    "3/1": OrderStatus.COMPLETED,
    "3/2": OrderStatus.COMPLETED,
    "3/3": OrderStatus.COMPLETED,
    "3/4": OrderStatus.REFUNDED,
    "confirm_status=0": OrderStatus.UNPAID,
    "confirm_status=2": OrderStatus.CANCELLED,
}

LINE_STATUS: Mapping[OrderStatus, LineStatus] = {
    OrderStatus.UNPAID: LineStatus.OPEN,
    OrderStatus.PAID: LineStatus.OPEN,
    OrderStatus.SHIPPED: LineStatus.SHIPPED,
    OrderStatus.COMPLETED: LineStatus.SHIPPED,
    OrderStatus.CANCELLED: LineStatus.CANCELLED,
    OrderStatus.REFUNDED: LineStatus.REFUNDED,
}


def platform_status(order: Mapping[str, Any]) -> str:
    confirm = order.get("confirm_status")
    if confirm is not None and str(confirm) in ("0", "2"):
        return f"confirm_status={confirm}"
    return f"{order.get('order_status')}/{order.get('refund_status', 1)}"


# -- small readers -------------------------------------------------------------------------
def fen_from_yuan(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, float):
        raise MoneyError("a yuan amount arrived as a float: parse bodies with load_json")
    return yuan_to_fen(value)


def fen_int(value: Any) -> int:
    """An amount the API already gives in fen (goods detail)."""
    if isinstance(value, float) or (isinstance(value, Decimal) and value != value.to_integral()):
        raise MoneyError(f"fen amount with a fraction: {value!r}")
    return int(value)


def when(text: Any) -> datetime | None:
    return parse_beijing(str(text)) if text not in (None, "", 0, "0") else None


def text(value: Any) -> str:
    return "" if value is None else str(value)


def flag(value: Any) -> bool:
    return str(value) in ("1", "true", "True")


# -- orders --------------------------------------------------------------------------------
def order_from_pdd(order: Mapping[str, Any]) -> OrderRecord:
    """One order object (increment list element or `order_info`) as an OrderRecord."""
    try:
        return _order(order)
    except BadResponse:
        raise
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise BadResponse(f"pinduoduo order does not map: {exc!r}",
                          body=json.dumps(order, default=str, ensure_ascii=False)) from exc


def _order(order: Mapping[str, Any]) -> OrderRecord:
    order_sn = text(order["order_sn"])
    key = platform_status(order)
    if key not in STATUS_TABLE:
        raise BadResponse(f"pinduoduo order {order_sn}: unknown status {key}",
                          body=json.dumps(order, default=str, ensure_ascii=False))
    status = STATUS_TABLE[key]
    created = when(order["created_time"])
    modified = when(order["updated_at"])
    if created is None or modified is None:
        raise ValueError("created_time / updated_at missing")
    presale_by = when(order.get("pre_sale_time")) if flag(order.get("is_pre_sale")) else None
    return OrderRecord(
        platform_order_id=order_sn,
        status=status,
        platform_status=key,
        created_at=created,
        modified_at=modified,
        paid_at=when(order.get("pay_time")) or when(order.get("confirm_time")),
        total_fen=fen_from_yuan(order.get("goods_amount")),
        paid_fen=fen_from_yuan(order.get("pay_amount")),
        post_fee_fen=fen_from_yuan(order.get("postage")),
        address=Address(
            province=text(order.get("province")), city=text(order.get("city")),
            # newer answers carry the address encrypted beside a readable mask
            district=text(order.get("town")),
            detail=text(order.get("address_mask") or order.get("address")),
            name=text(order.get("receiver_name_mask") or order.get("receiver_name")),
            phone=text(order.get("receiver_phone_mask") or order.get("receiver_phone")),
        ),
        lines=tuple(_lines(order, LINE_STATUS[status], presale_by)),
        buyer_remark=text(order.get("buyer_memo")),
        seller_remark=text(order.get("remark")),
        tracking_numbers=tuple(number for _, number in parcels(order)),
    )


def _lines(order: Mapping[str, Any], status: LineStatus,
           presale_by: datetime | None) -> list[OrderLineRecord]:
    lines: list[OrderLineRecord] = []
    seen: set[str] = set()
    for item in order.get("item_list") or ():
        sku_id = text(item.get("sku_id"))
        # PDD lines carry no id of their own; the SKU is unique in all but odd orders
        line_id = sku_id or text(item["goods_id"])
        while line_id in seen:
            line_id += "+"
        seen.add(line_id)
        unit = fen_from_yuan(item.get("goods_price"))
        quantity = int(item["goods_count"])
        lines.append(OrderLineRecord(
            platform_line_id=line_id, platform_item_id=text(item["goods_id"]),
            platform_sku_id=sku_id, merchant_code=text(item.get("outer_id")),
            title=text(item.get("goods_name")), quantity=quantity, unit_price_fen=unit,
            # discounts are per order on PDD; a line's share is not published
            paid_fen=unit * quantity, status=status, presale_ship_by=presale_by))
    return lines


def parcels(order: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(logistics_id, tracking_number) of every parcel the order carries."""
    found: list[tuple[str, str]] = []
    if text(order.get("tracking_number")):
        found.append((text(order.get("logistics_id")), text(order["tracking_number"])))
    for extra in order.get("extra_delivery_list") or ():
        if text(extra.get("tracking_number")):
            found.append((text(extra.get("logistics_id")), text(extra["tracking_number"])))
    return found


def shipped_at(order: Mapping[str, Any]) -> datetime | None:
    return when(order.get("shipping_time"))


# -- goods ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PddSku:
    sku_id: str
    outer_id: str  # "" when the merchant left it empty; "0" is a real code
    quantity: int
    group_price_fen: int  # 拼单价
    single_price_fen: int  # 单买价
    on_sale: bool


@dataclass(frozen=True, slots=True)
class PddGoods:
    goods_id: str
    outer_goods_id: str
    title: str
    skus: tuple[PddSku, ...]
    on_sale: bool | None = None  # None: this API does not say
    quantity: int | None = None
    market_price_fen: int | None = None


def goods_from_detail(detail: Mapping[str, Any]) -> PddGoods:
    """`goods_detail_get_response`: prices in fen."""
    try:
        status = detail.get("status")
        return PddGoods(
            goods_id=text(detail["goods_id"]), outer_goods_id=text(detail.get("outer_goods_id")),
            title=text(detail.get("goods_name")),
            on_sale=None if status is None else str(status) == "1",
            market_price_fen=(fen_int(detail["market_price"])
                              if detail.get("market_price") is not None else None),
            skus=tuple(PddSku(
                sku_id=text(sku["sku_id"]), outer_id=text(sku.get("out_sku_sn")),
                quantity=int(sku.get("quantity") or 0),
                group_price_fen=fen_int(sku["multi_price"]),
                single_price_fen=fen_int(sku["price"]),
                on_sale=flag(sku.get("is_onsale"))) for sku in detail.get("sku_list") or ()),
        )
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise BadResponse(f"pinduoduo goods detail does not map: {exc!r}",
                          body=json.dumps(detail, default=str, ensure_ascii=False)) from exc


def goods_from_information(info: Mapping[str, Any]) -> PddGoods:
    """`goods_info_get_response.goods_info`: prices are yuan strings, quantities strings."""
    try:
        return PddGoods(
            goods_id=text(info["goods_id"]), outer_goods_id="",
            title=text(info.get("goods_name")), on_sale=flag(info.get("is_onsale")),
            quantity=int(info["goods_quantity"]) if "goods_quantity" in info else None,
            skus=tuple(PddSku(
                sku_id=text(sku["sku_id"]), outer_id=text(sku.get("outer_id")),
                quantity=int(sku.get("sku_quantity") or 0),
                group_price_fen=fen_from_yuan(sku["group_price"]),
                single_price_fen=fen_from_yuan(sku["single_price"]),
                on_sale=flag(sku.get("is_sku_onsale"))) for sku in info.get("sku_list") or ()),
        )
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise BadResponse(f"pinduoduo goods information does not map: {exc!r}",
                          body=json.dumps(info, default=str, ensure_ascii=False)) from exc


def listings_of(goods: PddGoods, *, goods_on_sale: bool | None = None,
                price: str = "group") -> list[ListingRecord]:
    """One ListingRecord per SKU; a SKU sells only while the goods is on sale too."""
    listed = goods.on_sale if goods_on_sale is None else goods_on_sale
    return [ListingRecord(
        platform_item_id=goods.goods_id, platform_sku_id=sku.sku_id, merchant_code=sku.outer_id,
        title=goods.title,
        price_fen=sku.group_price_fen if price == "group" else sku.single_price_fen,
        quantity=sku.quantity, on_sale=sku.on_sale and listed is not False,
        item_merchant_code=goods.outer_goods_id) for sku in goods.skus]


# -- tokens --------------------------------------------------------------------------------
def token_set(body: Mapping[str, Any], previous: TokenSet) -> TokenSet:
    """`pop_auth_token_refresh_response`; keeps the refresh token PDD hands back."""
    access = text(body.get("access_token"))
    if not access:
        raise BadResponse("pinduoduo token refresh: no access_token",
                          body=json.dumps({k: "***" for k in body}))
    expires = body.get("expires_at")
    refresh_expires = body.get("refresh_token_expires_at")
    return TokenSet(
        access_token=access,
        refresh_token=text(body.get("refresh_token")) or previous.refresh_token,
        expires_at=from_epoch(int(expires)) if expires else None,
        refresh_expires_at=from_epoch(int(refresh_expires)) if refresh_expires else None,
    )
