"""The shipping and alert commands as an operator runs them: `erpsync ship --auto`,
`erpsync shipments import` (a bad file ships nothing; --skip-bad ships the rest),
`erpsync shipments check` and `erpsync alerts list/ack/resolve/deliver`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select
from typer.testing import CliRunner, Result

from connectors.jd.sandbox import JdSandbox
from connectors.taobao.sandbox import TaobaoSandbox
from core.cli import app
from core.clock import ManualClock
from core.model import Alert, Order, Shipment
from core.pull import pull_orders
from core.runtime import Runtime

ZHEJIANG = {"province": "浙江省", "city": "杭州市", "district": "西湖区", "detail": "文三路 100 号"}
XINJIANG = {"province": "新疆维吾尔自治区", "city": "乌鲁木齐市", "district": "天山区",
            "detail": "解放南路 21 号"}


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Each command configures structlog onto the runner's stream, closed once it returns;
    later tests must not log into it."""
    yield
    structlog.reset_defaults()


async def cli(config: Path, *args: str) -> Result:
    """The real command line, on its own event loop in a worker thread."""
    return await asyncio.to_thread(CliRunner().invoke, app, [*args, "--config", str(config)],
                                   env={"COLUMNS": "250"})


async def setup(tmp_path: Path, db_url: str, clock: ManualClock, make_runtime: Any,
                seed_pool: Any) -> tuple[Runtime, Path, TaobaoSandbox, JdSandbox]:
    # the command line runs on the real clock: orders paid three days before it
    clock.set(datetime.now(UTC) - timedelta(days=3))
    tb, jd = TaobaoSandbox(clock=clock), JdSandbox(clock=clock)
    for sandbox in (tb, jd):
        sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 50, 3900)])
        sandbox.add_item("T恤", "TEE", 9900, skus=[("TEE", 50, 9900)])
    # the command line has no sandbox bindings: it builds connectors from these URLs, and
    # never calls them (--queue-only)
    rt = await make_runtime(db_url, {"tb": tb, "jd": jd}, shops={
        "tb": {"base_url": "http://127.0.0.1:9/tb"}, "jd": {"base_url": "http://127.0.0.1:9/jd"}})
    await seed_pool(rt, {"MUG": 40, "TEE": 40})
    return rt, tmp_path / "erpsync.toml", tb, jd


async def pull(rt: Runtime, clock: ManualClock) -> None:
    clock.advance(timedelta(minutes=5))
    for shop in ("tb", "jd"):
        await pull_orders(rt, shop, since=clock.now() - timedelta(hours=1))


