"""The WooCommerce sandbox refuses what WooCommerce refuses: spoken to directly."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest

from connectors.woocommerce.sandbox import WooCommerceSandbox
from core.clock import ManualClock


def seeded(**kwargs: Any) -> tuple[WooCommerceSandbox, ManualClock]:
    clock = ManualClock()
    sandbox = WooCommerceSandbox(clock=clock, **kwargs)
    sandbox.add_item("Shirt", "SHIRT", 1999, skus=[("SHIRT-S", 10, 1999), ("SHIRT-M", 5, 2099)])
    sandbox.add_item("Mug", "MUG", 500, quantity=7)
    return sandbox, clock


def basic(sandbox: WooCommerceSandbox, secret: str | None = None) -> dict[str, str]:
    pair = f"{sandbox.app_key}:{secret or sandbox.app_secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


async def call(sandbox: WooCommerceSandbox, method: str, route: str, *,
               params: dict[str, Any] | None = None, body: Any = None,
               headers: dict[str, str] | None = None, base: str = "https://shop.test"
               ) -> httpx.Response:
    async with httpx.AsyncClient(transport=sandbox.transport()) as http:
        return await http.request(method, f"{base}/wp-json/{route}", params=params, json=body,
                                  headers=basic(sandbox) if headers is None else headers)


async def test_per_page_above_100_is_refused() -> None:
    sandbox, _ = seeded()
    response = await call(sandbox, "GET", "wc/v3/orders", params={"per_page": 101})
    assert response.status_code == 400
    assert response.json() == {"code": "rest_invalid_param",
                               "message": "Invalid parameter(s): per_page",
                               "data": {"status": 400, "params": {
                                   "per_page": "per_page must be between 1 (inclusive) and "
                                               "100 (inclusive)"}}}


async def test_paging_headers_and_links() -> None:
    sandbox, _ = seeded()
    for _ in range(5):
        sandbox.place_order([("MUG", 1)])
    response = await call(sandbox, "GET", "wc/v3/orders", params={"per_page": 2, "page": 2})
    assert (response.headers["X-WP-Total"], response.headers["X-WP-TotalPages"]) == ("5", "3")
    assert 'rel="next"' in response.headers["Link"] and 'rel="prev"' in response.headers["Link"]
    assert len(response.json()) == 2
    past = await call(sandbox, "GET", "wc/v3/orders", params={"per_page": 2, "page": 9})
    assert past.json() == []


async def test_modified_window_is_exclusive_and_gmt_or_local() -> None:
    sandbox, _ = seeded()
    order = sandbox.place_order([("MUG", 1)])
    gmt = order.modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    same = await call(sandbox, "GET", "wc/v3/orders", params={
        "modified_after": gmt, "dates_are_gmt": "true"})
    assert same.json() == []  # after is exclusive
    earlier = (order.modified - timedelta(seconds=1)).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S")
    found = await call(sandbox, "GET", "wc/v3/orders", params={
        "modified_after": earlier, "dates_are_gmt": "true"})
    assert [o["id"] for o in found.json()] == [int(order.order_id)]
    local = await call(sandbox, "GET", "wc/v3/orders", params={"modified_after": earlier})
    assert local.json() == []  # the same digits read as site time (UTC-3) are 3 h later


async def test_revoked_key_is_anonymous_and_wrong_secret_is_an_auth_error() -> None:
    sandbox, _ = seeded()
    wrong = await call(sandbox, "GET", "wc/v3/orders", headers=basic(sandbox, "cs_wrong"))
    assert (wrong.status_code, wrong.json()["code"]) == (
        401, "woocommerce_rest_authentication_error")
    assert wrong.json()["message"] == "Consumer secret is invalid."
    none = await call(sandbox, "GET", "wc/v3/orders", headers={})
    assert (none.status_code, none.json()["code"]) == (401, "woocommerce_rest_cannot_view")
    sandbox.expire_token()  # the key is revoked
    revoked = await call(sandbox, "GET", "wc/v3/orders")
    assert (revoked.status_code, revoked.json()["code"]) == (401, "woocommerce_rest_cannot_view")
    edit = await call(sandbox, "PUT", "wc/v3/products/101", body={"status": "draft"})
    assert (edit.status_code, edit.json()["code"]) == (401, "woocommerce_rest_cannot_edit")
    assert sandbox.items["101"].on_sale is True


async def test_basic_auth_is_ignored_over_plain_http() -> None:
    sandbox, _ = seeded(https=False)
    response = await call(sandbox, "GET", "wc/v3/orders", base="http://shop.test")
    assert (response.status_code, response.json()["code"]) == (401,
                                                               "woocommerce_rest_cannot_view")


def oauth_query(sandbox: WooCommerceSandbox, url: str, stamp: int, nonce: str,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    from urllib.parse import quote

    params = {**(extra or {}), "oauth_consumer_key": sandbox.app_key,
              "oauth_timestamp": str(stamp), "oauth_nonce": nonce,
              "oauth_signature_method": "HMAC-SHA1"}

    def pct(value: str) -> str:
        return quote(value, safe="~-._")

    pairs = "&".join(f"{k}={v}" for k, v in sorted((pct(k), pct(v)) for k, v in params.items()))
    base = f"GET&{pct(url)}&{pct(pairs)}"
    signature = base64.b64encode(hmac.new(f"{sandbox.app_secret}&".encode(), base.encode(),
                                          hashlib.sha1).digest()).decode()
    return {**params, "oauth_signature": signature}


async def test_oauth_timestamp_window_and_nonce_replay() -> None:
    sandbox, clock = seeded(https=False, site_url="http://shop.test")
    url = "http://shop.test/wp-json/wc/v3/orders"
    now = int(clock.now().timestamp())
    good = oauth_query(sandbox, url, now, "n1")
    first = await call(sandbox, "GET", "wc/v3/orders", params=good, headers={},
                       base="http://shop.test")
    assert first.status_code == 200
    replay = await call(sandbox, "GET", "wc/v3/orders", params=good, headers={},
                        base="http://shop.test")
    assert replay.json()["message"] == "Invalid nonce - nonce has already been used."
    stale = oauth_query(sandbox, url, now - 16 * 60, "n2")
    old = await call(sandbox, "GET", "wc/v3/orders", params=stale, headers={},
                     base="http://shop.test")
    assert (old.status_code, old.json()["message"]) == (401, "Invalid timestamp.")
    forged = {**oauth_query(sandbox, url, now, "n3"), "per_page": "5"}
    bad = await call(sandbox, "GET", "wc/v3/orders", params=forged, headers={},
                     base="http://shop.test")
    assert bad.json()["message"] == "Invalid signature - provided signature does not match."


async def test_batch_limit_and_per_item_errors() -> None:
    sandbox, _ = seeded()
    too_many = await call(sandbox, "POST", "wc/v3/products/batch", body={
        "update": [{"id": 104, "stock_quantity": 1}] * 60, "delete": [1] * 41})
    assert (too_many.status_code, too_many.json()["code"]) == (
        413, "woocommerce_rest_request_entity_too_large")
    assert sandbox.stock_of("MUG") == 7
    mixed = await call(sandbox, "POST", "wc/v3/products/batch", body={"update": [
        {"id": 104, "manage_stock": True, "stock_quantity": 3},
        {"id": 999, "stock_quantity": 3},
        {"id": 104, "stock_quantity": "lots"}]})
    assert mixed.status_code == 200
    first, missing, bad = mixed.json()["update"]
    assert (first["stock_quantity"], first["stock_status"]) == (3, "instock")
    assert missing == {"id": 999, "error": {"code": "woocommerce_rest_product_invalid_id",
                                            "message": "Invalid ID.", "data": {"status": 400}}}
    assert bad["error"]["code"] == "rest_invalid_param"
    assert sandbox.stock_of("MUG") == 3


async def test_stock_only_counts_when_managed_and_may_go_negative() -> None:
    sandbox, _ = seeded()
    variations = "wc/v3/products/101/variations/batch"
    response = await call(sandbox, "POST", variations, body={"update": [
        {"id": 102, "manage_stock": False, "stock_quantity": 50}]})
    row = response.json()["update"][0]
    assert (row["manage_stock"], row["stock_quantity"]) == (False, None)
    assert sandbox.stock_of("SHIRT-S") == 10
    response = await call(sandbox, "POST", variations, body={"update": [
        {"id": 102, "manage_stock": True, "stock_quantity": -2}]})
    row = response.json()["update"][0]
    assert (row["stock_quantity"], row["stock_status"]) == (-2, "outofstock")


async def test_unknown_route_and_missing_extension() -> None:
    sandbox, _ = seeded(tracking_extension=False)
    sandbox.place_order([("MUG", 1)])
    response = await call(sandbox, "GET",
                          "wc-shipment-tracking/v3/orders/705/shipment-trackings")
    assert (response.status_code, response.json()["code"]) == (404, "rest_no_route")
    index = await call(sandbox, "GET", "")
    assert "wc-shipment-tracking/v3" not in index.json()["namespaces"]


async def test_tracking_create_answers_201_with_location() -> None:
    sandbox, _ = seeded()
    order = sandbox.place_order([("MUG", 1)])
    route = f"wc-shipment-tracking/v3/orders/{order.order_id}/shipment-trackings"
    missing = await call(sandbox, "POST", route, body={"tracking_provider": "UPS"})
    assert (missing.status_code, missing.json()["code"]) == (400, "rest_missing_callback_param")
    created = await call(sandbox, "POST", route, body={
        "tracking_provider": "UPS", "tracking_number": "1Z999AA10123456784",
        "date_shipped": "2026-11-11"})
    assert created.status_code == 201
    item = created.json()
    assert created.headers["Location"].endswith(f"/{item['tracking_id']}")
    assert item["tracking_link"] == "https://www.ups.com/track?tracknum=1Z999AA10123456784"
    assert sandbox.orders[order.order_id].state == "shipped"
    rendered = (await call(sandbox, "GET", f"wc/v3/orders/{order.order_id}")).json()
    assert rendered["status"] == "processing"  # tracking alone does not complete the order
    meta = {m["key"]: m["value"] for m in rendered["meta_data"]}
    assert meta["_wc_shipment_tracking_items"][0]["tracking_number"] == "1Z999AA10123456784"


@pytest.mark.parametrize(("target", "state"), [
    ("completed", "completed"), ("cancelled", "refunded"), ("on-hold", "paid")])
async def test_order_status_changes(target: str, state: str) -> None:
    sandbox, _ = seeded()
    order = sandbox.place_order([("MUG", 2)])
    response = await call(sandbox, "PUT", f"wc/v3/orders/{order.order_id}",
                          body={"status": target})
    assert response.json()["status"] == target
    assert sandbox.orders[order.order_id].state == state
    if target == "cancelled":
        assert sandbox.stock_of("MUG") == 7  # stock comes back
    bad = await call(sandbox, "PUT", f"wc/v3/orders/{order.order_id}",
                     body={"status": "shipped"})
    assert (bad.status_code, bad.json()["code"]) == (400, "rest_invalid_param")


def test_webhook_body_is_php_encoded_and_signed() -> None:
    sandbox, _ = seeded()
    sandbox.place_order([("MUG", 1)])
    (push,) = sandbox.pushes
    assert b"\\/" in push.body and b"https://" not in push.body
    expected = base64.b64encode(hmac.new(sandbox.webhook_secret.encode(), push.body,
                                         hashlib.sha256).digest()).decode()
    assert push.headers["X-WC-Webhook-Signature"] == expected
    assert push.headers["X-WC-Webhook-Topic"] == "order.created"
    assert json.loads(push.body)["status"] == "processing"


def test_two_deliveries_in_one_second_share_a_delivery_id() -> None:
    sandbox, _ = seeded()
    order = sandbox.place_order([("MUG", 1)])
    sandbox.set_status(order.order_id, "on-hold")
    first, second = sandbox.pushes
    assert first.headers["X-WC-Webhook-Delivery-ID"] == second.headers["X-WC-Webhook-Delivery-ID"]
    assert first.body != second.body


def test_ping_is_form_encoded_and_unsigned() -> None:
    sandbox, _ = seeded()
    ping = sandbox.ping_delivery()
    assert ping.body == b"webhook_id=11"
    assert not any(k.lower().startswith("x-wc-webhook") for k in ping.headers)
