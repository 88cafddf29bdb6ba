"""Kuaishou JSON ⇄ canonical records: orders (one SKU line each), items/SKUs, decrypted
message envelopes. Money is fen; times are Unix milliseconds."""

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

# orderBaseInfo.status [schema]
STATUS_TABLE: Mapping[str, OrderStatus] = {
    "0": OrderStatus.UNPAID,  # 未知: nothing is reserved or shipped on an unknown state
    "10": OrderStatus.UNPAID,  # 待付款
    "30": OrderStatus.PAID,  # 已付款（待发货）
    "40": OrderStatus.SHIPPED,  # 已发货 (as soon as one unit ships)
    "50": OrderStatus.COMPLETED,  # 已签收（已收货）
    "70": OrderStatus.COMPLETED,  # 交易成功
    "80": OrderStatus.CANCELLED,  # 交易失败/关闭 (REFUNDED when a paid order closed by refund)
}
SHIPPED_STATES = frozenset({"40", "50", "70"})
REFUND_SUCCESS = 60  # refund status: 60 退款成功


def when_ms(millis: Any) -> datetime | None:
    value = int(millis or 0)
    return datetime.fromtimestamp(value / 1000, BEIJING) if value > 0 else None


def _refunded(order: Mapping[str, Any]) -> bool:
    return any(int(r.get("status", r.get("refundStatus", 0)) or 0) == REFUND_SUCCESS
               for r in order.get("orderRefundList") or [])


def canonical_status(platform_status: str, refunded: bool, paid: bool) -> OrderStatus:
    try:
        status = STATUS_TABLE[platform_status]
    except KeyError:
        raise BadResponse(f"kuaishou: undocumented order status {platform_status!r}") from None
    if paid and refunded and status in (OrderStatus.CANCELLED, OrderStatus.COMPLETED):
        return OrderStatus.REFUNDED
    return status


def order_from_detail(order: Mapping[str, Any]) -> OrderRecord:
    """An `orderList[]` element of open.order.cursor.list or open.order.detail's `data`."""
    try:
        base = order["orderBaseInfo"]
        item = order["orderItemInfo"]
        oid = str(base["oid"])
        platform_status = str(base["status"])
        refunded = _refunded(order)
        paid_at = when_ms(base.get("payTime"))
        line_status = (LineStatus.REFUNDED if refunded else
                       LineStatus.CANCELLED if platform_status == "80" else
                       LineStatus.SHIPPED if platform_status in SHIPPED_STATES else
                       LineStatus.OPEN)
        quantity = int(item["num"])
        unit = int(item.get("originalPrice") or item["price"])
        express = int(base.get("expressFee", 0))
        paid = int(base["totalFee"])
        line = OrderLineRecord(
            platform_line_id=str(item.get("orderItemId") or oid),
            platform_item_id=str(item["itemId"]),
            platform_sku_id=str(item["skuId"]),
            merchant_code=str(item.get("skuNick") or ""),
            title=str(item.get("itemTitle", "")),
            quantity=quantity,
            unit_price_fen=unit,
            paid_fen=paid - express,
            status=line_status,
        )
        address = order.get("orderAddress") or {}
        created = when_ms(base.get("createTime"))
        modified = when_ms(base.get("updateTime"))
        if created is None or modified is None:
            raise ValueError("createTime/updateTime missing")
        return OrderRecord(
            platform_order_id=oid,
            status=canonical_status(platform_status, refunded, paid_at is not None),
            platform_status=platform_status,
            created_at=created,
            modified_at=modified,
            paid_at=paid_at,
            total_fen=unit * quantity,
            paid_fen=paid,
            post_fee_fen=express,
            address=Address(
                province=str(address.get("province", "")), city=str(address.get("city", "")),
                district=str(address.get("district", "")),
                detail=str(address.get("desensitiseAddress") or address.get("address") or ""),
                name=str(address.get("desensitiseConsignee") or address.get("consignee") or ""),
                phone=str(address.get("desensitiseMobile") or address.get("mobile") or "")),
            lines=(line,),
            buyer_remark=str(base.get("remark", "")),
            seller_remark="; ".join(str(n.get("note", n)) if isinstance(n, Mapping) else str(n)
                                    for n in (order.get("orderNote") or {}).get("sellerNote")
                                    or []),
            tracking_numbers=tuple(dict.fromkeys(
                str(p["expressNo"]) for p in order.get("orderLogisticsInfo") or []
                if p.get("expressNo"))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"kuaishou order does not map: {exc!r}",
                          body=json.dumps(order, ensure_ascii=False)) from exc


def listings_from_item(item: Mapping[str, Any],
                       skus: Sequence[Mapping[str, Any]]) -> list[ListingRecord]:
    """An `open.item.list.get` item with its SKU rows (`skuList`)."""
    try:
        on_sale = int(item.get("shelfStatus", 0)) == 1
        return [
            ListingRecord(
                platform_item_id=str(item["kwaiItemId"]),
                platform_sku_id=str(sku["kwaiSkuId"]),
                merchant_code=str(sku.get("skuNick") or ""),
                title=str(item.get("title", "")),
                price_fen=int(sku["skuSalePrice"]),
                quantity=int(sku["skuStock"]),
                on_sale=on_sale,
                item_merchant_code=str(item.get("relItemId") or ""),
                modified_at=when_ms(item.get("updateTime")),
            )
            for sku in skus
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"kuaishou item does not map: {exc!r}",
                          body=json.dumps(item, ensure_ascii=False)) from exc


def push_events(envelope: Mapping[str, Any]) -> list[PushEvent]:
    """A decrypted push: `eventId, bizId, event, info (JSON text), createTime, test`."""
    try:
        if envelope.get("test"):
            return [PushEvent(event_id=str(envelope.get("eventId", "test")),
                              kind=PushKind.OTHER, topic="test", platform_order_id=None)]
        event = str(envelope["event"])
        raw_info = envelope.get("info") or "{}"
        info = json.loads(raw_info) if isinstance(raw_info, str) else dict(raw_info)
        kind = (PushKind.ORDER if event.startswith("kwaishop_order_") else
                PushKind.REFUND if event.startswith("kwaishop_aftersales_") else PushKind.OTHER)
        order_id = info.get("oid") or info.get("orderId")
        if order_id is None and kind is PushKind.ORDER:
            order_id = envelope.get("bizId")
        occurred = info.get("updateTime") or info.get("createTime") or envelope.get("createTime")
        event_id = (envelope.get("eventId") or envelope.get("msgId")
                    or f"{event}:{envelope.get('bizId')}:{envelope.get('createTime')}")
        return [PushEvent(event_id=str(event_id), kind=kind, topic=event,
                          platform_order_id=str(order_id) if order_id else None,
                          occurred_at=when_ms(occurred))]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse(f"kuaishou push does not parse: {exc!r}",
                          body=json.dumps(dict(envelope), ensure_ascii=False)) from exc
