"""Douyin JSON ⇄ canonical records: shop orders (父订单) with their SKU orders (子订单),
the legacy v1 child-order element, products/SKUs, and message pushes.

Money is integer fen on Douyin already; times are Unix seconds (legacy v1: milliseconds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
    PushEvent,
    PushKind,
)

# order_status of shop orders and SKU orders (SDK enum; the legacy v1 list uses 1–5 alike)
STATUS_TABLE: Mapping[str, OrderStatus] = {
    "1": OrderStatus.UNPAID,  # 待确认/待支付
    "105": OrderStatus.PAID,  # 已支付
    "2": OrderStatus.PAID,  # 备货中
    "101": OrderStatus.PAID,  # 部分发货: paid with some lines shipped
    "3": OrderStatus.SHIPPED,  # 已发货（全部发货）
    "4": OrderStatus.CANCELLED,  # 已取消 (REFUNDED when a paid order closed by refund)
    "5": OrderStatus.COMPLETED,  # 已完成（已收货）
}

# after_sale_info.refund_status: 1 待退款, 3 退款成功, 4 退款失败
REFUND_SUCCESS = 3

# push tags (message-docs): order events, after-sale events
ORDER_TAGS = frozenset({"100", "101", "102", "103", "104", "105", "106", "108", "109", "110",
                        "111", "113", "126"})
REFUND_TAGS = frozenset({"200", "201", "202", "203", "204", "205", "206", "207", "208", "209",
                         "211", "226", "227"})
VERIFY_TAG = "0"  # the platform's check that the push URL answers
OCCURRED_KEYS = ("update_time", "modify_time", "pay_time", "create_time", "apply_time")


def when(seconds: Any) -> datetime | None:
    value = int(seconds or 0)
    return datetime.fromtimestamp(value, BEIJING) if value > 0 else None


def when_ms(millis: Any) -> datetime | None:
    value = int(millis or 0)
    return datetime.fromtimestamp(value / 1000, BEIJING) if value > 0 else None


def _required_time(value: datetime | None, field: str, order_id: str) -> datetime:
    if value is None:
        raise BadResponse(f"douyin order {order_id}: no {field}")
    return value


def _address(order: Mapping[str, Any]) -> Address:
    raw = order.get("post_addr") or {}
    if isinstance(raw, str):  # legacy v1: a JSON text; redacted copies hold plain text
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = {"detail": raw}
    if not isinstance(raw, Mapping):
        raw = {}

    def name(key: str) -> str:
        part = raw.get(key) or {}
        return str(part.get("name", "")) if isinstance(part, Mapping) else str(part)

    return Address(
        province=name("province"), city=name("city"), district=name("town"),
        detail=str(raw.get("detail", "") or raw.get("encrypt_detail", "")),
        name=str(order.get("mask_post_receiver") or order.get("post_receiver")
                 or order.get("postReceiver") or ""),
        phone=str(order.get("mask_post_tel") or order.get("post_tel")
                  or order.get("postTel") or ""),
    )


def _refunded(sku: Mapping[str, Any]) -> bool:
    info = sku.get("after_sale_info") or {}
    return int(info.get("refund_status") or 0) == REFUND_SUCCESS


def _line_status(sku: Mapping[str, Any], shipped_ids: set[str]) -> LineStatus:
    if _refunded(sku):
        return LineStatus.REFUNDED
    status = str(sku.get("order_status", ""))
    if status == "4":
        return LineStatus.CANCELLED
    if status in ("3", "5") or str(sku.get("order_id")) in shipped_ids:
        return LineStatus.SHIPPED
    return LineStatus.OPEN


def canonical_status(platform_status: str, lines: Sequence[OrderLineRecord],
                     paid: bool) -> OrderStatus:
    try:
        status = STATUS_TABLE[platform_status]
    except KeyError:
        raise BadResponse(f"douyin: undocumented order_status {platform_status!r}") from None
    refunded = bool(lines) and all(line.status is LineStatus.REFUNDED for line in lines)
    if paid and (refunded or (status is OrderStatus.CANCELLED
                              and any(line.status is LineStatus.REFUNDED for line in lines))):
        return OrderStatus.REFUNDED
    return status


def order_from_shop_order(order: Mapping[str, Any]) -> OrderRecord:
    """One `shop_order_list[]` element of order.searchList, or orderDetail's
    `shop_order_detail` (same shape)."""
    try:
        order_id = str(order["order_id"])
        packages = order.get("logistics_info") or []
        shipped_ids = {str(p.get("sku_order_id")) for pack in packages
                       for p in pack.get("product_info") or []}
        lines = tuple(
            OrderLineRecord(
                platform_line_id=str(sku["order_id"]),
                platform_item_id=str(sku.get("product_id_str") or sku["product_id"]),
                platform_sku_id=str(sku.get("sku_id", "")),
                merchant_code=str(sku.get("code") or sku.get("out_sku_id") or ""),
                title=str(sku.get("product_name", "")),
                quantity=int(sku["item_num"]),
                unit_price_fen=int(sku["origin_amount"]),
                paid_fen=int(sku.get("pay_amount", 0)),
                status=_line_status(sku, shipped_ids),
            )
            for sku in order.get("sku_order_list") or [])
        paid_at = when(order.get("pay_time"))
        platform_status = str(order["order_status"])
        post_fee = int(order.get("post_amount", 0))
        goods = sum(int(sku.get("sum_amount", int(sku["origin_amount"]) * int(sku["item_num"])))
                    for sku in order.get("sku_order_list") or [])
        return OrderRecord(
            platform_order_id=order_id,
            status=canonical_status(platform_status, lines, paid_at is not None),
            platform_status=platform_status,
            created_at=_required_time(when(order.get("create_time")), "create_time", order_id),
            modified_at=_required_time(when(order.get("update_time")), "update_time", order_id),
            paid_at=paid_at,
            total_fen=goods,
            paid_fen=int(order["pay_amount"]),
            post_fee_fen=post_fee,
            address=_address(order),
            lines=lines,
            buyer_remark=str(order.get("buyer_words", "")),
            seller_remark=str(order.get("seller_words", "")),
            tracking_numbers=tuple(dict.fromkeys(
                str(p["tracking_no"]) for p in packages if p.get("tracking_no"))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"douyin order does not map: {exc!r}",
                          body=json.dumps(order, ensure_ascii=False)) from exc


def order_from_legacy_child(child: Mapping[str, Any]) -> OrderRecord:
    """A legacy v1 `order.list`/`order.detail` child order: epoch milliseconds, `pid` (the
    parent) with an 'A' suffix, `post_addr` as a JSON text, amounts in fen. The canonical
    order is the parent; the child becomes its line."""
    try:
        line_id = str(child["order_id"])
        order_id = str(child.get("pid") or line_id).removesuffix("A")
        refunded = int(child.get("refund_status") or 0) == REFUND_SUCCESS
        status_code = str(child["order_status"])
        line_status = (LineStatus.REFUNDED if refunded else
                       LineStatus.CANCELLED if status_code == "4" else
                       LineStatus.SHIPPED if status_code in ("3", "5") else LineStatus.OPEN)
        quantity = int(child.get("combo_num", 1))
        unit = int(child["combo_amount"])
        paid = int(child["total_amount"])
        line = OrderLineRecord(
            platform_line_id=line_id,
            platform_item_id=str(child["product_id"]),
            platform_sku_id=str(child.get("combo_id", "")),
            merchant_code=str(child.get("code") or ""),
            title=str(child.get("product_name", "")),
            quantity=quantity,
            unit_price_fen=unit,
            paid_fen=paid,
            status=line_status,
        )
        paid_at = when_ms(child.get("pay_time"))
        tracking = str(child.get("logistics_code") or "")
        return OrderRecord(
            platform_order_id=order_id,
            status=canonical_status(status_code, (line,), paid_at is not None),
            platform_status=status_code,
            created_at=_required_time(when_ms(child.get("create_time")), "create_time",
                                      order_id),
            modified_at=_required_time(when_ms(child.get("update_time")), "update_time",
                                       order_id),
            paid_at=paid_at,
            total_fen=unit * quantity,
            paid_fen=paid,
            post_fee_fen=int(child.get("post_amount", 0)),
            address=_address(child),
            lines=(line,),
            buyer_remark=str(child.get("buyer_words", "")),
            seller_remark=str(child.get("seller_words", "")),
            tracking_numbers=(tracking,) if tracking else (),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"douyin legacy order does not map: {exc!r}",
                          body=json.dumps(child, ensure_ascii=False)) from exc


def listings_from_product(product: Mapping[str, Any],
                          skus: Sequence[Mapping[str, Any]]) -> list[ListingRecord]:
    """A `product.listV2` item with its `sku.list` rows; status 0 = on sale."""
    try:
        on_sale = int(product.get("status", 1)) == 0 and int(product.get("check_status", 3)) == 3
        modified = when(product.get("update_time"))
        return [
            ListingRecord(
                platform_item_id=str(product["product_id"]),
                platform_sku_id=str(sku["id"]),
                merchant_code=str(sku.get("code") or ""),
                title=str(product.get("name", "")),
                price_fen=int(sku["price"]),
                quantity=int(sku.get("stock_num", 0)),
                on_sale=on_sale,
                item_merchant_code=str(product.get("outer_product_id") or ""),
                modified_at=modified,
            )
            for sku in skus
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"douyin product does not map: {exc!r}",
                          body=json.dumps(product, ensure_ascii=False)) from exc


def push_events(body: bytes) -> list[PushEvent]:
    """The JSON array of a push: `{"tag", "msg_id", "data": "<JSON text>"}` per message.
    Pushes carry ids only; the core re-reads the order."""
    try:
        messages = json.loads(body)
        if not isinstance(messages, list):
            raise ValueError("push body is not a JSON array")
        events = []
        for message in messages:
            tag = str(message["tag"])
            data = message.get("data") or "{}"
            payload = json.loads(data) if isinstance(data, str) else dict(data)
            order_id = payload.get("p_id") or payload.get("order_id")
            kind = (PushKind.ORDER if tag in ORDER_TAGS else
                    PushKind.REFUND if tag in REFUND_TAGS else PushKind.OTHER)
            occurred = next((payload[k] for k in OCCURRED_KEYS if payload.get(k)), None)
            events.append(PushEvent(
                event_id=str(message["msg_id"]), kind=kind, topic=tag,
                platform_order_id=str(order_id) if order_id and tag != VERIFY_TAG else None,
                occurred_at=when(occurred) if occurred else None))
        return events
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadResponse(f"douyin push does not parse: {exc!r}", body=body) from exc
