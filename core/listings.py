"""Platform listings: binding to SKUs, reconciliation of what the platforms show, price and
shelf changes queued to the outbox, scheduled listing (定时上架) and dormant SKUs (滞销).

`pull_listings` reads a shop's listings and binds each to the SKU with the same merchant
code (商家编码 / outer id). A listing with no matching SKU stays unbound and is reported; a
SKU missing from a platform is reported too. Reading the platforms' quantities is also how
drift is found: each bound listing's quantity is compared with what the pool says it should
show (listings with a push still in the outbox are "in flight", not drift). With `correct`,
every drifting listing gets its right quantity queued; drift above the threshold opens a
`stock_drift` alert, which resolves once the listing agrees again.

Outbox rows for a listing (kinds "stock", "price", "listing", "shelve") draw their versions
from one counter per listing row (`Listing.publish_version`): taking the next version is an
UPDATE … RETURNING on that row, so two writers of the same listing queue behind its row lock
and can never hand out the same version twice. Versions only need to rise per outbox row;
sharing the counter across kinds keeps that true without a second column.

A listing the catalogue wants on a platform but that is not there yet is a *placeholder*
row: `platform_item_id` "" and `platform_sku_id` = the SKU's merchant code, `sku_id` NULL so
stock publishing never targets it. It carries what belongs to the listing before the
platform knows it (a rejection, a `publish_at`) and becomes the real row when the platform
answers with ids.

Scheduled listing. `fire_scheduled_listings` claims due rows with one conditional UPDATE
(`SET publish_at = NULL WHERE publish_at <= now … RETURNING`) and queues the shelve call in
the same transaction. The race it closes, two daemons on one PostgreSQL database: both run
the UPDATE at the same second; the second blocks on the first's row locks, and once the
first commits it re-checks `publish_at <= now` on the committed row, finds NULL and claims
nothing. SQLite serialises the two transactions at BEGIN IMMEDIATE, with the same outcome.
A crash after the commit leaves the shelve row in the outbox, sent after the restart; a
crash before it leaves `publish_at` in place, fired after the restart. So the platform is
asked once, whatever the number of processes or restarts (only a lost answer makes the
outbox repeat the same, harmless, shelve call).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.alerts import open_alert, resolve_alert
from core.clock import format_beijing
from core.db import insert_for, transaction
from core.model import Alert, Listing, Order, OrderLine, OutboxTask, Product, Shop, Sku
from core.outbox import enqueue
from core.records import LineStatus
from core.runtime import Runtime

PLACEHOLDER_ITEM = ""  # platform_item_id of a listing the platform does not have yet
OPEN_STATES = ("pending", "sending")


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
                                                      against_platform=True, shop_id=shop_id)
    return stats


# -- outbox versions and queues ----------------------------------------------------------------
async def next_listing_version(session: AsyncSession, listing_id: int, *, kind: str,
                               dedup_key: str) -> int:
    """The next version for an outbox row anchored on this listing; never below the row's
    current version (the anchor of a product's row may change when a placeholder merges)."""
    current = await session.scalar(select(OutboxTask.version).where(
        OutboxTask.kind == kind, OutboxTask.dedup_key == dedup_key)) or 0
    return int((await session.execute(
        update(Listing).where(Listing.id == listing_id)
        .values(publish_version=case((Listing.publish_version < current, current),
                                     else_=Listing.publish_version) + 1)
        .returning(Listing.publish_version)
        .execution_options(synchronize_session=False))).scalar_one())


async def queue_price_updates(session: AsyncSession, sku_ids: Iterable[int], now: datetime,
                              *, shop_ids: Iterable[int] | None = None) -> int:
    """Queue each bound listing of these SKUs (in these shops, default all) whose platform
    price (or queued price) is not the catalogue's. One outbox row per listing: a newer
    price rewrites it with a higher version, so only the newest price is sent. Returns rows
    written."""
    ids = set(sku_ids)
    if not ids:
        return 0
    query = (select(Listing.id, Listing.shop_id, Listing.price_fen, Sku.price_fen, Shop.settings)
             .join(Sku, Sku.id == Listing.sku_id).join(Shop, Shop.id == Listing.shop_id)
             .where(Listing.sku_id.in_(ids), Listing.platform_item_id != PLACEHOLDER_ITEM)
             .order_by(Listing.id))
    if shop_ids is not None:
        query = query.where(Listing.shop_id.in_(list(shop_ids)))
    rows = (await session.execute(query)).all()
    queued = {int(target): payload for target, payload in (await session.execute(
        select(OutboxTask.target, OutboxTask.payload).where(
            OutboxTask.kind == "price", OutboxTask.state.in_([*OPEN_STATES, "failed"]),
            OutboxTask.target.in_([str(r[0]) for r in rows])))).all()}
    written = 0
    for listing_id, shop_id, shown, price, settings in rows:
        if not (settings or {}).get("enabled", True):
            continue
        waiting = queued.get(listing_id)
        if shown == price and (waiting is None or int(waiting["price_fen"]) == price):
            continue
        if waiting is not None and int(waiting["price_fen"]) == price:
            continue  # already on its way
        dedup = f"listing:{listing_id}"
        version = await next_listing_version(session, listing_id, kind="price", dedup_key=dedup)
        await enqueue(session, kind="price", shop_id=shop_id, target=str(listing_id),
                      dedup_key=dedup, payload={"listing_id": listing_id, "price_fen": price},
                      version=version, now=now)
        written += 1
    return written


async def queue_shelve(session: AsyncSession, *, shop_id: int, item_id: str, on_sale: bool,
                       now: datetime, reason: str = "", priority: int = 1) -> None:
    """Queue putting a platform item on sale (上架) or taking it off (下架)."""
    anchor = await session.scalar(select(func.min(Listing.id)).where(
        Listing.shop_id == shop_id, Listing.platform_item_id == item_id))
    if anchor is None:
        raise ValueError(f"no listing of item {item_id} in shop {shop_id}")
    dedup = f"item:{shop_id}:{item_id}"
    version = await next_listing_version(session, anchor, kind="shelve", dedup_key=dedup)
    await enqueue(session, kind="shelve", shop_id=shop_id, target=item_id, dedup_key=dedup,
                  payload={"item": item_id, "on_sale": on_sale, "reason": reason},
                  version=version, now=now, priority=priority)


# -- placeholders -------------------------------------------------------------------------------
async def product_rows(session: AsyncSession, shop_id: int, product: Product) -> list[Listing]:
    """The product's listing rows in a shop: bound ones and placeholders."""
    codes = [s.merchant_code for s in product.skus]
    ids = [s.id for s in product.skus]
    return list((await session.scalars(select(Listing).where(
        Listing.shop_id == shop_id,
        (Listing.sku_id.in_(ids) & (Listing.platform_item_id != PLACEHOLDER_ITEM))
        | ((Listing.platform_item_id == PLACEHOLDER_ITEM) & Listing.platform_sku_id.in_(codes))
    ).order_by(Listing.id))).all())


async def ensure_placeholders(session: AsyncSession, shop_id: int, product: Product,
                              now: datetime) -> None:
    for sku in product.skus:
        await session.execute(insert_for(session, Listing).values(
            shop_id=shop_id, platform_item_id=PLACEHOLDER_ITEM,
            platform_sku_id=sku.merchant_code, sku_id=None, merchant_code=sku.merchant_code,
            title=product.title, price_fen=sku.price_fen, on_sale=False, created_at=now,
        ).on_conflict_do_nothing(
            index_elements=["shop_id", "platform_item_id", "platform_sku_id"]))


# -- scheduled listing --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Scheduled:
    shop: str
    items: tuple[str, ...]  # platform item ids; () while the listing is not created yet
    taken_off: int  # items queued to go off sale until the time


async def schedule_listing(rt: Runtime, product_code: str, at: datetime | None, *,
                           shops: Iterable[str] | None = None) -> list[Scheduled]:
    """Put a product's listings on sale at `at` (None: clear the schedule). In every chosen
    shop whose platform the product has a category for (or where it is listed already); an
    item on sale now is taken off until then."""
    from core.catalog import load_products

    wanted = set(shops) if shops is not None else None
    now = rt.now()
    done: list[Scheduled] = []
    async with transaction(rt.sessions) as session:
        found = await load_products(session, [product_code])
        if not found:
            raise KeyError(product_code)
        product = found[0]
        for shop in rt.enabled_shops():
            if wanted is not None and shop.name not in wanted:
                continue
            shop_id = rt.shop_ids[shop.name]
            rows = await product_rows(session, shop_id, product)
            if not rows:
                if at is None or shop.platform not in product.categories:
                    continue
                await ensure_placeholders(session, shop_id, product, now)
                rows = await product_rows(session, shop_id, product)
            for row in rows:
                row.publish_at = at
            items = sorted({r.platform_item_id for r in rows
                            if r.platform_item_id != PLACEHOLDER_ITEM})
            taken_off = 0
            if at is not None and at > now:
                for item in items:
                    if any(r.on_sale for r in rows if r.platform_item_id == item):
                        await queue_shelve(session, shop_id=shop_id, item_id=item,
                                           on_sale=False, now=now,
                                           reason=f"scheduled for {format_beijing(at)}")
                        taken_off += 1
            await session.flush()
            done.append(Scheduled(shop.name, tuple(items), taken_off))
    return done


async def fire_scheduled_listings(rt: Runtime) -> int:
    """Shelve every listed item whose `publish_at` has come, exactly once (see the module
    docstring for the race this closes). Returns the number of items fired here."""
    from core.senders import OutboxWorker

    now = rt.now()
    enabled = [rt.shop_ids[s.name] for s in rt.enabled_shops() if s.name in rt.shop_ids]
    if not enabled:
        return 0
    async with transaction(rt.sessions) as session:
        claimed = (await session.execute(
            update(Listing)
            .where(Listing.publish_at.is_not(None), Listing.publish_at <= now,
                   Listing.platform_item_id != PLACEHOLDER_ITEM, Listing.shop_id.in_(enabled))
            .values(publish_at=None)
            .returning(Listing.shop_id, Listing.platform_item_id)
            .execution_options(synchronize_session=False))).all()
        items = sorted({(int(shop_id), str(item)) for shop_id, item in claimed})
        for shop_id, item in items:
            # a scheduled go-live is a promise to buyers: it jumps the queue
            await queue_shelve(session, shop_id=shop_id, item_id=item, on_sale=True, now=now,
                               reason="scheduled listing", priority=0)
    if items:
        # sent now rather than at the outbox's next turn: "at that time" is the point
        await OutboxWorker(rt).drain(shops=sorted({rt.shop_name(s) for s, _ in items}),
                                     kinds=["shelve"])
    return len(items)


# -- dormant SKUs -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DormantSku:
    merchant_code: str
    days: int
    last_sold_at: datetime | None
    available: int


async def check_dormant(rt: Runtime) -> int:
    """Open `dormant_sku` for every listed, in-stock SKU with no sale for `dormant_after`
    (default 7 days), counted from its last paid order line, or from when it was first
    listed if it never sold; resolve it once a sale happens, the stock runs out or the SKU
    is no longer on sale anywhere. Returns the number of dormant SKUs.

    Sales are read from the order book (paid, not cancelled lines) rather than kept on the
    SKU, so the figure cannot drift from the orders it summarises."""
    found = await dormant_skus(rt)
    now = rt.now()
    async with transaction(rt.sessions) as session:
        subjects = set()
        for sku in found:
            subject = f"sku:{sku.merchant_code}"
            subjects.add(subject)
            since = ("never sold" if sku.last_sold_at is None
                     else f"last sold {format_beijing(sku.last_sold_at)[:10]}")
            message = (f"{sku.merchant_code}: no sale for {sku.days} days ({since}), "
                       f"{sku.available} available: mark down, bundle or delist")
            details = {"days": sku.days, "available": sku.available,
                       "last_sold_at": sku.last_sold_at.isoformat() if sku.last_sold_at else None}
            if not await open_alert(session, "dormant_sku", subject, message, now, details):
                # keep the open alert's count of days current
                await session.execute(update(Alert).where(
                    Alert.open_key == f"dormant_sku:{subject}").values(
                    message=message, details=details))
        for subject in (await session.scalars(select(Alert.subject).where(
                Alert.kind == "dormant_sku", Alert.open_key.is_not(None)))).all():
            if subject not in subjects:
                await resolve_alert(session, "dormant_sku", subject, now)
    return len(found)


async def dormant_skus(rt: Runtime) -> list[DormantSku]:
    from core.listing_rules import ListingRules

    after = ListingRules.from_toml(rt.rules_data).dormant_after
    now = rt.now()
    enabled = [rt.shop_ids[s.name] for s in rt.enabled_shops() if s.name in rt.shop_ids]
    async with rt.sessions() as session:
        listed: dict[int, datetime] = {sku_id: since for sku_id, since in (
            await session.execute(
                select(Listing.sku_id, func.min(Listing.created_at))
                .where(Listing.sku_id.is_not(None), Listing.on_sale.is_(True),
                       Listing.platform_item_id != PLACEHOLDER_ITEM,
                       Listing.shop_id.in_(enabled))
                .group_by(Listing.sku_id))).all() if sku_id is not None}
        if not listed:
            return []
        available = await rt.pool.available_many(session, listed)
        sold: dict[int, datetime] = {sku_id: at for sku_id, at in (await session.execute(
            select(OrderLine.sku_id, func.max(Order.paid_at))
            .join(Order, Order.id == OrderLine.order_id)
            .where(OrderLine.sku_id.in_(list(listed)), Order.paid_at.is_not(None),
                   OrderLine.status != LineStatus.CANCELLED.value)
            .group_by(OrderLine.sku_id))).all() if sku_id is not None and at is not None}
        codes = dict((await session.execute(select(Sku.id, Sku.merchant_code).where(
            Sku.id.in_(list(listed))))).all())
    found = []
    for sku_id, listed_since in sorted(listed.items(), key=lambda kv: codes[kv[0]]):
        if available.get(sku_id, 0) <= 0:
            continue
        last = sold.get(sku_id)
        quiet = now - (last or listed_since)
        if quiet >= after:
            found.append(DormantSku(codes[sku_id], quiet.days, last, available[sku_id]))
    return found
