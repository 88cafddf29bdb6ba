"""Shopify envelope: the reference's worked HMAC example byte for byte, the exact request
the sandbox receives, throttle classification and the error table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.shopify.client import (
    TOKEN_API,
    CostBudget,
    ShopifyClient,
    ShopifySettings,
    throttle_wait,
    webhook_signature,
)
from connectors.shopify.connector import ShopifyConnector
from connectors.shopify.operations import DOCUMENTS
from connectors.shopify.sandbox import ShopifySandbox
from core.clock import ManualClock
from core.errors import AuthExpired, BadResponse, NotFound, RateLimited, Rejected, Transient
from core.testing import connect

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "samples" / "shopify"
FIXTURES = Path(__file__).parents[3] / "connectors" / "shopify" / "fixtures"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def make_client() -> ShopifyClient:
    sandbox = ShopifySandbox(clock=ManualClock())
    connector = connect(ShopifyConnector, sandbox)
    assert isinstance(connector, ShopifyConnector)
    return connector.client


def answer(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.Response(status, content=body, headers=headers or {})


# -- the worked HMAC example (reference §9) -------------------------------------------------

SECRET = "shpss_example_app_secret"
BODY = b'{"id":820982911946154508,"name":"#1001","updated_at":"2026-11-21T10:00:00-05:00"}'


def test_worked_hmac_example_byte_for_byte() -> None:
    assert len(BODY) == 81
    assert webhook_signature(SECRET, BODY) == "5AmJwVRoW1wjRk1GC3NshJgJoHpL/xbG/RT6oJbRupM="


def test_worked_hmac_example_tampered_body() -> None:
    tampered = BODY.replace(b"#1001", b"#1002")
    assert webhook_signature(SECRET, tampered) == "HrNhUeupKUufP892D5+zR1ZUWXWWPjMKvPzi0UgkEkw="


def test_worked_hmac_hex_digest() -> None:
    import hashlib
    import hmac

    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert digest == "e40989c154685b5c23464d460b736c849809a07a4bff16c6fd14faa096d1ba93"


# -- what the sandbox receives ------------------------------------------------------------

async def test_signed_request_the_sandbox_receives() -> None:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock)
    connector = connect(ShopifyConnector, sandbox, clock=clock)
    with pytest.raises(NotFound):
        await connector.get_order("123")
    request = sandbox.requests[-1].request
    assert request.method == "POST"
    assert request.path == "/admin/api/2026-10/graphql.json"
    assert request.headers["x-shopify-access-token"] == "sandbox-access-token-1"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert body == {"query": DOCUMENTS["ErpsyncOrder"], "operationName": "ErpsyncOrder",
                    "variables": {"id": "gid://shopify/Order/123"}}
    assert sandbox.requests[-1].api == "ErpsyncOrder"


async def test_api_version_and_shop_host_come_from_options() -> None:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock)
    connector = connect(ShopifyConnector, sandbox, clock=clock,
                        options={"api_version": "2027-01", "shop": "acme"})
    assert isinstance(connector, ShopifyConnector)
    assert connector.client.graphql_url == \
        "https://acme.myshopify.com/admin/api/2027-01/graphql.json"
    with pytest.raises(NotFound):
        await connector.get_order("1")
    assert sandbox.requests[-1].request.path == "/admin/api/2027-01/graphql.json"


def test_token_refresh_request_shape() -> None:
    client = make_client()
    request = client.build_request(TOKEN_API, {"refresh_token": "shprt_old"}, "")
    assert request.method == "POST"
    assert str(request.url) == "https://test-shop.myshopify.com/admin/oauth/access_token"
    assert "x-shopify-access-token" not in request.headers
    assert json.loads(request.content) == {
        "client_id": "sandbox-client-id", "client_secret": "shpss_sandbox_app_secret_0001",
        "grant_type": "refresh_token", "refresh_token": "shprt_old"}


def test_token_refresh_answer_and_refusal() -> None:
    client = make_client()
    good = client.parse_response(TOKEN_API, answer(fixture("oauth_token_refresh.json")))
    assert good["refresh_token"] == "shprt_example_rotated_refresh_token"
    with pytest.raises(AuthExpired):
        client.parse_response(TOKEN_API, answer({"error": "invalid_grant"}, 400))
    with pytest.raises(Transient):
        client.parse_response(TOKEN_API, answer(b"<html>bad gateway</html>", 502))


# -- throttling ------------------------------------------------------------------------------

def test_legacy_throttle_without_code_is_rate_limited_with_computed_wait() -> None:
    case = sample("graphql_throttled_legacy_no_code.json")
    client = make_client()
    with pytest.raises(RateLimited) as caught:
        client.parse_response("ErpsyncOrders", answer(case["payload"], case["expect"]["http_status"]))
    assert caught.value.retry_after == case["expect"]["retry_after_seconds"] == 4
    assert case["expect"]["error_class"] == "rate_limited"


def test_throttle_with_code_is_rate_limited_even_when_cost_block_looks_healthy() -> None:
    case = sample("graphql_throttled_with_cost.json")
    client = make_client()
    with pytest.raises(RateLimited) as caught:
        client.parse_response("ErpsyncOrders", answer(case["payload"], case["expect"]["http_status"]))
    assert caught.value.code == case["expect"]["platform_code"] == "THROTTLED"
    # (8 - 994) / 50 is negative: the wait falls back to the configured minimum
    assert caught.value.retry_after == ShopifySettings().min_throttle_wait


def test_throttle_at_http_429_is_still_read_from_the_body() -> None:
    client = make_client()
    with pytest.raises(RateLimited) as caught:
        client.parse_response("ErpsyncOrders", answer(fixture("graphql_throttled.json"), 429))
    assert caught.value.retry_after == pytest.approx((752 - 452) / 100)


def test_throttle_wait_formula() -> None:
    extensions = {"cost": {"requestedQueryCost": 300, "throttleStatus": {
        "currentlyAvailable": 100, "restoreRate": 50.0}}}
    assert throttle_wait(extensions, 0.5) == 4.0
    assert throttle_wait({}, 0.5) is None


def test_cost_budget_waits_until_the_bucket_can_pay() -> None:
    budget = CostBudget()
    assert budget.wait_before("ErpsyncOrders", 0.0) == 0.0  # nothing known yet
    budget.update("ErpsyncOrders", {"requestedQueryCost": 752, "throttleStatus": {
        "maximumAvailable": 1000.0, "currentlyAvailable": 552, "restoreRate": 100.0}}, 10.0)
    assert budget.wait_before("ErpsyncOrders", 10.0) == pytest.approx(2.0)
    assert budget.wait_before("ErpsyncOrders", 11.0) == pytest.approx(1.0)
    assert budget.wait_before("ErpsyncOrders", 20.0) == 0.0


# -- the error table --------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "status", "error"), [
    ("http_401_invalid_token.json", 401, AuthExpired),
    ("graphql_max_cost_exceeded.json", 200, Rejected),
])
def test_error_fixtures_map_to_canonical_errors(name: str, status: int,
                                                error: type[Exception]) -> None:
    with pytest.raises(error):
        make_client().parse_response("ErpsyncOrders", answer(fixture(name), status))


@pytest.mark.parametrize(("payload", "status", "error"), [
    ({"errors": [{"message": "Internal error", "extensions": {
        "code": "INTERNAL_SERVER_ERROR"}}]}, 200, Transient),
    ({"errors": "Not Found"}, 404, NotFound),
    ({"errors": "Unavailable Shop"}, 402, Rejected),
    (b"<html>502 Bad Gateway</html>", 502, Transient),
    (b'{"data": {"order": ', 200, BadResponse),
    ({"errors": [{"message": "Access denied for orders field.", "extensions": {
        "code": "ACCESS_DENIED"}}]}, 200, Rejected),
])
def test_error_bodies(payload: Any, status: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        make_client().parse_response("ErpsyncOrders", answer(payload, status))


def test_no_secret_in_error_messages() -> None:
    client = make_client()
    with pytest.raises(AuthExpired) as caught:
        client.parse_response(TOKEN_API, answer({"error": "invalid_client",
                                                 "error_description": "bad"}, 401))
    assert "shpss_sandbox_app_secret_0001" not in str(caught.value)


def test_user_errors_name_already_shipped_from_the_message() -> None:
    client = make_client()
    payload = fixture("graphql_fulfillment_create_closed.json")
    errors = payload["data"]["fulfillmentCreate"]["userErrors"]
    error = client.user_error("ErpsyncFulfillmentCreate", errors)
    assert isinstance(error, Rejected)
    assert error.reason == "already_shipped"
    stale = fixture("graphql_inventory_set_stale.json")["data"]["inventorySetQuantities"]
    error = client.user_error("ErpsyncInventorySet", stale["userErrors"])
    assert isinstance(error, Rejected)
    assert (error.code, error.reason) == ("CHANGE_FROM_QUANTITY_STALE", "stale_quantity")


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("graphql_*.json")))
def test_every_graphql_fixture_parses_to_data_or_a_canonical_error(name: str) -> None:
    client = make_client()
    payload = fixture(name)
    if "errors" in payload:
        with pytest.raises((RateLimited, Rejected)):
            client.parse_response("ErpsyncOrders", answer(payload))
        return
    data = client.parse_response("ErpsyncOrders", answer(payload))
    assert data == payload["data"]
    assert client.budget.available == payload["extensions"]["cost"]["throttleStatus"][
        "currentlyAvailable"]
    for mutation in ("inventorySetQuantities", "fulfillmentCreate"):
        if mutation in data:
            errors = data[mutation]["userErrors"]
            assert bool(errors) == ("closed" in name or "stale" in name)
