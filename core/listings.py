"""Platform listings: binding to SKUs, and reconciliation of what the platforms show.

`pull_listings` reads a shop's listings and binds each to the SKU with the same merchant
code (商家编码 / outer id). A listing with no matching SKU stays unbound and is reported; a
SKU missing from a platform is reported too. Reading the platforms' quantities is also how
drift is found: each bound listing's quantity is compared with what the pool says it should
show (listings with a push still in the outbox are "in flight", not drift). With `correct`,
every drifting listing gets its right quantity queued; drift above the threshold opens a
`stock_drift` alert, which resolves once the listing agrees again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from core.alerts import open_alert, resolve_alert
from core.db import insert_for, transaction
from core.model import Listing, OutboxTask, Sku
from core.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Drift:
    listing_id: int
    item: str
    sku: str
    merchant_code: str
    platform_quantity: int
    expected: int
    in_flight: bool

    @property
    def delta(self) -> int:
        return self.platform_quantity - self.expected


@dataclass(slots=True)
class ListingPullStats:
    seen: int = 0
    bound: int = 0
    unbound: list[str] = field(default_factory=list)
    missing_skus: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    queued: int = 0


async def pull_listings(rt: Runtime, shop: str, *, correct: bool = True) -> ListingPullStats:
    stats = ListingPullStats()
    connector = rt.connector(shop)
    shop_id = rt.shop_ids[shop]
    records = [record async for record in connector.iter_listings()]
    now = rt.now()
    threshold = rt.config.inventory.drift_threshold
    async with transaction(rt.sessions) as session:
        skus = dict((await session.execute(select(Sku.merchant_code, Sku.id))).all())
        touched: set[int] = set()
        for record in records:
            stats.seen += 1
            sku_id = skus.get(record.merchant_code)
            values = dict(
                sku_id=sku_id, merchant_code=record.merchant_code, title=record.title,
                price_fen=record.price_fen, platform_quantity=record.quantity,
                on_sale=record.on_sale, pulled_at=now)
            statement = insert_for(session, Listing).values(
                shop_id=shop_id, platform_item_id=record.platform_item_id,
                platform_sku_id=record.platform_sku_id, created_at=now, **values)
            statement = statement.on_conflict_do_update(
                index_elements=["shop_id", "platform_item_id", "platform_sku_id"], set_=values)
            await session.execute(statement)
            if sku_id is None:
                stats.unbound.append(f"{record.platform_item_id}/{record.platform_sku_id} "
                                     f"({record.merchant_code or 'no merchant code'})")
            else:
                stats.bound += 1
                touched.add(sku_id)
        listed = {r.merchant_code for r in records}
        stats.missing_skus = sorted(code for code in skus if code not in listed)

        targets = {t.listing_id: t.quantity for t in await rt.publisher.targets(session, touched)
                   if t.shop_id == shop_id}
        rows = (await session.execute(select(Listing).where(Listing.id.in_(targets)))).scalars()
        in_flight = set((await session.scalars(select(OutboxTask.target).where(
            OutboxTask.kind == "stock", OutboxTask.shop_id == shop_id,
            OutboxTask.state.in_(["pending", "sending"])))).all())
        for listing in rows:
            expected = targets[listing.id]
            flying = str(listing.id) in in_flight
            subject = f"listing:{listing.id}"
            if listing.platform_quantity == expected:
                await resolve_alert(session, "stock_drift", subject, now)
                continue
            drift = Drift(listing.id, listing.platform_item_id, listing.platform_sku_id,
                          listing.merchant_code, listing.platform_quantity, expected, flying)
            stats.drift.append(drift)
            # a listing we never pushed is first sync, not drift: alert only when the
            # platform moved away from what we told it
            pushed = listing.last_pushed_quantity is not None
            if pushed and not flying and abs(drift.delta) > threshold:
                await open_alert(session, "stock_drift", subject,
                                 f"{shop} shows {listing.platform_quantity} of "
                                 f"{listing.merchant_code}, the pool says {expected}", now,
                                 {"shop": shop, "delta": drift.delta})
        if correct:
            stats.queued = await rt.publisher.publish(session, touched, now,
                                                      against_platform=True)
    return stats
