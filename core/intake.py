"""Push intake, second half: pushed events stored in the inbox become orders.

The webhook receiver (core.web) only verifies, stores and acknowledges; this module does the
work later, so a platform never waits on our database or on a re-read. Each due event goes
through the same idempotent path as a pulled order (`OrderBook.ingest`, source "push"):
the order the push carries when it carries one, otherwise the order re-read with
`get_order` (pushes are hints: the re-read is the current state, so out-of-order and
duplicate pushes cannot move an order the wrong way). Polling keeps running beside this as
the safety net for pushes that never arrive.

An event ends in one of three states:

* `done` — ingested (or nothing to do: an event naming no order);
* `pending` again with `attempts`, `error` and a later `next_attempt_at` — the re-read
  failed in a way that may pass (rate limit, timeout, expired token, not visible yet),
  retried with exponential backoff up to MAX_ATTEMPTS;
* `quarantined` — it cannot map (BadResponse) or kept failing: kept in the quarantine table
  with an alert, where `erpsync orders quarantine retry` can re-read it.

Why a crash is harmless: the ingest and the `done` mark commit in one transaction, so an
event is either ingested and done, or neither, and is then processed again (idempotently).

Two daemons: one node at a time holds the `intake` lease (renewed per batch); another node
finds it held and skips this round. Pull and intake of the same order at once are the
order book's race, closed there (row lock + unique reservation per line).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import leases
from core.db import transaction
from core.errors import BadResponse, ConnectorError
from core.logs import get_logger
from core.model import InboxEvent
from core.orders import retried_transaction
from core.quarantine import quarantine, resolve_orders
from core.records import (
    Address,
    LineStatus,
    OrderLineRecord,
    OrderRecord,
    OrderStatus,
    PushEvent,
    PushKind,
)
from core.runtime import Runtime

log = get_logger("erpsync.intake")
LEASE = "intake:inbox"
MAX_ATTEMPTS = 8
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)


@dataclass(slots=True)
class IntakeStats:
    processed: int = 0
    ingested: int = 0
    retry_later: int = 0
    quarantined: int = 0
    skipped_locked: bool = False
    errors: list[str] = field(default_factory=list)


async def process_inbox(rt: Runtime, limit: int = 500) -> int:
    """Process up to `limit` due inbox events; returns how many were settled (done or
    quarantined). Failures that may pass are rescheduled and not counted."""
    stats = await process_inbox_stats(rt, limit=limit)
    return stats.processed


async def process_inbox_stats(rt: Runtime, limit: int = 500) -> IntakeStats:
    stats = IntakeStats()
    ttl = rt.config.daemon.lease
    async with transaction(rt.sessions) as session:
        if not await leases.acquire(session, LEASE, rt.node, rt.now(), ttl):
            stats.skipped_locked = True
            return stats
    try:
        events = await _due(rt, limit)
        by_shop: dict[int, list[InboxEvent]] = defaultdict(list)
        for event in events:
            by_shop[event.shop_id].append(event)
        for shop_id, shop_events in by_shop.items():
            await _process_shop(rt, shop_id, shop_events, stats)
            async with transaction(rt.sessions) as session:
                await leases.renew(session, LEASE, rt.node, rt.now(), ttl)
    finally:
        async with transaction(rt.sessions) as session:
            await leases.release(session, LEASE, rt.node)
    return stats


async def _due(rt: Runtime, limit: int) -> list[InboxEvent]:
    async with rt.sessions() as session:
        return list((await session.scalars(
            select(InboxEvent)
            .where(InboxEvent.state == "pending",
                   or_(InboxEvent.next_attempt_at.is_(None),
                       InboxEvent.next_attempt_at <= rt.now()))
            .order_by(InboxEvent.id).limit(limit))).all())


async def _process_shop(rt: Runtime, shop_id: int, events: list[InboxEvent],
                        stats: IntakeStats) -> None:
    try:
        shop = rt.shop_name(shop_id)
        connector = rt.connector(shop)
    except KeyError:
        for event in events:
            await _reschedule(rt, event, "the shop is no longer configured", stats)
        return
    records: dict[str, OrderRecord] = {}  # platform order id -> newest copy
    carriers: dict[str, list[InboxEvent]] = defaultdict(list)
    nothing: list[InboxEvent] = []
    to_read: dict[str, list[InboxEvent]] = defaultdict(list)
    for event in events:
        try:
            parsed = event_from_json(event.event)
        except (KeyError, TypeError, ValueError) as exc:
            await _quarantine(rt, event, f"stored event unreadable: {exc!r}", stats)
            continue
        if parsed.order is not None:
            order_id = parsed.order.platform_order_id
            seen = records.get(order_id)
            if seen is None or parsed.order.modified_at >= seen.modified_at:
                records[order_id] = parsed.order
            carriers[order_id].append(event)
        elif parsed.platform_order_id:
            to_read[parsed.platform_order_id].append(event)
        else:
            nothing.append(event)
    # a pushed copy is one state of the order; when the same order is also due for a
    # re-read, the re-read (current) copy is ingested beside it and the newer one wins
    for order_id, waiting in to_read.items():
        try:
            record = await connector.get_order(order_id)
        except BadResponse as exc:
            for event in waiting:
                await _quarantine(rt, event, str(exc), stats, payload=exc.body)
            continue
        except Exception as exc:  # kept on the event, retried later
            if not isinstance(exc, ConnectorError):
                log.exception("inbox re-read failed", platform_order_id=order_id)
            for event in waiting:
                await _reschedule(rt, event, f"{type(exc).__name__}: {exc}", stats)
            continue
        seen = records.get(order_id)
        if seen is None or record.modified_at >= seen.modified_at:
            records[order_id] = record
        carriers[order_id].extend(waiting)
    if nothing:
        await _mark_done(rt, nothing, stats)
    if not records:
        return
    try:
        await _ingest(rt, shop_id, list(records.values()), carriers)
    except Exception as exc:  # isolate the order that fails
        log.warning("inbox batch failed, retrying one by one", shop_id=shop_id, error=str(exc))
        for order_id, record in records.items():
            try:
                await _ingest(rt, shop_id, [record], {order_id: carriers[order_id]})
            except Exception as single:  # kept on the event
                log.exception("inbox order failed", platform_order_id=order_id)
                for event in carriers[order_id]:
                    await _reschedule(rt, event, f"{type(single).__name__}: {single}", stats)
            else:
                _count_done(carriers[order_id], stats)
        return
    for waiting in carriers.values():
        _count_done(waiting, stats)


def _count_done(events: Sequence[InboxEvent], stats: IntakeStats) -> None:
    stats.processed += len(events)
    stats.ingested += len(events)


async def _ingest(rt: Runtime, shop_id: int, records: list[OrderRecord],
                  carriers: Mapping[str, list[InboxEvent]]) -> None:
    ids = [event.id for record in records for event in carriers[record.platform_order_id]]

    async def body(session: AsyncSession) -> None:
        now = rt.now()
        await rt.book.ingest(session, shop_id, records, source="push", now=now)
        await resolve_orders(session, shop_id, [r.platform_order_id for r in records], now,
                             "a readable copy was pushed")
        await session.execute(
            update(InboxEvent).where(InboxEvent.id.in_(ids))
            .values(state="done", processed_at=now, error="")
            .execution_options(synchronize_session=False))

    await retried_transaction(rt.sessions, body)


async def _mark_done(rt: Runtime, events: Sequence[InboxEvent], stats: IntakeStats) -> None:
    async with transaction(rt.sessions) as session:
        await session.execute(
            update(InboxEvent).where(InboxEvent.id.in_([e.id for e in events]))
            .values(state="done", processed_at=rt.now())
            .execution_options(synchronize_session=False))
    stats.processed += len(events)


async def _reschedule(rt: Runtime, event: InboxEvent, reason: str, stats: IntakeStats) -> None:
    attempts = event.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        await _quarantine(rt, event, f"gave up after {attempts} attempts: {reason}", stats)
        return
    delay = min(FIRST_BACKOFF * (2 ** (attempts - 1)), MAX_BACKOFF)
    async with transaction(rt.sessions) as session:
        await session.execute(
            update(InboxEvent).where(InboxEvent.id == event.id)
            .values(attempts=attempts, error=reason, next_attempt_at=rt.now() + delay)
            .execution_options(synchronize_session=False))
    stats.retry_later += 1
    stats.errors.append(reason)


async def _quarantine(rt: Runtime, event: InboxEvent, reason: str, stats: IntakeStats,
                      payload: bytes | str | None = None) -> None:
    async with transaction(rt.sessions) as session:
        await quarantine(session, shop_id=event.shop_id, source="push",
                         payload=payload or event.body, error=reason, now=rt.now(),
                         platform_order_id=event.platform_order_id,
                         reference=f"event:{event.event_id}")
        await session.execute(
            update(InboxEvent).where(InboxEvent.id == event.id)
            .values(state="quarantined", processed_at=rt.now(), error=reason,
                    attempts=event.attempts + 1)
            .execution_options(synchronize_session=False))
    stats.processed += 1
    stats.quarantined += 1


# -- the canonical event as stored JSON ------------------------------------------------------
def event_to_json(event: PushEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id, "kind": event.kind.value, "topic": event.topic,
        "platform_order_id": event.platform_order_id,
        "occurred_at": _time(event.occurred_at),
        "order": None if event.order is None else order_to_json(event.order),
    }


def event_from_json(data: Mapping[str, Any]) -> PushEvent:
    order = data.get("order")
    return PushEvent(
        event_id=str(data["event_id"]), kind=PushKind(data["kind"]), topic=str(data["topic"]),
        platform_order_id=data.get("platform_order_id"),
        occurred_at=_parse(data.get("occurred_at")),
        order=None if order is None else order_from_json(order))


def order_to_json(order: OrderRecord) -> dict[str, Any]:
    address = order.address
    return {
        "platform_order_id": order.platform_order_id, "status": order.status.value,
        "platform_status": order.platform_status, "created_at": _time(order.created_at),
        "modified_at": _time(order.modified_at), "paid_at": _time(order.paid_at),
        "total_fen": order.total_fen, "paid_fen": order.paid_fen,
        "post_fee_fen": order.post_fee_fen,
        "address": {"province": address.province, "city": address.city,
                    "district": address.district, "detail": address.detail,
                    "name": address.name, "phone": address.phone},
        "lines": [{
            "platform_line_id": line.platform_line_id, "platform_item_id": line.platform_item_id,
            "platform_sku_id": line.platform_sku_id, "merchant_code": line.merchant_code,
            "title": line.title, "quantity": line.quantity,
            "unit_price_fen": line.unit_price_fen, "paid_fen": line.paid_fen,
            "status": line.status.value, "presale_ship_by": _time(line.presale_ship_by),
        } for line in order.lines],
        "buyer_remark": order.buyer_remark, "seller_remark": order.seller_remark,
        "currency": order.currency, "tracking_numbers": list(order.tracking_numbers),
    }


def order_from_json(data: Mapping[str, Any]) -> OrderRecord:
    created = _parse(data["created_at"])
    modified = _parse(data["modified_at"])
    if created is None or modified is None:
        raise ValueError("an order needs created_at and modified_at")
    return OrderRecord(
        platform_order_id=str(data["platform_order_id"]), status=OrderStatus(data["status"]),
        platform_status=str(data["platform_status"]), created_at=created,
        modified_at=modified, paid_at=_parse(data.get("paid_at")),
        total_fen=int(data["total_fen"]), paid_fen=int(data["paid_fen"]),
        post_fee_fen=int(data["post_fee_fen"]), address=Address(**data["address"]),
        lines=tuple(OrderLineRecord(
            platform_line_id=str(line["platform_line_id"]),
            platform_item_id=str(line["platform_item_id"]),
            platform_sku_id=str(line["platform_sku_id"]),
            merchant_code=str(line["merchant_code"]), title=str(line["title"]),
            quantity=int(line["quantity"]), unit_price_fen=int(line["unit_price_fen"]),
            paid_fen=int(line["paid_fen"]), status=LineStatus(line["status"]),
            presale_ship_by=_parse(line.get("presale_ship_by"))) for line in data["lines"]),
        buyer_remark=str(data.get("buyer_remark", "")),
        seller_remark=str(data.get("seller_remark", "")),
        currency=str(data.get("currency", "CNY")),
        tracking_numbers=tuple(data.get("tracking_numbers") or ()))


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse(text: Any) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError(f"naive time {text!r} in a stored event")
    return moment
