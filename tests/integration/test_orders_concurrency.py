"""The same order arriving by pull, by two duplicate webhooks and by an overlapping window,
concurrently and in every order, on SQLite and PostgreSQL: one order, one reservation per
line, the ledger whole; and "cancelled" racing "paid" never leaves stock reserved."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock
from core.inventory import ledger_matches
from core.model import Order, OrderEvent, OrderLine, Reservation, StockLevel
from core.orders import retried_transaction
from core.records import OrderRecord, OrderStatus
from core.runtime import Runtime
from core.testing.builders import T0, line, order


async def runtime(db_url: str, clock: ManualClock, make_runtime: Any,
                  seed_pool: Any) -> Runtime:
    clock.set(T0 + timedelta(hours=1))
    rt: Runtime = await make_runtime(db_url, {"shop": TaobaoSandbox(clock=clock)})
    await seed_pool(rt, {"MUG": 1000, "TEE": 1000}, pull=False)
    return rt


async def deliver(rt: Runtime, records: list[OrderRecord], source: str) -> None:
    """One delivery, in its own transaction (its own connection), as a webhook would."""
    await retried_transaction(rt.sessions, lambda session: rt.book.ingest(
        session, rt.shop_ids["shop"], records, source=source, now=rt.now()))


async def check(rt: Runtime, orders: int, lines_per_order: int) -> None:
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == orders
        assert await session.scalar(select(func.count()).select_from(OrderLine)) == (
            orders * lines_per_order)
        # one reservation per line, never two (the unique key), and the levels agree
        per_line = (await session.execute(
            select(Reservation.order_line_id, func.count())
            .group_by(Reservation.order_line_id))).all()
        assert all(count == 1 for _, count in per_line)
        assert await ledger_matches(session) == []
        held = await session.scalar(select(func.coalesce(func.sum(Reservation.quantity), 0))
                                    .where(Reservation.state == "reserved"))
        assert held == await session.scalar(select(func.sum(StockLevel.reserved)))
        first_seen = (await session.execute(
            select(OrderEvent.order_id, func.count()).where(OrderEvent.note == "first seen")
            .group_by(OrderEvent.order_id))).all()
        assert len(first_seen) == orders and all(count == 1 for _, count in first_seen)


async def test_four_copies_of_each_order_at_once_make_one_order(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt = await runtime(db_url, clock, make_runtime, seed_pool)
    shuffle = random.Random(7)
    deliveries = []
    records = [order(f"O{n:03d}", line("MUG", 1 + n % 3, line_id="1"),
                     line("TEE", 1, line_id="2"), modified=T0 + timedelta(minutes=n))
               for n in range(25)]
    for record in records:
        # the pull's page, a webhook and its duplicate, the next window's overlap
        copies = [([record], "pull"), ([record], "push"), ([record], "push"),
                  ([record], "pull")]
        deliveries.extend(copies)
    # and two whole pages of the same orders, in opposite orders
    deliveries.append((records, "pull"))
    deliveries.append((list(reversed(records)), "pull"))
    shuffle.shuffle(deliveries)
    await asyncio.gather(*(deliver(rt, batch, source) for batch, source in deliveries))

    await check(rt, orders=25, lines_per_order=2)
    async with rt.sessions() as session:
        reserved = dict((await session.execute(
            select(StockLevel.sku_id, StockLevel.reserved))).all())
        statuses = set((await session.scalars(select(Order.status))).all())
        changes = await session.scalar(select(func.count()).select_from(OrderEvent)
                                       .where(OrderEvent.to_status == "approved"))
    assert sorted(reserved.values()) == [25, sum(1 + n % 3 for n in range(25))]
    assert statuses == {"approved"}
    assert changes == 25  # one status change per order, whoever won


async def test_cancelled_racing_paid_never_keeps_stock(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt = await runtime(db_url, clock, make_runtime, seed_pool)
    shuffle = random.Random(11)
    deliveries = []
    unpaid = []
    for n in range(20):
        paid = order(f"C{n:03d}", line("MUG", 2, line_id="1"), modified=T0)
        cancelled = replace(paid, status=OrderStatus.CANCELLED,
                            modified_at=T0 + timedelta(minutes=5))
        deliveries += [([paid], "pull"), ([cancelled], "push"), ([paid], "push"),
                       ([cancelled], "pull")]
        # half of them are known, unpaid, before the race: then "paid" and "cancelled"
        # both start from the same stored state, and only the row lock orders them
        if n % 2:
            unpaid.append(replace(paid, status=OrderStatus.UNPAID, paid_at=None,
                                  modified_at=T0 - timedelta(minutes=5)))
    await deliver(rt, unpaid, "pull")
    shuffle.shuffle(deliveries)
    await asyncio.gather(*(deliver(rt, batch, source) for batch, source in deliveries))

    await check(rt, orders=20, lines_per_order=1)
    async with rt.sessions() as session:
        assert set((await session.scalars(select(Order.status))).all()) == {"cancelled"}
        assert await session.scalar(select(func.sum(StockLevel.reserved))) == 0
        still = await session.scalar(select(func.count()).select_from(Reservation)
                                     .where(Reservation.state == "reserved"))
        assert still == 0
