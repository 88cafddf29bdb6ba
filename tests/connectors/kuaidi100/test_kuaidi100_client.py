"""Kuaidi100 envelope: the reference's worked signatures byte for byte, the exact requests the
sandbox receives, and the one error table."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qsl

import httpx
import pytest
from kuaidi100_support import SALT, fixture, wire
from structlog.testing import capture_logs

from connectors.kuaidi100.client import (
    ERRORS,
    callback_sign,
    encode_param,
    query_form,
    query_param,
    query_sign,
)
from connectors.kuaidi100.sandbox import Kuaidi100Sandbox
from core.clock import ManualClock
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)

# logistics-tracking.md §1.6
EXAMPLE_CUSTOMER = "EXAMPLECUSTOMER0000000000000000"
EXAMPLE_KEY = "ExampleKey123"
EXAMPLE_PARAM = ('{"com":"yuantong","num":"YT0000000000000","phone":"","from":"","to":"",'
                 '"resultv2":"1","show":"0","order":"desc"}')
EXAMPLE_SALT = "ExampleSalt32charsExampleSalt32c"
EXAMPLE_CALLBACK_PARAM = (
    '{"status":"polling","billstatus":"","message":"","autoCheck":"0","comOld":"","comNew":"",'
    '"lastResult":{"message":"ok","nu":"YT0000000000000","ischeck":"0","com":"yuantong",'
    '"status":"200","state":"0","data":[{"time":"2026-11-21 09:12:00",'
    '"ftime":"2026-11-21 09:12:00","context":"快件已到达【杭州转运中心】","status":"在途",'
    '"statusCode":"1002","areaCode":"CN330100000000","areaName":"浙江,杭州市"}]}}')


def test_query_sign_worked_example() -> None:
    assert query_sign(EXAMPLE_PARAM, EXAMPLE_KEY, EXAMPLE_CUSTOMER) == (
        "15F0E4B8DE4EE9F845DAF96E992B05AE")


def test_query_param_is_serialised_like_the_worked_example() -> None:
    param = query_param({"com": "yuantong", "num": "YT0000000000000", "resultv2": "1"})
    assert encode_param(param) == EXAMPLE_PARAM


def test_query_form_body_worked_example() -> None:
    body = query_form(EXAMPLE_PARAM, EXAMPLE_KEY, EXAMPLE_CUSTOMER)
    assert body.startswith(
        "customer=EXAMPLECUSTOMER0000000000000000&sign=15F0E4B8DE4EE9F845DAF96E992B05AE"
        "&param=%7B%22com%22%3A%22yuantong%22%2C")
    assert dict(parse_qsl(body))["param"] == EXAMPLE_PARAM
    assert EXAMPLE_KEY not in body


def test_callback_sign_worked_example() -> None:
    assert callback_sign(EXAMPLE_CALLBACK_PARAM, EXAMPLE_SALT) == (
        "4E669D3D78C33F7248419102BC205682")


def test_callback_sign_is_over_the_exact_string() -> None:
    reserialised = json.dumps(json.loads(EXAMPLE_CALLBACK_PARAM))  # spaces, \\u escapes
    assert callback_sign(reserialised, EXAMPLE_SALT) != callback_sign(
        EXAMPLE_CALLBACK_PARAM, EXAMPLE_SALT)
    expected = hashlib.md5((EXAMPLE_CALLBACK_PARAM + EXAMPLE_SALT).encode()).hexdigest()
    assert callback_sign(EXAMPLE_CALLBACK_PARAM, EXAMPLE_SALT) == expected.upper()


async def test_query_request_the_sandbox_receives() -> None:
    clock = ManualClock()
    sandbox = Kuaidi100Sandbox(clock=clock)
    sandbox.add_parcel("SF", "SF1234567890123", phone="13800001234")
    clock.advance(3 * 3600)
    provider = wire(sandbox, clock)
    await provider.track("SF", "SF1234567890123", phone="+86 138-0000-1234")

    (request,) = sandbox.calls("query")
    assert request.method == "POST"
    assert request.path == "/poll/query.do"
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    pairs = parse_qsl(request.body.decode())
    assert [name for name, _ in pairs] == ["customer", "sign", "param"]
    form = dict(pairs)
    assert form["customer"] == sandbox.customer
    assert form["sign"] == query_sign(form["param"], sandbox.key, sandbox.customer)
    assert list(json.loads(form["param"])) == [
        "com", "num", "phone", "from", "to", "resultv2", "show", "order"]
    param = json.loads(form["param"])
    assert param["com"] == "shunfeng"
    assert param["num"] == "SF1234567890123"
    assert param["phone"] == "1234"  # only the last 4 digits leave the house
    assert param["show"] == "0"
    assert sandbox.key not in request.body.decode()


async def test_subscribe_request_the_sandbox_receives() -> None:
    clock = ManualClock()
    sandbox = Kuaidi100Sandbox(clock=clock)
    provider = wire(sandbox, clock)
    await provider.subscribe("YTO", "YT7512345678901", "https://erp.example.com/kd100?x=1")

    (request,) = sandbox.calls("subscribe")
    assert request.path == "/poll"
    form = dict(parse_qsl(request.body.decode()))
    assert set(form) == {"schema", "param"}  # no sign on a subscription
    assert form["schema"] == "json"
    param = json.loads(form["param"])
    assert list(param) == ["company", "number", "from", "to", "key", "parameters"]
    assert param["company"] == "yuantong"
    assert param["key"] == sandbox.key
    assert param["parameters"]["callbackurl"] == "https://erp.example.com/kd100?x=1"
    assert param["parameters"]["salt"] == SALT
    assert param["parameters"]["resultv2"] == "4"


ERROR_CASES = [
    ("query", "query_bad_params.json", Rejected, "bad_params"),
    ("query", "query_phone_check.json", Rejected, "phone_required"),
    ("query", "query_no_result.json", NotFound, ""),
    ("query", "query_server_error.json", Transient, ""),
    ("query", "query_server_busy.json", RateLimited, ""),
    ("query", "query_bad_sign.json", AuthExpired, ""),
    ("subscribe", "subscribe_duplicate.json", Rejected, "already_subscribed"),
    ("subscribe", "subscribe_bad_key.json", AuthExpired, ""),
]


@pytest.mark.parametrize(("api", "name", "kind", "reason"), ERROR_CASES)
def test_error_fixtures_map_through_the_table(api: str, name: str, kind: type[ConnectorError],
                                              reason: str) -> None:
    clock = ManualClock()
    provider = wire(Kuaidi100Sandbox(clock=clock), clock)
    body = fixture(name)
    response = httpx.Response(200, json=body)
    with pytest.raises(kind) as caught:
        provider.client.parse_response(api, response)
    assert type(caught.value) is kind
    assert caught.value.code == f"{api}:{body['returnCode']}"
    assert caught.value.platform_message == body["message"]
    if reason:
        assert isinstance(caught.value, Rejected)
        assert caught.value.reason == reason


@pytest.mark.parametrize(("key", "kind"), [
    ("query:400", Rejected), ("query:408", Rejected), ("query:500", NotFound),
    ("query:501", Transient), ("query:502", RateLimited), ("query:503", AuthExpired),
    ("query:601", AuthExpired), ("subscribe:500", Transient), ("subscribe:501", Rejected),
    ("subscribe:600", AuthExpired), ("subscribe:601", AuthExpired),
    ("subscribe:700", Rejected), ("subscribe:701", Rejected), ("subscribe:702", Rejected),
])
def test_error_table_rows(key: str, kind: type[ConnectorError]) -> None:
    assert ERRORS.rule(key).kind is kind


def test_same_code_means_different_things_per_endpoint() -> None:
    assert ERRORS.rule("query:501").kind is Transient
    assert ERRORS.rule("subscribe:501").reason == "already_subscribed"
    assert ERRORS.rule("query:500").kind is NotFound
    assert ERRORS.rule("subscribe:500").kind is Transient


def test_a_success_body_is_returned_and_garbage_is_bad_response() -> None:
    clock = ManualClock()
    provider = wire(Kuaidi100Sandbox(clock=clock), clock)
    ok = fixture("query_ok.json")
    assert provider.client.parse_response("query", httpx.Response(200, json=ok)) == ok
    with pytest.raises(BadResponse):
        provider.client.parse_response("query", httpx.Response(200, json={"status": "200"}))
    with pytest.raises(BadResponse):
        provider.client.parse_response("query", httpx.Response(200, content=b"<html>"))
    with pytest.raises(Transient):
        provider.client.parse_response("query", httpx.Response(502, content=b"bad gateway"))


async def test_secrets_stay_out_of_logs_and_errors() -> None:
    clock = ManualClock()
    sandbox = Kuaidi100Sandbox(clock=clock)
    sandbox.add_parcel("YTO", "YT7512345678901")
    clock.advance(3 * 3600)
    wrong_key = "wrong-kuaidi100-key-123"
    provider = wire(sandbox, clock, key=wrong_key)
    with capture_logs() as logs, pytest.raises(AuthExpired) as caught:
        await provider.track("YTO", "YT7512345678901")
    good = wire(sandbox, clock)
    with capture_logs() as more:
        await good.subscribe("YTO", "YT7512345678901", "https://erp.example.com/kd100")
        await good.track("YTO", "YT7512345678901")
    text = repr(logs) + repr(more) + str(caught.value) + caught.value.platform_message
    for secret in (wrong_key, sandbox.key, SALT):
        assert secret not in text