async def shipments(rt: Runtime) -> list[tuple[str, str, str]]:
    async with rt.sessions() as session:
        rows = (await session.execute(select(Order.platform_order_id, Shipment.carrier,
                                             Shipment.carrier_rule)
                                      .join(Order, Order.id == Shipment.order_id)
                                      .order_by(Shipment.id))).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_ship_auto_shows_then_stores_the_rules_choice(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    rt, config, tb, _ = await setup(tmp_path, sqlite_url, clock, make_runtime, seed_pool)
    near = tb.place_order([("MUG", 1)], address=ZHEJIANG)
    far = tb.place_order([("MUG", 1)], address=XINJIANG)
    await pull(rt, clock)

    shown = await cli(config, "ship", f"tb:{near.order_id}", "--auto")
    assert shown.exit_code == 0, shown.output
    assert f"carrier for tb:{near.order_id}: ZTO (rule next_day_region)" in shown.output
    assert await shipments(rt) == []  # no waybill given: only the choice

    done = await cli(config, "ship", f"tb:{near.order_id}", "--auto", "--tracking",
                     "75123456789012", "--queue-only")
    assert done.exit_code == 0, done.output
    assert "shipped" in done.output and "push pending" in done.output
    wrong = await cli(config, "ship", f"tb:{far.order_id}", "--auto", "--tracking",
                      "75123456789013", "--queue-only")
    assert wrong.exit_code == 2  # the rules said Yunda, the waybill is ZTO's
    assert "does not look like a 韵达快递 Yunda Express waybill" in wrong.output
    done = await cli(config, "ship", f"tb:{far.order_id}", "--auto", "--tracking",
                     "4312345678901", "--queue-only")
    assert done.exit_code == 0, done.output
    assert await shipments(rt) == [(near.order_id, "ZTO", "next_day_region"),
                                   (far.order_id, "YUNDA", "remote_region")]

    both = await cli(config, "ship", f"tb:{near.order_id}", "--auto", "--carrier", "SF")
    assert both.exit_code == 2 and "either --carrier C or --auto" in both.output


async def test_a_bad_file_ships_nothing_and_skip_bad_ships_the_rest(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    rt, config, tb, jd = await setup(tmp_path, sqlite_url, clock, make_runtime, seed_pool)
    first = tb.place_order([("MUG", 1)], address=ZHEJIANG)
    second = jd.place_order([("TEE", 1)], address=ZHEJIANG)
    await pull(rt, clock)
    csv = tmp_path / "waybills.csv"
    csv.write_text("order,carrier,tracking,shop\n"
                   f"{first.order_id},ZTO,75123456789012,tb\n"
                   f"{second.order_id},ZTO,YT1234567890123,jd\n"
                   "UNKNOWN,ZTO,75123456789014,\n", encoding="utf-8")

    refused = await cli(config, "shipments", "import", str(csv), "--queue-only")
    assert refused.exit_code == 2
    assert "line 3: tracking number 'YT1234567890123' does not look like" in refused.output
    assert "line 4: unknown order 'UNKNOWN'" in refused.output
    assert "2 bad rows: nothing shipped" in refused.output
    assert await shipments(rt) == []

    dry = await cli(config, "shipments", "import", str(csv), "--skip-bad", "--dry-run")
    assert dry.exit_code == 2 and "1 rows ready" in dry.output
    assert await shipments(rt) == []

    partly = await cli(config, "shipments", "import", str(csv), "--skip-bad", "--queue-only")
    assert partly.exit_code == 1, partly.output
    assert "shipped 1 rows, skipped 2 bad rows" in partly.output
    assert await shipments(rt) == [(first.order_id, "ZTO", "import")]

    again = await cli(config, "shipments", "import", str(csv), "--queue-only")
    assert "line 2: order " + first.order_id + " is already shipped" in again.output


async def test_checks_and_alert_commands(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    rt, config, tb, _ = await setup(tmp_path, sqlite_url, clock, make_runtime, seed_pool)
    late = tb.place_order([("MUG", 1)], address=ZHEJIANG)
    await pull(rt, clock)

    checked = await cli(config, "shipments", "check")
    assert checked.exit_code == 0, checked.output
    assert "ship_overdue 1" in checked.output  # paid three days ago, not shipped
    listed = await cli(config, "alerts", "list")
    assert "ship_overdue" in listed.output and late.order_id in listed.output
    async with rt.sessions() as session:
        alert_id = await session.scalar(select(Alert.id).where(Alert.kind == "ship_overdue"))
    assert alert_id is not None

    acked = await cli(config, "alerts", "ack", str(alert_id))
    assert acked.exit_code == 0 and f"alert {alert_id} acknowledged" in acked.output
    assert "acked" in (await cli(config, "alerts", "list", "--kind", "ship_overdue")).output
    delivered = await cli(config, "alerts", "deliver")
    assert delivered.exit_code == 0 and "1 alerts delivered" in delivered.output

    resolved = await cli(config, "alerts", "resolve", str(alert_id))
    assert resolved.exit_code == 0, resolved.output
    assert "ship_overdue" not in (await cli(config, "alerts", "list")).output
    everything = await cli(config, "alerts", "list", "--all", "--kind", "ship_overdue")
    assert "resolved" in everything.output
    # closed by hand while still overdue: the check does not raise it again
    assert "ship_overdue 0" in (await cli(config, "shipments", "check")).output
    assert (await cli(config, "alerts", "resolve", str(alert_id))).exit_code == 1
    assert (await cli(config, "alerts", "ack", "999")).exit_code == 2
    # the resolution notice goes out once
    assert "1 alerts delivered" in (await cli(config, "alerts", "deliver")).output
    assert "0 alerts delivered" in (await cli(config, "alerts", "deliver")).output
