"""Youzan payloads (fixtures shaped like the real answers) onto canonical records and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from erpsync_youzan.client import YOUZAN, answer_of, error_table
from erpsync_youzan.connector import YouzanConnector
from erpsync_youzan.mapping import STATUS_TABLE, trade_to_order
from erpsync_youzan.sandbox import YouzanSandbox

from core.clock import BEIJING, ManualClock
from core.errors import AuthExpired, ConnectorError, RateLimited, Rejected, SignatureInvalid
from core.records import LineStatus, OrderStatus
from core.testing import connect

FIXTURES = Path(__file__).resolve().parent.parent / "erpsync_youzan" / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_a_trade_list_maps_money_in_fen_and_beijing_times() -> None:
    data = answer_of(fixture("trades_sold_get"), "youzan.trades.sold.get", "4.0.4",
                     error_table(YOUZAN))
    orders = [trade_to_order(e["full_order_info"]) for e in data["full_order_info_list"]]
    assert data["total_results"] == len(orders) == 2
    two_lines = next(o for o in orders if len(o.lines) == 2)
    assert (two_lines.total_fen, two_lines.post_fee_fen, two_lines.paid_fen) == (
        2 * 9900 + 10900, 800, 2 * 9900 + 10900 + 800)
    assert {line.merchant_code: line.quantity for line in two_lines.lines} == {
        "TEE-M": 2, "TEE-L": 1}
    assert two_lines.created_at.utcoffset() == BEIJING.utcoffset(None)
    assert two_lines.buyer_remark == "请尽快发货"


def test_a_shipped_trade_lists_its_waybill_and_shipped_lines() -> None:
    trade = fixture("trade_get_shipped")["data"]["full_order_info"]
    order = trade_to_order(trade)
    assert order.status is OrderStatus.SHIPPED
    assert order.tracking_numbers == ("75300000079190",)
    assert [line.status for line in order.lines] == [LineStatus.SHIPPED]


@pytest.mark.parametrize("status", sorted(STATUS_TABLE))
def test_every_documented_status_maps(status: str) -> None:
    trade = fixture("trade_get_shipped")["data"]["full_order_info"]
    order = trade_to_order({**trade, "order_info": {**trade["order_info"], "status": status}})
    assert order.platform_status == status
    expected = STATUS_TABLE[status]
    if expected is OrderStatus.CANCELLED:  # this trade was paid: a close is a refund
        expected = OrderStatus.REFUNDED
    assert order.status is expected


@pytest.mark.parametrize(("name", "version", "error", "reason"), [
    ("error_gateway_token_unknown", "4.0.4", AuthExpired, None),
    ("error_rate_limited", "4.0.4", RateLimited, None),
    ("error_already_shipped_3x", "3.0.0", Rejected, "already_shipped"),
])
def test_error_bodies_map_to_canonical_errors(name: str, version: str,
                                              error: type[ConnectorError],
                                              reason: str | None) -> None:
    with pytest.raises(error) as raised:
        answer_of(fixture(name), "api", version, error_table(YOUZAN))
    if reason is not None:
        assert getattr(raised.value, "reason", None) == reason


def test_a_3x_success_answer_is_its_response() -> None:
    assert answer_of(fixture("logistics_online_confirm"), "api", "3.0.0",
                     error_table(YOUZAN)) == {"is_success": True}


def connector(sandbox: YouzanSandbox, **args: Any) -> YouzanConnector:
    made = connect(YouzanConnector, sandbox, clock=sandbox.clock, **args)
    assert isinstance(made, YouzanConnector)
    return made


def test_the_recorded_push_verifies_with_its_client_secret_only() -> None:
    push = fixture("push_trade_paid")
    sandbox = YouzanSandbox(clock=ManualClock())
    events = connector(sandbox).verify_push(httpx.Headers(push["headers"]),
                                            push["body"].encode())
    assert [e.platform_order_id for e in events] == [json.loads(push["body"])["id"]]
    with pytest.raises(SignatureInvalid):
        connector(sandbox, app_secret="another-client-secret").verify_push(
            httpx.Headers(push["headers"]), push["body"].encode())


@pytest.mark.asyncio
async def test_a_wrong_client_secret_cannot_refresh_and_rotates_nothing() -> None:
    clock = ManualClock()
    sandbox = YouzanSandbox(clock=clock)
    sandbox.add_item("T", "T", 100, skus=[("T-0", 5, 100)])
    order = sandbox.place_order([("T-0", 1)])
    wrong = connector(sandbox, app_secret="another-client-secret")
    sandbox.expire_token()
    with pytest.raises(ConnectorError):
        await wrong.get_order(order.order_id)
    assert sandbox.token_generation == 1
    assert sandbox.refresh_tokens == {"sandbox-refresh-token-1"}
