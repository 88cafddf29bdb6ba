"""Shipping: carrier choice, shipments (one at a time or imported from a file), the
tracking push-back they cause, and the alerts a shipment's life raises.

`ship()` records a Shipment, consumes the shipped lines' reservations and writes an outbox
task that pushes the tracking number to the order's platform — all in one transaction, so a
shipment is never recorded without its push, nor pushed twice.

An import (`plan_shipments` + `apply_shipments`) checks every row before it changes
anything: a warehouse uploading 300 waybills wants the list of the 4 bad lines, not 296
shipments and a half-finished file to untangle.

`check_shipments()` opens and resolves the shipping alerts, thresholds from `[shipping]` in
rules.toml, every clock reading from `rt.clock`:

    tracking_push_late   the platform has not confirmed the waybill `tracking_push_within`
                         (2 h) after shipping
    ship_overdue         paid and approved, not shipped `ship_within` (24 h) after payment,
                         `ship_within_promo` (48 h) for a shop in promo mode, later for a
                         presale line promised later
    not_collected        no courier scan `not_collected_after` (24 h) after shipping
    shipment_stalled     no new tracking event for `stall_after` (48 h), carrier event time
    delivery_exception   the parcel is in trouble: problem (疑难), refused, returning, returned

One alert per (kind, subject) — `shipment:<id>` or `order:<id>` — and per *episode*: each
finding carries the moment its condition started (`since`: the shipping time, the payment,
the last event), and an alert already raised for that episode is never raised again, even
after an operator closed it by hand while the condition still held. A stall after a newer
event is a new episode and alerts again. Conditions that clear resolve their alert here, or
earlier where the clearing happens (a new event in core.tracking, a successful push in
core.senders, the last line shipped in `ship()`).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.alerts import open_alert, resolve_alert
from core.carriers import CARRIERS, tracking_matches
from core.clock import format_beijing
from core.config import parse_duration
from core.connector import CarrierTable
from core.db import transaction
from core.errors import ConfigError, UnmappedCarrier
from core.inventory import StockPool
from core.model import Alert, Order, OrderEvent, OrderLine, Shipment, Shop, Sku
from core.outbox import enqueue
from core.publishing import Publisher
from core.records import Capability, LineStatus, OrderStatus, TrackingStatus

if TYPE_CHECKING:
    from core.runtime import Runtime

SHIPPABLE = {OrderStatus.PAID, OrderStatus.APPROVED, OrderStatus.ON_HOLD}
SHIPPED = {OrderStatus.SHIPPED, OrderStatus.COMPLETED}
# a parcel in one of these states needs someone to act (call the carrier, the buyer)
EXCEPTION_STATUSES = frozenset({TrackingStatus.PROBLEM, TrackingStatus.REFUSED,
                                TrackingStatus.RETURNING, TrackingStatus.RETURNED})
SHIPPING_ALERTS = ("tracking_push_late", "ship_overdue")
TRACKING_ALERTS = ("not_collected", "shipment_stalled", "delivery_exception")


class ShippingError(ValueError):
    pass


# -- rules ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShippingRules:
    """`[shipping]` in rules.toml. Durations like "24h", "30m", "60d"."""

    ship_within: timedelta = timedelta(hours=24)
    ship_within_promo: timedelta = timedelta(hours=48)
    tracking_push_within: timedelta = timedelta(hours=2)
    stall_after: timedelta = timedelta(hours=48)
    not_collected_after: timedelta = timedelta(hours=24)
    # how often one parcel is asked about; the provider's own minimum wins if longer
    tracking_poll: timedelta = timedelta(minutes=30)
    # a parcel the provider pushes updates for is polled only as a net for lost pushes
    tracking_poll_subscribed: timedelta = timedelta(hours=6)
    # parcels shipped longer ago are no longer polled (Kuaidi100 gives up after 60 days)
    tracking_max_age: timedelta = timedelta(days=60)

    @classmethod
    def from_rules(cls, rules: Mapping[str, Any], file: str = "rules.toml") -> ShippingRules:
        """Raise ConfigError naming the first bad key."""
        table = rules.get("shipping", {})
        if not isinstance(table, Mapping):
            raise ConfigError(file, "shipping", "expected a table")
        known = set(cls.__dataclass_fields__)
        for key in table:
            if key not in known:
                raise ConfigError(file, f"shipping.{key}",
                                  f"unknown key (known: {', '.join(sorted(known))})")
        values: dict[str, timedelta] = {}
        for key in known & set(table):
            try:
                values[key] = parse_duration(table[key])
            except ValueError as exc:
                raise ConfigError(file, f"shipping.{key}", str(exc)) from None
        return cls(**values)


def shipping_rules(rt: Runtime) -> ShippingRules:
    return ShippingRules.from_rules(rt.rules_data, str(rt.config.rules_file))


# -- carrier choice ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CarrierChoice:
    carrier: str
    rule: str  # stored on the shipment: why this carrier


def choose_carrier(rules: Mapping[str, Any], *, province: str, bulky: bool,
                   shop: str = "") -> CarrierChoice:
    """bulky → postal; remote regions → wide coverage; 江浙沪 → next day; else default.
    `[carriers.shops.<shop>]` replaces any of the four for one shop; the rule then says so
    (`next_day_region/shop`), so a shipment shows which table decided."""
    carriers = rules.get("carriers", {})
    overrides = carriers.get("shops", {}).get(shop, {}) if shop else {}
    regions = rules.get("regions", {})

    def pick(slot: str, fallback: str, rule: str) -> CarrierChoice:
        if slot in overrides:
            return CarrierChoice(str(overrides[slot]), f"{rule}/shop")
        return CarrierChoice(str(carriers.get(slot, fallback)), rule)

    if bulky:
        return pick("bulky", "POSTB", "bulky")
    if any(r in province for r in regions.get("remote", [])):
        return pick("remote", "YUNDA", "remote_region")
    if any(r in province for r in regions.get("next_day", [])):
        return pick("next_day", "ZTO", "next_day_region")
    return pick("default", "YTO", "default")


async def choose_carrier_for(session: AsyncSession, rules: Mapping[str, Any], *, order_id: int,
                             line_ids: Sequence[int] = (), shop: str = "") -> CarrierChoice:
    """The rules applied to an order: its province, and bulky when any SKU in the parcel
    (the named lines, else every open line) is bulky."""
    order = await session.scalar(select(Order).where(Order.id == order_id)
                                 .options(selectinload(Order.lines)))
    if order is None:
        raise ShippingError(f"no order with id {order_id}")
    chosen = set(line_ids) or {line.id for line in order.lines
                               if line.status == LineStatus.OPEN}
    sku_ids = {line.sku_id for line in order.lines if line.id in chosen and line.sku_id}
    bulky = bool(sku_ids) and bool(await session.scalar(
        select(func.count()).select_from(Sku).where(Sku.id.in_(sku_ids), Sku.bulky.is_(True))))
    return choose_carrier(rules, province=order.province, bulky=bulky, shop=shop)


# -- shipping ------------------------------------------------------------------------------------
async def ship(session: AsyncSession, *, order_id: int, carrier: str, tracking_number: str,
               line_ids: Sequence[int] = (), carriers: CarrierTable, pool: StockPool,
               publisher: Publisher, now: datetime, rule: str = "operator",
               check_format: bool = True, partial_ship: bool = True) -> Shipment:
    """Ship lines of an order (all open lines when `line_ids` is empty).

    `rule`: why this carrier (a CarrierChoice's rule, "operator", "import").
    `partial_ship`: whether the platform ships single lines (Capability.PARTIAL_SHIP);
    without it, `line_ids` must name every open line."""
    if carrier not in CARRIERS:
        raise ShippingError(f"unknown carrier {carrier!r}; known: {', '.join(sorted(CARRIERS))}")
    carriers.to_platform(carrier)  # raises UnmappedCarrier before anything is stored
    if check_format and not tracking_matches(carrier, tracking_number):
        raise ShippingError(f"tracking number {tracking_number!r} does not look like a "
                            f"{CARRIERS[carrier].name} waybill")
    order = await session.scalar(select(Order).where(Order.id == order_id)
                                 .options(selectinload(Order.lines)))
    if order is None:
        raise ShippingError(f"no order with id {order_id}")
    status = OrderStatus(order.status)
    if status in SHIPPED:
        raise ShippingError(f"order {order.platform_order_id} is already shipped")
    if status not in SHIPPABLE:
        raise ShippingError(f"order {order.platform_order_id} is {status}, not waiting to ship")
    open_lines = {line.id: line for line in order.lines if line.status == LineStatus.OPEN}
    chosen = list(line_ids) or list(open_lines)
    unknown = [i for i in chosen if i not in open_lines]
    if unknown:
        raise ShippingError(f"lines {unknown} of order {order.platform_order_id} are not open")
    if not chosen:
        raise ShippingError(f"order {order.platform_order_id} has nothing left to ship")
    if not partial_ship and set(chosen) != set(open_lines):
        raise ShippingError(f"{carriers.platform} ships whole orders only: order "
                            f"{order.platform_order_id} has {len(open_lines)} open lines, "
                            f"{len(chosen)} named")
    if order.backorder:
        raise ShippingError(f"order {order.platform_order_id} is backordered: stock is not "
                            "reserved for it yet")
    if await session.scalar(select(Shipment.id).where(
            Shipment.order_id == order.id, Shipment.tracking_number == tracking_number)):
        raise ShippingError(f"order {order.platform_order_id} already carries waybill "
                            f"{tracking_number}")
    shipment = Shipment(order_id=order.id, carrier=carrier, tracking_number=tracking_number,
                        line_ids=sorted(chosen), carrier_rule=rule[:64], shipped_at=now,
                        push_state="pending")
    session.add(shipment)
    for line_id in chosen:
        open_lines[line_id].status = LineStatus.SHIPPED.value
    changed = await pool.ship_lines(session, chosen, reference=f"shipment:{tracking_number}",
                                    now=now)
    if all(line.status != LineStatus.OPEN for line in order.lines):
        session.add(OrderEvent(order_id=order.id, from_status=order.status,
                               to_status=OrderStatus.SHIPPED.value, source="operator", at=now))
        order.status = OrderStatus.SHIPPED.value
        await resolve_alert(session, "ship_overdue", f"order:{order.id}", now)
    order.updated_at = now
    await session.flush()
    await enqueue(session, kind="ship", shop_id=order.shop_id, target=str(order.id),
                  dedup_key=f"shipment:{shipment.id}", payload={"shipment_id": shipment.id},
                  version=1, now=now, priority=0)
    await publisher.publish(session, changed, now)
    return shipment


# -- import --------------------------------------------------------------------------------------
IMPORT_COLUMNS = ("order", "carrier", "tracking", "lines", "shop")
IMPORT_REQUIRED = ("order", "carrier", "tracking")
_LINE_SEPARATORS = re.compile(r"[;,|\s]+")


@dataclass(frozen=True, slots=True)
class ShipmentRow:
    line: int  # line number in the file (the header is line 1)
    order: str
    carrier: str
    tracking: str
    lines: tuple[str, ...] = ()  # platform line ids; empty: every open line
    shop: str = ""


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class PlannedShipment:
    row: ShipmentRow
    order_id: int
    shop: str
    line_ids: tuple[int, ...]  # order_lines.id; empty: every open line
    partial_ship: bool


@dataclass(slots=True)
class ImportPlan:
    ready: list[PlannedShipment] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def bad_lines(self) -> list[int]:
        return sorted({p.line for p in self.problems})


def read_shipments_csv(text: str) -> tuple[list[ShipmentRow], list[RowProblem]]:
    """Rows of a shipments CSV (columns order, carrier, tracking, [lines], [shop]); `lines`
    holds platform line ids separated by `;`, `|`, spaces or (quoted) commas."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        return [], [RowProblem(1, "the file is empty")]
    names = [h.strip().lower() for h in header]
    problems = [RowProblem(1, f"unknown column {n!r} (columns: {', '.join(IMPORT_COLUMNS)})")
                for n in names if n not in IMPORT_COLUMNS]
    problems += [RowProblem(1, f"missing column {n!r}") for n in IMPORT_REQUIRED
                 if n not in names]
    if problems:
        return [], problems
    rows: list[ShipmentRow] = []
    for number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(names):
            problems.append(RowProblem(number, f"{len(values)} values for {len(names)} columns"))
            continue
        record = {n: (values[i].strip() if i < len(values) else "") for i, n in enumerate(names)}
        missing = [n for n in IMPORT_REQUIRED if not record[n]]
        if missing:
            problems.append(RowProblem(number, f"{', '.join(missing)} is empty"))
            continue
        rows.append(ShipmentRow(
            line=number, order=record["order"], carrier=record["carrier"].upper(),
            tracking=record["tracking"].replace(" ", ""),
            lines=tuple(x for x in _LINE_SEPARATORS.split(record.get("lines", "")) if x),
            shop=record.get("shop", "")))
    return rows, problems


async def plan_shipments(rt: Runtime, rows: Sequence[ShipmentRow]) -> ImportPlan:
    """Check every row against the carriers, the platforms and the order book; nothing is
    written. A row is ready only when nothing is wrong with it."""
    plan = ImportPlan()
    first_use: dict[str, int] = {}
    claimed: dict[int, dict[int, int]] = {}  # order id -> line id -> file line shipping it
    async with rt.sessions() as session:
        for row in rows:
            problems: list[str] = []

            def problem(message: str, problems: list[str] = problems) -> None:
                problems.append(message)

            known_carrier = row.carrier in CARRIERS
            if not known_carrier:
                problem(f"unknown carrier {row.carrier!r}")
            elif not tracking_matches(row.carrier, row.tracking):
                problem(f"tracking number {row.tracking!r} does not look like a "
                        f"{CARRIERS[row.carrier].name} waybill")
            if row.tracking in first_use:
                problem(f"waybill {row.tracking} is also on line {first_use[row.tracking]}")
            else:
                first_use[row.tracking] = row.line
            planned = await _plan_row(rt, session, row, known_carrier, claimed, problem)
            if problems:
                plan.problems += [RowProblem(row.line, m) for m in problems]
            elif planned is not None:
                plan.ready.append(planned)
    return plan


async def _plan_row(rt: Runtime, session: AsyncSession, row: ShipmentRow, known_carrier: bool,
                    claimed: dict[int, dict[int, int]],
                    problem: Callable[[str], None]) -> PlannedShipment | None:
    if row.shop and row.shop not in rt.shop_ids:
        problem(f"unknown shop {row.shop!r}")
        return None
    query = select(Order).where(Order.platform_order_id == row.order).options(
        selectinload(Order.lines))
    if row.shop:
        query = query.where(Order.shop_id == rt.shop_ids[row.shop])
    found = list((await session.scalars(query)).all())
    if not found:
        problem(f"unknown order {row.order!r}" + (f" in shop {row.shop}" if row.shop else ""))
        return None
    if len(found) > 1:
        shops = ", ".join(sorted(_shop_name(rt, o.shop_id) for o in found))
        problem(f"order {row.order!r} exists in several shops ({shops}): add a shop column")
        return None
    order = found[0]
    shop = _shop_name(rt, order.shop_id)
    try:
        connector = rt.connector(shop)
    except KeyError:
        problem(f"shop {shop} is not configured")
        return None
    if known_carrier:
        try:
            connector.carrier_table().to_platform(row.carrier)
        except UnmappedCarrier:
            problem(f"carrier {row.carrier} is not mapped on {connector.platform} "
                    f"(shop {shop})")
    status = OrderStatus(order.status)
    if status in SHIPPED:
        problem(f"order {row.order} is already shipped")
        return None
    if status not in SHIPPABLE:
        problem(f"order {row.order} is {status}, not waiting to ship")
        return None
    if order.backorder:
        problem(f"order {row.order} is backordered: stock is not reserved for it yet")
    if await session.scalar(select(Shipment.id).where(
            Shipment.order_id == order.id, Shipment.tracking_number == row.tracking)):
        problem(f"order {row.order} already carries waybill {row.tracking}")
    by_platform_id = {line.platform_line_id: line for line in order.lines}
    open_ids = {line.id for line in order.lines if line.status == LineStatus.OPEN}
    unknown = [x for x in row.lines if x not in by_platform_id]
    if unknown:
        problem(f"order {row.order} has no line {', '.join(unknown)}")
        return None
    named = {by_platform_id[x].id for x in row.lines}
    closed = sorted(x for x in row.lines if by_platform_id[x].id not in open_ids)
    if closed:
        problem(f"lines {', '.join(closed)} of order {row.order} are not open "
                "(already shipped or cancelled)")
        return None
    parcel = named or open_ids
    if not parcel:
        problem(f"order {row.order} has nothing left to ship")
        return None
    taken = claimed.setdefault(order.id, {})
    overlap = sorted({taken[i] for i in parcel if i in taken})
    if overlap:
        problem(f"order {row.order} is also shipped on line "
                f"{', '.join(str(n) for n in overlap)}")
        return None
    partial = Capability.PARTIAL_SHIP in connector.capabilities
    if not partial and parcel != open_ids:
        problem(f"{connector.platform} ships whole orders only (no partial shipments): "
                f"name every open line of order {row.order} or none")
        return None
    taken.update(dict.fromkeys(parcel, row.line))
    return PlannedShipment(row=row, order_id=order.id, shop=shop,
                           line_ids=tuple(sorted(named)), partial_ship=partial)


async def apply_shipments(rt: Runtime, ready: Iterable[PlannedShipment]) -> list[int]:
    """Ship the planned rows in ONE transaction (all or none); the shipment ids. `ship()`
    checks each again: an order shipped by someone else since the plan fails the whole
    batch with ShippingError, naming the file line."""
    ids: list[int] = []
    async with transaction(rt.sessions) as session:
        for item in ready:
            try:
                shipment = await ship(
                    session, order_id=item.order_id, carrier=item.row.carrier,
                    tracking_number=item.row.tracking, line_ids=item.line_ids,
                    carriers=rt.connector(item.shop).carrier_table(), pool=rt.pool,
                    publisher=rt.publisher, now=rt.now(), rule="import",
                    partial_ship=item.partial_ship)
            except (ShippingError, UnmappedCarrier) as exc:
                raise ShippingError(f"line {item.row.line}: {exc}") from exc
            ids.append(shipment.id)
    return ids


def _shop_name(rt: Runtime, shop_id: int) -> str:
    try:
        return rt.shop_name(shop_id)
    except KeyError:
        return f"shop #{shop_id}"


# -- alerts --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Finding:
    """A condition that holds now; `since` is when its episode began."""

    kind: str
    subject: str
    since: datetime
    message: str
    details: Mapping[str, Any]


async def check_shipments(rt: Runtime) -> dict[str, int]:
    """Open the shipping alerts whose condition holds, resolve those whose condition
    cleared. Returns alerts opened per kind and `resolved`. The tracking alerts are checked
    only when a tracking provider is configured: without one every parcel would look
    uncollected."""
    rules = shipping_rules(rt)
    now = rt.now()
    kinds: tuple[str, ...] = SHIPPING_ALERTS
    tracked = bool(rt.config.tracking.get("provider"))
    if tracked:
        kinds += TRACKING_ALERTS
    async with transaction(rt.sessions) as session:
        findings = await _push_late(session, rules, now)
        findings += await _ship_overdue(session, rules, now)
        if tracked:
            findings += await _parcel_findings(session, rules, now)
        return await _reconcile(session, kinds, findings, now)


async def _push_late(session: AsyncSession, rules: ShippingRules,
                     now: datetime) -> list[Finding]:
    rows = (await session.execute(
        select(Shipment.id, Shipment.shipped_at, Shipment.push_state, Shipment.push_error,
               Shipment.carrier, Shipment.tracking_number, Order.id, Order.platform_order_id,
               Shop.name)
        .join(Order, Order.id == Shipment.order_id).join(Shop, Shop.id == Order.shop_id)
        .where(Shipment.push_state != "pushed",
               Shipment.shipped_at <= now - rules.tracking_push_within))).all()
    found = []
    for sid, shipped_at, state, error, carrier, number, order_id, poid, shop in rows:
        hours = _hours(now - shipped_at)
        found.append(Finding(
            "tracking_push_late", f"shipment:{sid}", shipped_at,
            f"{shop} order {poid}: waybill {carrier} {number} was shipped {hours} ago and "
            f"the platform has not confirmed it (push {state}"
            + (f": {error}" if error else "") + "); the buyer gets no tracking text",
            {"shipment_id": sid, "order_id": order_id, "shop": shop, "carrier": carrier,
             "tracking_number": number}))
    return found


async def _ship_overdue(session: AsyncSession, rules: ShippingRules,
                        now: datetime) -> list[Finding]:
    open_lines = (select(OrderLine.order_id.label("order_id"),
                         func.max(OrderLine.presale_ship_by).label("promised"))
                  .where(OrderLine.status == LineStatus.OPEN.value)
                  .group_by(OrderLine.order_id).subquery())
    earliest = now - min(rules.ship_within, rules.ship_within_promo)
    rows = (await session.execute(
        select(Order.id, Order.platform_order_id, Order.paid_at, Order.backorder, Shop.name,
               Shop.settings, open_lines.c.promised)
        .join(open_lines, open_lines.c.order_id == Order.id)
        .join(Shop, Shop.id == Order.shop_id)
        .where(Order.status == OrderStatus.APPROVED.value, Order.paid_at.is_not(None),
               Order.paid_at <= earliest))).all()
    found = []
    for order_id, poid, paid_at, backorder, shop, settings, promised in rows:
        promo = bool((settings or {}).get("promo_mode"))
        deadline = paid_at + (rules.ship_within_promo if promo else rules.ship_within)
        if promised is not None:
            deadline = max(deadline, promised)
        if now < deadline:
            continue
        found.append(Finding(
            "ship_overdue", f"order:{order_id}", paid_at,
            f"{shop} order {poid} was paid {_hours(now - paid_at)} ago and is not shipped "
            f"(ship by {format_beijing(deadline)} Beijing"
            + (", promo mode" if promo else "") + (", backordered" if backorder else "")
            + ")",
            {"order_id": order_id, "shop": shop, "deadline": deadline.isoformat(),
             "promo_mode": promo}))
    return found


async def _parcel_findings(session: AsyncSession, rules: ShippingRules,
                           now: datetime) -> list[Finding]:
    pending = TrackingStatus.PENDING.value
    troubled = [s.value for s in EXCEPTION_STATUSES]
    rows = (await session.execute(
        select(Shipment, Order.platform_order_id, Shop.name)
        .join(Order, Order.id == Shipment.order_id).join(Shop, Shop.id == Order.shop_id)
        .where(or_(
            and_(Shipment.final.is_(False), Shipment.tracking_status == pending,
                 Shipment.shipped_at <= now - rules.not_collected_after),
            and_(Shipment.final.is_(False), Shipment.tracking_status != pending,
                 Shipment.last_event_at <= now - rules.stall_after),
            and_(Shipment.tracking_status.in_(troubled),
                 or_(Shipment.final.is_(False),
                     Shipment.last_event_at >= now - rules.tracking_max_age)))))).all()
    found = []
    for shipment, poid, shop in rows:
        subject = f"shipment:{shipment.id}"
        parcel = f"{shipment.carrier} {shipment.tracking_number}"
        details = {"shipment_id": shipment.id, "order_id": shipment.order_id, "shop": shop,
                   "carrier": shipment.carrier, "tracking_number": shipment.tracking_number,
                   "tracking_status": shipment.tracking_status}
        last = shipment.last_event_at
        if shipment.tracking_status == pending:
            if not shipment.final and shipment.shipped_at <= now - rules.not_collected_after:
                found.append(Finding(
                    "not_collected", subject, shipment.shipped_at,
                    f"{shop} order {poid}: {parcel} was shipped "
                    f"{_hours(now - shipment.shipped_at)} ago and the courier has not "
                    "scanned it: check the hand-over with the carrier", details))
            continue
        if last is None:
            continue
        if not shipment.final and last <= now - rules.stall_after:
            found.append(Finding(
                "shipment_stalled", subject, last,
                f"{shop} order {poid}: {parcel} has had no tracking update for "
                f"{_hours(now - last)} (last: {shipment.tracking_status} at "
                f"{format_beijing(last)} Beijing): contact the carrier and tell the buyer",
                details))
        if TrackingStatus(shipment.tracking_status) in EXCEPTION_STATUSES:
            found.append(Finding(
                "delivery_exception", subject, last,
                f"{shop} order {poid}: {parcel} is {shipment.tracking_status} since "
                f"{format_beijing(last)} Beijing: contact the carrier and the buyer",
                details))
    return found


async def _reconcile(session: AsyncSession, kinds: Sequence[str], findings: Sequence[Finding],
                     now: datetime) -> dict[str, int]:
    holding = {(f.kind, f.subject) for f in findings}
    open_now = set((await session.execute(
        select(Alert.kind, Alert.subject).where(Alert.open_key.is_not(None),
                                                Alert.kind.in_(kinds)))).all())
    counts: dict[str, int] = dict.fromkeys(kinds, 0)
    resolved = 0
    for kind, subject in sorted(open_now - holding):
        resolved += await resolve_alert(session, kind, subject, now)
    fresh = [f for f in findings if (f.kind, f.subject) not in open_now]
    raised = await _episodes_alerted(session, fresh)
    opened: Counter[str] = Counter()
    for finding in fresh:
        since = finding.since.isoformat()
        if since in raised.get((finding.kind, finding.subject), set()):
            continue  # alerted once for this episode: an operator closed it, it stays closed
        if await open_alert(session, finding.kind, finding.subject, finding.message, now,
                            {**finding.details, "since": since}):
            opened[finding.kind] += 1
    counts.update(opened)
    counts["resolved"] = resolved
    return counts


async def _episodes_alerted(session: AsyncSession,
                            findings: Sequence[Finding]) -> dict[tuple[str, str], set[str]]:
    """(kind, subject) -> the `since` of every alert ever raised for it."""
    raised: dict[tuple[str, str], set[str]] = {}
    by_kind: dict[str, list[str]] = {}
    for finding in findings:
        by_kind.setdefault(finding.kind, []).append(finding.subject)
    for kind, subjects in by_kind.items():
        for start in range(0, len(subjects), 500):
            rows = (await session.execute(select(Alert.subject, Alert.details).where(
                Alert.kind == kind, Alert.subject.in_(subjects[start:start + 500])))).all()
            for subject, details in rows:
                since = (details or {}).get("since")
                if since:
                    raised.setdefault((kind, subject), set()).add(str(since))
    return raised


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 10 else f"{hours:.1f} h"
