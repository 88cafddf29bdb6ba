"""Random interleavings of receipts, orders (with duplicate deliveries and stale copies),
cancels, refunds and partial or full shipments. After every step: available is never
negative, every level equals its ledger, no line holds two reservations, reserved equals
the open reservations, and in strict mode the channels' latest quantities never add up to
more than is available."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

from core.carriers import DOMESTIC
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.connector import CarrierTable
from core.db import create_engine, session_factory, transaction
from core.inventory import StockPool, ledger_matches
from core.logistics import ShippingError, ship
from core.model import Base, Listing, Order, Reservation, Shop, Sku, StockLevel
from core.orders import OrderBook
from core.publishing import Publisher
from core.records import OrderRecord, OrderStatus
from core.review import ReviewRules
from core.testing.builders import T0, line, order

CODES = ("A", "B")
CARRIERS = CarrierTable("test", {code: code for code in DOMESTIC})


class InventoryMachine(RuleBasedStateMachine):
    mode = "shared"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(self.folder.name) / 'inv.db'}"
        self.engine = create_engine(url)
        self.sessions = session_factory(self.engine)
        self.pool = StockPool(("MAIN",))
        self.publisher = Publisher(self.pool, self.mode)
        self.book = OrderBook(self.pool, self.publisher, ReviewRules())
        self.now = T0
        self.records: dict[str, OrderRecord] = {}
        self.sku_ids: dict[str, int] = {}
        self.shop_id = 0
        self.seq = 0

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def tick(self) -> None:
        self.now += timedelta(minutes=1)

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()
        self.folder.cleanup()

    @initialize()
    def setup(self) -> None:
        async def go() -> None:
            async with self.engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            async with transaction(self.sessions) as session:
                shops = [Shop(name=f"s{i}", platform="test", settings={
                    "publish": {"sync_ratio": ratio}}, created_at=self.now)
                    for i, ratio in enumerate((1.0, 0.8, 0.5))]
                session.add_all(shops)
                await session.flush()
                self.shop_id = shops[0].id
                for code in CODES:
                    await upsert_product(session, ProductSpec(code, code, (SkuSpec(code, 100),)),
                                         self.now)
                    sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
                    assert sku is not None
                    self.sku_ids[code] = sku.id
                    await self.pool.warehouse(session, "MAIN")
                    for shop in shops:
                        session.add(Listing(shop_id=shop.id, platform_item_id=f"i-{code}",
                                            platform_sku_id=f"s-{code}", sku_id=sku.id,
                                            merchant_code=code, created_at=self.now))
        self.run(go())

    @rule(code=st.sampled_from(CODES), quantity=st.integers(1, 4))
    def receive(self, code: str, quantity: int) -> None:
        self.tick()

        async def go() -> None:
            async with transaction(self.sessions) as session:
                changed = await self.pool.change_on_hand(
                    session, self.sku_ids[code], "MAIN", quantity, kind="receipt",
                    reason="test", reference="receipt", now=self.now)
                await self.book.stock_changed(session, changed, self.now)
        self.run(go())

    def ingest(self, record: OrderRecord) -> None:
        async def go() -> None:
            async with transaction(self.sessions) as session:
                await self.book.ingest(session, self.shop_id, [record], source="pull",
                                       now=self.now)
        self.run(go())

    @rule(lines=st.lists(st.tuples(st.sampled_from(CODES), st.integers(1, 3)), min_size=1,
                         max_size=2, unique_by=lambda x: x[0]))
    def place(self, lines: list[tuple[str, int]]) -> None:
        self.tick()
        self.seq += 1
        order_id = f"o{self.seq}"
        record = order(order_id, *(line(c, q, line_id=f"{order_id}-{c}", price_fen=1000)
                                   for c, q in lines), modified=self.now)
        self.records[order_id] = record
        self.ingest(record)

    @precondition(lambda self: self.records)
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """A duplicated webhook or an overlapping window: the same copy again."""
        order_id = data.draw(st.sampled_from(sorted(self.records)))
        self.ingest(self.records[order_id])

    @precondition(lambda self: self.records)
    @rule(data=st.data(), refund=st.booleans())
    def cancel_or_refund(self, data: st.DataObject, refund: bool) -> None:
        self.tick()
        order_id = data.draw(st.sampled_from(sorted(self.records)))
        status = OrderStatus.REFUNDED if refund else OrderStatus.CANCELLED
        record = replace(self.records[order_id], status=status, modified_at=self.now)
        stale = self.records[order_id]
        self.records[order_id] = record
        self.ingest(record)
        self.ingest(stale)  # the older "paid" copy arriving late changes nothing

    @precondition(lambda self: self.records)
    @rule(data=st.data(), partial=st.booleans())
    def ship_order(self, data: st.DataObject, partial: bool) -> None:
        self.tick()
        order_id = data.draw(st.sampled_from(sorted(self.records)))

        async def go() -> None:
            async with self.sessions() as session:
                found = await session.scalar(select(Order).where(
                    Order.platform_order_id == order_id))
                assert found is not None
                await session.refresh(found, ["lines"])
                open_lines = [ln.id for ln in found.lines if ln.status == "open"]
            try:
                async with transaction(self.sessions) as session:
                    await ship(session, order_id=found.id, carrier="ZTO",
                               tracking_number=f"75{self.seq:012d}",
                               line_ids=open_lines[:1] if partial else [], carriers=CARRIERS,
                               pool=self.pool, publisher=self.publisher, now=self.now)
            except ShippingError:
                pass  # not shippable now (cancelled, backordered, already shipped)
        self.seq += 1
        self.run(go())

    @invariant()
    def stock_is_consistent(self) -> None:
        if not self.sku_ids:
            return

        async def go() -> None:
            async with self.sessions() as session:
                for level in (await session.scalars(select(StockLevel))).all():
                    assert level.reserved >= 0 and level.on_hand - level.reserved >= 0, level
                assert await ledger_matches(session) == []
                reserved = await session.scalar(select(func.coalesce(func.sum(
                    StockLevel.reserved), 0)))
                held = await session.scalar(select(func.coalesce(func.sum(
                    Reservation.quantity), 0)).where(Reservation.state == "reserved"))
                assert reserved == held
                # one reservation row per line is the unique key; none reserved twice means
                # no line ever held more than its own quantity
                lines = await session.scalar(select(func.count()).select_from(Reservation))
                distinct = await session.scalar(select(func.count(func.distinct(
                    Reservation.order_line_id))))
                assert lines == distinct
                if self.mode == "strict":
                    for code, sku_id in self.sku_ids.items():
                        available = await self.pool.available(session, sku_id)
                        shown = await session.scalar(select(func.coalesce(func.sum(
                            Listing.queued_quantity), 0)).where(Listing.sku_id == sku_id))
                        assert shown <= available, (code, shown, available)
        self.run(go())


class StrictInventoryMachine(InventoryMachine):
    mode = "strict"


SETTINGS = settings(max_examples=20, stateful_step_count=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TestInventoryShared = InventoryMachine.TestCase
TestInventoryShared.settings = SETTINGS
TestInventoryStrict = StrictInventoryMachine.TestCase
TestInventoryStrict.settings = SETTINGS
