"""Order intake benchmark: orders per second from a Douyin sandbox over loopback HTTP into
SQLite and PostgreSQL, end to end (paging, mapping, the order book, reservations, the
outbox), next to the bare INSERT rate of the same rows into the same tables measured in
the same run; then the resident set of the ingesting process over a long pull.

    python bench/orders.py [--orders 20000] [--memory-orders 200000] [--pg URL]
                           [--no-memory] [--profile out.html]

Three processes, so each figure is one process's own: the sandbox server (its orders, and
rendering pages, cost the server, not the ingest), and one ingesting process per run that
reports its rates and its RSS every few batches. Rate limits are off (they would measure
the platform's quota, not erpsync). Figures are printed, never asserted.

What the columns mean:
* fetch only  — iterate the connector over the window, nothing stored: HTTP + JSON + mapping;
* ingest      — `pull_orders`: the same fetch plus OrderBook.ingest per 100 orders (lookups,
                inserts, review, reservation, ledger, outbox), one transaction per batch;
* bare insert — the same orders and lines, SQLAlchemy Core executemany into `orders` and
                `order_lines`, one transaction per 100 orders: the floor of any ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine as create_sync_engine  # noqa: E402
from sqlalchemy import insert, select, text  # noqa: E402

from connectors.douyin.sandbox import DouyinSandbox  # noqa: E402
from core.sandbox import SandboxLine, SandboxOrder  # noqa: E402

SKUS = 50
SPREAD = timedelta(hours=20)  # orders are spread over this much modified time
BATCH_REPORT = 20  # RSS sample every this many batches


# -- the server ------------------------------------------------------------------------------
class BenchDouyin(DouyinSandbox):
    """The Douyin sandbox with an index on update_time: the stock sandbox renders every order
    for every page, fine for tests, quadratic at 200k."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._index: list[tuple[int, str]] = []

    def build_index(self) -> None:
        self._index = sorted((int(o.modified.timestamp()), o.order_id)
                             for o in self.orders.values())

    def _search_list(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("order_by") != "update_time" or not p.get("order_asc") or "combine_status" in p:
            return super()._search_list(p)
        size, page = int(p["size"]), int(p["page"])
        low = bisect.bisect_left(self._index, (int(p["update_time_start"]), ""))
        high = bisect.bisect_right(self._index, (int(p["update_time_end"]), "\uffff"))
        chosen = self._index[low:high][page * size:(page + 1) * size]
        return {"page": page, "size": size, "total": high - low,
                "shop_order_list": [self.render_order(self.orders[oid]) for _, oid in chosen]}


def seed_sandbox(sandbox: BenchDouyin, orders: int, end: datetime) -> None:
    """Deterministic orders: 1–2 lines over SKUS codes, modified across SPREAD before end."""
    skus = []
    for n in range(SKUS):
        item = sandbox.add_item(f"商品{n}", f"B{n:03d}", 1000 + n, skus=[(f"B{n:03d}", 10**6,
                                                                       1000 + n)])
        skus.append((item, item.skus[0]))
    step = SPREAD / max(orders, 1)
    for n in range(orders):
        moment = end - SPREAD + step * n
        order_id = str(sandbox.order_id_base + n + 1)
        lines = []
        for k in range(1 + (n % 4 == 0)):
            item, sku = skus[(n * 7 + k * 13) % SKUS]
            lines.append(SandboxLine(line_id=str(sandbox.line_id_base + 2 * n + k),
                                     item_id=item.item_id, sku_id=sku.sku_id,
                                     outer_id=sku.outer_id, title=item.title,
                                     quantity=1 + n % 3, price_fen=sku.price_fen))
        sandbox.orders[order_id] = SandboxOrder(
            order_id=order_id, state="paid", created=moment, modified=moment, paid_at=moment,
            lines=lines)
    sandbox.build_index()


async def serve_forever(orders: int, end: datetime) -> None:
    from core.sandbox import serve

    sandbox = BenchDouyin()
    seed_sandbox(sandbox, orders, end)
    async with serve({"dy": sandbox}) as urls:
        print(urls["dy"], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


# -- one ingest run (a child process) ---------------------------------------------------------
def config_text(url: str) -> str:
    return "\n".join([
        'rules = "rules.toml"', 'secrets = "secrets.json"', "", "[database]", f'url = "{url}"',
        "", "[inventory]", 'mode = "shared"', "", "[[shops]]", 'name = "dy"',
        'platform = "douyin"', "sandbox = true", ""])


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def ingest_run(db_url: str, base_url: str, end: datetime, *, fetch: bool,
                     bare: bool, profile: str | None) -> dict[str, Any]:
    import shutil

    from core import logs
    from core.catalog import ProductSpec, SkuSpec, upsert_product
    from core.config import load
    from core.db import create_engine, transaction, upgrade
    from core.model import Listing, Reservation, Sku
    from core.pull import pull_orders
    from core.records import OrderRecord
    from core.runtime import Runtime, SandboxBinding

    logs.configure(json=True, level=40)
    work = Path(tempfile.mkdtemp(prefix="erpsync-bench-"))
    shutil.copy(ROOT / "config" / "rules.toml", work / "rules.toml")
    (work / "erpsync.toml").write_text(config_text(db_url), encoding="utf-8")
    config = load(work / "erpsync.toml", check_env=False)
    engine = create_engine(config.database_url)
    await upgrade(engine, config.database_url)
    rt = Runtime(config, engine=engine, node="bench",
                 sandboxes={"dy": SandboxBinding(DouyinSandbox(), base_url)})
    rt.http.rate_limits = False
    await rt.sync_shops()
    shop_id = rt.shop_ids["dy"]
    start = end - SPREAD - timedelta(minutes=1)
    async with transaction(rt.sessions) as session:
        for n in range(SKUS):
            code = f"B{n:03d}"
            await upsert_product(session, ProductSpec(code, code, (SkuSpec(code, 1000),)), rt.now())
            sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
            assert sku is not None
            await rt.pool.change_on_hand(session, sku.id, "MAIN", 10**7, kind="receipt",
                                         reason="bench", reference="bench", now=rt.now())
            session.add(Listing(shop_id=shop_id, platform_item_id=f"item-{n}",
                                platform_sku_id=f"sku-{n}", sku_id=sku.id, merchant_code=code,
                                created_at=rt.now()))
    result: dict[str, Any] = {"rss_start_mb": round(rss_mb(), 1)}
    records: list[OrderRecord] = []
    if fetch:
        began = time.perf_counter()
        async for record in rt.connector("dy").iter_orders(start, end):
            if bare and isinstance(record, OrderRecord):
                records.append(record)
        result["fetch_seconds"] = time.perf_counter() - began
        result["fetched"] = len(records) if bare else None

    samples: list[tuple[int, float]] = []
    seen = 0
    batches = 0

    def on_batch(count: int) -> None:
        nonlocal seen, batches
        seen += count
        batches += 1
        if batches % BATCH_REPORT == 0:
            samples.append((seen, round(rss_mb(), 1)))

    profiler = None
    if profile:
        from pyinstrument import Profiler
        profiler = Profiler(async_mode="enabled")
        profiler.start()
    began = time.perf_counter()
    stats = await pull_orders(rt, "dy", since=start, until=end, on_batch=on_batch)
    result["ingest_seconds"] = time.perf_counter() - began
    if profiler is not None:
        profiler.stop()
        await asyncio.to_thread(Path(profile or "").write_text, profiler.output_html(),
                                encoding="utf-8")
        print(profiler.output_text(unicode=True, color=False, show_all=False), file=sys.stderr)
    async with rt.sessions() as session:
        from sqlalchemy import func
        result["reservations"] = await session.scalar(
            select(func.count()).select_from(Reservation))
    result.update(ingested=stats.new, seen=stats.orders_seen, samples=samples,
                  peak_mb=round(peak_mb(), 1))
    if bare and records:
        result["bare_seconds"] = await bare_insert(rt, records)
    await rt.close()
    shutil.rmtree(work, ignore_errors=True)
    return result


async def bare_insert(rt: Any, records: list[Any]) -> float:
    """The same orders and lines, plain Core executemany, under a second shop."""
    from core.db import transaction
    from core.model import Order, OrderLine, Shop

    async with transaction(rt.sessions) as session:
        shop = Shop(name="bare", platform="douyin", settings={}, created_at=rt.now())
        session.add(shop)
        await session.flush()
        shop_id = shop.id
    now = rt.now()
    began = time.perf_counter()
    for first in range(0, len(records), 100):
        page = records[first:first + 100]
        async with transaction(rt.sessions) as session:
            ids = dict((await session.execute(
                insert(Order).returning(Order.platform_order_id, Order.id), [dict(
                    shop_id=shop_id, platform_order_id=r.platform_order_id, status="paid",
                    platform_status=r.platform_status, platform_created_at=r.created_at,
                    platform_modified_at=r.modified_at, paid_at=r.paid_at,
                    total_fen=r.total_fen, paid_fen=r.paid_fen, post_fee_fen=r.post_fee_fen,
                    province=r.address.province, city=r.address.city,
                    district=r.address.district, address_detail=r.address.detail,
                    ingested_at=now, updated_at=now) for r in page])).all())
            await session.execute(insert(OrderLine), [dict(
                order_id=ids[r.platform_order_id], platform_line_id=ln.platform_line_id,
                platform_item_id=ln.platform_item_id, platform_sku_id=ln.platform_sku_id,
                merchant_code=ln.merchant_code, title=ln.title, quantity=ln.quantity,
                unit_price_fen=ln.unit_price_fen, paid_fen=ln.paid_fen, status="open")
                for r in page for ln in r.lines])
    return time.perf_counter() - began


# -- orchestration ---------------------------------------------------------------------------
def start_server(orders: int, end: datetime) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(orders), end.isoformat()],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    if not url.startswith("http"):
        raise SystemExit("the sandbox server did not start")
    return server, url


def stop(server: subprocess.Popen[str]) -> None:
    assert server.stdin is not None
    server.stdin.write("\n")
    server.stdin.flush()
    server.wait(timeout=30)


def run_child(db_url: str, base_url: str, end: datetime, *flags: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--ingest", db_url, base_url,
                           end.isoformat(), *flags], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ingest run failed:\n{done.stderr[-4000:]}")
    if done.stderr.strip():
        print(done.stderr, file=sys.stderr)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def databases(pg: str | None) -> Iterator[tuple[str, str, Any]]:
    """(label, url, cleanup) for a fresh SQLite file and, with --pg, a fresh database."""
    folder = tempfile.mkdtemp(prefix="erpsync-bench-db-")
    yield "SQLite", f"sqlite:///{folder}/bench.db", lambda: None
    if pg:
        name = f"erpsync_bench_{uuid.uuid4().hex[:8]}"
        admin = create_sync_engine(pg.replace("+asyncpg", ""), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        yield "PostgreSQL", f"{pg.rsplit('/', 1)[0]}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20_000, help="orders for the rates")
    parser.add_argument("--memory-orders", type=int, default=200_000,
                        help="orders for the resident-set run (SQLite)")
    parser.add_argument("--pg", help="PostgreSQL URL (a fresh database is created in it)")
    parser.add_argument("--no-memory", action="store_true", help="skip the resident-set run")
    parser.add_argument("--profile", help="write a pyinstrument profile of the SQLite ingest")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--ingest", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--fetch", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_forever(int(args.serve[0]), datetime.fromisoformat(args.serve[1])))
        return
    if args.ingest:
        db_url, base_url, end = args.ingest
        print(json.dumps(asyncio.run(ingest_run(
            db_url, base_url, datetime.fromisoformat(end), fetch=args.fetch, bare=args.bare,
            profile=args.child_profile))), flush=True)
        return

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    print(f"erpsync order intake — Douyin sandbox over loopback HTTP, {os.cpu_count()} CPU(s), "
          "rate limits off\n")
    server, url = start_server(args.orders, end)
    try:
        print(f"{'database':<11} {'orders':>7} {'fetch only/s':>13} {'ingest/s':>9} "
              f"{'bare insert/s':>14} {'ingest/bare':>12} {'reservations':>13}")
        for label, db_url, cleanup in databases(args.pg):
            flags = ["--fetch", "--bare"]
            if args.profile and label == "SQLite":
                flags += ["--child-profile", args.profile]
            try:
                r = run_child(db_url, url, end, *flags)
            finally:
                cleanup()
            fetch = r["fetched"] / r["fetch_seconds"]
            ingest = r["ingested"] / r["ingest_seconds"]
            bare = r["fetched"] / r["bare_seconds"]
            print(f"{label:<11} {r['ingested']:>7} {fetch:>13,.0f} {ingest:>9,.0f} "
                  f"{bare:>14,.0f} {ingest / bare:>11.0%} {r['reservations']:>13}")
    finally:
        stop(server)
    if args.no_memory:
        return
    print(f"\nresident set while ingesting {args.memory_orders:,} orders (SQLite, one process)")
    server, url = start_server(args.memory_orders, end)
    try:
        label, db_url, cleanup = next(databases(None))
        r = run_child(db_url, url, end)
        cleanup()
    finally:
        stop(server)
    print(f"  before the pull {r['rss_start_mb']:.0f} MB; "
          f"{r['ingested']:,} orders in {r['ingest_seconds']:.0f} s "
          f"({r['ingested'] / r['ingest_seconds']:,.0f}/s)")
    marks = r["samples"][:: max(1, len(r["samples"]) // 10)] + r["samples"][-1:]
    for seen, mb in dict(marks).items():
        print(f"  after {seen:>8,} orders  {mb:7.1f} MB")
    print(f"  peak RSS {r['peak_mb']:.1f} MB")


if __name__ == "__main__":
    main()
