"""The daemon's job runner as an operator relies on it: a shop whose calls keep failing backs
off behind its circuit breaker with one `circuit_open` alert (and the other shops carry on),
each job's run record, the schedule built from the shops' intervals, token refresh ahead of
expiry, node-wide jobs on one node at a time, and a shutdown that finishes or gives back
what this node holds.

Jobs are coroutines the tests control (one that fails for shop "a", one that counts its
calls for shop "b"), run through `Daemon.run_job` as the scheduler would run them; the
scheduler itself is never started, and time moves only when the ManualClock is advanced."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.taobao.sandbox import TaobaoSandbox
from core import leases, outbox
from core.clock import ManualClock
from core.daemon import Breaker, Daemon, JobState
from core.db import transaction
from core.errors import Transient
from core.model import Alert, Lease, OutboxTask
from core.runtime import Runtime

OTHER_NODE = "node-b:4242"
NODE_WIDE_JOBS = {"outbox", "intake", "scheduled_listings", "tracking_poll",
                  "tracking_subscribe", "shipment_checks", "alert_delivery", "dormant",
                  "presale", "rebind", "metrics"}


class InlineTable:
    """A shop setting written into the config file as a TOML inline table."""

    def __init__(self, **values: str) -> None:
        self.values = values

    def __str__(self) -> str:
        return "{ " + ", ".join(f'{key} = "{value}"' for key, value in self.values.items()) + " }"


class ShopCalls:
    """A per-shop job: counts its calls and, while `down`, fails as a dead gateway does."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.down:
            raise Transient("gateway timed out")


@pytest.fixture
async def rt(db_url: str, clock: ManualClock, make_runtime: Any) -> Runtime:
    runtime: Runtime = await make_runtime(
        db_url, {"a": TaobaoSandbox(clock=clock), "b": TaobaoSandbox(clock=clock)})
    return runtime


@pytest.fixture
def daemon(rt: Runtime) -> Daemon:
    return Daemon(rt, serve_http=False)


async def circuit_alerts(rt: Runtime) -> list[Alert]:
    """Every `circuit_open` alert ever raised, open or resolved, oldest first."""
    async with rt.sessions() as session:
        return list((await session.scalars(
            select(Alert).where(Alert.kind == "circuit_open").order_by(Alert.id))).all())


async def tick(daemon: Daemon, a: ShopCalls, b: ShopCalls) -> None:
    """One scheduler round: both shops' order pulls are due."""
    await daemon.run_job("orders:a", a, "a")
    await daemon.run_job("orders:b", b, "b")


# -- circuit breaker ---------------------------------------------------------------------------

