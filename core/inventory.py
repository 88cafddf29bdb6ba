"""The stock pool: levels per (sku, warehouse), an append-only ledger, and reservations that
cannot oversell.

Reserving is one conditional statement per line::

    UPDATE stock_levels SET reserved = reserved + :q
     WHERE id = :level AND on_hand - reserved - safety >= :q

A row count of 1 means reserved; there is no read-then-write to race. The races this closes:

* Two orders for the last unit, in two processes. Both run the UPDATE on the same row.
  PostgreSQL makes the second wait for the first's row lock, then re-checks the WHERE
  clause on the committed row: 0 >= 1 is false, row count 0, the second order is
  backordered. SQLite takes the write lock at BEGIN IMMEDIATE, so the second transaction
  starts after the first committed and reads the new level. No process ever sees a stale
  "1 left" and acts on it.
* The same order delivered twice (a webhook and a pull, or a duplicated webhook), at the
  same moment. Each line first inserts its Reservation row, unique per order line, with
  ON CONFLICT DO NOTHING; the loser of that insert (PostgreSQL blocks it until the winner
  commits) inserts nothing and skips the UPDATE, so a line is never reserved twice.
* An order with several lines where one line is short. The lines already taken in the
  same call are given back in the same transaction before anyone can see them, so no line
  of the order keeps a unit it cannot ship with the others (all or nothing), and the
  order waits as a backorder.
* Deadlocks between two multi-line orders: lines reserve in SKU order, so two
  transactions always lock level rows in the same order. A transaction that reserves for
  a whole page of orders (a pull) first locks every level it may touch, in id order
  (`lock_levels`), for the same reason: otherwise page A taking SKU 1 then 2 while page B
  takes 2 then 1 would deadlock on PostgreSQL.

Every change writes a StockMovement, and a level always equals the sum of its movements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_for, is_postgres
from core.model import (
    Order,
    OrderLine,
    Reservation,
    Sku,
    StockLevel,
    StockMovement,
    Warehouse,
)
from core.records import LineStatus


class StockError(ValueError):
    pass


@dataclass(slots=True)
class ReserveResult:
    reserved_lines: list[int] = field(default_factory=list)
    short_lines: list[int] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.short_lines


class StockPool:
    """Operations on the pool. Callers own the transaction; every method returns the SKU ids
    whose available quantity changed, so publishing can follow in the same transaction."""

    def __init__(self, online_warehouses: Sequence[str] = ("MAIN",)) -> None:
        self.online_warehouses = tuple(online_warehouses)

    # -- lookups ---------------------------------------------------------------------------
    async def warehouse(self, session: AsyncSession, code: str, *, create: bool = True) -> Warehouse:
        found = await session.scalar(select(Warehouse).where(Warehouse.code == code))
        if found is None:
            if not create:
                raise StockError(f"unknown warehouse {code!r}")
            await session.execute(insert_for(session, Warehouse).values(
                code=code, name=code, online=code in self.online_warehouses,
                priority=_priority(self.online_warehouses, code),
            ).on_conflict_do_nothing(index_elements=["code"]))
            found = await session.scalar(select(Warehouse).where(Warehouse.code == code))
            assert found is not None
        return found

    async def level(self, session: AsyncSession, sku_id: int, warehouse_id: int,
                    now: datetime) -> StockLevel:
        await session.execute(insert_for(session, StockLevel).values(
            sku_id=sku_id, warehouse_id=warehouse_id, on_hand=0, reserved=0, safety=0,
            updated_at=now,
        ).on_conflict_do_nothing(index_elements=["sku_id", "warehouse_id"]))
        found = await session.scalar(select(StockLevel).where(
            StockLevel.sku_id == sku_id, StockLevel.warehouse_id == warehouse_id))
        assert found is not None
        return found

    async def available(self, session: AsyncSession, sku_id: int) -> int:
        """Units that can still be sold online: Σ(on_hand − reserved − safety) ≥ 0."""
        value = await session.scalar(
            select(func.coalesce(func.sum(StockLevel.on_hand - StockLevel.reserved
                                          - StockLevel.safety), 0))
            .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
            .where(StockLevel.sku_id == sku_id, Warehouse.online.is_(True)))
        return max(0, int(value or 0))

    async def available_many(self, session: AsyncSession, sku_ids: Iterable[int]) -> dict[int, int]:
        ids = list(set(sku_ids))
        result = {sku_id: 0 for sku_id in ids}
        if not ids:
            return result
        rows = await session.execute(
            select(StockLevel.sku_id,
                   func.sum(StockLevel.on_hand - StockLevel.reserved - StockLevel.safety))
            .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
            .where(StockLevel.sku_id.in_(ids), Warehouse.online.is_(True))
            .group_by(StockLevel.sku_id))
        for sku_id, value in rows:
            result[sku_id] = max(0, int(value or 0))
        return result

    # -- on-hand changes --------------------------------------------------------------------
    async def change_on_hand(self, session: AsyncSession, sku_id: int, warehouse: str,
                             delta: int, *, kind: str, reason: str, reference: str,
                             now: datetime) -> set[int]:
        """Receipts, returns and adjustments: move on_hand by `delta` (never below zero
        and never below what is reserved there)."""
        if delta == 0:
            return set()
        house = await self.warehouse(session, warehouse)
        level = await self.level(session, sku_id, house.id, now)
        result = await session.execute(
            update(StockLevel)
            .where(StockLevel.id == level.id, StockLevel.on_hand + delta >= StockLevel.reserved)
            .values(on_hand=StockLevel.on_hand + delta, updated_at=now)
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise StockError(f"on hand cannot drop below what is reserved ({kind} {delta})")
        session.add(StockMovement(sku_id=sku_id, warehouse_id=house.id, kind=kind,
                                  on_hand_delta=delta, reason=reason, reference=reference,
                                  created_at=now))
        return {sku_id}

    async def set_on_hand(self, session: AsyncSession, sku_id: int, warehouse: str,
                          quantity: int, *, reason: str, reference: str = "",
                          now: datetime) -> set[int]:
        """A stocktake: the counted quantity becomes on_hand; the ledger gets the delta."""
        if quantity < 0:
            raise StockError("a counted quantity cannot be negative")
        house = await self.warehouse(session, warehouse)
        level = await self.level(session, sku_id, house.id, now)
        query = select(StockLevel.on_hand).where(StockLevel.id == level.id)
        if is_postgres(session):
            query = query.with_for_update()
        current = await session.scalar(query)
        return await self.change_on_hand(session, sku_id, warehouse, quantity - int(current or 0),
                                         kind="stocktake", reason=reason, reference=reference,
                                         now=now)

    async def set_safety(self, session: AsyncSession, sku_id: int, warehouse: str,
                         safety: int, now: datetime) -> set[int]:
        house = await self.warehouse(session, warehouse)
        level = await self.level(session, sku_id, house.id, now)
        await session.execute(update(StockLevel).where(StockLevel.id == level.id)
                              .values(safety=safety, updated_at=now)
                              .execution_options(synchronize_session=False))
        return {sku_id}

    async def lock_levels(self, session: AsyncSession, sku_ids: Iterable[int]) -> None:
        """Take the row locks of these SKUs' levels in id order (PostgreSQL; SQLite's
        BEGIN IMMEDIATE already serialises writers)."""
        ids = sorted(set(sku_ids))
        if ids and is_postgres(session):
            await session.execute(select(StockLevel.id).where(StockLevel.sku_id.in_(ids))
                                  .order_by(StockLevel.id).with_for_update())

    # -- reservations -----------------------------------------------------------------------
    async def reserve_order(self, session: AsyncSession, order: Order, now: datetime) -> ReserveResult:
        """Reserve every open, bound line of `order`, all or nothing."""
        return (await self.reserve_orders(session, [order], now))[order.id]

    async def reserve_orders(self, session: AsyncSession, orders: Sequence[Order],
                             now: datetime) -> dict[int, ReserveResult]:
        """Reserve a batch of orders in the caller's transaction, each all or nothing, in
        the order given (payment order is the caller's to choose).

        The levels the batch may touch are locked first, in id order, and read once; the
        reservation rows of every line are claimed in one INSERT … ON CONFLICT DO NOTHING
        (a line someone else already holds is a duplicate delivery). Then the units are
        shared out in memory — nobody else can change a locked level, so what was read is
        what there is — order by order, all or nothing, and each level is written once with
        the total it gave. Plain statements, no ORM flush: this is the hot path of every
        paid order, and a page of 250 orders costs one UPDATE per level, not one per line."""
        results = {order.id: ReserveResult() for order in orders}
        wanted = [(order, sorted((line for line in order.lines
                                  if line.sku_id is not None and line.status == LineStatus.OPEN),
                                 key=lambda line: (line.sku_id or 0, line.id)))
                  for order in orders]
        every = [line for _, lines in wanted for line in lines]
        if not every:
            return results
        levels, free = await self._online_levels(
            session, {line.sku_id for line in every if line.sku_id})
        fallback = None if all(line.sku_id in levels for line in every) \
            else await self._any_warehouse(session)

        def first_warehouse(line: OrderLine) -> int:
            found = levels.get(line.sku_id or 0)
            return found[0][1] if found else fallback  # type: ignore[return-value]

        claimed = set((await session.execute(
            insert_for(session, Reservation).values([
                dict(order_line_id=line.id, sku_id=line.sku_id,
                     warehouse_id=first_warehouse(line), quantity=line.quantity,
                     state="reserved", created_at=now, updated_at=now) for line in every])
            .on_conflict_do_nothing(index_elements=["order_line_id"])
            .returning(Reservation.order_line_id))).scalars())
        given: dict[int, int] = {}  # level id -> units reserved by this batch
        movements: list[dict[str, object]] = []
        moved: list[tuple[int, int]] = []  # line id, warehouse id taken elsewhere than first
        released: list[int] = []
        for order, lines in wanted:
            result = results[order.id]
            taken: list[tuple[OrderLine, int, int]] = []
            for line in lines:
                if line.id not in claimed:
                    result.duplicate_lines.append(line.id)
                    continue
                for level_id, warehouse_id in levels.get(line.sku_id or 0, []):
                    if free[level_id] >= line.quantity:
                        free[level_id] -= line.quantity
                        taken.append((line, level_id, warehouse_id))
                        break
                else:
                    result.short_lines.append(line.id)
                    for took, level_id, _ in taken:  # all or nothing: give the others back
                        free[level_id] += took.quantity
                    released.extend(ln.id for ln in lines if ln.id in claimed)
                    taken = []
                    break
            for line, level_id, warehouse_id in taken:
                given[level_id] = given.get(level_id, 0) + line.quantity
                result.reserved_lines.append(line.id)
                if warehouse_id != first_warehouse(line):
                    moved.append((line.id, warehouse_id))
                movements.append(dict(
                    sku_id=line.sku_id, warehouse_id=warehouse_id, kind="reservation",
                    on_hand_delta=0, reserved_delta=line.quantity, reason="order paid",
                    reference=f"order:{order.id}:line:{line.id}", created_at=now))
        if given:
            table = cast(Table, StockLevel.__table__)
            await session.execute(
                update(table).where(table.c.id == bindparam("level"))
                .values(reserved=table.c.reserved + bindparam("units"), updated_at=now),
                [{"level": level_id, "units": units} for level_id, units in sorted(given.items())])
        if released:
            await session.execute(delete(Reservation).where(
                Reservation.order_line_id.in_(released)))
        for line_id, warehouse_id in moved:
            await session.execute(update(Reservation).where(
                Reservation.order_line_id == line_id).values(warehouse_id=warehouse_id))
        if movements:
            await session.execute(insert(StockMovement), movements)
        return results

    async def release_lines(self, session: AsyncSession, line_ids: Sequence[int], *,
                            reason: str, now: datetime) -> set[int]:
        """Give reserved units back (cancel or refund before shipping)."""
        return await self._finish(session, line_ids, state="released", reason=reason, now=now)

    async def ship_lines(self, session: AsyncSession, line_ids: Sequence[int], *,
                         reference: str, now: datetime) -> set[int]:
        """Shipping turns the reservation into an on_hand decrement."""
        return await self._finish(session, line_ids, state="shipped", reason=reference, now=now)

    async def _finish(self, session: AsyncSession, line_ids: Sequence[int], *, state: str,
                      reason: str, now: datetime) -> set[int]:
        if not line_ids:
            return set()
        # Move only reservations still "reserved": a second release or a release after
        # shipping changes nothing (the UPDATE ... WHERE state = 'reserved' is the guard).
        rows = (await session.execute(
            update(Reservation)
            .where(Reservation.order_line_id.in_(list(line_ids)), Reservation.state == "reserved")
            .values(state=state, updated_at=now)
            .returning(Reservation.order_line_id, Reservation.sku_id, Reservation.warehouse_id,
                       Reservation.quantity)
            .execution_options(synchronize_session=False))).all()
        changed: set[int] = set()
        for line_id, sku_id, warehouse_id, quantity in sorted(rows, key=lambda r: (r[1], r[0])):
            shipping = state == "shipped"
            await session.execute(
                update(StockLevel)
                .where(StockLevel.sku_id == sku_id, StockLevel.warehouse_id == warehouse_id)
                .values(reserved=StockLevel.reserved - quantity,
                        on_hand=StockLevel.on_hand - (quantity if shipping else 0),
                        updated_at=now)
                .execution_options(synchronize_session=False))
            session.add(StockMovement(
                sku_id=sku_id, warehouse_id=warehouse_id,
                kind="shipment" if shipping else "release",
                on_hand_delta=-quantity if shipping else 0, reserved_delta=-quantity,
                reason=reason, reference=f"line:{line_id}", created_at=now))
            changed.add(sku_id)
        return changed

    async def _online_levels(self, session: AsyncSession, sku_ids: set[int],
                             ) -> tuple[dict[int, list[tuple[int, int]]], dict[int, int]]:
        """The online levels of these SKUs, locked (PostgreSQL: FOR UPDATE, in id order like
        `lock_levels`; SQLite's writer already holds the database): SKU -> [(level id,
        warehouse id)] by warehouse priority, and level id -> units free to reserve."""
        query = (select(StockLevel.sku_id, StockLevel.id, StockLevel.warehouse_id,
                        StockLevel.on_hand - StockLevel.reserved - StockLevel.safety,
                        Warehouse.priority)
                 .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
                 .where(StockLevel.sku_id.in_(sku_ids), Warehouse.online.is_(True))
                 .order_by(StockLevel.id))
        if is_postgres(session):
            query = query.with_for_update(of=StockLevel)
        rows = (await session.execute(query)).all()
        levels: dict[int, list[tuple[int, int]]] = {}
        free: dict[int, int] = {}
        for sku_id, level_id, warehouse_id, available, _ in sorted(
                rows, key=lambda row: (row[0], row[4], row[2])):
            levels.setdefault(sku_id, []).append((level_id, warehouse_id))
            free[level_id] = int(available)
        return levels, free

    async def _any_warehouse(self, session: AsyncSession) -> int:
        code = self.online_warehouses[0] if self.online_warehouses else "MAIN"
        return (await self.warehouse(session, code)).id

    # -- backorders -------------------------------------------------------------------------
    async def backorders_for(self, session: AsyncSession, sku_ids: set[int]) -> list[Order]:
        """Backordered orders touching these SKUs, oldest payment first (FIFO)."""
        if not sku_ids:
            return []
        order_ids = select(OrderLine.order_id).where(OrderLine.sku_id.in_(sku_ids))
        return list((await session.scalars(
            select(Order).where(Order.backorder.is_(True), Order.id.in_(order_ids))
            .order_by(Order.paid_at, Order.id))).all())


def _priority(codes: Sequence[str], code: str) -> int:
    return codes.index(code) if code in codes else len(codes)


async def sku_by_code(session: AsyncSession, merchant_code: str) -> Sku | None:
    return await session.scalar(select(Sku).where(Sku.merchant_code == merchant_code))


async def ledger_matches(session: AsyncSession) -> list[str]:
    """Levels that disagree with the sum of their movements (should be none)."""
    sums = (await session.execute(
        select(StockMovement.sku_id, StockMovement.warehouse_id,
               func.sum(StockMovement.on_hand_delta), func.sum(StockMovement.reserved_delta))
        .group_by(StockMovement.sku_id, StockMovement.warehouse_id))).all()
    ledger = {(s, w): (int(o or 0), int(r or 0)) for s, w, o, r in sums}
    problems = []
    for level in (await session.scalars(select(StockLevel))).all():
        expected = ledger.get((level.sku_id, level.warehouse_id), (0, 0))
        if (level.on_hand, level.reserved) != expected:
            problems.append(f"sku {level.sku_id} warehouse {level.warehouse_id}: level "
                            f"{level.on_hand}/{level.reserved} ledger {expected[0]}/{expected[1]}")
    return problems
