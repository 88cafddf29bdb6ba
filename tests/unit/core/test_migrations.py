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
