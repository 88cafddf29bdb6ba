"""The Shopify sandbox refuses what Shopify refuses: spoken to directly over its transport."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from connectors.shopify.operations import DOCUMENTS
from connectors.shopify.sandbox import ShopifySandbox
from core.clock import ManualClock

TOKEN = "sandbox-access-token-1"


async def gql(sandbox: ShopifySandbox, name: str, variables: dict[str, Any] | None = None, *,
              document: str | None = None, version: str = "2026-10",
              token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(transport=sandbox.transport()) as http:
        response = await http.post(
            f"https://s.myshopify.com/admin/api/{version}/graphql.json",
            headers={"X-Shopify-Access-Token": token},
            json={"query": document or DOCUMENTS[name], "operationName": name,
                  "variables": variables or {}})
    return response.status_code, response.json()


def seeded() -> tuple[ShopifySandbox, ManualClock]:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock)
    sandbox.add_item("Mug", "MUG", 1250, skus=[("MUG-BLU", 9, 1250), ("MUG-RED", 4, 1250)])
    return sandbox, clock


def inventory_ids(sandbox: ShopifySandbox, code: str) -> str:
    _, sku = sandbox.find_sku(code)
    assert sku is not None
    return f"gid://shopify/InventoryItem/{sandbox.inventory_items[sku.sku_id]}"


def set_input(sandbox: ShopifySandbox, code: str, quantity: int, change_from: Any,
              **extra: Any) -> dict[str, Any]:
    entry = {"inventoryItemId": inventory_ids(sandbox, code),
             "locationId": f"gid://shopify/Location/{sandbox.location_id}",
             "quantity": quantity, "changeFromQuantity": change_from, **extra}
    return {"name": "available", "reason": "correction",
            "referenceDocumentUri": "gid://erpsync/StockSync/test", "quantities": [entry]}


async def test_unknown_token_is_refused_with_shopifys_401() -> None:
    sandbox, _ = seeded()
    status, body = await gql(sandbox, "ErpsyncShop", token="nope")
    assert status == 401
    assert body == {"errors": "[API] Invalid API key or access token (unrecognized login or "
                              "wrong password)"}


async def test_every_answer_reports_its_cost() -> None:
    sandbox, _ = seeded()
    status, body = await gql(sandbox, "ErpsyncShop")
    assert status == 200
    cost = body["extensions"]["cost"]
    assert set(cost["throttleStatus"]) == {"maximumAvailable", "currentlyAvailable",
                                           "restoreRate"}
    assert cost["requestedQueryCost"] >= cost["actualQueryCost"]


async def test_bucket_throttles_then_refills_with_time() -> None:
    clock = ManualClock()
    sandbox = ShopifySandbox(clock=clock, bucket_size=1000.0, restore_rate=50.0)
    variables = {"query": "", "first": 15}
    first, _ = await gql(sandbox, "ErpsyncOrders", variables)
    assert first == 200  # 752 of 1000; 250 actually drained
    _, second = await gql(sandbox, "ErpsyncOrders", variables)
    _, third = await gql(sandbox, "ErpsyncOrders", variables)
    throttled = [b for b in (second, third) if "errors" in b]
    assert throttled, "the bucket should run dry"
    error = throttled[0]
    assert error["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert "data" not in error
    assert error["extensions"]["cost"]["actualQueryCost"] is None
    clock.advance(timedelta(seconds=20))  # 20 s × 50 pts/s refills the bucket
    status, body = await gql(sandbox, "ErpsyncOrders", variables)
    assert status == 200 and "data" in body


async def test_single_query_above_max_cost_is_refused() -> None:
    sandbox, _ = seeded()
    _, body = await gql(sandbox, "ErpsyncOrders", {"query": "", "first": 25})
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


async def test_page_size_above_250_is_refused() -> None:
    sandbox, _ = seeded()
    _, body = await gql(sandbox, "ErpsyncVariants", {"first": 251})
    assert "errors" in body and "data" not in body


async def test_unknown_operation_and_missing_query_are_refused() -> None:
    sandbox, _ = seeded()
    _, body = await gql(sandbox, "Whatever", document="query Whatever { shop { name } }")
    assert body["errors"][0]["extensions"]["code"] == "UNSIMULATED_OPERATION"
    async with httpx.AsyncClient(transport=sandbox.transport()) as http:
        response = await http.post("https://s.myshopify.com/admin/api/2026-10/graphql.json",
                                   headers={"X-Shopify-Access-Token": TOKEN}, json={})
    assert response.status_code == 400


async def test_compare_and_swap_stale_value_changes_nothing() -> None:
    sandbox, _ = seeded()
    _, body = await gql(sandbox, "ErpsyncInventorySet",
                        {"key": "k-1", "input": set_input(sandbox, "MUG-BLU", 3, 8)})
    errors = body["data"]["inventorySetQuantities"]["userErrors"]
    assert [e["code"] for e in errors] == ["CHANGE_FROM_QUANTITY_STALE"]
    assert errors[0]["field"] == ["input", "quantities", "0", "changeFromQuantity"]
    assert sandbox.stock_of("MUG-BLU") == 9


async def test_compare_and_swap_match_applies_and_reports_changes() -> None:
    sandbox, _ = seeded()
    _, body = await gql(sandbox, "ErpsyncInventorySet",
                        {"key": "k-1", "input": set_input(sandbox, "MUG-BLU", 3, 9)})
    payload = body["data"]["inventorySetQuantities"]
    assert payload["userErrors"] == []
    assert payload["inventoryAdjustmentGroup"]["changes"] == [
        {"name": "available", "delta": -6, "quantityAfterChange": 3}]
    assert sandbox.stock_of("MUG-BLU") == 3


async def test_null_change_from_is_an_unconditional_set() -> None:
    sandbox, _ = seeded()
    _, body = await gql(sandbox, "ErpsyncInventorySet",
                        {"key": "k-1", "input": set_input(sandbox, "MUG-BLU", 5, None)})
    assert body["data"]["inventorySetQuantities"]["userErrors"] == []
    assert sandbox.stock_of("MUG-BLU") == 5


async def test_change_from_must_be_present_from_2026_04() -> None:
    sandbox, _ = seeded()
    data = set_input(sandbox, "MUG-BLU", 5, None)
    del data["quantities"][0]["changeFromQuantity"]
    _, body = await gql(sandbox, "ErpsyncInventorySet", {"key": "k-1", "input": data})
    assert "data" not in body and body["errors"]
    assert sandbox.stock_of("MUG-BLU") == 9


async def test_idempotent_directive_is_required_from_2026_04() -> None:
    sandbox, _ = seeded()
    document = DOCUMENTS["ErpsyncInventorySet"].replace(" @idempotent(key: $key)", "")
    _, body = await gql(sandbox, "ErpsyncInventorySet",
                        {"key": "k", "input": set_input(sandbox, "MUG-BLU", 5, 9)},
                        document=document)
    assert body["errors"] and sandbox.stock_of("MUG-BLU") == 9


async def test_compare_quantity_before_2026_01() -> None:
    sandbox, _ = seeded()
    document = DOCUMENTS["ErpsyncInventorySet"].replace(" @idempotent(key: $key)", "")
    data = set_input(sandbox, "MUG-BLU", 5, None)
    del data["quantities"][0]["changeFromQuantity"]
    _, body = await gql(sandbox, "ErpsyncInventorySet", {"key": "k", "input": data},
                        document=document, version="2025-10")
    codes = [e["code"] for e in body["data"]["inventorySetQuantities"]["userErrors"]]
    assert codes == ["COMPARE_QUANTITY_REQUIRED"]
    data["quantities"][0]["compareQuantity"] = 9
    _, body = await gql(sandbox, "ErpsyncInventorySet", {"key": "k", "input": data},
                        document=document, version="2025-10")
    assert body["data"]["inventorySetQuantities"]["userErrors"] == []
    assert sandbox.stock_of("MUG-BLU") == 5


async def test_idempotency_replay_mismatch_and_failed_key() -> None:
    sandbox, _ = seeded()
    data = set_input(sandbox, "MUG-BLU", 3, 9)
    _, first = await gql(sandbox, "ErpsyncInventorySet", {"key": "k-1", "input": data})
    sandbox.find_sku("MUG-BLU")[1].quantity = 20  # type: ignore[union-attr]  # a sale, a restock
    _, replay = await gql(sandbox, "ErpsyncInventorySet", {"key": "k-1", "input": data})
    assert replay["data"] == first["data"]  # the first result, nothing applied again
    assert sandbox.stock_of("MUG-BLU") == 20
    _, mismatch = await gql(sandbox, "ErpsyncInventorySet",
                            {"key": "k-1", "input": set_input(sandbox, "MUG-BLU", 4, 20)})
    assert [e["code"] for e in mismatch["data"]["inventorySetQuantities"]["userErrors"]] == [
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]
    stale = set_input(sandbox, "MUG-BLU", 4, 1)
    await gql(sandbox, "ErpsyncInventorySet", {"key": "k-2", "input": stale})
    _, again = await gql(sandbox, "ErpsyncInventorySet", {"key": "k-2", "input": stale})
    assert [e["code"] for e in again["data"]["inventorySetQuantities"]["userErrors"]] == [
        "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"]


async def test_inventory_set_is_all_or_nothing() -> None:
    sandbox, _ = seeded()
    data = set_input(sandbox, "MUG-BLU", 3, 9)
    red = set_input(sandbox, "MUG-RED", -1, 4)["quantities"][0]
    data["quantities"].append(red)
    _, body = await gql(sandbox, "ErpsyncInventorySet", {"key": "k-1", "input": data})
    errors = body["data"]["inventorySetQuantities"]["userErrors"]
    assert [(e["code"], e["field"][2]) for e in errors] == [("INVALID_QUANTITY_NEGATIVE", "1")]
    assert (sandbox.stock_of("MUG-BLU"), sandbox.stock_of("MUG-RED")) == (9, 4)


async def test_bad_reason_and_unknown_item() -> None:
    sandbox, _ = seeded()
    data = set_input(sandbox, "MUG-BLU", 3, 9)
    data["reason"] = "because"
    data["quantities"][0]["inventoryItemId"] = "gid://shopify/InventoryItem/1"
    _, body = await gql(sandbox, "ErpsyncInventorySet", {"key": "k-1", "input": data})
    codes = {e["code"] for e in body["data"]["inventorySetQuantities"]["userErrors"]}
    assert codes == {"INVALID_REASON", "INVALID_INVENTORY_ITEM"}


async def test_fulfillment_create_rules() -> None:
    sandbox, _ = seeded()
    order = sandbox.place_order([("MUG-BLU", 2)])
    _, fos = await gql(sandbox, "ErpsyncFulfillmentOrders",
                       {"id": f"gid://shopify/Order/{order.order_id}"})
    fo = fos["data"]["order"]["fulfillmentOrders"]["nodes"][0]
    line = fo["lineItems"]["nodes"][0]
    assert (fo["status"], line["remainingQuantity"]) == ("OPEN", 2)

    def create(quantity: int, **tracking: Any) -> dict[str, Any]:
        return {"fulfillment": {"lineItemsByFulfillmentOrder": [{
            "fulfillmentOrderId": fo["id"],
            "fulfillmentOrderLineItems": [{"id": line["id"], "quantity": quantity}]}],
            "trackingInfo": tracking}}

    _, body = await gql(sandbox, "ErpsyncFulfillmentCreate",
                        create(3, company="UPS", number="1Z1"))
    assert body["data"]["fulfillmentCreate"]["userErrors"][0]["message"] == \
        "Invalid fulfillment order line item quantity requested."
    _, body = await gql(sandbox, "ErpsyncFulfillmentCreate",
                        create(2, company="UPS", url="https://ups.example/1"))
    assert body["data"]["fulfillmentCreate"]["userErrors"]
    _, body = await gql(sandbox, "ErpsyncFulfillmentCreate",
                        create(1, company="Any Courier Ltd", number="AC-1"))
    assert body["data"]["fulfillmentCreate"]["userErrors"] == []  # free-text carrier names
    _, body = await gql(sandbox, "ErpsyncFulfillmentCreate",
                        create(1, company="UPS", number="1Z2"))
    assert body["data"]["fulfillmentCreate"]["userErrors"] == []
    _, body = await gql(sandbox, "ErpsyncFulfillmentCreate",
                        create(1, company="UPS", number="1Z3"))
    message = body["data"]["fulfillmentCreate"]["userErrors"][0]["message"]
    assert message == f"Fulfillment order {fo['id'].rsplit('/', 1)[1]} has an unfulfillable " \
                      "status= closed."
    assert sandbox.orders[order.order_id].state == "shipped"


async def test_orders_older_than_sixty_days_are_hidden() -> None:
    sandbox, clock = seeded()
    old = sandbox.place_order([("MUG-BLU", 1)])
    clock.advance(timedelta(days=61))
    _, body = await gql(sandbox, "ErpsyncOrder", {"id": f"gid://shopify/Order/{old.order_id}"})
    assert body["data"]["order"] is None
    sandbox.read_all_orders = True
    _, body = await gql(sandbox, "ErpsyncOrder", {"id": f"gid://shopify/Order/{old.order_id}"})
    assert body["data"]["order"]["name"] == "#1001"


async def test_orders_search_window_and_cursor_paging() -> None:
    sandbox, clock = seeded()
    start = clock.now()
    for _ in range(4):
        sandbox.place_order([("MUG-RED", 1)])
        clock.advance(timedelta(minutes=1))
    later = sandbox.place_order([("MUG-BLU", 1)])
    query = (f"updated_at:>='{start.strftime('%Y-%m-%dT%H:%M:%S%z')}' "
             f"updated_at:<'{later.modified.strftime('%Y-%m-%dT%H:%M:%S%z')}'")
    seen: list[str] = []
    after: str | None = None
    while True:
        _, body = await gql(sandbox, "ErpsyncOrders", {"query": query, "first": 3,
                                                       "after": after})
        connection = body["data"]["orders"]
        seen.extend(node["id"] for node in connection["nodes"])
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 4
    assert f"gid://shopify/Order/{later.order_id}" not in seen


async def test_token_endpoint_rotates_and_refuses() -> None:
    sandbox, _ = seeded()

    async def exchange(**body: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=sandbox.transport()) as http:
            return await http.post("https://s.myshopify.com/admin/oauth/access_token", json=body)

    good = dict(client_id=sandbox.app_key, client_secret=sandbox.app_secret,
                grant_type="refresh_token", refresh_token="sandbox-refresh-token-1")
    wrong = await exchange(**{**good, "client_secret": "nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    answer = await exchange(**good)
    assert answer.status_code == 200
    tokens = answer.json()
    assert tokens["expires_in"] == 3600
    assert tokens["refresh_token"] != "sandbox-refresh-token-1"
    reused = await exchange(**good)  # the old refresh token was rotated away
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    status, _ = await gql(sandbox, "ErpsyncShop", token=TOKEN)
    assert status == 401
    status, _ = await gql(sandbox, "ErpsyncShop", token=tokens["access_token"])
    assert status == 200


def test_webhook_is_signed_with_the_app_secret_and_shopify_headers() -> None:
    import base64
    import hashlib
    import hmac

    sandbox, _ = seeded()
    sandbox.place_order([("MUG-BLU", 1)])
    (push,) = sandbox.pushes
    expected = base64.b64encode(hmac.new(sandbox.app_secret.encode(), push.body,
                                         hashlib.sha256).digest()).decode()
    assert push.headers["X-Shopify-Hmac-Sha256"] == expected
    assert push.headers["X-Shopify-Topic"] == "orders/create"
    assert {"X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Triggered-At",
            "X-Shopify-Shop-Domain", "X-Shopify-API-Version"} <= set(push.headers)
    body = json.loads(push.body)
    assert body["financial_status"] == "paid" and body["line_items"][0]["sku"] == "MUG-BLU"


@pytest.mark.parametrize("state", ["unpaid", "paid", "cancelled"])
async def test_lifecycle_states_render_as_shopify_statuses(state: str) -> None:
    sandbox, _ = seeded()
    order = sandbox.place_order([("MUG-BLU", 1)], paid=state != "unpaid")
    if state == "cancelled":
        sandbox.cancel(order.order_id)
    _, body = await gql(sandbox, "ErpsyncOrder", {"id": f"gid://shopify/Order/{order.order_id}"})
    node = body["data"]["order"]
    expected = {"unpaid": ("PENDING", None), "paid": ("PAID", None),
                "cancelled": ("REFUNDED", "set")}[state]
    assert node["displayFinancialStatus"] == expected[0]
    assert (node["cancelledAt"] is not None) == (expected[1] is not None)
