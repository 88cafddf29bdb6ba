"""Douyin envelope: the reference's worked signatures byte for byte, the exact signed request
the gateway receives, and the error envelope → canonical error table."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest

from connectors.douyin.client import (
    DouyinClient,
    param_json,
    platform_error,
    push_sign,
    sign,
    sign_input,
)
from connectors.douyin.connector import DouyinConnector
from connectors.douyin.sandbox import DouyinSandbox
from core.clock import ManualClock
from core.errors import (
    AuthExpired,
    ConnectorError,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)
from core.testing import connect

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "samples" / "douyin"
FIXTURES = Path(__file__).parents[3] / "connectors" / "douyin" / "fixtures"

APP_KEY = "1234567890123456789"
SECRET = "test-secret-0001"


def test_example_a_search_list_hmac_and_legacy_md5() -> None:
    params = {"size": 10, "page": 0, "update_time_start": 1700000000,
              "update_time_end": 1700003600, "order_by": "update_time", "order_asc": True,
              "combine_status": [{"order_status": "2"}]}
    text = param_json(params)
    assert text == ('{"combine_status":[{"order_status":"2"}],"order_asc":true,'
                    '"order_by":"update_time","page":0,"size":10,'
                    '"update_time_end":1700003600,"update_time_start":1700000000}')
    assert sign_input(APP_KEY, SECRET, "order.searchList", text, "1700000000") == (
        f"{SECRET}app_key{APP_KEY}methodorder.searchListparam_json{text}"
        f"timestamp1700000000v2{SECRET}")
    assert sign(APP_KEY, SECRET, "order.searchList", text, "1700000000") == (
        "cd136290872d9ce0a385022653844c23cc87e09a97ddcf1e100cab30100806a5")
    assert sign(APP_KEY, SECRET, "order.searchList", text, "1700000000", "md5") == (
        "f23432c02b6e28cd33f33b2465b8c72a")


def test_example_b_nested_sort_chinese_no_html_escaping() -> None:
    text = param_json({"name": "短袖 T恤", "b": {"z": 1, "a": "<x>&/"},
                       "a": [{"k2": 2, "k1": 1}]})
    assert text == '{"a":[{"k1":1,"k2":2}],"b":{"a":"<x>&/","z":1},"name":"短袖 T恤"}'
    assert sign(APP_KEY, SECRET, "product.listV2", text, "2023-11-15 06:13:20") == (
        "a64f98c9d231e39dd67bd891892f348204ebb04501f5e465d3a08174ca30019a")


def test_example_c_token_create() -> None:
    text = param_json({"code": "", "grant_type": "authorization_self", "shop_id": "4463798"})
    assert sign(APP_KEY, SECRET, "token.create", text, "1700000000") == (
        "5622c294a0abb92efced1a0f5f3231f1343bc1a34fa236d65e1de59a7acb5932")


def test_push_event_sign_example() -> None:
    body = (b'[{"tag":"102","msg_id":"7000000000000000000",'
            b'"data":"{\\"p_id\\":123,\\"shop_id\\":456}"}]')
    assert push_sign(APP_KEY, body, SECRET) == "125e2465d015e6b0ea80af8e66acbaab"


def test_param_json_omits_nulls_like_the_sdk() -> None:
    assert param_json({"b": None, "a": {"y": None, "x": [1, None]}}) == '{"a":{"x":[1,null]}}'


async def test_the_gateway_receives_exactly_the_signed_envelope() -> None:
    clock = ManualClock()
    sandbox = DouyinSandbox(clock=clock)
    connector = connect(DouyinConnector, sandbox, clock=clock)
    sandbox.add_item("袜子", "SOCK", 990, skus=[("SOCK-1", 5, 990)])
    order = sandbox.place_order([("SOCK-1", 1)])
    await connector.get_order(order.order_id)

    received = sandbox.calls("order.orderDetail")[-1]
    assert received.method == "POST"
    assert received.path == "/order/orderDetail"
    assert set(received.query) == {"app_key", "method", "access_token", "timestamp", "v",
                                   "sign_method", "sign"}
    assert received.query["app_key"] == sandbox.app_key
    assert received.query["method"] == "order.orderDetail"
    assert received.query["access_token"] == "sandbox-access-token-1"
    assert received.query["timestamp"] == str(int(clock.now().timestamp()))
    assert received.query["v"] == "2"
    assert received.query["sign_method"] == "hmac-sha256"
    assert received.body == f'{{"shop_order_id":"{order.order_id}"}}'.encode()
    assert received.headers["content-type"].startswith("application/json")
    expected_input = (f"{sandbox.app_secret}app_key{sandbox.app_key}methodorder.orderDetail"
                      f"param_json{received.body.decode()}timestamp{received.query['timestamp']}"
                      f"v2{sandbox.app_secret}")
    assert received.query["sign"] == hmac.new(sandbox.app_secret.encode(),
                                              expected_input.encode(),
                                              hashlib.sha256).hexdigest()


async def test_token_calls_are_signed_without_access_token() -> None:
    clock = ManualClock()
    sandbox = DouyinSandbox(clock=clock)
    connector = connect(DouyinConnector, sandbox, clock=clock)
    await connector.refresh_token(connector.shop.tokens.current())
    received = sandbox.calls("token.refresh")[-1]
    assert "access_token" not in received.query
    assert json.loads(received.body) == {"grant_type": "refresh_token",
                                         "refresh_token": "sandbox-refresh-token-1"}


@pytest.mark.parametrize("sample, kind", [
    ("error_page_size_40004_assembled.json", Rejected),
    ("error_service_busy_20000_assembled.json", Transient),
])
def test_shared_error_samples(sample: str, kind: type[ConnectorError]) -> None:
    document = json.loads((SAMPLES / sample).read_text())
    payload, expect = document["payload"], document["expect"]
    client = _offline_client()
    response = httpx.Response(200, json=payload,
                              request=httpx.Request("POST", "https://x/order/searchList"))
    with pytest.raises(kind) as caught:
        client.parse_response("order.searchList", response)
    assert type(caught.value).__name__.lower() == expect["error_class"]
    assert caught.value.code == str(expect["platform_code"])
    assert expect["platform_sub_code"] in str(caught.value)
    assert caught.value.retriable is (expect["error_class"] == "transient")


@pytest.mark.parametrize("code, sub_code, kind, reason", [
    (40003, "isv.access-token-expired", AuthExpired, None),
    (40003, "isv.access-token-no-existed", AuthExpired, None),
    (40003, "isv.signature-invalid", Rejected, "bad_signature"),
    (50002, "isv.business-failed:60110", Rejected, "already_shipped"),
    (50002, "isv.business-failed:70023", Rejected, "already_shipped"),
    (50002, "isv.business-failed:60018", Rejected, "bad_carrier"),
    (50002, "isv.business-failed:70022", Rejected, "foreign_waybill"),
    (50002, "isv.business-failed:60072", Rejected, "missing_sender_address"),
    (50002, "isv.business-failed:60033", NotFound, None),
    (50002, "isv.business-failed:2010401", Transient, None),
    (20000, "isp.service-error:10005", Transient, None),
    (60000, "", RateLimited, None),
    (50001, "dop.token-generate-failed:token-expired", AuthExpired, None),
    (40004, "isv.parameter-invalid:20013", Rejected, ""),
])
def test_error_table(code: int, sub_code: str, kind: type[Exception], reason: str | None) -> None:
    error = platform_error(code, "msg", sub_code, "sub msg")
    assert type(error) is kind
    assert error.code == str(code)
    if reason is not None:
        assert isinstance(error, Rejected) and error.reason == reason


def test_fixture_error_envelopes() -> None:
    client = _offline_client()
    for name, kind in (("error_already_shipped_60110.json", Rejected),
                       ("error_token_expired.json", AuthExpired)):
        response = httpx.Response(200, content=(FIXTURES / name).read_bytes(),
                                  request=httpx.Request("POST", "https://x/a/b"))
        with pytest.raises(kind):
            client.parse_response("order.logisticsAdd", response)


def _offline_client() -> DouyinClient:
    connector = connect(DouyinConnector, DouyinSandbox(clock=ManualClock()))
    assert isinstance(connector, DouyinConnector)
    return connector.client
