"""The TOP simulator refuses what the real gateway refuses, with the gateway's own codes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlencode

import httpx
import pytest

from connectors.taobao.client import sign
from connectors.taobao.connector import TaobaoConnector
from connectors.taobao.mapping import trade_to_order
from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock, format_beijing
from core.errors import AuthExpired, ConnectorError, NotFound, RateLimited, Rejected, Transient
from core.records import OrderStatus
from core.sandbox import Fault
from core.testing import connect

INCREMENT = "taobao.trades.sold.increment.get"


def setup(sandbox_clock: ManualClock | None = None, **connect_args: Any) -> tuple[
        ManualClock, TaobaoSandbox, TaobaoConnector]:
    clock = ManualClock()
    sandbox = TaobaoSandbox(clock=sandbox_clock or clock)
    return clock, sandbox, cast(TaobaoConnector, connect(TaobaoConnector, sandbox, clock=clock,
                                                         **connect_args))


async def call(connector: TaobaoConnector, api: str, params: dict[str, Any] | None = None,
               **kwargs: Any) -> Any:
    return await connector.client.call(api, params or {}, **kwargs)


async def refused(connector: TaobaoConnector, api: str, params: dict[str, Any] | None = None,
                  **kwargs: Any) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        await call(connector, api, params, **kwargs)
    return caught.value


async def post(sandbox: TaobaoSandbox, params: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=sandbox.transport()) as http:
        response = await http.post("https://eco.taobao.com/router/rest", content=urlencode(params),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    return cast(dict[str, Any], response.json())


def window(clock: ManualClock, hours: float = 1) -> dict[str, Any]:
    return {"fields": "tid,modified", "start_modified": clock.now() - timedelta(hours=hours),
            "end_modified": clock.now()}


def seeded(sandbox: TaobaoSandbox, skus: int = 2) -> Any:
    return sandbox.add_item("T恤", "TEE", 9900,
                            skus=[(f"TEE-{n}", 10, 9900) for n in range(skus)])


# -- the gateway's own checks ---------------------------------------------------------------
async def test_unknown_app_key_is_29() -> None:
    _, sandbox, connector = setup()
    sandbox.app_key = "another-app"
    error = await refused(connector, INCREMENT, window(connector.client.clock))  # type: ignore[arg-type]
    assert isinstance(error, Rejected) and error.code == "29"


@pytest.mark.parametrize(("skew", "accepted"), [(timedelta(minutes=9), True),
                                                (timedelta(minutes=-9), True),
                                                (timedelta(minutes=11), False),
                                                (timedelta(minutes=-11), False)])
async def test_timestamp_skew_over_ten_minutes_is_31(skew: timedelta, accepted: bool) -> None:
    server = ManualClock(ManualClock().now() + skew)
    clock, _, connector = setup(sandbox_clock=server)
    if accepted:
        await call(connector, INCREMENT, window(clock))
    else:
        error = await refused(connector, INCREMENT, window(clock))
        assert isinstance(error, Rejected) and error.code == "31"


async def test_wrong_secret_is_25_for_every_sign_method() -> None:
    for method in ("md5", "hmac", "hmac-sha256"):
        clock, _, connector = setup(app_secret="not-the-secret", options={"sign_method": method})
        error = await refused(connector, INCREMENT, window(clock))
        assert isinstance(error, Rejected) and error.code == "25"
        assert "not-the-secret" not in str(error)


async def test_session_missing_is_26_and_unknown_is_27() -> None:
    clock, sandbox, connector = setup()
    missing = await refused(connector, INCREMENT, window(clock), authenticated=False)
    assert isinstance(missing, AuthExpired) and missing.code == "26"
    params = {"method": INCREMENT, "app_key": sandbox.app_key, "v": "2.0", "format": "json",
              "sign_method": "md5", "timestamp": format_beijing(clock.now()),
              "session": "revoked-token", "fields": "tid", **{
                  k: format_beijing(v) for k, v in window(clock).items() if k != "fields"}}
    params["sign"] = sign(params, sandbox.app_secret, "md5")
    error = (await post(sandbox, params))["error_response"]
    assert (error["code"], error["sub_code"]) == (27, "invalid-sessionkey")


async def test_missing_and_invalid_arguments() -> None:
    clock, _, connector = setup()
    missing = await refused(connector, "taobao.trade.fullinfo.get", {"tid": "1"})
    assert isinstance(missing, Rejected) and missing.code == "40"
    for bad in ({"page_size": 101}, {"page_size": 0}, {"page_no": 0},
                {"start_modified": clock.now() - timedelta(days=1, seconds=1)},
                {"start_modified": clock.now() + timedelta(seconds=1)}):
        error = await refused(connector, INCREMENT, {**window(clock), **bad})
        assert isinstance(error, Rejected) and error.code == "41", bad
    old = clock.now() - timedelta(days=91)
    error = await refused(connector, INCREMENT, {**window(clock), "start_modified": old,
                                                 "end_modified": old + timedelta(hours=1)})
    assert error.code == "41"


async def test_unknown_method_and_non_json_format() -> None:
    clock, sandbox, connector = setup()
    assert (await refused(connector, "taobao.no.such.api")).code == "22"
    params = {"method": INCREMENT, "app_key": sandbox.app_key, "v": "2.0", "format": "xml",
              "sign_method": "md5", "timestamp": format_beijing(clock.now()),
              "session": "sandbox-access-token-1", "fields": "tid"}
    params["sign"] = sign(params, sandbox.app_secret, "md5")
    assert (await post(sandbox, params))["error_response"]["code"] == 23


@pytest.mark.parametrize(("fault", "code", "sub_code"), [
    (Fault.RATE_LIMIT, 7, "accesscontrol.limited-by-api-access-count"),
    (Fault.SERVER_ERROR, 10, "isp.top-remote-service-unavailable"),
])
def test_fault_bodies_are_top_error_envelopes(fault: Fault, code: int, sub_code: str) -> None:
    body = TaobaoSandbox().fault_response(fault, INCREMENT)
    error = httpx.Response(body.status, content=body.body).json()["error_response"]
    assert (body.status, error["code"], error["sub_code"]) == (200, code, sub_code)
    if fault is Fault.RATE_LIMIT:
        assert error["sub_msg"] == "This ban will last for 1 more seconds"


async def test_faults_arrive_as_canonical_errors() -> None:
    clock, sandbox, connector = setup()
    sandbox.faults.inject(Fault.RATE_LIMIT, 4)
    assert isinstance(await refused(connector, INCREMENT, window(clock)), RateLimited)
    sandbox.faults.inject(Fault.SERVER_ERROR, 4)
    assert isinstance(await refused(connector, INCREMENT, window(clock)), Transient)


# -- increments ------------------------------------------------------------------------------
async def test_increment_pages_backwards_shape() -> None:
    clock, sandbox, connector = setup()
    seeded(sandbox)
    tids = []
    for _ in range(5):
        tids.append(sandbox.place_order([("TEE-0", 1)]).order_id)
        clock.advance(60)
    pages = [await call(connector, INCREMENT, {**window(clock), "page_size": 2, "page_no": n})
             for n in (1, 2, 3)]
    assert [p["total_results"] for p in pages] == [5, 5, 5]
    assert [p["has_next"] for p in pages] == [True, True, False]
    seen = [str(t["tid"]) for p in pages for t in p["trades"]["trade"]]
    assert seen == list(reversed(tids))  # newest modified first
    assert set(pages[0]["trades"]["trade"][0]) == {"tid", "modified"}
    past_end = await call(connector, INCREMENT, {**window(clock), "page_size": 2, "page_no": 4})
    assert "trades" not in past_end and past_end["total_results"] == 5
    fast = await call(connector, INCREMENT, {**window(clock), "use_has_next": True})
    assert "total_results" not in fast and fast["has_next"] is False


@pytest.mark.parametrize(("steps", "status", "canonical"), [
    ((), "WAIT_BUYER_PAY", OrderStatus.UNPAID),
    (("pay",), "WAIT_SELLER_SEND_GOODS", OrderStatus.PAID),
    (("pay", "ship_one"), "SELLER_CONSIGNED_PART", OrderStatus.PAID),
    (("pay", "ship"), "WAIT_BUYER_CONFIRM_GOODS", OrderStatus.SHIPPED),
    (("pay", "ship", "complete"), "TRADE_FINISHED", OrderStatus.COMPLETED),
    (("cancel",), "TRADE_CLOSED_BY_TAOBAO", OrderStatus.CANCELLED),
    (("pay", "cancel"), "TRADE_CLOSED", OrderStatus.REFUNDED),
    (("pay", "ship", "refund"), "TRADE_CLOSED", OrderStatus.REFUNDED),
])
def test_trade_status_follows_the_lifecycle(steps: tuple[str, ...], status: str,
                                            canonical: OrderStatus) -> None:
    sandbox = TaobaoSandbox(clock=ManualClock())
    seeded(sandbox)
    order = sandbox.place_order([("TEE-0", 1), ("TEE-1", 1)], paid=False)
    actions: dict[str, Callable[[], object]] = {
        "pay": lambda: sandbox.pay(order.order_id),
        "cancel": lambda: sandbox.cancel(order.order_id),
        "complete": lambda: sandbox.complete(order.order_id),
        "refund": lambda: sandbox.refund_after_shipping(order.order_id),
        "ship": lambda: sandbox.record_shipment(order, "SF", "SF123456789012", []),
        "ship_one": lambda: sandbox.record_shipment(order, "SF", "SF123456789012",
                                                    [order.lines[0].line_id]),
    }
    for step in steps:
        actions[step]()
    rendered = sandbox.render_trade(order)
    assert rendered["status"] == status
    assert trade_to_order(rendered).status is canonical


# -- stock -----------------------------------------------------------------------------------
async def test_sku_stock_rules() -> None:
    _, sandbox, connector = setup()
    item = seeded(sandbox, skus=21)
    ids = [s.sku_id for s in item.skus]
    too_many = ";".join(f"{i}:1" for i in ids)
    error = await refused(connector, "taobao.skus.quantity.update",
                          {"num_iid": item.item_id, "skuid_quantities": too_many})
    assert error.code == "41"
    negative = await refused(connector, "taobao.skus.quantity.update", {
        "num_iid": item.item_id, "skuid_quantities": f"{ids[0]}:5;{ids[1]}:-1", "type": 1})
    assert isinstance(negative, Rejected)
    assert [sandbox.stock_of("TEE-0"), sandbox.stock_of("TEE-1")] == [10, 10]  # all or nothing
    await call(connector, "taobao.skus.quantity.update", {
        "num_iid": item.item_id, "skuid_quantities": f"{ids[0]}:-15", "type": 2})
    assert sandbox.stock_of("TEE-0") == 0  # a delta clamps at zero
    by_code = await call(connector, "taobao.skus.quantity.update", {
        "num_iid": item.item_id, "outerid_quantities": "TEE-1:7"})
    assert sandbox.stock_of("TEE-1") == 7 and by_code["item"]["num"] == sum(
        s.quantity for s in item.skus)
    unknown = await refused(connector, "taobao.skus.quantity.update",
                            {"num_iid": "1", "skuid_quantities": "2:1"})
    assert isinstance(unknown, NotFound)


async def test_item_quantity_needs_a_sku_when_the_item_has_skus() -> None:
    _, sandbox, connector = setup()
    item = seeded(sandbox)
    error = await refused(connector, "taobao.item.quantity.update",
                          {"num_iid": item.item_id, "quantity": 3})
    assert isinstance(error, Rejected)
    await call(connector, "taobao.item.quantity.update",
               {"num_iid": item.item_id, "quantity": 3, "outer_id": "TEE-1"})
    assert sandbox.stock_of("TEE-1") == 3


async def test_sku_price_must_keep_the_item_price_in_range() -> None:
    _, sandbox, connector = setup()
    item = sandbox.add_item("杯", "CUP", 1000, skus=[("CUP-S", 5, 1000), ("CUP-L", 5, 1500)])
    small = item.skus[0]
    properties = (await call(connector, "taobao.items.seller.list.get", {
        "fields": "num_iid,sku", "num_iids": item.item_id}))["items"]["item"][0]["skus"]["sku"][0][
        "properties"]
    error = await refused(connector, "taobao.item.sku.update",
                          {"num_iid": item.item_id, "properties": properties, "price": "12.00"})
    assert isinstance(error, Rejected) and small.price_fen == 1000
    await call(connector, "taobao.item.sku.update", {"num_iid": item.item_id,
                                                     "properties": properties, "price": "12.00",
                                                     "item_price": "12.00"})
    assert (small.price_fen, item.price_fen) == (1200, 1200)


async def test_item_add_checks_required_and_consistent_fields() -> None:
    _, _, connector = setup()
    base = {"location.state": "浙江", "location.city": "杭州", "type": "fixed",
            "stuff_status": "new", "title": "新品", "desc": "足够长的描述文字", "cid": "50000436",
            "price": "10.00", "num": 5, "props": "20000:3;1627207:1;1627207:2",
            "sku_properties": "1627207:1,1627207:2",
            "sku_quantities": "2,3", "sku_prices": "10.00,12.00", "sku_outer_ids": "A,B"}
    missing = await refused(connector, "taobao.item.add",
                            {k: v for k, v in base.items() if k != "location.city"})
    assert missing.code == "40"
    assert isinstance(await refused(connector, "taobao.item.add", {**base, "num": 4}), Rejected)
    assert isinstance(await refused(connector, "taobao.item.add", {**base, "price": "13.00"}),
                      Rejected)
    for broken in ({"sku_prices": "10.00"}, {"props": "20000:3;1627207:1"}):
        assert (await refused(connector, "taobao.item.add", {**base, **broken})).code == "41"
    created = await call(connector, "taobao.item.add", base)
    assert set(created["item"]) == {"num_iid", "created"}


# -- logistics -------------------------------------------------------------------------------
async def test_offline_send_refusals() -> None:
    _, sandbox, connector = setup()
    seeded(sandbox)
    order = sandbox.place_order([("TEE-0", 1), ("TEE-1", 1)])
    send = "taobao.logistics.offline.send"
    base = {"tid": order.order_id, "out_sid": "SF123456789012", "company_code": "SF"}

    async def reason(params: dict[str, Any]) -> str:
        error = await refused(connector, send, {**base, **params})
        assert isinstance(error, Rejected), error
        return error.reason

    assert await reason({"company_code": "NO_SUCH_CO"}) == "bad_carrier"
    assert await reason({"out_sid": "12345"}) == "bad_waybill"
    assert await reason({"is_split": 1}) == ""  # CD25: is_split and sub_tid go together
    assert await reason({"is_split": 1, "sub_tid": "999"}) == ""  # B06: not this trade's oid
    assert isinstance(await refused(connector, send, {**base, "tid": "42"}), NotFound)
    first = order.lines[0].line_id
    await call(connector, send, {**base, "is_split": 1, "sub_tid": first})
    assert await reason({"out_sid": "SF123456789013"}) == ""  # CD22: split trade needs sub_tid
    assert await reason({"is_split": 1, "sub_tid": first}) == "already_shipped"
    await call(connector, send, {**base, "is_split": 1, "sub_tid": order.lines[1].line_id})
    assert await reason({}) == "already_shipped"
    other = sandbox.place_order([("TEE-0", 1)])
    assert await reason({"tid": other.order_id}) == "foreign_waybill"
    unpaid = sandbox.place_order([("TEE-0", 1)], paid=False)
    assert await reason({"tid": unpaid.order_id, "out_sid": "SF123456789099"}) == ""


async def test_token_refresh_rotates_and_the_old_refresh_token_dies() -> None:
    _, sandbox, connector = setup()
    refresh = "taobao.top.auth.token.refresh"
    first = await call(connector, refresh, {"refresh_token": "sandbox-refresh-token-1"},
                       authenticated=False)
    assert '"refresh_token": "sandbox-refresh-token-2"' in first["token_result"]
    assert sandbox.token_valid("sandbox-access-token-2")
    assert not sandbox.token_valid("sandbox-access-token-1")
    again = await refused(connector, refresh, {"refresh_token": "sandbox-refresh-token-1"},
                          authenticated=False)
    assert isinstance(again, AuthExpired)
