"""Push fan-out: one stock change of a SKU listed in N shops (default 20, on every sandbox
platform in turn) over loopback HTTP → the time until every shop's push has landed, next to
one sandbox round trip measured in the same run (the median of single `set_stock` calls).

    python bench/fanout.py [--shops 20] [--repeat 30]

The sale is ingested through OrderBook.ingest (as a pull or push would), then the daemon's
OutboxWorker drains; the clock starts when the ingest transaction has committed and stops
when the drain returns (every push answered). Figures are printed, never asserted; the goal
is fan-out ≤ 2 round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.clock import ManualClock  # noqa: E402
from core.sandbox import serve  # noqa: E402
from core.simulate import PLATFORMS  # noqa: E402


async def fanout(shops: int, repeat: int) -> dict[str, float]:
    import logging
    import os

    from sqlalchemy import select

    from core.catalog import ProductSpec, SkuSpec, upsert_product
    from core.config import load
    from core.db import transaction, upgrade
    from core.listings import pull_listings
    from core.logs import configure
    from core.model import Listing, Sku
    from core.plugins import Registry
    from core.records import StockUpdate
    from core.runtime import Runtime, SandboxBinding
    from core.senders import OutboxWorker
    from core.testing.builders import line, order

    configure(json=True, level=logging.ERROR, stream=open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
    registry = Registry.discover()
    clock = ManualClock()
    folder = Path(tempfile.mkdtemp(prefix="erpsync-fanout-"))
    (folder / "rules.toml").write_text((ROOT / "config" / "rules.toml").read_text())
    names = [f"{PLATFORMS[i % len(PLATFORMS)]}-{i + 1:02d}" for i in range(shops)]
    sandboxes = {}
    for index, name in enumerate(names):
        sandbox_class = registry.connector(PLATFORMS[index % len(PLATFORMS)]).sandbox_class
        assert sandbox_class is not None
        sandbox = sandbox_class(clock=clock, seed=index)
        sandbox.add_item("fan-out SKU", "FAN", 9900, skus=[("FAN", 0, 9900)])
        sandboxes[name] = sandbox
    text = [f'rules = "rules.toml"\n[database]\nurl = "sqlite:///{folder}/fanout.db"\n']
    text += [f'[[shops]]\nname = "{n}"\nplatform = "{PLATFORMS[i % len(PLATFORMS)]}"\n'
             "sandbox = true\n" for i, n in enumerate(names)]
    (folder / "fanout.toml").write_text("\n".join(text))
    config = load(folder / "fanout.toml", check_env=False)
    async with serve(sandboxes) as urls:
        rt = Runtime(config, clock=clock, registry=registry, node="bench",
                     sandboxes={n: SandboxBinding(sb, urls[n]) for n, sb in sandboxes.items()})
        rt.http.rate_limits = False  # the figure is the fan-out, not the platforms' budgets
        try:
            await upgrade(rt.engine, config.database_url)
            await rt.sync_shops()
            async with transaction(rt.sessions) as session:
                await upsert_product(session, ProductSpec("FAN", "fan-out SKU", (
                    SkuSpec("FAN", 9900),)), clock.now())
                sku = await session.scalar(select(Sku).where(Sku.merchant_code == "FAN"))
                assert sku is not None
                await rt.pool.change_on_hand(session, sku.id, "MAIN", 10 * repeat + 100,
                                             kind="receipt", reason="bench", reference="bench",
                                             now=clock.now())
            for name in names:
                await pull_listings(rt, name)
            worker = OutboxWorker(rt)
            await worker.drain(rounds=1000)
            # one round trip: one shop, one listing, its current quantity written again
            connector = rt.connector(names[0])
            async with rt.sessions() as session:
                listing = await session.scalar(select(Listing).where(
                    Listing.shop_id == rt.shop_ids[names[0]]))
            assert listing is not None
            again = StockUpdate(listing.platform_item_id, listing.platform_sku_id,
                                int(listing.last_pushed_quantity or 0))
            trips, fans, calls = [], [], []
            for n in range(repeat):
                started = time.perf_counter()
                await connector.set_stock([again])
                trips.append((time.perf_counter() - started) * 1000)
                async with transaction(rt.sessions) as session:
                    await rt.book.ingest(session, rt.shop_ids[names[n % shops]],
                                         [order(f"fan{n}", line("FAN", 1, line_id="1"))],
                                         source="push", now=clock.now())
                started = time.perf_counter()
                stats = await worker.drain(rounds=1000)
                fans.append((time.perf_counter() - started) * 1000)
                calls.append(stats.calls_by_kind.get("stock", 0))
            return {"round_trip_ms": statistics.median(trips),
                    "fanout_p50_ms": statistics.median(fans),
                    "fanout_p99_ms": sorted(fans)[max(0, int(len(fans) * 0.99) - 1)],
                    "fanout_max_ms": max(fans),
                    "stock_calls_per_change": statistics.mean(calls)}
        finally:
            await rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    figures = asyncio.run(fanout(args.shops, args.repeat))
    trip = figures["round_trip_ms"]
    print(f"\npush fan-out: one stock change, {args.shops} shops, {args.repeat} repeats, "
          "over loopback HTTP")
    print(f"{'one round trip (median)':<28} {trip:9.2f} ms")
    for key in ("fanout_p50_ms", "fanout_p99_ms", "fanout_max_ms"):
        value = figures[key]
        print(f"{'fan-out ' + key.split('_')[1]:<28} {value:9.2f} ms  = {value / trip:5.1f} round trips")
    print(f"{'stock calls per change':<28} {figures['stock_calls_per_change']:9.1f}")
    verdict = "PASS" if figures["fanout_p99_ms"] <= 2 * trip else "FAIL"
    print(f"{verdict}  fan-out p99 ≤ 2 round trips ({figures['fanout_p99_ms']:.1f} ms vs "
          f"{2 * trip:.1f} ms)")


if __name__ == "__main__":
    main()
