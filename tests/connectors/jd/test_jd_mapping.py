"""JD JSON -> canonical records over our fixtures; one test per order-state row."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.jd import JdConnector
from connectors.jd.mapping import (
    STATUS_TABLE,
    listing_from_sku,
    load_json,
    order_from_jd,
    token_set,
    waybills,
)
from connectors.jd.sandbox import JdSandbox
from core.clock import BEIJING, ManualClock
from core.errors import BadResponse, ConnectorError
from core.records import LineStatus, OrderStatus, TokenSet
from core.testing import connect

FIXTURES = Path(__file__).parents[3] / "connectors" / "jd" / "fixtures"


def fixture(name: str) -> Any:
    return load_json((FIXTURES / name).read_bytes())


def search_rows() -> list[dict[str, Any]]:
    body = fixture("pop_order_search.json")["jingdong_pop_order_search_responce"]
    rows: list[dict[str, Any]] = body["searchorderinfo_result"]["orderInfoList"]
    return rows


def test_search_fixture_paid_order() -> None:
    record = order_from_jd(search_rows()[0])
    assert record.platform_order_id == "301234567890"
    assert record.status is OrderStatus.PAID and record.platform_status == "WAIT_SELLER_STOCK_OUT"
    assert (record.total_fen, record.paid_fen, record.post_fee_fen) == (29900, 27900, 0)
    assert record.created_at == datetime(2026, 11, 11, 0, 0, 31, tzinfo=BEIJING)
    assert record.modified_at == datetime(2026, 11, 11, 0, 0, 46, tzinfo=BEIJING)
    assert record.paid_at == datetime(2026, 11, 11, 0, 0, 45, tzinfo=BEIJING)
    assert [(ln.platform_sku_id, ln.merchant_code, ln.quantity, ln.unit_price_fen, ln.paid_fen)
            for ln in record.lines] == [("100012345678", "HEADSET-BLK", 1, 19900, 19900),
                                        ("100012345690", "", 2, 5000, 10000)]
    assert all(line.status is LineStatus.OPEN for line in record.lines)
    assert record.address.province == "北京" and record.address.district == "三环到四环之间"
    assert record.address.phone == "137****1024"
    assert record.buyer_remark == "周末送货"
    assert record.tracking_numbers == ()


def test_search_fixture_finished_order_with_two_waybills_and_a_repeated_sku() -> None:
    record = order_from_jd(search_rows()[1])
    assert record.status is OrderStatus.COMPLETED
    assert record.tracking_numbers == ("JDX004512345678", "JDX004512345679")
    assert (record.paid_fen, record.post_fee_fen) == (9590, 600)
    assert record.address.phone == "021-****6655"  # no mobile: the landline
    assert [line.platform_line_id for line in record.lines] == ["100012340001",
                                                                "100012340001+"]
    assert record.lines[1].unit_price_fen == 20
    assert all(line.status is LineStatus.SHIPPED for line in record.lines)
    assert record.seller_remark == "老客户"


def test_get_fixture() -> None:
    body = fixture("pop_order_get.json")["jingdong_pop_order_get_responce"]
    record = order_from_jd(body["orderDetailInfo"]["orderInfo"])
    assert record.status is OrderStatus.SHIPPED
    assert record.paid_fen == 119900 and record.total_fen == 129900
    assert record.tracking_numbers == ("SF1309876543210",)
    assert JdConnector.carriers.to_canonical(body["orderDetailInfo"]["orderInfo"]
                                             ["logisticsId"]) == "SF"


def test_sku_list_fixture() -> None:
    body = fixture("sku_read_search_sku_list.json")["jingdong_sku_read_searchSkuList_responce"]
    black, white = (listing_from_sku(row) for row in body["page"]["data"])
    assert (black.platform_item_id, black.platform_sku_id) == ("10001234567", "100012345678")
    assert (black.price_fen, black.quantity, black.on_sale) == (19900, 87, True)
    assert black.merchant_code == "HEADSET-BLK" and black.title == "蓝牙耳机 降噪 长续航"
    assert black.modified_at == datetime(2026, 11, 10, 16, 0, tzinfo=UTC)
    assert (white.price_fen, white.on_sale, white.merchant_code) == (20900, False, "")


def test_token_fixture() -> None:
    body = fixture("oauth_refresh_token.json")
    tokens = token_set(body, TokenSet("old", "old-refresh"))
    assert tokens.refresh_token == body["refresh_token"]
    assert tokens.expires_at == datetime.fromtimestamp(1794326400 + 31536000, UTC)


@pytest.mark.parametrize(("text", "numbers"), [
    ("", ()), ("SF1", ("SF1",)), ("1200458628372,111232|468778814888", (
        "1200458628372", "111232", "468778814888")),
])
def test_waybill_lists(text: str, numbers: tuple[str, ...]) -> None:
    assert waybills(text) == numbers


def test_status_table_covers_every_documented_state() -> None:
    documented = {"WAIT_SELLER_STOCK_OUT", "WAIT_GOODS_RECEIVE_CONFIRM", "WAIT_SELLER_DELIVERY",
                  "PAUSE", "POP_ORDER_PAUSE", "FINISHED_L", "TRADE_CANCELED", "LOCKED",
                  "WAIT_SEND_CODE", "SEND_TO_DISTRIBUTION_CENER",
                  "DISTRIBUTION_CENTER_RECEIVED", "RECEIPTS_CONFIRM", "DELIVERY_RETURN"}
    assert set(STATUS_TABLE) == documented
    assert JdConnector.status_table is STATUS_TABLE


def cash_on_delivery_row() -> dict[str, Any]:
    """The search fixture's order as cash on delivery, not yet paid: every row of the table
    applies to it as is (no refinement by payment)."""
    return {**search_rows()[0], "payType": "1-货到付款", "paymentConfirmTime": ""}


@pytest.mark.parametrize(("state", "status"), sorted(STATUS_TABLE.items()))
def test_status_row(state: str, status: OrderStatus) -> None:
    record = order_from_jd({**cash_on_delivery_row(), "orderState": state})
    assert record.status is status and record.platform_status == state
    assert record.created_at.utcoffset() is not None


@pytest.mark.parametrize(("state", "status"), sorted(STATUS_TABLE.items()))
def test_status_row_of_an_order_paid_online(state: str, status: OrderStatus) -> None:
    """Paid online, only the closed state changes meaning: money went back (REFUNDED)."""
    record = order_from_jd({**search_rows()[0], "orderState": state})
    expected = OrderStatus.REFUNDED if state == "TRADE_CANCELED" else status
    assert record.status is expected and record.platform_status == state
    if expected is OrderStatus.REFUNDED:
        assert {line.status for line in record.lines} == {LineStatus.REFUNDED}


@pytest.mark.parametrize(("pay_type", "paid_at", "status"), [
    ("4-在线支付", "2026-11-11 00:00:45", OrderStatus.REFUNDED),
    ("4-在线支付", "", OrderStatus.CANCELLED),
    ("4-在线支付", "0001-01-01 00:00:00", OrderStatus.CANCELLED),  # JD's zero date
    ("1-货到付款", "2026-11-11 00:00:45", OrderStatus.CANCELLED),  # COD: nothing collected
    ("1-货到付款", "", OrderStatus.CANCELLED),
])
def test_a_closed_order_is_refunded_only_after_an_online_payment(
        pay_type: str, paid_at: str, status: OrderStatus) -> None:
    record = order_from_jd({**search_rows()[0], "orderState": "TRADE_CANCELED",
                            "payType": pay_type, "paymentConfirmTime": paid_at})
    assert record.status is status
    line_status = (LineStatus.REFUNDED if status is OrderStatus.REFUNDED
                   else LineStatus.CANCELLED)
    assert {line.status for line in record.lines} == {line_status}


def test_an_unknown_state_is_a_bad_response() -> None:
    with pytest.raises(BadResponse):
        order_from_jd({**search_rows()[0], "orderState": "UN_KNOWN"})


def test_float_money_is_refused() -> None:
    with pytest.raises(BadResponse):
        order_from_jd({**search_rows()[0], "orderPayment": 279.0})


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_every_fixture_unwraps_or_maps_to_a_canonical_error(path: Path) -> None:
    body = fixture(path.name)
    client = connect(JdConnector, JdSandbox(clock=ManualClock())).client  # type: ignore[attr-defined]
    response = httpx.Response(200, content=path.read_bytes())
    if "error_response" in body:
        with pytest.raises(ConnectorError):
            client.parse_response("jingdong.pop.order.get", response)
        return
    if path.name.startswith("oauth"):
        assert client.parse_response("oauth2.refresh_token", response) == body
        return
    (key,) = body
    api = {"jingdong_pop_order_search_responce": "jingdong.pop.order.search",
           "jingdong_pop_order_get_responce": "jingdong.pop.order.get",
           "jingdong_pop_order_shipment_responce": "jingdong.pop.order.shipment",
           "jingdong_sku_read_searchSkuList_responce": "jingdong.sku.read.searchSkuList",
           "jingdong_stock_write_updateSkuStock_responce": "jingdong.stock.write.updateSkuStock",
           }[key]
    inner = client.parse_response(api, response)
    assert inner == body[key]
    if api == "jingdong.stock.write.updateSkuStock":
        assert client.check_result(api, inner)["success"] is True

