"""The daemon: every job of every shop on a schedule, an HTTP listener, and a clean exit.

Scheduling. APScheduler's AsyncIOScheduler runs each job at its interval with jitter; a job
never overlaps itself (max one instance) and missed runs coalesce into one. Per-shop jobs
(order pull, listing reconciliation, token refresh) run per shop, so one failing shop never
stops the others; a shop whose jobs keep failing trips a circuit breaker (runs are skipped
while it backs off, one `circuit_open` alert, one probe at a time after the cool-down by a
job that always calls the platform, closed by its first success).

Several daemons, one PostgreSQL. Nothing here coordinates nodes: the database does. Outbox
tasks are claimed with FOR UPDATE SKIP LOCKED and leased; each (shop, stream) pull takes a
lease; scheduled listings are claimed by a conditional UPDATE; node-wide jobs (tracking poll,
shipment checks, alert delivery, dormant check) take a named lease per run, renewed while
they run. A node that dies leaves leases that expire, and the others pick its work up.
SQLite stays single-daemon: a lock file beside the database refuses a second copy with a
clear message.

Shutdown. The first SIGTERM/SIGINT stops taking new work (the scheduler pauses), waits for
the jobs in flight up to `daemon.shutdown_grace`, gives back its outbox claims and leases,
and exits 0. A second signal exits at once: everything the daemon does is committed per page
or per task, claims and leases expire, so nothing is lost — only redone by the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core import leases, outbox
from core.alerts import open_alert, resolve_alert
from core.db import sqlite_path, transaction
from core.logs import get_logger
from core.metrics import Metrics
from core.runtime import Runtime
from core.serving import serve_asgi

log = get_logger("erpsync.daemon")
# per-shop jobs whose every run calls the platform: they probe an open breaker and close it
PROBING_JOBS = frozenset({"orders", "reconcile"})
Job = Callable[[], Awaitable[Any]]


class SecondCopy(RuntimeError):
    pass


@dataclass(slots=True)
class Breaker:
    """Per shop: open after `threshold` failures in a row, probe after `cooldown`."""

    threshold: int = 5
    cooldown: timedelta = timedelta(minutes=5)
    failures: int = 0
    opened_at: datetime | None = None
    # a probe is in flight: the shop's jobs run side by side, and only one may probe
    probing: bool = False

    def allows(self, now: datetime) -> bool:
        return self.opened_at is None or (
            not self.probing and now - self.opened_at >= self.cooldown)

    def success(self) -> bool:
        """Record a success; True when this closed an open breaker."""
        was_open = self.opened_at is not None
        self.failures, self.opened_at = 0, None
        return was_open

    def failure(self, now: datetime) -> bool:
        """Record a failure; True when this opened the breaker (alert once)."""
        self.failures += 1
        if self.opened_at is not None:
            self.opened_at = now  # the probe failed: back off again, no new alert
            return False
        if self.failures >= self.threshold:
            self.opened_at = now
            return True
        return False


@dataclass(slots=True)
class JobState:
    runs: int = 0
    failures: int = 0
    last_success: datetime | None = None
    last_error: str = ""


@dataclass
class Daemon:
    rt: Runtime
    serve_http: bool = True
    breakers: dict[str, Breaker] = field(default_factory=dict)
    jobs: dict[str, JobState] = field(default_factory=dict)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(self.rt)
        self.scheduler = AsyncIOScheduler(job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": 300})
        self.stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._lock: TextIO | None = None
        self._intake_wakeup = asyncio.Event()
        self.started_at = time.monotonic()

    # -- schedule --------------------------------------------------------------------------
    def plan(self) -> list[tuple[str, timedelta, Job, str | None]]:
        """(job name, interval, coroutine factory, shop or None) for every job."""
        from core.alerting import deliver_alerts
        from core.intake import process_inbox
        from core.listings import check_dormant, fire_scheduled_listings, pull_listings
        from core.logistics import check_shipments
        from core.orders import rebind_lines, release_presale
        from core.pull import pull_orders
        from core.senders import OutboxWorker
        from core.tracking import poll_tracking, subscribe_tracking

        rt = self.rt
        shops = rt.enabled_shops()
        fastest = min((s.intervals.outbox for s in shops), default=timedelta(seconds=5))
        tracking = min((s.intervals.tracking for s in shops), default=timedelta(minutes=30))
        alerts = min((s.intervals.alerts for s in shops), default=timedelta(minutes=5))
        worker = OutboxWorker(rt)
        plan: list[tuple[str, timedelta, Job, str | None]] = [
            ("outbox", fastest, lambda: worker.drain(rounds=5), None),
            ("intake", timedelta(seconds=2), lambda: process_inbox(rt), None),
            ("scheduled_listings", timedelta(seconds=30), lambda: fire_scheduled_listings(rt),
             None),
            ("tracking_poll", tracking, lambda: self._leased("tracking_poll", poll_tracking),
             None),
            ("tracking_subscribe", tracking,
             lambda: self._leased("tracking_subscribe", subscribe_tracking), None),
            ("shipment_checks", alerts, lambda: self._leased("shipment_checks",
                                                             check_shipments), None),
            ("alert_delivery", timedelta(seconds=30),
             lambda: self._leased("alert_delivery", deliver_alerts), None),
            ("dormant", timedelta(hours=6), lambda: self._leased("dormant", check_dormant),
             None),
            ("presale", timedelta(minutes=10), lambda: release_presale(rt), None),
            ("rebind", timedelta(minutes=10), lambda: rebind_lines(rt), None),
            ("metrics", timedelta(seconds=15), self.metrics.refresh, None),
        ]
        for shop in shops:
            name = shop.name
            plan.append((f"orders:{name}", shop.intervals.orders,
                         lambda n=name: pull_orders(rt, n), name))  # type: ignore[misc]
            plan.append((f"reconcile:{name}", shop.intervals.reconcile,
                         lambda n=name: pull_listings(rt, n), name))  # type: ignore[misc]
            plan.append((f"token:{name}", shop.intervals.token_refresh,
                         lambda n=name: self.refresh_token_if_due(n), name))  # type: ignore[misc]
        return plan

    async def _leased(self, name: str, job: Callable[[Runtime], Awaitable[Any]]) -> Any:
        """Node-wide jobs run on one node at a time: the lease is renewed every third of
        its length while the job runs, and a job whose lease was taken over is stopped."""
        rt = self.rt
        lease = f"job:{name}"
        async with transaction(rt.sessions) as session:
            if not await leases.acquire(session, lease, rt.node, rt.now(),
                                        rt.config.daemon.lease):
                return None
        work = asyncio.ensure_future(job(rt))
        keeper = asyncio.ensure_future(self._keep_lease(lease, work))
        try:
            return await work
        except asyncio.CancelledError:
            if keeper.done() and not keeper.cancelled() and keeper.result():
                raise leases.LeaseLost(f"{lease}: taken over by another node") from None
            raise
        finally:
            keeper.cancel()
            async with transaction(rt.sessions) as session:
                await leases.release(session, lease, rt.node)

    async def _keep_lease(self, lease: str, work: asyncio.Future[Any]) -> bool:
        """Renew while `work` runs; True when the lease was lost (and `work` cancelled)."""
        rt = self.rt
        ttl = rt.config.daemon.lease
        while not work.done():
            await asyncio.sleep(ttl.total_seconds() / 3)
            async with transaction(rt.sessions) as session:
                kept = await leases.renew(session, lease, rt.node, rt.now(), ttl)
            if not kept:
                log.warning("job lease lost: stopping the job", lease=lease, node=rt.node)
                work.cancel()
                return True
        return False

    async def refresh_token_if_due(self, shop: str) -> bool:
        """Refresh a token that expires within two refresh intervals (before calls fail)."""
        connector = self.rt.connector(shop)
        current = connector.shop.tokens.current()
        interval = self.rt.shop_config(shop).intervals.token_refresh
        if current.expires_at is None or current.expires_at - self.rt.now() > 2 * interval:
            return False
        await connector.shop.tokens.refresh(current)
        return True

    async def run_job(self, name: str, job: Job, shop: str | None) -> None:
        if self.stopping.is_set():
            return
        state = self.jobs.setdefault(name, JobState())
        breaker = self.breakers.setdefault(shop, Breaker()) if shop else None
        # only a job that always calls the platform tells whether it is back: the token job
        # mostly finds nothing due and calls nobody, so its success neither resets the count
        # nor closes the breaker, and it never probes (its failures do count)
        telling = name.partition(":")[0] in PROBING_JOBS
        now = self.rt.now()
        if breaker is not None and breaker.opened_at is not None and not telling:
            return
        if breaker is not None and not breaker.allows(now):
            return
        probe = breaker if breaker is not None and breaker.opened_at is not None else None
        if probe is not None:
            probe.probing = True
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        started = time.perf_counter()
        try:
            await job()
        except Exception as exc:
            state.failures += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            self.metrics.job_failed(name)
            log.warning("job failed", job=name, shop=shop, error=state.last_error)
            if breaker is not None and breaker.failure(self.rt.now()):
                await self._alert_circuit(shop or "", state.last_error, opened=True)
        else:
            state.last_success = self.rt.now()
            if breaker is not None and telling and breaker.success():
                await self._alert_circuit(shop or "", "", opened=False)
        finally:
            if probe is not None:
                probe.probing = False  # also when cancelled: the next run probes instead
            state.runs += 1
            self.metrics.job_ran(name, time.perf_counter() - started)
            if task is not None:
                self._in_flight.discard(task)

    async def _alert_circuit(self, shop: str, error: str, *, opened: bool) -> None:
        async with transaction(self.rt.sessions) as session:
            if opened:
                await open_alert(session, "circuit_open", f"shop:{shop}",
                                 f"{shop}: calls keep failing, backing off ({error})",
                                 self.rt.now())
            else:
                await resolve_alert(session, "circuit_open", f"shop:{shop}", self.rt.now())

    # -- life cycle ------------------------------------------------------------------------
    def claim_sqlite(self) -> None:
        """One daemon per SQLite file: hold an exclusive lock on `<db>.daemon.lock`."""
        path = sqlite_path(self.rt.config.database_url)
        if path is None:
            return
        lock_path = Path(f"{path}.daemon.lock")
        handle = lock_path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SecondCopy(
                f"another erpsync daemon ({holder}) already runs on {path}; SQLite supports "
                "one daemon per database — stop it, or use PostgreSQL to run several") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {self.rt.node}\n")
        handle.flush()
        self._lock = handle

    def start(self) -> None:
        for name, interval, job, shop in self.plan():
            seconds = interval.total_seconds()
            self.scheduler.add_job(
                self.run_job, "interval", args=(name, job, shop), id=name,
                seconds=seconds, jitter=max(1, int(seconds * 0.1)),
                next_run_time=datetime.now().astimezone()
                + timedelta(seconds=random.uniform(0, min(seconds, 3))))
        self.scheduler.start()

    def wake_intake(self) -> None:
        job = self.scheduler.get_job("intake")
        if job is not None and not self.stopping.is_set():
            job.modify(next_run_time=datetime.now().astimezone())

    async def stop(self) -> None:
        """Stop taking work, let in-flight jobs finish (bounded), give back claims."""
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.pause()
        grace = self.rt.config.daemon.shutdown_grace.total_seconds()
        pending = [t for t in self._in_flight if t is not asyncio.current_task()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        now = self.rt.now()
        async with transaction(self.rt.sessions) as session:
            released = await outbox.release_leases(session, self.rt.node, now)
            await leases.release_all(session, self.rt.node)
        log.info("daemon stopped", released_outbox=released)

    async def run(self, *, ready: Callable[[], None] | None = None) -> int:
        from core.web import build_app

        self.claim_sqlite()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                log.warning("second signal: exiting at once")
                os._exit(130)
            self.stopping.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        async with contextlib.AsyncExitStack() as stack:
            if self.serve_http:
                daemon_config = self.rt.config.daemon
                await stack.enter_async_context(serve_asgi(
                    build_app(self.rt, self.metrics.routes(self), on_stored=self.wake_intake),
                    daemon_config.listen_host, daemon_config.listen_port))
            self.start()
            log.info("daemon started", node=self.rt.node, shops=len(self.rt.enabled_shops()))
            if ready is not None:
                ready()
            await self.stopping.wait()
            await self.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        return 0
