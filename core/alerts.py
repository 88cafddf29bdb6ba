"""Alerts: one open alert per (kind, subject), opened when a condition starts, resolved
when it clears. Delivery to sinks happens elsewhere (core.sinks) from the undelivered rows,
so an alert is never lost when a sink is down."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_for
from core.model import Alert

SEVERITY = {
    "oversold": "critical", "tracking_push_failed": "error", "tracking_push_late": "warning",
    "shipment_stalled": "warning", "not_collected": "warning", "delivery_exception": "error",
    "ship_overdue": "warning", "stock_drift": "warning", "quarantine": "error",
    "unknown_sku": "warning", "listing_rejected": "error", "dormant_sku": "info",
    "push_failed": "error", "circuit_open": "error", "auth_expired": "critical",
}


async def open_alert(session: AsyncSession, kind: str, subject: str, message: str, now: datetime,
                     details: Mapping[str, Any] | None = None) -> bool:
    """Open (kind, subject) unless it is open already. True when newly opened."""
    statement = insert_for(session, Alert).values(
        kind=kind, subject=subject, severity=SEVERITY.get(kind, "warning"), message=message,
        details=dict(details or {}), open_key=f"{kind}:{subject}", opened_at=now,
    ).on_conflict_do_nothing(index_elements=["open_key"])
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def resolve_alert(session: AsyncSession, kind: str, subject: str, now: datetime) -> bool:
    result = await session.execute(
        update(Alert).where(Alert.open_key == f"{kind}:{subject}")
        .values(open_key=None, resolved_at=now))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def open_alerts(session: AsyncSession, kind: str | None = None) -> list[Alert]:
    query = select(Alert).where(Alert.open_key.is_not(None)).order_by(Alert.opened_at)
    if kind:
        query = query.where(Alert.kind == kind)
    return list((await session.scalars(query)).all())
