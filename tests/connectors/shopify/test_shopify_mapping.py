"""Shopify mapping over the shared samples (every `expect` fact), the connector's own
fixtures, and each row of the status tables."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.shopify.connector import ShopifyConnector
from connectors.shopify.mapping import (
    FINANCIAL_STATUS,
    FULFILLMENT_PROGRESS,
    Progress,
    available_of,
    cancelled_at,
    decimal_amount,
    listing_from_variant,
    minor_units,
    numeric_id,
    order_from_graphql,
    order_from_rest,
    order_name,
    order_status,
)
from core.errors import BadResponse
from core.records import LineStatus, OrderRecord, OrderStatus

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "samples" / "shopify"
FIXTURES = Path(__file__).parents[3] / "connectors" / "shopify" / "fixtures"
ORDER_SAMPLES = ["rest_order_fixture.json", "webhook_orders_create_real_aud.json",
                 "webhook_orders_create_test_notification.json"]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def aware(record: OrderRecord) -> None:
    for moment in (record.created_at, record.modified_at, record.paid_at):
        assert moment is None or moment.utcoffset() is not None


# -- the shared samples -------------------------------------------------------------------

@pytest.mark.parametrize("name", ORDER_SAMPLES)
def test_sample_orders_reproduce_every_expected_fact(name: str) -> None:
    case = json.loads((SAMPLES / name).read_text())
    payload = case["payload"]
    (expected,) = case["expect"]["orders"]
    record = order_from_rest(payload)
    assert record.platform_order_id == expected["platform_order_id"]
    assert order_name(payload) == expected["order_name"]
    assert record.platform_status == expected["platform_status"]
    assert record.status.value == expected["status_class"]
    assert record.paid_fen == expected["total_paid_minor"]
    assert record.currency == expected["currency"]
    assert len(record.lines) == expected["line_count"]
    for line, want in zip(record.lines, expected["lines"], strict=True):
        assert (line.merchant_code or None) == want["merchant_sku"]
        assert line.quantity == want["quantity"]
        assert line.unit_price_fen == want["unit_price_minor"]
        if "platform_line_id" in want:
            assert line.platform_line_id == want["platform_line_id"]
        if "platform_sku_id" in want:
            assert line.platform_sku_id == want["platform_sku_id"]
    assert record.address.province == expected["buyer_state"]
    assert record.address.city == expected["buyer_city"]
    # the store's UTC offset is kept as Shopify rendered it
    assert record.created_at.isoformat() == expected["created_at"]
    assert record.modified_at.isoformat() == expected["modified_at"]
    if "paid_at" in expected:
        assert record.paid_at is not None
        assert record.paid_at.isoformat() == expected["paid_at"]
    if "cancelled_at" in expected:
        moment = cancelled_at(payload)
        assert moment is not None
        assert moment.isoformat() == expected["cancelled_at"]
    aware(record)


def test_big_ids_survive_as_integers() -> None:
    case = json.loads((SAMPLES / "webhook_orders_create_test_notification.json").read_text())
    record = order_from_rest(case["payload"])
    assert record.platform_order_id == "820982911946154508"  # > 2**53: no float on the way
    # two lines of one SKU stay two lines
    assert [line.merchant_code for line in record.lines] == ["IPOD2008PINK", "IPOD2008PINK"]
    assert record.lines[1].paid_fen == 19900 - 500


def test_failed_fulfillment_tracking_is_not_held() -> None:
    case = json.loads((SAMPLES / "rest_order_fixture.json").read_text())
    record = order_from_rest(case["payload"])
    assert record.tracking_numbers == ()  # the only fulfilment has status "failure"
    payload = json.loads(json.dumps(case["payload"]))
    payload["order"]["fulfillments"][0]["status"] = "success"
    assert order_from_rest(payload).tracking_numbers == ("1Z2345",)


# -- the connector's fixtures ---------------------------------------------------------------

def test_graphql_orders_page() -> None:
    page = fixture("graphql_orders_page.json")["data"]["orders"]
    first, second = (order_from_graphql(node) for node in page["nodes"])
    assert first.platform_order_id == "6120000000101"
    assert (first.status, first.platform_status) == (OrderStatus.PAID, "partially_refunded")
    assert first.currency == "EUR"
    assert (first.paid_fen, first.post_fee_fen) == (7340, 490)
    assert first.total_fen == 2 * 1250 + 3 * 1500 + 200
    assert [line.status for line in first.lines] == [
        LineStatus.SHIPPED, LineStatus.OPEN, LineStatus.REFUNDED]
    assert first.lines[2].merchant_code == "" and first.lines[2].platform_sku_id == ""
    assert first.lines[1].paid_fen == 4350  # discounted total
    assert first.tracking_numbers == ("1234567890",)  # the cancelled fulfilment is ignored
    assert first.buyer_remark == "Bitte klingeln"
    assert first.address.detail == "Hauptstraße 5 2. OG, 10115 DE"
    assert first.created_at == datetime.fromisoformat("2026-11-20T08:15:02+00:00")
    # fulfilled and closed: completed; no shipping address: the billing one
    assert second.status is OrderStatus.COMPLETED
    assert second.address.city == "Berlin"
    assert second.paid_at is not None
    aware(first)
    aware(second)


def test_graphql_cancelled_order() -> None:
    record = order_from_graphql(fixture("graphql_order_cancelled.json")["data"]["order"])
    assert (record.status, record.platform_status) == (OrderStatus.CANCELLED, "voided")
    assert record.paid_at is None
    assert [line.status for line in record.lines] == [LineStatus.CANCELLED]


def test_graphql_order_with_extra_line_page() -> None:
    node = fixture("graphql_order_first_lines.json")["data"]["order"]
    extra = fixture("graphql_order_more_lines.json")["data"]["order"]["lineItems"]["nodes"]
    record = order_from_graphql(node, extra)
    assert [line.merchant_code for line in record.lines] == ["POSTER-A2", "POSTER-A3"]
    assert record.total_fen == 3980


def test_webhook_fixture_uses_shop_money_not_presentment() -> None:
    record = order_from_rest(fixture("webhook_orders_updated.json"))
    assert record.currency == "GBP"
    assert (record.paid_fen, record.total_fen, record.post_fee_fen) == (5400, 5000, 400)
    assert [line.status for line in record.lines] == [LineStatus.SHIPPED, LineStatus.OPEN]
    assert record.lines[1].paid_fen == 2 * 1000 - 200
    assert record.status is OrderStatus.PAID
    assert record.tracking_numbers == ("AB123456789GB",)
    assert record.address.detail == "1 High Street, LS1 1AA GB"


def test_variants_in_a_zero_decimal_currency() -> None:
    data = fixture("graphql_variants_page.json")["data"]
    currency = data["shop"]["currencyCode"]
    tracked, untracked = (listing_from_variant(n, currency)
                          for n in data["productVariants"]["nodes"])
    assert (tracked.platform_item_id, tracked.platform_sku_id) == (
        "8810000000401", "45100000000301")
    assert (tracked.price_fen, tracked.quantity, tracked.on_sale) == (1800, 42, True)
    assert tracked.title == "Becher - Blau"
    assert (untracked.merchant_code, untracked.quantity, untracked.on_sale) == ("", 0, False)
    assert untracked.title == "Poster"


def test_available_of_reads_the_location_level() -> None:
    node = {"inventoryItem": {"inventoryLevel": {"quantities": [
        {"name": "available", "quantity": 7}]}}}
    assert available_of(node) == 7
    assert available_of({"inventoryItem": {"inventoryLevel": None}}) is None


# -- money and ids ----------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("409.94", "USD", 40994), ("59.45", "AUD", 5945), ("1800", "JPY", 1800),
    ("1.234", "KWD", 1234), ("0.00", "EUR", 0),
])
def test_minor_units(amount: str, currency: str, minor: int) -> None:
    assert minor_units(amount, currency) == minor
    assert minor_units(decimal_amount(minor, currency), currency) == minor


def test_minor_units_refuse_silent_rounding() -> None:
    with pytest.raises(BadResponse):
        minor_units("19.999", "USD")
    with pytest.raises(BadResponse):
        minor_units("12.5", "JPY")


def test_numeric_ids() -> None:
    assert numeric_id("gid://shopify/Order/450789469") == "450789469"
    assert numeric_id(450789469) == "450789469"
    assert numeric_id(None) == ""


# -- status tables: one test per row --------------------------------------------------------

@pytest.mark.parametrize(("financial", "expected"), sorted(FINANCIAL_STATUS.items()))
def test_financial_status_row(financial: str, expected: OrderStatus) -> None:
    assert ShopifyConnector.status_table[financial] is expected
    # the GraphQL enum (upper case) maps like the REST string
    assert order_status(financial.upper(), "UNFULFILLED", cancelled=False,
                        closed=False) is expected


@pytest.mark.parametrize("fulfillment", sorted(FULFILLMENT_PROGRESS))
def test_fulfillment_status_row(fulfillment: str) -> None:
    progress = FULFILLMENT_PROGRESS[fulfillment]
    expected = {Progress.NONE: OrderStatus.PAID, Progress.SOME: OrderStatus.PAID,
                Progress.ALL: OrderStatus.SHIPPED}[progress]
    assert order_status("PAID", fulfillment.upper(), cancelled=False, closed=False) is expected


def test_status_combinations() -> None:
    assert order_status("paid", "fulfilled", cancelled=False, closed=True) is \
        OrderStatus.COMPLETED
    assert order_status("paid", None, cancelled=True, closed=True) is OrderStatus.CANCELLED
    assert order_status("refunded", "fulfilled", cancelled=True, closed=True) is \
        OrderStatus.REFUNDED
    assert order_status("pending", "fulfilled", cancelled=False, closed=False) is \
        OrderStatus.UNPAID
    with pytest.raises(BadResponse):
        order_status("mystery", None, cancelled=False, closed=False)


def test_every_documented_financial_status_is_in_the_table() -> None:
    documented = {"AUTHORIZED", "EXPIRED", "PAID", "PARTIALLY_PAID", "PARTIALLY_REFUNDED",
                  "PENDING", "REFUNDED", "VOIDED"}
    assert {k.upper() for k in FINANCIAL_STATUS} == documented
    fulfilment = {"FULFILLED", "IN_PROGRESS", "ON_HOLD", "OPEN", "PARTIALLY_FULFILLED",
                  "PENDING_FULFILLMENT", "REQUEST_DECLINED", "RESTOCKED", "SCHEDULED",
                  "UNFULFILLED", "FULFILLMENT_NOT_REQUIRED"}
    assert fulfilment <= {k.upper() for k in FULFILLMENT_PROGRESS}
