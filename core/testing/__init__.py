"""Helpers and the public contract kit for connector authors.

`connect()` wires a connector to its sandbox in-process (no network), with a settable
clock and token refresh, exactly as the core wires it to a real shop.
"""

from __future__ import annotations

from typing import TypeVar

import httpx

from core.clock import Clock, ManualClock
from core.connector import Connector, ShopContext, TrackingProvider
from core.http import HttpSession, RetryPolicy
from core.records import TokenSet
from core.sandbox import Sandbox
from core.secrets import Secret
from core.tokens import RefreshingTokens

C = TypeVar("C", Connector, TrackingProvider)


def connect(connector_class: type[C], sandbox: Sandbox, *,
            clock: Clock | None = None, shop: str = "test-shop",
            base_url: str | None = None, options: dict[str, object] | None = None,
            extra_secrets: dict[str, str] | None = None,
            access_token: str = "sandbox-access-token-1",
            refresh_token: str = "sandbox-refresh-token-1",
            app_secret: str | None = None,
            retry: RetryPolicy | None = None) -> C:
    """A connector (or tracking provider) talking to `sandbox` in-process."""
    used_clock = clock or sandbox.clock or ManualClock()
    session = HttpSession(transport=sandbox.transport(), clock=used_clock,
                          retry=retry or RetryPolicy(attempts=4), rate_limits=False)
    tokens = RefreshingTokens(TokenSet(access_token, refresh_token))
    context = ShopContext(
        name=shop, platform=connector_class.platform,
        base_url=base_url or connector_class.default_base_url,
        app_key=sandbox.app_key, app_secret=Secret(app_secret or sandbox.app_secret), tokens=tokens,
        extra_secrets={k: Secret(v) for k, v in (extra_secrets or {}).items()},
        options=options or {},
    )
    connector = connector_class(context, session)
    if isinstance(connector, Connector):
        tokens.bind(connector.refresh_token)
    return connector


class RoutingTransport(httpx.AsyncBaseTransport):
    """One transport for several sandboxes, chosen by host (`http://<key>.sandbox/...`)."""

    def __init__(self, routes: dict[str, Sandbox]) -> None:
        self.routes = {host: sandbox.transport() for host, sandbox in routes.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.routes.get(request.url.host)
        if transport is None:
            return httpx.Response(502, text=f"no sandbox at {request.url.host}", request=request)
        return await transport.handle_async_request(request)
