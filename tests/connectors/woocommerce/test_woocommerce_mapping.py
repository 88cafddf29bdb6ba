"""WooCommerce mapping over the shared samples (every `expect` fact), the connector's own
fixtures, and each row of the status table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.woocommerce.client import webhook_signature
from connectors.woocommerce.connector import WooCommerceConnector
from connectors.woocommerce.mapping import (
    STATUS_TABLE,
    decimal_amount,
    listing_record,
    minor_units,
    optional_minor_units,
    order_from_rest,
    order_status,
    stock_facts,
    variation_title,
)
from connectors.woocommerce.sandbox import WooCommerceSandbox
from core.clock import ManualClock
from core.errors import BadResponse
from core.records import LineStatus, OrderRecord, OrderStatus, PushKind
from core.testing import connect

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "samples" / "woocommerce"
FIXTURES = Path(__file__).parents[3] / "connectors" / "woocommerce" / "fixtures"
ORDER_SAMPLES = ["order_727_get.json", "orders_list.json", "webhook_order_created_body.json"]


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def check_order(record: OrderRecord, expected: dict[str, Any]) -> None:
    assert record.platform_order_id == expected["platform_order_id"]
    assert record.platform_status == expected["platform_status"]
    assert record.status.value == expected["status_class"]
    assert record.paid_fen == expected["total_paid_minor"]
    assert record.currency == expected["currency"]
    assert len(record.lines) == expected["line_count"]
    for line, want in zip(record.lines, expected["lines"], strict=True):
        assert (line.merchant_code or None) == want["merchant_sku"]
        assert line.quantity == want["quantity"]
        assert line.unit_price_fen == want["unit_price_minor"]
        if "platform_item_id" in want:
            assert line.platform_item_id == want["platform_item_id"]
        if "platform_sku_id" in want:
            assert line.platform_sku_id == want["platform_sku_id"]
    assert record.address.province == expected["buyer_state"]
    assert record.address.city == expected["buyer_city"]
    assert record.created_at.isoformat() == expected["created_at"]
    assert record.modified_at.isoformat() == expected["modified_at"]
    if "paid_at" in expected:
        assert record.paid_at is not None
        assert record.paid_at.isoformat() == expected["paid_at"]
    for moment in (record.created_at, record.modified_at, record.paid_at):
        assert moment is None or moment.utcoffset() is not None


@pytest.mark.parametrize("name", ORDER_SAMPLES)
def test_sample_orders_reproduce_every_expected_fact(name: str) -> None:
    case = sample(name)
    payloads = case["payload"] if isinstance(case["payload"], list) else [case["payload"]]
    expected = case["expect"]["orders"]
    assert len(payloads) == len(expected)
    for payload, want in zip(payloads, expected, strict=True):
        check_order(order_from_rest(payload), want)


def test_sample_webhook_topic_resource_and_event_come_from_headers() -> None:
    case = sample("webhook_order_created_body.json")
    body = json.dumps(case["payload"], separators=(",", ":")).replace("/", "\\/").encode()
    secret = "wc_sample_webhook_secret"
    sandbox = WooCommerceSandbox(clock=ManualClock())
    connector = connect(WooCommerceConnector, sandbox, extra_secrets={"webhook_secret": secret})
    headers = {"X-WC-Webhook-Topic": case["expect"]["webhook_topic"],
               "X-WC-Webhook-Resource": case["expect"]["webhook_resource"],
               "X-WC-Webhook-Event": case["expect"]["webhook_event"],
               "X-WC-Webhook-Delivery-ID": "0f4b0a",
               "X-WC-Webhook-Signature": webhook_signature(secret, body)}
    (event,) = connector.verify_push(headers, body)
    assert (event.kind, event.topic) == (PushKind.ORDER, "order.created")
    assert event.order is not None
    check_order(event.order, case["expect"]["orders"][0])


def test_sample_variations_list() -> None:
    case = sample("product_22_variations_list.json")
    (item,) = case["expect"]["items"]
    facts = [stock_facts(v, "USD", kind="variation") for v in case["payload"]]
    assert len(facts) == item["sku_count"]
    for got, want in zip(facts, item["skus"], strict=True):
        assert got.platform_id == want["sku_id"]
        assert got.merchant_code == want["outer_id"]
        assert got.quantity == want["quantity"]  # None: stock is not managed
        assert got.stock_status == want["stock_status"]
        assert got.price_fen == want["price_minor"]
        assert got.modified_at is not None
        assert got.modified_at.isoformat() == want["modified_at"]
    # the parent id comes from the request path, as in the connector's variation pull
    parent = stock_facts({"id": int(item["item_id"]), "type": "variable", "price": "",
                          "sku": ""})
    record = listing_record({"name": "Ship Your Idea"}, facts[0], parent=parent,
                            title_suffix=variation_title(case["payload"][0]))
    assert (record.platform_item_id, record.platform_sku_id) == ("22", "733")
    assert record.title == "Ship Your Idea - Green"


def test_sample_products_list() -> None:
    case = sample("products_list_variable_and_simple.json")
    for payload, want in zip(case["payload"], case["expect"]["items"], strict=True):
        facts = stock_facts(payload, "USD")
        assert facts.platform_id == want["item_id"]
        assert facts.kind == want["type"]
        assert facts.merchant_code == want["outer_id"]
        assert facts.price_fen == want["price_minor"]  # '' -> None, not 0
        assert facts.quantity == want["quantity"]
        assert len(facts.variation_ids) == want["sku_count"]


# -- the connector's fixtures ---------------------------------------------------------------

def test_orders_page_fixture() -> None:
    first, second = (order_from_rest(o) for o in fixture("orders_list_page.json"))
    assert (first.status, first.currency) == (OrderStatus.PAID, "EUR")
    # unit price is subtotal / quantity (9.99), not the discounted float price (8.99)
    assert [line.unit_price_fen for line in first.lines] == [999, 1302]
    assert [line.paid_fen for line in first.lines] == [2697, 1302]
    assert first.total_fen == 2997 + 1302
    assert (first.paid_fen, first.post_fee_fen) == (4489, 490)
    assert first.lines[0].title == "Kaffeebecher – Blau"
    assert first.buyer_remark == "Bitte beim Nachbarn abgeben"
    assert first.created_at == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert second.status is OrderStatus.COMPLETED
    assert {line.status for line in second.lines} == {LineStatus.SHIPPED}
    assert second.tracking_numbers == ("1234567890",)  # from _wc_shipment_tracking_items


def test_on_hold_order_in_yen_without_shipping_address() -> None:
    record = order_from_rest(fixture("order_on_hold_jpy.json"))
    assert (record.status, record.platform_status) == (OrderStatus.UNPAID, "on-hold")
    assert (record.currency, record.paid_fen, record.lines[0].unit_price_fen) == ("JPY", 1500, 750)
    assert record.paid_at is None
    assert record.address.city == "Hamburg"  # billing: a virtual order ships nowhere
    assert record.address.phone == "+49 40 555 0101"


def test_processing_order_holding_a_waybill_is_shipped() -> None:
    body = fixture("orders_list_page.json")[0]
    assert order_from_rest(body).status is OrderStatus.PAID
    record = order_from_rest(body, ["1Z999AA10123456784"])
    assert (record.status, record.platform_status) == (OrderStatus.SHIPPED, "processing")
    assert {line.status for line in record.lines} == {LineStatus.SHIPPED}
    assert record.tracking_numbers == ("1Z999AA10123456784",)


def test_refunded_order() -> None:
    record = order_from_rest(fixture("order_refunded.json"))
    assert record.status is OrderStatus.REFUNDED
    assert [line.status for line in record.lines] == [LineStatus.REFUNDED]
    assert record.lines[0].platform_sku_id == "352"


def test_products_and_variations_fixtures() -> None:
    variable, simple, draft = (stock_facts(p, "EUR") for p in fixture("products_list_page.json"))
    assert (variable.kind, variable.quantity, variable.variation_ids) == ("variable", None,
                                                                          ("312", "313"))
    assert (simple.quantity, simple.price_fen, simple.on_sale) == (14, 1302, True)
    assert (draft.quantity, draft.on_sale, draft.stock_status) == (0, False, "outofstock")
    red, blue = (stock_facts(v, "EUR", kind="variation")
                 for v in fixture("product_310_variations.json"))
    assert red.quantity is None  # manage_stock "parent": this variation keeps no count
    assert (blue.quantity, blue.price_fen, blue.merchant_code) == (37, 899, "CUP-BLUE")
    product = fixture("products_list_page.json")[0]
    record = listing_record(product, blue, parent=variable, title_suffix="Blau")
    assert (record.platform_item_id, record.platform_sku_id, record.item_merchant_code) == (
        "310", "312", "CUP")
    assert record.title == "Kaffeebecher - Blau"


# -- money -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "currency", "minor"), [
    ("21.99", "USD", 2199), ("29.35", "", 2935), ("1500", "JPY", 1500), (3, "USD", 300),
    ("0.00", "EUR", 0),
])
def test_minor_units(value: Any, currency: str, minor: int) -> None:
    assert minor_units(value, currency) == minor


def test_money_edges() -> None:
    assert optional_minor_units("", "USD") is None
    assert decimal_amount(2199, "USD") == "21.99" and decimal_amount(1500, "JPY") == "1500"
    with pytest.raises(BadResponse):
        minor_units("9.999", "USD")
    with pytest.raises(BadResponse):
        minor_units("abc", "USD")


# -- status table: one test per row ---------------------------------------------------------

@pytest.mark.parametrize(("status", "expected"), [
    ("pending", OrderStatus.UNPAID),
    ("processing", OrderStatus.PAID),
    ("on-hold", OrderStatus.UNPAID),
    ("completed", OrderStatus.COMPLETED),
    ("cancelled", OrderStatus.CANCELLED),
    ("refunded", OrderStatus.REFUNDED),
    ("failed", OrderStatus.UNPAID),
    ("trash", OrderStatus.CANCELLED),
    ("checkout-draft", OrderStatus.UNPAID),
])
def test_status_row(status: str, expected: OrderStatus) -> None:
    assert WooCommerceConnector.status_table[status] is expected
    assert order_status(status) is expected


def test_status_table_covers_exactly_the_documented_statuses() -> None:
    assert set(STATUS_TABLE) == {"pending", "processing", "on-hold", "completed", "cancelled",
                                 "refunded", "failed", "trash", "checkout-draft"}
    with pytest.raises(BadResponse):
        order_status("wc-awaiting-shipment")  # a plugin's status must be mapped, not guessed
