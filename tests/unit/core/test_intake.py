"""The inbox's stored form of a pushed event, and events that carry their order (Shopify,
WooCommerce style): ingested as pushed, newest copy winning, without a re-read."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock
from core.intake import event_from_json, event_to_json, process_inbox
from core.model import InboxEvent, Order, OrderEvent
from core.records import LineStatus, OrderStatus, PushEvent, PushKind
from core.testing.builders import T0, line, order
from core.web import store_events


def test_an_event_survives_the_inbox_unchanged() -> None:
    record = order("P1", line("MUG", 2, line_id="1", presale_ship_by=T0 + timedelta(days=3)),
                   line("TEE", 1, line_id="2", status=LineStatus.SHIPPED),
                   status=OrderStatus.SHIPPED, remark="加急")
    record = replace(record, tracking_numbers=("YT1",), seller_remark="vip")
    with_order = PushEvent("e1", PushKind.ORDER, "orders/updated", "P1", T0, record)
    hint = PushEvent("e2", PushKind.REFUND, "206", "P2")
    assert event_from_json(event_to_json(with_order)) == with_order
    assert event_from_json(event_to_json(hint)) == hint


async def test_pushed_orders_are_ingested_as_pushed_newest_first(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    sandbox = TaobaoSandbox(clock=clock)
    rt = await make_runtime(sqlite_url, {"shop": sandbox})
    await seed_pool(rt, {"MUG": 10}, pull=False)
    paid = order("P9", line("MUG", 1, line_id="1"), modified=T0)
    cancelled = replace(paid, status=OrderStatus.CANCELLED, modified_at=T0 + timedelta(minutes=3))
    shop_id = rt.shop_ids["shop"]
    # delivered newest first, then a duplicate, then an event about nothing we track
    assert await store_events(rt, shop_id, [
        PushEvent("b", PushKind.ORDER, "orders/cancelled", "P9", order=cancelled)], b"{}") == 1
    assert await store_events(rt, shop_id, [
        PushEvent("a", PushKind.ORDER, "orders/paid", "P9", order=paid),
        PushEvent("b", PushKind.ORDER, "orders/cancelled", "P9", order=cancelled),
        PushEvent("ping", PushKind.OTHER, "ping", None)], b"{}") == 1
    assert await process_inbox(rt) == 2
    assert sandbox.requests == []  # nothing was re-read
    async with rt.sessions() as session:
        found = await session.scalar(select(Order))
        sources = set((await session.scalars(select(OrderEvent.source))).all())
        states = set((await session.scalars(select(InboxEvent.state))).all())
    assert found is not None and found.status == "cancelled"
    assert sources == {"push"} and states == {"done"}
