"""Taobao JSON -> canonical records over every fixture, and one test per trade status."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from connectors.taobao.client import response_key
from connectors.taobao.connector import TaobaoConnector
from connectors.taobao.mapping import STATUS_TABLE, item_to_listings, trade_to_order
from core.carriers import DOMESTIC
from core.errors import BadResponse
from core.records import LineStatus, OrderStatus

FIXTURES = Path(__file__).parents[3] / "connectors" / "taobao" / "fixtures"


def payload(name: str, api: str) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((FIXTURES / name).read_text())[response_key(api)])


def trade(name: str = "trade_fullinfo_get.json") -> dict[str, Any]:
    return cast(dict[str, Any], payload(name, "taobao.trade.fullinfo.get")["trade"])


def test_partly_shipped_trade() -> None:
    order = trade_to_order(trade())
    assert order.platform_order_id == "3917264410582937461"
    assert (order.status, order.platform_status) == (OrderStatus.PAID, "SELLER_CONSIGNED_PART")
    assert (order.total_fen, order.paid_fen, order.post_fee_fen) == (25800, 24600, 800)
    assert order.created_at.utcoffset() == timedelta(hours=8)
    assert order.created_at.isoformat() == "2026-11-10T21:14:05+08:00"
    assert order.paid_at is not None and order.paid_at.isoformat() == "2026-11-10T21:15:40+08:00"
    assert order.modified_at.isoformat() == "2026-11-11T09:02:17+08:00"
    address = order.address
    assert (address.province, address.city, address.district, address.detail) == (
        "江苏省", "苏州市", "工业园区", "星湖街***号")
    assert (address.name, address.phone) == ("李*", "*******3381")
    assert (order.buyer_remark, order.seller_remark) == ("请用纸箱包装", "先发现货")
    assert order.tracking_numbers == ("SF1402117350982",)

    shirt, mug = order.lines
    assert (shirt.platform_line_id, shirt.platform_item_id, shirt.platform_sku_id) == (
        "3917264410583937461", "712345678901", "5123456789012")
    assert (shirt.merchant_code, shirt.quantity, shirt.unit_price_fen, shirt.paid_fen) == (
        "TEE-100-BLK-M", 2, 9900, 19000)
    assert shirt.status is LineStatus.SHIPPED
    # no SKU: the item's outer id is the merchant code; a pending refund keeps the line open
    assert (mug.platform_sku_id, mug.merchant_code, mug.paid_fen) == ("", "MUG-01", 4800)
    assert mug.status is LineStatus.OPEN


def test_closed_trade_is_refunded_line_by_line() -> None:
    order = trade_to_order(trade("trade_fullinfo_get_closed.json"))
    assert order.status is OrderStatus.REFUNDED
    assert [line.status for line in order.lines] == [LineStatus.REFUNDED]
    assert order.tracking_numbers == () and order.seller_remark == ""


@pytest.mark.parametrize(("status", "expected"), [
    ("TRADE_NO_CREATE_PAY", OrderStatus.UNPAID),
    ("WAIT_BUYER_PAY", OrderStatus.UNPAID),
    ("PAY_PENDING", OrderStatus.UNPAID),
    ("WAIT_PRE_AUTH_CONFIRM", OrderStatus.UNPAID),
    ("WAIT_SELLER_SEND_GOODS", OrderStatus.PAID),
    ("PAID_FORBID_CONSIGN", OrderStatus.PAID),
    ("SELLER_CONSIGNED_PART", OrderStatus.PAID),
    ("WAIT_BUYER_CONFIRM_GOODS", OrderStatus.SHIPPED),
    ("TRADE_BUYER_SIGNED", OrderStatus.SHIPPED),
    ("TRADE_FINISHED", OrderStatus.COMPLETED),
    ("TRADE_CLOSED", OrderStatus.REFUNDED),
    ("TRADE_CLOSED_BY_TAOBAO", OrderStatus.CANCELLED),
])
def test_status_row(status: str, expected: OrderStatus) -> None:
    assert trade_to_order({**trade(), "status": status}).status is expected


def test_status_table_covers_exactly_the_documented_statuses() -> None:
    assert len(STATUS_TABLE) == 12
    assert TaobaoConnector.status_table is STATUS_TABLE


@pytest.mark.parametrize(("line", "expected"), [
    ({"status": "WAIT_SELLER_SEND_GOODS", "refund_status": "NO_REFUND"}, LineStatus.OPEN),
    ({"status": "WAIT_BUYER_PAY"}, LineStatus.OPEN),
    ({"status": "TRADE_BUYER_SIGNED"}, LineStatus.SHIPPED),
    ({"status": "TRADE_FINISHED", "refund_status": "SUCCESS"}, LineStatus.REFUNDED),
    ({"status": "TRADE_CLOSED"}, LineStatus.REFUNDED),
    ({"status": "TRADE_CLOSED_BY_TAOBAO"}, LineStatus.CANCELLED),
])
def test_line_status(line: dict[str, str], expected: LineStatus) -> None:
    source = trade()
    first = {k: v for k, v in source["orders"]["order"][0].items() if k != "refund_status"}
    changed = {**source, "orders": {"order": [{**first, **line}]}}
    assert trade_to_order(changed).lines[0].status is expected


@pytest.mark.parametrize("broken", [
    {"status": "SOMETHING_NEW"},  # an undocumented status is quarantined, not guessed
    {"payment": "12.345"},  # no silent rounding of money
    {"created": "2026/11/10"},
    {"tid": None, "total_fee": None},
])
def test_trades_that_do_not_map_are_bad_responses(broken: dict[str, Any]) -> None:
    with pytest.raises(BadResponse):
        trade_to_order({**trade(), **broken})


def test_items_map_to_one_listing_per_live_sku() -> None:
    items = payload("items_seller_list_get.json", "taobao.items.seller.list.get")["items"]["item"]
    shirt, mug = (item_to_listings(item) for item in items)
    assert [(r.platform_sku_id, r.merchant_code, r.price_fen, r.quantity) for r in shirt] == [
        ("5123456789012", "TEE-100-BLK-M", 9900, 40), ("5123456789013", "TEE-100-WHT-L", 8900, 17)]
    assert all(r.on_sale and r.item_merchant_code == "TEE-100" for r in shirt)
    assert shirt[0].modified_at is not None and shirt[0].modified_at.utcoffset() == timedelta(hours=8)
    (single,) = mug
    assert (single.platform_item_id, single.platform_sku_id, single.merchant_code) == (
        "712345678955", "", "MUG-01")
    assert (single.price_fen, single.quantity, single.on_sale) == (6000, 12, False)


def test_item_without_price_is_a_bad_response() -> None:
    with pytest.raises(BadResponse):
        item_to_listings({"num_iid": 1, "num": 3})


@pytest.mark.parametrize(("name", "api"), [
    ("trade_fullinfo_get.json", "taobao.trade.fullinfo.get"),
    ("trade_fullinfo_get_closed.json", "taobao.trade.fullinfo.get"),
    ("trades_sold_increment_get.json", "taobao.trades.sold.increment.get"),
    ("items_onsale_get.json", "taobao.items.onsale.get"),
    ("items_seller_list_get.json", "taobao.items.seller.list.get"),
    ("logistics_offline_send.json", "taobao.logistics.offline.send"),
    ("top_auth_token_refresh.json", "taobao.top.auth.token.refresh"),
])
def test_success_fixtures_are_wrapped_like_the_api(name: str, api: str) -> None:
    body = json.loads((FIXTURES / name).read_text())
    assert list(body) == [response_key(api)] and "request_id" in body[response_key(api)]


def test_every_fixture_is_a_success_or_an_error_envelope() -> None:
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    assert len(names) >= 10
    for name in names:
        (key,) = json.loads((FIXTURES / name).read_text())
        assert key.endswith("_response")


def test_carrier_table_covers_every_domestic_carrier() -> None:
    table = TaobaoConnector.carriers
    assert table.canonical_codes() == DOMESTIC
    assert len({code for _, code in table.items()}) == len(DOMESTIC)  # no two share a code
    assert table.to_platform("JD") == "LE04284890" and table.to_canonical("DBKD") == "DBL"
