"""Dewu JSON → canonical records over the fixtures; one test per status-table row."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.dewu.client import DewuApiSpec
from connectors.dewu.connector import DewuConnector
from connectors.dewu.mapping import (
    BRAND_CARRIERS,
    STATUS_TABLE,
    bid_from_json,
    listing_from_bid,
    order_from_json,
)
from core.carriers import DOMESTIC
from core.clock import BEIJING
from core.errors import BadResponse
from core.records import LineStatus, OrderStatus

FIXTURES = Path(__file__).parents[3] / "connectors" / "dewu" / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_increment_orders() -> None:
    waiting, inspected = (order_from_json(r) for r in load("order_generic_increment.json")["data"]["orders"])
    assert (waiting.status, waiting.platform_status) == (OrderStatus.PAID, "2000")
    assert waiting.created_at == datetime(2026, 11, 10, 21, 13, 52, tzinfo=BEIJING)
    assert waiting.paid_at == datetime(2026, 11, 10, 21, 14, 7, tzinfo=BEIJING)
    assert waiting.modified_at.utcoffset() is not None
    [line] = waiting.lines
    assert (line.platform_line_id, line.platform_item_id, line.platform_sku_id) == (
        "110123456789012345", "1438722", "611234901")
    assert (line.merchant_code, line.quantity, line.unit_price_fen, line.paid_fen) == (
        "AJ1L-WR-42", 1, 129900, 129900)
    assert line.status is LineStatus.OPEN and waiting.tracking_numbers == ()
    assert (waiting.total_fen, waiting.paid_fen, waiting.post_fee_fen) == (129900, 129900, 0)
    assert inspected.status is OrderStatus.SHIPPED
    assert inspected.lines[0].status is LineStatus.SHIPPED
    assert inspected.lines[0].merchant_code == "NB550-WG-405"  # first of a comma list
    assert inspected.tracking_numbers == ("SF1409876543210",)


def test_closed_after_failed_inspection_is_refunded() -> None:
    [row] = load("order_generic_list_returned.json")["data"]["orders"]
    record = order_from_json(row)
    assert record.status is OrderStatus.REFUNDED and record.lines[0].status is LineStatus.REFUNDED
    assert record.lines[0].merchant_code == ""
    assert record.tracking_numbers == ("JDVA01234567890",)


def test_bid_to_listing() -> None:
    bid = bid_from_json(load("bidding_generic_detail.json")["data"])
    assert (bid.bidding_no, bid.qty, bid.qty_sold, bid.qty_remain) == (
        "202611100000012345", 5, 2, 3)
    listing = listing_from_bid(bid)
    assert (listing.platform_item_id, listing.platform_sku_id) == ("1438722", "611234901")
    assert (listing.quantity, listing.price_fen, listing.on_sale) == (3, 129900, True)
    assert listing.item_merchant_code == "DC0774-161"
    closed = listing_from_bid(bid_from_json({**load("bidding_generic_detail.json")["data"],
                                             "status": 10}))
    assert not closed.on_sale


def _row(status: str, close_type: int = 0) -> dict[str, Any]:
    return {"order_no": "1", "order_status": int(status), "close_type": close_type,
            "create_time": "2026-11-01 09:00:00", "modify_time": "2026-11-01 09:00:00",
            "pay_time": "2026-11-01 09:00:01", "qty": 1, "sku_price": 100}


EXPECTED: dict[str, tuple[OrderStatus, LineStatus]] = {
    "1100": (OrderStatus.UNPAID, LineStatus.OPEN), "1200": (OrderStatus.UNPAID, LineStatus.OPEN),
    "2000": (OrderStatus.PAID, LineStatus.OPEN), "2007": (OrderStatus.PAID, LineStatus.OPEN),
    "2010": (OrderStatus.SHIPPED, LineStatus.SHIPPED),
    "3000": (OrderStatus.SHIPPED, LineStatus.SHIPPED),
    "3010": (OrderStatus.SHIPPED, LineStatus.SHIPPED),
    "3020": (OrderStatus.SHIPPED, LineStatus.SHIPPED),
    "3030": (OrderStatus.SHIPPED, LineStatus.SHIPPED),
    "3040": (OrderStatus.SHIPPED, LineStatus.SHIPPED),
    "4000": (OrderStatus.COMPLETED, LineStatus.SHIPPED),
    "7000": (OrderStatus.CANCELLED, LineStatus.CANCELLED),
    "7500": (OrderStatus.CANCELLED, LineStatus.CANCELLED),
    "8010": (OrderStatus.REFUNDED, LineStatus.REFUNDED),  # closed after payment
}


def test_status_table_covers_every_documented_status() -> None:
    assert set(DewuConnector.status_table) == set(EXPECTED)


@pytest.mark.parametrize(("code", "expected"), list(EXPECTED.items()))
def test_status_row(code: str, expected: tuple[OrderStatus, LineStatus]) -> None:
    assert STATUS_TABLE[code] is expected[0]
    record = order_from_json(_row(code))
    assert (record.status, record.lines[0].status) == expected
    assert (record.paid_at is None) == (expected[0] is OrderStatus.UNPAID)


@pytest.mark.parametrize("close_type", [5, 11, 12, 13, 14, 15, 18, 19, 20, 22])
def test_a_paid_order_closed_for_any_reason_is_refunded(close_type: int) -> None:
    """Buyer closed, seller shipping timeout, platform cancelled, QC failed, returned …:
    the buyer had paid, the money goes back."""
    record = order_from_json(_row("8010", close_type))
    assert (record.status, record.lines[0].status) == (OrderStatus.REFUNDED,
                                                       LineStatus.REFUNDED)


@pytest.mark.parametrize("close_type", [0, 10])
def test_a_closed_order_never_paid_is_cancelled(close_type: int) -> None:
    record = order_from_json({**_row("8010", close_type), "pay_time": ""})
    assert (record.status, record.lines[0].status) == (OrderStatus.CANCELLED,
                                                       LineStatus.CANCELLED)
    assert record.platform_status == "8010" and record.paid_at is None


def test_freight_and_the_platform_address_of_a_warehouse_bound_order() -> None:
    row = {**_row("2000"), "qty": 2, "sku_price": 9900, "pay_amount": 20600,
           "trade_freight_info": {"freight": 800},
           "delivery_address_platform": {
               "name": "得物鉴别中心", "mobile": "400-000-0000", "province": "上海市",
               "city": "上海市", "district": "杨浦区", "address_detail": "某路 1 号",
               "postcode": "200000"}}
    record = order_from_json(row)
    assert (record.total_fen, record.post_fee_fen, record.paid_fen) == (19800, 800, 20600)
    assert record.lines[0].paid_fen == 19800  # the freight belongs to the order
    address = record.address
    assert (address.province, address.city, address.district, address.detail) == (
        "上海市", "上海市", "杨浦区", "某路 1 号")
    assert (address.name, address.phone) == ("得物鉴别中心", "400-000-0000")


def test_field_names_come_from_the_spec() -> None:
    spec = DewuApiSpec(platform_address_field="ship_to", freight_field="freight_info")
    row = {**_row("2000"), "freight_info": {"freight": 500},
           "ship_to": {"province": "浙江省", "address_detail": "x"}}
    record = order_from_json(row, spec)
    assert (record.post_fee_fen, record.address.province) == (500, "浙江省")
    assert order_from_json(row).post_fee_fen == 0  # the default names are not there


def test_a_brand_direct_order_carries_no_buyer_address() -> None:
    record = order_from_json({**_row("2000"), "order_type": 14,
                              "delivery_address_platform": None})
    assert record.address.province == "" and record.address.detail == ""


def test_carrier_table_covers_domestic_codes() -> None:
    assert set(BRAND_CARRIERS) == DOMESTIC
    assert DewuConnector.carriers.canonical_codes() == DOMESTIC


@pytest.mark.parametrize("row", [
    {"order_status": 2000, "create_time": "2026-11-01 09:00:00"},
    {**_row("2000"), "order_status": 9999},
    {**_row("2000"), "create_time": "01/11/2026"},
    {**_row("2000"), "create_time": ""},
    {**_row("2000"), "qty": "one"},
])
def test_unmappable_orders_raise_bad_response(row: dict[str, Any]) -> None:
    with pytest.raises(BadResponse):
        order_from_json(row)
