"""The Xiaohongshu sandbox refuses what the gateway refuses, in the gateway's envelope."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from connectors.xiaohongshu.client import GATEWAY_PATH, api_sign
from connectors.xiaohongshu.sandbox import XhsSandbox
from core.clock import ManualClock
from core.sandbox import Fault

URL = "https://ark.xiaohongshu.com" + GATEWAY_PATH


def signed(sandbox: XhsSandbox, method: str, **params: Any) -> dict[str, Any]:
    ts = str(int(sandbox.clock.now().timestamp()))
    return {"appId": sandbox.app_key, "timestamp": ts, "version": "2.0", "method": method,
            "sign": api_sign(method, sandbox.app_key, ts, sandbox.app_secret),
            "accessToken": "sandbox-access-token-1", **params}


async def post(sandbox: XhsSandbox, body: Any, *, raw: bytes | None = None,
               url: str = URL) -> httpx.Response:
    async with httpx.AsyncClient(transport=sandbox.transport()) as client:
        content = raw if raw is not None else json.dumps(body).encode()
        return await client.post(url, content=content)


@pytest.fixture
def sandbox() -> XhsSandbox:
    sb = XhsSandbox(clock=ManualClock())
    sb.add_item("围巾", "S", 100, skus=[("S-1", 1, 100)])
    return sb


@pytest.mark.parametrize(("change", "code"), [
    ({"appId": "someone-else"}, -1),
    ({"sign": "0" * 32}, -1),
    ({"version": "1.0"}, -2000400),
    ({"method": "order.noSuchMethod"}, -1),  # the sign no longer matches the method
    ({"timestamp": ""}, -2000400),
    ({"accessToken": "token-unknown"}, 401),
])
async def test_gateway_refusals(sandbox: XhsSandbox, change: dict[str, str], code: int) -> None:
    answer = (await post(sandbox, {**signed(sandbox, "order.getOrderDetail", orderId="P1"),
                                   **change})).json()
    assert answer["success"] is False and answer["error_code"] == code and answer["data"] is None


async def test_unknown_method_and_bad_bodies(sandbox: XhsSandbox) -> None:
    answer = (await post(sandbox, signed(sandbox, "order.noSuchMethod"))).json()
    assert (answer["error_code"], answer["success"]) == (-2000400, False)
    assert (await post(sandbox, None, raw=b"{not json")).json()["error_code"] == -2000400
    assert (await post(sandbox, [1, 2])).json()["error_code"] == -2000400
    missing = signed(sandbox, "order.getOrderDetail")
    assert "orderId" in (await post(sandbox, missing)).json()["error_msg"]
    wrong_path = await post(sandbox, signed(sandbox, "order.getOrderDetail", orderId="P1"),
                            url="https://ark.xiaohongshu.com/ark/open_api/v1/common_controller")
    assert wrong_path.status_code == 404


@pytest.mark.parametrize(("fault", "code"), [(Fault.RATE_LIMIT, -9013),
                                             (Fault.SERVER_ERROR, -2000500)])
def test_fault_bodies_are_gateway_envelopes(sandbox: XhsSandbox, fault: Fault, code: int) -> None:
    answer = json.loads(sandbox.fault_response(fault, "order.getOrderList").body)
    assert answer == {"success": False, "error_code": code, "error_msg": answer["error_msg"],
                      "data": None}


async def test_refresh_needs_a_live_refresh_token(sandbox: XhsSandbox) -> None:
    body = signed(sandbox, "oauth.refreshToken", refreshToken="refresh-unknown")
    del body["accessToken"]
    assert (await post(sandbox, body)).json()["error_code"] == 401


async def test_item_creation_checks_required_fields(sandbox: XhsSandbox) -> None:
    base = {"name": "杯子", "categoryId": "c1", "shippingTemplateId": "t1",
            "images": [{"link": "https://img/1.jpg"}],
            "createSkuList": [{"price": 3900, "originalPrice": 5900, "logisticsPlanId": "p1",
                               "deliveryTime": {"type": 4, "time": "48"}, "erpCode": "CUP"}]}
    ok = (await post(sandbox, signed(sandbox, "product.createItemAndSku", **base))).json()
    assert ok["success"] and ok["data"]["skuList"][0]["erpCode"] == "CUP"
    for key in ("images", "shippingTemplateId"):
        body = {k: v for k, v in base.items() if k != key}
        answer = (await post(sandbox, signed(sandbox, "product.createItemAndSku", **body))).json()
        assert answer["error_code"] == -2000400 and key in answer["error_msg"]
    pricey = {**base, "createSkuList": [{**base["createSkuList"][0], "price": 5900}]}  # type: ignore[dict-item]
    answer = (await post(sandbox, signed(sandbox, "product.createItemAndSku", **pricey))).json()
    assert answer["error_code"] == -2000400  # the price must stay under the market price
