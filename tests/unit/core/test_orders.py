"""The order book's status machine and stock consequences, one copy at a time: forward
only, older copies never win, cancel/refund before shipping releases, a refund after
shipping changes no stock, every change recorded with its source."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from connectors.taobao.sandbox import TaobaoSandbox
from core.alerts import open_alerts
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.clock import ManualClock
from core.db import transaction
from core.inventory import ledger_matches
from core.model import Listing, Order, OrderEvent, OrderLine, Reservation, Sku, StockLevel
from core.orders import IngestResult, find_orders, next_status, retried_transaction, set_review
from core.records import LineStatus, OrderStatus
from core.runtime import Runtime
from core.testing.builders import T0, line, order

PAID, CANCELLED = OrderStatus.PAID, OrderStatus.CANCELLED


@pytest.fixture
async def rt(db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> Runtime:
    clock.set(T0 + timedelta(hours=1))
    runtime: Runtime = await make_runtime(db_url, {"shop": TaobaoSandbox(clock=clock)})
    await seed_pool(runtime, {"MUG": 10, "TEE": 5}, pull=False)
    return runtime


async def ingest(rt: Runtime, *records: Any, source: str = "pull") -> IngestResult:
    async with transaction(rt.sessions) as session:
        return await rt.book.ingest(session, rt.shop_ids["shop"], list(records), source=source,
                                    now=rt.now())


async def the_order(rt: Runtime, platform_order_id: str) -> Order:
    async with rt.sessions() as session:
        found = await session.scalar(select(Order).where(
            Order.platform_order_id == platform_order_id))
        assert found is not None
        await session.refresh(found, ["lines"])
        return found


async def stock(rt: Runtime, code: str) -> tuple[int, int]:
    """(on_hand, reserved) of a SKU in MAIN."""
    async with rt.sessions() as session:
        row = (await session.execute(
            select(StockLevel.on_hand, StockLevel.reserved).join(Sku, Sku.id == StockLevel.sku_id)
            .where(Sku.merchant_code == code))).one()
        return int(row[0]), int(row[1])


async def reservations(rt: Runtime) -> dict[str, str]:
    async with rt.sessions() as session:
        rows = (await session.execute(
            select(OrderLine.platform_line_id, Reservation.state)
            .join(Reservation, Reservation.order_line_id == OrderLine.id))).all()
        return {line_id: state for line_id, state in rows}


async def history(rt: Runtime, platform_order_id: str) -> list[tuple[str, str, str]]:
    async with rt.sessions() as session:
        rows = (await session.execute(
            select(OrderEvent.from_status, OrderEvent.to_status, OrderEvent.source)
            .join(Order, Order.id == OrderEvent.order_id)
            .where(Order.platform_order_id == platform_order_id)
            .order_by(OrderEvent.id))).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def consistent(rt: Runtime) -> None:
    async with rt.sessions() as session:
        assert await ledger_matches(session) == []
        held = await session.scalar(select(func.coalesce(func.sum(Reservation.quantity), 0))
                                    .where(Reservation.state == "reserved"))
        reserved = await session.scalar(select(func.coalesce(func.sum(StockLevel.reserved), 0)))
        assert held == reserved


def at(minutes: int) -> Any:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(("current", "incoming", "expected"), [
    (OrderStatus.UNPAID, PAID, PAID),
    (OrderStatus.APPROVED, PAID, OrderStatus.APPROVED),  # a review state is not undone
    (OrderStatus.ON_HOLD, OrderStatus.UNPAID, OrderStatus.ON_HOLD),
    (OrderStatus.SHIPPED, PAID, OrderStatus.SHIPPED),
    (CANCELLED, PAID, CANCELLED),  # never resurrected
    (CANCELLED, OrderStatus.REFUNDED, CANCELLED),  # terminal stays terminal
    (OrderStatus.COMPLETED, OrderStatus.REFUNDED, OrderStatus.REFUNDED),
    (OrderStatus.SHIPPED, OrderStatus.COMPLETED, OrderStatus.COMPLETED),
])
def test_status_only_moves_forward(current: OrderStatus, incoming: OrderStatus,
                                   expected: OrderStatus) -> None:
    assert next_status(current, incoming) == expected


async def test_paid_order_reserves_once_however_often_it_arrives(rt: Runtime) -> None:
    record = order("T1", line("MUG", 3, line_id="1"), line("TEE", 1, line_id="2"),
                   modified=at(1))
    first = await ingest(rt, record)
    assert (first.new, first.reserved) == (1, 1)
    again = await ingest(rt, record, record, source="push")
    assert (again.new, again.updated, again.unchanged, again.reserved) == (0, 0, 1, 0)
    assert await reservations(rt) == {"1": "reserved", "2": "reserved"}
    assert await stock(rt, "MUG") == (10, 3)
    found = await the_order(rt, "T1")
    assert (found.status, found.review_rule) == ("approved", "auto_approve")
    assert await history(rt, "T1") == [("", "unpaid", "pull"), ("unpaid", "approved", "pull")]
    await consistent(rt)


async def test_paid_arriving_after_cancelled_never_resurrects(rt: Runtime) -> None:
    paid = order("T2", line("MUG", 2, line_id="1"), modified=at(1))
    cancelled = replace(paid, status=CANCELLED, modified_at=at(5))
    await ingest(rt, cancelled, source="push")
    await ingest(rt, paid)  # the older copy, late
    await ingest(rt, replace(paid, modified_at=at(9)))  # even a newer "paid" copy
    found = await the_order(rt, "T2")
    assert found.status == "cancelled"
    assert found.platform_modified_at == at(9)  # newer facts are kept, status is not undone
    assert await reservations(rt) == {}
    assert await stock(rt, "MUG") == (10, 0)
    await consistent(rt)


async def test_an_older_copy_overwrites_nothing(rt: Runtime) -> None:
    newer = order("T3", line("MUG", 1, line_id="1"), modified=at(5), platform_status="SHIPPED")
    older = replace(newer, status=PAID, modified_at=at(1), platform_status="PAID", paid_fen=1)
    await ingest(rt, newer)
    result = await ingest(rt, older)
    assert result.stale == 1
    found = await the_order(rt, "T3")
    assert (found.platform_status, found.platform_modified_at) == ("SHIPPED", at(5))


async def test_cancel_before_shipping_releases_and_refund_after_shipping_keeps(
        rt: Runtime) -> None:
    a = order("A", line("MUG", 2, line_id="1"), modified=at(1))
    b = order("B", line("MUG", 3, line_id="1"), modified=at(1))
    await ingest(rt, a, b)
    assert await stock(rt, "MUG") == (10, 5)
    await ingest(rt, replace(a, status=CANCELLED, modified_at=at(2),
                             lines=(replace(a.lines[0], status=LineStatus.CANCELLED),)))
    assert await stock(rt, "MUG") == (10, 3)
    shipped = replace(b, status=OrderStatus.SHIPPED, modified_at=at(3),
                      lines=(replace(b.lines[0], status=LineStatus.SHIPPED),))
    await ingest(rt, shipped)
    assert await stock(rt, "MUG") == (7, 0)  # the reservation became the shipment
    await ingest(rt, replace(shipped, status=OrderStatus.REFUNDED, modified_at=at(4),
                             lines=(replace(b.lines[0], status=LineStatus.REFUNDED),)))
    assert await stock(rt, "MUG") == (7, 0)  # the parcel is with the buyer: no stock back
    assert (await the_order(rt, "B")).status == "refunded"
    assert await history(rt, "B") == [("", "unpaid", "pull"), ("unpaid", "approved", "pull"),
                                      ("approved", "shipped", "pull"),
                                      ("shipped", "refunded", "pull")]
    await consistent(rt)


async def test_first_seen_shipped_is_history_but_unpaid_then_shipped_consumes(
        rt: Runtime) -> None:
    history_order = order("H", line("MUG", 2, line_id="1", status=LineStatus.SHIPPED),
                          status=OrderStatus.SHIPPED, modified=at(1))
    await ingest(rt, history_order)
    assert await stock(rt, "MUG") == (10, 0)  # shipped before erpsync saw it
    unpaid = order("U", line("MUG", 3, line_id="1"), status=OrderStatus.UNPAID, modified=at(1))
    await ingest(rt, unpaid)
    assert await stock(rt, "MUG") == (10, 0)
    await ingest(rt, replace(unpaid, status=OrderStatus.SHIPPED, modified_at=at(5),
                             lines=(replace(unpaid.lines[0], status=LineStatus.SHIPPED),)))
    assert await stock(rt, "MUG") == (7, 0)  # we saw it before it left: its stock went
    assert await reservations(rt) == {"1": "shipped"}
    await consistent(rt)


async def test_short_stock_backorders_then_cancel_clears_the_alert(rt: Runtime) -> None:
    big = order("BIG", line("TEE", 6, line_id="1", price_fen=1000), modified=at(1))
    result = await ingest(rt, big)
    assert result.backordered == 1
    found = await the_order(rt, "BIG")
    assert found.backorder and found.lines[0].short
    async with rt.sessions() as session:
        assert [a.subject for a in await open_alerts(session, "oversold")] == [f"order:{found.id}"]
    await ingest(rt, replace(big, status=CANCELLED, modified_at=at(2)))
    found = await the_order(rt, "BIG")
    assert not found.backorder
    async with rt.sessions() as session:
        assert await open_alerts(session, "oversold") == []
    assert await stock(rt, "TEE") == (5, 0)


async def test_unknown_sku_is_visible_then_bound_and_reserved(rt: Runtime) -> None:
    from core.orders import rebind_lines

    record = order("NEW", line("MUG", 1, line_id="1"), line("CUP", 2, line_id="2"),
                   modified=at(1))
    await ingest(rt, record)
    found = await the_order(rt, "NEW")
    assert found.unbound_lines == 1
    assert await reservations(rt) == {"1": "reserved"}  # the known line does not wait
    async with rt.sessions() as session:
        alert = (await open_alerts(session, "unknown_sku"))[0]
    assert "CUP" in alert.message
    assert await rebind_lines(rt) == 0  # nothing new to bind yet

    async with transaction(rt.sessions) as session:  # the SKU arrives (catalog import)
        await upsert_product(session, ProductSpec("CUP", "cup", (SkuSpec("CUP", 1500),)),
                             rt.now())
        cup = await session.scalar(select(Sku.id).where(Sku.merchant_code == "CUP"))
        assert cup is not None
        await rt.pool.change_on_hand(session, cup, "MAIN", 5, kind="receipt", reason="test",
                                     reference="test", now=rt.now())
    assert await rebind_lines(rt) == 1
    found = await the_order(rt, "NEW")
    assert found.unbound_lines == 0 and all(line.sku_id for line in found.lines)
    assert await reservations(rt) == {"1": "reserved", "2": "reserved"}
    assert await stock(rt, "CUP") == (5, 2)
    async with rt.sessions() as session:
        assert await open_alerts(session, "unknown_sku") == []
    await consistent(rt)


async def test_line_without_merchant_code_binds_through_its_listing(rt: Runtime) -> None:
    async with transaction(rt.sessions) as session:
        mug = await session.scalar(select(Sku.id).where(Sku.merchant_code == "MUG"))
        session.add(Listing(shop_id=rt.shop_ids["shop"], platform_item_id="I-X",
                            platform_sku_id="S-X", sku_id=mug, merchant_code="MUG",
                            created_at=rt.now()))
    bare = replace(line("X", 1, line_id="1"), merchant_code="")
    await ingest(rt, order("L", bare, modified=at(1)))
    found = await the_order(rt, "L")
    assert found.lines[0].sku_id == mug and found.unbound_lines == 0
    assert await stock(rt, "MUG") == (10, 1)


async def test_presale_waits_for_its_promise_then_is_reviewed(rt: Runtime,
                                                             clock: ManualClock) -> None:
    from core.orders import release_presale

    promise = rt.now() + timedelta(days=3)
    await ingest(rt, order("P", line("MUG", 1, line_id="1", presale_ship_by=promise),
                           modified=at(1)))
    found = await the_order(rt, "P")
    assert (found.status, found.review, found.review_rule) == ("on_hold", "wait", "presale")
    assert await stock(rt, "MUG") == (10, 1)  # reserved at payment, whatever the decision
    assert await release_presale(rt) == 0
    clock.set(promise + timedelta(minutes=1))
    assert await release_presale(rt) == 1
    found = await the_order(rt, "P")
    assert (found.status, found.review, found.review_rule) == ("approved", "approve",
                                                               "auto_approve")
    assert (await history(rt, "P"))[-1] == ("on_hold", "approved", "engine")
    assert await release_presale(rt) == 0


async def test_operator_decisions_are_stored_with_their_reason(rt: Runtime) -> None:
    await ingest(rt, order("R", line("MUG", 1, line_id="1"), modified=at(1), remark="加急"))
    found = await the_order(rt, "R")
    assert (found.status, found.review_rule, found.priority) == ("on_hold", "urgent_remark",
                                                                 True)
    async with transaction(rt.sessions) as session:
        with pytest.raises(ValueError, match="reason"):
            await set_review(session, found, "hold", " ", rt.now())
        await set_review(session, found, "approve", "called the buyer", rt.now())
    found = await the_order(rt, "R")
    assert (found.status, found.review, found.review_rule, found.hold_reason) == (
        "approved", "approve", "operator", "")
    async with transaction(rt.sessions) as session:
        await set_review(session, found, "hold", "address to confirm", rt.now())
    found = await the_order(rt, "R")
    assert (found.status, found.hold_reason) == ("on_hold", "address to confirm")
    async with rt.sessions() as session:
        notes = (await session.scalars(select(OrderEvent.note).where(
            OrderEvent.order_id == found.id, OrderEvent.source == "operator")
            .order_by(OrderEvent.id))).all()
    assert notes == ["approve: called the buyer", "hold: address to confirm"]
    await ingest(rt, order("C", line("MUG", 1, line_id="1"), status=CANCELLED, modified=at(1)))
    cancelled = await the_order(rt, "C")
    async with transaction(rt.sessions) as session:
        with pytest.raises(ValueError, match="only paid orders"):
            await set_review(session, cancelled, "approve", "", rt.now())
        assert [o.id for o in await find_orders(session, ["R", str(cancelled.id)])] == [
            found.id, cancelled.id]
        with pytest.raises(LookupError):
            await find_orders(session, ["nope"])


async def test_a_line_added_to_a_paid_order_reserves(rt: Runtime) -> None:
    first = order("G", line("MUG", 1, line_id="1"), modified=at(1))
    await ingest(rt, first)
    await ingest(rt, replace(first, modified_at=at(2),
                             lines=(*first.lines, line("TEE", 1, line_id="2"))))
    assert await reservations(rt) == {"1": "reserved", "2": "reserved"}
    assert await stock(rt, "TEE") == (5, 1)


async def test_deadlock_victim_is_run_again(rt: Runtime) -> None:
    class Deadlock(Exception):
        sqlstate = "40P01"

    calls: list[int] = []

    async def body(session: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DBAPIError("UPDATE stock_levels", {}, Deadlock())
        return "done"

    assert await retried_transaction(rt.sessions, body) == "done"
    assert len(calls) == 3

    class Other(Exception):
        sqlstate = "23505"

    async def broken(session: Any) -> None:
        raise DBAPIError("INSERT", {}, Other())

    with pytest.raises(DBAPIError):
        await retried_transaction(rt.sessions, broken)
