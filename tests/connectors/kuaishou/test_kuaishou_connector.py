"""The Kuaishou connector against its sandbox, in-process, on a ManualClock."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from connectors.kuaishou.client import encrypt_push
from connectors.kuaishou.connector import KuaishouConnector
from connectors.kuaishou.sandbox import DEFAULT_MSG_SECRET, DEFAULT_SIGN_SECRET, KuaishouSandbox
from core.clock import ManualClock
from core.errors import (
    AuthExpired,
    BadResponse,
    NotFound,
    RateLimited,
    Rejected,
    SignatureInvalid,
    Transient,
)
from core.records import (
    LineStatus,
    OrderStatus,
    PriceUpdate,
    PushKind,
    ShipRequest,
    StockUpdate,
)
from core.sandbox import Fault
from core.testing import connect

SECRETS = {"sign_secret": DEFAULT_SIGN_SECRET, "msg_secret": DEFAULT_MSG_SECRET}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> KuaishouSandbox:
    sandbox = KuaishouSandbox(clock=clock)
    sandbox.add_item("加绒卫衣", "HOOD", 12900, skus=[("HOOD-L", 10, 12900),
                                                     ("HOOD-XL", 10, 13900)])
    return sandbox


def make(sandbox: KuaishouSandbox, clock: ManualClock, **kwargs: Any) -> KuaishouConnector:
    kwargs.setdefault("extra_secrets", SECRETS)
    connector = connect(KuaishouConnector, sandbox, clock=clock, **kwargs)
    assert isinstance(connector, KuaishouConnector)
    return connector


@pytest.fixture
def connector(sandbox: KuaishouSandbox, clock: ManualClock) -> KuaishouConnector:
    return make(sandbox, clock)


def stock_update(sandbox: KuaishouSandbox, code: str, quantity: int) -> StockUpdate:
    item, sku = sandbox.find_sku(code)
    assert sku is not None
    return StockUpdate(item.item_id, sku.sku_id, quantity)


class Yielding(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return await self.inner.handle_async_request(request)


def business(request: Any) -> dict[str, Any]:
    params = dict(request.query) or dict(parse_qsl(request.body.decode()))
    return dict(json.loads(params["param"]))


# -- orders ------------------------------------------------------------------------------
async def test_cursor_paging_reaches_nomore_and_yields_each_order_once(
        sandbox: KuaishouSandbox, clock: ManualClock, connector: KuaishouConnector) -> None:
    start = clock.now()
    placed = []
    for _ in range(120):
        placed.append(sandbox.place_order([("HOOD-L", 0)]).order_id)
        clock.advance(1)
    clock.advance(timedelta(minutes=5))
    seen = [o.platform_order_id async for o in connector.iter_orders(start, clock.now())]
    assert sorted(seen) == sorted(placed)
    cursors = [business(r)["cursor"] for r in sandbox.calls("open.order.cursor.list")]
    assert len(cursors) == 3 and cursors[0] == ""
    assert all(business(r)["pageSize"] == 50 and business(r)["queryType"] == 2
               for r in sandbox.calls("open.order.cursor.list"))


async def test_ranges_are_cut_into_seven_day_windows(
        sandbox: KuaishouSandbox, clock: ManualClock, connector: KuaishouConnector) -> None:
    clock.advance(timedelta(days=30))
    end = clock.now()
    assert [o async for o in connector.iter_orders(end - timedelta(days=20), end)] == []
    spans = [business(r)["endTime"] - business(r)["beginTime"]
             for r in sandbox.calls("open.order.cursor.list")]
    assert len(spans) == 3 and max(spans) <= 7 * 86_400_000


async def test_platform_limits_are_enforced_and_not_retried(
        sandbox: KuaishouSandbox, clock: ManualClock, connector: KuaishouConnector) -> None:
    now = int(clock.now().timestamp() * 1000)
    day = 86_400_000
    base = {"orderViewStatus": 1, "pageSize": 50, "queryType": 2, "cursor": "",
            "beginTime": now - day, "endTime": now}
    for change in ({"pageSize": 51}, {"beginTime": now - 8 * day},
                   {"beginTime": now - 91 * day, "endTime": now - 90 * day},
                   {"beginTime": now, "endTime": now - day}):
        before = len(sandbox.requests)
        with pytest.raises(Rejected):
            await connector.client.call("open.order.cursor.list", {**base, **change})
        assert len(sandbox.requests) == before + 1


async def test_get_order_statuses_and_not_found(sandbox: KuaishouSandbox,
                                                connector: KuaishouConnector) -> None:
    paid, unpaid, cancelled, refunded, completed = (
        sandbox.place_order([("HOOD-L", 1)], paid=p, post_fee_fen=600)
        for p in (True, False, False, True, True))
    sandbox.cancel(cancelled.order_id)
    sandbox.cancel(refunded.order_id)
    sandbox.complete(completed.order_id)
    expected = [(paid, OrderStatus.PAID), (unpaid, OrderStatus.UNPAID),
                (cancelled, OrderStatus.CANCELLED), (refunded, OrderStatus.REFUNDED),
                (completed, OrderStatus.COMPLETED)]
    for order, status in expected:
        record = await connector.get_order(order.order_id)
        assert record.status is status, order.state
    record = await connector.get_order(paid.order_id)
    assert (record.paid_fen, record.post_fee_fen, record.total_fen) == (13500, 600, 12900)
    with pytest.raises(NotFound):
        await connector.get_order("2418000000999999")


def test_orders_hold_one_sku_line(sandbox: KuaishouSandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.place_order([("HOOD-L", 1), ("HOOD-XL", 1)])
    assert len([sandbox.place_order([line]) for line in [("HOOD-L", 1), ("HOOD-XL", 1)]]) == 2


# -- stock ---------------------------------------------------------------------------------
async def test_absolute_stock_through_deltas_is_idempotent(
        sandbox: KuaishouSandbox, connector: KuaishouConnector) -> None:
    updates = [stock_update(sandbox, "HOOD-L", 25), stock_update(sandbox, "HOOD-XL", 0)]
    for _ in range(2):
        outcomes = await connector.set_stock(updates)
        assert all(o.error is None for o in outcomes)
        assert (sandbox.stock_of("HOOD-L"), sandbox.stock_of("HOOD-XL")) == (25, 0)
    writes = [business(r) for r in sandbox.calls("open.item.sku.stock.update")]
    assert [(w["skuChangeStock"], w["changeType"]) for w in writes] == [(15, 1), (10, 2)]


async def test_a_delta_whose_answer_was_lost_is_not_applied_twice(
        sandbox: KuaishouSandbox, connector: KuaishouConnector) -> None:
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, api="open.item.sku.stock.update")
    [outcome] = await connector.set_stock([stock_update(sandbox, "HOOD-L", 4)])
    assert outcome.error is None
    assert sandbox.stock_of("HOOD-L") == 4
    assert len(sandbox.calls("open.item.sku.stock.update")) == 1


async def test_a_throttled_delta_is_decided_again(sandbox: KuaishouSandbox,
                                                  connector: KuaishouConnector) -> None:
    sandbox.faults.inject(Fault.RATE_LIMIT, api="open.item.sku.stock.update")
    sandbox.faults.inject(Fault.SERVER_ERROR, api="open.item.sku.stock.update")
    [outcome] = await connector.set_stock([stock_update(sandbox, "HOOD-L", 13)])
    assert outcome.error is None and sandbox.stock_of("HOOD-L") == 13
    sandbox.faults.inject(Fault.SERVER_ERROR, times=5, api="open.item.sku.stock.update")
    [outcome] = await connector.set_stock([stock_update(sandbox, "HOOD-L", 1)])
    assert isinstance(outcome.error, Transient) and sandbox.stock_of("HOOD-L") == 13


async def test_concurrent_writers_of_one_sku_do_not_double_the_delta(
        sandbox: KuaishouSandbox, clock: ManualClock, connector: KuaishouConnector) -> None:
    other = make(sandbox, clock)
    for writer in (connector, other):  # let the two writers interleave at every request
        writer.http.client = httpx.AsyncClient(transport=Yielding(sandbox.transport()))
    update = stock_update(sandbox, "HOOD-L", 5)
    await asyncio.gather(connector.set_stock([update]), other.set_stock([update]))
    assert sandbox.stock_of("HOOD-L") == 5


async def test_a_sale_between_read_and_write_heals_on_the_next_publish(
        sandbox: KuaishouSandbox, connector: KuaishouConnector) -> None:
    await connector.set_stock([stock_update(sandbox, "HOOD-L", 8)])
    sandbox.place_order([("HOOD-L", 1)])  # the platform deducts its own listed stock
    assert sandbox.stock_of("HOOD-L") == 7
    await connector.set_stock([stock_update(sandbox, "HOOD-L", 7)])  # core learnt the sale
    assert len(sandbox.calls("open.item.sku.stock.update")) == 1


async def test_sandbox_refuses_bad_deltas(sandbox: KuaishouSandbox,
                                          connector: KuaishouConnector) -> None:
    update = stock_update(sandbox, "HOOD-L", 0)
    base = {"kwaiItemId": int(update.platform_item_id), "skuId": int(update.platform_sku_id)}
    for change in ({"skuChangeStock": 0, "changeType": 1}, {"skuChangeStock": 1, "changeType": 3},
                   {"skuChangeStock": 11, "changeType": 2},
                   {"skuChangeStock": 9_999_999, "changeType": 1}):
        with pytest.raises(Rejected):
            await connector.client.call("open.item.sku.stock.update", {**base, **change})
    assert sandbox.stock_of("HOOD-L") == 10
    [outcome] = await connector.set_stock([StockUpdate(update.platform_item_id, "1", 3)])
    assert isinstance(outcome.error, NotFound)


async def test_listings_price_and_shelving(sandbox: KuaishouSandbox,
                                           connector: KuaishouConnector) -> None:
    records = [r async for r in connector.iter_listings()]
    assert [(r.merchant_code, r.quantity, r.price_fen) for r in records] == [
        ("HOOD-L", 10, 12900), ("HOOD-XL", 10, 13900)]
    update = stock_update(sandbox, "HOOD-XL", 0)
    [outcome] = await connector.set_price([PriceUpdate(update.platform_item_id,
                                                       update.platform_sku_id, 9900)])
    assert outcome.error is None and sandbox.find_sku("HOOD-XL")[1].price_fen == 9900  # type: ignore[union-attr]
    await connector.set_on_sale(update.platform_item_id, False)
    assert not any(r.on_sale for r in [r async for r in connector.iter_listings()])


# -- shipping ----------------------------------------------------------------------------
async def test_ship_again_same_waybill_is_idempotent_another_is_already_shipped(
        sandbox: KuaishouSandbox, connector: KuaishouConnector) -> None:
    order = sandbox.place_order([("HOOD-L", 1)])
    request = ShipRequest(order.order_id, "SF", "SF1400123456789")
    await connector.ship(request)
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.SHIPPED and record.tracking_numbers == ("SF1400123456789",)
    assert record.lines[0].status is LineStatus.SHIPPED
    assert business(sandbox.calls("open.seller.order.goods.deliver")[-1])["expressCode"] == 4
    await connector.ship(request)
    assert len(sandbox.shipments_of(order.order_id)) == 1
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF1400123456790"))
    assert caught.value.reason == "already_shipped"


async def test_ship_refusals(sandbox: KuaishouSandbox, clock: ManualClock,
                             connector: KuaishouConnector) -> None:
    first, second = (sandbox.place_order([line]) for line in [("HOOD-L", 1), ("HOOD-XL", 1)])
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(first.order_id, "DHL", "1234567890"))
    assert caught.value.reason == "bad_carrier"
    retired = make(sandbox, clock, options={"carriers": {"SF": "9998"}})
    with pytest.raises(Rejected) as caught:
        await retired.ship(ShipRequest(first.order_id, "SF", "SF1400123456789"))
    assert caught.value.reason == "bad_carrier"
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(first.order_id, "ZTO", "75312345678901",
                                         line_ids=(second.lines[0].line_id,)))
    assert caught.value.reason == "partial_ship_unsupported"
    await connector.ship(ShipRequest(first.order_id, "ZTO", "75312345678901",
                                     line_ids=(first.lines[0].line_id,)))
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(second.order_id, "ZTO", "75312345678901"))
    assert caught.value.reason == "foreign_waybill"
    unpaid = sandbox.place_order([("HOOD-L", 1)], paid=False)
    with pytest.raises(Rejected):
        await connector.ship(ShipRequest(unpaid.order_id, "ZTO", "75312345678902"))
    assert sandbox.shipments_of(second.order_id) == sandbox.shipments_of(unpaid.order_id) == []


# -- auth, signatures, faults ---------------------------------------------------------------
async def test_wrong_sign_secret_is_refused_and_nothing_changes(
        sandbox: KuaishouSandbox, clock: ManualClock) -> None:
    connector = make(sandbox, clock, extra_secrets={**SECRETS, "sign_secret": "not-it-0001"})
    [outcome] = await connector.set_stock([stock_update(sandbox, "HOOD-L", 1)])
    assert isinstance(outcome.error, Rejected) and outcome.error.reason == "bad_signature"
    assert sandbox.stock_of("HOOD-L") == 10 and len(sandbox.requests) == 1


async def test_clock_skew_is_refused(sandbox: KuaishouSandbox) -> None:
    late = ManualClock(sandbox.clock.now() - timedelta(minutes=11))
    connector = connect(KuaishouConnector, sandbox, clock=late, extra_secrets=SECRETS)
    with pytest.raises(Rejected):
        await connector.get_order("1")


async def test_expired_token_refreshes_once_and_keeps_the_rotated_refresh_token(
        sandbox: KuaishouSandbox, connector: KuaishouConnector) -> None:
    order = sandbox.place_order([("HOOD-L", 1)])
    sandbox.expire_token()
    assert (await connector.get_order(order.order_id)).platform_order_id == order.order_id
    tokens = connector.shop.tokens
    assert tokens.refreshes == 1  # type: ignore[attr-defined]
    assert (tokens.current().access_token, tokens.current().refresh_token) == (
        "sandbox-access-token-2", "sandbox-refresh-token-2")
    assert len(sandbox.calls("oauth2.refresh_token")) == 1
    sandbox.expire_token()  # the delta write refreshes too, and writes exactly once
    [outcome] = await connector.set_stock([stock_update(sandbox, "HOOD-L", 3)])
    assert outcome.error is None and sandbox.stock_of("HOOD-L") == 3


async def test_a_discarded_refresh_token_means_reauthorise(
        sandbox: KuaishouSandbox, connector: KuaishouConnector) -> None:
    stale = connector.shop.tokens.current()
    fresh = await connector.refresh_token(stale)
    assert fresh.refresh_token == "sandbox-refresh-token-2" and fresh.refresh_expires_at
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
async def test_faults_map_to_canonical_errors(sandbox: KuaishouSandbox,
                                              connector: KuaishouConnector, fault: Fault,
                                              times: int, expected: type[Exception] | None) -> None:
    order = sandbox.place_order([("HOOD-L", 1)])
    sandbox.faults.inject(fault, times, api="open.order.detail")
    if expected is None:
        assert (await connector.get_order(order.order_id)).platform_order_id == order.order_id
    else:
        with pytest.raises(expected):
            await connector.get_order(order.order_id)


# -- pushes ------------------------------------------------------------------------------
async def test_pushes_decrypt_and_tampering_is_refused(
        sandbox: KuaishouSandbox, clock: ManualClock, connector: KuaishouConnector) -> None:
    order = sandbox.place_order([("HOOD-L", 1)], paid=False)
    sandbox.pay(order.order_id)
    await connector.ship(ShipRequest(order.order_id, "YTO", "YT1234567890123"))
    sandbox.refund_after_shipping(order.order_id)
    seen = []
    for delivery in sandbox.pushes:
        assert delivery.headers["content-type"].startswith("text/plain")
        [event] = connector.verify_push(delivery.headers, delivery.body)
        assert event.platform_order_id == order.order_id
        seen.append((event.topic, event.kind))
    assert seen == [("kwaishop_order_addOrder", PushKind.ORDER),
                    ("kwaishop_order_paySuccess", PushKind.ORDER),
                    ("kwaishop_order_delivering", PushKind.ORDER),
                    ("kwaishop_aftersales_updateRefund", PushKind.REFUND)]
    body = sandbox.pushes[1].body
    tampered = body[:10] + (b"A" if body[10:11] != b"A" else b"B") + body[11:]
    with pytest.raises(SignatureInvalid):
        connector.verify_push({}, tampered)
    with pytest.raises(SignatureInvalid):
        connector.verify_push({}, b"not base64 at all!")
    other_secret = make(sandbox, clock, extra_secrets={**SECRETS,
                                                       "msg_secret": "YW5vdGhlci1rZXktMDAxNg=="})
    with pytest.raises(SignatureInvalid):
        other_secret.verify_push({}, body)
    foreign = encrypt_push(DEFAULT_MSG_SECRET, json.dumps(
        {"eventId": "e1", "appKey": "ks-someone-else", "event": "kwaishop_order_paySuccess",
         "bizId": 1, "info": "{}"}).encode())
    with pytest.raises(SignatureInvalid):
        connector.verify_push({}, foreign)
    [beat] = connector.verify_push({}, sandbox.heartbeat().body)
    assert beat.topic == "test"
    ack = connector.push_ack([beat])
    assert (ack.status, json.loads(ack.body)) == (200, {"result": 1})
