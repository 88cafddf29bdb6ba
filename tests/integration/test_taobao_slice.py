"""The first vertical slice through Taobao: an order pulled from one shop is stored once,
reserves stock, and the new quantity reaches the listings of that shop and of a second shop
selling the same SKU; a tracking number reaches the sandbox order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock
from core.db import transaction
from core.logistics import ship
from core.model import Order, Reservation, Shipment
from core.pull import pull_orders
from core.senders import OutboxWorker


def two_shops(clock: ManualClock) -> dict[str, TaobaoSandbox]:
    shops = {"tb-a": TaobaoSandbox(clock=clock), "tb-b": TaobaoSandbox(clock=clock, seed=2)}
    for sandbox in shops.values():
        sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 50, 3900)])
        sandbox.add_item("T恤", "TEE", 9900, skus=[("TEE-M", 50, 9900), ("TEE-L", 50, 9900)])
    return shops


async def test_order_reserves_and_quantity_reaches_both_shops(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandboxes = two_shops(clock)
    rt = await make_runtime(db_url, sandboxes)
    await seed_pool(rt, {"MUG": 10, "TEE-M": 5, "TEE-L": 5})
    worker = OutboxWorker(rt)
    await worker.drain()
    # the pool, not the platforms' stale 50, is what both shops now show
    assert [sb.stock_of("MUG") for sb in sandboxes.values()] == [10, 10]

    placed = sandboxes["tb-a"].place_order([("MUG", 3), ("TEE-M", 1)])
    clock.advance(timedelta(minutes=5))
    stats = await pull_orders(rt, "tb-a", since=clock.now() - timedelta(hours=1))
    assert stats.new == 1
    await worker.drain()

    async with rt.sessions() as session:
        orders = (await session.scalars(select(Order))).all()
        assert [o.platform_order_id for o in orders] == [placed.order_id]
        assert await session.scalar(select(func.count()).select_from(Reservation)) == 2
    # 10 − 3 and 5 − 1 on both shops, the selling one included
    for sandbox in sandboxes.values():
        assert sandbox.stock_of("MUG") == 7
        assert sandbox.stock_of("TEE-M") == 4
        assert sandbox.stock_of("TEE-L") == 5

    # pulling the same window again stores nothing twice and reserves nothing twice
    again = await pull_orders(rt, "tb-a", since=clock.now() - timedelta(hours=1))
    assert again.new == 0
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 1
        assert await session.scalar(select(func.count()).select_from(Reservation)) == 2

    # ship it: the tracking number lands on the sandbox order
    async with rt.sessions() as session:
        order_id = await session.scalar(select(Order.id))
    async with transaction(rt.sessions) as session:
        await ship(session, order_id=order_id, carrier="ZTO", tracking_number="75123456789012",
                   carriers=rt.connector("tb-a").carrier_table(), pool=rt.pool,
                   publisher=rt.publisher, now=rt.now())
    await worker.drain()
    shipments = sandboxes["tb-a"].shipments_of(placed.order_id)
    assert [(s.carrier_code, s.tracking_number) for s in shipments] == [("ZTO", "75123456789012")]
    async with rt.sessions() as session:
        assert await session.scalar(select(Shipment.push_state)) == "pushed"


async def test_timed_out_tracking_push_that_landed_counts_once(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    from core.sandbox import Fault

    sandboxes = two_shops(clock)
    rt = await make_runtime(sqlite_url, sandboxes)
    await seed_pool(rt, {"MUG": 10, "TEE-M": 5, "TEE-L": 5})
    placed = sandboxes["tb-a"].place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=5))
    await pull_orders(rt, "tb-a", since=clock.now() - timedelta(hours=1))
    async with rt.sessions() as session:
        order_id = await session.scalar(select(Order.id))
    async with transaction(rt.sessions) as session:
        await ship(session, order_id=order_id, carrier="ZTO", tracking_number="75123456789013",
                   carriers=rt.connector("tb-a").carrier_table(), pool=rt.pool,
                   publisher=rt.publisher, now=rt.now())
    # the platform applies the first attempt, but its answer is lost; the retry then hears
    # "already shipped" for our own waybill
    sandboxes["tb-a"].faults.inject(Fault.TIMEOUT_AFTER_APPLY, api="taobao.logistics.offline.send")
    await OutboxWorker(rt).drain()
    assert len(sandboxes["tb-a"].shipments_of(placed.order_id)) == 1
    async with rt.sessions() as session:
        assert await session.scalar(select(Shipment.push_state)) == "pushed"
