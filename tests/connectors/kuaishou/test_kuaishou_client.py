"""Kuaishou envelope: the reference's worked signatures and AES vector byte for byte, the
exact signed request the gateway receives, and the error table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from connectors.kuaishou.client import (
    KuaishouClient,
    decrypt_push,
    encrypt_push,
    param_text,
    sign,
    sign_string,
)
from connectors.kuaishou.connector import KuaishouConnector
from connectors.kuaishou.sandbox import DEFAULT_MSG_SECRET, DEFAULT_SIGN_SECRET, KuaishouSandbox
from core.clock import ManualClock
from core.errors import AuthExpired, ConnectorError, NotFound, RateLimited, Rejected, Transient
from core.testing import connect

FIXTURES = Path(__file__).parents[3] / "connectors" / "kuaishou" / "fixtures"
SECRETS = {"sign_secret": DEFAULT_SIGN_SECRET, "msg_secret": DEFAULT_MSG_SECRET}

EXAMPLE_PARAM = ('{"orderViewStatus":1,"pageSize":50,"queryType":2,'
                 '"beginTime":1700000000000,"endTime":1700003600000,"cursor":""}')


def example(sign_method: str) -> dict[str, str]:
    return {"appkey": "ks123", "access_token": "tok123", "method": "open.order.cursor.list",
            "timestamp": "1700000000000", "version": "1", "param": EXAMPLE_PARAM,
            "signMethod": sign_method}


def test_param_keeps_insertion_order_like_the_example() -> None:
    assert param_text({"orderViewStatus": 1, "pageSize": 50, "queryType": 2,
                       "beginTime": 1700000000000, "endTime": 1700003600000,
                       "cursor": ""}) == EXAMPLE_PARAM


def test_worked_example_hmac_sha256_base64() -> None:
    public = example("HMAC_SHA256")
    assert sign_string(public, "sign-secret-xyz") == (
        f"access_token=tok123&appkey=ks123&method=open.order.cursor.list&param={EXAMPLE_PARAM}"
        "&signMethod=HMAC_SHA256&timestamp=1700000000000&version=1&signSecret=sign-secret-xyz")
    assert sign(public, "sign-secret-xyz") == "qA+gJiw5LgE4kTwcxdULCPj/12YIYUtFpKpmoIx9kY4="


def test_worked_example_md5() -> None:
    assert sign(example("MD5"), "sign-secret-xyz") == "47600994f70c8b08bc5f5a004ef3dcc4"


def test_sign_skips_absent_params_and_ignores_sign() -> None:
    public = {**example("MD5"), "sign": "whatever", "access_token": None}
    assert "access_token=" not in sign_string(public, "s")
    assert "sign=" not in sign_string(public, "s").replace("signSecret=", "")


def test_push_decryption_vector() -> None:
    body = (b"1KwOhRNJcUJFsEQep77V4p6KDuCK3jKC1aIVEPLPYtYuFYp7rBslSe1AZUCHnjpHwe6rIcqrmvMfHncO9"
            b"dawEsc24Sgi0NlsEp+yyuE3HqE1CTDe59uykQ+u8cxmH0G+")
    plaintext = (b'{"event":"kwaishop_order_paySuccess","bizId":1001,'
                 b'"info":"{\\"oid\\":1001,\\"status\\":30}"}')
    assert decrypt_push("MDEyMzQ1Njc4OWFiY2RlZg==", body) == plaintext
    assert encrypt_push("MDEyMzQ1Njc4OWFiY2RlZg==", plaintext) == body
    with pytest.raises(ValueError):
        decrypt_push(base64.b64encode(b"another-key-0016").decode(), body)


async def test_the_gateway_receives_exactly_the_signed_envelope() -> None:
    clock = ManualClock()
    sandbox = KuaishouSandbox(clock=clock)
    connector = connect(KuaishouConnector, sandbox, clock=clock, extra_secrets=SECRETS)
    item = sandbox.add_item("卫衣", "HOOD", 12900, skus=[("HOOD-L", 5, 12900)])
    order = sandbox.place_order([("HOOD-L", 1)])
    await connector.get_order(order.order_id)
    received = sandbox.calls("open.order.detail")[-1]
    assert (received.method, received.path) == ("GET", "/open/order/detail")
    public = dict(received.query)
    assert set(public) == {"appkey", "method", "version", "param", "access_token", "timestamp",
                           "signMethod", "sign"}
    assert public["param"] == f'{{"oid":{order.order_id}}}'
    assert (public["appkey"], public["version"], public["signMethod"]) == (
        sandbox.app_key, "1", "HMAC_SHA256")
    assert public["timestamp"] == str(int(clock.now().timestamp() * 1000))
    text = "&".join(f"{k}={public[k]}" for k in sorted(public) if k != "sign")
    text += f"&signSecret={DEFAULT_SIGN_SECRET}"
    assert public["sign"] == base64.b64encode(hmac.new(
        DEFAULT_SIGN_SECRET.encode(), text.encode(), hashlib.sha256).digest()).decode()

    from core.records import StockUpdate

    await connector.set_stock([StockUpdate(item.item_id, item.skus[0].sku_id, 9)])
    write = sandbox.calls("open.item.sku.stock.update")[-1]
    assert write.method == "POST" and write.query == {}
    assert write.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(parse_qsl(write.body.decode()))
    assert json.loads(form["param"]) == {"kwaiItemId": int(item.item_id),
                                         "skuId": int(item.skus[0].sku_id),
                                         "skuChangeStock": 5, "changeType": 1}


async def test_md5_sign_method_is_accepted_by_the_gateway() -> None:
    sandbox = KuaishouSandbox(clock=ManualClock())
    connector = connect(KuaishouConnector, sandbox, extra_secrets=SECRETS,
                        options={"kuaishou": {"sign_method": "MD5"}})
    sandbox.add_item("卫衣", "HOOD", 12900, skus=[("HOOD-L", 5, 12900)])
    assert [r.merchant_code async for r in connector.iter_listings()] == ["HOOD-L"]
    assert len(sandbox.calls("open.item.list.get")[-1].query["sign"]) == 32


async def test_refresh_call_is_the_oauth_form() -> None:
    sandbox = KuaishouSandbox(clock=ManualClock())
    connector = connect(KuaishouConnector, sandbox, extra_secrets=SECRETS)
    await connector.refresh_token(connector.shop.tokens.current())
    received = sandbox.calls("oauth2.refresh_token")[-1]
    assert received.path == "/oauth2/refresh_token" and received.method == "POST"
    assert dict(parse_qsl(received.body.decode())) == {
        "grant_type": "refresh_token", "refresh_token": "sandbox-refresh-token-1",
        "app_id": sandbox.app_key, "app_secret": sandbox.app_secret}


def offline_client() -> KuaishouClient:
    connector = connect(KuaishouConnector, KuaishouSandbox(clock=ManualClock()),
                        extra_secrets=SECRETS)
    assert isinstance(connector, KuaishouConnector)
    return connector.client


@pytest.mark.parametrize("payload, kind, reason", [
    ({"result": 28, "error_msg": "鉴权失败"}, AuthExpired, None),
    ({"result": 99, "error_msg": "TOKEN过期"}, AuthExpired, None),
    ({"result": 24, "error_msg": "AUTHORIZATION_REVOKED"}, AuthExpired, None),
    ({"result": 27, "error_msg": "签名校验失败"}, Rejected, "bad_signature"),
    ({"result": 22, "error_msg": "token中无scope权限"}, Rejected, "missing_scope"),
    ({"result": 11, "error_msg": "快递公司不存在"}, Rejected, "bad_carrier"),
    ({"result": 11, "error_msg": "运单号和物流公司不匹配"}, Rejected, "bad_carrier"),
    ({"result": 11, "error_msg": "同一个运单号对应收件地址超过1个"}, Rejected, "foreign_waybill"),
    ({"result": 11, "error_msg": "运单揽收时间早于支付时间"}, Rejected, "delivery_blocked"),
    ({"result": 21, "error_msg": "订单已发货，不能重复发货"}, Rejected, "already_shipped"),
    ({"result": 21, "error_msg": "order operation reject"}, Rejected, ""),
    ({"result": 21, "error_msg": "订单不存在"}, NotFound, None),
    ({"result": 16, "error_msg": "x"}, RateLimited, None),
    ({"result": 300014, "error_msg": "退款单已更新"}, Transient, None),
    ({"result": 100200102, "error": "access_denied", "error_msg": "refreshToken.discarded"},
     AuthExpired, None),
])
def test_error_table(payload: dict[str, object], kind: type[ConnectorError],
                     reason: str | None) -> None:
    error = offline_client().platform_error(payload)
    assert type(error) is kind
    assert error.code == str(payload["result"])
    if reason is not None:
        assert isinstance(error, Rejected) and error.reason == reason


def test_daily_quota_is_not_waited_out_in_one_call() -> None:
    error = offline_client().platform_error(
        {"result": 1017, "error_msg": "[1017] exceed quota limit,[apiId:1;primaryUserId:2]"})
    assert isinstance(error, RateLimited)
    assert error.retry_after == 24 * 3600  # the ManualClock starts at Beijing midnight


@pytest.mark.parametrize("name, kind", [
    ("error_qps_limit.json", RateLimited),
    ("error_deliver_blocked.json", Rejected),
    ("oauth_refresh_discarded.json", AuthExpired),
])
def test_fixture_error_envelopes(name: str, kind: type[Exception]) -> None:
    response = httpx.Response(200, content=(FIXTURES / name).read_bytes(),
                              request=httpx.Request("POST", "https://x/a"))
    with pytest.raises(kind):
        offline_client().parse_response("open.seller.order.goods.deliver", response)


def test_success_envelope_returns_data() -> None:
    response = httpx.Response(200, content=(FIXTURES / "item_sku_list_get.json").read_bytes(),
                              request=httpx.Request("GET", "https://x/a"))
    assert offline_client().parse_response("open.item.sku.list.get", response)["skuCount"] == 2


def test_missing_sign_secret_is_a_configuration_refusal() -> None:
    connector = connect(KuaishouConnector, KuaishouSandbox(clock=ManualClock()))
    assert isinstance(connector, KuaishouConnector)
    with pytest.raises(Rejected) as caught:
        connector.client.build_request("open.order.detail", {"oid": 1}, "t")
    assert caught.value.reason == "missing_secret"
