"""The Dewu sandbox refuses what the DOP gateway refuses, in the gateway's envelope."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from connectors.dewu.client import OAUTH_PREFIX, DewuApiSpec, dewu_sign
from connectors.dewu.sandbox import DewuSandbox
from core.clock import ManualClock
from core.sandbox import Fault

SPEC = DewuApiSpec()
HOST = "https://openapi.dewu.com"


def signed(sandbox: DewuSandbox, token: str = "sandbox-access-token-1",
           **params: Any) -> dict[str, Any]:
    body = {**params, "app_key": sandbox.app_key,
            "timestamp": int(sandbox.clock.now().timestamp() * 1000), "access_token": token}
    return {**body, "sign": dewu_sign(body, sandbox.app_secret)}


async def call(sandbox: DewuSandbox, path: str, body: Any, *, method: str = "POST",
               raw: bytes | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=sandbox.transport()) as client:
        content = raw if raw is not None else json.dumps(body).encode()
        return await client.request(method, HOST + path, content=content)


@pytest.fixture
def sandbox() -> DewuSandbox:
    sb = DewuSandbox(clock=ManualClock())
    sb.add_item("Dunk Low", "DD1391-100", 59900, skus=[("39", 2, 59900)])
    return sb


@pytest.mark.parametrize(("change", "code"), [
    ({"app_key": "someone-else"}, 403),
    ({"sign": "0" * 32}, 401),
    ({"timestamp": 1}, 401),
    ({"access_token": "expired"}, 401),  # the token is signed too
    ({"order_no": "2"}, 401),  # a param changed after signing
])
async def test_gateway_refusals(sandbox: DewuSandbox, change: dict[str, Any], code: int) -> None:
    answer = (await call(sandbox, SPEC.order_detail_path,
                         {**signed(sandbox, order_no="1"), **change})).json()
    assert answer["code"] == code and answer["data"] is None and answer["trace_id"]


async def test_unknown_or_expired_token_is_5044(sandbox: DewuSandbox) -> None:
    answer = (await call(sandbox, SPEC.order_detail_path,
                         signed(sandbox, token="expired", order_no="1"))).json()
    assert answer["code"] == 5044


async def test_paths_verbs_and_bodies(sandbox: DewuSandbox) -> None:
    unknown = await call(sandbox, "/dop/api/v1/no/such", signed(sandbox))
    assert unknown.status_code == 404 and unknown.json()["msg"] == "请求接口不正确"
    wrong_verb = await call(sandbox, SPEC.order_detail_path, None, method="GET", raw=b"")
    assert wrong_verb.status_code == 405
    assert (await call(sandbox, SPEC.order_detail_path, None, raw=b"[1]")).json()["code"] == 400
    assert "order_no" in (await call(sandbox, SPEC.order_detail_path, signed(sandbox))).json()["msg"]


async def test_bid_rules(sandbox: DewuSandbox) -> None:
    _, sku = sandbox.find_sku("39")
    assert sku is not None
    bid = sandbox.live_bid(sku.sku_id)
    assert bid is not None
    again = await call(sandbox, SPEC.bid_create_path,
                       signed(sandbox, sku_id=int(sku.sku_id), price=59900, qty=1))
    assert again.json()["code"] == 400  # one live bid per SKU and type: update it instead
    stale = await call(sandbox, SPEC.bid_update_path, signed(
        sandbox, bidding_no=bid.bidding_no, price=58900, qty=3, old_qty=9))
    assert stale.json()["code"] == 400 and not bid.closed
    fresh = (await call(sandbox, SPEC.bid_update_path, signed(
        sandbox, bidding_no=bid.bidding_no, price=58900, qty=3, old_qty=2))).json()
    assert fresh["code"] == 200 and fresh["data"]["bidding_no"] != bid.bidding_no
    old = await call(sandbox, SPEC.bid_update_path, signed(
        sandbox, bidding_no=bid.bidding_no, price=58900, qty=3, old_qty=3))
    assert old.json()["code"] == 20900020
    detail = (await call(sandbox, SPEC.bid_detail_path,
                         signed(sandbox, bidding_no=fresh["data"]["bidding_no"]))).json()["data"]
    assert (detail["qty_remain"], detail["price"], detail["status"]) == (3, 58900, 1)
    too_many = await call(sandbox, SPEC.spu_by_article_path,
                          signed(sandbox, article_numbers=["a", "b", "c", "d", "e", "f"]))
    assert too_many.json()["code"] == 400


@pytest.mark.parametrize(("fault", "status", "code"), [(Fault.RATE_LIMIT, 200, 5030),
                                                       (Fault.SERVER_ERROR, 500, 500)])
def test_fault_bodies(sandbox: DewuSandbox, fault: Fault, status: int, code: int) -> None:
    response = sandbox.fault_response(fault, SPEC.order_detail_path)
    assert response.status == status and json.loads(response.body)["code"] == code


async def test_token_endpoint_checks_the_client_and_rotates(sandbox: DewuSandbox) -> None:
    path = OAUTH_PREFIX + "refresh_token"
    bad = await call(sandbox, path, {"client_id": sandbox.app_key, "client_secret": "x",
                                     "refresh_token": "sandbox-refresh-token-1"})
    assert bad.json()["code"] == 401
    good = {"client_id": sandbox.app_key, "client_secret": sandbox.app_secret,
            "refresh_token": "sandbox-refresh-token-1"}
    data = (await call(sandbox, path, good)).json()["data"]
    assert data["refresh_token"] == "sandbox-refresh-token-2"
    assert data["access_token_expires_in"] == 86400
    assert (await call(sandbox, path, good)).json()["code"] == 400  # the old one died
