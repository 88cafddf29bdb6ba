"""WooCommerce envelope: the reference's worked signature examples byte for byte, the exact
requests the sandbox receives (Basic over HTTPS, OAuth 1.0a over HTTP), the error table."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from connectors.woocommerce.client import (
    WooClient,
    oauth1_base_string,
    oauth1_signature,
    webhook_signature,
)
from connectors.woocommerce.connector import WooCommerceConnector
from connectors.woocommerce.sandbox import WooCommerceSandbox
from core.clock import ManualClock
from core.errors import AuthExpired, BadResponse, NotFound, RateLimited, Rejected, Transient
from core.testing import connect

FIXTURES = Path(__file__).parents[3] / "connectors" / "woocommerce" / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def make_client(**options: Any) -> WooClient:
    sandbox = WooCommerceSandbox(clock=ManualClock())
    connector = connect(WooCommerceConnector, sandbox, options=options)
    assert isinstance(connector, WooCommerceConnector)
    return connector.client


def answer(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.Response(status, content=body, headers=headers or {})


# -- worked examples (reference §7) -----------------------------------------------------------

WEBHOOK_SECRET = "wc_example_webhook_secret"
WEBHOOK_BODY = (b'{"id":727,"status":"processing","date_modified_gmt":"2026-11-21T15:00:00",'
                b'"_links":{"self":[{"href":"https:\\/\\/shop.example.com\\/wp-json\\/wc\\/v3'
                b'\\/orders\\/727"}]}}')


def test_worked_webhook_signature_byte_for_byte() -> None:
    assert webhook_signature(WEBHOOK_SECRET, WEBHOOK_BODY) == \
        "+p2ipS7T81ZR7NYLs919An+7V5AVCoCZpyqLq1HVylI="


def test_reserialised_body_does_not_verify() -> None:
    reserialised = json.dumps(json.loads(WEBHOOK_BODY), separators=(",", ":")).encode()
    assert b"\\/" not in reserialised
    assert webhook_signature(WEBHOOK_SECRET, reserialised) == \
        "w17AmKBJhsW6dgbR7EDOC8mCU+pcMvdbKPm7bC9J3mQ="


OAUTH_PARAMS = {
    "per_page": "100", "modified_after": "2026-11-20T00:00:00",
    "oauth_consumer_key": "ck_example", "oauth_nonce": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
    "oauth_signature_method": "HMAC-SHA256", "oauth_timestamp": "1795352400",
}
OAUTH_URL = "http://shop.example.com/wp-json/wc/v3/orders"


def test_worked_oauth_base_string_byte_for_byte() -> None:
    assert oauth1_base_string("GET", OAUTH_URL, OAUTH_PARAMS) == (
        "GET&http%3A%2F%2Fshop.example.com%2Fwp-json%2Fwc%2Fv3%2Forders&modified_after%3D"
        "2026-11-20T00%253A00%253A00%26oauth_consumer_key%3Dck_example%26oauth_nonce%3D"
        "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6%26oauth_signature_method%3DHMAC-SHA256%26"
        "oauth_timestamp%3D1795352400%26per_page%3D100")


def test_worked_oauth_signature_byte_for_byte() -> None:
    assert oauth1_signature("GET", OAUTH_URL, OAUTH_PARAMS, "cs_example") == \
        "ZIU6QooQsjsTDAcLNYZ7HJLxubjABKZjg+xmNSI6/vE="
    with pytest.raises(ValueError):
        oauth1_signature("GET", OAUTH_URL, OAUTH_PARAMS, "cs_example", "PLAINTEXT")


# -- what the sandbox receives ----------------------------------------------------------------

async def test_basic_auth_request_the_sandbox_receives() -> None:
    clock = ManualClock()
    sandbox = WooCommerceSandbox(clock=clock)
    sandbox.add_item("Mug", "MUG", 500, quantity=3)
    order = sandbox.place_order([("MUG", 1)])
    connector = connect(WooCommerceConnector, sandbox, clock=clock)
    await connector.get_order(order.order_id)
    request = sandbox.requests[-1].request
    assert (request.method, request.path) == ("GET", f"/wp-json/wc/v3/orders/{order.order_id}")
    assert request.headers["host"] == "test-shop"
    expected = base64.b64encode(f"{sandbox.app_key}:{sandbox.app_secret}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert dict(request.query) == {}
    assert sandbox.requests[-1].api == "GET /wc/v3/orders/{id}"


async def test_oauth_over_plain_http_is_signed_and_accepted() -> None:
    clock = ManualClock()
    sandbox = WooCommerceSandbox(clock=clock, https=False, site_url="http://shop.example.com")
    sandbox.add_item("Mug", "MUG", 500, quantity=3)
    start = clock.now()
    sandbox.place_order([("MUG", 1)])
    connector = connect(WooCommerceConnector, sandbox, clock=clock,
                        base_url="http://shop.example.com")
    records = [r async for r in connector.iter_orders(start, start + timedelta(minutes=5))]
    assert len(records) == 1
    request = sandbox.requests[-1].request
    assert "authorization" not in request.headers
    query = dict(request.query)
    assert query["oauth_consumer_key"] == sandbox.app_key
    assert query["oauth_signature_method"] == "HMAC-SHA256"
    assert query["oauth_timestamp"] == str(int(clock.now().timestamp()))
    assert "consumer_secret" not in query and sandbox.app_secret not in json.dumps(query)
    signed = {k: v for k, v in query.items() if k != "oauth_signature"}
    assert query["oauth_signature"] == oauth1_signature(
        "GET", "http://shop.example.com/wp-json/wc/v3/orders", signed, sandbox.app_secret)


def test_basic_or_query_keys_over_plain_http_are_refused_before_sending() -> None:
    sandbox = WooCommerceSandbox(clock=ManualClock(), https=False)
    with pytest.raises(ValueError):
        connect(WooCommerceConnector, sandbox, base_url="http://shop.example.com",
                options={"auth": "basic"})


def test_query_string_keys_when_the_host_strips_authorization() -> None:
    client = make_client(auth="query")
    request = client.build_request("GET wc/v3/orders", {"page": 2, "dates_are_gmt": True}, "")
    query = dict(parse_qsl(request.url.query.decode()))
    assert query == {"page": "2", "dates_are_gmt": "true", "consumer_key": client.shop.app_key,
                     "consumer_secret": client.shop.app_secret.reveal()}
    assert "authorization" not in request.headers


def test_writes_send_json_bodies() -> None:
    client = make_client()
    request = client.build_request("POST wc/v3/products/batch",
                                   {"update": [{"id": 1, "stock_quantity": 3}]}, "")
    assert str(request.url) == "https://test-shop/wp-json/wc/v3/products/batch"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"update": [{"id": 1, "stock_quantity": 3}]}


# -- answers and the error table ---------------------------------------------------------

def test_paging_headers_are_read() -> None:
    reply = make_client().parse_response("GET wc/v3/orders", answer(
        fixture("orders_list_page.json"), headers={"X-WP-Total": "152",
                                                   "X-WP-TotalPages": "2"}))
    assert (reply.total, reply.total_pages, len(reply.data)) == (152, 2, 2)


@pytest.mark.parametrize(("name", "status", "error", "code"), [
    ("error_401_cannot_view.json", 401, AuthExpired, "woocommerce_rest_cannot_view"),
    ("error_401_authentication.json", 401, AuthExpired, "woocommerce_rest_authentication_error"),
    ("error_400_per_page.json", 400, Rejected, "rest_invalid_param"),
    ("error_413_batch.json", 413, Rejected, "woocommerce_rest_request_entity_too_large"),
    ("error_404_order.json", 404, NotFound, "woocommerce_rest_shop_order_invalid_id"),
])
def test_error_fixtures(name: str, status: int, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as caught:
        make_client().parse_response("GET wc/v3/orders", answer(fixture(name), status))
    assert getattr(caught.value, "code", "") == code


@pytest.mark.parametrize(("payload", "status", "headers", "error"), [
    (b"<html>Too Many Requests</html>", 429, {"Retry-After": "7"}, RateLimited),
    (b"<html>502</html>", 502, {}, Transient),
    ({"code": "internal_server_error", "message": "critical", "data": {"status": 500}}, 500, {},
     Transient),
    ({"code": "woocommerce_rest_cannot_view", "message": "no", "data": {"status": 403}}, 403, {},
     Rejected),
    (b"<!DOCTYPE html><p>maintenance</p>", 200, {}, BadResponse),
])
def test_error_bodies(payload: Any, status: int, headers: dict[str, str],
                      error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        make_client().parse_response("GET wc/v3/orders", answer(payload, status, headers))
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 7.0


def test_batch_answer_errors_are_kept_per_item() -> None:
    sandbox = WooCommerceSandbox(clock=ManualClock())
    connector = connect(WooCommerceConnector, sandbox)
    assert isinstance(connector, WooCommerceConnector)
    ok, missing = fixture("variations_batch_partial.json")["update"]
    assert connector._item_error(ok) is None
    assert isinstance(connector._item_error(missing), NotFound)
    assert isinstance(connector._item_error(None), BadResponse)


async def test_provider_list_and_tracking_item_fixtures() -> None:
    clock = ManualClock()
    sandbox = WooCommerceSandbox(clock=clock)
    connector = connect(WooCommerceConnector, sandbox, clock=clock)
    assert isinstance(connector, WooCommerceConnector)
    reply = connector.client.parse_response(
        "GET wc-shipment-tracking/v3/shipment-trackings/providers",
        answer(fixture("shipment_tracking_providers.json")))
    names = {n for group in reply.data.values() for n in group}
    assert {"UPS", "USPS", "Fedex"} <= names
    created = connector.client.parse_response(
        "POST wc-shipment-tracking/v3/orders/1501/shipment-trackings",
        answer(fixture("shipment_tracking_created.json"), 201))
    assert (created.status, created.data["tracking_number"]) == (201, "1Z999AA10123456784")
