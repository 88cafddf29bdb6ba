"""Tracking push-back beyond Taobao: on Douyin and JD a waybill lands on the sandbox order
exactly once, even when the first attempt times out after the platform applied it (the
retry hears "already shipped", finds our waybill there, and counts it done)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from connectors.douyin.sandbox import DouyinSandbox
from connectors.jd.sandbox import JdSandbox
from core.clock import ManualClock
from core.model import Alert, OutboxTask, Shipment
from core.sandbox import Fault, Sandbox
from core.senders import OutboxWorker

PLATFORMS = {"douyin": (DouyinSandbox, "order.logisticsAdd"),
             "jd": (JdSandbox, "jingdong.pop.order.shipment")}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
async def test_a_timed_out_push_that_landed_counts_once(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any,
        sell_and_ship: Any, platform: str) -> None:
    sandbox_class, ship_api = PLATFORMS[platform]
    sandbox: Sandbox = sandbox_class(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 50, 3900)])
    rt = await make_runtime(db_url, {"shop": sandbox})
    await seed_pool(rt, {"MUG": 10})
    order_id = await sell_and_ship(rt, "shop", sandbox, "MUG", "75123456789013")
    sandbox.faults.inject(Fault.TIMEOUT_AFTER_APPLY, api=ship_api)
    await OutboxWorker(rt).drain(kinds=["ship"])

    assert (Fault.TIMEOUT_AFTER_APPLY, ship_api) in sandbox.faults.injected
    landed = sandbox.shipments_of(order_id)
    assert [s.tracking_number for s in landed] == ["75123456789013"]
    assert sum(1 for r in sandbox.requests if r.api == ship_api) == 2  # the retry was sent
    async with rt.sessions() as session:
        assert await session.scalar(select(Shipment.push_state)) == "pushed"
        assert await session.scalar(select(OutboxTask.state).where(
            OutboxTask.kind == "ship")) == "done"
        assert (await session.scalars(select(Alert.kind).where(
            Alert.open_key.is_not(None), Alert.kind.like("tracking_push%")))).all() == []
