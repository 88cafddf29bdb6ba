"""Shared fixtures: a settable clock, databases (SQLite always, PostgreSQL when
ERPSYNC_TEST_PG_URL is set), and a Runtime wired to in-process sandbox shops."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text

from core.clock import ManualClock
from core.config import Config, load
from core.db import create_engine, upgrade
from core.runtime import Runtime, SandboxBinding
from core.sandbox import Sandbox
from core.testing import RoutingTransport

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("ERPSYNC_TEST_PG_URL")


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Commands configure structlog on their runner's stream, which closes with the test;
    every test starts and ends with the default configuration."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _pg_database() -> Iterator[str]:
    assert PG_URL
    name = f"erpsync_t_{uuid.uuid4().hex[:10]}"
    admin = create_sync_engine(PG_URL.replace("+asyncpg", ""), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("ERPSYNC_TEST_PG_URL is not set")
    yield from _pg_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'erpsync.db'}"
    else:
        if not PG_URL:
            pytest.skip("ERPSYNC_TEST_PG_URL is not set")
        yield from _pg_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'erpsync.db'}"


def write_config(tmp_path: Path, db_url: str, shops: list[dict[str, Any]], *,
                 mode: str = "shared", extra: str = "") -> Path:
    """A config file in tmp_path with the repository's rules.toml beside it."""
    shutil.copy(ROOT / "config" / "rules.toml", tmp_path / "rules.toml")
    lines = ['rules = "rules.toml"', 'secrets = "secrets.json"', "",
             "[database]", f'url = "{db_url}"', "", "[inventory]", f'mode = "{mode}"', ""]
    for shop in shops:
        lines.append("[[shops]]")
        for key, value in shop.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value}")
        lines.append("")
    path = tmp_path / "erpsync.toml"
    path.write_text("\n".join(lines) + extra, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    """`config_file(db_url, [{"name": ..., "platform": ..., "sandbox": True}])`: a config
    file in tmp_path, nothing migrated (tests import no conftest: use this)."""
    def write(db_url: str, shops: list[dict[str, Any]], **options: Any) -> Path:
        return write_config(tmp_path, db_url, shops, **options)
    return write


RuntimeFactory = Callable[..., Any]


@pytest.fixture
async def make_runtime(tmp_path: Path, clock: ManualClock) -> AsyncIterator[RuntimeFactory]:
    """Build a migrated Runtime whose shops are in-process sandboxes.

    `await make_runtime(db_url, {"shop-name": sandbox, ...}, publish={...}, mode=...)`"""
    made: list[Runtime] = []

    async def factory(db_url: str, sandboxes: dict[str, Sandbox], *, mode: str = "shared",
                      shops: dict[str, dict[str, Any]] | None = None) -> Runtime:
        entries = []
        for name, sandbox in sandboxes.items():
            entry: dict[str, Any] = {"name": name, "platform": sandbox.platform, "sandbox": True}
            entry.update((shops or {}).get(name, {}))
            entries.append(entry)
        config: Config = load(write_config(tmp_path, db_url, entries, mode=mode),
                              check_env=False)
        routes = {f"{name}.sandbox": sb for name, sb in sandboxes.items()}
        bindings = {name: SandboxBinding(sb, f"http://{name}.sandbox")
                    for name, sb in sandboxes.items()}
        engine = create_engine(config.database_url)
        await upgrade(engine, config.database_url)
        rt = Runtime(config, clock=clock, sandboxes=bindings,
                     transport=RoutingTransport(routes), engine=engine, node="test-node")
        rt.http.rate_limits = False
        await rt.sync_shops()
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        await rt.close()


@pytest.fixture
def seed_pool() -> Callable[..., Any]:
    """`await seed_pool(rt, {"CODE": on_hand, ...})`: one product per code, stock received
    into MAIN, and every shop's listings pulled (bound by merchant code)."""
    from sqlalchemy import select

    from core.catalog import ProductSpec, SkuSpec, upsert_product
    from core.db import transaction
    from core.listings import pull_listings
    from core.model import Sku

    async def seed(rt: Runtime, stock: dict[str, int], *, pull: bool = True) -> dict[str, int]:
        ids: dict[str, int] = {}
        async with transaction(rt.sessions) as session:
            for code, quantity in stock.items():
                await upsert_product(session, ProductSpec(code, f"product {code}",
                                                          (SkuSpec(code, 9900),)), rt.now())
                sku = await session.scalar(select(Sku).where(Sku.merchant_code == code))
                assert sku is not None
                ids[code] = sku.id
                await rt.pool.change_on_hand(session, sku.id, "MAIN", quantity, kind="receipt",
                                             reason="seed", reference="test", now=rt.now())
        if pull:
            for shop in rt.enabled_shops():
                await pull_listings(rt, shop.name)
        return ids

    return seed


@pytest.fixture
def sell_and_ship(clock: ManualClock) -> Callable[..., Any]:
    """`await sell_and_ship(rt, "shop", sandbox, "CODE", "75123456789013")`: a buyer orders
    one unit, the order is pulled, the warehouse ships it (the ship push is queued, not
    sent). Returns the platform order id."""
    from datetime import timedelta

    from sqlalchemy import select

    from core.db import transaction
    from core.logistics import ship
    from core.model import Order
    from core.pull import pull_orders

    async def go(rt: Runtime, shop: str, sandbox: Sandbox, code: str, waybill: str) -> str:
        placed = sandbox.place_order([(code, 1)])
        clock.advance(timedelta(minutes=5))
        await pull_orders(rt, shop, since=clock.now() - timedelta(hours=1))
        async with rt.sessions() as session:
            order_id = await session.scalar(select(Order.id).where(
                Order.shop_id == rt.shop_ids[shop], Order.platform_order_id == placed.order_id))
        assert order_id is not None
        async with transaction(rt.sessions) as session:
            await ship(session, order_id=order_id, carrier="ZTO", tracking_number=waybill,
                       carriers=rt.connector(shop).carrier_table(), pool=rt.pool,
                       publisher=rt.publisher, now=rt.now())
        return placed.order_id

    return go
