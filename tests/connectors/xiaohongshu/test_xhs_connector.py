"""The Xiaohongshu connector against its sandbox, in-process, on a manual clock."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.xiaohongshu.client import push_sign
from connectors.xiaohongshu.connector import XiaohongshuConnector
from connectors.xiaohongshu.sandbox import XhsSandbox
from core.clock import ManualClock
from core.errors import BadResponse, RateLimited, Rejected, SignatureInvalid, Transient
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
from core.tokens import RefreshingTokens

PUSH_URL = "/hooks/xhs?shop=test-shop"
FIXTURES = Path(__file__).parents[3] / "connectors" / "xiaohongshu" / "fixtures"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> XhsSandbox:
    sb = XhsSandbox(clock=clock, push_url=PUSH_URL)
    sb.add_item("羊毛围巾", "SCARF", 13900, skus=[("SCARF-OAT", 10, 13900),
                                                 ("SCARF-GREY", 5, 13900)])
    return sb


def make(sandbox: XhsSandbox, clock: ManualClock, **kw: Any) -> XiaohongshuConnector:
    options = {"push_url": PUSH_URL, "xhs_shipping_template_id": "tpl-1",
               "xhs_logistics_plan_id": "plan-1", **kw.pop("options", {})}
    connector = connect(XiaohongshuConnector, sandbox, clock=clock, options=options, **kw)
    assert isinstance(connector, XiaohongshuConnector)
    return connector


@pytest.fixture
def connector(sandbox: XhsSandbox, clock: ManualClock) -> XiaohongshuConnector:
    return make(sandbox, clock)


def sku_id(sandbox: XhsSandbox, code: str) -> str:
    _, sku = sandbox.find_sku(code)
    assert sku is not None
    return sku.sku_id


async def raw(connector: XiaohongshuConnector, method: str, **params: Any) -> Any:
    return await connector.client.call(method, params)


# -- orders ------------------------------------------------------------------------------
async def test_paging_reaches_the_end_backwards_and_yields_each_order_once(
        connector: XiaohongshuConnector, sandbox: XhsSandbox, clock: ManualClock) -> None:
    start = clock.now()
    sandbox.add_item("发圈", "TIE", 900, skus=[("TIE-1", 1000, 900)])
    placed = []
    for _ in range(230):
        placed.append(sandbox.place_order([("TIE-1", 1)]).order_id)
        clock.advance(1)
    got = [o.platform_order_id async for o in connector.iter_orders(start, clock.now())]
    assert sorted(got) == sorted(placed) and len(got) == len(set(got))
    pages = [json.loads(r.body)["pageNo"] for r in sandbox.calls("order.getOrderList")]
    assert pages == [1, 3, 2, 1]  # learn maxPageNo, then last page first


async def test_window_limits(connector: XiaohongshuConnector, sandbox: XhsSandbox,
                             clock: ManualClock) -> None:
    start = clock.now()
    order = sandbox.place_order([("SCARF-OAT", 1)])
    clock.advance(timedelta(hours=2))
    got = [o async for o in connector.iter_orders(start, clock.now())]
    assert [o.platform_order_id for o in got] == [order.order_id]
    for request in sandbox.calls("order.getOrderList"):
        body = json.loads(request.body)
        assert body["endTime"] - body["startTime"] <= 1800 and body["timeType"] == 2
    now = int(clock.now().timestamp())
    with pytest.raises(Rejected, match="时间范围"):
        await raw(connector, "order.getOrderList", startTime=now - 1801, endTime=now, timeType=2)
    assert await raw(connector, "order.getOrderList", startTime=now - 86400, endTime=now,
                     timeType=1)
    with pytest.raises(Rejected):
        await raw(connector, "order.getOrderList", startTime=now - 60, endTime=now, timeType=2,
                  pageSize=101)


async def test_order_maps_statuses_through_the_lifecycle(
        connector: XiaohongshuConnector, sandbox: XhsSandbox) -> None:
    unpaid = sandbox.place_order([("SCARF-OAT", 1)], paid=False)
    assert (await connector.get_order(unpaid.order_id)).status is OrderStatus.UNPAID
    sandbox.pay(unpaid.order_id)
    assert (await connector.get_order(unpaid.order_id)).status is OrderStatus.PAID
    sandbox.cancel(unpaid.order_id)
    refunded = await connector.get_order(unpaid.order_id)
    assert refunded.status is OrderStatus.REFUNDED
    assert refunded.lines[0].status is LineStatus.REFUNDED
    other = sandbox.place_order([("SCARF-GREY", 1)], paid=False)
    sandbox.cancel(other.order_id)
    assert (await connector.get_order(other.order_id)).status is OrderStatus.CANCELLED


# -- listings and stock ----------------------------------------------------------------------
async def test_listings_and_absolute_idempotent_stock(
        connector: XiaohongshuConnector, sandbox: XhsSandbox) -> None:
    listings = [x async for x in connector.iter_listings()]
    assert {(x.merchant_code, x.quantity) for x in listings} == {("SCARF-OAT", 10),
                                                                ("SCARF-GREY", 5)}
    oat = next(x for x in listings if x.merchant_code == "SCARF-OAT")
    update = StockUpdate(oat.platform_item_id, oat.platform_sku_id, 7)
    for _ in range(2):
        [outcome] = await connector.set_stock([update])
        assert outcome.error is None and sandbox.stock_of("SCARF-OAT") == 7
    with pytest.raises(Rejected, match="负数"):
        await raw(connector, "inventory.syncSkuStock", skuId=oat.platform_sku_id, qty=-1)
    assert sandbox.stock_of("SCARF-OAT") == 7


async def test_stock_is_a_total_that_keeps_unpaid_holds(
        connector: XiaohongshuConnector, sandbox: XhsSandbox) -> None:
    sandbox.place_order([("SCARF-OAT", 3)], paid=False)
    sku = sku_id(sandbox, "SCARF-OAT")
    await connector.set_stock([StockUpdate("i", sku, 10)])
    assert sandbox.stock_of("SCARF-OAT") == 7  # 3 stay held by the unpaid order


async def test_unknown_sku_is_a_per_sku_outcome(connector: XiaohongshuConnector) -> None:
    [outcome] = await connector.set_stock([StockUpdate("i", "ffff", 1)])
    assert outcome.error is not None


async def test_price_shelve_and_upsert(connector: XiaohongshuConnector,
                                       sandbox: XhsSandbox) -> None:
    item, sku = sandbox.find_sku("SCARF-OAT")
    assert sku is not None
    [outcome] = await connector.set_price([PriceUpdate(item.item_id, sku.sku_id, 12900)])
    assert outcome.error is None and sku.price_fen == 12900
    await connector.set_on_sale(item.item_id, False)
    assert not item.on_sale
    assert not any([x.on_sale async for x in connector.iter_listings()])
    await connector.set_on_sale(item.item_id, True)
    assert item.on_sale

    draft = ListingDraft("MUG", "陶瓷杯", "cat-9", 3900, images=("https://img/1.jpg",),
                         skus=(DraftSku("MUG-W", 3900, 8, {"颜色": "白"}),))
    created = await connector.upsert_listing(draft)
    assert sandbox.stock_of("MUG-W") == 8 and set(created.sku_ids) == {"MUG-W"}
    again = ListingDraft("MUG", "陶瓷杯 大号", "cat-9", 3900, platform_item_id=created.platform_item_id,
                         skus=(DraftSku("MUG-W", 4200, 8), DraftSku("MUG-B", 4200, 2)))
    updated = await connector.upsert_listing(again)
    assert updated.sku_ids["MUG-W"] == created.sku_ids["MUG-W"]
    assert sandbox.items[created.platform_item_id].title == "陶瓷杯 大号"
    assert sandbox.stock_of("MUG-B") == 2


async def test_upsert_without_shop_settings_is_rejected(sandbox: XhsSandbox,
                                                        clock: ManualClock) -> None:
    connector = connect(XiaohongshuConnector, sandbox, clock=clock)
    draft = ListingDraft("MUG", "陶瓷杯", "cat-9", 3900, skus=(DraftSku("MUG-W", 3900, 1),))
    with pytest.raises(Rejected) as caught:
        await connector.upsert_listing(draft)
    assert caught.value.reason == "missing_setting"


# -- shipping --------------------------------------------------------------------------------
async def test_ship_then_ship_again_is_already_shipped(
        connector: XiaohongshuConnector, sandbox: XhsSandbox) -> None:
    order = sandbox.place_order([("SCARF-OAT", 1)])
    await connector.ship(ShipRequest(order.order_id, "ZTO", "73100000000001"))
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.SHIPPED and record.tracking_numbers == ("73100000000001",)
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "ZTO", "73100000000001"))
    assert caught.value.reason == "already_shipped"


async def test_partial_shipment(connector: XiaohongshuConnector, sandbox: XhsSandbox) -> None:
    order = sandbox.place_order([("SCARF-OAT", 1), ("SCARF-GREY", 1)])
    oat, grey = sku_id(sandbox, "SCARF-OAT"), sku_id(sandbox, "SCARF-GREY")
    await connector.ship(ShipRequest(order.order_id, "SF", "SF100000000001", (oat,)))
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.PAID and record.platform_status == "5"
    assert {line.platform_line_id: line.status for line in record.lines} == {
        oat: LineStatus.SHIPPED, grey: LineStatus.OPEN}
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF100000000002", (oat,)))
    assert caught.value.reason == "already_shipped"
    await connector.ship(ShipRequest(order.order_id, "SF", "SF100000000003", (grey,)))
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.SHIPPED
    assert set(record.tracking_numbers) == {"SF100000000001", "SF100000000003"}


async def test_unknown_carrier_code_is_refused(sandbox: XhsSandbox, clock: ManualClock) -> None:
    connector = make(sandbox, clock, options={"carriers": {"SF": "sfexpress-typo"}})
    order = sandbox.place_order([("SCARF-OAT", 1)])
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF100000000001"))
    assert caught.value.reason == "bad_carrier" and order.state == "paid"


# -- credentials and tokens ------------------------------------------------------------------
async def test_wrong_secret_is_refused_and_nothing_changes(sandbox: XhsSandbox,
                                                           clock: ManualClock) -> None:
    connector = make(sandbox, clock, app_secret="not-the-secret")
    [outcome] = await connector.set_stock([StockUpdate("i", sku_id(sandbox, "SCARF-OAT"), 1)])
    assert isinstance(outcome.error, Rejected) and outcome.error.reason == "bad_signature"
    order = sandbox.place_order([("SCARF-OAT", 1)])
    with pytest.raises(Rejected):
        await connector.ship(ShipRequest(order.order_id, "SF", "SF100000000001"))
    assert sandbox.stock_of("SCARF-OAT") == 9 and not order.shipments


async def test_stale_timestamp_is_refused(connector: XiaohongshuConnector, sandbox: XhsSandbox,
                                          clock: ManualClock) -> None:
    sandbox.clock = ManualClock(clock.now() + timedelta(hours=1))
    with pytest.raises(Rejected, match="timestamp"):
        await connector.get_order("P1")


async def test_expired_token_refreshes_once_and_keeps_the_rotated_refresh_token(
        connector: XiaohongshuConnector, sandbox: XhsSandbox) -> None:
    sandbox.expire_token()
    listings = [x async for x in connector.iter_listings()]
    assert len(listings) == 2
    tokens = connector.shop.tokens
    assert isinstance(tokens, RefreshingTokens) and tokens.refreshes == 1
    assert tokens.current().refresh_token == "sandbox-refresh-token-2"
    assert tokens.current().expires_at is not None
    assert len(sandbox.calls("oauth.refreshToken")) == 1


async def test_token_lifetime_and_refresh_rules(connector: XiaohongshuConnector,
                                                sandbox: XhsSandbox, clock: ManualClock) -> None:
    current = connector.shop.tokens.current()
    same = await connector.refresh_token(current)  # > 30 min left: the same tokens
    assert (same.access_token, same.refresh_token) == (current.access_token, current.refresh_token)
    clock.advance(timedelta(days=7) - timedelta(minutes=10))
    fresh = await connector.refresh_token(current)
    assert fresh.refresh_token != current.refresh_token
    assert sandbox.token_valid(current.access_token)  # old token: five more minutes
    clock.advance(timedelta(minutes=6))
    assert not sandbox.token_valid(current.access_token) and sandbox.token_valid(fresh.access_token)


# -- faults ------------------------------------------------------------------------------------
async def test_rate_limit_succeeds_on_retry(connector: XiaohongshuConnector,
                                            sandbox: XhsSandbox) -> None:
    sandbox.faults.inject(Fault.RATE_LIMIT, 1)
    assert len([x async for x in connector.iter_listings()]) == 2


@pytest.mark.parametrize(("fault", "error"), [
    (Fault.RATE_LIMIT, RateLimited), (Fault.SERVER_ERROR, Transient),
    (Fault.MALFORMED, BadResponse), (Fault.TIMEOUT, Transient),
])
async def test_fault_switches_map_to_canonical_errors(
        connector: XiaohongshuConnector, sandbox: XhsSandbox, fault: Fault,
        error: type[Exception]) -> None:
    sandbox.faults.inject(fault, 10)
    with pytest.raises(error):
        await connector.get_order("P1")


async def test_timeout_after_apply_then_retry_reports_already_shipped(
        connector: XiaohongshuConnector, sandbox: XhsSandbox) -> None:
    order = sandbox.place_order([("SCARF-OAT", 1)])
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, 1, api="order.orderDeliver")
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF100000000001"))
    assert caught.value.reason == "already_shipped" and len(order.shipments) == 1


# -- pushes ------------------------------------------------------------------------------------
async def test_push_verification(connector: XiaohongshuConnector, sandbox: XhsSandbox,
                                 clock: ManualClock) -> None:
    order = sandbox.place_order([("SCARF-OAT", 1)])
    delivery = sandbox.pushes[-1]
    [event] = connector.verify_push(delivery.headers, delivery.body)
    assert event.kind is PushKind.ORDER and event.platform_order_id == order.order_id
    assert event.occurred_at is not None and event.occurred_at.utcoffset() is not None
    ack = connector.push_ack([event])
    assert ack.status == 200 and json.loads(ack.body) == {"success": True, "error_code": 0,
                                                          "error_msg": ""}
    for name, value in (("sign", "0" * 32), ("timestamp", "1"), ("app-key", "someone-else")):
        with pytest.raises(SignatureInvalid):
            connector.verify_push({**delivery.headers, name: value}, delivery.body)
    with pytest.raises(SignatureInvalid):
        connector.verify_push({"content-type": "application/json"}, delivery.body)
    # the sign covers the configured callback URL, including its own query
    other = make(sandbox, clock, options={"push_url": "/hooks/xhs?shop=other"})
    with pytest.raises(SignatureInvalid):
        other.verify_push(delivery.headers, delivery.body)


def test_push_body_parsing(connector: XiaohongshuConnector, sandbox: XhsSandbox) -> None:
    body = (FIXTURES / "push_fulfillment_status_change.json").read_bytes()
    headers = {"app-key": sandbox.app_key, "timestamp": "1762830001",
               "sign": push_sign("/hooks/xhs", {"shop": "test-shop"}, sandbox.app_key,
                                 "1762830001", sandbox.app_secret)}
    order_event, refund_event = connector.verify_push(headers, body)
    assert (order_event.kind, order_event.platform_order_id) == (PushKind.ORDER,
                                                                 "P768201234567890003")
    assert (refund_event.kind, refund_event.platform_order_id) == (PushKind.REFUND,
                                                                   "P768201234567890004")
    assert order_event.event_id != refund_event.event_id
    assert connector.verify_push(headers, b'{"test":true}') == []
    with pytest.raises(BadResponse):
        connector.verify_push(headers, b"[{]")
