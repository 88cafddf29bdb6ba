"""`erpsync status`: one screen per shop of what an operator checks first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from core.model import Alert, OutboxTask, SyncCursor
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
        alerts = list((await session.scalars(select(Alert.subject).where(
            Alert.open_key.is_not(None)))).all())
    rows = []
    for shop in rt.config.shops:
        shop_id = rt.shop_ids.get(shop.name, -1)
        position, success = cursors.get(shop_id, (None, None))
        tokens = rt.tokens.load(shop.name)
        mine = sum(1 for subject in alerts if subject in (f"shop:{shop_id}", f"shop:{shop.name}")
                   or subject.startswith(f"{shop.name}:"))
        rows.append({
            "shop": shop.name, "platform": shop.platform, "enabled": shop.enabled,
            "last_pull": success,
            "cursor_lag_seconds": None if position is None else (now - position).total_seconds(),
            "outbox": depth.get(shop_id, 0), "failing": failing.get(shop_id, 0),
            "token_expires": tokens.expires_at if tokens else None,
            "open_alerts": mine,
        })
    return rows
