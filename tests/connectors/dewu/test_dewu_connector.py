"""The Dewu connector against its sandbox, in-process, on a manual clock."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from connectors.dewu.client import DewuApiSpec
from connectors.dewu.connector import DewuConnector
from connectors.dewu.sandbox import DewuSandbox
from core.clock import ManualClock, format_beijing
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
    DraftSku,
    LineStatus,
    ListingDraft,
    OrderStatus,
    PriceUpdate,
    PushKind,
    ShipRequest,
    StockUpdate,
)
from core.sandbox import Fault, SoldOut
from core.testing import connect
from core.tokens import RefreshingTokens

SPEC = DewuApiSpec()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> DewuSandbox:
    sb = DewuSandbox(clock=clock)
    sb.add_item("Air Jordan 1 Low", "DC0774-161", 129900,
                skus=[("42", 5, 129900), ("43", 0, 129900)])
    return sb


def make(sandbox: DewuSandbox, clock: ManualClock, **kw: Any) -> DewuConnector:
    connector = connect(DewuConnector, sandbox, clock=clock, **kw)
    assert isinstance(connector, DewuConnector)
    return connector


@pytest.fixture
def connector(sandbox: DewuSandbox, clock: ManualClock) -> DewuConnector:
    return make(sandbox, clock)


def sku_id(sandbox: DewuSandbox, code: str) -> str:
    _, sku = sandbox.find_sku(code)
    assert sku is not None
    return sku.sku_id


async def raw(connector: DewuConnector, path: str, **params: Any) -> Any:
    return await connector.client.call(path, params)


# -- orders ------------------------------------------------------------------------------
async def test_paging_reaches_the_end_and_yields_each_order_once(
        connector: DewuConnector, sandbox: DewuSandbox, clock: ManualClock) -> None:
    start = clock.now()
    sandbox.add_item("Dunk", "DD1391-100", 59900, skus=[("39", 100, 59900)])
    placed = []
    for _ in range(75):
        placed.append(sandbox.place_order([("39", 1)]).order_id)
        clock.advance(2)
    got = [o.platform_order_id async for o in connector.iter_orders(start, clock.now())]
    assert sorted(got) == sorted(placed) and len(got) == len(set(got))
    pages = [json.loads(r.body)["page_no"] for r in sandbox.calls(SPEC.order_increment_path)]
    assert pages == [1, 2, 3]


async def test_window_and_page_limits(connector: DewuConnector, sandbox: DewuSandbox,
                                      clock: ManualClock) -> None:
    start = clock.now()
    order = sandbox.place_order([("42", 1)])
    clock.advance(timedelta(hours=3))
    got = [o async for o in connector.iter_orders(start, clock.now())]
    assert [o.platform_order_id for o in got] == [order.order_id]
    assert len(sandbox.calls(SPEC.order_increment_path)) == 3
    now = clock.now()
    with pytest.raises(Rejected, match="时间跨度"):
        await raw(connector, SPEC.order_increment_path,
                  start_modified=format_beijing(now - timedelta(hours=2)),
                  end_modified=format_beijing(now), page_no=1, page_size=30)
    with pytest.raises(Rejected, match="page_size"):
        await raw(connector, SPEC.order_increment_path,
                  start_modified=format_beijing(now - timedelta(minutes=5)),
                  end_modified=format_beijing(now), page_no=1, page_size=SPEC.max_page_size + 1)


async def test_order_lifecycle_through_inspection(connector: DewuConnector,
                                                  sandbox: DewuSandbox) -> None:
    order = sandbox.place_order([("42", 1)])
    record = await connector.get_order(order.order_id)
    assert (record.status, record.platform_status) == (OrderStatus.PAID, "2000")
    await connector.ship(ShipRequest(order.order_id, "SF", "SF1409876543210"))
    record = await connector.get_order(order.order_id)
    assert (record.status, record.platform_status) == (OrderStatus.SHIPPED, "2010")
    assert record.tracking_numbers == ("SF1409876543210",)
    sandbox.inspect(order.order_id, 3020)
    assert (await connector.get_order(order.order_id)).platform_status == "3020"
    sandbox.complete(order.order_id)
    assert (await connector.get_order(order.order_id)).status is OrderStatus.COMPLETED
    with pytest.raises(NotFound):
        await connector.get_order("999")


async def test_a_warehouse_order_goes_to_dewu_and_carries_the_buyer_freight(
        connector: DewuConnector, sandbox: DewuSandbox) -> None:
    order = sandbox.place_order([("42", 2)], post_fee_fen=800)
    record = await connector.get_order(order.order_id)
    assert (record.total_fen, record.post_fee_fen, record.paid_fen) == (259800, 800, 260600)
    assert record.lines[0].paid_fen == 259800
    # the parcel goes to Dewu's inspection warehouse, not to the buyer
    assert (record.address.province, record.address.district) == ("上海市", "杨浦区")
    assert record.address.detail and record.address.province != order.province
    brand = sandbox.place_order([("42", 1)], order_type=14)
    assert (await connector.get_order(brand.order_id)).address.province == ""


async def test_cancellations(connector: DewuConnector, sandbox: DewuSandbox) -> None:
    unpaid = sandbox.place_order([("42", 1)], paid=False)
    sandbox.cancel(unpaid.order_id)
    record = await connector.get_order(unpaid.order_id)
    assert (record.status, record.platform_status) == (OrderStatus.CANCELLED, "7000")
    closed = sandbox.place_order([("42", 1)])
    sandbox.cancel(closed.order_id)
    record = await connector.get_order(closed.order_id)
    # paid, then closed by the buyer before shipping: the money went back
    assert (record.status, record.platform_status) == (OrderStatus.REFUNDED, "8010")
    assert record.lines[0].status is LineStatus.REFUNDED
    assert sandbox.stock_of("42") == 5  # back on the bid
    returned = sandbox.place_order([("42", 1)])
    await connector.ship(ShipRequest(returned.order_id, "JD", "JDVA01234567890"))
    sandbox.refund_after_shipping(returned.order_id)
    assert (await connector.get_order(returned.order_id)).status is OrderStatus.REFUNDED


# -- bids, stock, price ----------------------------------------------------------------------
async def test_listings_are_live_bids(connector: DewuConnector, sandbox: DewuSandbox) -> None:
    [listing] = [x async for x in connector.iter_listings()]
    assert (listing.platform_sku_id, listing.quantity, listing.price_fen, listing.on_sale) == (
        sku_id(sandbox, "42"), 5, 129900, True)
    assert listing.item_merchant_code == "DC0774-161"


async def test_stock_is_absolute_idempotent_and_zero_cancels_the_bid(
        connector: DewuConnector, sandbox: DewuSandbox) -> None:
    sku = sku_id(sandbox, "42")
    for _ in range(2):
        [outcome] = await connector.set_stock([StockUpdate("spu", sku, 7)])
        assert outcome.error is None and sandbox.stock_of("42") == 7
    bid = sandbox.live_bid(sku)
    assert bid is not None
    with pytest.raises(Rejected):  # the platform never takes 0: cancel instead
        await raw(connector, SPEC.stock_update_path, bidding_no=bid.bidding_no, qty=0)
    for _ in range(2):
        [outcome] = await connector.set_stock([StockUpdate("spu", sku, 0)])
        assert outcome.error is None and sandbox.stock_of("42") == 0
    assert sandbox.live_bid(sku) is None
    with pytest.raises(SoldOut):
        sandbox.place_order([("42", 1)])
    with pytest.raises(Rejected) as caught:
        await raw(connector, SPEC.bid_cancel_path, bidding_no=bid.bidding_no)
    assert caught.value.reason == "bid_closed"
    [outcome] = await connector.set_stock([StockUpdate("spu", sku, 3)])
    assert isinstance(outcome.error, Rejected) and outcome.error.reason == "no_bid"


async def test_sold_out_bid_takes_new_stock(connector: DewuConnector,
                                            sandbox: DewuSandbox) -> None:
    sandbox.place_order([("42", 5)])
    sku = sku_id(sandbox, "42")
    [outcome] = await connector.set_stock([StockUpdate("spu", sku, 4)])
    assert outcome.error is None and sandbox.stock_of("42") == 4


async def test_price_update_replaces_the_bid_number(connector: DewuConnector,
                                                    sandbox: DewuSandbox) -> None:
    sku = sku_id(sandbox, "42")
    before = sandbox.live_bid(sku)
    assert before is not None
    [outcome] = await connector.set_price([PriceUpdate("spu", sku, 125900)])
    after = sandbox.live_bid(sku)
    assert outcome.error is None and after is not None
    assert after.bidding_no != before.bidding_no and before.closed
    assert sandbox.find_sku("42")[1].price_fen == 125900  # type: ignore[union-attr]
    assert sandbox.stock_of("42") == 5


async def test_upsert_places_and_updates_bids_on_platform_skus(
        connector: DewuConnector, sandbox: DewuSandbox) -> None:
    draft = ListingDraft("DC0774-161", "AJ1 Low", "", 139900, skus=(
        DraftSku("AJ1L-43", 139900, 2, {"尺码": "43"}), DraftSku("AJ1L-42", 131900, 6, {"尺码": "42"})))
    result = await connector.upsert_listing(draft)
    assert result.sku_ids == {"AJ1L-43": sku_id(sandbox, "43"), "AJ1L-42": sku_id(sandbox, "42")}
    assert (sandbox.stock_of("43"), sandbox.stock_of("42")) == (2, 6)
    assert sandbox.find_sku("42")[1].price_fen == 131900  # type: ignore[union-attr]
    unknown_spu = ListingDraft("NOPE-1", "x", "", 1, skus=(DraftSku("x", 1, 1, {"尺码": "42"}),))
    with pytest.raises(Rejected) as caught:
        await connector.upsert_listing(unknown_spu)
    assert caught.value.reason == "unknown_spu"
    unknown_sku = ListingDraft("DC0774-161", "x", "", 1, skus=(DraftSku("x", 1, 1, {"尺码": "50"}),))
    with pytest.raises(Rejected) as caught:
        await connector.upsert_listing(unknown_sku)
    assert caught.value.reason == "unknown_sku"


# -- shipping --------------------------------------------------------------------------------
async def test_ship_then_ship_again_is_already_shipped(connector: DewuConnector,
                                                       sandbox: DewuSandbox) -> None:
    order = sandbox.place_order([("42", 1)])
    await connector.ship(ShipRequest(order.order_id, "DBL", "DPK123456789012"))
    [request] = sandbox.calls(SPEC.deliver_path)
    body = json.loads(request.body)
    assert (body["order_no"], body["dispatch_num"], body["carrier"]) == (
        order.order_id, "DPK123456789012", 2)
    # the platform registers the carrier in its own code vocabulary, as the table has it
    assert [s.carrier_code for s in sandbox.shipments_of(order.order_id)] == [
        connector.carrier_table().to_platform("DBL")]
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "DBL", "DPK123456789012"))
    assert caught.value.reason == "already_shipped"


async def test_warehouse_flow_refuses_other_carriers(sandbox: DewuSandbox,
                                                     clock: ManualClock) -> None:
    order = sandbox.place_order([("42", 1)])
    connector = make(sandbox, clock)
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "ZTO", "73100000000001"))
    assert caught.value.reason == "bad_carrier"
    forced = make(sandbox, clock, options={"warehouse_carriers": {"ZTO": "6"}})
    with pytest.raises(Rejected) as refused:  # the platform refuses the code too
        await forced.ship(ShipRequest(order.order_id, "ZTO", "73100000000001"))
    assert refused.value.reason == "bad_carrier" and order.state == "paid"


async def test_brand_direct_orders_ship_to_the_buyer(connector: DewuConnector,
                                                     sandbox: DewuSandbox) -> None:
    order = sandbox.place_order([("42", 1)], order_type=14)
    await connector.ship(ShipRequest(order.order_id, "ZTO", "73100000000001"))
    [request] = sandbox.calls(SPEC.brand_deliver_path)
    assert json.loads(request.body)["express_type"] == "ZT"
    assert (await connector.get_order(order.order_id)).lines[0].status is LineStatus.SHIPPED
    with pytest.raises(Rejected) as caught:  # the warehouse call does not take it
        await raw(connector, SPEC.deliver_path, order_no=order.order_id, dispatch_num="SF1",
                  carrier=0)
    assert "品牌直发" in caught.value.platform_message


# -- credentials and tokens ------------------------------------------------------------------
async def test_wrong_secret_is_refused_and_nothing_changes(sandbox: DewuSandbox,
                                                           clock: ManualClock) -> None:
    connector = make(sandbox, clock, app_secret="not-the-secret")
    order = sandbox.place_order([("42", 1)])
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF1409876543210"))
    assert caught.value.reason == "bad_signature"
    [outcome] = await connector.set_stock([StockUpdate("spu", sku_id(sandbox, "42"), 1)])
    assert isinstance(outcome.error, Rejected)
    assert order.state == "paid" and sandbox.stock_of("42") == 4


async def test_wrong_verb_is_refused(sandbox: DewuSandbox, clock: ManualClock) -> None:
    # this client sends GET for the bid list; the gateway serves that path as POST only
    verbs = make(sandbox, clock, options={"dewu_api": {"get_paths": [SPEC.bid_list_path]}})
    with pytest.raises(Rejected, match="405"):
        await verbs.client.call(SPEC.bid_list_path, {"page_no": 1, "page_size": 30})
    assert sandbox.requests[-1].status == 405


async def test_expired_token_refreshes_once_and_keeps_the_rotated_refresh_token(
        connector: DewuConnector, sandbox: DewuSandbox, clock: ManualClock) -> None:
    clock.advance(timedelta(hours=25))  # access tokens live 24 h
    listings = [x async for x in connector.iter_listings()]
    assert len(listings) == 1
    tokens = connector.shop.tokens
    assert isinstance(tokens, RefreshingTokens) and tokens.refreshes == 1
    assert tokens.current().refresh_token == "sandbox-refresh-token-2"
    assert tokens.current().expires_at == clock.now() + timedelta(days=1)
    [refresh] = [r for r in sandbox.requests if r.api.endswith("refresh_token")]
    assert "sign" not in json.loads(refresh.request.body)


async def test_a_dead_refresh_token_is_auth_expired(connector: DewuConnector,
                                                   sandbox: DewuSandbox,
                                                   clock: ManualClock) -> None:
    order = sandbox.place_order([("42", 1)])
    sandbox.expire_token()
    sandbox.refresh_tokens.clear()  # revoked, expired or rotated away
    with pytest.raises(AuthExpired):
        await connector.get_order(order.order_id)


async def test_wrong_client_credentials_on_refresh_stay_rejected(
        sandbox: DewuSandbox, clock: ManualClock) -> None:
    connector = make(sandbox, clock)
    with pytest.raises(Rejected) as caught:  # a refresh signed with the wrong app secret
        await make(sandbox, clock, app_secret="not-the-secret").refresh_token(
            connector.shop.tokens.current())
    assert caught.value.reason == "bad_signature"


# -- faults ------------------------------------------------------------------------------------
async def test_rate_limit_succeeds_on_retry(connector: DewuConnector,
                                            sandbox: DewuSandbox) -> None:
    sandbox.faults.inject(Fault.RATE_LIMIT, 1)
    assert len([x async for x in connector.iter_listings()]) == 1


@pytest.mark.parametrize(("fault", "error"), [
    (Fault.RATE_LIMIT, RateLimited), (Fault.SERVER_ERROR, Transient),
    (Fault.MALFORMED, BadResponse), (Fault.TIMEOUT, Transient),
])
async def test_fault_switches_map_to_canonical_errors(
        connector: DewuConnector, sandbox: DewuSandbox, fault: Fault,
        error: type[Exception]) -> None:
    sandbox.faults.inject(fault, 10)
    with pytest.raises(error):
        await connector.get_order("1")


# -- pushes ------------------------------------------------------------------------------------
async def test_push_verification(connector: DewuConnector, sandbox: DewuSandbox,
                                 clock: ManualClock) -> None:
    order = sandbox.place_order([("42", 1)])
    delivery = sandbox.pushes[-1]
    [event] = connector.verify_push(delivery.headers, delivery.body)
    assert (event.kind, event.topic, event.platform_order_id) == (
        PushKind.ORDER, "ORDER_CREATED", order.order_id)
    ack = json.loads(connector.push_ack([event]).body)
    assert ack == {"msg": "SUCCESS", "code": 200, "data": event.event_id}
    body = json.loads(delivery.body)
    raw_msg = bytearray(base64.b64decode(body["msg"]))
    raw_msg[-1] ^= 0x5A
    tampered = {**body, "msg": base64.b64encode(bytes(raw_msg)).decode()}
    with pytest.raises(SignatureInvalid):
        connector.verify_push(delivery.headers, json.dumps(tampered).encode())
    with pytest.raises(SignatureInvalid):
        make(sandbox, clock, app_secret="other-secret").verify_push(delivery.headers, delivery.body)
    with pytest.raises(SignatureInvalid):
        connector.verify_push({}, b'{"type": "ORDER_CREATED"}')
    sandbox.cancel(order.order_id)
    [refund] = connector.verify_push(sandbox.pushes[-1].headers, sandbox.pushes[-1].body)
    assert refund.kind is PushKind.REFUND and refund.event_id != event.event_id
