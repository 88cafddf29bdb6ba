"""A pull killed with SIGKILL between pages — inside a batch's transaction, or right after a
commit — loses no order and doubles nothing: after a restart (by another node, once the
dead node's lease has run out) every order is stored exactly once and every line holds
exactly one reservation. The sandbox is served over real HTTP by this process; each pull
is a real `python` process (tests/integration/pull_crash_worker.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.douyin.sandbox import DouyinSandbox
from core.clock import ManualClock
from core.inventory import ledger_matches
from core.model import Order, OrderLine, Reservation, Sku, StockLevel
from core.pull import BATCH, cursor_position
from core.runtime import Runtime
from core.sandbox import serve

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("pull_crash_worker.py")
ORDERS = 4 * BATCH + 30  # four full batches and a short one


async def pull_process(config: Path, url: str, clock: ManualClock, node: str,
                       pause: str | None = None) -> dict[str, Any] | None:
    """Run one pull; with `pause`, SIGKILL it where it paused and return None."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ERPSYNC_TEST_PAUSE", None)
    if pause:
        env["ERPSYNC_TEST_PAUSE"] = pause
    errors = config.with_name(f"{node}.stderr")
    with errors.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), str(config), "dy", url, clock.now().isoformat(), node,
            env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    try:
        if pause:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
            assert line.strip() == b"paused", (line, errors.read_text()[-3000:])
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
            return None
        out = await asyncio.wait_for(process.stdout.read(), timeout=120)
        assert await process.wait() == 0, errors.read_text()[-3000:]
        return dict(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def before_the_orders(rt: Runtime, placed: list[Any]) -> bool:
    cursor = await cursor_position(rt, "dy")
    return cursor is not None and cursor < min(o.created for o in placed)


async def counts(rt: Runtime) -> tuple[int, int]:
    async with rt.sessions() as session:
        orders = await session.scalar(select(func.count()).select_from(Order))
        lines = await session.scalar(select(func.count()).select_from(Reservation))
        return int(orders or 0), int(lines or 0)


async def test_killed_pulls_lose_and_double_nothing(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any,
        tmp_path: Path) -> None:
    sandbox = DouyinSandbox(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 10_000, 3900)])
    sandbox.add_item("T恤", "TEE", 9900, skus=[("TEE", 10_000, 9900)])
    rt = await make_runtime(db_url, {"dy": sandbox})
    await seed_pool(rt, {"MUG": 5_000, "TEE": 5_000}, pull=False)
    config = tmp_path / "erpsync.toml"
    placed = []
    for n in range(ORDERS):
        lines = [("MUG", 1 + n % 3)] + ([("TEE", 1)] if n % 4 == 0 else [])
        placed.append(sandbox.place_order(lines))
        clock.advance(timedelta(seconds=5))
    for victim in placed[::10]:
        sandbox.cancel(victim.order_id)
    clock.advance(timedelta(minutes=5))
    lease = rt.config.daemon.lease

    async with serve({"dy": sandbox}) as urls:
        url = urls["dy"]
        # 1: dies inside the third batch's transaction — two batches committed; the cursor
        # passed the empty backfill windows but not the one being read
        await pull_process(config, url, clock, "node-a", pause="inside:2")
        assert (await counts(rt))[0] == 2 * BATCH
        assert await before_the_orders(rt, placed)
        # 2: another node starts at once: the dead node's lease still holds it off
        skipped = await pull_process(config, url, clock, "node-b")
        assert skipped is not None and skipped["skipped_locked"]
        # 3: after the lease ran out, node b reads again and dies right after a commit
        clock.advance(lease + timedelta(seconds=1))
        await pull_process(config, url, clock, "node-b", pause="after:4")
        assert (await counts(rt))[0] == 4 * BATCH
        assert await before_the_orders(rt, placed)
        # 4: node c finishes the window
        clock.advance(lease + timedelta(seconds=1))
        done = await pull_process(config, url, clock, "node-c")
        assert done is not None and not done["skipped_locked"]
        assert done["new"] == ORDERS - 4 * BATCH
        # 5: and a normal pull afterwards re-reads the overlap, changing nothing
        clock.advance(timedelta(minutes=1))
        again = await pull_process(config, url, clock, "node-c")
        assert again is not None and again["new"] == 0

    lines_expected = sum(len(o.lines) for o in placed)
    reserved_expected = {
        "MUG": sum(ln.quantity for o in placed if o not in placed[::10] for ln in o.lines
                   if ln.outer_id == "MUG"),
        "TEE": sum(ln.quantity for o in placed if o not in placed[::10] for ln in o.lines
                   if ln.outer_id == "TEE")}
    async with rt.sessions() as session:
        ids = (await session.scalars(select(Order.platform_order_id))).all()
        assert sorted(ids) == sorted(o.order_id for o in placed)  # each exactly once
        assert await session.scalar(select(func.count()).select_from(OrderLine)) == (
            lines_expected)
        # one reservation per line of every order still open; cancelled ones (first seen
        # refunded) never reserved
        per_line = (await session.execute(select(Reservation.order_line_id, func.count())
                                          .group_by(Reservation.order_line_id))).all()
        open_lines = sum(len(o.lines) for o in placed if o not in placed[::10])
        assert len(per_line) == open_lines and {n for _, n in per_line} == {1}
        assert await ledger_matches(session) == []
        reserved = dict((await session.execute(
            select(Sku.merchant_code, StockLevel.reserved)
            .join(StockLevel, StockLevel.sku_id == Sku.id))).all())
        assert reserved == reserved_expected
    cursor = await cursor_position(rt, "dy")
    assert cursor is not None and cursor > max(o.modified for o in placed)
