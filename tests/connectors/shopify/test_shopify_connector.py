"""The Shopify connector against its sandbox, in process, on a manual clock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from connectors.shopify.connector import ShopifyConnector
from connectors.shopify.sandbox import ShopifySandbox
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
    Capability,
    DraftSku,
    LineStatus,
    ListingDraft,
    OrderStatus,
    PriceUpdate,
    PushKind,
    ShipRequest,
    StockUpdate,
)
from core.sandbox import Fault, SandboxRequest, SandboxResponse
from core.testing import connect
from core.tokens import RefreshingTokens


def setup(**sandbox_args: Any) -> tuple[ShopifySandbox, ShopifyConnector, ManualClock]:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock, **sandbox_args)
    sandbox.add_item("Mug", "MUG", 1250, skus=[("MUG-BLU", 9, 1250), ("MUG-RED", 4, 1300)])
    sandbox.add_item("Poster", "POSTER", 1990, quantity=5)
    connector = connect(ShopifyConnector, sandbox, clock=clock)
    assert isinstance(connector, ShopifyConnector)
    return sandbox, connector, clock


def variant(sandbox: ShopifySandbox, code: str) -> tuple[str, str]:
    item, sku = sandbox.find_sku(code)
    assert sku is not None
    return item.item_id, sku.sku_id


def calls(sandbox: ShopifySandbox, api: str) -> list[SandboxRequest]:
    return sandbox.calls(api)


def test_declared_facts() -> None:
    assert Capability.PARTIAL_SHIP in ShopifyConnector.capabilities
    assert Capability.REFRESH_TOKEN in ShopifyConnector.capabilities
    from core.carriers import INTERNATIONAL

    assert ShopifyConnector.carriers.canonical_codes() >= INTERNATIONAL


# -- orders --------------------------------------------------------------------------------

async def test_paging_reaches_the_end_and_yields_each_order_once() -> None:
    sandbox, connector, clock = setup()
    sandbox.add_item("Card", "CARD", 500, quantity=100)
    start = clock.now()
    placed = []
    for _ in range(37):
        placed.append(sandbox.place_order([("CARD", 1)]).order_id)
        clock.advance(7)
    records = [r async for r in connector.iter_orders(start, clock.now())]
    assert sorted(r.platform_order_id for r in records) == sorted(placed)
    assert len(calls(sandbox, "ErpsyncOrders")) == 3  # 15 + 15 + 7


async def test_window_edges_and_window_limit() -> None:
    sandbox, connector, clock = setup()
    before = sandbox.place_order([("MUG-BLU", 1)])
    clock.advance(timedelta(minutes=5))
    start = clock.now()
    inside = sandbox.place_order([("MUG-RED", 1)])
    clock.advance(timedelta(minutes=5))
    end = clock.now()
    after = sandbox.place_order([("MUG-RED", 1)])
    ids = {r.platform_order_id async for r in connector.iter_orders(start, end)}
    assert inside.order_id in ids
    assert before.order_id not in ids and after.order_id not in ids
    with pytest.raises(ValueError):
        _ = [r async for r in connector.iter_orders(start, start + timedelta(days=8))]


async def test_long_orders_get_all_their_lines() -> None:
    sandbox, connector, _clock = setup()
    codes = [f"PIN-{i:02d}" for i in range(23)]
    sandbox.add_item("Pins", "PINS", 100, skus=[(c, 5, 100) for c in codes])
    order = sandbox.place_order([(c, 1) for c in codes])
    record = await connector.get_order(order.order_id)
    assert [line.merchant_code for line in record.lines] == codes
    assert len(calls(sandbox, "ErpsyncOrderLines")) == 1
    assert record.total_fen == 2300


async def test_get_order_unknown_is_not_found() -> None:
    _, connector, _ = setup()
    with pytest.raises(NotFound):
        await connector.get_order("999")


# -- stock ---------------------------------------------------------------------------------

async def test_stock_set_absolute_and_idempotent() -> None:
    sandbox, connector, _ = setup()
    blue, poster = variant(sandbox, "MUG-BLU"), variant(sandbox, "POSTER")
    updates = [StockUpdate(*blue, 3), StockUpdate(*poster, 11)]
    outcomes = await connector.set_stock(updates)
    assert [o.error for o in outcomes] == [None, None]
    assert (sandbox.stock_of("MUG-BLU"), sandbox.stock_of("POSTER")) == (3, 11)
    sent = json.loads(calls(sandbox, "ErpsyncInventorySet")[0].body)
    quantities = sent["variables"]["input"]["quantities"]
    assert [q["changeFromQuantity"] for q in quantities] == [9, 5]
    assert sent["variables"]["key"]
    again = await connector.set_stock(updates)
    assert [o.error for o in again] == [None, None]
    assert (sandbox.stock_of("MUG-BLU"), sandbox.stock_of("POSTER")) == (3, 11)
    assert len(calls(sandbox, "ErpsyncInventorySet")) == 1  # nothing to change: no write


class RacingSandbox(ShopifySandbox):
    """A buyer takes one unit between our read and our write, `races` times."""

    races = 1
    code = "MUG-BLU"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        response = super().handle(request)
        if self.api_name(request) == "ErpsyncInventoryLevels" and self.races > 0:
            self.races -= 1
            self.place_order([(self.code, 1)])
        return response


async def test_compare_and_swap_mismatch_is_reread_and_retried() -> None:
    clock = ManualClock()
    sandbox = RacingSandbox(clock=clock)
    sandbox.add_item("Mug", "MUG", 1250, skus=[("MUG-BLU", 9, 1250)])
    connector = connect(ShopifyConnector, sandbox, clock=clock)
    (outcome,) = await connector.set_stock([StockUpdate(*variant(sandbox, "MUG-BLU"), 7)])
    assert outcome.error is None
    assert sandbox.stock_of("MUG-BLU") == 7  # still an absolute set
    writes = [json.loads(r.body)["variables"] for r in calls(sandbox, "ErpsyncInventorySet")]
    assert [w["input"]["quantities"][0]["changeFromQuantity"] for w in writes] == [9, 8]
    assert writes[0]["key"] != writes[1]["key"]  # a new read is a new write


async def test_compare_and_swap_gives_up_after_the_configured_retries() -> None:
    clock = ManualClock()
    sandbox = RacingSandbox(clock=clock)
    sandbox.races = 10
    sandbox.add_item("Mug", "MUG", 1250, skus=[("MUG-BLU", 20, 1250)])
    connector = connect(ShopifyConnector, sandbox, clock=clock, options={"stale_retries": 2})
    (outcome,) = await connector.set_stock([StockUpdate(*variant(sandbox, "MUG-BLU"), 7)])
    assert isinstance(outcome.error, Rejected)
    assert outcome.error.reason == "stale_quantity"
    assert len(calls(sandbox, "ErpsyncInventorySet")) == 3
    assert sandbox.stock_of("MUG-BLU") == 17  # three sales, no write of ours


async def test_lost_answer_is_replayed_by_the_idempotency_key() -> None:
    sandbox, connector, _ = setup()
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, api="ErpsyncInventorySet")
    (outcome,) = await connector.set_stock([StockUpdate(*variant(sandbox, "MUG-BLU"), 2)])
    assert outcome.error is None
    assert sandbox.stock_of("MUG-BLU") == 2
    keys = [json.loads(r.body)["variables"]["key"] for r in calls(sandbox, "ErpsyncInventorySet")]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert len(sandbox.idempotency) == 1


async def test_stock_batches_are_chunked_and_errors_stay_per_sku() -> None:
    sandbox, connector, _ = setup()
    codes = [f"S-{i:03d}" for i in range(130)]
    sandbox.add_item("Many", "MANY", 100, skus=[(c, 1, 100) for c in codes])
    updates = [StockUpdate(*variant(sandbox, c), 4) for c in codes]
    updates.append(StockUpdate("1", "404404", 1))
    outcomes = await connector.set_stock(updates)
    assert all(o.error is None for o in outcomes[:-1])
    assert isinstance(outcomes[-1].error, NotFound)
    assert all(sandbox.stock_of(c) == 4 for c in codes)
    assert len(calls(sandbox, "ErpsyncInventorySet")) == 2  # 100 + 30 (+ the unknown)


async def test_untracked_inventory_is_reported_not_written() -> None:
    sandbox, connector, _ = setup()
    item_id, sku_id = variant(sandbox, "MUG-RED")
    sandbox.untracked.add(sku_id)
    (outcome,) = await connector.set_stock([StockUpdate(item_id, sku_id, 1)])
    assert isinstance(outcome.error, Rejected) and outcome.error.reason == "stock_not_tracked"
    assert sandbox.stock_of("MUG-RED") == 4


# -- listings ------------------------------------------------------------------------------

async def test_iter_listings_pages_through_every_variant() -> None:
    sandbox, connector, _ = setup()
    sandbox.add_item("Many", "MANY", 100, skus=[(f"M-{i}", 1, 100) for i in range(120)])
    listings = [listing async for listing in connector.iter_listings()]
    assert len(listings) == 3 + 120
    assert len({(x.platform_item_id, x.platform_sku_id) for x in listings}) == 123
    assert len(calls(sandbox, "ErpsyncVariants")) == 2
    poster = next(x for x in listings if x.merchant_code == "POSTER")
    assert (poster.price_fen, poster.quantity, poster.on_sale) == (1990, 5, True)


async def test_set_price_and_shelve() -> None:
    sandbox, connector, _ = setup()
    item_id, sku_id = variant(sandbox, "MUG-RED")
    outcomes = await connector.set_price([PriceUpdate(item_id, sku_id, 1499),
                                          PriceUpdate("777", "778", 100)])
    assert outcomes[0].error is None and isinstance(outcomes[1].error, NotFound)
    assert sandbox.find_sku("MUG-RED")[1].price_fen == 1499  # type: ignore[union-attr]
    await connector.set_on_sale(item_id, False)
    assert sandbox.items[item_id].on_sale is False
    await connector.set_on_sale(item_id, True)
    assert sandbox.items[item_id].on_sale is True


async def test_upsert_listing_creates_then_updates() -> None:
    sandbox, connector, _ = setup()
    draft = ListingDraft(merchant_code="TEE", title="T-Shirt", category_id="", price_fen=1500,
                         skus=(DraftSku("TEE-S", 1500, 6, {"Size": "S"}),
                               DraftSku("TEE-M", 1600, 2, {"Size": "M"})))
    created = await connector.upsert_listing(draft)
    assert set(created.sku_ids) == {"TEE-S", "TEE-M"}
    assert (sandbox.stock_of("TEE-S"), sandbox.stock_of("TEE-M")) == (6, 2)
    updated = await connector.upsert_listing(ListingDraft(
        merchant_code="TEE", title="T-Shirt v2", category_id="", price_fen=1500,
        skus=(DraftSku("TEE-S", 1550, 99, {"Size": "S"}),), platform_item_id=created.platform_item_id))
    assert updated.sku_ids == {"TEE-S": created.sku_ids["TEE-S"]}
    item = sandbox.items[created.platform_item_id]
    assert item.title == "T-Shirt v2"
    assert [(s.outer_id, s.price_fen, s.quantity) for s in item.skus] == [("TEE-S", 1550, 6)]


async def test_upsert_single_sku_listing() -> None:
    sandbox, connector, _ = setup()
    result = await connector.upsert_listing(ListingDraft(
        merchant_code="CARD", title="Gift card", category_id="", price_fen=1000,
        skus=(DraftSku("CARD", 1000, 50),)))
    assert list(result.sku_ids) == ["CARD"]
    assert sandbox.stock_of("CARD") == 50


# -- shipping ------------------------------------------------------------------------------

async def test_ship_then_ship_again_is_already_shipped() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG-BLU", 2), ("POSTER", 1)])
    await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784"))
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.SHIPPED
    assert record.tracking_numbers == ("1Z999AA10123456784",)
    assert {line.status for line in record.lines} == {LineStatus.SHIPPED}
    sent = json.loads(calls(sandbox, "ErpsyncFulfillmentCreate")[0].body)["variables"]
    assert sent["fulfillment"]["trackingInfo"] == {"company": "UPS",
                                                   "number": "1Z999AA10123456784"}
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784"))
    assert caught.value.reason == "already_shipped"
    assert len(calls(sandbox, "ErpsyncFulfillmentCreate")) == 1


async def test_partial_shipment_by_line() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG-BLU", 2), ("POSTER", 1)])
    first, second = (line.line_id for line in order.lines)
    await connector.ship(ShipRequest(order.order_id, "SF", "SF1234567890123", (first,)))
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.PAID
    assert [line.status for line in record.lines] == [LineStatus.SHIPPED, LineStatus.OPEN]
    sent = json.loads(calls(sandbox, "ErpsyncFulfillmentCreate")[0].body)["variables"]
    tracking = sent["fulfillment"]["trackingInfo"]
    assert tracking["company"] == "SF Express"
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "SF", "SF1234567890123", (first,)))
    assert caught.value.reason == "already_shipped"
    await connector.ship(ShipRequest(order.order_id, "YTO", "YT1234567890123", (second,)))
    record = await connector.get_order(order.order_id)
    assert record.status is OrderStatus.SHIPPED
    assert record.tracking_numbers == ("SF1234567890123", "YT1234567890123")
    last = json.loads(calls(sandbox, "ErpsyncFulfillmentCreate")[-1].body)["variables"]
    # a carrier Shopify may not recognise travels with a tracking URL
    assert last["fulfillment"]["trackingInfo"]["url"].endswith("YT1234567890123")


async def test_lost_fulfillment_answer_is_recognised_on_the_retry() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG-BLU", 2), ("POSTER", 1)])
    first = order.lines[0].line_id
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, api="ErpsyncFulfillmentCreate")
    await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784", (first,)))
    assert len(calls(sandbox, "ErpsyncFulfillmentCreate")) == 2  # the retry was refused
    assert len(sandbox.shipments_of(order.order_id)) == 1
    record = await connector.get_order(order.order_id)
    assert [line.status for line in record.lines] == [LineStatus.SHIPPED, LineStatus.OPEN]


async def test_ship_refusals() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG-BLU", 1)])
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "NOPE", "X1"))
    assert caught.value.reason == "bad_carrier"
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "UPS", "1Z1", ("123",)))
    assert caught.value.reason == "unknown_line"
    sandbox.cancel(order.order_id)
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "UPS", "1Z1"))
    assert caught.value.reason == "order_cancelled"
    assert calls(sandbox, "ErpsyncFulfillmentCreate") == []


# -- auth ----------------------------------------------------------------------------------

async def test_expired_token_is_refreshed_once_and_the_rotated_refresh_token_kept() -> None:
    sandbox, connector, _ = setup()
    sandbox.expire_token()
    order = sandbox.place_order([("MUG-BLU", 1)])
    record = await connector.get_order(order.order_id)
    assert record.platform_order_id == order.order_id
    tokens = connector.shop.tokens
    assert isinstance(tokens, RefreshingTokens)
    assert tokens.refreshes == 1
    current = tokens.current()
    assert current.refresh_token == "sandbox-refresh-token-2"
    assert current.expires_at == connector.client.clock.now() + timedelta(hours=1)
    assert sandbox.rotate_tokens("sandbox-refresh-token-1") is None
    await connector.get_order(order.order_id)
    assert tokens.refreshes == 1


async def test_fault_token_expired_refreshes_once() -> None:
    sandbox, connector, _ = setup()
    sandbox.faults.inject(Fault.TOKEN_EXPIRED, api="ErpsyncShop")
    await connector.set_price([PriceUpdate(*variant(sandbox, "MUG-BLU"), 999)])
    tokens = connector.shop.tokens
    assert isinstance(tokens, RefreshingTokens) and tokens.refreshes == 1


async def test_non_expiring_token_without_refresh_token_fails_clearly() -> None:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock)
    sandbox.add_item("Mug", "MUG", 1250, quantity=3)
    connector = connect(ShopifyConnector, sandbox, clock=clock, refresh_token="")
    sandbox.expire_token()
    with pytest.raises(AuthExpired):
        await connector.set_stock([StockUpdate(*variant(sandbox, "MUG"), 1)])
    assert sandbox.stock_of("MUG") == 3


async def test_wrong_secret_is_refused_and_nothing_changes() -> None:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock)
    sandbox.add_item("Mug", "MUG", 1250, quantity=3)
    connector = connect(ShopifyConnector, sandbox, clock=clock, app_secret="wrong-secret",
                        access_token="stale-token")
    with pytest.raises(AuthExpired) as caught:
        await connector.set_stock([StockUpdate(*variant(sandbox, "MUG"), 1)])
    assert "wrong-secret" not in str(caught.value)
    assert sandbox.stock_of("MUG") == 3
    assert calls(sandbox, "ErpsyncInventorySet") == []
    assert "sandbox-refresh-token-1" in sandbox.refresh_tokens  # nothing rotated


# -- faults --------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "times", "error"), [
    (Fault.RATE_LIMIT, 1, None),
    (Fault.RATE_LIMIT, 4, RateLimited),
    (Fault.SERVER_ERROR, 1, None),
    (Fault.SERVER_ERROR, 4, Transient),
    (Fault.TIMEOUT, 4, Transient),
    (Fault.MALFORMED, 1, BadResponse),
])
async def test_fault_switches_map_to_canonical_errors(fault: Fault, times: int,
                                                      error: type[Exception] | None) -> None:
    sandbox, connector, clock = setup()
    order = sandbox.place_order([("MUG-BLU", 1)])
    sandbox.faults.inject(fault, times, api="ErpsyncOrder")
    if error is None:
        record = await connector.get_order(order.order_id)
        assert record.platform_order_id == order.order_id
    else:
        with pytest.raises(error):
            await connector.get_order(order.order_id)
    if fault is Fault.RATE_LIMIT:
        assert clock.slept and clock.slept[0] >= 2.0  # (200 - 0) / 100 from extensions.cost


async def test_connector_budget_waits_instead_of_being_throttled() -> None:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock, bucket_size=1000.0, restore_rate=50.0)
    connector = connect(ShopifyConnector, sandbox, clock=clock)
    start = clock.now()
    for _ in range(3):
        _ = [r async for r in connector.iter_orders(start, start + timedelta(minutes=1))]
    # without the budget the second query (752 of the 750 left) would be THROTTLED and
    # retried; with it the connector sleeps first and every query passes at once
    assert len(sandbox.requests) == 3
    assert clock.slept and all(s > 0 for s in clock.slept)


# -- webhooks ------------------------------------------------------------------------------

async def test_push_verification_accepts_the_sandbox_push_and_refuses_tampering() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG-BLU", 1)])
    await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784"))
    created, fulfilled = sandbox.pushes
    (event,) = connector.verify_push(created.headers, created.body)
    assert (event.kind, event.topic) == (PushKind.ORDER, "orders/create")
    assert event.event_id == created.headers["X-Shopify-Webhook-Id"]
    assert event.order is not None and event.order.status is OrderStatus.PAID
    assert event.order.platform_order_id == order.order_id
    (shipped,) = connector.verify_push(fulfilled.headers, fulfilled.body)
    assert shipped.order is not None and shipped.order.status is OrderStatus.SHIPPED
    assert shipped.order.tracking_numbers == ("1Z999AA10123456784",)
    with pytest.raises(SignatureInvalid):
        connector.verify_push(created.headers, created.body.replace(b'"paid"', b'"refunded"'))
    unprefixed = {k.lower().removeprefix("x-"): v for k, v in created.headers.items()}
    assert connector.verify_push(unprefixed, created.body)[0].event_id == event.event_id
    assert connector.push_ack([event]).status == 200


def test_push_signed_with_the_previous_secret_is_accepted_during_rotation() -> None:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock, app_secret="old-app-secret-000")
    sandbox.add_item("Mug", "MUG", 1250, quantity=3)
    sandbox.place_order([("MUG", 1)])
    connector = connect(ShopifyConnector, sandbox, clock=clock, app_secret="new-app-secret-111",
                        extra_secrets={"previous_app_secret": "old-app-secret-000"})
    (push,) = sandbox.pushes
    assert connector.verify_push(push.headers, push.body)
    bare = connect(ShopifyConnector, sandbox, clock=clock, app_secret="new-app-secret-111")
    with pytest.raises(SignatureInvalid):
        bare.verify_push(push.headers, push.body)
