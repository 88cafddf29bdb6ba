"""Platform listings and their binding to SKUs.

`pull_listings` reads a shop's listings and binds each to the SKU with the same merchant
code (商家编码 / outer id). A listing with no matching SKU stays unbound and is reported; a
SKU missing from a platform is reported too. Newly bound listings get the quantity they
should show queued at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from core.db import insert_for, transaction
from core.model import Listing, Sku
from core.runtime import Runtime


@dataclass(slots=True)
class ListingPullStats:
    seen: int = 0
    bound: int = 0
    unbound: list[str] = field(default_factory=list)
    missing_skus: list[str] = field(default_factory=list)
    queued: int = 0


async def pull_listings(rt: Runtime, shop: str) -> ListingPullStats:
    stats = ListingPullStats()
    connector = rt.connector(shop)
    shop_id = rt.shop_ids[shop]
    records = [record async for record in connector.iter_listings()]
    now = rt.now()
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
        # the platform's own count may differ from what the pool allows: correct it
        stats.queued = await rt.publisher.publish(session, touched, now, against_platform=True)
    return stats
