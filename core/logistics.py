"""Shipping: carrier choice, shipments, and the tracking push-back they cause.

`ship()` records a Shipment, consumes the shipped lines' reservations and writes an outbox
task that pushes the tracking number to the order's platform — all in one transaction, so a
shipment is never recorded without its push, nor pushed twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.carriers import CARRIERS, tracking_matches
from core.connector import CarrierTable
from core.inventory import StockPool
from core.model import Order, OrderEvent, Shipment
from core.outbox import enqueue
from core.publishing import Publisher
from core.records import LineStatus, OrderStatus

SHIPPABLE = {OrderStatus.PAID, OrderStatus.APPROVED, OrderStatus.ON_HOLD}


class ShippingError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CarrierChoice:
    carrier: str
    rule: str


def choose_carrier(rules: Mapping[str, Any], *, province: str, bulky: bool,
                   shop: str = "") -> CarrierChoice:
    """bulky → postal; remote regions → wide coverage; 江浙沪 → next day; else default.
    Per-shop overrides replace any of the four carriers."""
    carriers = dict(rules.get("carriers", {}))
    carriers.update(carriers.get("shops", {}).get(shop, {}))
    regions = rules.get("regions", {})
    if bulky:
        return CarrierChoice(carriers.get("bulky", "POSTB"), "bulky")
    if any(r in province for r in regions.get("remote", [])):
        return CarrierChoice(carriers.get("remote", "YUNDA"), "remote_region")
    if any(r in province for r in regions.get("next_day", [])):
        return CarrierChoice(carriers.get("next_day", "ZTO"), "next_day_region")
    return CarrierChoice(carriers.get("default", "YTO"), "default")


async def ship(session: AsyncSession, *, order_id: int, carrier: str, tracking_number: str,
               line_ids: Sequence[int] = (), carriers: CarrierTable, pool: StockPool,
               publisher: Publisher, now: datetime, rule: str = "operator",
               check_format: bool = True) -> Shipment:
    """Ship lines of an order (all open lines when `line_ids` is empty)."""
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
    if status not in SHIPPABLE:
        raise ShippingError(f"order {order.platform_order_id} is {status}, not waiting to ship")
    open_lines = {line.id: line for line in order.lines if line.status == LineStatus.OPEN}
    chosen = list(line_ids) or list(open_lines)
    unknown = [i for i in chosen if i not in open_lines]
    if unknown:
        raise ShippingError(f"lines {unknown} of order {order.platform_order_id} are not open")
    if not chosen:
        raise ShippingError(f"order {order.platform_order_id} has nothing left to ship")
    if order.backorder:
        raise ShippingError(f"order {order.platform_order_id} is backordered: stock is not "
                            "reserved for it yet")
    shipment = Shipment(order_id=order.id, carrier=carrier, tracking_number=tracking_number,
                        line_ids=sorted(chosen), carrier_rule=rule, shipped_at=now,
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
    order.updated_at = now
    await session.flush()
    await enqueue(session, kind="ship", shop_id=order.shop_id, target=str(order.id),
                  dedup_key=f"shipment:{shipment.id}", payload={"shipment_id": shipment.id},
                  version=1, now=now, priority=0)
    await publisher.publish(session, changed, now)
    return shipment
