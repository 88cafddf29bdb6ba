"""`erpsync simulate`: a Double-11 day in a box.

Owns the sale-day scenario (shops on every sandbox platform, a scarce catalogue, an
order-arrival curve with a midnight spike, cancellations, refunds, a warehouse, parcels on
scripted journeys, fault mixes), the loop that runs THE DAEMON'S OWN JOBS against it
(`Daemon.plan()` and `Daemon.run_job`, never copies) on a ManualClock, and the figures the
report is made of. The report itself (table, JSON, HTML with SVG plots, PASS/FAIL goal
lines) lives in `core.simulate_report`.

How time moves. The simulator owns a ManualClock shared by the runtime and every sandbox.
It steps the clock by `tick` (simulated seconds); between two ticks it places the orders,
payments and cancellations that fall in that stretch at their own instants, then delivers
the platforms' pushes to the real webhook receiver, lets the warehouse ship, and runs every
daemon job that is due by its own interval. A job whose interval is shorter than the tick
runs once per tick — what APScheduler's `coalesce=True` does when the loop is behind — so
simulated latencies are bounded below by the tick: that is a property of the measurement,
reported next to the figures. Jobs run one after another, never concurrently: the sequence
of requests, hence every fault draw and every retry, is then a function of the seed alone
(the global `random` that retry jitter uses is seeded too). The rate limiters and retry
back-offs sleep on the ManualClock, which moves simulated time forward: a rate limit costs
simulated time as it would cost real time.

What is real. Sandboxes are served over loopback HTTP (`core.sandbox.serve`), the webhook
receiver is `core.web.build_app` served the same way, the database is SQLite or PostgreSQL
through the normal migrations. The simulator plays only the outside world: buyers, the
platforms' own state changes, the warehouse (ships with `core.logistics.ship`, as an
operator's import would) and the carriers (the Kuaidi100 sandbox's journeys).

What is measured and how (wall-clock figures are upper bounds at tick granularity):
* a *stock change* is a SKU whose listings got a new publish version during a tick; it is
  *published* when every one of those listings' last pushed version reached it (a newer
  version landing counts: coalescing is the point). Simulated latency runs from the tick's
  clock to the clock after the outbox run that landed it; wall-clock latency from the end of
  that tick to the end of that outbox run.
* order arrival → reserved: the platform's order time to the reservation's time (simulated);
  wall-clock from placing the order to the end of the tick that reserved it.
* oversold units: the units of every `oversold` alert (short lines of backordered orders);
  in shared mode each is checked against the propagation window (a newer quantity for that
  listing in flight, or a sale of the SKU elsewhere not yet ingested, at the order's time).
* expected tracking alerts: known from the journeys the simulator chose per parcel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.clock import BEIJING, ManualClock
from core.config import Config, load
from core.daemon import Daemon
from core.db import transaction, upgrade
from core.demo import ADDRESSES, ship_ready
from core.http import HttpSession
from core.model import Alert, Listing, Order, OrderLine, Reservation, Shipment, Sku
from core.plugins import Registry
from core.records import Capability
from core.runtime import Runtime, SandboxBinding
from core.sandbox import Fault, PushFault, Sandbox, SoldOut, serve
from core.senders import OutboxWorker, SendStats
from core.tracking import TRACKING_SANDBOX
from core.web import build_app, hook_path

ROOT = Path(__file__).resolve().parent.parent
# one shop per platform first, then round again: --shops 20 gives every platform 2-3 shops
PLATFORMS = ("taobao", "pinduoduo", "jd", "douyin", "kuaishou", "xiaohongshu", "dewu",
             "shopify", "woocommerce")
TRACKER_MOUNT = "tracking:sandbox"
# the sale day: the clock starts 30 min before midnight, so even a one-hour run has the spike
DAY_START = datetime(2026, 11, 10, 23, 30, tzinfo=BEIJING)
MIDNIGHT = datetime(2026, 11, 11, 0, 0, tzinfo=BEIJING)
# parcel journeys (connectors/kuaidi100/sandbox.py) and how often the carriers produce each
JOURNEY_WEIGHTS = (("normal", 84), ("stalled", 5), ("problem", 3), ("refused", 2),
                   ("returned", 2), ("never_collected", 4))
# when each journey's alert condition starts, from the parcel's start (= shipping time)
STALL_AFTER_LAST_SCAN = {"stalled": 14.0, "problem": 40.0, "refused": 38.0}
EXCEPTION_AT = {"problem": 40.0, "refused": 38.0, "returned": 38.0}
TRACKING_ALERT_KINDS = ("shipment_stalled", "not_collected", "delivery_exception")

FAULT_MIXES: Mapping[str, Mapping[str, float]] = {
    "none": {},
    # the platform side: throttling, 5xx, both kinds of timeout, tokens that die
    "api": {"rate_limit": 0.03, "server_error": 0.02, "timeout": 0.002,
            "timeout_after_apply": 0.002, "token_expired": 0.003},
    # the push side: copies, reversed batches, pushes that never come (polling catches them)
    "push": {"duplicate": 0.2, "out_of_order": 0.3, "drop": 0.05},
    "heavy": {"rate_limit": 0.05, "server_error": 0.03, "timeout": 0.003,
              "timeout_after_apply": 0.003, "token_expired": 0.005,
              "duplicate": 0.25, "out_of_order": 0.3, "drop": 0.1},
}


@dataclass(frozen=True, slots=True)
class FaultMix:
    name: str
    rates: Mapping[Fault, float] = field(default_factory=dict)
    push_rates: Mapping[PushFault, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> FaultMix:
        """A preset (`none`, `api`, `push`, `heavy`) or `name=rate,...` over the sandbox
        fault switches (`rate_limit=0.05,duplicate=0.2`)."""
        text = text.strip()
        if text in FAULT_MIXES:
            raw, name = FAULT_MIXES[text], text
        else:
            raw, name = {}, text
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, _, value = part.partition("=")
                try:
                    raw[key.strip()] = float(value)
                except ValueError:
                    raise ValueError(f"fault rate {part!r}: expected name=rate") from None
        rates: dict[Fault, float] = {}
        push_rates: dict[PushFault, float] = {}
        for key, rate in raw.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate {key}={rate}: between 0 and 1")
            if key in {f.value for f in Fault}:
                rates[Fault(key)] = rate
            elif key in {f.value for f in PushFault}:
                push_rates[PushFault(key)] = rate
            else:
                known = sorted({f.value for f in Fault} | {f.value for f in PushFault})
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(known)} or a "
                                 f"preset: {', '.join(FAULT_MIXES)}")
        return cls(name, rates, push_rates)

    def describe(self) -> dict[str, float]:
        return {**{k.value: v for k, v in self.rates.items()},
                **{k.value: v for k, v in self.push_rates.items()}}


@dataclass(frozen=True, slots=True)
class SimulationSpec:
    seed: int = 11
    shops: int = 9
    skus: int = 100
    orders: int | None = None  # default: 40 per shop
    hours: float = 24.0  # orders arrive during this stretch
    tail_hours: float = 48.0  # then no new orders: parcels travel, alerts come due
    tick: float = 60.0  # simulated seconds per step while orders arrive
    tail_tick: float = 1800.0  # ... and afterwards
    mode: str = "strict"
    faults: FaultMix = field(default_factory=lambda: FaultMix("none"))
    database_url: str | None = None  # default: a fresh SQLite file in `workdir`
    workdir: Path | None = None
    cancel_rate: float = 0.06  # cancelled (or refunded before shipping) by the buyer
    refund_rate: float = 0.02  # refunded after shipping
    unpaid_rate: float = 0.08  # placed unpaid, paid minutes later (some never)
    ship_every: float = 3600.0  # the warehouse ships approved orders this often
    call_timeout: float = 1.0  # the client gives up after this (the timeout faults)

    @property
    def order_count(self) -> int:
        return self.orders if self.orders is not None else 40 * self.shops


# -- the scenario ----------------------------------------------------------------------------------
@dataclass(slots=True)
class PlannedOrder:
    """One buyer's cart; split into one order per line on one-line platforms."""

    at: datetime
    shop: str
    lines: list[tuple[str, int]]
    paid: bool
    pay_after: float | None  # minutes; None: never paid (auto-closed by the simulator)
    cancel_after: float | None  # minutes after arrival
    refund_after: float | None  # minutes after arrival, applied only once shipped
    remark: str
    address: dict[str, str]


