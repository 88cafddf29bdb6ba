"""Inventory benchmarks: reservations per second next to a bare UPDATE of the same table,
on SQLite and PostgreSQL, with 1 and 4 processes; and API calls per stock change under a
burst of sales (coalescing should keep it well below 1).

    python bench/inventory.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--orders 2000]

Figures are printed, never asserted: compare the ratio column (goal ≥ 50 % of bare).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import selectinload

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.catalog import ProductSpec, SkuSpec, upsert_product  # noqa: E402
from core.db import create_engine, session_factory, transaction, upgrade  # noqa: E402
from core.inventory import StockPool  # noqa: E402
from core.model import Order, OrderLine, Shop, Sku, StockLevel  # noqa: E402
from core.testing.builders import T0  # noqa: E402

SKUS = 50


async def prepare(url: str, orders: int) -> None:
    engine = create_engine(url)
    await upgrade(engine, url)
    sessions = session_factory(engine)
    pool = StockPool(("MAIN",))
    async with transaction(sessions) as session:
        shop = Shop(name="bench", platform="test", settings={}, created_at=T0)
        session.add(shop)
        await session.flush()
        for i in range(SKUS):
            code = f"SKU{i:03d}"
            await upsert_product(session, ProductSpec(code, code, (SkuSpec(code, 100),)), T0)
            sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
            assert sku is not None
            await pool.change_on_hand(session, sku.id, "MAIN", 10 * orders, kind="receipt",
                                      reason="bench", reference="bench", now=T0)
        sku_ids = list((await session.scalars(select(Sku.id).order_by(Sku.id))).all())
        rows = [dict(shop_id=shop.id, platform_order_id=f"B{i}", status="paid",
                     platform_status="paid", platform_created_at=T0, platform_modified_at=T0,
                     paid_at=T0, total_fen=100, paid_fen=100, ingested_at=T0, updated_at=T0)
                for i in range(orders)]
        await session.execute(insert(Order), rows)
        ids = list((await session.scalars(select(Order.id).order_by(Order.id))).all())
        await session.execute(insert(OrderLine), [
            dict(order_id=oid, platform_line_id="1", sku_id=sku_ids[n % SKUS], quantity=1,
                 unit_price_fen=100, paid_fen=100, status="open") for n, oid in enumerate(ids)])
    await engine.dispose()


async def work(url: str, kind: str, part: int, parts: int) -> None:
    """Load this worker's orders, wait for the starting gun, then time the loop alone
    (process start-up and loading are not part of either rate)."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    pool = StockPool(("MAIN",))
    async with sessions() as session:
        order_ids = list((await session.scalars(select(Order.id).order_by(Order.id))).all())
        mine = order_ids[part::parts]
        orders = list((await session.scalars(select(Order).where(Order.id.in_(mine))
                                             .options(selectinload(Order.lines)))).all())
        level_ids = list((await session.scalars(select(StockLevel.id))).all())
    print("ready", flush=True)
    sys.stdin.readline()
    per_transaction = 100 if kind.endswith("-batch") else 1
    started = time.perf_counter()
    for first in range(0, len(orders), per_transaction):
        async with transaction(sessions) as session:
            page = orders[first:first + per_transaction]
            if kind == "reserve-batch":
                # as a pull commits a page: lock the page's levels in order, reserve in one go
                await pool.lock_levels(session, {ln.sku_id for o in page for ln in o.lines
                                                 if ln.sku_id is not None})
                await pool.reserve_orders(session, page, T0 + timedelta(seconds=first))
                continue
            page = sorted(page, key=lambda o: level_ids[o.id % len(level_ids)])
            for n, order in enumerate(page, start=first):
                if kind == "reserve":
                    await pool.reserve_order(session, order, T0 + timedelta(seconds=n))
                else:
                    await session.execute(update(StockLevel).where(
                        StockLevel.id == level_ids[order.id % len(level_ids)])
                        .values(reserved=StockLevel.reserved + 1))
    print(f"{len(orders)} {time.perf_counter() - started}", flush=True)
    await engine.dispose()


def run_workers(url: str, kind: str, processes: int) -> float:
    """Operations per second over all workers, started together."""
    children = [subprocess.Popen([sys.executable, __file__, "--worker", url, kind, str(i),
                                  str(processes)], cwd=ROOT, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for i in range(processes)]
    for child in children:
        assert child.stdout is not None
        child.stdout.readline()  # ready
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    done, slowest = 0, 0.0
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"worker failed: {kind}")
        count, seconds = out.split()
        done += int(count)
        slowest = max(slowest, float(seconds))
    return done / slowest


