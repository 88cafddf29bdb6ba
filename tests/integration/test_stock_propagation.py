"""After a sale in one shop every other shop's listing of that SKU receives the new
quantity once, and the newest version wins even when a push is retried after a newer one
was queued."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock
from core.model import OutboxTask
from core.pull import pull_orders
from core.sandbox import Fault
from core.senders import OutboxWorker

STOCK_API = "taobao.skus.quantity.update"


def pushed_quantities(sandbox: TaobaoSandbox) -> list[str]:
    return [r.form().get("skuid_quantities", "") for r in sandbox.calls(STOCK_API)]


async def test_sale_reaches_every_shop_once_and_newest_wins(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    shops = {name: TaobaoSandbox(clock=clock, seed=i) for i, name in enumerate("abc")}
    for sandbox in shops.values():
        sandbox.add_item("台灯", "LAMP", 19900, skus=[("LAMP", 9, 19900)])
    rt = await make_runtime(sqlite_url, shops)
    await seed_pool(rt, {"LAMP": 9})
    worker = OutboxWorker(rt)
    await worker.drain()
    for sandbox in shops.values():
        sandbox.requests.clear()

    # a sale of 2 in shop a: b and c (and a itself) get 7, one call each
    shops["a"].place_order([("LAMP", 2)])
    clock.advance(timedelta(minutes=2))
    await pull_orders(rt, "a", since=clock.now() - timedelta(hours=1))
    await worker.drain()
    for name, sandbox in shops.items():
        assert sandbox.stock_of("LAMP") == 7, name
        assert len(sandbox.calls(STOCK_API)) == 1, name

    # shop b's next push times out after b applied it; before the retry is due, another
    # sale (in c) queues a newer quantity for the same listing: the retry sends the newest
    attempts = rt.http.retry.attempts  # every attempt of this call times out
    shops["b"].faults.inject(Fault.TIMEOUT_AFTER_APPLY, times=attempts, api=STOCK_API)
    shops["c"].place_order([("LAMP", 1)])
    clock.advance(timedelta(minutes=2))
    await pull_orders(rt, "c", since=clock.now() - timedelta(hours=1))
    await worker.drain()
    async with rt.sessions() as session:
        pending = (await session.scalars(select(OutboxTask).where(
            OutboxTask.state == "pending"))).all()
    assert len(pending) == 1 and pending[0].payload["quantity"] == 6
    shops["a"].place_order([("LAMP", 1)])
    clock.advance(timedelta(minutes=2))
    await pull_orders(rt, "a", since=clock.now() - timedelta(hours=1))
    clock.advance(timedelta(minutes=30))  # past the backoff
    await worker.drain()
    for name, sandbox in shops.items():
        assert sandbox.stock_of("LAMP") == 5, name
    sent_to_b = pushed_quantities(shops["b"])
    assert sent_to_b[-1].endswith(":5")  # the newest version is the last one b received
    assert sum(q.endswith(":6") for q in sent_to_b) == attempts  # only the timed-out call
    assert len(pushed_quantities(shops["c"])) == 3  # 7, 6, 5: once per change
