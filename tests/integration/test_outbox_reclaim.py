"""A node dies between sending and recording: the task it held is reclaimed after its lease
expires, and the platform is asked first whether the dead node's call landed — a version
that landed is not sent again, one that did not is sent once. A node that lost a lease never
makes another call for it: an outbox task taken over is not sent by both, and a pull whose
lease was taken over stops before its next page."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connectors.taobao.sandbox import TaobaoSandbox
from core import outbox
from core.clock import ManualClock
from core.db import transaction
from core.http import WORK_HEADER
from core.leases import LeaseLost
from core.model import Listing, OutboxTask, Shipment
from core.pull import pull_orders
from core.records import ShipRequest, StockUpdate
from core.runtime import Runtime
from core.senders import OutboxWorker

STOCK_API = "taobao.skus.quantity.update"
SHIP_API = "taobao.logistics.offline.send"
LISTING_READ = "taobao.items.onsale.get"


async def lamp_shop(db_url: str, clock: ManualClock, make_runtime: Any,
                    seed_pool: Any) -> tuple[Runtime, TaobaoSandbox]:
    sandbox = TaobaoSandbox(clock=clock)
    sandbox.add_item("台灯", "LAMP-01", 19900, skus=[("LAMP", 9, 19900)])
    rt = await make_runtime(db_url, {"a": sandbox})
    await seed_pool(rt, {"LAMP": 5})  # the pool says 5; the platform shows 9 until pushed
    return rt, sandbox


async def dead_node_claims(rt: Runtime, kind: str) -> outbox.Claimed:
    async with transaction(rt.sessions) as session:
        claimed = await outbox.claim(session, owner="dead-node", now=rt.now(),
                                     lease=rt.config.daemon.lease, kinds=[kind])
    assert len(claimed) == 1
    return claimed[0]


async def stock_update(rt: Runtime, task: outbox.Claimed) -> StockUpdate:
    async with rt.sessions() as session:
        listing = await session.get(Listing, int(task.payload["listing_id"]))
    assert listing is not None
    return StockUpdate(listing.platform_item_id, listing.platform_sku_id,
                       int(task.payload["quantity"]))


async def test_a_reclaimed_stock_version_that_landed_is_not_sent_again(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await lamp_shop(db_url, clock, make_runtime, seed_pool)
    task = await dead_node_claims(rt, "stock")
    # the dead node's call reached the platform; its answer never got home
    await rt.connector("a").set_stock([await stock_update(rt, task)])
    sandbox.requests.clear()

    stats = await OutboxWorker(rt).drain()
    assert stats.claimed == 0  # the dead node's lease still holds: nobody touches the task
    clock.advance(rt.config.daemon.lease + timedelta(seconds=1))
    stats = await OutboxWorker(rt).drain()

    assert (stats.confirmed, stats.sent, sandbox.calls(STOCK_API)) == (1, 0, [])
    assert sandbox.stock_of("LAMP") == 5
    reads = sandbox.calls(LISTING_READ)
    assert reads and all(r.headers[WORK_HEADER.lower()].startswith("test-node check outbox#")
                         for r in reads)
    async with rt.sessions() as session:
        row = await session.get(OutboxTask, task.id)
        listing = await session.get(Listing, int(task.payload["listing_id"]))
    assert row is not None and row.state == "done" and row.sent_version == task.version
    assert listing is not None and listing.last_pushed_quantity == 5


@pytest.mark.parametrize("sold_since", [False, True], ids=["never-landed", "landed-then-sold"])
async def test_a_reclaimed_stock_version_the_platform_does_not_show_waits_for_the_pull(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any,
        sold_since: bool) -> None:
    """The platform shows another quantity: the dead node's call never landed (send it), or
    it landed and a buyer has bought since (sending it again would undo that sale). Which
    one is only known once the orders up to now are pulled."""
    rt, sandbox = await lamp_shop(db_url, clock, make_runtime, seed_pool)
    task = await dead_node_claims(rt, "stock")
    if sold_since:
        await rt.connector("a").set_stock([await stock_update(rt, task)])  # platform: 5
        sandbox.place_order([("LAMP", 1)])  # platform: 4, not pulled yet
    sandbox.requests.clear()
    clock.advance(rt.config.daemon.lease + timedelta(seconds=1))

    stats = await OutboxWorker(rt).drain()
    assert (stats.confirmed, stats.sent, sandbox.calls(STOCK_API)) == (0, 0, [])
    clock.advance(timedelta(minutes=2))
    await pull_orders(rt, "a")
    clock.advance(timedelta(minutes=1))
    stats = await OutboxWorker(rt).drain()

    sets = sandbox.calls(STOCK_API)
    assert stats.sent == 1 and len(sets) == 1
    version = task.version + 1 if sold_since else task.version  # the sale queued a newer one
    assert re.fullmatch(rf"test-node outbox#\d+ {task.id}@{version}",
                        sets[0].headers[WORK_HEADER.lower()])
    assert sandbox.stock_of("LAMP") == (4 if sold_since else 5)


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "lost"])
async def test_reclaimed_tracking_push_is_sent_at_most_once(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any,
        sell_and_ship: Any, landed: bool) -> None:
    rt, sandbox = await lamp_shop(db_url, clock, make_runtime, seed_pool)
    await OutboxWorker(rt).drain()
    order_id = await sell_and_ship(rt, "a", sandbox, "LAMP", "75123456789013")
    await dead_node_claims(rt, "ship")
    if landed:
        await rt.connector("a").ship(ShipRequest(order_id, "ZTO", "75123456789013"))
    sandbox.requests.clear()

    clock.advance(rt.config.daemon.lease + timedelta(seconds=1))
    stats = await OutboxWorker(rt).drain(kinds=["ship"])

    assert [s.tracking_number for s in sandbox.shipments_of(order_id)] == [
        "75123456789013"]
    assert len(sandbox.calls(SHIP_API)) == (0 if landed else 1)
    assert (stats.confirmed, stats.sent) == ((1, 0) if landed else (0, 1))
    async with rt.sessions() as session:
        assert await session.scalar(select(Shipment.push_state)) == "pushed"


async def test_a_task_taken_over_is_no_longer_ours_to_send(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, _sandbox = await lamp_shop(db_url, clock, make_runtime, seed_pool)
    lease = rt.config.daemon.lease
    async with transaction(rt.sessions) as session:
        mine = await outbox.claim(session, owner="slow-node", now=rt.now(), lease=lease)
    clock.advance(lease + timedelta(seconds=1))  # slow-node stalled past its lease
    async with transaction(rt.sessions) as session:
        theirs = await outbox.claim(session, owner="other-node", now=rt.now(), lease=lease)
        assert [t.id for t in theirs] == [t.id for t in mine]
        assert all(t.reclaimed for t in theirs)
        # right before its call, slow-node renews: nothing is left for it to send
        assert await outbox.renew(session, mine, owner="slow-node", now=rt.now(),
                                  lease=lease) == set()
        assert await outbox.renew(session, theirs, owner="other-node", now=rt.now(),
                                  lease=lease) == {t.id for t in theirs}


def _sqlite_path(url: str) -> str:
    return url.split("///", 1)[1]


@pytest.mark.parametrize("stolen", [False, True], ids=["slow", "taken-over"])
async def test_a_pull_keeps_its_lease_through_slow_pages_and_stops_once_it_is_lost(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any,
        stolen: bool) -> None:
    rt, sandbox = await lamp_shop(sqlite_url, clock, make_runtime, seed_pool)
    for _ in range(4):
        sandbox.place_order([("LAMP", 1)])
    clock.advance(timedelta(minutes=5))
    sandbox.requests.clear()
    lease = rt.config.daemon.lease
    calls_at_theft: list[int] = []
    held_during_call: list[bool] = []

    def slow_platform(platform: str, api: str, seconds: float, error: str | None) -> None:
        with sqlite3.connect(_sqlite_path(sqlite_url)) as db:
            (expires,) = db.execute(
                "SELECT expires_at FROM leases WHERE name = 'pull:a:orders'").fetchone()
        held_during_call.append(datetime.fromisoformat(expires).replace(tzinfo=UTC)
                                > clock.now())
        clock.advance(lease * 0.6)  # every call takes most of the lease
        if stolen and len(sandbox.requests) == 2 and not calls_at_theft:
            clock.advance(lease)  # this node stalls; another takes the lease over
            with sqlite3.connect(_sqlite_path(sqlite_url)) as db:
                db.execute("UPDATE leases SET owner = 'other-node' WHERE name = 'pull:a:orders'")
            calls_at_theft.append(len(sandbox.requests))

    rt.http.observers.append(slow_platform)
    if stolen:
        with pytest.raises(LeaseLost):
            await pull_orders(rt, "a", since=clock.now() - timedelta(hours=1))
        assert len(sandbox.requests) == calls_at_theft[0]  # not one call after the loss
    else:
        stats = await pull_orders(rt, "a", since=clock.now() - timedelta(hours=1))
        assert stats.new == 4
        # five calls, three leases long: renewed in time, so no other node could have
        # taken the shop over while any of them was made
        assert len(held_during_call) >= 5 and all(held_during_call)
        assert all(r.request.headers[WORK_HEADER.lower()].startswith("test-node pull a ")
                   for r in sandbox.requests)


async def test_a_sender_that_stalled_past_its_lease_does_not_send_what_was_taken_over(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any,
        sell_and_ship: Any) -> None:
    """Two waybills in one claim; the first call stalls past the lease and another node
    claims what this one held. The second waybill is the other node's to send now."""
    rt, sandbox = await lamp_shop(sqlite_url, clock, make_runtime, seed_pool)
    await OutboxWorker(rt).drain()
    for waybill in ("75123456789013", "75123456789014"):
        await sell_and_ship(rt, "a", sandbox, "LAMP", waybill)
    sandbox.requests.clear()

    def stall(platform: str, api: str, seconds: float, error: str | None) -> None:
        if api == SHIP_API and len(sandbox.calls(SHIP_API)) == 1:
            lease = rt.config.daemon.lease
            clock.advance(lease + timedelta(seconds=1))
            expires = (clock.now() + lease).astimezone(UTC).replace(tzinfo=None)
            with sqlite3.connect(_sqlite_path(sqlite_url)) as db:  # the other node's claim
                db.execute("UPDATE outbox SET lease_owner = 'other-node', lease_expires_at = ? "
                           "WHERE kind = 'ship' AND state = 'sending'",
                           (expires.isoformat(" "),))

    rt.http.observers.append(stall)
    await OutboxWorker(rt).drain(kinds=["ship"])
    assert len(sandbox.calls(SHIP_API)) == 1
