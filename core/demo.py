"""`erpsync demo`: sandbox shops on 127.0.0.1, a seeded catalogue and order stream, and the
real sync running against them on SQLite. Deterministic: the same seed gives the same
sandbox data, so a second run ingests nothing twice.

With `[tracking] provider = "kuaidi100"` and `sandbox = true`, the provider's sandbox carries
the shipped parcels: each gets a scripted journey by its shipment id (delivered, stalled,
a delivery problem, refused, never collected), started before the shipment so that some
parcels have honestly seen no scan for more than 48 h by the time the real tracking poll
and the real alert checks look at them."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import func, select

from core.alerting import deliver_alerts
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.config import Config
from core.db import transaction, upgrade
from core.logistics import ShippingError, check_shipments, choose_carrier_for, ship
from core.model import Alert, Order, OutboxTask, Shipment, Sku, StockLevel, TrackingEvent
from core.pull import pull_orders
from core.records import Capability, OrderStatus
from core.runtime import Runtime, SandboxBinding
from core.sandbox import Sandbox, SoldOut, serve
from core.senders import OutboxWorker
from core.tracking import TRACKING_SANDBOX, poll_tracking

CATALOGUE = (
    ProductSpec("TEE-001", "纯棉短袖T恤 夏季百搭", (
        SkuSpec("TEE-001-M", 9900, {"尺码": "M"}), SkuSpec("TEE-001-L", 12900, {"尺码": "L"}))),
    ProductSpec("MUG-002", "陶瓷马克杯 办公室咖啡杯", (SkuSpec("MUG-002", 3900),)),
    ProductSpec("GIFT-003", "新春坚果礼盒 送礼大礼包", (SkuSpec("GIFT-003", 15900, bulky=True),)),
    ProductSpec("SOCK-004", "中筒运动袜 五双装", (
        SkuSpec("SOCK-004-BLK", 2900, {"颜色": "黑"}), SkuSpec("SOCK-004-WHT", 2900, {"颜色": "白"}))),
    ProductSpec("LAMP-005", "北欧风护眼台灯", (SkuSpec("LAMP-005", 19900),)),
)
OPENING_STOCK = {"TEE-001-M": 40, "TEE-001-L": 30, "MUG-002": 25, "GIFT-003": 10,
                 "SOCK-004-BLK": 60, "SOCK-004-WHT": 60, "LAMP-005": 2}
ADDRESSES = (
    {"province": "浙江省", "city": "杭州市", "district": "西湖区", "detail": "文三路 100 号"},
    {"province": "上海市", "city": "上海市", "district": "浦东新区", "detail": "世纪大道 88 号 5 楼"},
    {"province": "北京市", "city": "北京市", "district": "朝阳区", "detail": "建国路 12 号院 3 栋"},
    {"province": "新疆维吾尔自治区", "city": "乌鲁木齐市", "district": "天山区",
     "detail": "解放南路 21 号"},
    {"province": "广东省", "city": "深圳市", "district": "南山区", "detail": "科技园公司前台"},
    {"province": "江苏省", "city": "南京市", "district": "鼓楼区", "detail": "中山路 8 号"},
)
REMARKS = ("", "", "", "请尽快，加急", "不要放快递柜")
# parcel journeys by shipment id, and how long before the shipment each journey began:
# a stalled parcel left its origin hub 58 h ago, a problem parcel hit trouble an hour ago
JOURNEYS = (("normal", 40), ("stalled", 72), ("problem", 41), ("normal", 36),
            ("refused", 39), ("stalled", 66), ("normal", 20), ("never_collected", 0))


@dataclass(slots=True)
class DemoSummary:
    shops: int = 0
    orders_ingested: int = 0
    orders_updated: int = 0
    backordered: int = 0
    stock_pushes: int = 0
    tracking_pushes: int = 0
    shipped: int = 0
    failed_pushes: int = 0
    tracking_events: int = 0
    alerts_delivered: int = 0
    alerts: Counter[str] = field(default_factory=Counter)

    def rows(self) -> list[tuple[str, str]]:
        rows = [("shops", str(self.shops)), ("orders ingested (new)", str(self.orders_ingested)),
                ("orders updated", str(self.orders_updated)),
                ("orders backordered", str(self.backordered)),
                ("stock pushes", str(self.stock_pushes)),
                ("orders shipped", str(self.shipped)),
                ("tracking pushes", str(self.tracking_pushes)),
                ("failed pushes", str(self.failed_pushes)),
                ("tracking events", str(self.tracking_events)),
                ("shipments stalled", str(self.alerts["shipment_stalled"])),
                ("delivery exceptions", str(self.alerts["delivery_exception"])),
                ("alerts delivered", str(self.alerts_delivered))]
        rows += [(f"alerts open: {kind}", str(n)) for kind, n in sorted(self.alerts.items())]
        return rows


def build_sandboxes(config: Config, rt_registry: Any, seed: int) -> dict[str, Sandbox]:
    sandboxes: dict[str, Sandbox] = {}
    for index, shop in enumerate(config.shops):
        if not shop.sandbox or not shop.enabled:
            continue
        connector = rt_registry.connector(shop.platform)
        if connector.sandbox_class is None:
            continue
        sandbox = connector.sandbox_class(seed=seed + index)
        rng = random.Random(seed * 1000 + index)
        for product in CATALOGUE:
            listed = [(s.merchant_code, rng.randint(0, 50), s.price_fen) for s in product.skus]
            if len(product.skus) == 1:
                sku = product.skus[0]
                sandbox.add_item(product.title, sku.merchant_code, sku.price_fen,
                                 skus=[listed[0]])
            else:
                sandbox.add_item(product.title, product.merchant_code,
                                 min(s.price_fen for s in product.skus), skus=listed)
        sandboxes[shop.name] = sandbox
    return sandboxes


def place_orders(sandboxes: dict[str, Sandbox], seed: int, per_shop: int) -> None:
    codes = list(OPENING_STOCK)
    for index, (_, sandbox) in enumerate(sorted(sandboxes.items())):
        rng = random.Random(seed * 7919 + index)
        for _ in range(per_shop):
            lines = [(rng.choice(codes), rng.randint(1, 2)) for _ in range(rng.randint(1, 2))]
            merged: dict[str, int] = {}
            for code, qty in lines:
                merged[code] = merged.get(code, 0) + qty
            cart = list(merged.items())
            size = sandbox.max_lines_per_order or len(cart)
            paid, remark, address = rng.random() > 0.1, rng.choice(REMARKS), rng.choice(ADDRESSES)
            cancel = rng.random() < 0.1
            for start in range(0, len(cart), size):  # one order per line where the platform says so
                try:
                    order = sandbox.place_order(cart[start:start + size], paid=paid,
                                                buyer_remark=remark, address=address)
                except SoldOut:
                    continue
                if cancel:
                    sandbox.cancel(order.order_id)


async def seed_catalogue(rt: Runtime) -> None:
    now = rt.now()
    async with transaction(rt.sessions) as session:
        fresh = (await session.scalar(select(func.count()).select_from(StockLevel))) == 0
        for product in CATALOGUE:
            await upsert_product(session, product, now)
        if fresh:
            for code, quantity in OPENING_STOCK.items():
                sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
                assert sku is not None
                await rt.pool.change_on_hand(session, sku.id, "MAIN", quantity, kind="receipt",
                                             reason="opening stock", reference="demo",
                                             now=now)


async def ship_ready(rt: Runtime, rng: random.Random) -> int:
    """The warehouse ships approved orders: carrier by the rules, a waybill of its format."""
    shipped = 0
    async with rt.sessions() as session:
        ready = (await session.execute(
            select(Order.id, Order.shop_id).where(
                Order.status == OrderStatus.APPROVED.value, Order.backorder.is_(False))
            .order_by(Order.id))).all()
    for order_id, shop_id in ready:
        shop = rt.shop_name(shop_id)
        connector = rt.connector(shop)
        try:
            async with transaction(rt.sessions) as session:
                choice = await choose_carrier_for(session, rt.rules_data, order_id=order_id,
                                                  shop=shop)
                await ship(session, order_id=order_id, carrier=choice.carrier,
                           tracking_number=_waybill(choice.carrier, rng),
                           carriers=connector.carrier_table(), pool=rt.pool,
                           publisher=rt.publisher, now=rt.now(), rule=choice.rule,
                           partial_ship=Capability.PARTIAL_SHIP in connector.capabilities)
            shipped += 1
        except ShippingError:
            continue
    return shipped


def _waybill(carrier: str, rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(12))
    return {"ZTO": "75" + digits, "YTO": "YT" + digits + "1", "YUNDA": "43" + digits[:11],
            "POSTB": "9" + digits, "SF": "SF" + digits, "STO": "77" + digits[:11],
            "JT": "JT" + digits + "0", "EMS": "1" + digits}.get(carrier, "75" + digits)


@runtime_checkable
class ParcelSandbox(Protocol):
    """A tracking provider's sandbox that carries parcels along scripted journeys
    (connectors/kuaidi100/sandbox.py)."""

    parcels: dict[tuple[str, str], Any]

    def add_parcel(self, carrier_code: str, number: str, journey: str = "normal", *,
                   phone: str = "", start: datetime | None = None) -> Any: ...


async def hand_parcels_to_carriers(rt: Runtime, tracker: ParcelSandbox) -> int:
    """Every shipment's parcel appears in the tracking sandbox, its journey chosen by the
    shipment id and started relative to the shipping time, so a second demo run over the
    same database sees the very same scans."""
    added = 0
    carriers = rt.registry.tracking_provider(str(rt.config.tracking["provider"])).carriers
    async with rt.sessions() as session:
        rows = (await session.execute(
            select(Shipment.id, Shipment.carrier, Shipment.tracking_number, Shipment.shipped_at,
                   Order.receiver_phone)
            .join(Order, Order.id == Shipment.order_id).order_by(Shipment.id))).all()
    for shipment_id, carrier, number, shipped_at, phone in rows:
        com = carriers.to_platform(carrier)
        if (com, number) in tracker.parcels:
            continue
        journey, hours_before = JOURNEYS[(shipment_id - 1) % len(JOURNEYS)]
        tracker.add_parcel(carrier, number, journey, phone=phone,
                           start=shipped_at - timedelta(hours=hours_before))
        added += 1
    return added


async def run_cycle(rt: Runtime, summary: DemoSummary, rng: random.Random,
                    tracker: ParcelSandbox | None = None) -> None:
    worker = OutboxWorker(rt)
    for shop in rt.enabled_shops():
        # the demo placed its orders a moment ago: read up to now, not now − lag
        stats = await pull_orders(rt, shop.name, until=rt.now())
        summary.orders_ingested += stats.new
        summary.orders_updated += stats.updated
        summary.backordered += stats.backordered
    sent = await worker.drain(kinds=["stock"])
    summary.stock_pushes += sent.calls_by_kind.get("stock", 0)
    summary.failed_pushes += sent.failed
    summary.shipped += await ship_ready(rt, rng)
    sent = await worker.drain()
    summary.stock_pushes += sent.calls_by_kind.get("stock", 0)
    summary.failed_pushes += sent.failed
    if tracker is not None:
        await hand_parcels_to_carriers(rt, tracker)
        await poll_tracking(rt)
    await check_shipments(rt)
    summary.alerts_delivered += await deliver_alerts(rt)
    async with rt.sessions() as session:
        summary.tracking_pushes = int(await session.scalar(
            select(func.count()).select_from(OutboxTask).where(
                OutboxTask.kind == "ship", OutboxTask.state == "done")) or 0)
        summary.tracking_events = int(await session.scalar(
            select(func.count()).select_from(TrackingEvent)) or 0)


async def run_demo(config: Config, *, once: bool, seed: int = 11, orders_per_shop: int = 12,
                   interval: float = 10.0,
                   on_cycle: Callable[[DemoSummary], None] | None = None) -> DemoSummary:
    """One cycle with `once`; otherwise a new wave of orders and a cycle every `interval`
    seconds until cancelled (Ctrl-C)."""
    from core.plugins import Registry

    registry = Registry.discover()
    sandboxes = build_sandboxes(config, registry, seed)
    place_orders(sandboxes, seed, orders_per_shop)
    tracker = build_tracking_sandbox(config, registry, seed)
    served: dict[str, Sandbox] = dict(sandboxes)
    if tracker is not None:
        served[TRACKER_MOUNT] = tracker
    async with serve(served) as urls:
        bindings = {name: SandboxBinding(sb, urls[name]) for name, sb in sandboxes.items()}
        if tracker is not None:
            bindings[TRACKING_SANDBOX] = SandboxBinding(tracker, urls[TRACKER_MOUNT])
        rt = Runtime(config, registry=registry, sandboxes=bindings)
        try:
            await upgrade(rt.engine, config.database_url)
            await rt.sync_shops()
            await seed_catalogue(rt)
            from core.listings import pull_listings

            for shop in rt.enabled_shops():
                await pull_listings(rt, shop.name)
            summary = DemoSummary(shops=len(rt.enabled_shops()))
            rng = random.Random(seed)
            wave = 0
            while True:
                await run_cycle(rt, summary, rng,
                                tracker if isinstance(tracker, ParcelSandbox) else None)
                await _count_alerts(rt, summary)
                if once:
                    break
                if on_cycle is not None:
                    on_cycle(summary)
                await asyncio.sleep(interval)
                wave += 1
                place_orders(sandboxes, seed + wave, max(1, orders_per_shop // 4))
        finally:
            await rt.close()
    return summary


# where the tracking sandbox is served; ':' keeps it apart from any shop name
TRACKER_MOUNT = "tracking:sandbox"


def build_tracking_sandbox(config: Config, registry: Any, seed: int) -> Sandbox | None:
    """The provider's own sandbox when `[tracking] sandbox = true` and it carries parcels."""
    tracking = config.tracking
    if not tracking.get("provider") or tracking.get("sandbox") is not True:
        return None
    try:
        sandbox_class = registry.tracking_provider(str(tracking["provider"])).sandbox_class
    except KeyError:
        return None  # core.tracking names the unknown provider when the poll builds it
    if sandbox_class is None:
        return None
    sandbox: Sandbox = sandbox_class(seed=seed)
    return sandbox if isinstance(sandbox, ParcelSandbox) else None


async def _count_alerts(rt: Runtime, summary: DemoSummary) -> None:
    summary.alerts.clear()
    async with rt.sessions() as session:
        for kind, count in (await session.execute(
                select(Alert.kind, func.count()).where(Alert.open_key.is_not(None))
                .group_by(Alert.kind))).all():
            summary.alerts[kind] = count
