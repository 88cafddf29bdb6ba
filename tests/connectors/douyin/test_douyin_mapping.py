"""Douyin JSON → canonical records, over every fixture and the shared samples."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.douyin import mapping
from connectors.douyin.connector import DouyinConnector
from core.carriers import DOMESTIC
from core.errors import BadResponse
from core.records import LineStatus, OrderLineRecord, OrderStatus, PushKind

FIXTURES = Path(__file__).parents[3] / "connectors" / "douyin" / "fixtures"
SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "samples" / "douyin"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def aware(moment: datetime | None) -> bool:
    return moment is not None and moment.utcoffset() is not None


def test_search_list_page_partially_shipped_order() -> None:
    order = mapping.order_from_shop_order(fixture("order_searchList_page.json")["data"]
                                          ["shop_order_list"][0])
    assert order.platform_order_id == "6921345678901234567"
    assert order.platform_status == "101"
    assert order.status is OrderStatus.PAID  # partially shipped = paid with shipped lines
    assert [line.status for line in order.lines] == [LineStatus.SHIPPED, LineStatus.OPEN]
    assert order.tracking_numbers == ("75312345678901",)
    assert (order.total_fen, order.paid_fen, order.post_fee_fen) == (15900, 15700, 800)
    first = order.lines[0]
    assert (first.platform_line_id, first.platform_item_id, first.platform_sku_id) == (
        "6921345678901234568", "3467622215590257338", "1693174909163548")
    assert (first.merchant_code, first.quantity, first.unit_price_fen, first.paid_fen) == (
        "TEE-BLU-M", 2, 5900, 11300)
    assert all(isinstance(v, int) for v in (order.total_fen, order.paid_fen, first.paid_fen))
    assert aware(order.created_at) and aware(order.modified_at) and aware(order.paid_at)
    assert order.modified_at == datetime.fromisoformat("2026-11-10T17:00:00+08:00")
    assert (order.address.province, order.address.city, order.address.district) == (
        "广东省", "深圳市", "南山区")
    assert order.buyer_remark == "请用纸箱包装" and order.seller_remark == "优先发货"


def test_order_detail_closed_by_refund_is_refunded() -> None:
    order = mapping.order_from_shop_order(fixture("order_orderDetail_refunded.json")["data"]
                                          ["shop_order_detail"])
    assert order.platform_status == "4"
    assert order.status is OrderStatus.REFUNDED
    assert order.lines[0].status is LineStatus.REFUNDED
    assert order.tracking_numbers == ()


def test_listings_from_product_and_skus() -> None:
    product = fixture("product_listV2.json")["data"]["data"][0]
    records = mapping.listings_from_product(product, fixture("sku_list.json")["data"])
    assert [(r.platform_sku_id, r.merchant_code, r.price_fen, r.quantity) for r in records] == [
        ("1693174909163548", "TEE-BLU-M", 5900, 37), ("1693174909163549", "TEE-BLU-L", 6200, 0)]
    assert all(r.on_sale and r.item_merchant_code == "TEE" for r in records)
    assert all(aware(r.modified_at) for r in records)


def test_push_body_fixture() -> None:
    events = mapping.push_events(json.dumps(fixture("push_body.json")).encode())
    assert [(e.event_id, e.kind, e.topic, e.platform_order_id) for e in events] == [
        ("7000000000000000101", PushKind.ORDER, "101", "6921345678901234567"),
        ("7000000000000000206", PushKind.REFUND, "206", "6921345678901239999")]
    assert all(aware(e.occurred_at) for e in events)


def test_token_fixture_shape() -> None:
    data = fixture("token_refresh.json")["data"]
    assert {"access_token", "refresh_token", "expires_in"} <= set(data)


def test_shared_sample_legacy_child_order() -> None:
    document = json.loads((SAMPLES / "order_list_v1_child_order_2021.json").read_text())
    payload, expect = document["payload"], document["expect"]["orders"][0]
    order = mapping.order_from_legacy_child(payload)
    assert order.platform_order_id == expect["platform_order_id"]
    assert payload["pid"] == expect["parent_order_id"]  # the canonical order is the parent
    assert order.platform_status == str(expect["platform_status"])
    assert order.status.value == expect["status_class"]
    assert order.paid_fen == expect["total_paid_minor"]
    assert order.currency == expect["currency"]
    assert len(order.lines) == expect["line_count"]
    for line, wanted in zip(order.lines, expect["lines"], strict=True):
        assert line.merchant_code == wanted["merchant_sku"]
        assert line.platform_item_id == wanted["platform_item_id"]
        assert line.quantity == wanted["quantity"]
        assert line.unit_price_fen == wanted["unit_price_minor"]
    assert order.created_at == datetime.fromisoformat(expect["created_at"])
    assert order.modified_at == datetime.fromisoformat(expect["modified_at"])
    assert order.paid_at == datetime.fromisoformat(expect["paid_at"])
    assert expect["tracking"]["tracking_number"] in order.tracking_numbers
    assert all(aware(t) for t in (order.created_at, order.modified_at, order.paid_at))
    # The shared copy replaced post_addr by a placeholder text; it must not break the mapping.
    assert order.address.province == "" and order.address.detail == payload["post_addr"]
    # Upstream (Lesible/retrofit-doudian-sdk childOrder.json) post_addr is a JSON *text* of
    # region objects; with that shape restored the buyer region is read from it.
    restored = dict(payload, post_addr=json.dumps({
        "province": {"id": "610000", "name": expect["buyer_state"]},
        "city": {"id": "610100", "name": expect["buyer_city"]},
        "town": {"id": "610113", "name": "雁塔区"}, "street": {"id": "", "name": ""},
        "detail": "示例"}, ensure_ascii=False))
    address = mapping.order_from_legacy_child(restored).address
    assert (address.province, address.city) == (expect["buyer_state"], expect["buyer_city"])


@pytest.mark.parametrize("platform_status, expected", sorted(mapping.STATUS_TABLE.items()))
def test_every_status_row(platform_status: str, expected: OrderStatus) -> None:
    line = OrderLineRecord("1", "2", "3", "C", "t", 1, 100, 100)
    assert mapping.canonical_status(platform_status, (line,), paid=True) is expected
    assert DouyinConnector.status_table[platform_status] is expected


def test_cancelled_unpaid_stays_cancelled_and_unknown_status_is_bad_response() -> None:
    refunded = OrderLineRecord("1", "2", "3", "C", "t", 1, 100, 100, LineStatus.REFUNDED)
    assert mapping.canonical_status("4", (refunded,), paid=False) is OrderStatus.CANCELLED
    assert mapping.canonical_status("4", (refunded,), paid=True) is OrderStatus.REFUNDED
    with pytest.raises(BadResponse):
        mapping.canonical_status("999", (), paid=True)


def test_order_without_required_fields_is_bad_response() -> None:
    with pytest.raises(BadResponse):
        mapping.order_from_shop_order({"order_id": "1", "order_status": 2})


def test_carrier_table_covers_every_domestic_carrier() -> None:
    assert DouyinConnector.carriers.canonical_codes() >= DOMESTIC
