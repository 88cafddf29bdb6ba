"""Kuaishou JSON → canonical records, over every fixture."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.kuaishou import mapping
from connectors.kuaishou.connector import KuaishouConnector
from core.carriers import DOMESTIC
from core.errors import BadResponse
from core.records import LineStatus, OrderStatus, PushKind

FIXTURES = Path(__file__).parents[3] / "connectors" / "kuaishou" / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def aware(moment: datetime | None) -> bool:
    return moment is not None and moment.utcoffset() is not None


def test_cursor_list_orders() -> None:
    paid, shipped = (mapping.order_from_detail(o)
                     for o in fixture("order_cursor_list.json")["data"]["orderList"])
    assert (paid.platform_order_id, paid.platform_status, paid.status) == (
        "2418123456789001", "30", OrderStatus.PAID)
    [line] = paid.lines
    assert (line.platform_line_id, line.platform_item_id, line.platform_sku_id) == (
        "2419123456789001", "2400123456001", "2500123456001")
    assert (line.merchant_code, line.quantity, line.unit_price_fen, line.paid_fen) == (
        "HOOD-OAT-L", 2, 12900, 25800)
    assert line.status is LineStatus.OPEN
    assert (paid.total_fen, paid.paid_fen, paid.post_fee_fen) == (25800, 25800, 0)
    assert paid.buyer_remark == "周末不在家，请放快递柜"
    assert (paid.address.province, paid.address.city, paid.address.district,
            paid.address.detail, paid.address.name) == (
        "江苏省", "南京市", "鼓楼区", "中山北路***号", "王*")
    assert all(aware(t) for t in (paid.created_at, paid.modified_at, paid.paid_at))
    assert paid.paid_at == datetime.fromisoformat("2026-11-10T14:01:00+08:00")

    assert shipped.status is OrderStatus.SHIPPED
    assert shipped.lines[0].status is LineStatus.SHIPPED
    assert shipped.tracking_numbers == ("SF1400123456789",)
    assert (shipped.paid_fen, shipped.post_fee_fen, shipped.lines[0].paid_fen) == (
        13900, 1000, 12900)


def test_detail_closed_by_refund_is_refunded() -> None:
    order = mapping.order_from_detail(fixture("order_detail_refunded.json")["data"])
    assert (order.platform_status, order.status) == ("80", OrderStatus.REFUNDED)
    assert order.lines[0].status is LineStatus.REFUNDED


def test_listings() -> None:
    item = fixture("item_list_get.json")["data"]["items"][0]
    rows = fixture("item_sku_list_get.json")["data"]["skuList"]
    records = mapping.listings_from_item(item, rows)
    assert [(r.platform_item_id, r.platform_sku_id, r.merchant_code, r.price_fen, r.quantity)
            for r in records] == [("2400123456001", "2500123456001", "HOOD-OAT-L", 12900, 41),
                                  ("2400123456001", "2500123456002", "HOOD-OAT-XL", 12900, 0)]
    assert all(r.on_sale and aware(r.modified_at) for r in records)


def test_push_envelope() -> None:
    [event] = mapping.push_events(fixture("push_refund_update_plain.json"))
    assert (event.event_id, event.kind, event.topic, event.platform_order_id) == (
        "evt2418123456789003a", PushKind.REFUND, "kwaishop_aftersales_updateRefund",
        "2418123456789003")
    assert aware(event.occurred_at)
    [beat] = mapping.push_events({"test": True})
    assert (beat.kind, beat.topic, beat.platform_order_id) == (PushKind.OTHER, "test", None)


def test_oauth_fixture_shape() -> None:
    data = fixture("oauth_refresh_token.json")
    assert data["result"] == 1 and {"access_token", "refresh_token", "expires_in"} <= set(data)


@pytest.mark.parametrize("platform_status, expected", sorted(mapping.STATUS_TABLE.items()))
def test_every_status_row(platform_status: str, expected: OrderStatus) -> None:
    assert mapping.canonical_status(platform_status, refunded=False, paid=True) is expected
    assert KuaishouConnector.status_table[platform_status] is expected


def test_refund_refinement_and_unknown_status() -> None:
    assert mapping.canonical_status("80", refunded=True, paid=True) is OrderStatus.REFUNDED
    assert mapping.canonical_status("80", refunded=False, paid=False) is OrderStatus.CANCELLED
    with pytest.raises(BadResponse):
        mapping.canonical_status("60", refunded=False, paid=True)


def test_broken_order_is_bad_response() -> None:
    with pytest.raises(BadResponse):
        mapping.order_from_detail({"orderBaseInfo": {"oid": 1}})


def test_carrier_table_covers_every_domestic_carrier() -> None:
    assert KuaishouConnector.carriers.canonical_codes() >= DOMESTIC
