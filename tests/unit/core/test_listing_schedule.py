"""Scheduled listing (定时上架) on the runtime clock: off sale until the time, on sale at the
time, exactly once — also when two runtimes (two daemons) fire at the same moment."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from connectors.taobao.sandbox import TaobaoSandbox
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.clock import ManualClock
from core.db import create_engine, transaction
from core.listing_plan import plan_listings, push_listings
from core.listings import fire_scheduled_listings, pull_listings, schedule_listing
from core.model import Listing, OutboxTask, Sku
from core.runtime import Runtime, SandboxBinding
from core.senders import OutboxWorker
from core.testing import RoutingTransport

LISTING_API = "taobao.item.update.listing"
DELISTING_API = "taobao.item.update.delisting"


def lamp(tmp_path: Path) -> ProductSpec:
    first = tmp_path / "lamp.png"
    Image.new("RGB", (800, 800), "white").save(first)
    return ProductSpec("LAMP", "北欧风护眼台灯", (SkuSpec("LAMP", 19900),),
                       categories={"taobao": "121412004"},
                       attributes={"品牌": "3246379", "材质": "3323086", "容量": "1",
                                   "风格": "3226292"},
                       images=(str(first),), description="三档调光，护眼无频闪")


async def stock_lamp(rt: Runtime, tmp_path: Path, quantity: int = 5) -> None:
    async with transaction(rt.sessions) as session:
        await upsert_product(session, lamp(tmp_path), rt.now())
        sku = await session.scalar(select(Sku).where(Sku.merchant_code == "LAMP"))
        assert sku is not None
        await rt.pool.change_on_hand(session, sku.id, "MAIN", quantity, kind="receipt",
                                     reason="test", reference="test", now=rt.now())


@pytest.fixture
def sandbox(clock: ManualClock) -> TaobaoSandbox:
    return TaobaoSandbox(clock=clock)


async def test_a_listed_item_goes_off_sale_until_its_time(
        tmp_path: Path, db_url: str, clock: ManualClock, make_runtime: Any,
        sandbox: TaobaoSandbox) -> None:
    item = sandbox.add_item("台灯", "LAMP", 19900, quantity=5, category_id="121412004")
    rt = await make_runtime(db_url, {"tb": sandbox})
    await stock_lamp(rt, tmp_path)
    await pull_listings(rt, "tb")
    at = clock.now() + timedelta(hours=1)
    [done] = await schedule_listing(rt, "LAMP", at)
    assert (done.shop, done.items, done.taken_off) == ("tb", (item.item_id,), 1)
    await OutboxWorker(rt).drain()
    assert not item.on_sale and len(sandbox.calls(DELISTING_API)) == 1

    clock.advance(timedelta(minutes=59, seconds=59))
    assert await fire_scheduled_listings(rt) == 0
    assert not item.on_sale
    # while it waits, the plan does not put it back on sale
    assert [a.action for p in await plan_listings(rt) for a in p.actions
            if a.action in ("shelve", "unshelve")] == []

    clock.advance(timedelta(seconds=1))
    assert await fire_scheduled_listings(rt) == 1
    assert item.on_sale and len(sandbox.calls(LISTING_API)) == 1
    assert await fire_scheduled_listings(rt) == 0
    clock.advance(timedelta(days=1))
    assert await fire_scheduled_listings(rt) == 0
    assert len(sandbox.calls(LISTING_API)) == 1
    async with rt.sessions() as session:
        assert (await session.scalars(select(Listing.publish_at))).all() == [None]
        assert await session.scalar(select(OutboxTask.state).where(
            OutboxTask.kind == "shelve")) == "done"


async def test_a_new_product_is_created_then_waits_for_its_time(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await stock_lamp(rt, tmp_path)
    at = clock.now() + timedelta(hours=2)
    [done] = await schedule_listing(rt, "LAMP", at)
    assert done.items == ()  # not created yet: the schedule waits on placeholder rows
    [plan] = await plan_listings(rt)
    assert [(a.action, a.note) for a in plan.actions] == [
        ("create", "created, then off sale until 2026-11-11 02:00:00")]
    await push_listings(rt)
    [item] = sandbox.items.values()
    assert not item.on_sale and item.quantity == 5
    assert [a for p in await plan_listings(rt) for a in p.actions] == []
    clock.set(at)
    assert await fire_scheduled_listings(rt) == 1
    assert item.on_sale


async def test_a_time_already_past_at_creation_fires_nothing(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        sandbox: TaobaoSandbox) -> None:
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await stock_lamp(rt, tmp_path)
    await schedule_listing(rt, "LAMP", clock.now() + timedelta(minutes=5))
    clock.advance(timedelta(minutes=10))
    await push_listings(rt)  # created on sale: its time has come already
    [item] = sandbox.items.values()
    assert item.on_sale
    assert await fire_scheduled_listings(rt) == 0
    assert sandbox.calls(LISTING_API) == [] and sandbox.calls(DELISTING_API) == []


async def test_clearing_a_schedule(tmp_path: Path, sqlite_url: str, clock: ManualClock,
                                   make_runtime: Any, sandbox: TaobaoSandbox) -> None:
    sandbox.add_item("台灯", "LAMP", 19900, quantity=5, category_id="121412004")
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await stock_lamp(rt, tmp_path)
    await pull_listings(rt, "tb")
    await schedule_listing(rt, "LAMP", clock.now() + timedelta(hours=1))
    await OutboxWorker(rt).drain()
    await schedule_listing(rt, "LAMP", None)
    clock.advance(timedelta(hours=2))
    assert await fire_scheduled_listings(rt) == 0
    # no schedule any more: the catalogue's wish (on sale) is what the plan applies
    assert [a.action for p in await plan_listings(rt) for a in p.actions
            if a.action in ("shelve", "unshelve")] == ["shelve"]
    with pytest.raises(KeyError):
        await schedule_listing(rt, "NOPE", None)


async def test_two_daemons_firing_together_shelve_once(
        tmp_path: Path, db_url: str, clock: ManualClock, make_runtime: Any,
        sandbox: TaobaoSandbox) -> None:
    items = [sandbox.add_item(f"台灯{i}", f"LAMP-{i}", 19900, quantity=5, on_sale=False,
                              category_id="121412004") for i in range(5)]
    rt = await make_runtime(db_url, {"tb": sandbox})
    other = Runtime(rt.config, clock=clock,
                    sandboxes={"tb": SandboxBinding(sandbox, "http://tb.sandbox")},
                    transport=RoutingTransport({"tb.sandbox": sandbox}),
                    engine=create_engine(rt.config.database_url), node="other-node")
    other.http.rate_limits = False
    await other.sync_shops()
    try:
        await pull_listings(rt, "tb", correct=False)
        at = clock.now() + timedelta(minutes=30)
        async with transaction(rt.sessions) as session:
            for row in (await session.scalars(select(Listing))).all():
                row.publish_at = at
        clock.set(at)
        fired = await asyncio.gather(*(fire_scheduled_listings(r) for r in (rt, other, rt, other)))
        assert sum(fired) == 5
        await asyncio.gather(OutboxWorker(rt).drain(), OutboxWorker(other).drain())
        assert all(i.on_sale for i in items)
        shelved = [request.form()["num_iid"] for request in sandbox.calls(LISTING_API)]
        assert sorted(shelved) == sorted(i.item_id for i in items)  # each once
    finally:
        await other.close()
