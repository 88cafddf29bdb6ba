"""Named leases in the database: a (shop, stream) pull or a scheduled job runs on one node
at a time, with no coordinator of our own. A lease is taken with one conditional statement
(insert, or take over when expired or already ours), so two nodes never both win."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_for
from core.errors import ErpsyncError
from core.model import Lease


class LeaseLost(ErpsyncError):
    """Another node took over work we held (our lease expired): stop, it carries on."""


async def acquire(session: AsyncSession, name: str, owner: str, now: datetime,
                  ttl: timedelta) -> bool:
    statement = insert_for(session, Lease).values(name=name, owner=owner, expires_at=now + ttl)
    statement = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={"owner": owner, "expires_at": now + ttl},
        where=or_(Lease.expires_at < now, Lease.owner == owner),
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def renew(session: AsyncSession, name: str, owner: str, now: datetime,
                ttl: timedelta) -> bool:
    result = await session.execute(
        update(Lease).where(Lease.name == name, Lease.owner == owner)
        .values(expires_at=now + ttl))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, name: str, owner: str) -> None:
    await session.execute(delete(Lease).where(Lease.name == name, Lease.owner == owner))


async def release_all(session: AsyncSession, owner: str) -> None:
    await session.execute(delete(Lease).where(Lease.owner == owner))