def arrival_weight(moment: datetime) -> float:
    """Orders per minute, relative: a quiet evening, the midnight spike decaying over the
    first hour, a morning lull and an evening peak (the second wave of Double 11)."""
    hours = (moment - MIDNIGHT).total_seconds() / 3600
    weight = 0.3
    if hours >= 0:
        weight += 40.0 * math.exp(-hours * 60 / 12)  # the first minutes: ~130× the base
        weight += 1.5 * math.exp(-((hours - 10.5) / 3) ** 2)
        weight += 3.0 * math.exp(-((hours - 21) / 1.5) ** 2)
    if hours < 0:
        weight += 0.5 * (1 + hours * 2)  # the last half hour before midnight warms up
    return max(weight, 0.05)


def opening_stock(codes: Sequence[str], popularity: Sequence[float], total_units: float,
                  rng: random.Random) -> dict[str, int]:
    """Scarce stock: each SKU holds 40-110 % of the units it is expected to sell, so the
    popular ones sell out during the day and the shops race for the last units."""
    weight = sum(popularity)
    return {code: max(1, int(total_units * p / weight * rng.uniform(0.4, 1.1)))
            for code, p in zip(codes, popularity, strict=True)}


def plan_day(spec: SimulationSpec, shops: Sequence[str], codes: Sequence[str],
             rng: random.Random) -> tuple[list[PlannedOrder], list[float]]:
    minutes = max(1, int(spec.hours * 60))
    weights = [arrival_weight(DAY_START + timedelta(minutes=m)) for m in range(minutes)]
    # popularity: a long tail (Zipf, s = 1.1) in a shuffled order of codes
    popularity = [1 / (rank + 1) ** 1.1 for rank in range(len(codes))]
    rng.shuffle(popularity)
    cumulative = list(_accumulate(popularity))
    minute_cdf = list(_accumulate(weights))
    planned: list[PlannedOrder] = []
    for _ in range(spec.order_count):
        minute = _pick(minute_cdf, rng)
        at = DAY_START + timedelta(minutes=minute, seconds=rng.uniform(0, 60))
        cart: dict[str, int] = {}
        for _ in range(1 if rng.random() < 0.75 else 2):
            code = codes[_pick(cumulative, rng)]
            cart[code] = cart.get(code, 0) + (1 if rng.random() < 0.8 else 2)
        paid = rng.random() >= spec.unpaid_rate
        planned.append(PlannedOrder(
            at=at, shop=shops[rng.randrange(len(shops))], lines=sorted(cart.items()),
            paid=paid, pay_after=None if paid else (rng.uniform(1, 30) if rng.random() < 0.7
                                                    else None),
            cancel_after=rng.uniform(2, 240) if rng.random() < spec.cancel_rate else None,
            refund_after=rng.uniform(300, 2000) if rng.random() < spec.refund_rate else None,
            remark=rng.choice(("", "", "", "", "请尽快发货")),
            address=dict(rng.choice(ADDRESSES[:3] + ADDRESSES[5:]))))
    planned.sort(key=lambda p: p.at)
    return planned, popularity


