"""The outbox: everything a connector must send is written here in the same transaction as
the change that caused it, then sent by a worker.

Guarantees:
* a crash never loses a push: the row exists before anyone tries to send it;
* one row per (kind, dedup key): a newer value rewrites the row with a higher version, so
  only the newest is sent (stock 5, then 4, then 3 while the platform was down: one call, 3);
* never sent twice for the same version: a claim takes a lease (FOR UPDATE SKIP LOCKED on
  PostgreSQL, so several daemons share the work), the sender renews it right before each
  call and drops what it no longer owns (`renew`), finishing requires still owning it, and
  the row goes back to pending when its version moved on during the send;
* a row left "sending" by a dead process is reclaimed when its lease expires, marked
  `reclaimed`: its send may have landed before the process died, so the sender first asks
  the platform whether it holds the value already (then it is done) and otherwise waits
  for the shop's orders to be pulled up to then before sending (core.senders);
* permanent refusals stop in a visible `failed` state with the platform's message.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import for_update_skip_locked, insert_for
from core.model import OutboxTask

MAX_BACKOFF = timedelta(minutes=30)


async def enqueue(session: AsyncSession, *, kind: str, shop_id: int, target: str, dedup_key: str,
                  payload: Mapping[str, Any], version: int, now: datetime,
                  priority: int = 1) -> None:
    """Insert or coalesce one outbox row. A row being sent keeps its state: the sender sees
    the higher version when it finishes and leaves the row pending for the newer value."""
    statement = insert_for(session, OutboxTask).values(
        kind=kind, shop_id=shop_id, target=target, dedup_key=dedup_key, payload=dict(payload),
        version=version, state="pending", priority=priority, attempts=0, next_attempt_at=now,
        created_at=now, updated_at=now, queued_at=now)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["kind", "dedup_key"],
        set_={
            "payload": excluded.payload, "version": excluded.version,
            "priority": excluded.priority, "attempts": 0, "last_error": "",
            "next_attempt_at": excluded.next_attempt_at, "updated_at": excluded.updated_at,
            "state": case((OutboxTask.state == "sending", "sending"), else_="pending"),
            "queued_at": case((OutboxTask.state.in_(["done", "dropped"]), excluded.queued_at),
                              else_=OutboxTask.queued_at),
        },
        where=OutboxTask.version < excluded.version,
    )
    await session.execute(statement)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    kind: str
    shop_id: int
    target: str
    payload: Mapping[str, Any]
    version: int
    attempts: int
    # taken over from a sender whose lease ran out: its last send may have landed
    reclaimed: bool = False


async def claim(session: AsyncSession, *, owner: str, now: datetime, lease: timedelta,
                limit: int = 200, shop_ids: Sequence[int] | None = None,
                kinds: Sequence[str] | None = None) -> list[Claimed]:
    """Take due rows (and rows whose sender's lease ran out) for this owner."""
    due = or_(
        (OutboxTask.state == "pending") & (OutboxTask.next_attempt_at <= now),
        (OutboxTask.state == "sending") & (OutboxTask.lease_expires_at < now),
    )
    query = select(OutboxTask).where(due)
    if shop_ids is not None:
        query = query.where(OutboxTask.shop_id.in_(list(shop_ids)))
    if kinds is not None:
        query = query.where(OutboxTask.kind.in_(list(kinds)))
    query = (query.order_by(OutboxTask.priority, OutboxTask.next_attempt_at, OutboxTask.id)
             .limit(limit).with_for_update(**for_update_skip_locked(session)))
    rows = list((await session.scalars(query)).all())
    if not rows:
        return []
    await session.execute(
        update(OutboxTask).where(OutboxTask.id.in_([r.id for r in rows]))
        .values(state="sending", lease_owner=owner, lease_expires_at=now + lease, updated_at=now)
        .execution_options(synchronize_session=False))
    return [Claimed(r.id, r.kind, r.shop_id, r.target, dict(r.payload), r.version, r.attempts,
                    reclaimed=r.state == "sending")
            for r in rows]


async def renew(session: AsyncSession, tasks: Sequence[Claimed], *, owner: str, now: datetime,
                lease: timedelta) -> set[int]:
    """Extend our leases right before a send; returns the ids still ours. A task whose lease
    ran out and was claimed by another node must not be sent by us as well."""
    if not tasks:
        return set()
    result = await session.execute(
        update(OutboxTask)
        .where(OutboxTask.id.in_([t.id for t in tasks]), OutboxTask.lease_owner == owner,
               OutboxTask.state == "sending")
        .values(lease_expires_at=now + lease)
        .returning(OutboxTask.id)
        .execution_options(synchronize_session=False))
    return set(result.scalars().all())


async def complete(session: AsyncSession, task: Claimed, *, owner: str, now: datetime) -> bool:
    """Mark the sent version done; a newer version written meanwhile stays pending."""
    result = await session.execute(
        update(OutboxTask)
        .where(OutboxTask.id == task.id, OutboxTask.lease_owner == owner,
               OutboxTask.state == "sending")
        .values(state=case((OutboxTask.version == task.version, "done"), else_="pending"),
                sent_version=task.version, lease_owner="", lease_expires_at=None,
                attempts=0, last_error="", next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    if retry_after is not None:
        return timedelta(seconds=retry_after)
    base = min(MAX_BACKOFF.total_seconds(), 2.0 * 2 ** min(attempts, 16))
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


async def retry_later(session: AsyncSession, task: Claimed, *, owner: str, now: datetime,
                      error: str, retry_after: float | None = None) -> None:
    await session.execute(
        update(OutboxTask)
        .where(OutboxTask.id == task.id, OutboxTask.lease_owner == owner)
        .values(state="pending", attempts=OutboxTask.attempts + 1, last_error=error[:2000],
                next_attempt_at=now + backoff(task.attempts + 1, retry_after),
                lease_owner="", lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False))


async def defer(session: AsyncSession, task: Claimed, *, owner: str, now: datetime,
                delay: timedelta, reason: str) -> None:
    """Not now, and not a failure: back to pending without counting an attempt."""
    await session.execute(
        update(OutboxTask)
        .where(OutboxTask.id == task.id, OutboxTask.lease_owner == owner)
        .values(state="pending", last_error=reason, next_attempt_at=now + delay,
                lease_owner="", lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False))


async def mark(session: AsyncSession, task: Claimed, extra: Mapping[str, Any]) -> None:
    """Add keys to the payload of the version being sent; a newer version (written
    meanwhile, with its own payload) is left as it is."""
    await session.execute(
        update(OutboxTask).where(OutboxTask.id == task.id, OutboxTask.version == task.version)
        .values(payload={**task.payload, **extra})
        .execution_options(synchronize_session=False))


async def fail(session: AsyncSession, task: Claimed, *, owner: str, now: datetime,
               error: str) -> None:
    """A permanent refusal: visible, not retried until an operator says so. A newer version
    of the same row (written meanwhile) is still sent."""
    await session.execute(
        update(OutboxTask)
        .where(OutboxTask.id == task.id, OutboxTask.lease_owner == owner)
        .values(state=case((OutboxTask.version == task.version, "failed"), else_="pending"),
                attempts=OutboxTask.attempts + 1, last_error=error[:2000],
                lease_owner="", lease_expires_at=None, next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False))


async def release_leases(session: AsyncSession, owner: str, now: datetime) -> int:
    """On shutdown: give back what this node claimed but did not send."""
    result = await session.execute(
        update(OutboxTask).where(OutboxTask.lease_owner == owner, OutboxTask.state == "sending")
        .values(state="pending", lease_owner="", lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]
