"""The order book: one idempotent path for every copy of an order, pulled, pushed or retried.

`OrderBook.ingest` upserts a batch of orders of one shop by (shop, platform order id), moves
each status only forward, and applies the stock consequences in the same transaction:

* reaching paid reserves every line (all or nothing; short → backorder + `oversold` alert);
* cancel or refund before shipping releases what was reserved;
* lines the platform reports shipped consume their reservation;
* a refund after shipping changes no stock (returns arrive as a receipt);
* an order first seen already shipped changes no stock (its goods left before we tracked
  it); one we saw unpaid and next see shipped reserves and ships at once, stock allowing.

An older copy (earlier platform modified time) never overwrites a newer one, and even a
newer copy never moves a status backwards: "paid" arriving after "cancelled" does not
resurrect the order. Every status change is an OrderEvent with its source (pull, push,
operator, engine).

Concurrency. Two sessions may ingest the same order at once (a webhook, its duplicate, and
the overlapping pull window). Say webhook A and pull B both carry new order 42, paid:

1. both look it up, neither finds it; both INSERT ... ON CONFLICT DO NOTHING. PostgreSQL
   makes B's insert wait for A's uncommitted row; when A commits, B's insert does nothing
   (SQLite gets there by serialising writers: B's transaction starts after A's commits);
2. B then loads order 42 `FOR UPDATE`: it sees A's committed row, status approved, and its
   copy is not newer, so B changes nothing. Had A not reached paid, B's copy would move it
   forward and reserve — under the row lock, so no third session interleaves;
3. a reservation is unique per order line, so even two sessions that both decided to
   reserve could not reserve one line twice (the second INSERT does nothing, and only a
   claimed reservation touches the stock level — see core.inventory).

The row lock matters most for an order already stored. Order 7 is stored unpaid; push C
says cancelled while pull P says paid. Without the lock both read "unpaid": C finds nothing
to release (P's reservation is not committed yet) and writes cancelled, P reserves and
writes approved, and whichever commits last wins — a cancelled order holding stock, or an
approved one that was cancelled. With `FOR UPDATE`, P waits for C's commit, reads
"cancelled" and changes nothing (tests/integration/test_orders_concurrency.py fails
without the lock on PostgreSQL). Locks are taken in platform order id order, so two
batches sharing orders queue instead of deadlocking on them; the rarer deadlock through
stock levels is retried whole by `retried_transaction`.

The batch is the unit of work, because statements, not rows, are what an ingest pays
for: one query finds the known orders (locked); the new ones are inserted already in the
state their first copy puts them in (status, review decision, line states — `FirstCopy`,
the same outcome `_apply` gives an unpaid order receiving that copy) with one executemany
each for orders, lines and events; known orders go through `_apply`; then every order
that reached paid reserves in one `StockPool.reserve_orders` round, in payment order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from core.alerts import open_alert, resolve_alert
from core.db import insert_for, is_postgres, transaction
from core.inventory import ReserveResult, StockPool
from core.logs import get_logger
from core.model import Listing, Order, OrderEvent, OrderLine, Sku
from core.publishing import Publisher
from core.records import LineStatus, OrderLineRecord, OrderRecord, OrderStatus
from core.review import Decision, OrderFacts, ReviewRules, review

if TYPE_CHECKING:
    from core.runtime import Runtime

log = get_logger("erpsync.orders")
T = TypeVar("T")

# rank for "forward only"; approved/on_hold are the review states of a paid order
RANK = {
    OrderStatus.UNPAID: 0, OrderStatus.PAID: 1, OrderStatus.APPROVED: 1,
    OrderStatus.ON_HOLD: 1, OrderStatus.SHIPPED: 2, OrderStatus.COMPLETED: 3,
    OrderStatus.CANCELLED: 4, OrderStatus.REFUNDED: 4,
}
TERMINAL = {OrderStatus.CANCELLED, OrderStatus.REFUNDED}
PAID_STATES = {OrderStatus.PAID, OrderStatus.APPROVED, OrderStatus.ON_HOLD}
SHIPPED_STATES = {OrderStatus.SHIPPED, OrderStatus.COMPLETED}
LINE_RANK = {LineStatus.OPEN: 0, LineStatus.SHIPPED: 1, LineStatus.CANCELLED: 2,
             LineStatus.REFUNDED: 2}
# PostgreSQL deadlock_detected, serialization_failure: the whole transaction may be re-run
RETRIABLE_SQLSTATES = frozenset({"40P01", "40001"})
# rows per multi-row INSERT / IN list: well inside SQLite's and asyncpg's 32767 parameters
INSERT_CHUNK = 500


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


class SkuResolver:
    """Order line → SKU: by merchant code (the join key), else by the shop's listing binding
    (platform item + sku id), for lines whose seller left the code empty or different."""

    def __init__(self, by_code: dict[str, int], by_listing: dict[tuple[str, str], int]) -> None:
        self.by_code = by_code
        self.by_listing = by_listing

    @classmethod
    async def load(cls, session: AsyncSession, shop_id: int,
                   lines: Sequence[OrderLineRecord]) -> SkuResolver:
        codes = {line.merchant_code for line in lines if line.merchant_code}
        by_code: dict[str, int] = {}
        if codes:
            rows = await session.execute(
                select(Sku.merchant_code, Sku.id).where(Sku.merchant_code.in_(codes)))
            by_code = {code: sku_id for code, sku_id in rows}
        unmatched = {line.platform_item_id for line in lines
                     if line.merchant_code not in by_code and line.platform_item_id}
        by_listing: dict[tuple[str, str], int] = {}
        if unmatched:
            listings = await session.execute(
                select(Listing.platform_item_id, Listing.platform_sku_id, Listing.sku_id)
                .where(Listing.shop_id == shop_id, Listing.platform_item_id.in_(unmatched),
                       Listing.sku_id.is_not(None)))
            by_listing = {(item, sku): sku_id for item, sku, sku_id in listings if sku_id}
        return cls(by_code, by_listing)

    def sku_id(self, line: OrderLineRecord) -> int | None:
        found = self.by_code.get(line.merchant_code) if line.merchant_code else None
        if found is None:
            found = self.by_listing.get((line.platform_item_id, line.platform_sku_id))
        return found


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
        order_ids = sorted(newest)
        resolver = await SkuResolver.load(
            session, shop_id, [line for r in newest.values() for line in r.lines])
        orders = await self._lock(session, shop_id, order_ids)
        missing = [order_id for order_id in order_ids if order_id not in orders]
        inserted: dict[str, bool] = {}
        if missing:
            inserted = await self._insert(session, shop_id, [newest[i] for i in missing],
                                          resolver, source, now)
            result.new = len(inserted)
            # new orders that want stock, and any a concurrent copy inserted first
            orders.update(await self._lock(session, shop_id, [
                order_id for order_id in missing if inserted.get(order_id, True)]))
        # every stock level this batch may touch, locked in id order before any is
        # (PostgreSQL): two batches sharing SKUs then queue instead of deadlocking
        await self.pool.lock_levels(session, {line.sku_id for order in orders.values()
                                              for line in order.lines if line.sku_id})
        to_reserve: list[Order] = []
        for order_id in order_ids:
            record = newest[order_id]
            if order_id in inserted:
                if inserted[order_id]:
                    to_reserve.append(orders[order_id])
                continue
            order = orders[order_id]
            if record.modified_at < order.platform_modified_at:
                result.stale += 1
                continue
            lines_added = await self._add_lines(session, order, record, resolver)
            changed, reserve = await self._apply(session, order, record, source, now, result,
                                                 lines_added=lines_added)
            if reserve:
                to_reserve.append(order)
            if changed:
                result.updated += 1
            else:
                result.unchanged += 1
        if to_reserve:
            # one round for the whole batch, in payment order (who paid first is served first)
            to_reserve.sort(key=lambda o: (o.paid_at or now, o.id))
            outcomes = await self.pool.reserve_orders(session, to_reserve, now)
            for order in to_reserve:
                result.changed_skus |= await self._settle(session, order, outcomes[order.id],
                                                          now, result)
        await session.flush()
        if result.changed_skus:
            await self.serve_backorders(session, set(result.changed_skus), now, result)
            await self.publisher.publish(session, result.changed_skus, now)
        return result

    async def _lock(self, session: AsyncSession, shop_id: int,
                    platform_order_ids: Sequence[str]) -> dict[str, Order]:
        """The known orders among these, with their lines, locked for this transaction."""
        found: dict[str, Order] = {}
        for start in range(0, len(platform_order_ids), INSERT_CHUNK):
            chunk = platform_order_ids[start:start + INSERT_CHUNK]
            query = (select(Order).where(Order.shop_id == shop_id,
                                         Order.platform_order_id.in_(chunk))
                     .order_by(Order.platform_order_id)
                     .options(selectinload(Order.lines))
                     .execution_options(populate_existing=True))
            if is_postgres(session):
                query = query.with_for_update(of=Order)
            for order in (await session.scalars(query)).all():
                found[order.platform_order_id] = order
        return found

    async def _insert(self, session: AsyncSession, shop_id: int, records: Sequence[OrderRecord],
                      resolver: SkuResolver, source: str, now: datetime) -> dict[str, bool]:
        """Insert new orders, already in the state their first copy puts them in (the same
        outcome `_apply` gives an unpaid order receiving that copy, without a second write),
        with their lines, events and unknown-SKU alerts. Returns platform order id → wants
        a reservation, for the orders this transaction inserted; a concurrent copy may have
        inserted others first, and those are applied as updates."""
        firsts = {r.platform_order_id: _first_copy(r, self.rules, now) for r in records}
        # executemany: one cached statement, sent as multi-row INSERTs by the driver layer
        returned = await session.execute(
            insert_for(session, Order)
            .on_conflict_do_nothing(index_elements=["shop_id", "platform_order_id"])
            .returning(Order.id, Order.platform_order_id),
            [_order_row(shop_id, r, firsts[r.platform_order_id], resolver, now)
             for r in records])
        ids = {platform_order_id: order_id for order_id, platform_order_id in returned}
        if not ids:
            return {}
        by_id = {record.platform_order_id: record for record in records}
        lines = [_line_row(order_id, line, resolver.sku_id(line),
                           firsts[platform_order_id].lines[line.platform_line_id])
                 for platform_order_id, order_id in ids.items()
                 for line in _unique_lines(by_id[platform_order_id])]
        if lines:
            await session.execute(insert_for(session, OrderLine).on_conflict_do_nothing(
                index_elements=["order_id", "platform_line_id"]), lines)
        events: list[dict[str, Any]] = []
        for platform_order_id, order_id in ids.items():
            first = firsts[platform_order_id]
            events.append({"order_id": order_id, "from_status": "",
                           "to_status": OrderStatus.UNPAID.value, "source": source,
                           "note": "first seen", "at": now})
            if first.status != OrderStatus.UNPAID:
                events.append({"order_id": order_id, "from_status": OrderStatus.UNPAID.value,
                               "to_status": first.status.value, "source": source,
                               "note": "", "at": now})
            unbound = [line.merchant_code or line.platform_sku_id
                       for line in _unique_lines(by_id[platform_order_id])
                       if resolver.sku_id(line) is None]
            if unbound and first.status not in TERMINAL:
                await open_alert(session, "unknown_sku", f"order:{order_id}",
                                 f"order {platform_order_id} has lines with unknown SKUs: "
                                 f"{', '.join(unbound)}", now, {"codes": unbound})
        await session.execute(insert(OrderEvent), events)
        return {platform_order_id: firsts[platform_order_id].status in PAID_STATES
                for platform_order_id in ids}

    async def _add_lines(self, session: AsyncSession, order: Order, record: OrderRecord,
                         resolver: SkuResolver) -> bool:
        """Lines the platform added to a known order (rare: a split or an added gift)."""
        known = {line.platform_line_id for line in order.lines}
        rows = [_line_row(order.id, line, resolver.sku_id(line))
                for line in _unique_lines(record) if line.platform_line_id not in known]
        if not rows:
            return False
        await session.execute(insert_for(session, OrderLine).on_conflict_do_nothing(
            index_elements=["order_id", "platform_line_id"]), rows)
        await session.refresh(order, ["lines"])
        return True

    async def _apply(self, session: AsyncSession, order: Order, record: OrderRecord, source: str,
                     now: datetime, result: IngestResult, *,
                     lines_added: bool) -> tuple[bool, bool]:
        """Apply one copy that is not older than what we hold. Returns (anything changed,
        the order wants its lines reserved) — reservations are made for the whole batch."""
        current = OrderStatus(order.status)
        target = next_status(current, record.status)
        if record.modified_at > order.platform_modified_at:
            order.platform_status = record.platform_status
            order.platform_modified_at = record.modified_at
        if record.paid_at and order.paid_at is None:
            order.paid_at = record.paid_at

        changed: set[int] = set()
        # never paid in our book, now shipped: we saw it before it left, so its stock goes
        # (reserve, then ship below); first seen shipped is history and changes nothing
        if target in SHIPPED_STATES and current == OrderStatus.UNPAID:
            outcome = await self.pool.reserve_order(session, order, now)
            if outcome.short_lines:
                log.warning("shipped order not in stock", order_id=order.id,
                            platform_order_id=order.platform_order_id)

        # line-level changes reported by the platform (forward only)
        incoming = {line.platform_line_id: line for line in record.lines}
        to_ship: list[int] = []
        to_release: list[int] = []
        for line in order.lines:
            seen = incoming.get(line.platform_line_id)
            if seen is None:
                continue
            old, new = LineStatus(line.status), seen.status
            if old != LineStatus.OPEN or LINE_RANK[new] <= LINE_RANK[old]:
                continue
            line.status = new.value
            (to_ship if new == LineStatus.SHIPPED else to_release).append(line.id)
        if target in TERMINAL and current not in TERMINAL:
            closed = (LineStatus.CANCELLED if target == OrderStatus.CANCELLED
                      else LineStatus.REFUNDED).value
            for line in order.lines:
                if line.status == LineStatus.OPEN:
                    line.status = closed
                    to_release.append(line.id)
        if target in SHIPPED_STATES:
            for line in order.lines:
                if line.status == LineStatus.OPEN:
                    line.status = LineStatus.SHIPPED.value
                    to_ship.append(line.id)

        if target in PAID_STATES and current == OrderStatus.UNPAID:
            decision = review(self.rules, _facts(order), now)
            target = OrderStatus.APPROVED if decision.action == "approve" else OrderStatus.ON_HOLD
            order.review, order.review_rule = decision.action, decision.rule
            order.hold_reason = "" if decision.action == "approve" else decision.reason
            order.priority = decision.priority

        if to_release:
            changed |= await self.pool.release_lines(session, to_release,
                                                     reason=f"order {target}", now=now)
        if to_ship:
            changed |= await self.pool.ship_lines(session, to_ship,
                                                  reference=f"order:{order.id}", now=now)
        # reserve on reaching paid, or when a paid order gained lines
        wants_reserve = target in PAID_STATES and (current == OrderStatus.UNPAID or lines_added)
        if order.backorder and (target in TERMINAL or target in SHIPPED_STATES):
            order.backorder = False
            for line in order.lines:
                line.short = False
            await resolve_alert(session, "oversold", f"order:{order.id}", now)
        if target != current:
            order.status = target.value
            session.add(OrderEvent(order_id=order.id, from_status=current.value,
                                   to_status=target.value, source=source, at=now))
        if lines_added:
            await self._mark_unbound(session, order, now)
        if target in TERMINAL and current not in TERMINAL and order.unbound_lines:
            await resolve_alert(session, "unknown_sku", f"order:{order.id}", now)
        result.changed_skus |= changed
        touched = (target != current or lines_added or bool(to_ship or to_release)
                   or session.is_modified(order))
        if touched:
            order.updated_at = now
        return touched, wants_reserve

    async def _mark_unbound(self, session: AsyncSession, order: Order, now: datetime) -> None:
        """Count the order's unbound lines; alert while there are some."""
        unbound = [line.merchant_code or line.platform_sku_id
                   for line in order.lines if line.sku_id is None]
        before = order.unbound_lines
        order.unbound_lines = len(unbound)
        if unbound:
            await open_alert(session, "unknown_sku", f"order:{order.id}",
                             f"order {order.platform_order_id} has lines with unknown SKUs: "
                             f"{', '.join(unbound)}", now, {"codes": unbound})
        elif before:
            await resolve_alert(session, "unknown_sku", f"order:{order.id}", now)

    async def _reserve(self, session: AsyncSession, order: Order, now: datetime,
                       result: IngestResult) -> set[int]:
        outcome = await self.pool.reserve_order(session, order, now)
        return await self._settle(session, order, outcome, now, result)

    async def _settle(self, session: AsyncSession, order: Order, outcome: ReserveResult,
                      now: datetime, result: IngestResult) -> set[int]:
        """The order's backorder flag and `oversold` alert after a reservation attempt;
        returns the SKUs whose reserved quantity changed."""
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

    # -- jobs over orders already in the book -----------------------------------------------
    async def release_presale(self, session: AsyncSession, now: datetime) -> int:
        """Orders waiting for a presale promise are reviewed again once every promise date
        has come; returns how many left the wait."""
        promised = select(OrderLine.id).where(OrderLine.order_id == Order.id,
                                              OrderLine.presale_ship_by > now)
        query = (select(Order).where(Order.status == OrderStatus.ON_HOLD.value,
                                     Order.review == "wait", ~exists(promised))
                 .options(selectinload(Order.lines)).order_by(Order.id)
                 .execution_options(populate_existing=True))
        if is_postgres(session):
            query = query.with_for_update(of=Order)
        waiting = (await session.scalars(query)).all()
        for order in waiting:
            decision = review(self.rules, _facts(order), now)
            target = OrderStatus.APPROVED if decision.action == "approve" else OrderStatus.ON_HOLD
            order.review, order.review_rule = decision.action, decision.rule
            order.hold_reason = "" if decision.action == "approve" else decision.reason
            order.priority = order.priority or decision.priority
            order.updated_at = now
            session.add(OrderEvent(order_id=order.id, from_status=order.status,
                                   to_status=target.value, source="engine",
                                   note=f"presale promise reached: {decision.reason}", at=now))
            order.status = target.value
        return len(waiting)

    async def rebind_lines(self, session: AsyncSession, now: datetime) -> int:
        """Bind order lines whose SKU became known (catalog import, listings pull) and reserve
        them when their order is paid and unshipped. Returns the lines bound."""
        by_code = (select(OrderLine.id, Sku.id)
                   .join(Sku, Sku.merchant_code == OrderLine.merchant_code)
                   .where(OrderLine.sku_id.is_(None), OrderLine.merchant_code != ""))
        by_listing = (select(OrderLine.id, Listing.sku_id)
                      .join(Order, Order.id == OrderLine.order_id)
                      .join(Listing, and_(Listing.shop_id == Order.shop_id,
                                          Listing.platform_item_id == OrderLine.platform_item_id,
                                          Listing.platform_sku_id == OrderLine.platform_sku_id))
                      .where(OrderLine.sku_id.is_(None), Listing.sku_id.is_not(None),
                             or_(OrderLine.merchant_code == "",
                                 ~exists(select(Sku.id).where(
                                     Sku.merchant_code == OrderLine.merchant_code)))))
        bind: dict[int, int] = {}
        for query in (by_code, by_listing):
            for line_id, sku_id in (await session.execute(query)).all():
                if sku_id is not None:
                    bind.setdefault(line_id, sku_id)
        if not bind:
            return 0
        order_ids = set((await session.scalars(
            select(OrderLine.order_id).where(OrderLine.id.in_(list(bind))))).all())
        locked = (select(Order).where(Order.id.in_(order_ids)).order_by(Order.id)
                  .options(selectinload(Order.lines)).execution_options(populate_existing=True))
        if is_postgres(session):
            locked = locked.with_for_update(of=Order)
        result = IngestResult()
        bound = 0
        for order in (await session.scalars(locked)).all():
            for line in order.lines:
                if line.sku_id is None and line.id in bind:
                    line.sku_id = bind[line.id]  # re-checked under the order's lock
                    bound += 1
            await session.flush()
            await self._mark_unbound(session, order, now)
            if OrderStatus(order.status) in PAID_STATES:
                result.changed_skus |= await self._reserve(session, order, now, result)
        await session.flush()
        if result.changed_skus:
            await self.serve_backorders(session, set(result.changed_skus), now, result)
            await self.publisher.publish(session, result.changed_skus, now)
        return bound


