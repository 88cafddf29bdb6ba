"""The JD sandbox refuses what the gateway refuses, with the gateway's own codes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from connectors.jd.client import param_json, sign
from connectors.jd.sandbox import JdSandbox
from core.clock import ManualClock, format_beijing
from core.sandbox import Fault

FIELDS = "orderId,orderState,waybill,logisticsId"


@pytest.fixture
def sandbox() -> JdSandbox:
    box = JdSandbox(clock=ManualClock())
    box.add_item("耳机", "HS", 19900, skus=[("HS-BLK", 10, 19900)])
    return box


def envelope(sandbox: JdSandbox, method: str, business: dict[str, Any],
             **system: str) -> dict[str, str]:
    params = {"method": method, "app_key": sandbox.app_key, "v": "2.0",
              "access_token": "sandbox-access-token-1",
              "timestamp": format_beijing(sandbox.clock.now()),
              "360buy_param_json": param_json(business), **system}
    params["sign"] = sign(params, sandbox.app_secret)
    return params


async def send(sandbox: JdSandbox, params: dict[str, str], *, query: bool = False) -> Any:
    async with httpx.AsyncClient(transport=sandbox.transport(),
                                 base_url="http://sandbox") as client:
        if query:  # JD's Python SDK: everything in the URL, empty body
            response = await client.post("/routerjson", params=params)
        else:
            response = await client.post("/routerjson", content=urlencode(params), headers={
                "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    return response.json()


def gateway_code(body: dict[str, Any]) -> str:
    return str(body["error_response"]["code"])


def search(business: dict[str, Any]) -> dict[str, Any]:
    return {"optional_fields": FIELDS, "order_state": "WAIT_SELLER_STOCK_OUT", "page": "1",
            "page_size": "100", **business}


@pytest.mark.parametrize(("tamper", "code"), [
    (lambda p: p.pop("sign"), "11"),
    (lambda p: p.update(sign="0" * 32), "12"),
    (lambda p: p.update({"360buy_param_json": '{"page":"2"}'}), "12"),
    (lambda p: p.pop("timestamp"), "7"),
    (lambda p: p.update(timestamp="2026/11/11"), "8"),
    (lambda p: p.pop("v"), "4"),
    (lambda p: p.update(app_key="other"), "21"),
])
async def test_envelope_refusals(sandbox: JdSandbox, tamper: Any, code: str) -> None:
    params = envelope(sandbox, "jingdong.pop.order.search", search({}))
    tamper(params)
    assert gateway_code(await send(sandbox, params)) == code


async def test_version_method_and_token_are_checked(sandbox: JdSandbox) -> None:
    params = envelope(sandbox, "jingdong.pop.order.search", search({}), v="1.0")
    assert gateway_code(await send(sandbox, params)) == "5"
    params = envelope(sandbox, "jingdong.no.such.method", {})
    assert gateway_code(await send(sandbox, params)) == "15"
    params = envelope(sandbox, "jingdong.pop.order.search", search({}),
                      access_token="never-issued")
    assert gateway_code(await send(sandbox, params)) == "19"


async def test_parameters_in_the_query_string_are_accepted(sandbox: JdSandbox) -> None:
    sandbox.place_order([("HS-BLK", 1)])
    body = await send(sandbox, envelope(sandbox, "jingdong.pop.order.search", search({})),
                      query=True)
    result = body["jingdong_pop_order_search_responce"]["searchorderinfo_result"]
    assert result["apiResult"]["success"] is True and result["orderTotal"] == 1
    # only the requested optional_fields come back
    assert set(result["orderInfoList"][0]) == set(FIELDS.split(","))


@pytest.mark.parametrize("business", [
    {"optional_fields": ""},
    {"page_size": "101"},
    {"order_state": "1"},
    {"order_state": "WAIT_SELLER_STOCK_OUT,FINISHED_L"},  # dates needed beyond the default
    {"start_date": "2026-09-01 00:00:00", "end_date": "2026-11-10 00:00:00"},
])
async def test_search_refusals_come_inside_api_result(sandbox: JdSandbox,
                                                      business: dict[str, Any]) -> None:
    body = await send(sandbox, envelope(sandbox, "jingdong.pop.order.search", search(business)))
    wrapper = body["jingdong_pop_order_search_responce"]
    assert wrapper["code"] == "0"
    assert wrapper["searchorderinfo_result"]["apiResult"]["success"] is False


async def test_shipment_with_several_carriers_and_manufacturer_delivery(
        sandbox: JdSandbox) -> None:
    first = sandbox.place_order([("HS-BLK", 1)])
    second = sandbox.place_order([("HS-BLK", 1)])
    body = await send(sandbox, envelope(sandbox, "jingdong.pop.order.shipment", {
        "orderId": int(first.order_id), "logiCoprId": "467|1499",
        "logiNo": "SF1402938475610|75312345678901,75312345678902"}))
    assert body["jingdong_pop_order_shipment_responce"]["sopjosshipment_result"]["success"]
    assert [s.tracking_number for s in sandbox.shipments_of(first.order_id)] == [
        "SF1402938475610", "75312345678901", "75312345678902"]
    body = await send(sandbox, envelope(sandbox, "jingdong.pop.order.shipment", {
        "orderId": int(second.order_id), "logiCoprId": "1274"}))
    assert body["jingdong_pop_order_shipment_responce"]["sopjosshipment_result"]["success"]
    assert sandbox.shipments_of(second.order_id)[0].tracking_number == ""


async def test_a_missing_waybill_is_refused(sandbox: JdSandbox) -> None:
    order = sandbox.place_order([("HS-BLK", 1)])
    body = await send(sandbox, envelope(sandbox, "jingdong.pop.order.shipment", {
        "orderId": int(order.order_id), "logiCoprId": "467"}))
    result = body["jingdong_pop_order_shipment_responce"]["sopjosshipment_result"]
    assert result["success"] is False and sandbox.shipments_of(order.order_id) == []


async def test_refresh_needs_the_app_secret_and_rotates(sandbox: JdSandbox) -> None:
    async with httpx.AsyncClient(transport=sandbox.transport(),
                                 base_url="http://sandbox") as client:
        wrong = await client.get("/oauth2/refresh_token", params={
            "app_key": sandbox.app_key, "app_secret": "nope", "grant_type": "refresh_token",
            "refresh_token": "sandbox-refresh-token-1"})
        right = await client.get("/oauth2/refresh_token", params={
            "app_key": sandbox.app_key, "app_secret": sandbox.app_secret,
            "grant_type": "refresh_token", "refresh_token": "sandbox-refresh-token-1"})
        again = await client.get("/oauth2/refresh_token", params={
            "app_key": sandbox.app_key, "app_secret": sandbox.app_secret,
            "grant_type": "refresh_token", "refresh_token": "sandbox-refresh-token-1"})
    assert wrong.json()["code"] != 0
    assert right.json()["code"] == 0 and right.json()["refresh_token"] == "sandbox-refresh-token-2"
    assert again.json()["code"] != 0  # the old refresh token stopped working


async def test_fault_answers_are_jds_own(sandbox: JdSandbox) -> None:
    sandbox.faults.inject(Fault.RATE_LIMIT)
    sandbox.faults.inject(Fault.SERVER_ERROR)
    params = envelope(sandbox, "jingdong.pop.order.search", search({}))
    assert gateway_code(await send(sandbox, params)) == "2"
    assert gateway_code(await send(sandbox, params)) == "65"
