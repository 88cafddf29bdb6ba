"""One order that does not map is quarantined with an alert while the rest of its window
flows — on every built-in connector; a page that does not parse stops the window before
the cursor moves; `quarantine retry` and `drop` close entries and keep them for audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.dewu.sandbox import DewuSandbox
from connectors.douyin.sandbox import DouyinSandbox
from connectors.jd.sandbox import JdSandbox
from connectors.kuaishou.sandbox import KuaishouSandbox
from connectors.pinduoduo.sandbox import PinduoduoSandbox
from connectors.shopify.sandbox import ShopifySandbox
from connectors.taobao.sandbox import TaobaoSandbox
from connectors.woocommerce.sandbox import WooCommerceSandbox
from connectors.xiaohongshu.sandbox import XhsSandbox
from core import quarantine
from core.alerts import open_alerts
from core.clock import ManualClock
from core.errors import BadResponse
from core.model import Order, QuarantinedPayload, Reservation
from core.pull import cursor_position, pull_orders
from core.runtime import Runtime
from core.sandbox import Fault, Sandbox


def nested(*path: str) -> Callable[[dict[str, Any], Any], None]:
    def corrupt(row: dict[str, Any], value: Any) -> None:
        for key in path[:-1]:
            row = row[key]
        row[path[-1]] = value
    return corrupt


# sandbox class, the method rendering an order, how to break its status, an unknown status
BREAKERS: dict[str, tuple[type[Sandbox], str, Callable[[dict[str, Any], Any], None], Any]] = {
    "taobao": (TaobaoSandbox, "render_trade", nested("status"), "SOMETHING_NEW"),
    "douyin": (DouyinSandbox, "render_order", nested("order_status"), 99),
    "jd": (JdSandbox, "render_order", nested("orderState"), "NO_SUCH_STATE"),
    "pinduoduo": (PinduoduoSandbox, "render_order", nested("order_status"), 99),
    "kuaishou": (KuaishouSandbox, "render_order", nested("orderBaseInfo", "status"), 999),
    "xiaohongshu": (XhsSandbox, "_order_detail_json", nested("orderStatus"), 99),
    "dewu": (DewuSandbox, "_order_json", nested("order_status"), 12345),
    "shopify": (ShopifySandbox, "_order_node", nested("displayFinancialStatus"), "WHATEVER"),
    "woocommerce": (WooCommerceSandbox, "order_json", nested("status"), "plugin-custom"),
}


def break_order(sandbox: Sandbox, method: str, corrupt: Callable[[dict[str, Any], Any], None],
                value: Any, order_id: str) -> Callable[[], None]:
    """Make one order render with an undocumented status; returns the repair."""
    original = getattr(sandbox, method)

    def render(order: Any, *args: Any) -> dict[str, Any]:
        row = original(order, *args)
        if order.order_id == order_id:
            corrupt(row, value)
        return row

    setattr(sandbox, method, render)
    return lambda: setattr(sandbox, method, original)


async def count(rt: Runtime, model: Any, *where: Any) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where))
                   or 0)


@pytest.mark.parametrize("platform", sorted(BREAKERS))
async def test_an_unmappable_order_is_quarantined_and_the_window_flows(
        platform: str, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    sandbox_class, method, corrupt, value = BREAKERS[platform]
    sandbox = sandbox_class(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 100, 3900)])
    rt = await make_runtime(sqlite_url, {"shop": sandbox})
    await seed_pool(rt, {"MUG": 50}, pull=False)
    placed = []
    for _ in range(5):
        placed.append(sandbox.place_order([("MUG", 1)]).order_id)
        clock.advance(timedelta(seconds=30))
    repair = break_order(sandbox, method, corrupt, value, placed[2])
    clock.advance(timedelta(minutes=5))

    stats = await pull_orders(rt, "shop", since=clock.now() - timedelta(hours=1))
    assert stats.quarantined == 1
    async with rt.sessions() as session:
        ingested = set((await session.scalars(select(Order.platform_order_id))).all())
        (entry,) = await quarantine.entries(session)
        (alert,) = await open_alerts(session, "quarantine")
    assert ingested == set(placed) - {placed[2]}
    assert (entry.platform_order_id, entry.source, entry.seen) == (placed[2], "pull", 1)
    assert entry.payload and entry.error
    assert await cursor_position(rt, "shop") is not None  # the window still completed

    # the overlap re-reads it: the same entry, seen twice, not a second row
    await pull_orders(rt, "shop", since=clock.now() - timedelta(hours=1))
    async with rt.sessions() as session:
        (again,) = await quarantine.entries(session)
    assert (again.id, again.seen) == (entry.id, 2)

    repair()
    outcome = await quarantine.retry(rt, entry.id)
    assert outcome.resolved, outcome.message
    assert await count(rt, Order) == 5
    assert await count(rt, Reservation) == 5
    async with rt.sessions() as session:
        closed = await session.get(QuarantinedPayload, entry.id)
        assert closed is not None and (closed.state, closed.open_key) == ("resolved", None)
        assert await open_alerts(session, "quarantine") == []
    assert alert.subject == quarantine.alert_subject(rt.shop_ids["shop"])


async def test_a_readable_copy_later_resolves_the_entry(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandbox = DouyinSandbox(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 100, 3900)])
    rt = await make_runtime(sqlite_url, {"shop": sandbox})
    await seed_pool(rt, {"MUG": 50}, pull=False)
    bad = sandbox.place_order([("MUG", 1)]).order_id
    repair = break_order(sandbox, "render_order", nested("order_status"), 99, bad)
    clock.advance(timedelta(minutes=5))
    await pull_orders(rt, "shop")
    assert await count(rt, QuarantinedPayload, QuarantinedPayload.state == "open") == 1
    repair()
    sandbox.pay(bad)  # the platform touches it again: the next pull reads it fine
    clock.advance(timedelta(minutes=5))
    await pull_orders(rt, "shop")
    assert await count(rt, Order) == 1
    async with rt.sessions() as session:
        (entry,) = await quarantine.entries(session, state=None)
        assert (entry.state, entry.note) == ("resolved", "a readable copy was pulled")
        assert await open_alerts(session, "quarantine") == []


async def test_a_page_that_does_not_parse_stops_the_window_before_the_cursor(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandbox = DouyinSandbox(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 100, 3900)])
    rt = await make_runtime(sqlite_url, {"shop": sandbox})
    await seed_pool(rt, {"MUG": 50}, pull=False)
    for _ in range(3):
        sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=5))
    sandbox.faults.inject(Fault.MALFORMED, times=10, api="order.searchList")
    with pytest.raises(BadResponse):
        await pull_orders(rt, "shop", since=clock.now() - timedelta(hours=1))
    assert await cursor_position(rt, "shop") is None
    async with rt.sessions() as session:
        (entry,) = await quarantine.entries(session)
    assert entry.reference.startswith("window:") and entry.platform_order_id is None
    sandbox.faults.clear()

    outcome = await quarantine.retry(rt, entry.id)  # the window is pulled again
    assert outcome.resolved, outcome.message
    assert await count(rt, Order) == 3
    assert await cursor_position(rt, "shop") == clock.now() - timedelta(minutes=1)
    async with rt.sessions() as session:
        assert await open_alerts(session, "quarantine") == []


async def test_drop_keeps_the_entry_for_audit(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandbox = DouyinSandbox(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 100, 3900)])
    rt = await make_runtime(sqlite_url, {"shop": sandbox})
    bad = sandbox.place_order([("MUG", 1)]).order_id
    break_order(sandbox, "render_order", nested("order_status"), 99, bad)
    clock.advance(timedelta(minutes=5))
    await pull_orders(rt, "shop")
    async with rt.sessions() as session:
        (entry,) = await quarantine.entries(session)
    outcome = await quarantine.retry(rt, entry.id)  # still broken: stays open
    assert not outcome.resolved and "still unreadable" in outcome.message
    await quarantine.drop(rt, entry.id, "test order, deleted on the platform")
    with pytest.raises(ValueError, match="dropped"):
        await quarantine.drop(rt, entry.id, "")
    async with rt.sessions() as session:
        assert await quarantine.entries(session) == []
        (kept,) = await quarantine.entries(session, state=None)
        assert (kept.state, kept.note, kept.seen) == (
            "dropped", "test order, deleted on the platform", 2)
        assert await open_alerts(session, "quarantine") == []
    with pytest.raises(LookupError):
        await quarantine.retry(rt, 999)


async def test_a_stuck_window_is_one_entry_however_often_it_is_retried(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandbox = DouyinSandbox(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 100, 3900)])
    rt = await make_runtime(sqlite_url, {"shop": sandbox})
    clock.advance(timedelta(minutes=5))
    await pull_orders(rt, "shop")
    cursor = await cursor_position(rt, "shop")
    sandbox.faults.inject(Fault.MALFORMED, times=100, api="order.searchList")
    for _ in range(3):  # the daemon tries every minute; the window's end moves each time
        clock.advance(timedelta(minutes=1))
        with pytest.raises(BadResponse):
            await pull_orders(rt, "shop")
    assert await cursor_position(rt, "shop") == cursor
    async with rt.sessions() as session:
        (entry,) = await quarantine.entries(session)
    assert entry.seen == 3
    assert entry.reference.endswith((clock.now() - timedelta(minutes=1)).isoformat())