def _unique_lines(record: OrderRecord) -> list[OrderLineRecord]:
    """A platform that repeats a line id in one copy gets its first occurrence."""
    seen: dict[str, OrderLineRecord] = {}
    for line in record.lines:
        seen.setdefault(line.platform_line_id, line)
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class FirstCopy:
    """Where the first copy of an order puts it: what `_apply` makes of that copy arriving
    at an unpaid order with open lines and nothing reserved."""

    status: OrderStatus
    lines: dict[str, LineStatus]
    decision: Decision | None


def _first_copy(record: OrderRecord, rules: ReviewRules, now: datetime) -> FirstCopy:
    target = next_status(OrderStatus.UNPAID, record.status)
    lines: dict[str, LineStatus] = {}
    for line in _unique_lines(record):
        status = line.status
        if status == LineStatus.OPEN and target in TERMINAL:
            status = (LineStatus.CANCELLED if target == OrderStatus.CANCELLED
                      else LineStatus.REFUNDED)
        elif status == LineStatus.OPEN and target in SHIPPED_STATES:
            status = LineStatus.SHIPPED
        lines[line.platform_line_id] = status
    decision = None
    if target in PAID_STATES:
        promises = [line.presale_ship_by for line in record.lines if line.presale_ship_by]
        decision = review(rules, OrderFacts(
            paid_fen=record.paid_fen, province=record.address.province,
            address_detail=record.address.detail, buyer_remark=record.buyer_remark,
            presale_until=max(promises) if promises else None), now)
        target = OrderStatus.APPROVED if decision.action == "approve" else OrderStatus.ON_HOLD
    return FirstCopy(target, lines, decision)


