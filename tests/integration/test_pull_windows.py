"""Incremental windows: the first pull backfills, the next ones start at the cursor minus
the overlap and end at now − lag, cut to the platform's maximum window; the overlap
catches a modification the platform committed late; an explicit --since after the cursor
leaves the cursor alone; the lease keeps a second node out."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from connectors.douyin.sandbox import DouyinSandbox
from core import leases
from core.clock import ManualClock
from core.db import transaction
from core.model import Order
from core.pull import cursor_position, plan_pull, pull_orders
from core.runtime import Runtime


async def setup(sqlite_url: str, clock: ManualClock, make_runtime: Any,
                seed_pool: Any) -> tuple[Runtime, DouyinSandbox]:
    sandbox = DouyinSandbox(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 500, 3900)])
    rt = await make_runtime(sqlite_url, {"dy": sandbox})
    await seed_pool(rt, {"MUG": 100}, pull=False)
    return rt, sandbox


def searched(sandbox: DouyinSandbox) -> list[tuple[int, int]]:
    """The update_time windows the connector asked for, page 0 only, in order."""
    windows = []
    for request in sandbox.calls("order.searchList"):
        params = json.loads(request.body)
        if params["page"] == 0:
            windows.append((params["update_time_start"], params["update_time_end"]))
    sandbox.requests.clear()
    return windows


async def test_first_pull_backfills_then_windows_follow_the_cursor(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    lag = rt.connector("dy").limits.modified_lag
    start = clock.now()
    sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=3))

    stats = await pull_orders(rt, "dy")
    # one day of backfill, cut into the platform's six-hour windows, up to now − lag
    assert stats.windows == 4 and stats.new == 1
    assert await cursor_position(rt, "dy") == clock.now() - lag
    windows = searched(sandbox)
    assert windows[0][0] == int((clock.now() - timedelta(days=1)).timestamp())
    assert all(b - a <= 6 * 3600 for a, b in windows)
    assert windows[-1][1] == int((clock.now() - lag).timestamp())

    # ten minutes on: one window, from the cursor minus the five-minute overlap
    cursor = clock.now() - lag
    clock.advance(timedelta(minutes=10))
    plan = await plan_pull(rt, "dy")
    assert (plan.start, plan.end) == (cursor - timedelta(minutes=5), clock.now() - lag)
    stats = await pull_orders(rt, "dy")
    assert stats.windows == 1 and (stats.new, stats.updated) == (0, 0)
    assert await cursor_position(rt, "dy") == clock.now() - lag
    assert start < cursor


async def test_the_overlap_catches_a_modification_committed_late(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    clock.advance(timedelta(minutes=5))
    await pull_orders(rt, "dy")
    cursor = await cursor_position(rt, "dy")
    assert cursor is not None
    # an order the platform stamps two minutes before our cursor, but commits only now
    late = sandbox.place_order([("MUG", 2)])
    late.modified = late.created = late.paid_at = cursor - timedelta(minutes=2)  # type: ignore[assignment]
    clock.advance(timedelta(minutes=5))
    stats = await pull_orders(rt, "dy")
    assert stats.new == 1


async def test_an_overlap_too_short_would_have_missed_it(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    rt.config = replace(rt.config, orders=replace(rt.config.orders,
                                                  overlap=timedelta(seconds=1)))
    clock.advance(timedelta(minutes=5))
    await pull_orders(rt, "dy")
    cursor = await cursor_position(rt, "dy")
    assert cursor is not None
    late = sandbox.place_order([("MUG", 2)])
    late.modified = late.created = late.paid_at = cursor - timedelta(minutes=2)  # type: ignore[assignment]
    clock.advance(timedelta(minutes=5))
    assert (await pull_orders(rt, "dy")).new == 0  # why the overlap exists


async def test_since_after_the_cursor_leaves_the_gap_unread_and_the_cursor_alone(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    clock.advance(timedelta(minutes=5))
    await pull_orders(rt, "dy")
    cursor = await cursor_position(rt, "dy")
    assert cursor is not None
    clock.advance(timedelta(hours=3))
    in_gap = sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(hours=3))
    sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=5))

    stats = await pull_orders(rt, "dy", since=clock.now() - timedelta(hours=1))
    assert stats.new == 1
    assert await cursor_position(rt, "dy") == cursor  # the gap is still to be read
    stats = await pull_orders(rt, "dy")
    assert stats.new == 1  # the order in the gap
    async with rt.sessions() as session:
        assert in_gap.order_id in set((await session.scalars(
            select(Order.platform_order_id))).all())
    assert await cursor_position(rt, "dy") == clock.now() - timedelta(minutes=1)


async def test_until_bounds_the_pull_and_lookback_clamps_the_start(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, _ = await setup(sqlite_url, clock, make_runtime, seed_pool)
    plan = await plan_pull(rt, "dy", since=clock.now() - timedelta(days=200),
                           until=clock.now())
    lookback = rt.connector("dy").limits.max_lookback
    assert lookback is not None
    assert plan.start == clock.now() - lookback + timedelta(minutes=1)
    assert plan.end == clock.now()


async def test_a_second_node_waits_for_the_lease(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=5))
    async with transaction(rt.sessions) as session:
        assert await leases.acquire(session, "pull:dy:orders", "other-node", clock.now(),
                                    timedelta(seconds=60))
    stats = await pull_orders(rt, "dy")
    assert stats.skipped_locked and stats.new == 0
    clock.advance(timedelta(seconds=61))  # the other node died; its lease runs out
    stats = await pull_orders(rt, "dy")
    assert not stats.skipped_locked and stats.new == 1