def fresh_pg(base: str) -> tuple[str, str]:
    name = f"erpsync_bench_{uuid.uuid4().hex[:8]}"
    admin = create_sync_engine(base.replace("+asyncpg", ""), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name, name


def drop_pg(base: str, name: str) -> None:
    admin = create_sync_engine(base.replace("+asyncpg", ""), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def measure(label: str, make_url: callable, orders: int) -> list[tuple[str, ...]]:  # type: ignore[valid-type]
    rows = []
    for batch in ("", "-batch"):
        for processes in (1, 4):
            rates = {}
            for kind in ("bare", "reserve"):
                url, cleanup = make_url()
                asyncio.run(prepare(url, orders))
                rates[kind] = run_workers(url, kind + batch, processes)
                cleanup()
            rows.append((label, "100" if batch else "1", str(processes),
                         f"{rates['reserve']:.0f}", f"{rates['bare']:.0f}",
                         f"{rates['reserve'] / rates['bare']:.0%}"))
    return rows


async def api_calls_per_change(changes: int) -> tuple[int, int]:
    """A burst of single-unit sales on 5 SKUs listed in 3 shops, then one drain."""
    from connectors.taobao.sandbox import TaobaoSandbox
    from core.clock import ManualClock
    from core.config import load
    from core.listings import pull_listings
    from core.runtime import Runtime, SandboxBinding
    from core.senders import OutboxWorker
    from core.testing import RoutingTransport
    from core.testing.builders import line, order

    clock = ManualClock()
    folder = Path(tempfile.mkdtemp())
    (folder / "rules.toml").write_text((ROOT / "config" / "rules.toml").read_text())
    shops = {f"s{i}": TaobaoSandbox(clock=clock, seed=i) for i in range(3)}
    codes = [f"C{i}" for i in range(5)]
    for sandbox in shops.values():
        sandbox.add_item("bench", "BENCH", 100, skus=[(c, 0, 100) for c in codes])
    (folder / "c.toml").write_text(
        f'rules = "rules.toml"\n[database]\nurl = "sqlite:///{folder}/b.db"\n'
        + "".join(f'[[shops]]\nname = "{n}"\nplatform = "taobao"\nsandbox = true\n'
                  for n in shops))
    config = load(folder / "c.toml", check_env=False)
    rt = Runtime(config, clock=clock, transport=RoutingTransport(
        {f"{n}.sandbox": sb for n, sb in shops.items()}),
        sandboxes={n: SandboxBinding(sb, f"http://{n}.sandbox") for n, sb in shops.items()})
    rt.http.rate_limits = False
    await upgrade(rt.engine, config.database_url)
    await rt.sync_shops()
    async with transaction(rt.sessions) as session:
        for code in codes:
            await upsert_product(session, ProductSpec(code, code, (SkuSpec(code, 100),)), T0)
            sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
            assert sku is not None
            await rt.pool.change_on_hand(session, sku.id, "MAIN", changes, kind="receipt",
                                         reason="bench", reference="bench", now=T0)
    for name in shops:
        await pull_listings(rt, name)
    worker = OutboxWorker(rt)
    await worker.drain()
    before = sum(len(sb.calls("taobao.skus.quantity.update")) for sb in shops.values())
    shop_id = rt.shop_ids["s0"]
    for n in range(changes):
        code = codes[n % len(codes)]
        async with transaction(rt.sessions) as session:
            await rt.book.ingest(session, shop_id, [order(f"burst{n}", line(code, 1, line_id="1"))],
                                 source="push", now=clock.now())
        if n % 50 == 49:  # the worker drains every 50 sales during the burst
            await worker.drain()
    await worker.drain()
    after = sum(len(sb.calls("taobao.skus.quantity.update")) for sb in shops.values())
    await rt.close()
    return changes, after - before


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, url, kind, part, parts = sys.argv
        asyncio.run(work(url, kind, int(part), int(parts)))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--pg", default=os.environ.get("ERPSYNC_TEST_PG_URL"))
    args = parser.parse_args()

    def sqlite_url() -> tuple[str, callable]:  # type: ignore[valid-type]
        folder = tempfile.mkdtemp()
        return f"sqlite:///{folder}/bench.db", lambda: None

    rows = measure("SQLite (WAL)", sqlite_url, args.orders)
    if args.pg:
        def pg_url() -> tuple[str, callable]:  # type: ignore[valid-type]
            url, name = fresh_pg(args.pg)
            return url, lambda: drop_pg(args.pg, name)
        rows += measure("PostgreSQL", pg_url, args.orders)
    print(f"\nreservations per second ({args.orders} single-line orders; a transaction per "
          "order, as for webhooks, or per page of 100, as for pulls)")
    print(f"{'database':<14} {'per tx':>6} {'procs':>5} {'reserve/s':>10} {'bare UPDATE/s':>14} "
          f"{'ratio':>7}")
    for row in rows:
        print(f"{row[0]:<14} {row[1]:>6} {row[2]:>5} {row[3]:>10} {row[4]:>14} {row[5]:>7}")
    changes, calls = asyncio.run(api_calls_per_change(1000))
    print(f"\nburst: {changes} stock changes across 5 SKUs in 3 shops -> {calls} stock API calls "
          f"({calls / changes:.3f} per change; {calls / (changes * 3):.3f} per channel update)")


if __name__ == "__main__":
    main()
