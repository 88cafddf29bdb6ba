"""The order commands as an operator runs them: `orders review list`, `approve`, `hold`,
`show`, `unbound` + `rebind`, `release-presale`, `inbox` and `quarantine list/drop`, each
decision stored with its reason."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner, Result

from connectors.taobao.sandbox import TaobaoSandbox
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.cli import app
from core.clock import ManualClock
from core.db import transaction
from core.model import Order, OrderEvent, QuarantinedPayload
from core.quarantine import quarantine
from core.runtime import Runtime
from core.testing.builders import line, order


async def cli(config: Path, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, [*args, "--config", str(config)],
                                   env={"COLUMNS": "250"})


async def setup(tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
                seed_pool: Any) -> tuple[Runtime, Path]:
    clock.set(datetime.now(UTC) - timedelta(hours=1))  # the command line runs on real time
    rt: Runtime = await make_runtime(sqlite_url, {"tb": TaobaoSandbox(clock=clock)})
    await seed_pool(rt, {"MUG": 10}, pull=False)
    now = clock.now()
    records = [
        order("FINE", line("MUG", 1, line_id="1"), modified=now),
        order("URGENT", line("MUG", 1, line_id="1"), modified=now, remark="请加急"),
        order("BIG", line("MUG", 1, line_id="1", price_fen=600_000), modified=now),
        order("ODD", line("MUG", 1, line_id="1"), line("NEWCODE", 1, line_id="2"),
              modified=now),
        order("PRE", line("MUG", 1, line_id="1",
                          presale_ship_by=now + timedelta(minutes=30)), modified=now),
    ]
    async with transaction(rt.sessions) as session:
        await rt.book.ingest(session, rt.shop_ids["tb"], records, source="pull", now=now)
    return rt, tmp_path / "erpsync.toml"


async def test_review_list_approve_hold_and_show(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    rt, config = await setup(tmp_path, sqlite_url, clock, make_runtime, seed_pool)
    listed = await cli(config, "orders", "review", "list")
    assert listed.exit_code == 0, listed.output
    for held, rule in (("URGENT", "urgent_remark"), ("BIG", "amount_over_manual_limit"),
                       ("PRE", "presale"), ("ODD", "auto_approve")):
        assert held in listed.output and rule in listed.output
    assert "FINE" not in listed.output
    assert "priority" in listed.output and "1 unbound" in listed.output
    assert "4 order(s) need attention" in listed.output

    approved = await cli(config, "orders", "approve", "URGENT", "BIG", "--reason",
                         "called the buyer")
    assert approved.exit_code == 0, approved.output
    held = await cli(config, "orders", "hold", "FINE", "--reason", "address to confirm")
    assert held.exit_code == 0, held.output
    missing = await cli(config, "orders", "hold", "FINE")
    assert missing.exit_code == 2  # --reason is required
    unknown = await cli(config, "orders", "approve", "NOPE")
    assert unknown.exit_code == 2 and "no such order" in unknown.output

    async with rt.sessions() as session:
        rows = dict((await session.execute(select(Order.platform_order_id, Order.status))).all())
        fine = await session.scalar(select(Order).where(Order.platform_order_id == "FINE"))
        notes = (await session.scalars(select(OrderEvent.note).where(
            OrderEvent.source == "operator").order_by(OrderEvent.id))).all()
    assert (rows["URGENT"], rows["BIG"], rows["FINE"]) == ("approved", "approved", "on_hold")
    assert fine is not None and fine.hold_reason == "address to confirm"
    assert notes == ["approve: called the buyer", "approve: called the buyer",
                     "hold: address to confirm"]

    shown = await cli(config, "orders", "show", "FINE")
    assert shown.exit_code == 0, shown.output
    assert "address to confirm" in shown.output and "operator" in shown.output
    assert "unpaid" in shown.output and "approved" in shown.output


async def test_unbound_lines_then_rebind_and_presale_release(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    rt, config = await setup(tmp_path, sqlite_url, clock, make_runtime, seed_pool)
    unbound = await cli(config, "orders", "unbound")
    assert unbound.exit_code == 0, unbound.output
    assert "NEWCODE" in unbound.output and "1 unbound line(s)" in unbound.output
    assert "0 line(s) bound" in (await cli(config, "orders", "rebind")).output
    async with transaction(rt.sessions) as session:
        await upsert_product(session, ProductSpec("NEWCODE", "new", (SkuSpec("NEWCODE", 990),)),
                             rt.now())
    assert "1 line(s) bound" in (await cli(config, "orders", "rebind")).output
    assert "0 unbound line(s)" in (await cli(config, "orders", "unbound")).output

    # the presale promise (30 minutes after an hour ago) has come on the real clock
    released = await cli(config, "orders", "release-presale")
    assert released.exit_code == 0 and "1 presale order(s)" in released.output
    async with rt.sessions() as session:
        pre = await session.scalar(select(Order).where(Order.platform_order_id == "PRE"))
    assert pre is not None and (pre.status, pre.review_rule) == ("approved", "auto_approve")

    inbox = await cli(config, "orders", "inbox")
    assert inbox.exit_code == 0 and "0 settled" in inbox.output


async def test_quarantine_list_and_drop(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    rt, config = await setup(tmp_path, sqlite_url, clock, make_runtime, seed_pool)
    async with transaction(rt.sessions) as session:
        await quarantine(session, shop_id=rt.shop_ids["tb"], source="pull",
                         payload=b'{"tid": 42, "status": "NEW"}', error="unknown status NEW",
                         now=rt.now(), platform_order_id="42")
    listed = await cli(config, "orders", "quarantine", "list", "--payload")
    assert listed.exit_code == 0, listed.output
    assert "unknown status NEW" in listed.output and '"tid": 42' in listed.output
    async with rt.sessions() as session:
        entry_id = await session.scalar(select(QuarantinedPayload.id))
    dropped = await cli(config, "orders", "quarantine", "drop", str(entry_id), "--reason",
                        "test order")
    assert dropped.exit_code == 0, dropped.output
    again = await cli(config, "orders", "quarantine", "drop", str(entry_id))
    assert again.exit_code == 2 and "dropped already" in again.output
    assert "42" not in (await cli(config, "orders", "quarantine", "list")).output
    kept = await cli(config, "orders", "quarantine", "list", "--all")
    assert "dropped" in kept.output and "42" in kept.output
