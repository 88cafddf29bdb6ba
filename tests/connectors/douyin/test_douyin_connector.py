"""The Douyin connector against its sandbox, in-process, on a ManualClock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from connectors.douyin.connector import DouyinConnector
from connectors.douyin.sandbox import DouyinSandbox
from core.clock import ManualClock
from core.errors import (
    BadResponse,
    NotFound,
    RateLimited,
    Rejected,
    SignatureInvalid,
    Transient,
)
from core.records import (
    DraftSku,
    LineStatus,
    ListingDraft,
    OrderStatus,
    PriceUpdate,
    PushKind,
    ShipRequest,
    StockUpdate,
)
from core.sandbox import Fault
from core.testing import connect


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> DouyinSandbox:
    sandbox = DouyinSandbox(clock=clock)
    sandbox.add_item("纯棉T恤", "TEE", 5900, skus=[("TEE-M", 50, 5900), ("TEE-L", 50, 6200),
                                                   ("TEE-XL", 50, 6200)])
    return sandbox


def make(sandbox: DouyinSandbox, clock: ManualClock, **kwargs: Any) -> DouyinConnector:
    connector = connect(DouyinConnector, sandbox, clock=clock, **kwargs)
    assert isinstance(connector, DouyinConnector)
    return connector


@pytest.fixture
def connector(sandbox: DouyinSandbox, clock: ManualClock) -> DouyinConnector:
    return make(sandbox, clock)


def sku_ids(sandbox: DouyinSandbox) -> dict[str, tuple[str, str]]:
    return {sku.outer_id: (item.item_id, sku.sku_id)
            for item in sandbox.items.values() for sku in item.skus}


# -- orders ------------------------------------------------------------------------------
async def test_paging_reaches_the_end_and_yields_each_order_once(
        sandbox: DouyinSandbox, clock: ManualClock, connector: DouyinConnector) -> None:
    start = clock.now()
    placed = []
    for _ in range(230):
        placed.append(sandbox.place_order([("TEE-M", 0)]).order_id)
        clock.advance(1)
    clock.advance(timedelta(minutes=10))
    seen = [o.platform_order_id async for o in connector.iter_orders(start, clock.now())]
    assert sorted(seen) == sorted(placed)
    pages = [int(json.loads(r.body)["page"])
             for r in sandbox.calls("order.searchList")]
    assert pages == [0, 2, 1, 0]  # total first, then backwards to the first page


async def test_an_order_modified_while_paging_costs_no_other_order(
        sandbox: DouyinSandbox, clock: ManualClock, connector: DouyinConnector) -> None:
    start = clock.now()
    placed = []
    for _ in range(250):
        placed.append(sandbox.place_order([("TEE-M", 0)]).order_id)
        clock.advance(1)
    end = clock.now()
    clock.advance(timedelta(minutes=10))
    stream = connector.iter_orders(start, end)
    seen = {(await anext(stream)).platform_order_id}
    sandbox.complete(placed[0])  # leaves the window: everything behind it moves up
    seen |= {o.platform_order_id async for o in stream}
    assert set(placed[1:]) <= seen


async def test_long_ranges_are_cut_into_windows(
        sandbox: DouyinSandbox, clock: ManualClock, connector: DouyinConnector) -> None:
    clock.advance(timedelta(days=2))
    end = clock.now()
    orders = [o async for o in connector.iter_orders(end - timedelta(days=1), end)]
    assert orders == []
    calls = sandbox.calls("order.searchList")
    assert len(calls) == timedelta(days=1) // connector.facts.order_window
    bounds = [json.loads(c.body) for c in calls]
    assert all(b["update_time_end"] - b["update_time_start"]
               <= connector.facts.order_window.total_seconds() for b in bounds)


async def test_platform_limits_are_enforced_and_not_retried(
        sandbox: DouyinSandbox, clock: ManualClock, connector: DouyinConnector) -> None:
    now = int(clock.now().timestamp())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"page": 0, "size": 101, "update_time_start": now}, "isv.parameter-invalid:20008"),
        ({"page": -1, "size": 10, "update_time_start": now}, "isv.parameter-invalid:10035"),
        ({"page": 0, "size": 10}, "isv.parameter-invalid:20011"),
        ({"page": 500, "size": 100, "update_time_start": now}, "isv.parameter-invalid:20013"),
        ({"page": 0, "size": 10, "create_time_start": now - 91 * 86400},
         "isv.parameter-invalid:20022"),
        ({"page": 0, "size": 10, "update_time_start": now,
          "combine_status": [{"order_status": "2"}, {"order_status": "3"}]},
         "isv.parameter-invalid:20012"),
    ]
    for params, sub_code in cases:
        before = len(sandbox.requests)
        with pytest.raises(Rejected) as caught:
            await connector.client.call("order.searchList", params)
        assert caught.value.code == "40004" and sub_code in str(caught.value)
        assert len(sandbox.requests) == before + 1


async def test_get_order_and_not_found(sandbox: DouyinSandbox,
                                       connector: DouyinConnector) -> None:
    order = sandbox.place_order([("TEE-M", 2), ("TEE-L", 1)], post_fee_fen=800)
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.PAID and record.platform_status == "2"
    assert record.paid_fen == 5900 * 2 + 6200 + 800 and record.post_fee_fen == 800
    assert [line.merchant_code for line in record.lines] == ["TEE-M", "TEE-L"]
    with pytest.raises(NotFound):
        await connector.get_order("6920000000000099999")


@pytest.mark.parametrize("action, status", [
    (lambda sb, oid: None, OrderStatus.PAID),
    (lambda sb, oid: sb.cancel(oid), OrderStatus.REFUNDED),
    (lambda sb, oid: sb.complete(oid), OrderStatus.COMPLETED),
])
async def test_lifecycle_states_render_to_canonical(sandbox: DouyinSandbox,
                                                    connector: DouyinConnector, action: Any,
                                                    status: OrderStatus) -> None:
    order = sandbox.place_order([("TEE-M", 1)])
    action(sandbox, order.order_id)
    assert (await connector.get_order(order.order_id)).status is status


async def test_unpaid_then_cancelled(sandbox: DouyinSandbox, connector: DouyinConnector) -> None:
    order = sandbox.place_order([("TEE-M", 1)], paid=False)
    assert (await connector.get_order(order.order_id)).status is OrderStatus.UNPAID
    sandbox.cancel(order.order_id)
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.CANCELLED
    assert record.lines[0].status is LineStatus.CANCELLED


# -- stock and listings -------------------------------------------------------------------
async def test_stock_is_absolute_and_idempotent(sandbox: DouyinSandbox,
                                                connector: DouyinConnector) -> None:
    ids = sku_ids(sandbox)
    updates = [StockUpdate(*ids["TEE-M"], 7), StockUpdate(*ids["TEE-L"], 0)]
    for _ in range(2):
        outcomes = await connector.set_stock(updates)
        assert all(o.error is None for o in outcomes)
        assert (sandbox.stock_of("TEE-M"), sandbox.stock_of("TEE-L")) == (7, 0)
    assert len(sandbox.calls("sku.syncStockBatch")) == 2
    await connector.set_stock([StockUpdate(*ids["TEE-XL"], 3)])
    assert sandbox.stock_of("TEE-XL") == 3 and len(sandbox.calls("sku.syncStock")) == 1


async def test_stock_batches_are_chunked(sandbox: DouyinSandbox, clock: ManualClock) -> None:
    connector = make(sandbox, clock, options={"douyin": {"stock_batch_max": 2}})
    ids = sku_ids(sandbox)
    await connector.set_stock([StockUpdate(*ids[c], 4) for c in ("TEE-M", "TEE-L", "TEE-XL")])
    assert len(sandbox.calls("sku.syncStockBatch")) + len(sandbox.calls("sku.syncStock")) == 2
    assert {sandbox.stock_of(c) for c in ("TEE-M", "TEE-L", "TEE-XL")} == {4}


async def test_sandbox_refuses_negative_stock_and_unknown_sku(
        sandbox: DouyinSandbox, connector: DouyinConnector) -> None:
    item_id, sku_id = sku_ids(sandbox)["TEE-M"]
    with pytest.raises(Rejected):
        await connector.client.call("sku.syncStock", {"product_id": int(item_id),
                                                      "sku_id": int(sku_id), "stock_num": -1})
    outcomes = await connector.set_stock([StockUpdate(item_id, "1693000000000099999", 5),
                                          StockUpdate(item_id, sku_id, 9)])
    assert all(isinstance(o.error, Rejected) for o in outcomes)  # all-or-nothing batch
    assert sandbox.stock_of("TEE-M") == 50


async def test_listings_price_and_shelving(sandbox: DouyinSandbox,
                                           connector: DouyinConnector) -> None:
    records = [r async for r in connector.iter_listings()]
    assert sorted(r.merchant_code for r in records) == ["TEE-L", "TEE-M", "TEE-XL"]
    item_id, sku_id = sku_ids(sandbox)["TEE-M"]
    [outcome] = await connector.set_price([PriceUpdate(item_id, sku_id, 4900)])
    assert outcome.error is None
    assert sandbox.items[item_id].skus[0].price_fen == 4900
    await connector.set_on_sale(item_id, False)
    assert not sandbox.items[item_id].on_sale
    assert not any(r.on_sale for r in [r async for r in connector.iter_listings()])


async def test_upsert_listing_creates_then_updates(sandbox: DouyinSandbox,
                                                   connector: DouyinConnector) -> None:
    draft = ListingDraft(merchant_code="HAT", title="渔夫帽", category_id="20012",
                         price_fen=3900, images=("https://img.example/hat.jpg",),
                         skus=(DraftSku("HAT-BLK", 3900, 10, {"颜色": "黑"}),
                               DraftSku("HAT-WHT", 3900, 5, {"颜色": "白"})))
    created = await connector.upsert_listing(draft)
    assert set(created.sku_ids) == {"HAT-BLK", "HAT-WHT"}
    assert sandbox.stock_of("HAT-WHT") == 5
    updated = await connector.upsert_listing(ListingDraft(
        merchant_code="HAT", title="渔夫帽 2026", category_id="20012", price_fen=4200,
        platform_item_id=created.platform_item_id,
        skus=(DraftSku("HAT-BLK", 4200, 8, {"颜色": "黑"}),)))
    assert updated.sku_ids["HAT-BLK"] == created.sku_ids["HAT-BLK"]
    assert sandbox.items[created.platform_item_id].title == "渔夫帽 2026"


# -- shipping ----------------------------------------------------------------------------
async def test_ship_then_ship_again_is_already_shipped(sandbox: DouyinSandbox,
                                                       connector: DouyinConnector) -> None:
    order = sandbox.place_order([("TEE-M", 1), ("TEE-L", 1)])
    await connector.ship(ShipRequest(order.order_id, "ZTO", "75312345678901"))
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.SHIPPED
    assert record.tracking_numbers == ("75312345678901",)
    assert sandbox.shipments_of(order.order_id)[0].carrier_code == "zhongtong"
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "ZTO", "75312345678902"))
    assert caught.value.reason == "already_shipped"


async def test_partial_shipment_by_sku_order(sandbox: DouyinSandbox,
                                             connector: DouyinConnector) -> None:
    order = sandbox.place_order([("TEE-M", 1), ("TEE-L", 2)])
    first, second = (line.line_id for line in order.lines)
    request = ShipRequest(order.order_id, "SF", "SF1234567890123", line_ids=(first,))
    await connector.ship(request)
    await connector.ship(request)  # same request_id: the platform answers the first result
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.PAID and record.platform_status == "101"
    assert [line.status for line in record.lines] == [LineStatus.SHIPPED, LineStatus.OPEN]
    assert len(sandbox.shipments_of(order.order_id)) == 1
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF1234567890124",
                                         line_ids=(first,)))
    assert caught.value.reason == "already_shipped"
    await connector.ship(ShipRequest(order.order_id, "YTO", "YT1234567890123",
                                     line_ids=(second,)))
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.SHIPPED
    assert record.tracking_numbers == ("SF1234567890123", "YT1234567890123")


async def test_ship_refusals(sandbox: DouyinSandbox, clock: ManualClock,
                             connector: DouyinConnector) -> None:
    first = sandbox.place_order([("TEE-M", 1)])
    second = sandbox.place_order([("TEE-L", 1)])
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(first.order_id, "UPS", "1Z0000000000000000"))
    assert caught.value.reason == "bad_carrier"
    renamed = make(sandbox, clock, options={"carriers": {"SF": "shunfeng-retired"}})
    with pytest.raises(Rejected) as caught:
        await renamed.ship(ShipRequest(first.order_id, "SF", "SF1234567890123"))
    assert caught.value.reason == "bad_carrier"
    await connector.ship(ShipRequest(first.order_id, "JT", "JT1234567890123"))
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(second.order_id, "JT", "JT1234567890123"))
    assert caught.value.reason == "foreign_waybill"
    assert sandbox.shipments_of(second.order_id) == []


# -- auth, signatures, faults ---------------------------------------------------------------
async def test_wrong_secret_is_refused_and_nothing_changes(sandbox: DouyinSandbox,
                                                           clock: ManualClock) -> None:
    connector = make(sandbox, clock, app_secret="not-the-secret")
    item_id, sku_id = sku_ids(sandbox)["TEE-M"]
    [outcome] = await connector.set_stock([StockUpdate(item_id, sku_id, 1)])
    assert isinstance(outcome.error, Rejected) and outcome.error.reason == "bad_signature"
    assert sandbox.stock_of("TEE-M") == 50
    assert len(sandbox.requests) == 1


async def test_clock_skew_is_refused(sandbox: DouyinSandbox) -> None:
    late = ManualClock(sandbox.clock.now() + timedelta(minutes=6))
    connector = connect(DouyinConnector, sandbox, clock=late)
    with pytest.raises(Rejected) as caught:
        await connector.get_order("1")
    assert caught.value.reason == "clock_skew"


async def test_expired_token_refreshes_once_and_keeps_the_rotated_refresh_token(
        sandbox: DouyinSandbox, connector: DouyinConnector) -> None:
    order = sandbox.place_order([("TEE-M", 1)])
    sandbox.expire_token()
    assert (await connector.get_order(order.order_id)).platform_order_id == order.order_id
    tokens = connector.shop.tokens
    assert tokens.refreshes == 1  # type: ignore[attr-defined]
    assert tokens.current().access_token == "sandbox-access-token-2"
    assert tokens.current().refresh_token == "sandbox-refresh-token-2"
    assert "sandbox-refresh-token-1" not in sandbox.refresh_tokens
    assert len(sandbox.calls("token.refresh")) == 1


async def test_token_expiry_fault(sandbox: DouyinSandbox, connector: DouyinConnector) -> None:
    sandbox.faults.inject(Fault.TOKEN_EXPIRED)
    records = [r async for r in connector.iter_listings()]
    assert records and connector.shop.tokens.refreshes == 1  # type: ignore[attr-defined]


async def test_a_used_refresh_token_cannot_refresh_again(sandbox: DouyinSandbox,
                                                         connector: DouyinConnector) -> None:
    stale = connector.shop.tokens.current()
    await connector.refresh_token(stale)
    from core.errors import AuthExpired

    with pytest.raises(AuthExpired):
        await connector.refresh_token(stale)


@pytest.mark.parametrize("fault, times, expected", [
    (Fault.RATE_LIMIT, 1, None),
    (Fault.RATE_LIMIT, 10, RateLimited),
    (Fault.SERVER_ERROR, 1, None),
    (Fault.SERVER_ERROR, 10, Transient),
    (Fault.MALFORMED, 1, BadResponse),
    (Fault.TIMEOUT, 1, None),
    (Fault.TIMEOUT, 10, Transient),
])
async def test_faults_map_to_canonical_errors(sandbox: DouyinSandbox,
                                              connector: DouyinConnector, fault: Fault,
                                              times: int, expected: type[Exception] | None) -> None:
    order = sandbox.place_order([("TEE-M", 1)])
    sandbox.faults.inject(fault, times, api="order.orderDetail")
    if expected is None:
        assert (await connector.get_order(order.order_id)).platform_order_id == order.order_id
    else:
        with pytest.raises(expected):
            await connector.get_order(order.order_id)


async def test_ship_timeout_after_apply_then_retry_reports_already_shipped(
        sandbox: DouyinSandbox, connector: DouyinConnector) -> None:
    order = sandbox.place_order([("TEE-M", 1)])
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, api="order.logisticsAdd")
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "YUNDA", "3112345678901"))
    assert caught.value.reason == "already_shipped"
    assert len(sandbox.shipments_of(order.order_id)) == 1


# -- pushes ------------------------------------------------------------------------------
async def test_pushes_verify_and_tampering_is_refused(sandbox: DouyinSandbox,
                                                      connector: DouyinConnector) -> None:
    order = sandbox.place_order([("TEE-M", 1)], paid=False)
    sandbox.pay(order.order_id)
    await connector.ship(ShipRequest(order.order_id, "STO", "773123456789012"))
    sandbox.refund_after_shipping(order.order_id)
    topics = []
    for delivery in sandbox.pushes:
        events = connector.verify_push(delivery.headers, delivery.body)
        assert [e.platform_order_id for e in events] == [order.order_id]
        topics.append((events[0].topic, events[0].kind))
    assert topics == [("100", PushKind.ORDER), ("101", PushKind.ORDER),
                      ("102", PushKind.ORDER), ("206", PushKind.REFUND)]
    delivery = sandbox.pushes[0]
    with pytest.raises(SignatureInvalid):
        connector.verify_push(delivery.headers, delivery.body.replace(b"100", b"106"))
    with pytest.raises(SignatureInvalid):
        connector.verify_push({**delivery.headers, "event-sign": "0" * 32}, delivery.body)
    ack = connector.push_ack([])
    assert (ack.status, ack.body) == (200, b'{"code":0,"msg":"success"}')
