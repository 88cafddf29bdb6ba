"""Quarantine: payloads that did not parse or map, kept with their error, never dropped.

A pulled order whose mapping fails (missing field, unknown status, bad amount), a push that
verified but does not parse, a pushed event that kept failing: each lands here with an
`quarantine` alert for its shop, and everything else keeps flowing.

One open row per thing, not per sighting: the overlapping pull windows re-read the same bad
order every few minutes, so a row is keyed while open (`open_key`, unique, NULL once closed)
and a second sighting bumps `seen` and refreshes the payload instead of adding a row. A row
closes three ways, and stays for audit after each:

* `resolved` — a readable copy of the same order was ingested later (a newer pull, a push,
  or `erpsync orders quarantine retry`);
* `dropped` — an operator decided it needs nothing more (`quarantine drop`);
* it stays `open` while a retry still fails.

The shop's alert resolves when its last open row closes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.alerts import open_alert, resolve_alert
from core.db import insert_for, transaction
from core.errors import BadResponse, ConnectorError
from core.logs import get_logger
from core.model import QuarantinedPayload

if TYPE_CHECKING:
    from core.runtime import Runtime

log = get_logger("erpsync.quarantine")
WINDOW_PREFIX = "window:"


def order_key(shop_id: int, platform_order_id: str) -> str:
    return f"{shop_id}:order:{platform_order_id}"


def window_reference(start: datetime, end: datetime) -> str:
    return f"{WINDOW_PREFIX}{start.isoformat()}..{end.isoformat()}"


def window_key(shop_id: int, start: datetime) -> str:
    """A stuck window keeps its start while its end follows the clock: one row per start."""
    return f"{shop_id}:pull:{WINDOW_PREFIX}{start.isoformat()}"


def alert_subject(shop_id: int) -> str:
    return f"shop:{shop_id}"


async def quarantine(session: AsyncSession, *, shop_id: int, source: str, payload: bytes | str,
                     error: str, now: datetime, platform_order_id: str | None = None,
                     reference: str = "", key: str | None = None) -> None:
    """Keep a payload that cannot be used, with its error, and open the shop's alert.
    `key` names what a later sighting of the same thing shares (default: the order, else
    the reference)."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    if platform_order_id:
        key = key or order_key(shop_id, platform_order_id)
        reference = reference or platform_order_id
    else:
        key = key or f"{shop_id}:{source}:{reference or error}"[:200]
    statement = insert_for(session, QuarantinedPayload).values(
        shop_id=shop_id, source=source, reference=reference[:128],
        platform_order_id=platform_order_id or None, payload=text, error=error, state="open",
        open_key=key, seen=1, note="", created_at=now, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=["open_key"],
        set_={"payload": text, "error": error, "source": source, "updated_at": now,
              "reference": reference[:128], "seen": QuarantinedPayload.seen + 1})
    await session.execute(statement)
    await open_alert(session, "quarantine", alert_subject(shop_id),
                     f"a {source} payload could not be read and was quarantined: {error} "
                     "(erpsync orders quarantine list)", now,
                     {"shop_id": shop_id, "platform_order_id": platform_order_id or "",
                      "reference": reference})
    log.warning("quarantined", shop_id=shop_id, source=source, reference=reference,
                platform_order_id=platform_order_id, error=error)


async def resolve_orders(session: AsyncSession, shop_id: int, platform_order_ids: Iterable[str],
                         now: datetime, note: str) -> int:
    """Close the open rows of orders that were just ingested from a readable copy."""
    keys = [order_key(shop_id, order_id) for order_id in platform_order_ids]
    if not keys:
        return 0
    result = await session.execute(
        update(QuarantinedPayload).where(QuarantinedPayload.open_key.in_(keys))
        .values(state="resolved", open_key=None, note=note, updated_at=now)
        .execution_options(synchronize_session=False))
    closed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if closed:
        await settle_alert(session, shop_id, now)
    return closed


async def settle_alert(session: AsyncSession, shop_id: int, now: datetime) -> None:
    """Resolve the shop's quarantine alert once nothing of it is open any more."""
    still_open = await session.scalar(
        select(func.count()).select_from(QuarantinedPayload)
        .where(QuarantinedPayload.shop_id == shop_id, QuarantinedPayload.state == "open"))
    if not still_open:
        await resolve_alert(session, "quarantine", alert_subject(shop_id), now)


