"""Dormant SKUs (滞销): a listed, in-stock SKU with no sale for `dormant_after` (7 days by
default) opens `dormant_sku` with the days since its last sale; a sale or running out of
stock resolves it. Sales come from the order book; time from the runtime clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from connectors.taobao.sandbox import TaobaoSandbox
from core.alerts import open_alerts
from core.clock import ManualClock
from core.db import transaction
from core.listings import check_dormant, dormant_skus
from core.model import Alert, Listing
from core.pull import pull_orders
from core.runtime import Runtime
from core.senders import OutboxWorker


async def dormant(rt: Runtime) -> dict[str, int]:
    async with rt.sessions() as session:
        return {a.subject: a.details["days"] for a in await open_alerts(session, "dormant_sku")}


async def test_no_sale_for_seven_days_opens_and_a_sale_resolves(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandbox = TaobaoSandbox(clock=clock)
    for code in ("MUG", "CUP", "BOWL", "VASE"):
        sandbox.add_item(code, code, 3900, quantity=1)
    rt = await make_runtime(db_url, {"tb": sandbox})
    ids = await seed_pool(rt, {"MUG": 10, "CUP": 5, "BOWL": 0, "VASE": 5})
    await OutboxWorker(rt).drain()
    async with transaction(rt.sessions) as session:  # VASE is listed but off sale
        vase = await session.scalar(select(Listing).where(Listing.sku_id == ids["VASE"]))
        assert vase is not None
        vase.on_sale = False

    clock.advance(timedelta(days=7) - timedelta(minutes=1))
    assert await check_dormant(rt) == 0
    clock.advance(timedelta(minutes=1))
    assert await check_dormant(rt) == 2  # BOWL has no stock, VASE is not on sale
    assert await dormant(rt) == {"sku:MUG": 7, "sku:CUP": 7}
    async with rt.sessions() as session:
        alert = await session.scalar(select(Alert).where(Alert.subject == "sku:MUG"))
        assert alert is not None and alert.severity == "info"
        assert alert.message.startswith("MUG: no sale for 7 days (never sold), 10 available")

    clock.advance(timedelta(days=1))
    assert await check_dormant(rt) == 2
    assert await dormant(rt) == {"sku:MUG": 8, "sku:CUP": 8}  # the open alert keeps count

    sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=5))  # platforms commit modified times late: pull after
    await pull_orders(rt, "tb", since=clock.now() - timedelta(hours=1))
    assert await check_dormant(rt) == 1
    assert await dormant(rt) == {"sku:CUP": 8}

    async with transaction(rt.sessions) as session:  # CUP runs out
        await rt.pool.set_on_hand(session, ids["CUP"], "MAIN", 0, reason="count",
                                  reference="test", now=rt.now())
    assert await check_dormant(rt) == 0
    assert await dormant(rt) == {}

    # seven quiet days after MUG's sale, it is dormant again, counted from that sale
    clock.advance(timedelta(days=7))
    [found] = await dormant_skus(rt)
    assert (found.merchant_code, found.days, found.available) == ("MUG", 7, 9)
    assert found.last_sold_at is not None
    assert await check_dormant(rt) == 1


async def test_the_quiet_period_is_configurable(sqlite_url: str, clock: ManualClock,
                                                make_runtime: Any, seed_pool: Any) -> None:
    sandbox = TaobaoSandbox(clock=clock)
    sandbox.add_item("MUG", "MUG", 3900, quantity=1)
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await seed_pool(rt, {"MUG": 1})
    rt.rules_data["listing"]["dormant_after"] = "3d"
    clock.advance(timedelta(days=3))
    assert await check_dormant(rt) == 1
    assert await dormant(rt) == {"sku:MUG": 3}
