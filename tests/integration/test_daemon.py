"""The daemon as users run it: real processes, a sandbox server, SQLite or PostgreSQL.

- SIGTERM during a busy cycle exits 0 within the bound, and a restart loses nothing;
- a second daemon on the same SQLite file is refused with a clear message;
- killed with SIGKILL at random moments (20 times) while orders keep arriving and the
  warehouse ships, the daemon still ends with every order once, stock identical to a
  crash-free run, every shop showing what it should, every tracking number on its order
  once, and no outbox version sent twice (the sandboxes log which send each call was for);
- three daemons on one PostgreSQL share the work: no version sent twice, no shop's orders
  read by two nodes at once, and a killed node's work finished by the others."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from daemon_harness import (  # type: ignore[import-not-found]
    SHOPS,
    concurrent_pulls,
    free_port,
    place,
    sandbox_calls,
    sandbox_state,
    seed_database,
    sent_twice,
    ship_some,
    start_daemon,
    start_sandboxes,
    stop,
    wait_for,
    wait_ready,
    write_config,
)
from sqlalchemy import func, select

from core.config import load
from core.db import create_engine, session_factory
from core.demo import OPENING_STOCK
from core.model import Order, OrderLine, Reservation, Shipment, StockLevel

pytestmark = pytest.mark.slow
CODES = ("TEE-001-M", "MUG-002", "SOCK-004-BLK", "SOCK-004-WHT")


async def book(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    async with sessions() as session:
        counts = {
            "orders": await session.scalar(select(func.count()).select_from(Order)),
            "lines": await session.scalar(select(func.count()).select_from(OrderLine)),
            "reservations": await session.scalar(select(func.count()).select_from(Reservation)),
            "distinct_reserved_lines": await session.scalar(
                select(func.count(func.distinct(Reservation.order_line_id)))),
            "unpushed_shipments": await session.scalar(
                select(func.count()).select_from(Shipment).where(Shipment.push_state != "pushed")),
        }
        levels = (await session.execute(select(StockLevel.sku_id, StockLevel.on_hand,
                                               StockLevel.reserved))).all()
    await engine.dispose()
    counts["reserved_units"] = sum(r for _, _, r in levels)
    counts["on_hand"] = sum(o for _, o, _ in levels)
    return counts


async def per_sku(db_url: str) -> dict[str, tuple[int, int]]:
    from core.model import Sku

    engine = create_engine(db_url)
    async with session_factory(engine)() as session:
        ordered = dict((await session.execute(
            select(OrderLine.merchant_code, func.sum(OrderLine.quantity))
            .group_by(OrderLine.merchant_code))).all())
        reserved = dict((await session.execute(
            select(Sku.merchant_code, func.sum(StockLevel.reserved))
            .join(StockLevel, StockLevel.sku_id == Sku.id).group_by(Sku.merchant_code))).all())
    await engine.dispose()
    return {code: (int(ordered[code]), int(reserved.get(code, 0))) for code in ordered}


@pytest.fixture
def setup(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    sandbox_port, http_port = free_port(), free_port()
    config = write_config(tmp_path, db_url, sandbox_port, http_port)
    sandboxes = start_sandboxes(config, sandbox_port)
    seed_database(config)
    yield config, sandbox_port, http_port, db_url
    stop(sandboxes, signal.SIGKILL)


def converged(db_url: str, sandbox_port: int, placed: int) -> bool:
    counts = asyncio.run(book(db_url))
    if counts["orders"] < placed or counts["unpushed_shipments"]:
        return False
    # every shop shows the pool's available quantity for each SKU (sync ratio 1)
    state = sandbox_state(sandbox_port)
    available = _available(db_url)
    return all(state[shop]["stock"].get(code) == available[code]
               for shop in SHOPS for code in CODES)


def _available(db_url: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        from core.model import Sku

        engine = create_engine(db_url)
        async with session_factory(engine)() as session:
            rows = (await session.execute(
                select(Sku.merchant_code, StockLevel.on_hand - StockLevel.reserved)
                .join(StockLevel, StockLevel.sku_id == Sku.id))).all()
        await engine.dispose()
        return {code: max(0, int(q)) for code, q in rows}
    return asyncio.run(go())


def test_sigterm_during_busy_cycle_exits_zero_and_loses_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    config, sandbox_port, http_port, db_url = setup
    rng = random.Random(1)
    placed = place(sandbox_port, rng, 30)
    daemon = start_daemon(config)
    wait_ready(http_port, daemon)
    placed += place(sandbox_port, rng, 30)  # busy: orders arriving while it works
    started = time.monotonic()
    code = stop(daemon, signal.SIGTERM)
    took = time.monotonic() - started
    grace = load(config, check_env=False).daemon.shutdown_grace.total_seconds()
    assert code == 0
    assert took <= grace + 5, took
    restarted = start_daemon(config)
    wait_ready(http_port, restarted)
    wait_for(lambda: converged(db_url, sandbox_port, len(placed)), "convergence", 90)
    assert stop(restarted) == 0
    counts = asyncio.run(book(db_url))
    assert counts["orders"] == len(placed)
    assert counts["reservations"] == counts["distinct_reserved_lines"] == counts["lines"]


def test_second_daemon_on_one_sqlite_file_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    sandbox_port, http_port = free_port(), free_port()
    config = write_config(tmp_path, sqlite_url, sandbox_port, http_port)
    sandboxes = start_sandboxes(config, sandbox_port)
    seed_database(config)
    try:
        first = start_daemon(config)
        wait_ready(http_port, first)
        other = write_config(tmp_path, sqlite_url, sandbox_port, free_port(), node="two")
        second = start_daemon(other)
        assert second.wait(timeout=60) == 2
        output = second.stdout.read() if second.stdout else ""
        assert "already runs on" in output and "PostgreSQL" in output
        assert stop(first) == 0
    finally:
        stop(sandboxes, signal.SIGKILL)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_random_sigkills_lose_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    config, sandbox_port, http_port, db_url = setup
    rng = random.Random(7)
    placed: list[tuple[str, str]] = []
    shipped: list[tuple[str, str, str]] = []
    for _ in range(20):
        daemon = start_daemon(config)
        placed += place(sandbox_port, rng, 4)
        wait_ready(http_port, daemon)
        placed += place(sandbox_port, rng, 4)
        shipped += ship_some(config, rng.randint(0, 2), first_waybill=len(shipped) + 1)
        time.sleep(rng.uniform(0.0, 1.5))  # kill at a random moment of its work
        stop(daemon, signal.SIGKILL)
    final = start_daemon(config)
    wait_ready(http_port, final)
    wait_for(lambda: converged(db_url, sandbox_port, len(placed)), "convergence", 120)
    assert stop(final) == 0
    counts = asyncio.run(book(db_url))
    assert counts["orders"] == len(placed)  # none lost, none twice
    assert counts["reservations"] == counts["distinct_reserved_lines"]  # none reserved twice
    state = sandbox_state(sandbox_port)
    shipped_units = Counter(state[shop]["orders"][order]["lines"][0][0]
                            for shop, order, _ in shipped)
    assert counts["on_hand"] == sum(OPENING_STOCK.values()) - len(shipped)  # one unit each
    # a crash-free run reserves min(ordered, on hand) of each SKU (every line is one unit)
    # and ships from what was reserved
    for code, (ordered, reserved) in asyncio.run(per_sku(db_url)).items():
        assert reserved + shipped_units[code] == min(ordered, OPENING_STOCK[code]), code
    # every tracking number reached its order, once
    assert len(shipped) >= 10
    for shop, order, waybill in shipped:
        assert [w for _, w in state[shop]["orders"][order]["shipments"]] == [waybill]
    # and no stock (or tracking) version went out in two sends
    calls = sandbox_calls(sandbox_port)
    sends = {tuple(c["work"].split(" ")[:2]) for shop_calls in calls.values()
             for c in shop_calls if c["work"].split(" ")[1:2] != ["check"]
             and " outbox#" in c["work"]}
    assert len(sends) >= 20
    assert sent_twice(calls) == {}


@pytest.mark.pg
def test_three_daemons_share_one_postgresql(tmp_path: Path, pg_url: str) -> None:
    """Three nodes on one database: every order once, one reservation per line, no version
    sent twice, no shop read by two nodes at once; after one node is killed the other two
    take its leases over and finish the work."""
    sandbox_port = free_port()
    ports = [free_port() for _ in range(3)]
    configs = [write_config(tmp_path, pg_url, sandbox_port, port, node=f"node{i}")
               for i, port in enumerate(ports)]
    sandboxes = start_sandboxes(configs[0], sandbox_port)
    seed_database(configs[0])
    rng = random.Random(3)
    daemons = []
    try:
        placed = place(sandbox_port, rng, 30)
        daemons = [start_daemon(config) for config in configs]
        for daemon, port in zip(daemons, ports, strict=True):
            wait_ready(port, daemon)
        placed += place(sandbox_port, rng, 30)
        time.sleep(1.0)
        shipped = ship_some(configs[0], 10, first_waybill=1)
        time.sleep(0.5)  # let node0 hold claims and leases when it dies
        stop(daemons[0], signal.SIGKILL)
        placed += place(sandbox_port, rng, 20)
        shipped += ship_some(configs[1], 10, first_waybill=len(shipped) + 1)
        wait_for(lambda: converged(pg_url, sandbox_port, len(placed)), "convergence", 120)
        for daemon in daemons[1:]:
            assert stop(daemon) == 0
        state = sandbox_state(sandbox_port)
        calls = sandbox_calls(sandbox_port)
    finally:
        for daemon in daemons:
            stop(daemon, signal.SIGKILL)
        stop(sandboxes, signal.SIGKILL)
    counts = asyncio.run(book(pg_url))
    assert counts["orders"] == len(placed)
    assert counts["reservations"] == counts["distinct_reserved_lines"]
    assert len(shipped) >= 10
    for shop, order, waybill in shipped:
        assert [w for _, w in state[shop]["orders"][order]["shipments"]] == [waybill]
    working = {c["work"].split(" ")[0] for shop_calls in calls.values() for c in shop_calls}
    assert {"node1", "node2"} <= working  # the work was shared, not done by one node
    assert sent_twice(calls) == {}
    assert concurrent_pulls(calls) == []