def _accumulate(values: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def _pick(cdf: Sequence[float], rng: random.Random) -> int:
    import bisect

    return min(len(cdf) - 1, bisect.bisect_left(cdf, rng.uniform(0, cdf[-1])))


# -- what is observed ------------------------------------------------------------------------------
@dataclass(slots=True)
class Placed:
    shop: str
    platform_order_id: str
    arrived: datetime
    wall: float
    lines: list[tuple[str, int]]


@dataclass(slots=True)
class StockChange:
    sku_id: int
    sim: datetime
    wall: float
    waiting: dict[int, int]  # listing id -> version it must reach
    landed_sim: datetime | None = None
    landed_wall: float | None = None


@dataclass(slots=True)
class RunFigures:
    """Everything one run measured; `core.simulate_report` turns it into goals and pages."""

    mode: str
    faults: str
    fault_rates: dict[str, float]
    seed: int
    shops: int
    platforms: list[str]
    skus: int
    planned_orders: int
    database: str
    simulated_hours: float
    tick_seconds: float
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    setup_seconds: float = 0.0
    orders_placed: int = 0
    orders_refused_sold_out: int = 0
    orders_ingested: int = 0
    cancellations: int = 0
    refunds_after_shipping: int = 0
    pushes_delivered: int = 0
    oversold_units: int = 0
    oversold_orders: int = 0
    oversold_outside_window: int = 0
    stock_changes: int = 0
    stock_changes_unpublished: int = 0
    stock_calls: int = 0
    api_calls: int = 0
    publish_sim_p50: float | None = None
    publish_sim_p99: float | None = None
    publish_wall_p50: float | None = None
    publish_wall_p99: float | None = None
    round_trip_ms: float | None = None
    reserve_sim_p50: float | None = None
    reserve_sim_p99: float | None = None
    reserve_wall_p50: float | None = None
    reserve_wall_p99: float | None = None
    reserved_orders: int = 0
    shipments: int = 0
    tracking_pushed: int = 0
    tracking_pushed_within_sla: int = 0
    tracking_not_pushed: int = 0
    alerts_expected: dict[str, int] = field(default_factory=dict)
    alerts_raised_expected: dict[str, int] = field(default_factory=dict)
    alerts_missed: dict[str, int] = field(default_factory=dict)
    alerts_spurious: dict[str, int] = field(default_factory=dict)
    alerts_borderline: dict[str, int] = field(default_factory=dict)
    alerts_by_kind: dict[str, int] = field(default_factory=dict)
    journeys: dict[str, int] = field(default_factory=dict)
    job_failures: dict[str, int] = field(default_factory=dict)
    job_seconds: dict[str, float] = field(default_factory=dict)
    ledger_problems: int = 0
    # series for the plots
    arrivals_per_hour: list[int] = field(default_factory=list)
    oversold_per_hour: list[int] = field(default_factory=list)
    rss_series: list[tuple[float, float]] = field(default_factory=list)  # (sim h, MB)
    publish_wall_ms: list[float] = field(default_factory=list)
    publish_sim_s: list[float] = field(default_factory=list)
    reserve_sim_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def rss_mb() -> float:
    """Current resident set (Linux /proc; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, IndexError, ValueError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- one run ---------------------------------------------------------------------------------------
class Simulation:
    """One run: a mode and a fault mix over the seeded day."""

    def __init__(self, spec: SimulationSpec, workdir: Path, database_url: str) -> None:
        self.spec = spec
        self.workdir = workdir
        self.database_url = database_url
        self.clock = ManualClock(DAY_START - timedelta(hours=1))
        self.registry = Registry.discover()
        self.rng = random.Random(spec.seed)
        self.shop_names = [f"{PLATFORMS[i % len(PLATFORMS)]}-{i + 1:02d}"
                           for i in range(spec.shops)]
        self.platform_of = {name: PLATFORMS[i % len(PLATFORMS)]
                            for i, name in enumerate(self.shop_names)}
        self.codes = [f"D11-{n:05d}" for n in range(1, spec.skus + 1)]
        self.sandboxes: dict[str, Sandbox] = {}
        self.tracker: Any = None
        self.placed: dict[tuple[str, str], Placed] = {}
        self.figures = RunFigures(
            mode=spec.mode, faults=spec.faults.name, fault_rates=spec.faults.describe(),
            seed=spec.seed, shops=spec.shops,
            platforms=sorted(set(self.platform_of.values())), skus=spec.skus,
            planned_orders=spec.order_count, database=_describe_url(database_url),
            simulated_hours=spec.hours + spec.tail_hours, tick_seconds=spec.tick)
        # listing id -> [(version, created sim, landed sim or None)]
        self.versions: dict[int, list[list[Any]]] = defaultdict(list)
        self.listing_sku: dict[int, int] = {}
        self.listing_shop: dict[int, int] = {}
        self.known_version: dict[int, int] = {}
        self.pushed_version: dict[int, int] = {}
        self.changes: list[StockChange] = []
        self.open_changes: list[StockChange] = []
        self.reserved_seen = 0
        self.journey_of: dict[int, tuple[str, datetime]] = {}  # shipment id -> journey
        self.job_failures: Counter[str] = Counter()
        self.job_seconds: defaultdict[str, float] = defaultdict(float)
        self.stock_calls = 0

    # -- set-up ----------------------------------------------------------------------------
    def write_config(self) -> Config:
        rules = (ROOT / "config" / "rules.toml").read_text(encoding="utf-8")
        # thousands of parcels on one machine: each is asked about every 4 h, not every
        # 30 min (an operator's setting; Kuaidi100 allows 30 min)
        rules = rules.replace('tracking_poll = "30m"', 'tracking_poll = "4h"')
        (self.workdir / "rules.toml").write_text(rules, encoding="utf-8")
        lines = ['rules = "rules.toml"', 'secrets = "secrets.json"', "",
                 "[database]", f'url = "{self.database_url}"', "",
                 "[inventory]", f'mode = "{self.spec.mode}"', "",
                 "[daemon]", 'node_name = "simulator"', 'lease = "5m"', "",
                 "[tracking]", 'provider = "kuaidi100"', "sandbox = true", "",
                 "[alerts]", 'sinks = [{ type = "log" }]', ""]
        for name in self.shop_names:
            platform = self.platform_of[name]
            pushes = Capability.PUSH_ORDERS in self.registry.connector(platform).capabilities
            # where pushes arrive, the pull is the safety net and runs less often
            orders = "5m" if pushes else "1m"
            lines += ["[[shops]]", f'name = "{name}"', f'platform = "{platform}"',
                      "sandbox = true", "promo_mode = true",
                      f'intervals = {{ orders = "{orders}", outbox = "5s", tracking = "30m", '
                      'alerts = "5m", reconcile = "1d" }']
            if platform == "xiaohongshu":  # its push signature covers the callback URL
                lines.append(f'options = {{ push_url = "{hook_path(platform, name)}" }}')
            lines.append("")
        path = self.workdir / f"simulate-{self.spec.mode}.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        return load(path, check_env=False)

    def build_sandboxes(self, stock: Mapping[str, int]) -> None:
        for index, name in enumerate(self.shop_names):
            platform = self.platform_of[name]
            sandbox_class = self.registry.connector(platform).sandbox_class
            assert sandbox_class is not None, platform
            sandbox: Sandbox = sandbox_class(clock=self.clock, seed=self.spec.seed * 100 + index,
                                             timeout_seconds=self.spec.call_timeout * 1.5)
            if platform == "xiaohongshu":
                sandbox.push_url = hook_path(platform, name)  # type: ignore[attr-defined]
            for code in self.codes:
                # listed at 0: the first sync publishes the pool, as on a real first run
                price = 990 + (sum(map(ord, code)) * 37) % 20000
                sandbox.add_item(f"{code} 双11爆款 限时直降", code, price,
                                 skus=[(code, 0, price)])
            self.sandboxes[name] = sandbox
        tracker_class = self.registry.tracking_provider("kuaidi100").sandbox_class
        assert tracker_class is not None
        self.tracker = tracker_class(clock=self.clock, seed=self.spec.seed)

    async def seed_catalogue(self, rt: Runtime, stock: Mapping[str, int]) -> None:
        now = rt.now()
        async with transaction(rt.sessions) as session:
            for code in self.codes:
                await upsert_product(session, ProductSpec(code, f"{code} 双11爆款 限时直降", (
                    SkuSpec(code, 990 + (sum(map(ord, code)) * 37) % 20000),)), now)
            ids = dict((await session.execute(select(Sku.merchant_code, Sku.id))).all())
            for code, quantity in stock.items():
                await rt.pool.change_on_hand(session, ids[code], "MAIN", quantity,
                                             kind="receipt", reason="opening stock",
                                             reference="simulate", now=now)

    async def measure_round_trip(self, rt: Runtime) -> float:
        """One sandbox round trip (ms): the median of 20 `set_stock` calls that write a
        listing's current quantity again, through the same connector and HTTP session."""
        from core.records import StockUpdate

        shop = self.shop_names[0]
        connector = rt.connector(shop)
        async with rt.sessions() as session:
            listing = await session.scalar(select(Listing).where(
                Listing.shop_id == rt.shop_ids[shop]).order_by(Listing.id).limit(1))
        assert listing is not None
        update = StockUpdate(listing.platform_item_id, listing.platform_sku_id,
                             int(listing.last_pushed_quantity or 0))
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            await connector.set_stock([update])
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    # -- the day ---------------------------------------------------------------------------
    async def run(self) -> RunFigures:
        spec = self.spec
        random.seed(spec.seed)  # retry jitter: the same seed, the same waits
        wall0, cpu0 = time.perf_counter(), time.process_time()
        planned, popularity = plan_day(spec, self.shop_names, self.codes, self.rng)
        units = sum(q for p in planned for _, q in p.lines)
        stock = opening_stock(self.codes, popularity, units * 0.85, random.Random(spec.seed + 1))
        config = self.write_config()
        self.build_sandboxes(stock)
        served: dict[str, Sandbox] = dict(self.sandboxes)
        served[TRACKER_MOUNT] = self.tracker
        hooks_app = LateApp()
        async with serve(served, root=hooks_app) as urls:
            hooks = urls[""]
            bindings = {name: SandboxBinding(sb, urls[name]) for name, sb in self.sandboxes.items()}
            bindings[TRACKING_SANDBOX] = SandboxBinding(self.tracker, urls[TRACKER_MOUNT])
            rt = Runtime(config, clock=self.clock, registry=self.registry, sandboxes=bindings,
                         node="simulator")
            # the timeout faults must meet a client that gives up: a short one, so a day
            # with timeouts still runs in minutes
            default_http = rt.http
            rt.http = HttpSession(clock=self.clock, timeout=spec.call_timeout)
            await default_http.aclose()
            try:
                await upgrade(rt.engine, config.database_url)
                await rt.sync_shops()
                await self.seed_catalogue(rt, stock)
                for name in self.shop_names:
                    from core.listings import pull_listings

                    await pull_listings(rt, name)
                await OutboxWorker(rt).drain(rounds=1_000_000)
                self.figures.round_trip_ms = await self.measure_round_trip(rt)
                await self.observe_listings(rt, initial=True)
                self.figures.setup_seconds = time.perf_counter() - wall0
                for name, sandbox in self.sandboxes.items():
                    sandbox.faults.rates = dict(spec.faults.rates)
                    if Capability.REFRESH_TOKEN not in rt.connector(name).capabilities:
                        # an API key (WooCommerce) or a permanent token (Shopify) does not
                        # expire: an expiry there would be a revoked key, not a fault to ride
                        sandbox.faults.rates.pop(Fault.TOKEN_EXPIRED, None)
                    sandbox.faults.push_rates = dict(spec.faults.push_rates)
                    sandbox.pushes.clear()
                calls_before = rt.http.calls
                hooks_app.app = build_app(rt)
                async with httpx.AsyncClient(base_url=hooks, timeout=30) as client:
                    await self.day(rt, planned, client)
                self.figures.api_calls = rt.http.calls - calls_before
                await self.collect(rt)
            finally:
                await rt.close()
        self.figures.wall_seconds = time.perf_counter() - wall0
        self.figures.cpu_seconds = time.process_time() - cpu0
        self.figures.peak_rss_mb = peak_rss_mb()
        return self.figures

    async def day(self, rt: Runtime, planned: list[PlannedOrder],
                  client: httpx.AsyncClient) -> None:
        spec = self.spec
        daemon = Daemon(rt, serve_http=False)
        plan = daemon.plan()
        due: dict[str, datetime] = {}
        events = self.schedule(planned)
        end_day = DAY_START + timedelta(hours=spec.hours)
        end = end_day + timedelta(hours=spec.tail_hours)
        self.clock.set(DAY_START)
        next_warehouse = DAY_START + timedelta(seconds=spec.ship_every)
        cursor = 0
        arrivals: Counter[int] = Counter()
        while self.clock.now() < end:
            step = spec.tick if self.clock.now() < end_day else spec.tail_tick
            stop = min(end, self.clock.now() + timedelta(seconds=step))
            while cursor < len(events) and events[cursor][0] <= stop:
                at, _, action = events[cursor]
                cursor += 1
                self.apply_followups(at)
                if at > self.clock.now():
                    self.clock.set(at)
                action()
            self.apply_followups(stop)
            if stop > self.clock.now():
                self.clock.set(stop)
            for name, sandbox in self.sandboxes.items():
                if sandbox.pushes:
                    url = hook_path(self.platform_of[name], name)
                    self.figures.pushes_delivered += len(
                        await sandbox.deliver_pushes(client, url))
            if self.clock.now() >= next_warehouse:
                next_warehouse = self.clock.now() + timedelta(seconds=spec.ship_every)
                await ship_ready(rt, self.rng)
                await self.hand_parcels(rt)
            tick_now = self.clock.now()
            for name, interval, job, shop in plan:
                if due.get(name, tick_now) > tick_now:
                    continue
                due[name] = tick_now + interval
                started = time.perf_counter()
                await daemon.run_job(name, self._observed(name, job), shop)
                self.job_seconds[name.split(":")[0]] += time.perf_counter() - started
                if name == "outbox":
                    await self.observe_listings(rt)
            await self.observe_listings(rt)
            await self.observe_reservations(rt)
            hour = int((self.clock.now() - DAY_START).total_seconds() // 3600)
            if not self.figures.rss_series or self.figures.rss_series[-1][0] < hour:
                self.figures.rss_series.append((float(hour), round(rss_mb(), 1)))
        for placed in self.placed.values():
            arrivals[int((placed.arrived - DAY_START).total_seconds() // 3600)] += 1
        hours = math.ceil(spec.hours)
        self.figures.arrivals_per_hour = [arrivals[h] for h in range(hours)]
        for name, state in daemon.jobs.items():
            if state.failures:
                self.job_failures[name.split(":")[0]] += state.failures

    def _observed(self, name: str, job: Callable[[], Awaitable[Any]]) -> Callable[
            [], Awaitable[Any]]:
        async def run() -> Any:
            result = await job()
            if name == "outbox" and isinstance(result, SendStats):
                self.stock_calls += result.calls_by_kind.get("stock", 0)
            return result
        return run

    def schedule(self, planned: list[PlannedOrder]) -> list[tuple[datetime, int, Callable[[], None]]]:
        """Every buyer action as (time, sequence, action); the sequence keeps ties in plan
        order so the day replays identically."""
        events: list[tuple[datetime, int, Callable[[], None]]] = []
        for index, order in enumerate(planned):
            events.append((order.at, index, lambda o=order: self.place(o)))  # type: ignore[misc]
        events.sort(key=lambda e: (e[0], e[1]))
        return events

    def place(self, order: PlannedOrder) -> None:
        sandbox = self.sandboxes[order.shop]
        size = sandbox.max_lines_per_order or len(order.lines)
        for start in range(0, len(order.lines), size):
            try:
                placed = sandbox.place_order(order.lines[start:start + size], paid=order.paid,
                                             buyer_remark=order.remark, address=order.address)
            except SoldOut:
                self.figures.orders_refused_sold_out += 1
                continue
            self.figures.orders_placed += 1
            key = (order.shop, placed.order_id)
            self.placed[key] = Placed(order.shop, placed.order_id, self.clock.now(),
                                      time.perf_counter(), list(order.lines[start:start + size]))
            self._follow_up(order, sandbox, placed.order_id)

    def _follow_up(self, order: PlannedOrder, sandbox: Sandbox, order_id: str) -> None:
        now = self.clock.now()
        if order.pay_after is not None:
            self._pending.append((now + timedelta(minutes=order.pay_after), "pay", sandbox,
                                  order_id))
        elif not order.paid:
            self._pending.append((now + timedelta(minutes=45), "cancel", sandbox, order_id))
        if order.cancel_after is not None:
            self._pending.append((now + timedelta(minutes=order.cancel_after), "cancel",
                                  sandbox, order_id))
        if order.refund_after is not None:
            self._pending.append((now + timedelta(minutes=order.refund_after), "refund",
                                  sandbox, order_id))

    def apply_followups(self, until: datetime) -> None:
        """Payments, cancellations and refunds that came due, in time order."""
        self._pending.sort(key=lambda p: (p[0], p[3], p[1]))
        while self._pending and self._pending[0][0] <= until:
            at, action, sandbox, order_id = self._pending.pop(0)
            if at > self.clock.now():
                self.clock.set(at)
            order = sandbox.orders[order_id]
            if action == "pay" and order.state == "unpaid":
                sandbox.pay(order_id)
            elif action == "cancel" and order.state in ("unpaid", "paid"):
                sandbox.cancel(order_id)
                self.figures.cancellations += 1
            elif action == "refund" and order.state in ("shipped", "completed"):
                sandbox.refund_after_shipping(order_id)
                self.figures.refunds_after_shipping += 1

    async def hand_parcels(self, rt: Runtime) -> None:
        """Every new shipment's parcel joins the carrier's network, on a journey drawn from
        a generator keyed by the seed and the waybill (independent of the order of events)."""
        async with rt.sessions() as session:
            rows = (await session.execute(
                select(Shipment.id, Shipment.carrier, Shipment.tracking_number,
                       Shipment.shipped_at, Order.receiver_phone)
                .join(Order, Order.id == Shipment.order_id).order_by(Shipment.id))).all()
        names = [j for j, _ in JOURNEY_WEIGHTS]
        weights = [w for _, w in JOURNEY_WEIGHTS]
        for shipment_id, carrier, number, shipped_at, phone in rows:
            if shipment_id in self.journey_of:
                continue
            journey = random.Random(f"{self.spec.seed}:{number}").choices(names, weights)[0]
            self.tracker.add_parcel(carrier, number, journey, phone=phone, start=shipped_at)
            self.journey_of[shipment_id] = (journey, shipped_at)

    # -- observation -----------------------------------------------------------------------
    async def observe_listings(self, rt: Runtime, *, initial: bool = False) -> None:
        """New publish versions (a stock change) and landed ones (published)."""
        now, wall = self.clock.now(), time.perf_counter()
        waiting = [lid for lid, v in self.known_version.items()
                   if v > self.pushed_version.get(lid, 0)]
        async with rt.sessions() as session:
            query = select(Listing.id, Listing.sku_id, Listing.shop_id, Listing.publish_version,
                           Listing.last_pushed_version)
            rows = list((await session.execute(
                query.where(Listing.publish_version > Listing.last_pushed_version))).all())
            for start in range(0, len(waiting), 500):
                rows += (await session.execute(
                    query.where(Listing.id.in_(waiting[start:start + 500])))).all()
        fresh: dict[int, dict[int, int]] = defaultdict(dict)
        for listing_id, sku_id, shop_id, version, pushed in rows:
            if sku_id is None:
                continue
            self.listing_sku[listing_id] = sku_id
            self.listing_shop[listing_id] = shop_id
            if version > self.known_version.get(listing_id, 0):
                self.known_version[listing_id] = version
                if not initial:
                    fresh[sku_id][listing_id] = version
                    self.versions[listing_id].append([version, now, None])
            if pushed > self.pushed_version.get(listing_id, 0):
                self.pushed_version[listing_id] = pushed
                for entry in self.versions[listing_id]:
                    if entry[2] is None and entry[0] <= pushed:
                        entry[2] = now
        for sku_id, listings in fresh.items():
            change = StockChange(sku_id, now, wall, listings)
            self.changes.append(change)
            self.open_changes.append(change)
        still = []
        for change in self.open_changes:
            if all(self.pushed_version.get(lid, 0) >= v for lid, v in change.waiting.items()):
                if change.landed_sim is None and not (change.sim == now and change.wall == wall):
                    change.landed_sim, change.landed_wall = now, wall
                    continue
                if change.landed_sim is not None:
                    continue
            still.append(change)
        self.open_changes = still

    async def observe_reservations(self, rt: Runtime) -> None:
        wall = time.perf_counter()
        async with rt.sessions() as session:
            rows = (await session.execute(
                select(Reservation.id, Reservation.created_at, Order.platform_order_id,
                       Order.shop_id)
                .join(OrderLine, OrderLine.id == Reservation.order_line_id)
                .join(Order, Order.id == OrderLine.order_id)
                .where(Reservation.id > self.reserved_seen).order_by(Reservation.id))).all()
        names = {v: k for k, v in rt.shop_ids.items()}
        for reservation_id, created, platform_order_id, shop_id in rows:
            self.reserved_seen = max(self.reserved_seen, reservation_id)
            placed = self.placed.get((names[shop_id], platform_order_id))
            if placed is None or placed.wall < 0:
                continue
            self.figures.reserve_sim_s.append(
                (_aware(created) - placed.arrived).total_seconds())
            self._reserve_wall.append((wall - placed.wall) * 1000)
            placed.wall = -1.0  # counted once per order (its first reserved line)

    # -- the figures ------------------------------------------------------------------------
    async def collect(self, rt: Runtime) -> None:
        from core.inventory import ledger_matches

        fig = self.figures
        fig.stock_calls = self.stock_calls
        fig.job_failures = dict(sorted(self.job_failures.items()))
        fig.job_seconds = {k: round(v, 2) for k, v in sorted(self.job_seconds.items())}
        # latencies are judged while orders arrive (tick `tick`); in the tail the clock
        # moves by `tail_tick` and every latency would read as that tick
        end_day = DAY_START + timedelta(hours=self.spec.hours)
        landed = [c for c in self.changes if c.landed_sim is not None and c.sim <= end_day]
        fig.stock_changes = len(self.changes)
        fig.stock_changes_unpublished = sum(1 for c in self.changes if c.landed_sim is None)
        fig.publish_sim_s = [(c.landed_sim - c.sim).total_seconds() for c in landed
                             if c.landed_sim is not None]
        fig.publish_wall_ms = [((c.landed_wall or 0) - c.wall) * 1000 for c in landed]
        fig.publish_sim_p50 = percentile(fig.publish_sim_s, 50)
        fig.publish_sim_p99 = percentile(fig.publish_sim_s, 99)
        fig.publish_wall_p50 = percentile(fig.publish_wall_ms, 50)
        fig.publish_wall_p99 = percentile(fig.publish_wall_ms, 99)
        fig.reserved_orders = len(fig.reserve_sim_s)
        fig.reserve_sim_p50 = percentile(fig.reserve_sim_s, 50)
        fig.reserve_sim_p99 = percentile(fig.reserve_sim_s, 99)
        fig.reserve_wall_p50 = percentile(self._reserve_wall, 50)
        fig.reserve_wall_p99 = percentile(self._reserve_wall, 99)
        async with rt.sessions() as session:
            fig.orders_ingested = int(await session.scalar(
                select(func.count()).select_from(Order)) or 0)
            fig.ledger_problems = len(await ledger_matches(session))
            await self._collect_oversold(rt, session)
            await self._collect_shipments(session)
            await self._collect_alerts(session)
        fig.journeys = dict(sorted(Counter(j for j, _ in self.journey_of.values()).items()))
        fig.publish_sim_s = [round(v, 1) for v in fig.publish_sim_s]
        fig.publish_wall_ms = [round(v, 1) for v in fig.publish_wall_ms]
        fig.reserve_sim_s = [round(v, 1) for v in fig.reserve_sim_s]

    async def _collect_oversold(self, rt: Runtime, session: Any) -> None:
        fig = self.figures
        names = {v: k for k, v in rt.shop_ids.items()}
        alerts = (await session.execute(select(Alert.subject, Alert.details).where(
            Alert.kind == "oversold").order_by(Alert.id))).all()
        order_ids = sorted({int(s.split(":", 1)[1]) for s, _ in alerts})
        orders: dict[int, Order] = {}
        for start in range(0, len(order_ids), 500):
            from sqlalchemy.orm import selectinload

            for order in (await session.scalars(select(Order).where(
                    Order.id.in_(order_ids[start:start + 500]))
                    .options(selectinload(Order.lines)))).all():
                orders[order.id] = order
        # ingest times of every order, for "a sale elsewhere not yet ingested"
        ingested: dict[tuple[str, str], datetime] = {
            (names[shop_id], poid): _aware(at) for shop_id, poid, at in (await session.execute(
                select(Order.shop_id, Order.platform_order_id, Order.ingested_at))).all()}
        sales_by_code: dict[str, list[Placed]] = defaultdict(list)
        for placed in self.placed.values():
            for code, _ in placed.lines:
                sales_by_code[code].append(placed)
        listing_of: dict[tuple[int, int], int] = {
            (self.listing_shop[lid], sku): lid for lid, sku in self.listing_sku.items()}
        per_hour: Counter[int] = Counter()
        counted: set[int] = set()
        for subject, details in alerts:
            order = orders.get(int(subject.split(":", 1)[1]))
            if order is None or order.id in counted:
                continue
            counted.add(order.id)
            codes = set((details or {}).get("codes") or [])
            short = [ln for ln in order.lines if ln.merchant_code in codes]
            units = sum(ln.quantity for ln in short)
            fig.oversold_units += units
            fig.oversold_orders += 1
            shop = names[order.shop_id]
            seen = self.placed.get((shop, order.platform_order_id))
            arrived = seen.arrived if seen else _aware(order.platform_created_at)
            per_hour[int((arrived - DAY_START).total_seconds() // 3600)] += units
            if not all(self._in_window(shop, order.shop_id, ln.sku_id, ln.merchant_code,
                                       arrived, listing_of, sales_by_code, ingested)
                       for ln in short):
                fig.oversold_outside_window += units
        hours = math.ceil(self.spec.hours + self.spec.tail_hours)
        fig.oversold_per_hour = [per_hour[h] for h in range(hours)]

    def _in_window(self, shop: str, shop_id: int, sku_id: int | None, code: str,
                   arrived: datetime, listing_of: Mapping[tuple[int, int], int],
                   sales_by_code: Mapping[str, list[Placed]],
                   ingested: Mapping[tuple[str, str], datetime]) -> bool:
        """Was a newer quantity on its way to this listing when the order came in?"""
        listing = listing_of.get((shop_id, sku_id or 0))
        for _version, created, landed in self.versions.get(listing or -1, []):
            if created <= arrived and (landed is None or arrived <= landed):
                return True
        for sale in sales_by_code.get(code, []):
            if sale.shop == shop or sale.arrived > arrived:
                continue
            seen = ingested.get((sale.shop, sale.platform_order_id))
            if seen is None or seen >= arrived:
                return True  # sold elsewhere, not in the book yet
        return False

    async def _collect_shipments(self, session: Any) -> None:
        fig = self.figures
        rows = (await session.execute(select(Shipment.id, Shipment.shipped_at,
                                             Shipment.push_state, Shipment.pushed_at))).all()
        fig.shipments = len(rows)
        for _, shipped_at, state, pushed_at in rows:
            if state == "pushed" and pushed_at is not None:
                fig.tracking_pushed += 1
                if _aware(pushed_at) - _aware(shipped_at) <= timedelta(hours=2):
                    fig.tracking_pushed_within_sla += 1
            else:
                fig.tracking_not_pushed += 1

    async def _collect_alerts(self, session: Any) -> None:
        fig = self.figures
        fig.alerts_by_kind = dict((await session.execute(
            select(Alert.kind, func.count()).group_by(Alert.kind).order_by(Alert.kind))).all())
        raised: dict[str, dict[int, datetime]] = defaultdict(dict)
        for kind, subject, opened in (await session.execute(
                select(Alert.kind, Alert.subject, Alert.opened_at)
                .where(Alert.kind.in_(TRACKING_ALERT_KINDS)))).all():
            if subject.startswith("shipment:"):
                sid = int(subject.split(":", 1)[1])
                first = raised[kind].get(sid)
                raised[kind][sid] = min(first, _aware(opened)) if first else _aware(opened)
        end = self.clock.now()
        # a condition is checked at most a poll interval (4 h) + a check interval + a tail
        # tick after it starts; alerts due inside that margin are neither expected nor spurious
        margin = timedelta(hours=4, minutes=5) + timedelta(seconds=self.spec.tail_tick)
        expected: dict[str, dict[int, datetime]] = defaultdict(dict)
        for sid, (journey, start) in self.journey_of.items():
            start = _aware(start)
            if journey == "never_collected":
                expected["not_collected"][sid] = start + timedelta(hours=24)
            if journey in STALL_AFTER_LAST_SCAN:
                expected["shipment_stalled"][sid] = start + timedelta(
                    hours=STALL_AFTER_LAST_SCAN[journey] + 48)
            if journey in EXCEPTION_AT:
                expected["delivery_exception"][sid] = start + timedelta(
                    hours=EXCEPTION_AT[journey])
        for kind in TRACKING_ALERT_KINDS:
            want = {sid: at for sid, at in expected[kind].items() if at + margin <= end}
            borderline = {sid for sid, at in expected[kind].items() if end < at + margin}
            got = raised[kind]
            fig.alerts_expected[kind] = len(want)
            fig.alerts_raised_expected[kind] = sum(1 for sid in want if sid in got)
            fig.alerts_missed[kind] = sum(1 for sid in want if sid not in got)
            fig.alerts_borderline[kind] = len(borderline)
            fig.alerts_spurious[kind] = sum(
                1 for sid, opened in got.items()
                if sid not in borderline and (sid not in expected[kind]
                                              or opened < expected[kind][sid]))

    # the lists the loop fills, set up here so __init__ stays about the scenario
    _pending: list[tuple[datetime, str, Sandbox, str]]
    _reserve_wall: list[float]


class LateApp:
    """An ASGI app whose target is set after the server starts: the webhook receiver needs
    the Runtime, and the Runtime needs the sandboxes' URLs."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes."""
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _describe_url(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


# -- databases -------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def fresh_database(url: str | None, workdir: Path, label: str) -> AsyncIterator[str]:
    """A database no other run has touched: a new SQLite file, or a new database on the
    given PostgreSQL server (dropped afterwards)."""
    if url is None or url.startswith("sqlite"):
        folder = workdir if url is None else Path(url.split(":///", 1)[1]).parent
        stem = "simulate" if url is None else Path(url.split(":///", 1)[1]).stem
        path = folder / f"{stem}-{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 (set-up, once)
        yield f"sqlite:///{path}"
        return
    from sqlalchemy import create_engine as create_sync_engine
    from sqlalchemy import text

    name = f"erpsync_sim_{uuid.uuid4().hex[:8]}"
    admin_url = url.replace("+asyncpg", "")
    admin = create_sync_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


async def simulate(spec: SimulationSpec, workdir: Path) -> RunFigures:
    """One run in `workdir`, on a fresh database."""
    label = f"{spec.mode}-{spec.faults.name}".replace("=", "").replace(",", "_")[:40]
    async with fresh_database(spec.database_url, workdir, label) as url:
        simulation = Simulation(spec, workdir, url)
        simulation._pending = []
        simulation._reserve_wall = []
        return await simulation.run()


def run_all(specs: Sequence[SimulationSpec], workdir: Path | None = None,
            on_run: Callable[[RunFigures], None] | None = None) -> list[RunFigures]:
    """Run every spec in turn (one event loop each), quietly: the daemon's own logs (and
    the log alert sink) would drown the terminal; the report counts what went wrong."""
    import os

    import structlog

    from core.logs import configure

    before = structlog.get_config()
    folder = workdir or Path(tempfile.mkdtemp(prefix="erpsync-simulate-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    with open(os.devnull, "w") as sink:
        configure(json=True, level=logging.ERROR, stream=sink)
        try:
            for spec in specs:
                figures = asyncio.run(simulate(spec, folder))
                results.append(figures)
                if on_run is not None:
                    on_run(figures)
        finally:
            structlog.configure(**before)
    if workdir is None:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def dump(results: Sequence[RunFigures]) -> str:
    return json.dumps([r.to_json() for r in results], ensure_ascii=False, indent=1,
                      default=str)


__all__ = ["FaultMix", "RunFigures", "SimulationSpec", "run_all", "simulate"]
