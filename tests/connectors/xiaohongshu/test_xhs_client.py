"""Xiaohongshu signing (reference examples byte for byte), the envelope and the error table."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from connectors.xiaohongshu.client import (
    GATEWAY_PATH,
    XhsClient,
    XhsErrorCodes,
    api_sign,
    api_sign_base,
    push_sign,
    push_sign_base,
)
from connectors.xiaohongshu.connector import XiaohongshuConnector
from connectors.xiaohongshu.sandbox import XhsSandbox
from core.clock import ManualClock
from core.errors import AuthExpired, BadResponse, NotFound, RateLimited, Rejected, Transient
from core.testing import connect

FIXTURES = Path(__file__).parents[3] / "connectors" / "xiaohongshu" / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_api_signature_reference_example() -> None:
    base = api_sign_base("order.getOrderList", "21d6abcdef748be8de0", "1612518379")
    assert base + "429aabcdefa3aee9ef9e4a858210" == (
        "order.getOrderList?appId=21d6abcdef748be8de0&timestamp=1612518379"
        "&version=2.0429aabcdefa3aee9ef9e4a858210")
    assert api_sign("order.getOrderList", "21d6abcdef748be8de0", "1612518379",
                    "429aabcdefa3aee9ef9e4a858210") == "cefd116287c30b862462eeb499d5cddd"


def test_push_signature_official_example() -> None:
    base = push_sign_base("/open_api/msg", {"canshu": "test"}, "xhs", "1625475843")
    assert base == "/open_api/msg?app-key=xhs&canshu=test&timestamp=1625475843"
    assert push_sign("/open_api/msg", {"canshu": "test"}, "xhs", "1625475843",
                     "9a539709cafc1efc9ef05838be468a28") == "a7b7430de338783293443133ab9b9357"
    # the callback's own query param takes part: without it the sign differs
    assert push_sign("/open_api/msg", {}, "xhs", "1625475843",
                     "9a539709cafc1efc9ef05838be468a28") != "a7b7430de338783293443133ab9b9357"


async def test_signed_request_the_sandbox_receives() -> None:
    clock = ManualClock()
    sandbox = XhsSandbox(clock=clock)
    connector = connect(XiaohongshuConnector, sandbox, clock=clock)
    with pytest.raises(NotFound):
        await connector.get_order("P0")
    request = sandbox.calls("order.getOrderDetail")[0]
    assert request.method == "POST" and request.path == GATEWAY_PATH
    assert request.headers["content-type"].startswith("application/json")
    body = json.loads(request.body)
    timestamp = str(int(clock.now().timestamp()))
    assert body == {
        "orderId": "P0", "appId": sandbox.app_key, "timestamp": timestamp, "version": "2.0",
        "method": "order.getOrderDetail", "accessToken": "sandbox-access-token-1",
        "sign": hashlib.md5(
            f"order.getOrderDetail?appId={sandbox.app_key}&timestamp={timestamp}"
            f"&version=2.0{sandbox.app_secret}".encode()).hexdigest(),
    }


def _client() -> XhsClient:
    connector = connect(XiaohongshuConnector, XhsSandbox(clock=ManualClock()))
    assert isinstance(connector, XiaohongshuConnector)
    return connector.client


def _response(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body, request=httpx.Request("POST", "http://x"))


@pytest.mark.parametrize(("name", "error", "reason"), [
    ("error_throttled.json", RateLimited, None),
    ("error_order_not_found.json", NotFound, None),
    ("error_publish_business.json", Rejected, ""),
    ("aftersale_nested_error.json", Rejected, ""),
])
def test_error_envelopes(name: str, error: type[Exception], reason: str | None) -> None:
    with pytest.raises(error) as caught:
        _client().parse_response("any.method", _response(fixture(name)))
    if reason is not None:
        assert getattr(caught.value, "reason", None) == reason


@pytest.mark.parametrize(("code", "message", "error", "reason"), [
    (401, "accessToken已过期", AuthExpired, None),
    (-1, "签名错误", Rejected, "bad_signature"),
    (-2000500, "系统调用异常", Transient, None),
    (-2000400, "订单商品已发货，请勿重复发货", Rejected, "already_shipped"),
    (-2000400, "快递公司编码xx不存在", Rejected, "bad_carrier"),
    (-2000401, "无权限", Rejected, "no_permission"),
])
def test_error_table(code: int, message: str, error: type[Exception], reason: str | None) -> None:
    body = json.dumps({"success": False, "error_code": code, "error_msg": message, "data": None})
    with pytest.raises(error) as caught:
        _client().parse_response("any.method", _response(body.encode()))
    if reason is not None:
        assert caught.value.reason == reason  # type: ignore[attr-defined]


def test_success_and_malformed() -> None:
    client = _client()
    ok = _response(fixture("oauth_refreshToken.json"))
    assert client.parse_response("oauth.refreshToken", ok)["sellerName"] == "示例旗舰店"
    assert client.parse_response("order.orderDeliver", _response(
        b'{"success":true,"error_code":0,"data":null}')) is None
    with pytest.raises(BadResponse):
        client.parse_response("x", _response(b'{"result": {"truncated'))
    with pytest.raises(BadResponse):
        client.parse_response("x", _response(b'{"data": {}}'))
    with pytest.raises(Transient):
        client.parse_response("x", _response(b"", status=502))


def test_error_codes_are_configurable() -> None:
    codes = XhsErrorCodes.from_options({"xhs_error_codes": {"auth_expired": ["-100", "401"]}})
    assert codes.auth_expired == ("-100", "401")
    assert isinstance(codes.table().error("-100", "token expired"), AuthExpired)
    with pytest.raises(ValueError):
        XhsErrorCodes.from_options({"xhs_error_codes": {"no_such": ["1"]}})
