"""`erpsync status`: one screen per shop of what an operator checks first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.model import Alert, Listing, Order, OutboxTask, Shipment, SyncCursor
from core.runtime import Runtime


async def shop_status(rt: Runtime) -> list[dict[str, Any]]:
    now = rt.now()
    async with rt.sessions() as session:
        cursors = {shop_id: (position, success) for shop_id, position, success in (
            await session.execute(select(SyncCursor.shop_id, SyncCursor.position,
                                         SyncCursor.last_success_at)
                                  .where(SyncCursor.stream == "orders"))).all()}
        depth = dict((await session.execute(
            select(OutboxTask.shop_id, func.count()).where(
                OutboxTask.state.in_(["pending", "sending"])).group_by(OutboxTask.shop_id))).all())
        failing = dict((await session.execute(
            select(OutboxTask.shop_id, func.count()).where(OutboxTask.state == "failed")
            .group_by(OutboxTask.shop_id))).all())
        alerts = await open_alerts_by_shop(session, rt.shop_ids)
    rows = []
    for shop in rt.config.shops:
        shop_id = rt.shop_ids.get(shop.name, -1)
        position, success = cursors.get(shop_id, (None, None))
        tokens = rt.tokens.load(shop.name)
        rows.append({
            "shop": shop.name, "platform": shop.platform, "enabled": shop.enabled,
            "last_pull": success,
            "cursor_lag_seconds": None if position is None else (now - position).total_seconds(),
            "outbox": depth.get(shop_id, 0), "failing": failing.get(shop_id, 0),
            "token_expires": tokens.expires_at if tokens else None,
            "open_alerts": alerts[shop_id],
        })
    return rows


async def open_alerts_by_shop(session: AsyncSession, shop_ids: Mapping[str, int]) -> Counter[int]:
    """Open alerts per shop id. An alert names a subject, not a shop, so each subject is
    followed to its shop: `shop:<id or name>`, `<shop name>:…` (listing refusals), a refused
    push's `outbox:<id>`, `listing:<id>`, `order:<id>`, `shipment:<id>`. Subjects of no
    shop (`sku:…`, `tracking:…`) count for none."""
    alerts = (await session.execute(select(Alert.kind, Alert.subject)
                                    .where(Alert.open_key.is_not(None)))).all()
    ids: dict[str, set[int]] = {"outbox": set(), "listing": set(), "order": set(),
                                "shipment": set()}
    for _kind, subject in alerts:
        prefix, _, rest = subject.partition(":")
        if prefix in ids and rest.isdigit():
            ids[prefix].add(int(rest))
    owners: dict[str, dict[int, int]] = {
        "outbox": dict((await session.execute(select(OutboxTask.id, OutboxTask.shop_id).where(
            OutboxTask.id.in_(ids["outbox"])))).all()) if ids["outbox"] else {},
        "listing": dict((await session.execute(select(Listing.id, Listing.shop_id).where(
            Listing.id.in_(ids["listing"])))).all()) if ids["listing"] else {},
        "order": dict((await session.execute(select(Order.id, Order.shop_id).where(
            Order.id.in_(ids["order"])))).all()) if ids["order"] else {},
        "shipment": dict((await session.execute(
            select(Shipment.id, Order.shop_id).join(Order, Order.id == Shipment.order_id)
            .where(Shipment.id.in_(ids["shipment"])))).all()) if ids["shipment"] else {},
    }
    counts: Counter[int] = Counter()
    for _kind, subject in alerts:
        prefix, _, rest = subject.partition(":")
        if prefix == "shop":
            owner = int(rest) if rest.isdigit() else shop_ids.get(rest)
            counts.update([owner] if owner is not None else [])
        elif prefix in shop_ids:
            counts[shop_ids[prefix]] += 1
        elif prefix in owners and rest.isdigit() and int(rest) in owners[prefix]:
            counts[owners[prefix][int(rest)]] += 1
    return counts
