"""Dewu signing (reference examples byte for byte), push decryption, envelope and errors."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from connectors.dewu.client import (
    DewuApiSpec,
    DewuClient,
    decrypt_push,
    dewu_sign,
    encrypt_push,
    java_urlencode,
    push_key,
    python_quote_plus,
    sign_string,
)
from connectors.dewu.connector import DewuConnector
from connectors.dewu.sandbox import DewuSandbox
from core.clock import ManualClock
from core.errors import AuthExpired, BadResponse, RateLimited, Rejected, Transient
from core.testing import connect

FIXTURES = Path(__file__).parents[3] / "connectors" / "dewu" / "fixtures"
SECRET = "dewu_app_secret_0001"


def test_simple_example() -> None:
    params = {"sku_id": 123456, "app_key": "dewu_app_key_0001", "timestamp": 1700000000000}
    assert sign_string(params) + SECRET == (
        "app_key=dewu_app_key_0001&sku_id=123456&timestamp=1700000000000dewu_app_secret_0001")
    assert dewu_sign(params, SECRET) == "2718CD6D62055AA8E011C2633D3C401C"


def test_list_space_and_token_example() -> None:
    params = {"article_numbers": ["IJ7058", "FZ 5897"], "page_no": 1,
              "access_token": "at_001", "app_key": "dewu_app_key_0001",
              "timestamp": 1700000000000, "sign": "ignored", "empty": "", "absent": None}
    assert sign_string(params) == (
        "access_token=at_001&app_key=dewu_app_key_0001&article_numbers=IJ7058%2CFZ+5897"
        "&page_no=1&timestamp=1700000000000")
    assert dewu_sign(params, SECRET) == "943B27D5C1143B950B960E8D63D74ECA"


def test_official_example_with_nested_objects_in_sent_order() -> None:
    sku = {"spu_id": 81293, "sku_id": 487752589, "bar_code": "487752589",
           "article_number": "wucaishi", "appoint_num": 10, "brand_id": 10444, "category_id": 46}
    params = {"app_key": "4d1715e032c44b709ef4954ef13e0950", "appoint_no": "A14343543654",
              "sku_list": [sku, sku], "timestamp": 1603353500369}
    secret = "fb91e9e96f054166b567eec1b170ae2b"
    assert sign_string(params).startswith(
        "app_key=4d1715e032c44b709ef4954ef13e0950&appoint_no=A14343543654&sku_list=%7B%22spu_id"
        "%22%3A81293%2C%22sku_id%22%3A487752589%2C")
    assert sign_string(params).endswith("%7D&timestamp=1603353500369")
    assert dewu_sign(params, secret) == "A0BC221AB4EF5190EFD7D593566C6747"
    resorted = {**params, "sku_list": [dict(sorted(sku.items()))] * 2}
    assert dewu_sign(resorted, secret) != "A0BC221AB4EF5190EFD7D593566C6747"


def test_encoders_differ_only_on_star_and_tilde() -> None:
    assert java_urlencode("a b*~-_.") == "a+b*%7E-_."
    assert python_quote_plus("a b*~-_.") == "a+b%2A~-_."
    assert java_urlencode("尺码") == python_quote_plus("尺码") == "%E5%B0%BA%E7%A0%81"
    assert dewu_sign({"v": True, "w": False}, SECRET) == hashlib.md5(
        f"v=true&w=false{SECRET}".encode()).hexdigest().upper()


def test_push_decryption_reference_vector() -> None:
    assert push_key(SECRET).hex() == "28b3e47aa2bece406d4e7e35aec2387f"
    body = json.loads((FIXTURES / "push_order_created.json").read_text())
    assert decrypt_push(body["msg"], SECRET) == b'{"orderNo":"110000000000001","status":2}'
    assert encrypt_push(b'{"orderNo":"110000000000001","status":2}', SECRET) == body["msg"]
    with pytest.raises(ValueError):
        decrypt_push(body["msg"], "another-secret")


async def test_signed_request_the_sandbox_receives() -> None:
    clock = ManualClock()
    sandbox = DewuSandbox(clock=clock)
    connector = connect(DewuConnector, sandbox, clock=clock)
    start = clock.now() - timedelta(minutes=5)
    orders = [o async for o in connector.iter_orders(start, clock.now())]
    assert orders == []
    request = sandbox.calls(DewuApiSpec().order_increment_path)[0]
    assert request.method == "POST"
    assert request.headers["content-type"].startswith("application/json")
    body = json.loads(request.body)
    stamp = int(clock.now().timestamp() * 1000)
    expected = {"start_modified": "2026-11-10 23:55:00", "end_modified": "2026-11-11 00:00:00",
                "page_no": 1, "page_size": 30, "app_key": sandbox.app_key, "timestamp": stamp,
                "access_token": "sandbox-access-token-1"}
    assert {k: v for k, v in body.items() if k != "sign"} == expected
    assert body["sign"] == dewu_sign(expected, sandbox.app_secret)


def _client(options: dict[str, object] | None = None) -> DewuClient:
    connector = connect(DewuConnector, DewuSandbox(clock=ManualClock()), options=options)
    assert isinstance(connector, DewuConnector)
    return connector.client


def _response(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body, request=httpx.Request("POST", "http://x"))


@pytest.mark.parametrize(("name", "error", "reason"), [
    ("error_bid_cancelled.json", Rejected, "bid_closed"),
    ("error_sign.json", Rejected, "bad_signature"),
    ("error_ip_not_whitelisted.json", Rejected, "ip_not_whitelisted"),
    ("error_throttled.json", RateLimited, None),
])
def test_error_fixtures(name: str, error: type[Exception], reason: str | None) -> None:
    with pytest.raises(error) as caught:
        _client().parse_response("/p", _response((FIXTURES / name).read_bytes()))
    if reason is not None:
        assert caught.value.reason == reason  # type: ignore[attr-defined]


def test_envelope_cases() -> None:
    client = _client()
    data = client.parse_response("/p", _response((FIXTURES / "bidding_generic_detail.json").read_bytes()))
    assert data["bidding_no"] == "202611100000012345"
    with pytest.raises(AuthExpired):
        client.parse_response("/p", _response(b'{"code":5044,"msg":"token expired"}'))
    with pytest.raises(Rejected) as caught:
        client.parse_response("/p", _response('{"code":400,"msg":"订单已发货，请勿重复发货"}'.encode()))
    assert caught.value.reason == "already_shipped"
    with pytest.raises(Rejected) as signed:  # a sign failure sent with HTTP 401
        client.parse_response("/p", _response(b'{"code":401,"msg":"sign"}', status=401))
    assert signed.value.reason == "bad_signature"
    with pytest.raises(Transient):
        client.parse_response("/p", _response(b'{"code":500,"msg":"busy"}', status=500))
    with pytest.raises(Transient):
        client.parse_response("/p", _response(b"<html>bad gateway</html>", status=502))
    with pytest.raises(BadResponse):
        client.parse_response("/p", _response(b'{"result": {"truncated'))
    with pytest.raises(BadResponse):
        client.parse_response("/p", _response(b'{"data": 1}'))


def test_spec_is_overridable_from_shop_options() -> None:
    client = _client({"dewu_api": {"stock_qty_field": "quantity", "order_window_seconds": 600,
                                   "get_paths": ["/dop/api/v1/x"]},
                      "dewu_sign_encoding": "quote_plus"})
    assert client.spec.stock_qty_field == "quantity" and client.spec.order_window_seconds == 600
    assert client.spec.get_paths == frozenset({"/dop/api/v1/x"})
    assert client.encode is python_quote_plus
    request = client.build_request("/dop/api/v1/x", {"ids": [1, 2]}, "tok")
    assert request.method == "GET" and request.url.params["ids"] == "1,2"
    assert request.url.params["sign"] == dewu_sign(
        {k: v for k, v in request.url.params.items() if k != "sign"},
        client.shop.app_secret.reveal(), python_quote_plus)
    with pytest.raises(ValueError):
        DewuApiSpec.from_options({"dewu_api": {"nope": 1}})


def test_token_calls_are_unsigned_and_go_to_the_console_host() -> None:
    client = _client()
    request = client.build_request(DewuApiSpec().refresh_path, {"refresh_token": "r1"}, "")
    assert str(request.url) == "https://open.dewu.com/api/v1/h5/passport/v1/oauth2/refresh_token"
    body = json.loads(request.content)
    assert body["refresh_token"] == "r1" and "sign" not in body and "timestamp" not in body
    assert body["client_id"] == client.shop.app_key
