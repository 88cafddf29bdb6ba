"""TOP envelope: the reference's worked signatures byte for byte, the signed request the
gateway receives, response unwrapping and the one error table."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import httpx
import pytest

from connectors.taobao.client import error_key, response_key, sign, top_error, unwrap_list
from connectors.taobao.connector import TaobaoConnector
from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock, format_beijing
from core.errors import AuthExpired, BadResponse, NotFound, RateLimited, Rejected, Transient
from core.signing import concat_sorted
from core.testing import connect

FIXTURES = Path(__file__).parents[3] / "connectors" / "taobao" / "fixtures"

EXAMPLE_1 = {
    "method": "taobao.item.seller.get", "app_key": "12345678", "session": "test",
    "timestamp": "2016-01-01 12:00:00", "format": "json", "v": "2.0", "sign_method": "md5",
    "fields": "num_iid,title,nick,price,num", "num_iid": "11223344",
}


def fixture(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((FIXTURES / name).read_text()))


# -- worked examples (reference §3) ----------------------------------------------------------
def test_example_1_joined_string_and_md5() -> None:
    assert concat_sorted(EXAMPLE_1) == (
        "app_key12345678fieldsnum_iid,title,nick,price,numformatjsonmethodtaobao.item.seller.get"
        "num_iid11223344sessiontestsign_methodmd5timestamp2016-01-01 12:00:00v2.0")
    assert sign(EXAMPLE_1, "helloworld", "md5") == "66987CB115214E59E6EC978214934FB8"


def test_example_2_legacy_md5() -> None:
    params = {"method": "taobao.user.seller.get", "timestamp": "2013-05-06 13:52:03",
              "format": "xml", "app_key": "test", "v": "2.0", "fields": "nick",
              "sign_method": "md5", "session": "test"}
    assert sign(params, "test", "md5") == "72CB4D809B375A54502C09360D879C64"


@pytest.mark.parametrize(("method", "expected"), [
    ("hmac", "D56D7858309C31B6251083A874D48273"),
    ("hmac-sha256", "04DB15AD0774D5CFCE2C837DE43E3FCEA9011ED74F3038FB6AB5F3C4CEA119E8"),
])
def test_example_3_hmac_variants(method: str, expected: str) -> None:
    # example 1's parameters with `sign_method` itself set to the method (it is signed too)
    assert sign({**EXAMPLE_1, "sign_method": method}, "helloworld", method) == expected


def test_sign_ignores_a_sign_parameter_and_rejects_unknown_methods() -> None:
    assert sign({**EXAMPLE_1, "sign": "X"}, "helloworld", "md5") == sign(EXAMPLE_1, "helloworld",
                                                                         "md5")
    with pytest.raises(ValueError):
        sign(EXAMPLE_1, "helloworld", "sha1")


# -- the signed request the gateway receives ------------------------------------------------
@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
async def test_increment_request_carries_exactly_the_envelope(sign_method: str) -> None:
    clock = ManualClock()
    sandbox = TaobaoSandbox(clock=clock)
    connector = connect(TaobaoConnector, sandbox, clock=clock,
                        options={"sign_method": sign_method})
    start = clock.now() - timedelta(minutes=30)
    assert [o async for o in connector.iter_orders(start, clock.now())] == []

    (received,) = sandbox.calls("taobao.trades.sold.increment.get")
    form = received.form()
    assert received.method == "POST" and received.path == "/router/rest"
    assert received.headers["content-type"] == "application/x-www-form-urlencoded;charset=utf-8"
    assert received.query == {}
    assert set(form) == {"method", "app_key", "session", "timestamp", "v", "sign_method",
                         "format", "sign", "fields", "start_modified", "end_modified",
                         "page_no", "page_size"}
    assert form["method"] == "taobao.trades.sold.increment.get"
    assert form["app_key"] == sandbox.app_key
    assert form["session"] == "sandbox-access-token-1"
    assert form["timestamp"] == format_beijing(clock.now())
    assert (form["v"], form["format"], form["sign_method"]) == ("2.0", "json", sign_method)
    assert (form["start_modified"], form["end_modified"]) == (format_beijing(start),
                                                            format_beijing(clock.now()))
    assert (form["page_no"], form["page_size"]) == ("1", "100")
    assert form["sign"] == sign(form, sandbox.app_secret, sign_method)
    assert sandbox.app_secret not in received.body.decode()


async def test_gateway_accepts_system_params_in_the_query_string() -> None:
    """The official SDK sends system parameters in the query string; both halves are signed,
    and its epoch-millisecond timestamp is accepted."""
    clock = ManualClock()
    sandbox = TaobaoSandbox(clock=clock)
    system = {"method": "taobao.items.onsale.get", "app_key": sandbox.app_key,
              "session": "sandbox-access-token-1", "v": "2.0", "format": "json",
              "sign_method": "hmac", "timestamp": str(int(clock.now().timestamp() * 1000))}
    business = {"fields": "num_iid", "page_size": "10"}
    system["sign"] = sign({**system, **business}, sandbox.app_secret, "hmac")
    async with httpx.AsyncClient(transport=sandbox.transport()) as http:
        response = await http.post("https://eco.taobao.com/router/rest?" + urlencode(system),
                                   content=urlencode(business),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.json()["items_onsale_get_response"]["total_results"] == 0


# -- responses -------------------------------------------------------------------------------
@pytest.mark.parametrize(("api", "key"), [
    ("taobao.trades.sold.increment.get", "trades_sold_increment_get_response"),
    ("taobao.logistics.offline.send", "logistics_offline_send_response"),
    ("tmall.item.quantity.update", "tmall_item_quantity_update_response"),
    ("taobao.top.auth.token.refresh", "top_auth_token_refresh_response"),
])
def test_response_key(api: str, key: str) -> None:
    assert response_key(api) == key


def test_unwrap_list_handles_double_wrapping_and_omitted_lists() -> None:
    page = fixture("trades_sold_increment_get.json")["trades_sold_increment_get_response"]
    assert [t["tid"] for t in unwrap_list(page, "trades", "trade")] == [
        3917264410582937461, 3917265520193048572, 3917260013377104826]
    assert unwrap_list({"total_results": 0}, "trades", "trade") == []


def _response(body: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("POST", "https://x/router/rest"))


async def test_parse_response_unwraps_and_refuses_foreign_bodies() -> None:
    connector = connect(TaobaoConnector, TaobaoSandbox(clock=ManualClock()))
    client = connector.client  # type: ignore[attr-defined]
    body = fixture("logistics_offline_send.json")
    assert client.parse_response("taobao.logistics.offline.send", _response(body)) == body[
        "logistics_offline_send_response"]
    with pytest.raises(BadResponse):
        client.parse_response("taobao.trade.fullinfo.get", _response(body))
    with pytest.raises(Transient):
        client.parse_response("taobao.trade.fullinfo.get", _response({}, status=502))


# -- the error table ---------------------------------------------------------------------------
def test_flow_control_fixture_is_rate_limited_for_the_ban_time() -> None:
    error = top_error("taobao.items.onsale.get", fixture("error_flow_control.json")["error_response"])
    assert isinstance(error, RateLimited) and error.retry_after == 31062


@pytest.mark.parametrize(("name", "kind", "reason"), [
    ("error_session_invalid.json", AuthExpired, None),
    ("error_offline_send_b04.json", Rejected, "already_shipped"),
    ("error_remote_timeout.json", Transient, None),
    ("error_trade_not_exist.json", NotFound, None),
])
def test_error_fixtures_map_to_canonical_errors(name: str, kind: type, reason: str | None) -> None:
    error = top_error("taobao.x", fixture(name)["error_response"])
    assert type(error) is kind
    if reason is not None:
        assert error.reason == reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(("code", "sub_code", "kind", "reason"), [
    ("7", "accesscontrol.limited-by-api-access-count", RateLimited, ""),
    ("15", "isp.call-limited", RateLimited, ""),
    ("10", "", Transient, ""),
    ("52", "", Transient, ""),
    ("520", "", Transient, ""),
    ("15", "isp.remote-service-timeout", Transient, ""),
    ("26", "", AuthExpired, ""),
    ("27", "session-expired", AuthExpired, ""),
    ("15", "isv.item-not-exist:invalid-numIid-or-iid", NotFound, ""),
    ("15", "isv.logistics-offline-service-error:B56", Rejected, "bad_carrier"),
    ("15", "isv.invalid-parameter:quantity", Rejected, ""),
    ("11", "isv.permission-api-package-limit", Rejected, ""),
    ("24", "", Rejected, ""), ("25", "", Rejected, ""), ("28", "", Rejected, ""),
    ("29", "", Rejected, ""), ("30", "", Rejected, ""), ("31", "", Rejected, ""),
    ("40", "", Rejected, ""), ("41", "", Rejected, ""),
])
def test_error_table(code: str, sub_code: str, kind: type, reason: str) -> None:
    error = top_error("taobao.x", {"code": int(code), "msg": "m", "sub_code": sub_code,
                                   "sub_msg": "s"})
    assert type(error) is kind
    assert getattr(error, "reason", "") == reason
    assert error_key(code, sub_code) in {code, sub_code, sub_code.split(":")[0],
                                         sub_code.split(".")[0] + ".*"}

