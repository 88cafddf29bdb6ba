"""The Pinduoduo connector against its sandbox, in process, on a ManualClock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from connectors.pinduoduo import PinduoduoConnector
from connectors.pinduoduo.sandbox import PinduoduoSandbox
from core.carriers import DOMESTIC
from core.clock import ManualClock
from core.connector import Connector
from core.errors import (
    AuthExpired,
    BadResponse,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
    UnmappedCarrier,
)
from core.records import Capability, OrderStatus, PriceUpdate, ShipRequest, StockUpdate
from core.sandbox import Fault
from core.testing import connect
from core.tokens import RefreshingTokens

INCREMENT = "pdd.order.number.list.increment.get"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> PinduoduoSandbox:
    box = PinduoduoSandbox(clock=clock)
    box.add_item("陶瓷马克杯", "MUG", 2990, skus=[("MUG-W", 1000, 2990), ("MUG-B", 1000, 3090)])
    return box


def pdd(sandbox: PinduoduoSandbox, clock: ManualClock, **kwargs: Any) -> PinduoduoConnector:
    connector = connect(PinduoduoConnector, sandbox, clock=clock, **kwargs)
    assert isinstance(connector, PinduoduoConnector)
    return connector


def place(sandbox: PinduoduoSandbox, clock: ManualClock, count: int,
          step: float = 1.0) -> list[str]:
    ids = []
    for _ in range(count):
        clock.advance(step)
        ids.append(sandbox.place_order([("MUG-W", 1)]).order_id)
    return ids


def windows_asked(sandbox: PinduoduoSandbox) -> list[tuple[int, int, int]]:
    calls = [json.loads(r.body) for r in sandbox.calls(INCREMENT)]
    return [(int(c["start_updated_at"]), int(c["end_updated_at"]), int(c["page"]))
            for c in calls]


def test_declares_what_it_does() -> None:
    caps = PinduoduoConnector.capabilities
    assert Capability.PUSH_ORDERS not in caps and Capability.PARTIAL_SHIP not in caps
    assert {Capability.PULL_ORDERS, Capability.SHIP, Capability.SET_STOCK,
            Capability.REFRESH_TOKEN} <= caps
    assert PinduoduoConnector.carriers.canonical_codes() == DOMESTIC


# -- orders ------------------------------------------------------------------------------------
async def test_paging_reaches_the_end_and_yields_each_order_once(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    start = clock.now()
    ids = place(sandbox, clock, 250)
    clock.advance(timedelta(minutes=5))
    connector = pdd(sandbox, clock)
    got = [o.platform_order_id async for o in connector.iter_orders(start, clock.now())]
    assert sorted(got) == sorted(ids)
    # a probe of page 1, then the last page back to the first
    assert [page for _, _, page in windows_asked(sandbox)] == [1, 3, 2, 1]


async def test_backward_paging_survives_an_update_while_reading(clock: ManualClock) -> None:
    class Moving(PinduoduoSandbox):
        """An early order is updated right after the first real page is served."""

        moved: str | None = None

        def _increment(self, params: dict[str, str]) -> dict[str, Any]:
            answer = super()._increment(params)
            if self.moved is None and params["page"] != "1":
                order = next(iter(self.orders.values()))
                self.pay(order.order_id)  # touches it: updated_at jumps past the window
                self.moved = order.order_id
            return answer

    box = Moving(clock=clock)
    box.add_item("杯", "MUG", 2990, skus=[("MUG-W", 1000, 2990)])
    start = clock.now()
    ids = place(box, clock, 250)
    end = clock.now() + timedelta(seconds=1)
    clock.advance(timedelta(minutes=5))
    connector = pdd(box, clock)
    got = {o.platform_order_id async for o in connector.iter_orders(start, end)}
    assert box.moved is not None
    assert set(ids) - {box.moved} <= got


async def test_forward_paging_would_lose_an_order_here(clock: ManualClock,
                                                       sandbox: PinduoduoSandbox) -> None:
    """The sandbox pages from live state, like PDD: the reason the connector reads backwards."""
    start = clock.now()
    ids = place(sandbox, clock, 150)
    end = clock.now()
    clock.advance(timedelta(minutes=5))
    connector = pdd(sandbox, clock)
    base = {"start_updated_at": int(start.timestamp()), "end_updated_at": int(end.timestamp()),
            "page_size": 100}
    seen = [o["order_sn"] for o in (await connector.client.call(
        INCREMENT, {**base, "page": 1}))["order_sn_list"]]
    sandbox.pay(ids[0])  # leaves the window; everything after it moves up one place
    seen += [o["order_sn"] for o in (await connector.client.call(
        INCREMENT, {**base, "page": 2}))["order_sn_list"]]
    assert set(ids) - set(seen) == {ids[100]}  # it slid onto the page already read


async def test_a_long_range_is_cut_into_30_minute_windows(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    start = clock.now()
    ids = place(sandbox, clock, 40, step=180)  # two hours of orders
    clock.advance(timedelta(minutes=5))
    connector = pdd(sandbox, clock)
    got = [o.platform_order_id async for o in connector.iter_orders(start, clock.now())]
    assert sorted(set(got)) == sorted(ids)
    assert all(end - begin <= 1800 for begin, end, _ in windows_asked(sandbox))
    assert len(windows_asked(sandbox)) == 5


async def test_the_router_refuses_a_window_over_30_minutes(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    connector = pdd(sandbox, clock)
    now = int(clock.now().timestamp())
    with pytest.raises(Rejected, match="30分钟"):
        await connector.client.call(INCREMENT, {"start_updated_at": now - 1801,
                                                "end_updated_at": now})
    with pytest.raises(Rejected):
        await connector.client.call(INCREMENT, {"start_updated_at": now - 60,
                                                "end_updated_at": now, "page_size": 101})


async def test_unpaid_orders_stay_invisible_until_paid(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    start = clock.now()
    order = sandbox.place_order([("MUG-W", 1)], paid=False)
    connector = pdd(sandbox, clock)
    clock.advance(60)
    assert [o async for o in connector.iter_orders(start, clock.now())] == []
    with pytest.raises(NotFound):
        await connector.get_order(order.order_id)
    sandbox.pay(order.order_id)
    clock.advance(60)
    assert (await connector.get_order(order.order_id)).status is OrderStatus.PAID


async def test_refund_after_shipping_is_pulled_as_refunded(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    connector = pdd(sandbox, clock)
    await connector.ship(ShipRequest(order_id, "ZTO", "75312345678901"))
    clock.advance(60)
    since = clock.now()
    sandbox.refund_after_shipping(order_id)
    clock.advance(60)
    (record,) = [o async for o in connector.iter_orders(since, clock.now())]
    assert record.status is OrderStatus.REFUNDED
    assert record.tracking_numbers == ("75312345678901",)


# -- stock, price, shelf -----------------------------------------------------------------------
async def test_stock_is_set_absolute_and_idempotently(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    item, sku = sandbox.find_sku("MUG-W")
    assert sku is not None
    connector = pdd(sandbox, clock)
    update = StockUpdate(item.item_id, sku.sku_id, 7)
    for _ in range(2):
        (outcome,) = await connector.set_stock([update])
        assert outcome.error is None
        assert sandbox.stock_of("MUG-W") == 7
    (outcome,) = await connector.set_stock([StockUpdate(item.item_id, "999", 1)])
    assert isinstance(outcome.error, Rejected)


async def test_the_router_refuses_negative_absolute_stock(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    item, sku = sandbox.find_sku("MUG-W")
    assert sku is not None
    connector = pdd(sandbox, clock)
    with pytest.raises(Rejected):
        await connector.client.call("pdd.goods.quantity.update", {
            "goods_id": item.item_id, "sku_id": sku.sku_id, "quantity": -1})
    assert sandbox.stock_of("MUG-W") == 1000


async def test_listings_prices_and_shelving(sandbox: PinduoduoSandbox,
                                            clock: ManualClock) -> None:
    for index in range(120):
        sandbox.add_item(f"商品{index}", f"G{index}", 1000 + index, quantity=index)
    connector = pdd(sandbox, clock)
    listings = [x async for x in connector.iter_listings()]
    assert len(listings) == 122
    mug_w = next(x for x in listings if x.merchant_code == "MUG-W")
    assert (mug_w.price_fen, mug_w.quantity, mug_w.on_sale) == (2990, 1000, True)

    (outcome,) = await connector.set_price(
        [PriceUpdate(mug_w.platform_item_id, mug_w.platform_sku_id, 2500)])
    assert outcome.error is None
    item, sku = sandbox.find_sku("MUG-W")
    assert sku is not None and sku.price_fen == 2500
    assert sandbox.single_prices[sku.sku_id] == 2600  # the 1 yuan spread is kept

    await connector.set_on_sale(item.item_id, False)
    assert not sandbox.items[item.item_id].on_sale
    listings = [x async for x in connector.iter_listings()]
    assert not next(x for x in listings if x.merchant_code == "MUG-W").on_sale


# -- shipping ----------------------------------------------------------------------------------
async def test_ship_then_ship_again_is_already_shipped(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    connector = pdd(sandbox, clock)
    await connector.ship(ShipRequest(order_id, "SF", "SF1402938475610"))
    record = await connector.get_order(order_id)
    assert record.status is OrderStatus.SHIPPED
    assert record.tracking_numbers == ("SF1402938475610",)
    assert sandbox.shipments_of(order_id)[0].carrier_code == "44"
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order_id, "SF", "SF1402938475610"))
    assert caught.value.reason == "already_shipped"
    assert len(sandbox.shipments_of(order_id)) == 1


async def test_a_lost_answer_then_retry_reads_as_already_shipped(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    connector = pdd(sandbox, clock)
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, api="pdd.logistics.online.send")
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order_id, "SF", "SF1402938475610"))
    assert caught.value.reason == "already_shipped"
    assert len(sandbox.shipments_of(order_id)) == 1


async def test_partial_shipment_is_refused_before_calling_pdd(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    clock.advance(1)
    order = sandbox.place_order([("MUG-W", 1), ("MUG-B", 1)])
    connector = pdd(sandbox, clock)
    record = await connector.get_order(order.order_id)
    first = record.lines[0].platform_line_id
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF1402938475610", (first,)))
    assert caught.value.reason == "partial_ship_unsupported"
    assert sandbox.shipments_of(order.order_id) == []
    every = tuple(line.platform_line_id for line in record.lines)
    await connector.ship(ShipRequest(order.order_id, "SF", "SF1402938475610", every))
    assert len(sandbox.shipments_of(order.order_id)) == 1


@pytest.mark.parametrize(("carrier_override", "number", "prepare", "reason"), [
    ({"SF": "116"}, "SF1402938475610", None, "bad_carrier"),  # 全峰: not available
    (None, "12345", None, "bad_tracking_number"),
    (None, "SF1402938475610", "other_order", "foreign_waybill"),
    (None, "SF1402938475610", "no_address", "missing_sender_address"),
])
async def test_shipping_refusals_carry_canonical_reasons(
        sandbox: PinduoduoSandbox, clock: ManualClock, carrier_override: dict[str, str] | None,
        number: str, prepare: str | None, reason: str) -> None:
    first, second = place(sandbox, clock, 2)
    options = {"carriers": carrier_override} if carrier_override else None
    connector = pdd(sandbox, clock, options=options)
    if prepare == "other_order":
        await pdd(sandbox, clock).ship(ShipRequest(first, "SF", number))
    if prepare == "no_address":
        sandbox.has_refund_address = False
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(second, "SF", number))
    assert caught.value.reason == reason
    assert sandbox.shipments_of(second) == []


async def test_a_carrier_pdd_has_no_id_for_is_unmapped(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    with pytest.raises(UnmappedCarrier):
        await pdd(sandbox, clock).ship(ShipRequest(order_id, "UPS", "1Z999AA10123456784"))


# -- auth and the envelope ---------------------------------------------------------------------
async def test_a_wrong_secret_is_refused_and_nothing_changes(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    item, sku = sandbox.find_sku("MUG-W")
    assert sku is not None
    connector = pdd(sandbox, clock, app_secret="not-the-secret")
    (outcome,) = await connector.set_stock([StockUpdate(item.item_id, sku.sku_id, 5)])
    assert isinstance(outcome.error, Rejected) and outcome.error.code == "20004"
    assert outcome.error.reason == "bad_signature"
    assert "not-the-secret" not in str(outcome.error)
    with pytest.raises(Rejected):
        await connector.ship(ShipRequest(order_id, "SF", "SF1402938475610"))
    assert sandbox.stock_of("MUG-W") == 999
    assert sandbox.shipments_of(order_id) == []


async def test_a_skewed_clock_is_refused(sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    client_clock = ManualClock(clock.now() + timedelta(minutes=11))
    connector = pdd(sandbox, client_clock)
    with pytest.raises(Rejected, match="timestamp"):
        await connector.iter_listings().__anext__()


async def test_an_expired_token_is_refreshed_once_and_the_rotated_refresh_token_kept(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    connector = pdd(sandbox, clock)
    sandbox.expire_token()
    record = await connector.get_order(order_id)
    assert record.platform_order_id == order_id
    tokens = connector.shop.tokens
    assert isinstance(tokens, RefreshingTokens) and tokens.refreshes == 1
    assert tokens.current().refresh_token == "sandbox-refresh-token-2"
    assert tokens.current().access_token == "sandbox-access-token-2"
    assert len(sandbox.calls("pdd.pop.auth.token.refresh")) == 1
    # the old refresh token is gone: a second expiry uses the rotated one
    sandbox.expire_token()
    await connector.get_order(order_id)
    assert tokens.current().refresh_token == "sandbox-refresh-token-3"


async def test_a_dead_refresh_token_means_re_authorise(
        sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    connector = pdd(sandbox, clock, refresh_token="unknown-refresh")
    sandbox.expire_token()
    with pytest.raises(AuthExpired):
        await connector.iter_listings().__anext__()


# -- faults ------------------------------------------------------------------------------------
async def test_one_rate_limit_is_retried(sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    sandbox.faults.inject(Fault.RATE_LIMIT)
    record = await pdd(sandbox, clock).get_order(order_id)
    assert record.platform_order_id == order_id
    assert clock.slept  # it backed off before the retry


@pytest.mark.parametrize(("fault", "kind"), [
    (Fault.RATE_LIMIT, RateLimited), (Fault.SERVER_ERROR, Transient),
    (Fault.MALFORMED, BadResponse), (Fault.TIMEOUT, Transient),
])
async def test_persistent_faults_map_to_canonical_errors(
        sandbox: PinduoduoSandbox, clock: ManualClock, fault: Fault,
        kind: type[Exception]) -> None:
    (order_id,) = place(sandbox, clock, 1)
    sandbox.faults.inject(fault, times=10)
    with pytest.raises(kind):
        await pdd(sandbox, clock).get_order(order_id)


async def test_token_expiry_fault_refreshes(sandbox: PinduoduoSandbox,
                                            clock: ManualClock) -> None:
    (order_id,) = place(sandbox, clock, 1)
    sandbox.faults.inject(Fault.TOKEN_EXPIRED, api="pdd.order.information.get")
    connector = pdd(sandbox, clock)
    assert (await connector.get_order(order_id)).platform_order_id == order_id
    assert connector.shop.tokens.current().access_token == "sandbox-access-token-2"


def test_no_push_channel_is_modelled(sandbox: PinduoduoSandbox, clock: ManualClock) -> None:
    connector: Connector = pdd(sandbox, clock)
    with pytest.raises(NotImplementedError):
        connector.verify_push({}, b"{}")
