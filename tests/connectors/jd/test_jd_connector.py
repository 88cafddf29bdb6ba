"""The JD connector against its sandbox, in process, on a ManualClock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest

from connectors.jd import JdConnector
from connectors.jd.sandbox import JdSandbox
from core.carriers import DOMESTIC
from core.clock import ManualClock
from core.errors import (
    AuthExpired,
    BadResponse,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
    UnmappedCarrier,
)
from core.records import (
    Capability,
    LineStatus,
    OrderStatus,
    PriceUpdate,
    ShipRequest,
    StockUpdate,
)
from core.sandbox import Fault
from core.testing import connect
from core.tokens import RefreshingTokens

SEARCH = "jingdong.pop.order.search"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> JdSandbox:
    box = JdSandbox(clock=clock)
    box.add_item("蓝牙耳机", "HS", 19900, skus=[("HS-BLK", 1000, 19900), ("HS-WHT", 1000, 20900)])
    return box


def jd(sandbox: JdSandbox, clock: ManualClock, **kwargs: Any) -> JdConnector:
    connector = connect(JdConnector, sandbox, clock=clock, **kwargs)
    assert isinstance(connector, JdConnector)
    return connector


def place(sandbox: JdSandbox, clock: ManualClock, count: int, step: float = 1.0) -> list[str]:
    ids = []
    for _ in range(count):
        clock.advance(step)
        ids.append(sandbox.place_order([("HS-BLK", 1)]).order_id)
    return ids


def searches(sandbox: JdSandbox) -> list[dict[str, Any]]:
    found = []
    for request in sandbox.calls(SEARCH):
        form = dict(parse_qsl(request.body.decode()))
        found.append(json.loads(form["360buy_param_json"]))
    return found


def test_declares_what_it_does() -> None:
    caps = JdConnector.capabilities
    assert Capability.PUSH_ORDERS not in caps and Capability.PARTIAL_SHIP not in caps
    # 极兔 has no public logiCoprId: the only domestic carrier left to shop configuration
    assert DOMESTIC - JdConnector.carriers.canonical_codes() == {"JT"}


async def test_jt_can_be_configured_per_shop(sandbox: JdSandbox, clock: ManualClock) -> None:
    connector = jd(sandbox, clock, options={"carriers": {"JT": "6666"}})
    assert connector.carrier_table().to_platform("JT") == "6666"
    (order_id,) = place(sandbox, clock, 1)
    with pytest.raises(UnmappedCarrier):
        await jd(sandbox, clock).ship(ShipRequest(order_id, "JT", "JT0001234567890"))


# -- orders ------------------------------------------------------------------------------------
async def test_paging_reaches_the_end_and_yields_each_order_once(
        sandbox: JdSandbox, clock: ManualClock) -> None:
    start = clock.now()
    ids = place(sandbox, clock, 250)
    clock.advance(timedelta(minutes=5))
    got = [o.platform_order_id async for o in jd(sandbox, clock).iter_orders(start, clock.now())]
    assert sorted(got) == sorted(ids)
    asked = searches(sandbox)
    assert [a["page"] for a in asked] == ["1", "3", "2", "1"]
    assert {a["dateType"] for a in asked} == {0} and {a["page_size"] for a in asked} == {"100"}
    assert all(a["optional_fields"] and "," in a["order_state"] for a in asked)


async def test_backward_paging_survives_an_update_while_reading(clock: ManualClock) -> None:
    class Moving(JdSandbox):
        moved: str | None = None

        def _order_search(self, business: dict[str, Any]) -> dict[str, Any]:
            answer = super()._order_search(business)
            if self.moved is None and business["page"] != "1":
                order = next(iter(self.orders.values()))
                self.pay(order.order_id)
                self.moved = order.order_id
            return answer

    box = Moving(clock=clock)
    box.add_item("耳机", "HS", 19900, skus=[("HS-BLK", 1000, 19900)])
    start = clock.now()
    ids = place(box, clock, 250)
    end = clock.now() + timedelta(seconds=1)
    clock.advance(timedelta(minutes=5))
    got = {o.platform_order_id async for o in jd(box, clock).iter_orders(start, end)}
    assert box.moved is not None
    assert set(ids) - {box.moved} <= got


async def test_a_long_range_is_cut_into_month_windows(sandbox: JdSandbox,
                                                       clock: ManualClock) -> None:
    start = clock.now()
    ids = place(sandbox, clock, 10, step=7 * 86400)  # ten weeks
    clock.advance(timedelta(minutes=5))
    got = {o.platform_order_id async for o in jd(sandbox, clock).iter_orders(start, clock.now())}
    assert got == set(ids)
    assert len(searches(sandbox)) == 3


async def test_the_gateway_refuses_a_window_over_a_month(sandbox: JdSandbox,
                                                         clock: ManualClock) -> None:
    connector = jd(sandbox, clock)
    end = clock.now()
    with pytest.raises(Rejected, match="一个月"):
        async for _ in connector._search(end - timedelta(days=31), end):
            pass


async def test_unpaid_orders_are_invisible_and_a_refund_after_payment_is_refunded(
        sandbox: JdSandbox, clock: ManualClock) -> None:
    order = sandbox.place_order([("HS-BLK", 1)], paid=False)
    connector = jd(sandbox, clock)
    with pytest.raises(NotFound):
        await connector.get_order(order.order_id)
    sandbox.pay(order.order_id)
    assert (await connector.get_order(order.order_id)).status is OrderStatus.PAID
    sandbox.cancel(order.order_id)
    record = await connector.get_order(order.order_id)
    # closed after an online payment: JD says TRADE_CANCELED, the money went back
    assert record.status is OrderStatus.REFUNDED and record.platform_status == "TRADE_CANCELED"
    assert {line.status for line in record.lines} == {LineStatus.REFUNDED}


async def test_a_refund_after_shipping_is_refunded(sandbox: JdSandbox,
                                                   clock: ManualClock) -> None:
    order = sandbox.place_order([("HS-BLK", 1)])
    sandbox.record_shipment(order, "467", "SF1301234567890", [])
    connector = jd(sandbox, clock)
    assert (await connector.get_order(order.order_id)).status is OrderStatus.SHIPPED
    sandbox.refund_after_shipping(order.order_id)
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.REFUNDED and record.platform_status == "TRADE_CANCELED"
    assert record.tracking_numbers == ("SF1301234567890",)


# -- stock, price, shelf -----------------------------------------------------------------------
async def test_stock_is_set_absolute_and_idempotently(sandbox: JdSandbox,
                                                       clock: ManualClock) -> None:
    item, sku = sandbox.find_sku("HS-BLK")
    assert sku is not None
    connector = jd(sandbox, clock)
    for _ in range(2):
        (outcome,) = await connector.set_stock([StockUpdate(item.item_id, sku.sku_id, 12)])
        assert outcome.error is None
        assert sandbox.stock_of("HS-BLK") == 12
    (outcome,) = await connector.set_stock([StockUpdate(item.item_id, "100999999999", 1)])
    assert isinstance(outcome.error, NotFound)


async def test_the_gateway_refuses_negative_stock(sandbox: JdSandbox,
                                                  clock: ManualClock) -> None:
    _, sku = sandbox.find_sku("HS-BLK")
    assert sku is not None
    connector = jd(sandbox, clock)
    with pytest.raises(Rejected, match="负数"):
        await connector.client.call("jingdong.stock.write.updateSkuStock",
                                    {"skuId": int(sku.sku_id), "stockNum": -1})
    assert sandbox.stock_of("HS-BLK") == 1000


async def test_listings_prices_and_shelving(sandbox: JdSandbox, clock: ManualClock) -> None:
    for index in range(118):
        sandbox.add_item(f"商品{index}", f"G{index}", 1000 + index, quantity=index)
    connector = jd(sandbox, clock)
    listings = [x async for x in connector.iter_listings()]
    assert len(listings) == 120
    assert len(sandbox.calls("jingdong.sku.read.searchSkuList")) == 3  # pages of 50
    black = next(x for x in listings if x.merchant_code == "HS-BLK")
    assert (black.price_fen, black.quantity, black.on_sale) == (19900, 1000, True)
    (outcome,) = await connector.set_price(
        [PriceUpdate(black.platform_item_id, black.platform_sku_id, 18850)])
    assert outcome.error is None
    await connector.set_on_sale(black.platform_item_id, False)
    listings = [x async for x in connector.iter_listings()]
    black = next(x for x in listings if x.merchant_code == "HS-BLK")
    assert (black.price_fen, black.on_sale) == (18850, False)


# -- shipping ----------------------------------------------------------------------------------
async def test_ship_then_ship_again_is_already_shipped(sandbox: JdSandbox,
                                                       clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    connector = jd(sandbox, clock)
    await connector.ship(ShipRequest(order_id, "ZTO", "75312345678901"))
    record = await connector.get_order(order_id)
    assert record.status is OrderStatus.SHIPPED
    assert record.tracking_numbers == ("75312345678901",)
    assert sandbox.shipments_of(order_id)[0].carrier_code == "1499"
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order_id, "ZTO", "75312345678901"))
    assert caught.value.reason == "already_shipped"
    assert len(sandbox.shipments_of(order_id)) == 1


async def test_partial_shipment_is_refused_before_calling_jd(sandbox: JdSandbox,
                                                             clock: ManualClock) -> None:
    order = sandbox.place_order([("HS-BLK", 1), ("HS-WHT", 1)])
    connector = jd(sandbox, clock)
    record = await connector.get_order(order.order_id)
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF1402938475610",
                                         (record.lines[0].platform_line_id,)))
    assert caught.value.reason == "partial_ship_unsupported"
    assert sandbox.calls("jingdong.pop.order.shipment") == []


@pytest.mark.parametrize(("options", "number", "other_first", "reason"), [
    ({"carriers": {"SF": "9999"}}, "SF1402938475610", False, "bad_carrier"),
    (None, "12345", False, "bad_tracking_number"),
    (None, "SF1402938475610", True, "foreign_waybill"),
])
async def test_shipping_refusals_carry_canonical_reasons(
        sandbox: JdSandbox, clock: ManualClock, options: dict[str, Any] | None, number: str,
        other_first: bool, reason: str) -> None:
    first, second = place(sandbox, clock, 2)
    if other_first:
        await jd(sandbox, clock).ship(ShipRequest(first, "SF", number))
    with pytest.raises(Rejected) as caught:
        await jd(sandbox, clock, options=options).ship(ShipRequest(second, "SF", number))
    assert caught.value.reason == reason
    assert sandbox.shipments_of(second) == []


# -- auth and the envelope ---------------------------------------------------------------------
async def test_a_wrong_secret_is_refused_and_nothing_changes(sandbox: JdSandbox,
                                                             clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    item, sku = sandbox.find_sku("HS-BLK")
    assert sku is not None
    connector = jd(sandbox, clock, app_secret="not-the-secret")
    (outcome,) = await connector.set_stock([StockUpdate(item.item_id, sku.sku_id, 5)])
    assert isinstance(outcome.error, Rejected) and outcome.error.code == "12"
    assert "not-the-secret" not in str(outcome.error)
    with pytest.raises(Rejected):
        await connector.ship(ShipRequest(order_id, "SF", "SF1402938475610"))
    assert sandbox.stock_of("HS-BLK") == 999
    assert sandbox.shipments_of(order_id) == []


async def test_a_skewed_clock_is_refused(sandbox: JdSandbox, clock: ManualClock) -> None:
    connector = jd(sandbox, ManualClock(clock.now() - timedelta(minutes=11)))
    with pytest.raises(Rejected) as caught:
        await connector.iter_listings().__anext__()
    assert caught.value.code == "8"


async def test_an_expired_token_is_refreshed_once_and_the_rotated_refresh_token_kept(
        sandbox: JdSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    connector = jd(sandbox, clock)
    sandbox.expire_token()
    assert (await connector.get_order(order_id)).platform_order_id == order_id
    tokens = connector.shop.tokens
    assert isinstance(tokens, RefreshingTokens) and tokens.refreshes == 1
    assert tokens.current().refresh_token == "sandbox-refresh-token-2"
    assert len(sandbox.calls("oauth2.refresh_token")) == 1
    sandbox.expire_token()
    await connector.get_order(order_id)
    assert tokens.current().refresh_token == "sandbox-refresh-token-3"


async def test_a_dead_refresh_token_means_re_authorise(sandbox: JdSandbox,
                                                       clock: ManualClock) -> None:
    connector = jd(sandbox, clock, refresh_token="unknown")
    sandbox.expire_token()
    with pytest.raises(AuthExpired):
        await connector.iter_listings().__anext__()


# -- faults ------------------------------------------------------------------------------------
async def test_one_rate_limit_is_retried(sandbox: JdSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    sandbox.faults.inject(Fault.RATE_LIMIT)
    assert (await jd(sandbox, clock).get_order(order_id)).platform_order_id == order_id
    assert clock.slept


@pytest.mark.parametrize(("fault", "kind"), [
    (Fault.RATE_LIMIT, RateLimited), (Fault.SERVER_ERROR, Transient),
    (Fault.MALFORMED, BadResponse), (Fault.TIMEOUT, Transient),
])
async def test_persistent_faults_map_to_canonical_errors(
        sandbox: JdSandbox, clock: ManualClock, fault: Fault, kind: type[Exception]) -> None:
    (order_id,) = place(sandbox, clock, 1)
    sandbox.faults.inject(fault, times=10)
    with pytest.raises(kind):
        await jd(sandbox, clock).get_order(order_id)


async def test_token_expiry_fault_refreshes(sandbox: JdSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    sandbox.faults.inject(Fault.TOKEN_EXPIRED, api="jingdong.pop.order.get")
    connector = jd(sandbox, clock)
    assert (await connector.get_order(order_id)).platform_order_id == order_id
    assert connector.shop.tokens.current().access_token == "sandbox-access-token-2"


async def test_a_lost_shipment_answer_then_retry_reads_as_already_shipped(
        sandbox: JdSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, api="jingdong.pop.order.shipment")
    with pytest.raises(Rejected) as caught:
        await jd(sandbox, clock).ship(ShipRequest(order_id, "SF", "SF1402938475610"))
    assert caught.value.reason == "already_shipped"
    assert len(sandbox.shipments_of(order_id)) == 1


def test_no_push_channel(sandbox: JdSandbox, clock: ManualClock) -> None:
    with pytest.raises(NotImplementedError):
        jd(sandbox, clock).verify_push({}, b"{}")
