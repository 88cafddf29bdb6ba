"""The Pinduoduo sandbox refuses what the router refuses, with the router's own codes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from connectors.pinduoduo.client import sign
from connectors.pinduoduo.sandbox import PinduoduoSandbox
from core.clock import ManualClock
from core.sandbox import Fault


@pytest.fixture
def sandbox() -> PinduoduoSandbox:
    box = PinduoduoSandbox(clock=ManualClock())
    box.add_item("杯", "MUG", 2990, skus=[("MUG-W", 10, 2990)])
    return box


def envelope(sandbox: PinduoduoSandbox, api: str, **business: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "type": api, "client_id": sandbox.app_key, "data_type": "JSON",
        "timestamp": int(sandbox.clock.now().timestamp()),
        "access_token": "sandbox-access-token-1", **business}
    params["sign"] = sign({k: str(v) for k, v in params.items()}, sandbox.app_secret)
    return params


async def post(sandbox: PinduoduoSandbox, params: dict[str, Any], *,
               form: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=sandbox.transport(),
                                 base_url="http://sandbox") as client:
        if form:
            response = await client.post("/api/router", content=urlencode(params), headers={
                "content-type": "application/x-www-form-urlencoded"})
        else:
            response = await client.post("/api/router", json=params)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def error_code(body: dict[str, Any]) -> int:
    return int(body["error_response"]["error_code"])


async def test_json_numbers_are_verified_by_their_text(sandbox: PinduoduoSandbox) -> None:
    item, sku = sandbox.find_sku("MUG-W")
    assert sku is not None
    params = envelope(sandbox, "pdd.goods.quantity.update", goods_id=int(item.item_id),
                      sku_id=int(sku.sku_id), quantity=4)
    body = await post(sandbox, params)  # numbers in the JSON, signed as decimal text
    assert body == {"goods_quantity_update_response": {"is_success": True}}
    assert sandbox.stock_of("MUG-W") == 4


async def test_a_form_body_is_accepted_too(sandbox: PinduoduoSandbox) -> None:
    body = await post(sandbox, envelope(sandbox, "pdd.logistics.companies.get"), form=True)
    companies = body["logistics_companies_get_response"]["logistics_companies"]
    assert {"id": 44, "code": "SF", "logistics_company": "顺丰快递", "available": 1} in companies


@pytest.mark.parametrize(("tamper", "code"), [
    (lambda p: p.pop("sign"), 10001),
    (lambda p: p.update(sign="0" * 32), 20004),
    (lambda p: p.update(order_sn="changed-after-signing"), 20004),
    (lambda p: p.pop("type"), 10001),
    (lambda p: p.update(timestamp=str(int(p["timestamp"]) * 1000)), 10001),  # milliseconds
])
async def test_envelope_refusals(sandbox: PinduoduoSandbox, tamper: Any, code: int) -> None:
    params = envelope(sandbox, "pdd.order.information.get", order_sn="x")
    tamper(params)
    assert error_code(await post(sandbox, params)) == code


async def test_app_key_type_and_token_are_checked(sandbox: PinduoduoSandbox) -> None:
    params = envelope(sandbox, "pdd.order.information.get", order_sn="x", client_id="other")
    assert error_code(await post(sandbox, params)) == 10016
    assert error_code(await post(sandbox, envelope(sandbox, "pdd.no.such.api"))) == 10017
    params = envelope(sandbox, "pdd.order.information.get", order_sn="x",
                      access_token="never-issued")
    assert error_code(await post(sandbox, params)) == 20032
    sandbox.expire_token()
    params = envelope(sandbox, "pdd.order.information.get", order_sn="x")
    assert error_code(await post(sandbox, params)) == 10019


async def test_delta_stock_may_not_go_below_zero(sandbox: PinduoduoSandbox) -> None:
    item, sku = sandbox.find_sku("MUG-W")
    assert sku is not None
    ok = envelope(sandbox, "pdd.goods.quantity.update", goods_id=item.item_id,
                  sku_id=sku.sku_id, quantity=-10, update_type=2)
    assert "goods_quantity_update_response" in await post(sandbox, ok)
    assert sandbox.stock_of("MUG-W") == 0
    below = envelope(sandbox, "pdd.goods.quantity.update", goods_id=item.item_id,
                     sku_id=sku.sku_id, quantity=-1, update_type=2)
    assert error_code(await post(sandbox, below)) == 50001


async def test_single_price_must_stay_above_group_price(sandbox: PinduoduoSandbox) -> None:
    item, sku = sandbox.find_sku("MUG-W")
    assert sku is not None
    prices = json.dumps([{"sku_id": int(sku.sku_id), "group_price": 2000, "single_price": 2000}])
    params = envelope(sandbox, "pdd.goods.sku.price.update", goods_id=item.item_id,
                      sku_price_list=prices)
    body = await post(sandbox, params)
    assert error_code(body) == 50001 and "单买价" in body["error_response"]["sub_msg"]
    assert sku.price_fen == 2990


async def test_fault_answers_are_pdds_own(sandbox: PinduoduoSandbox) -> None:
    sandbox.faults.inject(Fault.RATE_LIMIT)
    sandbox.faults.inject(Fault.SERVER_ERROR)
    params = envelope(sandbox, "pdd.logistics.companies.get")
    assert error_code(await post(sandbox, params)) == 52101
    assert error_code(await post(sandbox, params)) == 50000


async def test_orders_render_in_yuan_with_pdd_statuses(sandbox: PinduoduoSandbox) -> None:
    order = sandbox.place_order([("MUG-W", 2)], post_fee_fen=600)
    body = await post(sandbox, envelope(sandbox, "pdd.order.information.get",
                                        order_sn=order.order_id))
    info = body["order_info_get_response"]["order_info"]
    assert (info["order_status"], info["refund_status"]) == (1, 1)
    assert (info["goods_amount"], info["postage"], info["pay_amount"]) == (59.8, 6, 65.8)
    assert info["item_list"][0]["goods_price"] == 29.9
    sandbox.cancel(order.order_id)  # paid then cancelled: a refund before shipping
    body = await post(sandbox, envelope(sandbox, "pdd.order.information.get",
                                        order_sn=order.order_id))
    info = body["order_info_get_response"]["order_info"]
    assert (info["order_status"], info["refund_status"]) == (1, 4)
