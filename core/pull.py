"""Incremental pulls that never lose an order.

Per (shop, stream) a cursor marks the end of the last window whose orders are committed.
A pull reads windows from `cursor − overlap` to `now − lag` (platforms commit modified
times late, so the overlap re-reads the edge), cut to the platform's maximum window, each
read to its last page. Orders are committed page by page through the same idempotent path
as pushes; the cursor moves only after a whole window is committed. A crash in the middle
of a window re-reads that window on restart: nothing is lost, and re-read orders change
nothing. A lease per (shop, stream) keeps two daemons from pulling the same window at once.
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
from core.logs import get_logger
from core.model import QuarantinedPayload, SyncCursor
from core.orders import IngestResult
from core.paging import split_window
from core.records import OrderRecord
from core.runtime import Runtime

log = get_logger("erpsync.pull")
STREAM = "orders"
BATCH = 100


@dataclass(slots=True)
class PullStats:
    windows: int = 0
    orders_seen: int = 0
    new: int = 0
    updated: int = 0
    backordered: int = 0
    quarantined: int = 0
    skipped_locked: bool = False
    cursor: datetime | None = None
    errors: list[str] = field(default_factory=list)

    def add(self, result: IngestResult) -> None:
        self.new += result.new
        self.updated += result.updated
        self.backordered += result.backordered


async def cursor_position(rt: Runtime, shop: str, stream: str = STREAM) -> datetime | None:
    async with rt.sessions() as session:
        return await session.scalar(select(SyncCursor.position).where(
            SyncCursor.shop_id == rt.shop_ids[shop], SyncCursor.stream == stream))


async def pull_orders(rt: Runtime, shop: str, *, since: datetime | None = None,
                      until: datetime | None = None,
                      on_window: Callable[[datetime, datetime, int], None] | None = None,
                      ) -> PullStats:
    stats = PullStats()
    connector = rt.connector(shop)
    shop_id = rt.shop_ids[shop]
    lease_name = f"pull:{shop}:{STREAM}"
    ttl = rt.config.daemon.lease
    async with transaction(rt.sessions) as session:
        if not await leases.acquire(session, lease_name, rt.node, rt.now(), ttl):
            stats.skipped_locked = True
            return stats
    try:
        now = rt.now()
        end = until or (now - connector.limits.modified_lag)
        cursor = await cursor_position(rt, shop)
        if since is not None:
            start = since
        elif cursor is not None:
            start = cursor - rt.config.orders.overlap
        else:
            start = now - rt.config.orders.backfill
        if connector.limits.max_lookback is not None:
            start = max(start, now - connector.limits.max_lookback + timedelta(minutes=1))
        for window_start, window_end in split_window(start, end, connector.limits.max_window):
            count = await _pull_window(rt, shop, shop_id, window_start, window_end, stats)
            async with transaction(rt.sessions) as session:
                await _advance(session, shop_id, window_end, rt.now())
                await leases.renew(session, lease_name, rt.node, rt.now(), ttl)
            stats.windows += 1
            stats.cursor = window_end
            if on_window is not None:
                on_window(window_start, window_end, count)
    finally:
        async with transaction(rt.sessions) as session:
            await leases.release(session, lease_name, rt.node)
    return stats


async def _pull_window(rt: Runtime, shop: str, shop_id: int, start: datetime, end: datetime,
                       stats: PullStats) -> int:
    connector = rt.connector(shop)
    batch: list[OrderRecord] = []
    count = 0
    iterator = connector.iter_orders(start, end).__aiter__()
    while True:
        try:
            record = await iterator.__anext__()
        except StopAsyncIteration:
            break
        except BadResponse as exc:
            # a page that does not parse: keep it, alert, and stop this window here so the
            # cursor does not move past orders we could not read
            await quarantine(rt, shop_id, "pull", f"{start.isoformat()}..{end.isoformat()}",
                             exc.body.decode(errors="replace"), str(exc))
            stats.quarantined += 1
            raise
        batch.append(record)
        count += 1
        if len(batch) >= BATCH:
            await _commit(rt, shop_id, batch, stats)
            batch = []
    if batch:
        await _commit(rt, shop_id, batch, stats)
    return count


async def _commit(rt: Runtime, shop_id: int, batch: list[OrderRecord], stats: PullStats) -> None:
    async with transaction(rt.sessions) as session:
        result = await rt.book.ingest(session, shop_id, batch, source="pull", now=rt.now())
    stats.orders_seen += len(batch)
    stats.add(result)


async def _advance(session: AsyncSession, shop_id: int, position: datetime,
                   now: datetime) -> None:
    statement = insert_for(session, SyncCursor).values(
        shop_id=shop_id, stream=STREAM, position=position, last_success_at=now, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=["shop_id", "stream"],
        set_={"position": position, "last_success_at": now, "updated_at": now},
        where=SyncCursor.position < position)
    await session.execute(statement)


async def quarantine(rt: Runtime, shop_id: int, source: str, reference: str, payload: str,
                     error: str) -> None:
    from core.alerts import open_alert

    async with transaction(rt.sessions) as session:
        session.add(QuarantinedPayload(shop_id=shop_id, source=source, reference=reference,
                                       payload=payload, error=error, created_at=rt.now(),
                                       updated_at=rt.now()))
        await open_alert(session, "quarantine", f"shop:{shop_id}:{source}",
                         f"a {source} payload could not be read: {error}", rt.now())
    log.warning("quarantined", shop_id=shop_id, source=source, reference=reference, error=error)
