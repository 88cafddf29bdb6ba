"""Incremental order pulls that never lose an order.

Per (shop, stream) a cursor marks the end of the last window whose orders are committed.
A pull reads from `cursor − overlap` (platforms commit modified times late, so the overlap
re-reads the edge) to `now − lag`, cut into windows no longer than the platform allows,
each read to its last page. Orders are committed in batches through the same idempotent
path as pushes (`OrderBook.ingest`); the cursor moves only after a whole window is
committed, and only over time that was read without a gap. A first pull backfills
`orders.backfill` (or from `--since`).

Why a crash loses nothing and duplicates nothing. Say the window 10:00–10:30 has pages
P1..P5 and the process dies after committing P1–P3:

* the cursor still says 10:00 (it moves after P5's commit), so the restart reads 10:00–10:30
  again — P4 and P5 are read, nothing is skipped;
* P1–P3 are read again too; `ingest` finds those orders by (shop, platform order id),
  applies nothing older than what it has, and the unique reservation per order line makes
  a second reservation impossible — so nothing is doubled;
* a batch that was in flight when the process died was one transaction: all of it or none
  of it is in the database.

An explicit `--since` later than the cursor leaves a gap between the two; the cursor is then
left where it is (the gap would otherwise never be read), and only windows that start at
or before the cursor move it.

A lease per (shop, stream) keeps two nodes from pulling the same shop at once; it is renewed
with every committed batch and, before a page is read, whenever a third of it has passed, and
a node that finds it lost stops before its next call (another node has taken over). So a
window is never read by two nodes at once as long as one page read is shorter than two
thirds of `daemon.lease`. A node killed while holding it blocks the shop
only until the lease expires (`daemon.lease`).

One order that does not map arrives as `UnreadableOrder`: it is quarantined with an alert in
the same transaction as its batch and the window goes on. A page that does not parse at all
stops the window (quarantined with its window, so `quarantine retry` can re-pull it); the
cursor stays before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import leases
from core.db import insert_for, transaction
from core.errors import BadResponse
from core.http import working_on
from core.leases import LeaseLost
from core.logs import get_logger
from core.model import SyncCursor
from core.orders import IngestResult, retried_transaction
from core.paging import split_window
from core.quarantine import quarantine, resolve_orders, window_key, window_reference
from core.records import OrderRecord, UnreadableOrder
from core.runtime import Runtime

log = get_logger("erpsync.pull")
STREAM = "orders"
# orders per transaction: each batch pays a constant (the level locks, one publish to every
# listing of the SKUs it touched), so 100 → 250 is a third faster (bench/orders.py); larger
# buys little and holds SQLite's single writer lock longer against webhooks
BATCH = 250
_MARGIN = timedelta(minutes=1)


@dataclass(slots=True)
class PullStats:
    windows: int = 0
    orders_seen: int = 0
    new: int = 0
    updated: int = 0
    stale: int = 0
    backordered: int = 0
    quarantined: int = 0
    batches: int = 0
    skipped_locked: bool = False
    cursor: datetime | None = None
    errors: list[str] = field(default_factory=list)

    def add(self, result: IngestResult) -> None:
        self.new += result.new
        self.updated += result.updated
        self.stale += result.stale
        self.backordered += result.backordered


@dataclass(frozen=True, slots=True)
class PullPlan:
    """Where a pull starts and ends, and whether its windows may move the cursor."""

    start: datetime
    end: datetime
    cursor: datetime | None


async def cursor_position(rt: Runtime, shop: str, stream: str = STREAM) -> datetime | None:
    async with rt.sessions() as session:
        return await session.scalar(select(SyncCursor.position).where(
            SyncCursor.shop_id == rt.shop_ids[shop], SyncCursor.stream == stream))


async def plan_pull(rt: Runtime, shop: str, *, since: datetime | None = None,
                    until: datetime | None = None) -> PullPlan:
    connector = rt.connector(shop)
    now = rt.now()
    lag = rt.shop_config(shop).modified_lag
    end = until if until is not None else now - (
        connector.limits.modified_lag if lag is None else lag)
    cursor = await cursor_position(rt, shop)
    if since is not None:
        start = since
    elif cursor is not None:
        start = cursor - rt.config.orders.overlap
    else:
        start = now - rt.config.orders.backfill
    if connector.limits.max_lookback is not None:
        # the API refuses older windows; a minute of margin for the time the pull takes
        start = max(start, now - connector.limits.max_lookback + _MARGIN)
    return PullPlan(start, end, cursor)


async def pull_orders(rt: Runtime, shop: str, *, since: datetime | None = None,
                      until: datetime | None = None,
                      on_window: Callable[[datetime, datetime, int], None] | None = None,
                      on_batch: Callable[[int], None] | None = None) -> PullStats:
    """Pull one shop's orders from its cursor (or `since`) to `until` (default now − lag).
    `on_window(start, end, orders)` after each committed window, `on_batch(orders)` after
    each committed batch (progress bars)."""
    stats = PullStats()
    connector = rt.connector(shop)
    shop_id = rt.shop_ids[shop]
    lease = _Lease(rt, f"pull:{shop}:{STREAM}")
    if not await lease.acquire():
        stats.skipped_locked = True
        return stats
    try:
        plan = await plan_pull(rt, shop, since=since, until=until)
        covered = plan.cursor
        for window_start, window_end in split_window(plan.start, plan.end,
                                                     connector.limits.max_window):
            count = await _pull_window(rt, shop, shop_id, window_start, window_end, stats,
                                       lease, on_batch)
            # a window may move the cursor only when no unread time lies before it
            contiguous = covered is None or window_start <= covered
            async with transaction(rt.sessions) as session:
                if contiguous:
                    await _advance(session, shop_id, window_end, rt.now())
                await lease.renew(session)
            if contiguous:
                covered = window_end if covered is None else max(covered, window_end)
                stats.cursor = covered
            stats.windows += 1
            if on_window is not None:
                on_window(window_start, window_end, count)
    finally:
        async with transaction(rt.sessions) as session:
            await leases.release(session, lease.name, rt.node)
    return stats


async def _pull_window(rt: Runtime, shop: str, shop_id: int, start: datetime, end: datetime,
                       stats: PullStats, lease: _Lease,
                       on_batch: Callable[[int], None] | None) -> int:
    connector = rt.connector(shop)
    batch: list[OrderRecord] = []
    unreadable: list[UnreadableOrder] = []
    count = 0
    iterator = connector.iter_orders(start, end).__aiter__()
    while True:
        await lease.keep()
        try:
            with working_on(rt.node, f"pull {shop} {start.isoformat()}/{end.isoformat()}"):
                item = await iterator.__anext__()
        except StopAsyncIteration:
            break
        except BadResponse as exc:
            # a page that does not parse: keep what was read, keep the page, and stop this
            # window here, so the cursor does not move past orders we could not read
            if batch or unreadable:
                await _commit(rt, shop_id, batch, unreadable, stats, lease, on_batch)
            async with transaction(rt.sessions) as session:
                await quarantine(session, shop_id=shop_id, source="pull", payload=exc.body,
                                 error=str(exc), now=rt.now(),
                                 reference=window_reference(start, end),
                                 key=window_key(shop_id, start))
            stats.quarantined += 1
            raise
        count += 1
        if isinstance(item, UnreadableOrder):
            unreadable.append(item)
        else:
            batch.append(item)
        if len(batch) + len(unreadable) >= BATCH:
            await _commit(rt, shop_id, batch, unreadable, stats, lease, on_batch)
            batch, unreadable = [], []
    if batch or unreadable:
        await _commit(rt, shop_id, batch, unreadable, stats, lease, on_batch)
    return count


async def _commit(rt: Runtime, shop_id: int, batch: list[OrderRecord],
                  unreadable: list[UnreadableOrder], stats: PullStats, lease: _Lease,
                  on_batch: Callable[[int], None] | None) -> None:
    async def body(session: AsyncSession) -> IngestResult:
        now = rt.now()
        result = await rt.book.ingest(session, shop_id, batch, source="pull", now=now)
        readable = {record.platform_order_id for record in batch}
        await resolve_orders(session, shop_id, readable, now, "a readable copy was pulled")
        for bad in unreadable:
            if bad.platform_order_id in readable:
                continue  # a readable copy in the same batch wins
            await quarantine(session, shop_id=shop_id, source="pull", payload=bad.payload,
                             error=bad.error, now=now,
                             platform_order_id=bad.platform_order_id or None,
                             reference=bad.platform_order_id)
        await lease.renew(session)
        return result

    result = await retried_transaction(rt.sessions, body)
    stats.orders_seen += len(batch) + len(unreadable)
    stats.quarantined += len(unreadable)
    stats.batches += 1
    stats.add(result)
    if on_batch is not None:
        on_batch(len(batch) + len(unreadable))


async def _advance(session: AsyncSession, shop_id: int, position: datetime,
                   now: datetime) -> None:
    statement = insert_for(session, SyncCursor).values(
        shop_id=shop_id, stream=STREAM, position=position, last_success_at=now, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=["shop_id", "stream"],
        set_={"position": position, "last_success_at": now, "updated_at": now},
        where=SyncCursor.position < position)
    await session.execute(statement)


class _Lease:
    def __init__(self, rt: Runtime, name: str) -> None:
        self.rt = rt
        self.name = name
        self.ttl = rt.config.daemon.lease
        self.renewed_at = rt.now()

    async def acquire(self) -> bool:
        self.renewed_at = self.rt.now()
        async with transaction(self.rt.sessions) as session:
            return await leases.acquire(session, self.name, self.rt.node, self.renewed_at,
                                        self.ttl)

    async def renew(self, session: AsyncSession) -> None:
        now = self.rt.now()
        if not await leases.renew(session, self.name, self.rt.node, now, self.ttl):
            log.warning("pull lease lost", lease=self.name, node=self.rt.node)
            raise LeaseLost(f"{self.name}: the lease expired and another node took it over")
        self.renewed_at = now

    async def keep(self) -> None:
        """Before a page is read: renew once a third of the lease has passed."""
        if self.rt.now() - self.renewed_at >= self.ttl / 3:
            async with transaction(self.rt.sessions) as session:
                await self.renew(session)

