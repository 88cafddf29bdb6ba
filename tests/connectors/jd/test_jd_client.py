"""JD envelope: the official signature example, the request the gateway receives, errors at
all three depths."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from connectors.jd import JdConnector
from connectors.jd.client import JdAssumptions, JdClient, param_json, response_key, sign
from connectors.jd.sandbox import JdSandbox
from core.clock import BEIJING, ManualClock
from core.errors import AuthExpired, BadResponse, NotFound, RateLimited, Rejected, Transient
from core.signing import concat_sorted
from core.testing import connect

FIXTURES = Path(__file__).parents[3] / "connectors" / "jd" / "fixtures"


def test_official_signature_example_byte_for_byte() -> None:
    business = param_json({"end_date": None, "optional_fields": None,
                           "order_state": "WAIT_SELLER_STOCK_OUT", "page": "1",
                           "page_size": "200", "start_date": None})
    assert business == ('{"end_date":null,"optional_fields":null,'
                        '"order_state":"WAIT_SELLER_STOCK_OUT","page":"1","page_size":"200",'
                        '"start_date":null}')
    params = {"360buy_param_json": business, "access_token": "yourtoken",
              "app_key": "yourappkey", "method": "jingdong.pop.order.search",
              "timestamp": "2021-05-07 09:20:39.683+0800", "v": "2.0"}
    assert concat_sorted(params) == (
        "360buy_param_json" + business + "access_tokenyourtokenapp_keyyourappkey"
        "methodjingdong.pop.order.searchtimestamp2021-05-07 09:20:39.683+0800v2.0")
    assert sign(params, "yourappSecret") == "D70825340F4084360B9362B60DFD7930"


def test_second_worked_example() -> None:
    params = {"method": "jingdong.stock.write.updateSkuStock", "app_key": "testKey",
              "access_token": "testToken", "timestamp": "2024-01-01 12:00:00", "v": "2.0",
              "360buy_param_json": param_json({"stockNum": 5, "skuId": 10001})}
    assert params["360buy_param_json"] == '{"skuId":10001,"stockNum":5}'
    assert sign(params, "testSecret") == "F1D3781AF9D499D5ABABC48354B3B827"


def test_chinese_values_are_signed_as_utf8() -> None:
    params = {"360buy_param_json": param_json({"note": "下架"}), "method": "m"}
    expected = hashlib.md5(("s" + "360buy_param_json" + '{"note":"下架"}' + "methodm" + "s")
                           .encode()).hexdigest().upper()
    assert sign(params, "s") == expected


async def test_the_gateway_receives_a_fully_signed_form() -> None:
    clock = ManualClock(datetime(2026, 11, 11, 9, 20, 39, 683_000, tzinfo=BEIJING))
    sandbox = JdSandbox(clock=clock)
    item = sandbox.add_item("耳机", "HS", 19900, quantity=5)
    connector = connect(JdConnector, sandbox, clock=clock)
    await connector.set_on_sale(item.item_id, False)

    (request,) = sandbox.calls("jingdong.ware.write.upOrDown")
    assert request.method == "POST" and request.path == "/routerjson"
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = dict(parse_qsl(request.body.decode()))
    assert set(form) == {"method", "app_key", "access_token", "timestamp", "v",
                         "360buy_param_json", "sign"}
    assert form["method"] == "jingdong.ware.write.upOrDown"
    assert form["app_key"] == sandbox.app_key and form["v"] == "2.0"
    assert form["timestamp"] == "2026-11-11 09:20:39.683+0800"
    assert form["360buy_param_json"] == f'{{"opType":2,"wareId":{item.item_id}}}'
    unsigned = {k: v for k, v in form.items() if k != "sign"}
    joined = "".join(k + unsigned[k] for k in sorted(unsigned))
    assert form["sign"] == hashlib.md5(
        (sandbox.app_secret + joined + sandbox.app_secret).encode()).hexdigest().upper()


async def test_refresh_goes_to_the_oauth_endpoint() -> None:
    sandbox = JdSandbox(clock=ManualClock())
    connector = connect(JdConnector, sandbox, clock=sandbox.clock)
    client = connector.client  # type: ignore[attr-defined]
    request = client.build_request("oauth2.refresh_token", {"refresh_token": "r1"}, "")
    assert request.method == "GET"
    assert request.url.path == "/oauth2/refresh_token"
    assert dict(request.url.params) == {"app_key": sandbox.app_key,
                                        "app_secret": sandbox.app_secret,
                                        "grant_type": "refresh_token", "refresh_token": "r1"}
    production = connect(JdConnector, sandbox, clock=sandbox.clock,
                         base_url="https://api.jd.com")
    prod_request = production.client.build_request(  # type: ignore[attr-defined]
        "oauth2.refresh_token", {"refresh_token": "r1"}, "")
    assert prod_request.url.host == "open-oauth.jd.com"


def client() -> JdClient:
    sandbox = JdSandbox(clock=ManualClock())
    jd = connect(JdConnector, sandbox, clock=sandbox.clock)
    found: JdClient = jd.client  # type: ignore[attr-defined]
    return found


def answer(body: bytes | str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body.encode() if isinstance(body, str) else body)


@pytest.mark.parametrize(("code", "kind"), [
    ("2", RateLimited), ("5", Rejected), ("8", Rejected), ("12", Rejected), ("15", Rejected),
    ("19", AuthExpired), ("21", Rejected), ("33", Transient), ("65", Transient),
    ("11100006", Rejected),
])
def test_gateway_error_table(code: str, kind: type[Exception]) -> None:
    body = json.dumps({"error_response": {"code": code, "zh_desc": "x", "en_desc": "x"}})
    with pytest.raises(kind) as caught:
        client().parse_response("jingdong.pop.order.get", answer(body))
    assert type(caught.value) is kind
    assert caught.value.code == code  # type: ignore[attr-defined]


def test_fixture_errors() -> None:
    with pytest.raises(AuthExpired):
        client().parse_response("jingdong.pop.order.get",
                                answer((FIXTURES / "error_invalid_access_token.json").read_bytes()))
    with pytest.raises(RateLimited):
        client().parse_response("jingdong.pop.order.get",
                                answer((FIXTURES / "error_app_call_limited.json").read_bytes()))


def test_the_responce_wrapper_is_unwrapped_and_its_code_checked() -> None:
    assert response_key("jingdong.pop.order.search") == "jingdong_pop_order_search_responce"
    body = (FIXTURES / "pop_order_search.json").read_bytes()
    inner = client().parse_response("jingdong.pop.order.search", answer(body))
    assert inner["searchorderinfo_result"]["orderTotal"] == 2
    # the correctly spelt key is tolerated
    fixed = body.decode().replace("_responce", "_response")
    assert client().parse_response("jingdong.pop.order.search", answer(fixed))["code"] == "0"
    bad = json.dumps({"jingdong_pop_order_get_responce": {"code": "19", "zh_desc": "x"}})
    with pytest.raises(AuthExpired):
        client().parse_response("jingdong.pop.order.get", answer(bad))


def test_inner_results_say_what_failed() -> None:
    body = (FIXTURES / "pop_order_shipment_already_shipped.json").read_bytes()
    jd = client()
    inner = jd.parse_response("jingdong.pop.order.shipment", answer(body))
    with pytest.raises(Rejected) as caught:
        jd.check_result("jingdong.pop.order.shipment", inner["sopjosshipment_result"])
    assert caught.value.reason == "already_shipped"
    with pytest.raises(NotFound):
        jd.check_result("x", {"success": False, "chineseErrCode": "订单不存在"})
    with pytest.raises(BadResponse):
        jd.check_result("x", None)
    ok = (FIXTURES / "pop_order_shipment.json").read_bytes()
    inner = jd.parse_response("jingdong.pop.order.shipment", answer(ok))
    assert jd.check_result("x", inner["sopjosshipment_result"])["success"] is True


def test_business_words_are_overridable() -> None:
    assumptions = JdAssumptions.from_options({"jd_assumptions": {
        "business_errors": [["重复", "already_shipped"]], "sku_page_size": 20}})
    assert assumptions.business_outcome("不能重复出库") == "already_shipped"
    assert assumptions.sku_page_size == 20
    with pytest.raises(ValueError):
        JdAssumptions.from_options({"jd_assumptions": {"nope": 1}})


@pytest.mark.parametrize("body", [b'{"result": {"truncated', b"[]", b'{"other": {}}'])
def test_unparseable_bodies(body: bytes) -> None:
    with pytest.raises(BadResponse):
        client().parse_response("jingdong.pop.order.get", answer(body))


def test_refresh_answers() -> None:
    jd = client()
    good = (FIXTURES / "oauth_refresh_token.json").read_bytes()
    assert jd.parse_response("oauth2.refresh_token", answer(good))["access_token"]
    refused = json.dumps({"code": 1004, "msg": "refresh_token无效或已过期"})
    with pytest.raises(AuthExpired):
        jd.parse_response("oauth2.refresh_token", answer(refused))
