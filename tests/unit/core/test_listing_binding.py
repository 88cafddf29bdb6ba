"""Binding by merchant code (商家编码): `pull_listings` binds every platform SKU whose outer id
is a catalogue SKU, reports listings with no SKU and catalogue SKUs a platform lacks, and
stays put when pulled again. Placeholders (listings not created yet) never take stock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from connectors.taobao.sandbox import TaobaoSandbox
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.clock import ManualClock
from core.db import transaction
from core.listings import pull_listings, schedule_listing
from core.model import Listing, OutboxTask, Sku
from core.senders import OutboxWorker


def shop(clock: ManualClock) -> TaobaoSandbox:
    sandbox = TaobaoSandbox(clock=clock)
    sandbox.add_item("马克杯", "MUG-1", 3900, quantity=5)  # an item without SKUs
    sandbox.add_item("T恤", "TEE", 9900, skus=[("TEE-M", 5, 9900), ("TEE-L", 5, 9900)])
    sandbox.add_item("没有编码的商品", "", 1000, quantity=1)
    sandbox.add_item("别人的货", "ZZZ", 1000, quantity=1)
    return sandbox


async def test_pull_binds_by_merchant_code_and_reports_both_ways(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandbox = shop(clock)
    rt = await make_runtime(db_url, {"tb": sandbox})
    ids = await seed_pool(rt, {"MUG-1": 3, "TEE-M": 2, "TEE-L": 1, "SOCK": 4}, pull=False)
    stats = await pull_listings(rt, "tb")
    assert (stats.seen, stats.bound) == (5, 3)
    no_code, foreign = (i.item_id for i in list(sandbox.items.values())[2:])
    assert sorted(stats.unbound) == [f"{no_code}/ (no merchant code)", f"{foreign}/ (ZZZ)"]
    assert stats.missing_skus == ["SOCK"]
    async with rt.sessions() as session:
        bound = dict((await session.execute(select(Listing.merchant_code, Listing.sku_id).where(
            Listing.sku_id.is_not(None)))).all())
    assert bound == {"MUG-1": ids["MUG-1"], "TEE-M": ids["TEE-M"], "TEE-L": ids["TEE-L"]}
    await OutboxWorker(rt).drain()
    assert [sandbox.stock_of(c) for c in ("MUG-1", "TEE-M", "TEE-L")] == [3, 2, 1]

    again = await pull_listings(rt, "tb")
    assert (again.bound, again.queued, again.drift) == (3, 0, [])
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Listing)) == 5

    # the foreign code enters the catalogue: the next pull binds it
    async with transaction(rt.sessions) as session:
        await upsert_product(session, ProductSpec("ZZZ", "新品", (SkuSpec("ZZZ", 1000),)),
                             rt.now())
    later = await pull_listings(rt, "tb")
    assert later.bound == 4 and later.unbound == [f"{no_code}/ (no merchant code)"]


async def test_placeholders_are_not_bound_and_take_no_stock(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandbox = shop(clock)
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await seed_pool(rt, {"MUG-1": 3, "SOCK": 4}, pull=False)
    async with transaction(rt.sessions) as session:
        sock = await session.scalar(select(Sku).where(Sku.merchant_code == "SOCK"))
        assert sock is not None
        await upsert_product(session, ProductSpec("SOCK", "中筒运动袜", (SkuSpec("SOCK", 2900),),
                                                  categories={"taobao": "121412004"}), rt.now())
    await schedule_listing(rt, "SOCK", clock.now() + timedelta(days=1))  # not on Taobao yet
    stats = await pull_listings(rt, "tb")
    assert stats.missing_skus == ["SOCK"]
    async with rt.sessions() as session:
        holder = await session.scalar(select(Listing).where(Listing.platform_item_id == ""))
        assert holder is not None and (holder.platform_sku_id, holder.sku_id) == ("SOCK", None)
        targets = {t.listing_id for t in await rt.publisher.targets(session, [sock.id])}
        assert holder.id not in targets
        assert await session.scalar(select(func.count()).select_from(OutboxTask).where(
            OutboxTask.target == str(holder.id))) == 0