def _order_row(shop_id: int, record: OrderRecord, first: FirstCopy, resolver: SkuResolver,
               now: datetime) -> dict[str, Any]:
    decision = first.decision
    unbound = sum(1 for line in _unique_lines(record) if resolver.sku_id(line) is None)
    return {
        "shop_id": shop_id, "platform_order_id": record.platform_order_id,
        "status": first.status.value, "platform_status": record.platform_status,
        "platform_created_at": record.created_at, "platform_modified_at": record.modified_at,
        "paid_at": record.paid_at, "total_fen": record.total_fen, "paid_fen": record.paid_fen,
        "post_fee_fen": record.post_fee_fen, "currency": record.currency,
        "buyer_remark": record.buyer_remark, "seller_remark": record.seller_remark,
        "province": record.address.province, "city": record.address.city,
        "district": record.address.district, "address_detail": record.address.detail,
        "receiver_name": record.address.name, "receiver_phone": record.address.phone,
        "review": decision.action if decision else "",
        "review_rule": decision.rule if decision else "",
        "hold_reason": decision.reason if decision and decision.action != "approve" else "",
        "priority": decision.priority if decision else False,
        "backorder": False, "unbound_lines": unbound, "ingested_at": now, "updated_at": now,
    }


def _line_row(order_id: int, line: OrderLineRecord, sku_id: int | None,
              status: LineStatus = LineStatus.OPEN) -> dict[str, Any]:
    return {
        "order_id": order_id, "platform_line_id": line.platform_line_id,
        "platform_item_id": line.platform_item_id, "platform_sku_id": line.platform_sku_id,
        "merchant_code": line.merchant_code, "sku_id": sku_id, "title": line.title,
        "quantity": line.quantity, "unit_price_fen": line.unit_price_fen,
        "paid_fen": line.paid_fen, "status": status.value, "short": False,
        "presale_ship_by": line.presale_ship_by,
    }


