"""The outbox worker: claims due tasks and sends them through the connectors.

Stock tasks of one shop are sent together through the platform's batch method (chunked to
its batch limit). A task's outcome decides its next state:

    success / "already shipped" with our waybill  → done (or pending if a newer version waits)
    reclaimed, and the platform already holds it  → done without sending again
    RateLimited, Transient, BadResponse, timeout   → retried later with backoff
    AuthExpired (after the one refresh)            → retried later, `auth_expired` alert
    Rejected, NotFound, UnmappedCarrier            → failed, visible, alerted
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core import outbox
from core.alerts import open_alert, resolve_alert
from core.connector import Connector
from core.db import transaction
from core.errors import (
    AuthExpired,
    BadResponse,
    ConnectorError,
    ErpsyncError,
    RateLimited,
    Rejected,
)
from core.http import working_on
from core.logs import get_logger
from core.model import Listing, Order, OutboxTask, Shipment
from core.outbox import Claimed
from core.pull import cursor_position
from core.records import ShipRequest, StockUpdate
from core.runtime import Runtime

log = get_logger("erpsync.outbox")
# a reclaimed stock task waits at most this long for its shop's orders to be pulled
PULL_WAIT_LIMIT = timedelta(minutes=10)


@dataclass(slots=True)
class SendStats:
    claimed: int = 0
    sent: int = 0
    # reclaimed tasks whose value the platform already held: completed without a send
    confirmed: int = 0
    retried: int = 0
    failed: int = 0
    calls_by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class OutboxWorker:
    def __init__(self, rt: Runtime, *, limit: int = 500) -> None:
        self.rt = rt
        self.limit = limit
        # task id -> when our lease on it was last set (claim or renewal)
        self._leased_at: dict[int, datetime] = {}

    async def drain(self, *, shops: Sequence[str] | None = None, rounds: int = 20,
                    kinds: Sequence[str] | None = None) -> SendStats:
        """Send until nothing is due (or `rounds` claims were made)."""
        stats = SendStats()
        shop_ids = [self.rt.shop_ids[s] for s in shops] if shops is not None else None
        for _ in range(rounds):
            now = self.rt.now()
            async with transaction(self.rt.sessions) as session:
                claimed = await outbox.claim(session, owner=self.rt.node, now=now,
                                             lease=self.rt.config.daemon.lease,
                                             limit=self.limit, shop_ids=shop_ids, kinds=kinds)
            self._leased_at = {task.id: now for task in claimed}
            if not claimed:
                break
            stats.claimed += len(claimed)
            groups: dict[tuple[int, str], list[Claimed]] = defaultdict(list)
            for task in claimed:
                groups[(task.shop_id, task.kind)].append(task)
            # shops are independent: their calls go out together (each shop's own rate
            # limiter still spaces its calls), so a fan-out costs one round trip, not twenty
            await asyncio.gather(*(self._send_group(shop_id, kind, tasks, stats)
                                   for (shop_id, kind), tasks in groups.items()))
        return stats

    async def _send_group(self, shop_id: int, kind: str, tasks: list[Claimed],
                          stats: SendStats) -> None:
        try:
            connector = self.rt.connector(self.rt.shop_name(shop_id))
        except KeyError:
            for task in tasks:
                await self._outcome(task, Rejected(f"shop {shop_id} is not configured"), stats)
            return
        if kind == "stock":
            await self._send_stock(connector, tasks, stats)
        elif kind == "ship":
            for task in tasks:
                await self._send_ship(connector, task, stats)
        elif kind in ("listing", "price", "shelve"):
            from core.listing_senders import send

            for task in tasks:
                if not await self._still_ours([task]):
                    continue
                stats.calls_by_kind[kind] += 1
                with working_on(self.rt.node, _work([task])):
                    outcome = await send(self.rt, connector, task)
                await self._outcome(task, outcome, stats)
        else:
            for task in tasks:
                await self._outcome(task, Rejected(f"unknown outbox kind {kind!r}"), stats)

    async def _send_stock(self, connector: Connector, tasks: list[Claimed],
                          stats: SendStats) -> None:
        if self.rt.config.inventory.mode != "strict":
            await self._send_stock_batch(connector, tasks, stats)
            return
        # Strict mode: the channels' shares must never add up to more than exists, so an
        # increase waits until every decrease of the same SKU has reached its platform.
        decreases = [t for t in tasks if t.payload.get("decrease")]
        increases = [t for t in tasks if not t.payload.get("decrease")]
        await self._send_stock_batch(connector, decreases, stats)
        if not increases:
            return
        waiting = await self._skus_with_open_decreases({int(t.payload["sku_id"])
                                                       for t in increases})
        await self._send_stock_batch(
            connector, [t for t in increases if int(t.payload["sku_id"]) not in waiting], stats)
        for task in increases:
            if int(task.payload["sku_id"]) in waiting:
                async with transaction(self.rt.sessions) as session:
                    await outbox.defer(session, task, owner=self.rt.node, now=self.rt.now(),
                                       delay=timedelta(seconds=1),
                                       reason="strict mode: waiting for decreases elsewhere")

    async def _skus_with_open_decreases(self, sku_ids: set[int]) -> set[int]:
        async with self.rt.sessions() as session:
            payloads = (await session.scalars(select(OutboxTask.payload).where(
                OutboxTask.kind == "stock",
                OutboxTask.state.in_(["pending", "sending", "failed"])))).all()
        return {int(p["sku_id"]) for p in payloads
                if p.get("decrease") and int(p.get("sku_id", 0)) in sku_ids}

    async def _send_stock_batch(self, connector: Connector, tasks: list[Claimed],
                                stats: SendStats) -> None:
        if not tasks:
            return
        listing_ids = [int(t.payload["listing_id"]) for t in tasks]
        async with self.rt.sessions() as session:
            listings = {row.id: row for row in (await session.scalars(
                select(Listing).where(Listing.id.in_(listing_ids)))).all()}
        updates = {}
        for task in tasks:
            listing = listings[int(task.payload["listing_id"])]
            updates[task.id] = StockUpdate(listing.platform_item_id, listing.platform_sku_id,
                                           int(task.payload["quantity"]))
        tasks = await self._not_yet_landed(connector, tasks, updates, stats)
        size = max(1, connector.limits.max_batch)
        for start in range(0, len(tasks), size):
            chunk = await self._still_ours(tasks[start:start + size])
            if not chunk:
                continue
            by_key = {_key(updates[t.id]): t for t in chunk}
            stats.calls_by_kind["stock"] += 1
            try:
                with working_on(self.rt.node, _work(chunk)):
                    outcomes = await connector.set_stock([updates[t.id] for t in chunk])
            except ErpsyncError as exc:
                await self._outcomes([(task, exc) for task in chunk], stats)
                continue
            await self._outcomes([(by_key[(o.platform_item_id, o.platform_sku_id)], o.error)
                                  for o in outcomes], stats)

    async def _not_yet_landed(self, connector: Connector, tasks: list[Claimed],
                              updates: dict[int, StockUpdate], stats: SendStats) -> list[Claimed]:
        """Screen reclaimed stock tasks, whose dead sender may have landed them.

        The platform shows our quantity: it landed; done, not sent again. It shows another:
        either the call never landed, or it did and buyers have bought since — sending the
        same quantity again would then overwrite those sales. So the task waits until the
        shop's orders are pulled up to this moment (`after_pull`): the sales, if any, queue
        a newer version, which is what gets sent; with no newer version the old one is sent.
        A platform we cannot ask (no listing read) gets the send at once."""
        reclaimed = [t for t in tasks if t.reclaimed]
        shop = connector.shop.name
        held = await self._platform_quantities(connector, reclaimed, updates) if reclaimed \
            else None
        if held is None:
            return await self._after_pull(shop, tasks)
        landed = [t for t in reclaimed if held.get(_key(updates[t.id])) == updates[t.id].quantity]
        if landed:
            await self._outcomes([(t, None) for t in landed], stats, confirmed=True)
        settled = {t.id for t in landed}
        waiting = [t for t in reclaimed if t.id not in settled]
        if waiting:
            now = self.rt.now()
            async with transaction(self.rt.sessions) as session:
                for task in waiting:
                    await outbox.mark(session, task, {"after_pull": now.isoformat()})
                    await self._wait_for_pull(session, shop, task, now)
            settled |= {t.id for t in waiting}
        return await self._after_pull(shop, [t for t in tasks if t.id not in settled])

    async def _platform_quantities(self, connector: Connector, tasks: list[Claimed],
                                   updates: dict[int, StockUpdate],
                                   ) -> dict[tuple[str, str], int] | None:
        """What the platform shows for these tasks' SKUs; None when it cannot be asked."""
        try:
            with working_on(self.rt.node, "check " + _work(tasks)):
                return await connector.current_stock([_key(updates[t.id]) for t in tasks])
        except NotImplementedError:
            return None
        except ErpsyncError as exc:
            log.warning("reclaim check failed; sending", shop=connector.shop.name,
                        error=_describe(exc))
            return None

    async def _after_pull(self, shop: str, tasks: list[Claimed]) -> list[Claimed]:
        """Hold tasks marked `after_pull` until the shop's order cursor has passed the mark
        (or `PULL_WAIT_LIMIT` has, for a shop whose pulls do not run)."""
        marked = [t for t in tasks if "after_pull" in t.payload]
        if not marked:
            return tasks
        cursor = await cursor_position(self.rt, shop)
        now = self.rt.now()
        held = set()
        async with transaction(self.rt.sessions) as session:
            for task in marked:
                mark = datetime.fromisoformat(str(task.payload["after_pull"]))
                if (cursor is None or cursor < mark) and now - mark < PULL_WAIT_LIMIT:
                    await self._wait_for_pull(session, shop, task, now)
                    held.add(task.id)
        return [t for t in tasks if t.id not in held]

    async def _wait_for_pull(self, session: AsyncSession, shop: str, task: Claimed,
                             now: datetime) -> None:
        await outbox.defer(session, task, owner=self.rt.node, now=now,
                           delay=self.rt.shop_config(shop).intervals.orders,
                           reason="reclaimed: the platform shows another quantity; "
                                  "waiting for the orders pulled up to then")

    async def _still_ours(self, tasks: list[Claimed]) -> list[Claimed]:
        """Right before a call: leases set less than a third of their length ago stand
        (no other node can claim before they expire); older ones are renewed, and a task
        another node took over meanwhile is its now."""
        now = self.rt.now()
        lease = self.rt.config.daemon.lease
        if all(now - self._leased_at.get(t.id, now - lease) < lease / 3 for t in tasks):
            return tasks
        async with transaction(self.rt.sessions) as session:
            ours = await outbox.renew(session, tasks, owner=self.rt.node, now=now, lease=lease)
        self._leased_at.update((task_id, now) for task_id in ours)
        for task in tasks:
            if task.id not in ours:
                log.warning("outbox lease lost before sending", kind=task.kind,
                            target=task.target, node=self.rt.node)
        return [t for t in tasks if t.id in ours]

    async def _send_ship(self, connector: Connector, task: Claimed, stats: SendStats) -> None:
        async with self.rt.sessions() as session:
            shipment = await session.get(Shipment, int(task.payload["shipment_id"]))
            assert shipment is not None
            order = await session.scalar(select(Order).where(Order.id == shipment.order_id)
                                         .options(selectinload(Order.lines)))
            assert order is not None
            lines = {line.id: line for line in order.lines}
            partial = len(shipment.line_ids) < len(lines)
            request = ShipRequest(
                platform_order_id=order.platform_order_id, carrier=shipment.carrier,
                tracking_number=shipment.tracking_number,
                line_ids=tuple(lines[i].platform_line_id for i in shipment.line_ids)
                if partial else ())
        if task.reclaimed and await self._holds_waybill(connector, task, request):
            await self._outcomes([(task, None)], stats, shipment_id=shipment.id, confirmed=True)
            return
        if not await self._still_ours([task]):
            return
        stats.calls_by_kind["ship"] += 1
        error: Exception | None = None
        try:
            with working_on(self.rt.node, _work([task])):
                await connector.ship(request)
        except Rejected as exc:
            error = exc
            if exc.reason == "already_shipped":
                # the first attempt may have landed before its answer was lost: the
                # platform holding our waybill means the push is done
                try:
                    held = await connector.get_order(request.platform_order_id)
                    if request.tracking_number in held.tracking_numbers:
                        error = None
                except ConnectorError as lookup:
                    error = lookup
        except ErpsyncError as exc:
            error = exc
        await self._outcome(task, error, stats, shipment_id=shipment.id)

    async def _holds_waybill(self, connector: Connector, task: Claimed,
                             request: ShipRequest) -> bool:
        """A reclaimed ship task: did the dead sender's call land?"""
        try:
            with working_on(self.rt.node, "check " + _work([task])):
                held = await connector.get_order(request.platform_order_id)
        except ErpsyncError as exc:
            log.warning("reclaim check failed; sending", shop=connector.shop.name,
                        error=_describe(exc))
            return False
        return request.tracking_number in held.tracking_numbers

    async def _outcome(self, task: Claimed, error: Exception | None, stats: SendStats, *,
                       shipment_id: int | None = None) -> None:
        await self._outcomes([(task, error)], stats, shipment_id=shipment_id)

    async def _outcomes(self, results: list[tuple[Claimed, Exception | None]],
                        stats: SendStats, *, shipment_id: int | None = None,
                        confirmed: bool = False) -> None:
        """Record the outcomes of one batch call in one transaction."""
        now = self.rt.now()
        async with transaction(self.rt.sessions) as session:
            for task, error in results:
                await self._record(session, task, error, stats, shipment_id, now, confirmed)
        for task, error in results:
            log.info("outbox_outcome", kind=task.kind, target=task.target,
                     shop=self.rt.shop_name(task.shop_id), error=_describe(error))

    async def _record(self, session: AsyncSession, task: Claimed, error: Exception | None,
                      stats: SendStats, shipment_id: int | None, now: datetime,
                      confirmed: bool) -> None:
        owner = self.rt.node
        if error is None:
            if await outbox.complete(session, task, owner=owner, now=now):
                if confirmed:
                    stats.confirmed += 1
                else:
                    stats.sent += 1
                await self._after_success(session, task, shipment_id, now)
            # else: our lease was taken over; the new owner finishes it
            return
        message = _describe(error)
        if isinstance(error, AuthExpired):
            await outbox.retry_later(session, task, owner=owner, now=now, error=message)
            await open_alert(session, "auth_expired", f"shop:{task.shop_id}",
                             f"{self.rt.shop_name(task.shop_id)}: {message}", now)
            stats.retried += 1
        elif isinstance(error, BadResponse) or (
                isinstance(error, ConnectorError) and error.retriable):
            retry_after = error.retry_after if isinstance(error, RateLimited) else None
            await outbox.retry_later(session, task, owner=owner, now=now, error=message,
                                     retry_after=retry_after)
            stats.retried += 1
        else:
            await outbox.fail(session, task, owner=owner, now=now, error=message)
            stats.failed += 1
            kind = "tracking_push_failed" if task.kind == "ship" else "push_failed"
            # one alert per outbox row (a product refused in two shops is two problems)
            await open_alert(session, kind, f"outbox:{task.id}",
                             f"{self.rt.shop_name(task.shop_id)} refused {task.kind} for "
                             f"{task.target}: {message}", now)
            if shipment_id is not None:
                await session.execute(update(Shipment).where(Shipment.id == shipment_id)
                                      .values(push_state="failed", push_error=message))

    async def _after_success(self, session: AsyncSession, task: Claimed,
                             shipment_id: int | None, now: datetime) -> None:
        if task.kind == "stock":
            await session.execute(
                update(Listing).where(Listing.id == int(task.payload["listing_id"]),
                                      Listing.last_pushed_version < task.version)
                .values(last_pushed_quantity=int(task.payload["quantity"]),
                        last_pushed_version=task.version, last_pushed_at=now))
        elif task.kind == "ship" and shipment_id is not None:
            await session.execute(update(Shipment).where(Shipment.id == shipment_id)
                                  .values(push_state="pushed", pushed_at=now, push_error=""))
            await resolve_alert(session, "tracking_push_late", f"shipment:{shipment_id}", now)
        await resolve_alert(session, "push_failed" if task.kind != "ship"
                            else "tracking_push_failed", f"outbox:{task.id}", now)


_sends = itertools.count(1)


def _key(update: StockUpdate) -> tuple[str, str]:
    return update.platform_item_id, update.platform_sku_id


def _work(tasks: Sequence[Claimed]) -> str:
    """What a send is for, as the platform's side sees it: `outbox#7 12@3,15@1` — the send's
    number in this process (a connector may split one send into several calls), then the
    tasks at their versions."""
    return f"outbox#{next(_sends)} " + ",".join(f"{t.id}@{t.version}" for t in tasks)


def _describe(error: Exception | None) -> str:
    return "" if error is None else f"{type(error).__name__}: {error}"