async def test_breaker_opens_after_threshold_failures_in_a_row_with_one_alert(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    daemon.breakers["a"] = Breaker(threshold=3, cooldown=timedelta(minutes=10))
    a, b = ShopCalls(down=True), ShopCalls()

    # two failures, a success, two failures: never three in a row, so no back-off
    for down in (True, True, False, True, True):
        a.down = down
        await tick(daemon, a, b)
        clock.advance(60)
    assert a.calls == 5
    assert await circuit_alerts(rt) == []

    await tick(daemon, a, b)  # the third failure in a row
    [alert] = await circuit_alerts(rt)
    assert (alert.subject, alert.open_key) == ("shop:a", "circuit_open:shop:a")
    assert alert.severity == "error"
    assert "gateway timed out" in alert.message
    assert alert.opened_at == clock.now()

    for _ in range(8):  # inside the cool-down: shop a is not called, shop b is
        clock.advance(60)
        await tick(daemon, a, b)
    assert a.calls == 6
    assert b.calls == 14
    assert [x.open_key for x in await circuit_alerts(rt)] == ["circuit_open:shop:a"]


async def test_open_breaker_probes_after_cooldown_and_backs_off_again_without_new_alert(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    cooldown = timedelta(minutes=10)
    daemon.breakers["a"] = Breaker(threshold=2, cooldown=cooldown)
    a, b = ShopCalls(down=True), ShopCalls()
    await tick(daemon, a, b)
    await tick(daemon, a, b)
    assert a.calls == 2  # open now

    for _ in range(3):  # three failed probes, each followed by a full cool-down
        clock.advance(cooldown - timedelta(seconds=1))
        await tick(daemon, a, b)
        probes_before = a.calls
        clock.advance(timedelta(seconds=1))
        await tick(daemon, a, b)  # the cool-down has passed: one probe
        assert a.calls == probes_before + 1
        await tick(daemon, a, b)  # the probe failed: backing off again at once
        assert a.calls == probes_before + 1

    assert a.calls == 2 + 3
    assert b.calls == 3 * 3 + 2
    [alert] = await circuit_alerts(rt)
    assert alert.open_key == "circuit_open:shop:a"


async def test_only_one_probe_at_a_time_while_the_shops_other_jobs_wait(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    """The scheduler runs a shop's jobs side by side: after the cool-down, the order pull
    probes a platform that may still hang; the shop's reconcile and token jobs firing
    meanwhile must not pile onto it as probes of their own."""
    cooldown = timedelta(minutes=5)
    daemon.breakers["a"] = Breaker(threshold=1, cooldown=cooldown)
    await daemon.run_job("orders:a", ShopCalls(down=True), "a")
    clock.advance(cooldown)

    probing, answer = asyncio.Event(), asyncio.Event()

    async def slow_probe() -> None:
        probing.set()
        await answer.wait()

    probe = asyncio.create_task(daemon.run_job("orders:a", slow_probe, "a"))
    await probing.wait()
    reconcile, token, other_shop = ShopCalls(), ShopCalls(), ShopCalls()
    await daemon.run_job("reconcile:a", reconcile, "a")
    await daemon.run_job("token:a", token, "a")
    await daemon.run_job("orders:b", other_shop, "b")
    assert (reconcile.calls, token.calls, other_shop.calls) == (0, 0, 1)

    answer.set()  # the probe succeeds: the breaker closes
    await probe
    await daemon.run_job("reconcile:a", reconcile, "a")
    assert reconcile.calls == 1
    [alert] = await circuit_alerts(rt)
    assert alert.open_key is None


async def test_the_token_job_neither_hides_failures_nor_closes_the_breaker(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    """The token job mostly finds nothing due and calls nobody: its "success" between two
    failed pulls must not reset the count, and after the cool-down it is not the probe —
    it would close the breaker while the platform is still down."""
    cooldown = timedelta(minutes=5)
    daemon.breakers["a"] = Breaker(threshold=2, cooldown=cooldown)
    pull, token = ShopCalls(down=True), ShopCalls()
    await daemon.run_job("orders:a", pull, "a")
    await daemon.run_job("token:a", token, "a")  # nothing due: a quiet success
    await daemon.run_job("orders:a", pull, "a")
    [alert] = await circuit_alerts(rt)  # two failed pulls in a row open it
    assert alert.open_key == "circuit_open:shop:a"

    clock.advance(cooldown)
    await daemon.run_job("token:a", token, "a")
    assert token.calls == 1  # skipped while open, even after the cool-down
    await daemon.run_job("orders:a", pull, "a")  # the pull probes, and fails
    assert pull.calls == 3
    [alert] = await circuit_alerts(rt)
    assert alert.open_key == "circuit_open:shop:a"


async def test_a_cancelled_probe_lets_the_next_run_probe(
        daemon: Daemon, clock: ManualClock) -> None:
    cooldown = timedelta(minutes=5)
    daemon.breakers["a"] = Breaker(threshold=1, cooldown=cooldown)
    await daemon.run_job("orders:a", ShopCalls(down=True), "a")
    clock.advance(cooldown)
    probing = asyncio.Event()

    async def hung_probe() -> None:
        probing.set()
        await asyncio.Event().wait()

    probe = asyncio.create_task(daemon.run_job("orders:a", hung_probe, "a"))
    await probing.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    reconcile = ShopCalls()
    await daemon.run_job("reconcile:a", reconcile, "a")
    assert reconcile.calls == 1


async def test_successful_probe_closes_breaker_and_resolves_alert(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    cooldown = timedelta(minutes=5)
    daemon.breakers["a"] = Breaker(threshold=2, cooldown=cooldown)
    a, b = ShopCalls(down=True), ShopCalls()
    await tick(daemon, a, b)
    await tick(daemon, a, b)

    clock.advance(cooldown)
    a.down = False  # the platform is back
    await tick(daemon, a, b)
    [alert] = await circuit_alerts(rt)
    assert alert.open_key is None
    assert alert.resolved_at == clock.now()

    for _ in range(3):  # closed: every run goes ahead
        await tick(daemon, a, b)
    assert a.calls == 2 + 1 + 3

    a.down = True  # down again later: a new back-off, a new alert
    clock.advance(timedelta(hours=1))
    await tick(daemon, a, b)
    await tick(daemon, a, b)
    first, second = await circuit_alerts(rt)
    assert first.open_key is None
    assert second.open_key == "circuit_open:shop:a"
    assert second.opened_at == clock.now()


async def test_one_failing_shop_never_stops_the_others(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    a, b = ShopCalls(down=True), ShopCalls()
    node_wide = ShopCalls(down=True)
    for _ in range(60):  # an hour of shop a down, with default breakers
        await tick(daemon, a, b)
        await daemon.run_job("shipment_checks", node_wide, None)
        clock.advance(60)

    assert b.calls == 60
    assert a.calls == 5 + 11  # by default five failures open it, then a probe every 5 min
    # a node-wide job has no shop to back off: it keeps running, and alerts no circuit
    assert node_wide.calls == 60
    assert [x.subject for x in await circuit_alerts(rt)] == ["shop:a"]


# -- job bookkeeping ---------------------------------------------------------------------------

async def test_job_state_records_runs_failures_last_success_and_last_error(
        daemon: Daemon, clock: ManualClock) -> None:
    job = ShopCalls()
    await daemon.run_job("orders:a", job, "a")
    started = clock.now()
    assert daemon.jobs["orders:a"] == JobState(runs=1, failures=0, last_success=started,
                                               last_error="")

    clock.advance(60)
    job.down = True
    await daemon.run_job("orders:a", job, "a")
    assert daemon.jobs["orders:a"] == JobState(runs=2, failures=1, last_success=started,
                                               last_error="Transient: gateway timed out")

    clock.advance(60)
    job.down = False
    await daemon.run_job("orders:a", job, "a")
    # the last error stays on record after a success; last_success says it has cleared
    assert daemon.jobs["orders:a"] == JobState(runs=3, failures=1, last_success=clock.now(),
                                               last_error="Transient: gateway timed out")
    assert "orders:b" not in daemon.jobs


async def test_runs_skipped_by_an_open_breaker_are_not_counted(
        daemon: Daemon, clock: ManualClock) -> None:
    daemon.breakers["a"] = Breaker(threshold=1, cooldown=timedelta(minutes=5))
    pull, reconcile = ShopCalls(down=True), ShopCalls()
    await daemon.run_job("orders:a", pull, "a")

    clock.advance(60)
    await daemon.run_job("orders:a", pull, "a")
    await daemon.run_job("reconcile:a", reconcile, "a")  # same shop, same breaker
    assert (pull.calls, reconcile.calls) == (1, 0)
    assert daemon.jobs["orders:a"].runs == 1
    assert daemon.jobs["reconcile:a"].runs == 0


# -- schedule ----------------------------------------------------------------------------------

@pytest.fixture
async def three_shops(sqlite_url: str, clock: ManualClock, make_runtime: Any) -> Runtime:
    runtime: Runtime = await make_runtime(
        sqlite_url, {name: TaobaoSandbox(clock=clock) for name in ("a", "b", "c")},
        shops={"a": {"intervals": InlineTable(orders="2m", reconcile="6h", token_refresh="3h",
                                              outbox="2s")},
               "c": {"enabled": False}})
    return runtime


async def test_plan_gives_every_enabled_shop_its_jobs_at_its_intervals(
        three_shops: Runtime) -> None:
    plan = Daemon(three_shops, serve_http=False).plan()
    per_shop = {name: (interval, shop) for name, interval, _, shop in plan if shop is not None}

    assert per_shop == {
        "orders:a": (timedelta(minutes=2), "a"),
        "reconcile:a": (timedelta(hours=6), "a"),
        "token:a": (timedelta(hours=3), "a"),
        "orders:b": (timedelta(seconds=60), "b"),
        "reconcile:b": (timedelta(days=1), "b"),
        "token:b": (timedelta(hours=1), "b"),
    }


async def test_plan_has_each_node_wide_job_once(three_shops: Runtime) -> None:
    plan = Daemon(three_shops, serve_http=False).plan()
    node_wide = Counter(name for name, _, _, shop in plan if shop is None)

    assert node_wide == Counter(NODE_WIDE_JOBS)
    # the outbox drains at the pace of the shop that asks for the fastest
    assert {name: interval for name, interval, _, _ in plan}["outbox"] == timedelta(seconds=2)


async def test_each_shops_planned_pull_talks_to_that_shop(
        three_shops: Runtime, clock: ManualClock) -> None:
    clock.advance(timedelta(hours=1))
    jobs = {name: job for name, _, job, _ in Daemon(three_shops, serve_http=False).plan()}
    sandboxes = {name: binding.sandbox for name, binding in three_shops.sandboxes.items()}

    await jobs["orders:a"]()

    assert sandboxes["a"].requests
    assert not sandboxes["b"].requests
    assert not sandboxes["c"].requests


# -- token refresh -----------------------------------------------------------------------------

async def test_token_is_refreshed_only_within_two_refresh_intervals_of_expiry(
        sqlite_url: str, clock: ManualClock, make_runtime: Any) -> None:
    sandbox = TaobaoSandbox(clock=clock)
    rt: Runtime = await make_runtime(
        sqlite_url, {"a": sandbox}, shops={"a": {"intervals": InlineTable(token_refresh="3h")}})
    daemon = Daemon(rt, serve_http=False)
    tokens = rt.connector("a").shop.tokens
    assert tokens.current().expires_at is None
    assert await daemon.refresh_token_if_due("a") is False  # no expiry: nothing to do

    issued = await tokens.refresh(tokens.current())  # taobao issues tokens for 24 hours
    assert issued.expires_at == clock.now() + timedelta(hours=24)
    refreshes = len(sandbox.calls("taobao.top.auth.token.refresh"))

    clock.advance(timedelta(hours=17, minutes=59))  # 6 h 1 min left: not yet
    assert await daemon.refresh_token_if_due("a") is False
    assert len(sandbox.calls("taobao.top.auth.token.refresh")) == refreshes
    assert tokens.current() == issued

    clock.advance(timedelta(minutes=2))  # 5 h 59 min left: within two 3-hour intervals
    assert await daemon.refresh_token_if_due("a") is True
    fresh = tokens.current()
    assert len(sandbox.calls("taobao.top.auth.token.refresh")) == refreshes + 1
    assert fresh.access_token != issued.access_token
    assert sandbox.token_valid(fresh.access_token)
    assert not sandbox.token_valid(issued.access_token)
    assert fresh.expires_at == clock.now() + timedelta(hours=24)

    assert await daemon.refresh_token_if_due("a") is False  # the new token is not due


# -- node-wide jobs and leases -----------------------------------------------------------------

async def test_node_wide_job_waits_while_another_node_holds_its_lease(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    ran: list[str] = []

    async def poll(runtime: Runtime) -> str:
        ran.append(runtime.node)
        return "polled"

    async with transaction(rt.sessions) as session:
        assert await leases.acquire(session, "job:tracking_poll", OTHER_NODE, clock.now(),
                                    rt.config.daemon.lease)

    assert await daemon._leased("tracking_poll", poll) is None
    clock.advance(rt.config.daemon.lease)
    assert await daemon._leased("tracking_poll", poll) is None  # expires at, not before
    assert ran == []

    clock.advance(timedelta(seconds=1))  # the other node died: its lease has run out
    assert await daemon._leased("tracking_poll", poll) == "polled"
    assert ran == [rt.node]


async def test_node_wide_job_holds_its_lease_while_it_runs_and_then_gives_it_back(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    other_node_could_start: list[bool] = []

    async def check(runtime: Runtime) -> None:
        async with transaction(runtime.sessions) as session:
            other_node_could_start.append(await leases.acquire(
                session, "job:shipment_checks", OTHER_NODE, clock.now(),
                runtime.config.daemon.lease))

    async def failing_check(runtime: Runtime) -> None:
        raise Transient("tracking provider down")

    await daemon._leased("shipment_checks", check)
    assert other_node_could_start == [False]
    with pytest.raises(Transient):
        await daemon._leased("shipment_checks", failing_check)

    async with transaction(rt.sessions) as session:  # given back, even after a failure
        assert await leases.acquire(session, "job:shipment_checks", OTHER_NODE, clock.now(),
                                    rt.config.daemon.lease)


async def test_a_long_node_wide_job_keeps_its_lease_and_stops_once_it_is_taken_over(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    """A tracking poll that runs longer than the lease renews it (another node cannot start
    the same poll meanwhile); if another node takes the lease over anyway (this one stalled),
    the job is stopped rather than run on two nodes."""
    lease = timedelta(seconds=0.3)  # renewed every 0.1 s of real time while the job runs
    rt.config = replace(rt.config, daemon=replace(rt.config.daemon, lease=lease))
    running, finish = asyncio.Event(), asyncio.Event()

    async def long_poll(runtime: Runtime) -> None:
        running.set()
        await finish.wait()

    job = asyncio.create_task(daemon._leased("tracking_poll", long_poll))
    await running.wait()
    clock.advance(timedelta(minutes=5))  # far past the lease it took at the start

    async def expiry() -> Any:
        async with rt.sessions() as session:
            return await session.scalar(select(Lease.expires_at).where(
                Lease.name == "job:tracking_poll"))

    for _ in range(50):  # the keeper renews on its own: wait for it (real time)
        if await expiry() > clock.now():
            break
        await asyncio.sleep(0.05)
    async with transaction(rt.sessions) as session:
        assert not await leases.acquire(session, "job:tracking_poll", OTHER_NODE, clock.now(),
                                        lease)

    async with transaction(rt.sessions) as session:  # this node stalls; the other takes over
        await session.execute(update(Lease).where(Lease.name == "job:tracking_poll")
                              .values(owner=OTHER_NODE))
    with pytest.raises(leases.LeaseLost):
        await asyncio.wait_for(job, timeout=5)
    assert not finish.is_set()  # stopped, not finished


# -- shutdown ----------------------------------------------------------------------------------

async def claim_stock_pushes(rt: Runtime, owners: list[str]) -> dict[str, outbox.Claimed]:
    """One stock push per owner, claimed ("sending") by that owner."""
    now = rt.now()
    async with transaction(rt.sessions) as session:
        for listing_id, _ in enumerate(owners, start=1):
            await outbox.enqueue(
                session, kind="stock", shop_id=rt.shop_ids["a"], target=str(listing_id),
                dedup_key=f"listing:{listing_id}", version=1, now=now,
                payload={"listing_id": listing_id, "sku_id": listing_id, "quantity": 5,
                         "decrease": False})
    claimed: dict[str, outbox.Claimed] = {}
    for owner in owners:
        async with transaction(rt.sessions) as session:
            [claimed[owner]] = await outbox.claim(session, owner=owner, now=now, limit=1,
                                                  lease=rt.config.daemon.lease)
    return claimed


async def outbox_rows(rt: Runtime) -> dict[int, tuple[str, str]]:
    async with rt.sessions() as session:
        return {task.id: (task.state, task.lease_owner)
                for task in (await session.scalars(select(OutboxTask))).all()}


async def lease_owners(rt: Runtime) -> dict[str, str]:
    async with rt.sessions() as session:
        return {lease.name: lease.owner for lease in (await session.scalars(select(Lease))).all()}


async def test_stop_gives_back_this_nodes_claims_and_leases_only(
        daemon: Daemon, rt: Runtime, clock: ManualClock) -> None:
    claimed = await claim_stock_pushes(rt, [rt.node, OTHER_NODE])
    async with transaction(rt.sessions) as session:
        for name, owner in (("job:tracking_poll", rt.node), ("pull:a:orders", rt.node),
                            ("job:dormant", OTHER_NODE)):
            await leases.acquire(session, name, owner, clock.now(), rt.config.daemon.lease)

    await daemon.stop()

    assert await outbox_rows(rt) == {claimed[rt.node].id: ("pending", ""),
                                     claimed[OTHER_NODE].id: ("sending", OTHER_NODE)}
    assert await lease_owners(rt) == {"job:dormant": OTHER_NODE}
    job = ShopCalls()
    await daemon.run_job("orders:a", job, "a")  # stopped: no new work
    assert job.calls == 0


async def test_stop_waits_for_a_job_in_flight_to_finish(
        daemon: Daemon, rt: Runtime) -> None:
    [push] = (await claim_stock_pushes(rt, [rt.node])).values()
    sending, may_finish = asyncio.Event(), asyncio.Event()
    completed: list[bool] = []

    async def send_stock() -> None:
        sending.set()
        await may_finish.wait()  # the platform answers
        async with transaction(rt.sessions) as session:
            completed.append(await outbox.complete(session, push, owner=rt.node,
                                                   now=rt.now()))

    running = asyncio.create_task(daemon.run_job("outbox", send_stock, None))
    await sending.wait()
    stopping = asyncio.create_task(daemon.stop())
    # a stop that did not wait would give the claim back while the push is being sent
    done, _ = await asyncio.wait({stopping}, timeout=0.2)
    assert not done

    may_finish.set()
    await asyncio.wait_for(stopping, timeout=10)
    assert running.done() and not running.cancelled()
    assert completed == [True]  # the push still owned its claim, and finished
    assert await outbox_rows(rt) == {push.id: ("done", "")}
    assert daemon.jobs["outbox"].last_success is not None


async def test_stop_cancels_a_job_that_outlives_the_grace_and_gives_back_its_claim(
        daemon: Daemon, rt: Runtime) -> None:
    rt.config = replace(rt.config, daemon=replace(
        rt.config.daemon, shutdown_grace=timedelta(seconds=0.1)))
    [push] = (await claim_stock_pushes(rt, [rt.node])).values()
    sending = asyncio.Event()

    async def hung_send() -> None:
        sending.set()
        await asyncio.Event().wait()  # a platform that never answers

    running = asyncio.create_task(daemon.run_job("outbox", hung_send, None))
    await sending.wait()

    await asyncio.wait_for(daemon.stop(), timeout=10)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, timeout=10)
    assert await outbox_rows(rt) == {push.id: ("pending", "")}