async def entries(session: AsyncSession, *, shop_id: int | None = None,
                  state: str | None = "open") -> list[QuarantinedPayload]:
    query = select(QuarantinedPayload).order_by(QuarantinedPayload.id)
    if shop_id is not None:
        query = query.where(QuarantinedPayload.shop_id == shop_id)
    if state is not None:
        query = query.where(QuarantinedPayload.state == state)
    return list((await session.scalars(query)).all())


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    resolved: bool
    message: str


async def retry(rt: Runtime, entry_id: int) -> RetryOutcome:
    """Re-read a quarantined order with `get_order` and ingest it through the one idempotent
    path; a quarantined pull window is pulled again. A retry that fails again leaves the
    row open with the new error."""
    entry = await _open_entry(rt, entry_id)
    shop = rt.shop_name(entry.shop_id)
    if entry.platform_order_id:
        return await _retry_order(rt, entry, shop, entry.platform_order_id)
    if entry.reference.startswith(WINDOW_PREFIX):
        return await _retry_window(rt, entry, shop)
    raise ValueError(f"quarantined payload {entry_id} names no order and no window: nothing to "
                     "re-read (handle it on the platform, then drop it)")


async def _open_entry(rt: Runtime, entry_id: int) -> QuarantinedPayload:
    """The entry an operator names, which must exist and still be open."""
    async with rt.sessions() as session:
        entry = await session.get(QuarantinedPayload, entry_id)
    if entry is None:
        raise LookupError(f"no quarantined payload {entry_id}")
    if entry.state != "open":
        raise ValueError(f"quarantined payload {entry_id} is {entry.state} already")
    return entry


async def _retry_order(rt: Runtime, entry: QuarantinedPayload, shop: str,
                       platform_order_id: str) -> RetryOutcome:
    connector = rt.connector(shop)
    try:
        record = await connector.get_order(platform_order_id)
    except BadResponse as exc:
        async with transaction(rt.sessions) as session:
            await quarantine(session, shop_id=entry.shop_id, source=entry.source,
                             payload=exc.body or entry.payload, error=str(exc), now=rt.now(),
                             platform_order_id=platform_order_id, reference=entry.reference)
        return RetryOutcome(False, f"still unreadable: {exc}")
    except ConnectorError as exc:
        return RetryOutcome(False, f"{type(exc).__name__}: {exc} (try again later)")
    async with transaction(rt.sessions) as session:
        await rt.book.ingest(session, entry.shop_id, [record], source="operator", now=rt.now())
        await resolve_orders(session, entry.shop_id, [platform_order_id], rt.now(),
                             "retried: re-read and ingested")
    return RetryOutcome(True, f"order {platform_order_id} re-read and ingested")


async def _retry_window(rt: Runtime, entry: QuarantinedPayload, shop: str) -> RetryOutcome:
    from core.pull import pull_orders

    start_text, _, end_text = entry.reference.removeprefix(WINDOW_PREFIX).partition("..")
    start, end = datetime.fromisoformat(start_text), datetime.fromisoformat(end_text)
    try:
        stats = await pull_orders(rt, shop, since=start, until=end)
    except ConnectorError as exc:
        return RetryOutcome(False, f"{type(exc).__name__}: {exc}")
    if stats.skipped_locked:
        return RetryOutcome(False, "another node holds the pull lease: try again shortly")
    await close(rt, entry.id, "resolved", f"retried: window re-pulled ({stats.orders_seen} orders)")
    return RetryOutcome(True, f"window re-pulled: {stats.orders_seen} orders")


async def drop(rt: Runtime, entry_id: int, reason: str) -> None:
    """An operator decides a payload needs nothing more; the row stays for audit."""
    await _open_entry(rt, entry_id)
    await close(rt, entry_id, "dropped", reason or "dropped by an operator")


async def close(rt: Runtime, entry_id: int, state: str, note: str) -> None:
    async with transaction(rt.sessions) as session:
        entry = await session.get(QuarantinedPayload, entry_id)
        if entry is None or entry.state != "open":
            return
        entry.state, entry.open_key, entry.note, entry.updated_at = state, None, note, rt.now()
        await session.flush()
        await settle_alert(session, entry.shop_id, rt.now())
