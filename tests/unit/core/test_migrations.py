"""The migrations and the models agree: after `upgrade`, autogenerate finds no difference,
on SQLite and on PostgreSQL. The daemon refuses an out-of-date database."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core.db import OutOfDate, create_engine, head_revision, require_current, upgrade
from core.model import Base


async def test_models_and_migrations_agree(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine, db_url)

        def diff(connection: object) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
        assert differences == []
        await require_current(engine)
    finally:
        await engine.dispose()


async def test_out_of_date_database_is_refused_with_the_command(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with pytest.raises(OutOfDate, match="erpsync db upgrade"):
            await require_current(engine)
        await upgrade(engine, db_url)
        await require_current(engine)
        assert head_revision()
    finally:
        await engine.dispose()


async def test_upgrading_keeps_the_outbox_and_dates_what_waits(db_url: str) -> None:
    """A database at 0001 with rows waiting in the outbox: after the upgrade they are still
    there, and each counts as waiting since its last change (the best known start)."""
    from sqlalchemy import text

    engine = create_engine(db_url)
    try:
        await upgrade(engine, db_url, "0001")
        with pytest.raises(OutOfDate):
            await require_current(engine)
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO shops (id, name, platform, credentials_ref, settings, created_at) "
                "VALUES (1, 'tb', 'taobao', '{}', '{}', '2026-11-11 00:00:00')"))
            await connection.execute(text(
                "INSERT INTO outbox (kind, shop_id, target, dedup_key, payload, version, "
                "sent_version, state, priority, attempts, next_attempt_at, last_error, "
                "lease_owner, created_at, updated_at) VALUES ('stock', 1, '7', 'listing:7', "
                "'{}', 3, 2, 'pending', 1, 4, '2026-11-11 00:10:00', 'Transient: busy', '', "
                "'2026-11-01 08:00:00', '2026-11-11 00:05:00')"))
        await upgrade(engine, db_url)
        await require_current(engine)
        async with engine.connect() as connection:
            rows = (await connection.execute(text(
                "SELECT version, state, attempts, queued_at FROM outbox"))).all()
        assert [(v, s, a, str(q)[:19]) for v, s, a, q in rows] == [
            (3, "pending", 4, "2026-11-11 00:05:00")]
    finally:
        await engine.dispose()
