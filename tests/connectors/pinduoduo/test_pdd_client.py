"""Pinduoduo envelope: the official signature example, the request the router receives, and
the error table."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from connectors.pinduoduo import PinduoduoConnector
from connectors.pinduoduo.client import (
    PDD_ERRORS,
    PddAssumptions,
    PddClient,
    sign,
    wire_value,
)
from connectors.pinduoduo.sandbox import PinduoduoSandbox
from core.clock import BEIJING, ManualClock
from core.errors import AuthExpired, BadResponse, NotFound, RateLimited, Rejected, Transient
from core.sandbox import Fault
from core.signing import concat_sorted
from core.testing import connect

FIXTURES = Path(__file__).parents[3] / "connectors" / "pinduoduo" / "fixtures"

OFFICIAL = {
    "access_token": "asd78172s8ds9a921j9qqwda12312w1w21211",
    "client_id": "1",
    "data_type": "XML",
    "type": "pdd.order.number.list.get",
    "timestamp": "1480411125",
    "order_status": "1",
    "page": "1",
    "page_size": "10",
}


def test_official_signature_example_byte_for_byte() -> None:
    joined = "testSecret" + concat_sorted(OFFICIAL) + "testSecret"
    assert joined == (
        "testSecretaccess_tokenasd78172s8ds9a921j9qqwda12312w1w21211client_id1data_typeXML"
        "order_status1page1page_size10timestamp1480411125typepdd.order.number.list.get"
        "testSecret")
    assert sign(OFFICIAL, "testSecret") == "E4DE3ED21002510DED352819E7AE6775"


def test_sign_ignores_an_existing_sign_parameter() -> None:
    assert sign({**OFFICIAL, "sign": "WHATEVER"}, "testSecret") == sign(OFFICIAL, "testSecret")


@pytest.mark.parametrize(("value", "wire"), [
    (1, "1"), ("a", "a"), (True, "true"), (False, "false"),
    ([{"sku_id": 1, "group_price": 990}], '[{"sku_id":1,"group_price":990}]'),
])
def test_values_travel_as_the_text_that_is_signed(value: object, wire: str) -> None:
    assert wire_value(value) == wire


async def test_the_router_receives_a_fully_signed_flat_json_object() -> None:
    clock = ManualClock()
    sandbox = PinduoduoSandbox(clock=clock)
    sandbox.add_item("杯子", "CUP", 1990, quantity=3)
    order = sandbox.place_order([("CUP", 1)])
    connector = connect(PinduoduoConnector, sandbox, clock=clock)
    await connector.get_order(order.order_id)

    (request,) = sandbox.calls("pdd.order.information.get")
    assert request.method == "POST"
    assert request.path == "/api/router"
    assert request.headers["content-type"].startswith("application/json")
    body = json.loads(request.body)
    assert set(body) == {"type", "client_id", "timestamp", "data_type", "access_token", "sign",
                         "order_sn"}
    assert all(isinstance(v, str) for v in body.values())
    assert body["type"] == "pdd.order.information.get"
    assert body["client_id"] == sandbox.app_key
    assert body["timestamp"] == str(int(clock.now().timestamp()))  # seconds, not ms
    assert body["access_token"] == "sandbox-access-token-1"
    assert body["order_sn"] == order.order_id
    unsigned = {k: v for k, v in body.items() if k != "sign"}
    expected = hashlib.md5(
        (sandbox.app_secret + "".join(k + unsigned[k] for k in sorted(unsigned))
         + sandbox.app_secret).encode()).hexdigest().upper()
    assert body["sign"] == expected


async def test_each_attempt_is_signed_with_a_fresh_timestamp() -> None:
    # the first backoff waits at least 0.5 s: from .6 s that crosses into the next second
    clock = ManualClock(datetime(2026, 11, 11, 0, 0, 0, 600_000, tzinfo=BEIJING))
    sandbox = PinduoduoSandbox(clock=clock)
    sandbox.add_item("杯子", "CUP", 1990, quantity=3)
    order = sandbox.place_order([("CUP", 1)])
    sandbox.faults.inject(Fault.RATE_LIMIT, api="pdd.order.information.get")
    connector = connect(PinduoduoConnector, sandbox, clock=clock)
    await connector.get_order(order.order_id)
    first, second = (json.loads(r.body) for r in sandbox.calls("pdd.order.information.get"))
    assert int(second["timestamp"]) > int(first["timestamp"])
    assert first["sign"] != second["sign"]


def client_for(body: bytes | str, status: int = 200) -> tuple[PddClient, httpx.Response]:
    connector = connect(PinduoduoConnector, PinduoduoSandbox(clock=ManualClock()),
                        clock=ManualClock())
    content = body.encode() if isinstance(body, str) else body
    return connector.client, httpx.Response(status, content=content)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("code", "kind"), [
    (10001, Rejected), (10016, Rejected), (10019, AuthExpired), (20004, Rejected),
    (20031, Rejected), (20032, AuthExpired), (50000, Transient), (50002, Transient),
    (52001, Transient), (52101, RateLimited), (52102, Transient), (70031, RateLimited),
    (70033, Transient), (70034, Rejected), (99999, Rejected),
])
def test_error_table(code: int, kind: type[Exception]) -> None:
    client, response = client_for(json.dumps({"error_response": {
        "error_code": code, "error_msg": "x", "sub_code": None, "sub_msg": "",
        "request_id": "1"}}))
    with pytest.raises(kind) as caught:
        client.parse_response("pdd.order.information.get", response)
    assert type(caught.value) is kind
    assert caught.value.code == str(code)  # type: ignore[attr-defined]


def test_bad_signature_carries_its_reason() -> None:
    error = PDD_ERRORS.error("20004", "签名校验失败")
    assert isinstance(error, Rejected) and error.reason == "bad_signature"


@pytest.mark.parametrize(("sub_msg", "kind", "reason"), [
    ("订单已发货，请勿重复发货", Rejected, "already_shipped"),
    ("快递公司不存在或不可用", Rejected, "bad_carrier"),
    ("运单号已被其他订单使用", Rejected, "foreign_waybill"),
    ("请先设置默认退货地址", Rejected, "missing_sender_address"),
    ("运单号不符合规则", Rejected, "bad_tracking_number"),
    ("时间跨度不能超过30分钟", Rejected, ""),
    ("订单不存在", NotFound, None),
])
def test_business_errors_read_their_sub_msg(sub_msg: str, kind: type[Exception],
                                            reason: str | None) -> None:
    client, response = client_for(json.dumps({"error_response": {
        "error_code": 50001, "error_msg": "业务服务错误", "sub_code": None, "sub_msg": sub_msg}}))
    with pytest.raises(kind) as caught:
        client.parse_response("pdd.logistics.online.send", response)
    assert type(caught.value) is kind
    if reason is not None:
        assert caught.value.reason == reason  # type: ignore[attr-defined]


def test_business_error_words_are_overridable_per_shop() -> None:
    assumptions = PddAssumptions.from_options(
        {"pdd_assumptions": {"business_errors": [["重复发货", "already_shipped"]]}})
    assert assumptions.business_outcome("禁止重复发货") == "already_shipped"
    assert assumptions.business_outcome("订单已发货") == ""
    with pytest.raises(ValueError):
        PddAssumptions.from_options({"pdd_assumptions": {"no_such_thing": 1}})


def test_fixture_errors_map() -> None:
    client, response = client_for((FIXTURES / "error_access_token_expired.json").read_bytes())
    with pytest.raises(AuthExpired):
        client.parse_response("pdd.order.information.get", response)
    client, response = client_for((FIXTURES / "error_throttled.json").read_bytes())
    with pytest.raises(RateLimited):
        client.parse_response("pdd.order.information.get", response)
    client, response = client_for((FIXTURES / "error_business_window.json").read_bytes())
    with pytest.raises(Rejected, match="30分钟"):
        client.parse_response("pdd.order.number.list.increment.get", response)


def test_success_is_unwrapped_from_the_api_specific_key_with_decimal_money() -> None:
    client, response = client_for(
        (FIXTURES / "order_information_get.json").read_bytes())
    answer = client.parse_response("pdd.order.information.get", response)
    assert str(answer["order_info"]["pay_amount"]) == "88.88"
    assert not isinstance(answer["order_info"]["pay_amount"], float)


@pytest.mark.parametrize("body", [b'{"result": {"truncated', b"[]", b'{"other_response": {}}'])
def test_unparseable_or_unexpected_bodies_are_bad_responses(body: bytes) -> None:
    client, response = client_for(body)
    with pytest.raises(BadResponse):
        client.parse_response("pdd.order.information.get", response)


@pytest.mark.parametrize(("status", "kind"), [(429, RateLimited), (502, Transient)])
def test_http_status_errors(status: int, kind: type[Exception]) -> None:
    client, response = client_for(b"", status)
    with pytest.raises(kind):
        client.parse_response("pdd.order.information.get", response)
