"""The WooCommerce connector against its sandbox, in process, on a manual clock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from connectors.woocommerce.connector import WooCommerceConnector
from connectors.woocommerce.sandbox import WooCommerceSandbox
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

TRACKING = "/wc-shipment-tracking/v3/orders/{id}/shipment-trackings"


def setup(sandbox: WooCommerceSandbox | None = None, **options: Any
          ) -> tuple[WooCommerceSandbox, WooCommerceConnector, ManualClock]:
    clock = ManualClock()
    if sandbox is None:
        sandbox = WooCommerceSandbox(clock=clock)
    else:
        sandbox.clock = clock
    sandbox.add_item("Shirt", "SHIRT", 1999, skus=[("SHIRT-S", 10, 1999), ("SHIRT-M", 5, 2099)])
    sandbox.add_item("Mug", "MUG", 500, quantity=70)
    connector = connect(WooCommerceConnector, sandbox, clock=clock, options=options,
                        extra_secrets={"webhook_secret": sandbox.webhook_secret})
    assert isinstance(connector, WooCommerceConnector)
    return sandbox, connector, clock


def unit(sandbox: WooCommerceSandbox, code: str) -> tuple[str, str]:
    item, sku = sandbox.find_sku(code)
    return item.item_id, sku.sku_id if sku else ""


def test_declared_facts() -> None:
    assert Capability.PARTIAL_SHIP not in WooCommerceConnector.capabilities
    assert Capability.REFRESH_TOKEN not in WooCommerceConnector.capabilities
    from core.carriers import INTERNATIONAL

    assert WooCommerceConnector.carriers.canonical_codes() >= INTERNATIONAL
    assert WooCommerceConnector.limits.max_batch == 100


# -- orders --------------------------------------------------------------------------------

async def test_paging_reaches_the_end_and_yields_each_order_once() -> None:
    sandbox, connector, clock = setup()
    start = clock.now()
    placed = [sandbox.place_order([("MUG", 0)]).order_id for _ in range(230)]
    clock.advance(60)
    records = [r async for r in connector.iter_orders(start, clock.now())]
    assert sorted(r.platform_order_id for r in records) == sorted(placed)
    pages = [r.request.query["page"] for r in sandbox.requests
             if r.api == "GET /wc/v3/orders"]
    assert pages == ["1", "3", "2", "1"]  # probe, then backwards
    query = sandbox.requests[0].request.query
    assert (query["per_page"], query["dates_are_gmt"], query["orderby"], query["order"]) == (
        "100", "true", "id", "asc")


class ShiftingSandbox(WooCommerceSandbox):
    """While the connector pages, the oldest order in the window is modified (and so
    leaves the window): every later row moves up one place."""

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if self.api_name(request) == "GET /wc/v3/orders" and request.query.get("page") != "1":
            first = min(self.orders, key=int)
            if self.status_of(self.orders[first]) != "on-hold":
                self.set_status(first, "on-hold")
        return super().handle(request)


async def test_rows_leaving_the_window_mid_pull_do_not_hide_others() -> None:
    sandbox, connector, clock = setup(ShiftingSandbox())
    start = clock.now()
    placed = [sandbox.place_order([("MUG", 0)]).order_id for _ in range(250)]
    clock.advance(60)
    end = clock.now()
    seen = {r.platform_order_id async for r in connector.iter_orders(start, end)}
    assert seen == set(placed)


async def test_window_limit_and_edges() -> None:
    sandbox, connector, clock = setup()
    before = sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=5))
    start = clock.now()
    inside = sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=5))
    end = clock.now()
    on_end = sandbox.place_order([("MUG", 1)])
    ids = {r.platform_order_id async for r in connector.iter_orders(start, end)}
    assert inside.order_id in ids and before.order_id not in ids and on_end.order_id not in ids
    with pytest.raises(ValueError):
        _ = [r async for r in connector.iter_orders(start, start + timedelta(days=8))]


async def test_get_order_and_not_found() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("SHIRT-S", 2)], post_fee_fen=490)
    record = await connector.get_order(order.order_id)
    assert (record.status, record.paid_fen, record.post_fee_fen) == (OrderStatus.PAID, 4488, 490)
    assert record.lines[0].platform_sku_id == unit(sandbox, "SHIRT-S")[1]
    with pytest.raises(NotFound):
        await connector.get_order("9999")


# -- stock and listings ----------------------------------------------------------------------

async def test_stock_set_absolute_and_idempotent() -> None:
    sandbox, connector, _ = setup()
    updates = [StockUpdate(*unit(sandbox, "SHIRT-S"), 3), StockUpdate(*unit(sandbox, "MUG"), 0)]
    for _ in range(2):
        outcomes = await connector.set_stock(updates)
        assert [o.error for o in outcomes] == [None, None]
        assert (sandbox.stock_of("SHIRT-S"), sandbox.stock_of("MUG")) == (3, 0)
    batch = next(r.request for r in sandbox.requests if r.api.endswith("variations/batch"))
    assert json.loads(batch.body) == {"update": [
        {"id": int(unit(sandbox, "SHIRT-S")[1]), "manage_stock": True, "stock_quantity": 3}]}


async def test_stock_batches_are_chunked_at_100_and_errors_stay_per_item() -> None:
    sandbox, connector, _ = setup()
    codes = [f"V-{i:03d}" for i in range(150)]
    sandbox.add_item("Many", "MANY", 100, skus=[(c, 1, 100) for c in codes])
    item_id = unit(sandbox, codes[0])[0]
    updates = [StockUpdate(*unit(sandbox, c), 9) for c in codes]
    updates.insert(7, StockUpdate(item_id, "77777", 1))
    outcomes = await connector.set_stock(updates)
    assert isinstance(outcomes[7].error, NotFound)
    assert all(o.error is None for i, o in enumerate(outcomes) if i != 7)
    assert all(sandbox.stock_of(c) == 9 for c in codes)
    batches = [r for r in sandbox.requests if r.api.endswith("variations/batch")]
    assert [len(json.loads(r.request.body)["update"]) for r in batches] == [100, 51]


async def test_iter_listings_includes_variations_and_simple_products() -> None:
    sandbox, connector, _ = setup()
    sandbox.unmanaged.add(unit(sandbox, "SHIRT-M")[1])
    listings = [x async for x in connector.iter_listings()]
    by_code = {x.merchant_code: x for x in listings}
    assert set(by_code) == {"SHIRT-S", "SHIRT-M", "MUG"}
    assert (by_code["SHIRT-S"].quantity, by_code["SHIRT-S"].item_merchant_code) == (10, "SHIRT")
    assert by_code["SHIRT-M"].quantity == 0  # unmanaged: no count to report
    assert (by_code["MUG"].platform_sku_id, by_code["MUG"].price_fen) == ("", 500)


async def test_set_price_and_shelve() -> None:
    sandbox, connector, _ = setup()
    outcomes = await connector.set_price([PriceUpdate(*unit(sandbox, "SHIRT-M"), 2499),
                                          PriceUpdate(*unit(sandbox, "MUG"), 650)])
    assert [o.error for o in outcomes] == [None, None]
    assert sandbox.find_sku("SHIRT-M")[1].price_fen == 2499  # type: ignore[union-attr]
    assert sandbox.find_sku("MUG")[0].price_fen == 650
    item_id = unit(sandbox, "MUG")[0]
    await connector.set_on_sale(item_id, False)
    assert sandbox.items[item_id].on_sale is False


async def test_upsert_variable_listing_creates_then_updates() -> None:
    sandbox, connector, _ = setup()
    draft = ListingDraft(merchant_code="CAP", title="Cap", category_id="", price_fen=1500,
                         skus=(DraftSku("CAP-R", 1500, 4, {"Colour": "Red"}),
                               DraftSku("CAP-B", 1600, 6, {"Colour": "Blue"})))
    created = await connector.upsert_listing(draft)
    assert set(created.sku_ids) == {"CAP-R", "CAP-B"}
    assert (sandbox.stock_of("CAP-R"), sandbox.stock_of("CAP-B")) == (4, 6)
    updated = await connector.upsert_listing(ListingDraft(
        merchant_code="CAP", title="Cap 2", category_id="", price_fen=1500,
        skus=(DraftSku("CAP-R", 1450, 99, {"Colour": "Red"}),
              DraftSku("CAP-G", 1500, 2, {"Colour": "Green"})),
        platform_item_id=created.platform_item_id))
    assert updated.sku_ids["CAP-R"] == created.sku_ids["CAP-R"]
    item = sandbox.items[created.platform_item_id]
    assert item.title == "Cap 2"
    prices = {s.outer_id: (s.price_fen, s.quantity) for s in item.skus}
    assert prices["CAP-R"] == (1450, 4)  # stock untouched by an update
    assert prices["CAP-G"] == (1500, 2)


async def test_upsert_simple_listing_and_duplicate_sku() -> None:
    sandbox, connector, _ = setup()
    result = await connector.upsert_listing(ListingDraft(
        merchant_code="BOOK", title="Book", category_id="", price_fen=2500,
        skus=(DraftSku("BOOK", 2500, 12),)))
    assert result.sku_ids == {"BOOK": ""}
    assert sandbox.stock_of("BOOK") == 12
    with pytest.raises(Rejected) as caught:
        await connector.upsert_listing(ListingDraft(
            merchant_code="MUG", title="Another mug", category_id="", price_fen=100, skus=()))
    assert caught.value.reason == "duplicate_sku"


# -- shipping ------------------------------------------------------------------------------

async def test_ship_then_ship_again_is_already_shipped() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("SHIRT-S", 1), ("MUG", 1)])
    await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784"))
    record = await connector.get_order(order.order_id)
    assert (record.status, record.platform_status) == (OrderStatus.COMPLETED, "completed")
    assert record.tracking_numbers == ("1Z999AA10123456784",)
    assert {line.status for line in record.lines} == {LineStatus.SHIPPED}
    posted = sandbox.calls("POST " + TRACKING)
    assert json.loads(posted[0].body) == {"tracking_number": "1Z999AA10123456784",
                                          "tracking_provider": "UPS"}
    # the store's "today" (UTC-3), not the ERP's
    assert sandbox.trackings_of(sandbox.orders[order.order_id])[0]["date_shipped"] == "2026-11-10"
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784"))
    assert caught.value.reason == "already_shipped"
    assert len(sandbox.trackings_of(sandbox.orders[order.order_id])) == 1


async def test_without_completion_a_shipped_order_stays_processing() -> None:
    sandbox, connector, _ = setup(complete_on_ship=False)
    order = sandbox.place_order([("MUG", 1)])
    await connector.ship(ShipRequest(order.order_id, "DHL", "1234567890"))
    record = await connector.get_order(order.order_id)
    assert (record.status, record.platform_status) == (OrderStatus.SHIPPED, "processing")
    assert sandbox.calls("PUT /wc/v3/orders/{id}") == []


async def test_carrier_outside_the_store_list_is_a_custom_provider() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG", 1)])
    await connector.ship(ShipRequest(order.order_id, "SF", "SF1234567890123"))
    body = json.loads(sandbox.calls("POST " + TRACKING)[0].body)
    assert body["custom_tracking_provider"] == "SF Express"
    assert body["custom_tracking_link"] == "https://t.17track.net/en#nums=%1$s"
    assert "tracking_provider" not in body
    (item,) = sandbox.trackings_of(sandbox.orders[order.order_id])
    assert item["tracking_link"] == "https://t.17track.net/en#nums=SF1234567890123"


async def test_ship_refusals() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG", 1), ("SHIRT-S", 1)])
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "UPS", "1Z1", (order.lines[0].line_id,)))
    assert caught.value.reason == "partial_ship_unsupported"
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "NOPE", "X1"))
    assert caught.value.reason == "bad_carrier"
    sandbox.cancel(order.order_id)
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "UPS", "1Z1"))
    assert caught.value.reason == "order_cancelled"
    assert sandbox.calls("POST " + TRACKING) == []


async def test_missing_tracking_extension_is_named() -> None:
    sandbox, connector, _ = setup(WooCommerceSandbox(tracking_extension=False))
    order = sandbox.place_order([("MUG", 1)])
    with pytest.raises(Rejected) as caught:
        await connector.ship(ShipRequest(order.order_id, "UPS", "1Z1"))
    assert caught.value.reason == "tracking_extension_missing"


async def test_lost_tracking_answer_is_not_posted_twice() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG", 1)])
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, api="POST " + TRACKING)
    await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784"))
    assert len(sandbox.trackings_of(sandbox.orders[order.order_id])) == 1
    assert len(sandbox.calls("POST " + TRACKING)) == 1
    assert sandbox.orders[order.order_id].state == "completed"


async def test_lost_tracking_answer_that_did_not_land_is_an_error() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG", 1)])
    sandbox.faults.inject(Fault.TIMEOUT, api="POST " + TRACKING)
    with pytest.raises(Transient):
        await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784"))
    assert sandbox.orders[order.order_id].state == "paid"


# -- auth ----------------------------------------------------------------------------------

async def test_wrong_secret_is_refused_and_nothing_changes() -> None:
    clock = ManualClock()
    sandbox = WooCommerceSandbox(clock=clock)
    sandbox.add_item("Mug", "MUG", 500, quantity=7)
    connector = connect(WooCommerceConnector, sandbox, clock=clock, app_secret="cs_wrong_secret")
    with pytest.raises(AuthExpired) as caught:
        await connector.set_stock([StockUpdate(*unit(sandbox, "MUG"), 1)])
    assert "cs_wrong_secret" not in str(caught.value)
    assert sandbox.stock_of("MUG") == 7


async def test_revoked_key_fails_clearly_without_a_refresh() -> None:
    sandbox, connector, _ = setup()
    sandbox.faults.inject(Fault.TOKEN_EXPIRED)
    with pytest.raises(AuthExpired) as caught:
        await connector.set_stock([StockUpdate(*unit(sandbox, "MUG"), 1)])
    assert "REST API key" in str(caught.value)
    tokens = connector.shop.tokens
    assert isinstance(tokens, RefreshingTokens) and tokens.refreshes == 0
    assert sandbox.stock_of("MUG") == 70
    statuses = [(r.api, r.status) for r in sandbox.requests]
    assert statuses == [("POST /wc/v3/products/batch", 401)]


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
    order = sandbox.place_order([("MUG", 1)])
    sandbox.faults.inject(fault, times, api="GET /wc/v3/orders/{id}")
    if error is None:
        assert (await connector.get_order(order.order_id)).platform_order_id == order.order_id
    else:
        with pytest.raises(error):
            await connector.get_order(order.order_id)
    if fault is Fault.RATE_LIMIT:
        assert clock.slept[0] >= 3.0  # the host's Retry-After


# -- webhooks ------------------------------------------------------------------------------

async def test_push_verification_accepts_the_sandbox_push_and_refuses_tampering() -> None:
    sandbox, connector, _ = setup()
    order = sandbox.place_order([("MUG", 1)])
    await connector.ship(ShipRequest(order.order_id, "UPS", "1Z999AA10123456784"))
    created, shipped, completed = sandbox.pushes
    (event,) = connector.verify_push(created.headers, created.body)
    assert (event.kind, event.topic, event.platform_order_id) == (
        PushKind.ORDER, "order.created", order.order_id)
    assert event.order is not None and event.order.status is OrderStatus.PAID
    (done,) = connector.verify_push(completed.headers, completed.body)
    assert done.order is not None and done.order.tracking_numbers == ("1Z999AA10123456784",)
    # same second, same delivery id: the events must still be told apart
    (middle,) = connector.verify_push(shipped.headers, shipped.body)
    assert middle.event_id != done.event_id
    assert connector.verify_push(completed.headers, completed.body)[0].event_id == done.event_id
    with pytest.raises(SignatureInvalid):
        connector.verify_push(created.headers, created.body.replace(b"processing", b"completed"))
    with pytest.raises(SignatureInvalid):
        connector.verify_push({k: v for k, v in created.headers.items()
                               if k != "X-WC-Webhook-Signature"}, created.body)
    ping = sandbox.ping_delivery()
    assert connector.verify_push(ping.headers, ping.body) == []
    assert connector.push_ack([event]).status == 200


async def test_oauth_over_http_when_served_under_a_mount_point() -> None:
    """`core.sandbox.serve` mounts each sandbox under /<key>; the client signs the full URL."""
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from core.connector import ShopContext
    from core.http import HttpSession
    from core.records import TokenSet
    from core.secrets import Secret

    clock = ManualClock()
    sandbox = WooCommerceSandbox(clock=clock, https=False)
    sandbox.add_item("Mug", "MUG", 500, quantity=3)
    order = sandbox.place_order([("MUG", 1)])
    app = Starlette(routes=[Mount("/woo-shop", app=sandbox.asgi())])
    session = HttpSession(transport=httpx.ASGITransport(app=app), clock=clock,
                          rate_limits=False)
    shop = ShopContext(name="woo-shop", platform="woocommerce",
                       base_url="http://127.0.0.1:8470/woo-shop", app_key=sandbox.app_key,
                       app_secret=Secret(sandbox.app_secret),
                       tokens=RefreshingTokens(TokenSet("")),
                       extra_secrets={k: Secret(v) for k, v in sandbox.client_secrets().items()})
    connector = WooCommerceConnector(shop, session)
    record = await connector.get_order(order.order_id)
    assert record.platform_order_id == order.order_id
    assert "oauth_signature" in sandbox.requests[-1].request.query
    await session.aclose()


def test_webhook_secret_falls_back_to_the_consumer_secret_and_is_html_decoded() -> None:
    clock = ManualClock()
    sandbox = WooCommerceSandbox(clock=clock, webhook_secret="cs_sandbox000000000000000000000"
                                 "000000000001")
    sandbox.add_item("Mug", "MUG", 500, quantity=3)
    sandbox.place_order([("MUG", 1)])
    (push,) = sandbox.pushes
    plain = connect(WooCommerceConnector, sandbox, clock=clock)
    assert plain.verify_push(push.headers, push.body)
    entity = WooCommerceSandbox(clock=clock, webhook_secret="s3cr&t-webhook")
    entity.add_item("Mug", "MUG", 500, quantity=3)
    entity.place_order([("MUG", 1)])
    (push,) = entity.pushes
    stored_encoded = connect(WooCommerceConnector, entity, clock=clock,
                             extra_secrets={"webhook_secret": "s3cr&amp;t-webhook"})
    assert stored_encoded.verify_push(push.headers, push.body)
