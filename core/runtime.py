"""The composition root: from a Config to engines, connectors and services.

The CLI, the daemon, the demo and the integration tests all build a `Runtime`; nothing else
wires connectors to shops, so every entry point behaves alike.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.clock import Clock, SystemClock
from core.config import Config, ShopConfig
from core.connector import Connector, ShopContext
from core.db import create_engine, session_factory, transaction
from core.errors import ConfigError
from core.http import HttpSession
from core.inventory import StockPool
from core.model import Shop
from core.orders import OrderBook
from core.plugins import Registry
from core.publishing import Publisher
from core.records import TokenSet
from core.review import ReviewRules, load_rules
from core.sandbox import Sandbox
from core.secrets import Secret
from core.tokens import RefreshingTokens, TokenFile


@dataclass(frozen=True, slots=True)
class SandboxBinding:
    """A sandbox standing in for a shop: where it is served and its credentials."""

    sandbox: Sandbox
    base_url: str


class Runtime:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 registry: Registry | None = None,
                 sandboxes: Mapping[str, SandboxBinding] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 environ: Mapping[str, str] | None = None,
                 engine: AsyncEngine | None = None, node: str | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.registry = registry or Registry.discover()
        self.sandboxes = dict(sandboxes or {})
        self.environ = os.environ if environ is None else environ
        self.engine = engine or create_engine(config.database_url)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)
        self.http = HttpSession(transport=transport, clock=self.clock)
        self.rules_data: dict[str, Any] = load_rules(config.rules_file)
        self.review_rules = ReviewRules.from_toml(self.rules_data)
        self.pool = StockPool(config.inventory.online_warehouses)
        self.publisher = Publisher(self.pool, config.inventory.mode)
        self.book = OrderBook(self.pool, self.publisher, self.review_rules)
        self.tokens = TokenFile(config.secrets_file)
        self.node = node or config.daemon.node_name or f"{socket.gethostname()}:{os.getpid()}"
        self.shop_ids: dict[str, int] = {}
        self._connectors: dict[str, Connector] = {}

    def now(self) -> datetime:
        return self.clock.now()

    async def sync_shops(self) -> None:
        """Make the shops table match the config (by name); settings come from the config."""
        async with transaction(self.sessions) as session:
            for shop in self.config.shops:
                row = await session.scalar(select(Shop).where(Shop.name == shop.name))
                settings = shop_settings(shop)
                refs = {**shop.credentials, **shop.extra_credentials}
                if row is None:
                    row = Shop(name=shop.name, platform=shop.platform, credentials_ref=refs,
                               settings=settings, created_at=self.now())
                    session.add(row)
                else:
                    row.platform, row.settings, row.credentials_ref = shop.platform, settings, refs
                await session.flush()
                self.shop_ids[shop.name] = row.id

    def shop_config(self, name: str) -> ShopConfig:
        return self.config.shop(name)

    def shop_name(self, shop_id: int) -> str:
        for name, known in self.shop_ids.items():
            if known == shop_id:
                return name
        raise KeyError(shop_id)

    def enabled_shops(self) -> list[ShopConfig]:
        return [s for s in self.config.shops if s.enabled]

    def connector(self, name: str) -> Connector:
        found = self._connectors.get(name)
        if found is None:
            found = self._connectors[name] = self._build(self.shop_config(name))
        return found

    def _build(self, shop: ShopConfig) -> Connector:
        connector_class = self.registry.connector(shop.platform)
        binding = self.sandboxes.get(shop.name)
        if binding is not None or shop.sandbox:
            # a sandbox shop: in-process (binding), or served elsewhere at base_url with the
            # sandbox's default keys (`erpsync sandbox serve`)
            if binding is not None:
                sandbox, base_url = binding.sandbox, binding.base_url
            elif connector_class.sandbox_class is not None and shop.base_url:
                sandbox, base_url = connector_class.sandbox_class(), shop.base_url
            else:
                raise ConfigError(str(self.config.path), f"shops.{shop.name}.base_url",
                                  "a sandbox shop needs the URL its sandbox is served at "
                                  "(or run it with `erpsync demo`)")
            secrets = {"app_key": sandbox.app_key, "app_secret": sandbox.app_secret,
                       "access_token": next(iter(sandbox.access_tokens), ""),
                       "refresh_token": next(iter(sandbox.refresh_tokens), "")}
            extra = sandbox.client_secrets()
        else:
            secrets = {key: self.environ.get(var, "") for key, var in shop.credentials.items()}
            extra = {key: self.environ.get(var, "") for key, var in shop.extra_credentials.items()}
            base_url = shop.base_url or connector_class.default_base_url
        # a sandbox is new every run; only real shops keep rotated tokens in the secrets file
        stored = self.tokens.load(shop.name) if binding is None else None
        tokens = RefreshingTokens(
            stored or TokenSet(secrets.get("access_token", ""), secrets.get("refresh_token", "")),
            on_refreshed=None if binding is not None else partial(self.tokens.save, shop.name))
        context = ShopContext(
            name=shop.name, platform=shop.platform, base_url=base_url,
            app_key=secrets.get("app_key", ""), app_secret=Secret(secrets.get("app_secret", "")),
            tokens=tokens, extra_secrets={k: Secret(v) for k, v in extra.items()},
            options=shop.options)
        connector = connector_class(context, self.http)
        tokens.bind(connector.refresh_token)
        return connector

    async def close(self) -> None:
        await self.http.aclose()
        await self.engine.dispose()


def shop_settings(shop: ShopConfig) -> dict[str, Any]:
    publish = shop.publish
    return {
        "publish": {"sync_ratio": publish.sync_ratio, "safety_stock": publish.safety_stock,
                    "max_listed": publish.max_listed, "zero_below": publish.zero_below},
        "promo_mode": shop.promo_mode, "enabled": shop.enabled,
    }
