"""The order book: one idempotent path for every copy of an order, pulled or pushed.

`OrderBook.ingest` upserts an order by (shop, platform order id), moves its status only
forward, and applies the stock consequences in the same transaction:

* reaching paid reserves every line (all or nothing; short → backorder + `oversold` alert);
* cancel or refund before shipping releases what was reserved;
* lines the platform reports shipped consume their reservation;
* a refund after shipping changes no stock (returns arrive as a receipt).

An older copy (earlier platform modified time) never overwrites a newer one, and even a
newer copy never moves a status backwards: "paid" arriving after "cancelled" does not
resurrect the order. Every status change is recorded with its source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.alerts import open_alert, resolve_alert
from core.db import insert_for
from core.inventory import StockPool
from core.model import Order, OrderEvent, OrderLine, Sku
from core.publishing import Publisher
from core.records import LineStatus, OrderRecord, OrderStatus
from core.review import OrderFacts, ReviewRules, review

# rank for "forward only"; approved/on_hold are the review states of a paid order
RANK = {
    OrderStatus.UNPAID: 0, OrderStatus.PAID: 1, OrderStatus.APPROVED: 1,
    OrderStatus.ON_HOLD: 1, OrderStatus.SHIPPED: 2, OrderStatus.COMPLETED: 3,
    OrderStatus.CANCELLED: 4, OrderStatus.REFUNDED: 4,
}
TERMINAL = {OrderStatus.CANCELLED, OrderStatus.REFUNDED}
PAID_STATES = {OrderStatus.PAID, OrderStatus.APPROVED, OrderStatus.ON_HOLD}
LINE_RANK = {LineStatus.OPEN: 0, LineStatus.SHIPPED: 1, LineStatus.CANCELLED: 2,
             LineStatus.REFUNDED: 2}


def next_status(current: OrderStatus, incoming: OrderStatus) -> OrderStatus:
    """The status after seeing `incoming`; never backwards, terminal stays terminal
    (a refund after completion is forward: completed → refunded)."""
    if current in TERMINAL:
        return current
    if RANK[incoming] > RANK[current]:
        return incoming
    return current


@dataclass(slots=True)
class IngestResult:
    new: int = 0
    updated: int = 0
    stale: int = 0
    unchanged: int = 0
    reserved: int = 0
    backordered: int = 0
    changed_skus: set[int] = field(default_factory=set)


class OrderBook:
    def __init__(self, pool: StockPool, publisher: Publisher, rules: ReviewRules) -> None:
        self.pool = pool
        self.publisher = publisher
        self.rules = rules

    async def ingest(self, session: AsyncSession, shop_id: int, records: Sequence[OrderRecord],
                     *, source: str, now: datetime) -> IngestResult:
        """Upsert a batch of orders of one shop in the caller's transaction."""
        result = IngestResult()
        if not records:
            return result
        # the newest copy of each order in the batch wins within the batch too
        newest: dict[str, OrderRecord] = {}
        for record in records:
            seen = newest.get(record.platform_order_id)
            if seen is None or record.modified_at >= seen.modified_at:
                newest[record.platform_order_id] = record
        codes = {line.merchant_code for r in newest.values() for line in r.lines if line.merchant_code}
        sku_ids = dict((await session.execute(
            select(Sku.merchant_code, Sku.id).where(Sku.merchant_code.in_(codes)))).all()) if codes else {}
        for record in newest.values():
            await self._ingest_one(session, shop_id, record, sku_ids, source, now, result)
        if result.changed_skus:
            await self.serve_backorders(session, set(result.changed_skus), now, result)
            await self.publisher.publish(session, result.changed_skus, now)
        return result

    async def _ingest_one(self, session: AsyncSession, shop_id: int, record: OrderRecord,
                          sku_ids: dict[str, int], source: str, now: datetime,
                          result: IngestResult) -> None:
        order = await self._load(session, shop_id, record.platform_order_id)
        if order is None:
            inserted = await session.execute(insert_for(session, Order).values(
                shop_id=shop_id, platform_order_id=record.platform_order_id,
                status=OrderStatus.UNPAID.value, platform_status=record.platform_status,
                platform_created_at=record.created_at, platform_modified_at=record.modified_at,
                paid_at=record.paid_at, total_fen=record.total_fen, paid_fen=record.paid_fen,
                post_fee_fen=record.post_fee_fen, currency=record.currency,
                buyer_remark=record.buyer_remark, seller_remark=record.seller_remark,
                province=record.address.province, city=record.address.city,
                district=record.address.district, address_detail=record.address.detail,
                receiver_name=record.address.name, receiver_phone=record.address.phone,
                ingested_at=now, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["shop_id", "platform_order_id"]))
            order = await self._load(session, shop_id, record.platform_order_id)
            assert order is not None
            if inserted.rowcount:  # type: ignore[attr-defined]
                result.new += 1
                await self._add_lines(session, order, record, sku_ids)
                session.add(OrderEvent(order_id=order.id, from_status="",
                                       to_status=OrderStatus.UNPAID.value, source=source,
                                       note="first seen", at=now))
                await session.flush()
                await session.refresh(order, ["lines"])
            else:
                result.unchanged += 1  # a concurrent copy inserted it; apply ours as an update
        elif record.modified_at < order.platform_modified_at:
            result.stale += 1
            return
        else:
            result.updated += 1
            await self._add_lines(session, order, record, sku_ids)  # lines the platform added
        await self._apply(session, order, record, source, now, result)

    async def _load(self, session: AsyncSession, shop_id: int, platform_order_id: str) -> Order | None:
        return await session.scalar(
            select(Order).where(Order.shop_id == shop_id,
                                Order.platform_order_id == platform_order_id)
            .options(selectinload(Order.lines)).execution_options(populate_existing=True))

    async def _add_lines(self, session: AsyncSession, order: Order, record: OrderRecord,
                         sku_ids: dict[str, int]) -> None:
        known = {line.platform_line_id for line in order.lines}
        for line in record.lines:
            if line.platform_line_id in known:
                continue
            await session.execute(insert_for(session, OrderLine).values(
                order_id=order.id, platform_line_id=line.platform_line_id,
                platform_item_id=line.platform_item_id, platform_sku_id=line.platform_sku_id,
                merchant_code=line.merchant_code, sku_id=sku_ids.get(line.merchant_code),
                title=line.title, quantity=line.quantity, unit_price_fen=line.unit_price_fen,
                paid_fen=line.paid_fen, status=LineStatus.OPEN.value,
                presale_ship_by=line.presale_ship_by,
            ).on_conflict_do_nothing(index_elements=["order_id", "platform_line_id"]))

    async def _apply(self, session: AsyncSession, order: Order, record: OrderRecord, source: str,
                     now: datetime, result: IngestResult) -> None:
        await session.refresh(order, ["lines"])
        current = OrderStatus(order.status)
        target = next_status(current, record.status)
        order.platform_status = record.platform_status  # stale copies returned earlier
        order.platform_modified_at = max(order.platform_modified_at, record.modified_at)
        if record.paid_at and order.paid_at is None:
            order.paid_at = record.paid_at
        order.updated_at = now

        # line-level changes reported by the platform (forward only)
        incoming = {line.platform_line_id: line for line in record.lines}
        to_ship: list[int] = []
        to_release: list[int] = []
        for line in order.lines:
            seen = incoming.get(line.platform_line_id)
            if seen is None:
                continue
            old, new = LineStatus(line.status), seen.status
            if LINE_RANK[new] <= LINE_RANK[old] or old != LineStatus.OPEN:
                continue
            line.status = new.value
            if new == LineStatus.SHIPPED:
                to_ship.append(line.id)
            else:
                to_release.append(line.id)

        if target in TERMINAL and current not in TERMINAL:
            for line in order.lines:
                if line.status == LineStatus.OPEN:
                    line.status = (LineStatus.CANCELLED if target == OrderStatus.CANCELLED
                                   else LineStatus.REFUNDED).value
                    to_release.append(line.id)
        if target in (OrderStatus.SHIPPED, OrderStatus.COMPLETED):
            for line in order.lines:
                if line.status == LineStatus.OPEN:
                    line.status = LineStatus.SHIPPED.value
                    to_ship.append(line.id)

        if target in PAID_STATES and current == OrderStatus.UNPAID:
            decision = review(self.rules, _facts(order), now)
            target = {"approve": OrderStatus.APPROVED}.get(decision.action, OrderStatus.ON_HOLD)
            order.review, order.review_rule = decision.action, decision.rule
            order.hold_reason = "" if decision.action == "approve" else decision.reason
            order.priority = decision.priority

        await session.flush()
        changed = await self.pool.release_lines(session, to_release, reason=f"order {target}",
                                                now=now)
        changed |= await self.pool.ship_lines(session, to_ship,
                                              reference=f"order:{order.id}", now=now)
        if target in PAID_STATES or (target in (OrderStatus.SHIPPED, OrderStatus.COMPLETED)
                                     and to_ship):
            changed |= await self._reserve(session, order, now, result)
            if to_ship:  # shipped on the platform before we reserved: consume at once
                changed |= await self.pool.ship_lines(session, to_ship,
                                                      reference=f"order:{order.id}", now=now)
        if target in TERMINAL and order.backorder:
            order.backorder = False
            await resolve_alert(session, "oversold", f"order:{order.id}", now)
        if target != current:
            order.status = target.value
            session.add(OrderEvent(order_id=order.id, from_status=current.value,
                                   to_status=target.value, source=source, at=now))
        if any(line.sku_id is None for line in order.lines):
            unbound = [line.merchant_code or line.platform_sku_id
                       for line in order.lines if line.sku_id is None]
            order.unbound_lines = len(unbound)
            await open_alert(session, "unknown_sku", f"order:{order.id}",
                             f"order {order.platform_order_id} has lines with unknown SKUs: "
                             f"{', '.join(unbound)}", now, {"codes": unbound})
        result.changed_skus |= changed

    async def _reserve(self, session: AsyncSession, order: Order, now: datetime,
                       result: IngestResult) -> set[int]:
        outcome = await self.pool.reserve_order(session, order, now)
        if outcome.reserved_lines:
            result.reserved += 1
        if outcome.short_lines:
            short = set(outcome.short_lines)
            for line in order.lines:
                line.short = line.id in short
            if not order.backorder:
                order.backorder = True
                result.backordered += 1
                codes = [line.merchant_code for line in order.lines if line.id in short]
                await open_alert(
                    session, "oversold", f"order:{order.id}",
                    f"order {order.platform_order_id} is short of {', '.join(codes)}: contact "
                    "the buyer within 1 hour (other variant with a discount, or priority "
                    "shipping when stock arrives)", now, {"codes": codes})
            return set()
        if order.backorder:
            order.backorder = False
            for line in order.lines:
                line.short = False
            await resolve_alert(session, "oversold", f"order:{order.id}", now)
        return {line.sku_id for line in order.lines
                if line.id in outcome.reserved_lines and line.sku_id is not None}

    async def serve_backorders(self, session: AsyncSession, sku_ids: set[int], now: datetime,
                               result: IngestResult | None = None) -> set[int]:
        """Backorders reserve in payment order (FIFO) when their SKUs gain stock; an older
        backorder still short blocks newer ones on the same SKU. Returns SKUs changed."""
        result = result or IngestResult()
        changed: set[int] = set()
        blocked: set[int] = set()
        for order in await self.pool.backorders_for(session, sku_ids):
            await session.refresh(order, ["lines"])
            if {line.sku_id for line in order.lines if line.sku_id is not None} & blocked:
                continue
            changed |= await self._reserve(session, order, now, result)
            if order.backorder:
                blocked |= {line.sku_id for line in order.lines if line.short and line.sku_id}
        result.changed_skus |= changed
        return changed


    async def stock_changed(self, session: AsyncSession, sku_ids: set[int],
                            now: datetime) -> int:
        """After receipts, stocktakes and returns: serve backorders (FIFO), then publish.
        Returns the outbox rows written."""
        changed = set(sku_ids) | await self.serve_backorders(session, set(sku_ids), now)
        return await self.publisher.publish(session, changed, now)


def _facts(order: Order) -> OrderFacts:
    promises = [line.presale_ship_by for line in order.lines if line.presale_ship_by]
    return OrderFacts(paid_fen=order.paid_fen, province=order.province,
                      address_detail=order.address_detail, buyer_remark=order.buyer_remark,
                      presale_until=max(promises) if promises else None)


async def set_review(session: AsyncSession, order: Order, action: str, reason: str, now: datetime,
                     source: str = "operator") -> None:
    """An operator approves or holds an order (only paid, unshipped orders)."""
    current = OrderStatus(order.status)
    if current not in PAID_STATES:
        raise ValueError(f"order {order.platform_order_id} is {current}: only paid orders "
                         "can be approved or held")
    target = OrderStatus.APPROVED if action == "approve" else OrderStatus.ON_HOLD
    await session.execute(update(Order).where(Order.id == order.id).values(
        status=target.value, review=action, review_rule="operator",
        hold_reason="" if action == "approve" else reason, updated_at=now))
    session.add(OrderEvent(order_id=order.id, from_status=current.value, to_status=target.value,
                           source=source, note=reason, at=now))