def _facts(order: Order) -> OrderFacts:
    promises = [line.presale_ship_by for line in order.lines if line.presale_ship_by]
    return OrderFacts(paid_fen=order.paid_fen, province=order.province,
                      address_detail=order.address_detail, buyer_remark=order.buyer_remark,
                      presale_until=max(promises) if promises else None)


async def set_review(session: AsyncSession, order: Order, action: str, reason: str, now: datetime,
                     source: str = "operator") -> None:
    """An operator approves or holds an order (only paid, unshipped orders)."""
    if action not in ("approve", "hold"):
        raise ValueError(f"unknown review action {action!r}: approve or hold")
    current = OrderStatus(order.status)
    if current not in PAID_STATES:
        raise ValueError(f"order {order.platform_order_id} is {current}: only paid orders "
                         "can be approved or held")
    if action == "hold" and not reason.strip():
        raise ValueError("a hold needs a reason")
    target = OrderStatus.APPROVED if action == "approve" else OrderStatus.ON_HOLD
    await session.execute(update(Order).where(Order.id == order.id).values(
        status=target.value, review=action, review_rule=source,
        hold_reason="" if action == "approve" else reason, updated_at=now)
        .execution_options(synchronize_session=False))
    session.add(OrderEvent(order_id=order.id, from_status=current.value, to_status=target.value,
                           source=source, note=f"{action}: {reason}" if reason else action,
                           at=now))


