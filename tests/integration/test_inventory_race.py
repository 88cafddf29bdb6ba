"""Many processes race for the last K units of a SKU: exactly K lines are reserved, the
rest are backordered with an `oversold` alert, no deadlock and no error escapes — on
SQLite (WAL, four processes) and on PostgreSQL (four processes). Some orders are delivered
by two processes at once (a duplicated webhook) and still count once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.db import create_engine, session_factory, transaction, upgrade
from core.inventory import StockPool
from core.model import Alert, Listing, Order, Reservation, Shop, Sku, StockLevel
from core.testing.builders import T0

WORKER = Path(__file__).with_name("race_worker.py")
ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
ORDERS_EACH = 12
LAST_UNITS = 5

pytestmark = pytest.mark.slow


async def seed(db_url: str) -> int:
    engine = create_engine(db_url)
    await upgrade(engine, db_url)
    sessions = session_factory(engine)
    pool = StockPool(("MAIN",))
    async with transaction(sessions) as session:
        shops = [Shop(name=f"shop-{i}", platform="test", settings={}, created_at=T0)
                 for i in range(3)]
        session.add_all(shops)
        await upsert_product(session, ProductSpec("LAST", "last units", (SkuSpec("LAST", 100),)), T0)
        sku = await session.scalar(select(Sku).where(Sku.merchant_code == "LAST"))
        assert sku is not None
        await session.flush()
        for shop in shops:
            session.add(Listing(shop_id=shop.id, platform_item_id="1", platform_sku_id="2",
                                sku_id=sku.id, merchant_code="LAST", created_at=T0))
        await pool.change_on_hand(session, sku.id, "MAIN", LAST_UNITS, kind="receipt",
                                  reason="race", reference="test", now=T0)
        shop_id = shops[0].id
    await engine.dispose()
    return shop_id


def test_last_units_race(db_url: str) -> None:
    shop_id = asyncio.run(seed(db_url))
    batches = [[f"w{w}-{i}" for i in range(ORDERS_EACH)] for w in range(PROCESSES)]
    # every worker also delivers the first two orders of the next worker (duplicates)
    deliveries = [batch + batches[(w + 1) % PROCESSES][:2] for w, batch in enumerate(batches)]
    workers = [subprocess.Popen([sys.executable, str(WORKER), db_url, str(shop_id), "LAST",
                                 ",".join(ids)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
               for ids in deliveries]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, stderr) in zip(workers, results, strict=True):
        assert worker.returncode == 0, stderr[-3000:]

    asyncio.run(check(db_url))


async def check(db_url: str) -> None:
    distinct = PROCESSES * ORDERS_EACH
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == distinct
        reserved = await session.scalar(select(func.count()).select_from(Reservation).where(
            Reservation.state == "reserved"))
        assert reserved == LAST_UNITS
        level = await session.scalar(select(StockLevel))
        assert level is not None and (level.on_hand, level.reserved) == (LAST_UNITS, LAST_UNITS)
        backordered = await session.scalar(select(func.count()).select_from(Order).where(
            Order.backorder.is_(True)))
        assert backordered == distinct - LAST_UNITS
        alerts = await session.scalar(select(func.count()).select_from(Alert).where(
            Alert.kind == "oversold", Alert.open_key.is_not(None)))
        assert alerts == distinct - LAST_UNITS
        # strict mode: what the three channels were last told adds up to what is left (0)
        shown = await session.scalar(select(func.sum(Listing.queued_quantity)))
        assert shown == 0
    await engine.dispose()
