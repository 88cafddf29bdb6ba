"""Memory while streaming orders: N paid orders generated lazily as canonical OrderRecords
and ingested through OrderBook.ingest in pages of 100, one transaction per page (exactly as
a pull commits a page), on SQLite. Prints the resident set every `--every` orders next to
the RSS of an idle Runtime measured first in the same process, and the ingest rate.

The default is 50,000 orders, not 1,000,000: at the ~130 orders/s measured on the shared
2-core machine 1M takes about two hours. The rate and the RSS curve are printed so the 1M
figure can be extrapolated; `--orders 1000000` runs the whole thing.

    python bench/memory.py [--orders 50000] [--every 10000] [--database sqlite:///…]

Figures are printed, never asserted; the goal is a flat resident set ≤ 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.simulate import peak_rss_mb, rss_mb  # noqa: E402

SKUS = 50
PAGE = 100


def orders(count: int) -> Iterator[object]:
    """Lazily: nothing but the current page is ever held."""
    from core.testing.builders import T0, line, order

    for n in range(count):
        code = f"MEM{n % SKUS:03d}"
        yield order(f"M{n:09d}", line(code, 1, line_id="1"),
                    modified=T0 + timedelta(seconds=n // 1000),
                    remark="" if n % 7 else "请尽快")


async def stream(url: str, count: int, every: int) -> None:
    from sqlalchemy import select

    from core.catalog import ProductSpec, SkuSpec, upsert_product
    from core.config import load
    from core.db import transaction, upgrade
    from core.model import Shop, Sku
    from core.runtime import Runtime
    from core.testing.builders import T0

    folder = Path(tempfile.mkdtemp(prefix="erpsync-memory-"))
    (folder / "rules.toml").write_text((ROOT / "config" / "rules.toml").read_text())
    (folder / "memory.toml").write_text(f'rules = "rules.toml"\n[database]\nurl = "{url}"\n')
    rt = Runtime(load(folder / "memory.toml", check_env=False), node="bench")
    try:
        await upgrade(rt.engine, url)
        async with transaction(rt.sessions) as session:
            shop = Shop(name="mem", platform="test", settings={}, created_at=T0)
            session.add(shop)
            await session.flush()
            shop_id = shop.id
            for i in range(SKUS):
                code = f"MEM{i:03d}"
                await upsert_product(session, ProductSpec(code, code, (SkuSpec(code, 100),)), T0)
                sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
                assert sku is not None
                await rt.pool.change_on_hand(session, sku.id, "MAIN", count, kind="receipt",
                                             reason="bench", reference="bench", now=T0)
        idle = rss_mb()
        print(f"idle runtime (migrated, {SKUS} SKUs): RSS {idle:.1f} MB")
        print(f"{'orders':>10} {'RSS MB':>8} {'Δ idle':>8} {'orders/s':>9}")
        started = time.perf_counter()
        page: list[object] = []
        done = 0
        for record in orders(count):
            page.append(record)
            if len(page) == PAGE:
                async with transaction(rt.sessions) as session:
                    await rt.book.ingest(session, shop_id, page,  # type: ignore[arg-type]
                                         source="pull", now=T0)
                done += len(page)
                page = []
                if done % every == 0:
                    now = rss_mb()
                    print(f"{done:>10} {now:>8.1f} {now - idle:>8.1f} "
                          f"{done / (time.perf_counter() - started):>9.0f}", flush=True)
        if page:
            async with transaction(rt.sessions) as session:
                await rt.book.ingest(session, shop_id, page,  # type: ignore[arg-type]
                                     source="pull", now=T0)
            done += len(page)
        seconds = time.perf_counter() - started
        peak = peak_rss_mb()
        rate = done / seconds
        print(f"\n{done} orders in {seconds:.0f} s = {rate:.0f} orders/s (one process, SQLite)")
        print(f"peak RSS {peak:.1f} MB vs idle {idle:.1f} MB"
              + ("" if done >= 1_000_000 else
                 f"; 1,000,000 orders would take ≈ {1_000_000 / rate / 60:.0f} min at this rate"))
        print(f"{'PASS' if peak <= 250 else 'FAIL'}  flat memory ≤ 250 MB RSS "
              f"(peak {peak:.1f} MB over {done} orders)")
    finally:
        await rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--database", default=None,
                        help="default: a fresh SQLite file in a temp folder")
    args = parser.parse_args()
    url = args.database or f"sqlite:///{tempfile.mkdtemp(prefix='erpsync-memory-')}/m.db"
    asyncio.run(stream(url, args.orders, max(PAGE, args.every // PAGE * PAGE)))


if __name__ == "__main__":
    main()