async def retried_transaction(sessions: async_sessionmaker[AsyncSession],
                              body: Callable[[AsyncSession], Awaitable[T]], *,
                              attempts: int = 5) -> T:
    """Run `body` in its own transaction, again from the start when PostgreSQL chose it as
    a deadlock victim (two batches reserving the same SKUs in opposite orders) — safe
    because the whole transaction was rolled back and ingest is idempotent."""
    for attempt in range(1, attempts + 1):
        try:
            async with transaction(sessions) as session:
                return await body(session)
        except DBAPIError as exc:
            if attempt == attempts or _sqlstate(exc) not in RETRIABLE_SQLSTATES:
                raise
            log.info("transaction retried", attempt=attempt, sqlstate=_sqlstate(exc))
    raise AssertionError("unreachable")


def _sqlstate(exc: DBAPIError) -> str | None:
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code:
            return str(code)
    return None


# -- jobs (the daemon runs these; each has a one-off command) --------------------------------
async def release_presale(rt: Runtime) -> int:
    """Re-review orders waiting for a presale promise whose date has come."""
    async with transaction(rt.sessions) as session:
        return await rt.book.release_presale(session, rt.now())


async def rebind_lines(rt: Runtime) -> int:
    """Bind lines whose SKU now exists (catalog import + listings pull) and reserve them."""
    return await retried_transaction(rt.sessions,
                                     lambda session: rt.book.rebind_lines(session, rt.now()))


async def find_orders(session: AsyncSession, refs: Iterable[str]) -> list[Order]:
    """Orders by our id or by platform order id (which must then name one order)."""
    found: list[Order] = []
    for ref in refs:
        query = select(Order).options(selectinload(Order.lines))
        matches = (await session.scalars(query.where(Order.platform_order_id == ref))).all()
        if not matches and ref.isdigit():
            matches = (await session.scalars(query.where(Order.id == int(ref)))).all()
        if len(matches) != 1:
            raise LookupError(f"{ref}: " + ("no such order" if not matches else
                                            f"{len(matches)} orders in several shops carry this "
                                            "platform order id: use the erpsync order id"))
        found.append(matches[0])
    return found

