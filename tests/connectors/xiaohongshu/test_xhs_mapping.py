"""Xiaohongshu JSON → canonical records, over our fixtures and the shared reference samples."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.xiaohongshu.connector import XiaohongshuConnector
from connectors.xiaohongshu.mapping import (
    STATUS_TABLE,
    listing_from_sku,
    order_from_json,
    shipments,
    sku_from_row,
)
from core.errors import BadResponse
from core.records import LineStatus, OrderStatus

ROOT = Path(__file__).parents[3]
FIXTURES = ROOT / "connectors" / "xiaohongshu" / "fixtures"
SAMPLES = ROOT.parent / "shared" / "reference" / "samples" / "xiaohongshu"


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def sample(name: str) -> Any:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"shared sample {name} not present")
    return load(path)


def _assert_order_expect(row: dict[str, Any], expect: dict[str, Any]) -> None:
    record = order_from_json(row)
    assert record.platform_order_id == expect["platform_order_id"]
    assert record.platform_status == str(expect["platform_status"])
    assert record.status.value == expect["status_class"]
    assert record.address.province == expect["buyer_state"]
    assert record.address.city == expect["buyer_city"]
    assert record.created_at == datetime.fromisoformat(expect["created_at"])
    assert record.modified_at == datetime.fromisoformat(expect["modified_at"])
    assert record.created_at.utcoffset() is not None
    if "total_paid_minor" in expect:
        assert record.paid_fen == expect["total_paid_minor"]
        assert record.currency == expect["currency"]
    if expect.get("line_count") is None:
        assert "skuList" not in row and record.lines == ()
    else:
        assert len(record.lines) == expect["line_count"]
        for line, want in zip(record.lines, expect["lines"], strict=True):
            assert line.merchant_code == (want["merchant_sku"] or "")
            assert line.platform_sku_id == want["platform_sku_id"]
            assert line.quantity == want["quantity"]
            assert line.paid_fen == want["line_paid_minor"]
    if "tracking" in expect:
        want = expect["tracking"]
        assert (want["carrier_code"], want["tracking_number"]) in shipments(row)
        assert want["tracking_number"] in record.tracking_numbers


@pytest.mark.parametrize("name", ["order_getOrderDetail_assembled.json",
                                  "order_getOrderList_assembled.json"])
def test_shared_order_samples(name: str) -> None:
    doc = sample(name)
    data = doc["payload"]["data"]
    rows = data.get("orderList") or [data]
    expect = doc["expect"]
    for key, field in (("total", "total"), ("page_no", "pageNo"), ("page_size", "pageSize"),
                       ("max_page_no", "maxPageNo")):
        if key in expect:
            assert data[field] == expect[key]
    assert len(rows) == len(expect["orders"])
    for row, want in zip(rows, expect["orders"], strict=True):
        _assert_order_expect(row, want)


def test_shared_sku_list_sample() -> None:
    doc = sample("product_getDetailSkuList_assembled.json")
    rows = doc["payload"]["data"]["data"]
    [want_item] = doc["expect"]["items"]
    skus = [sku_from_row(r) for r in rows]
    assert len(skus) == want_item["sku_count"]
    for sku, want in zip(skus, want_item["skus"], strict=True):
        assert sku.item_id == want_item["item_id"]  # keyed by the row, not sku.itemId
        assert (sku.sku_id, sku.erp_code, sku.barcode) == (
            want["sku_id"], want["outer_id"], want["barcode"])
        assert (sku.stock, sku.price_fen, sku.market_price_fen, sku.buyable) == (
            want["quantity"], want["price_minor"], want["market_price_minor"], want["buyable"])
        listing = listing_from_sku(sku)
        assert (listing.platform_item_id, listing.platform_sku_id) == (want_item["item_id"],
                                                                       want["sku_id"])
        assert (listing.merchant_code, listing.price_fen, listing.quantity, listing.on_sale) == (
            want["outer_id"], want["price_minor"], want["quantity"], want["buyable"])


def test_list_fixture_rows_have_no_lines() -> None:
    rows = load(FIXTURES / "order_getOrderList.json")["data"]["orderList"]
    paid, unpaid = (order_from_json(r) for r in rows)
    assert paid.status is OrderStatus.PAID and paid.paid_at is not None
    assert paid.buyer_remark == "不要放驿站" and paid.seller_remark == ""  # "null" is absent
    assert unpaid.status is OrderStatus.UNPAID and unpaid.paid_at is None
    assert paid.lines == () and unpaid.lines == ()


def test_partially_shipped_detail() -> None:
    record = order_from_json(load(FIXTURES / "order_getOrderDetail_partial.json")["data"])
    assert record.status is OrderStatus.PAID and record.platform_status == "5"
    shipped, still_open = record.lines
    assert (shipped.status, still_open.status) == (LineStatus.SHIPPED, LineStatus.OPEN)
    assert shipped.platform_line_id == shipped.platform_sku_id == "6512a0c1d2e3f4a5b6c7d8e9"
    assert shipped.merchant_code == "SCARF-OAT" and still_open.merchant_code == ""
    assert (shipped.quantity, shipped.unit_price_fen, shipped.paid_fen) == (2, 13900, 25800)
    assert (record.paid_fen, record.post_fee_fen, record.total_fen) == (40700, 1000, 41700)
    assert record.tracking_numbers == ("73100012345678",)
    assert record.seller_remark == "先发现货"


def test_closed_after_refund_is_refunded() -> None:
    record = order_from_json(load(FIXTURES / "order_getOrderDetail_refunded.json")["data"])
    assert record.status is OrderStatus.REFUNDED
    assert [line.status for line in record.lines] == [LineStatus.REFUNDED]
    assert record.lines[0].unit_price_fen == 9900  # paid 8900 + platform discount 1000
    assert record.tracking_numbers == ("SF1402345678901",)


def test_sku_list_fixture() -> None:
    rows = load(FIXTURES / "product_getDetailSkuList.json")["data"]["data"]
    listings = [listing_from_sku(sku_from_row(r)) for r in rows]
    assert [(x.merchant_code, x.quantity, x.on_sale, x.price_fen) for x in listings] == [
        ("SCARF-OAT", 42, True, 13900), ("", 0, False, 13900)]


def _row(status: int, after_sale: int = 1) -> dict[str, Any]:
    return {"orderId": "P1", "orderStatus": status, "orderAfterSalesStatus": after_sale,
            "createdTime": 1762820000000, "updateTime": 1762820000000,
            "skuList": [{"skuId": "s1", "skuQuantity": 1, "totalPaidAmount": 100}]}


EXPECTED: dict[str, tuple[OrderStatus, LineStatus]] = {
    "1": (OrderStatus.UNPAID, LineStatus.OPEN), "2": (OrderStatus.PAID, LineStatus.OPEN),
    "3": (OrderStatus.PAID, LineStatus.OPEN), "4": (OrderStatus.PAID, LineStatus.OPEN),
    "5": (OrderStatus.PAID, LineStatus.OPEN), "6": (OrderStatus.SHIPPED, LineStatus.SHIPPED),
    "7": (OrderStatus.COMPLETED, LineStatus.SHIPPED),
    "8": (OrderStatus.CANCELLED, LineStatus.CANCELLED),
    "9": (OrderStatus.CANCELLED, LineStatus.CANCELLED),
    "10": (OrderStatus.SHIPPED, LineStatus.SHIPPED),
}


def test_status_table_covers_the_documented_enum() -> None:
    assert set(XiaohongshuConnector.status_table) == set(EXPECTED) == {str(i) for i in range(1, 11)}


@pytest.mark.parametrize(("code", "expected"), [(str(i), EXPECTED[str(i)]) for i in range(1, 11)])
def test_status_row(code: str, expected: tuple[OrderStatus, LineStatus]) -> None:
    assert STATUS_TABLE[code] is expected[0]
    record = order_from_json(_row(int(code)))
    assert (record.status, record.lines[0].status) == expected


@pytest.mark.parametrize("code", [8, 9])
def test_closed_with_completed_after_sale_is_refunded(code: int) -> None:
    record = order_from_json(_row(code, after_sale=3))
    assert (record.status, record.lines[0].status) == (OrderStatus.REFUNDED, LineStatus.REFUNDED)


@pytest.mark.parametrize("row", [
    {"orderStatus": 4, "createdTime": 1, "updateTime": 1},
    {"orderId": "P1", "orderStatus": 42, "createdTime": 1, "updateTime": 1},
    {"orderId": "P1", "orderStatus": 4, "updateTime": 1},
    {"orderId": "P1", "orderStatus": 4, "createdTime": 1, "updateTime": 1, "totalPayAmount": "1.5"},
])
def test_unmappable_orders_raise_bad_response(row: dict[str, Any]) -> None:
    with pytest.raises(BadResponse):
        order_from_json(row)
