"""The HTTP base: retries with backoff honouring the platform's ban time, one token refresh
for concurrent expired calls, and a token bucket per (platform app, shop)."""

from __future__ import annotations

import asyncio

import pytest

from connectors.taobao.connector import TaobaoConnector
from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock
from core.errors import AuthExpired, RateLimited, Transient
from core.http import HttpSession, RetryPolicy, TokenBucket
from core.sandbox import Fault
from core.testing import connect


async def test_rate_limit_waits_the_ban_then_succeeds(clock: ManualClock) -> None:
    sandbox = TaobaoSandbox(clock=clock)
    connector = connect(TaobaoConnector, sandbox, clock=clock)
    sandbox.faults.inject(Fault.RATE_LIMIT, times=2)
    listings = [item async for item in connector.iter_listings()]
    assert listings == []
    # "This ban will last for 1 more seconds": each retry waited at least that long
    assert len(clock.slept) >= 2 and all(s >= 1.0 for s in clock.slept[:2])


async def test_persistent_faults_surface_as_canonical_errors(clock: ManualClock) -> None:
    sandbox = TaobaoSandbox(clock=clock)
    connector = connect(TaobaoConnector, sandbox, clock=clock, retry=RetryPolicy(attempts=3))
    sandbox.faults.inject(Fault.RATE_LIMIT, times=3)
    with pytest.raises(RateLimited):
        await connector.get_order("1")
    sandbox.faults.inject(Fault.SERVER_ERROR, times=3)
    with pytest.raises(Transient):
        await connector.get_order("1")
    sandbox.faults.inject(Fault.TIMEOUT, times=3)
    with pytest.raises(Transient):
        await connector.get_order("1")
    waits = clock.slept[-2:]
    assert waits[1] > waits[0] / 2  # exponential backoff with jitter, never zero
    assert len(sandbox.requests) == 9


async def test_concurrent_expired_calls_refresh_once(clock: ManualClock) -> None:
    sandbox = TaobaoSandbox(clock=clock)
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 5, 3900)])
    connector = connect(TaobaoConnector, sandbox, clock=clock)
    sandbox.expire_token()
    results = await asyncio.gather(*[_count(connector) for _ in range(5)])
    assert results == [1] * 5
    assert len(sandbox.calls("taobao.top.auth.token.refresh")) == 1
    assert connector.shop.tokens.current().refresh_token == "sandbox-refresh-token-2"
    # the old refresh token is dead; the rotated one keeps working
    sandbox.expire_token()
    assert await _count(connector) == 1
    assert connector.shop.tokens.current().refresh_token == "sandbox-refresh-token-3"


async def test_refused_refresh_surfaces_auth_expired(clock: ManualClock) -> None:
    sandbox = TaobaoSandbox(clock=clock)
    connector = connect(TaobaoConnector, sandbox, clock=clock, refresh_token="revoked-token-x")
    sandbox.expire_token()
    with pytest.raises(AuthExpired):
        await connector.get_order("1")


async def _count(connector: TaobaoConnector) -> int:
    return len([item async for item in connector.iter_listings()])


async def test_token_bucket_spaces_calls(clock: ManualClock) -> None:
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock)
    for _ in range(6):
        await bucket.acquire()
    # two from the burst, then one every half second
    assert sum(clock.slept) == pytest.approx(2.0)


async def test_one_bucket_per_app_and_shop(clock: ManualClock) -> None:
    session = HttpSession(clock=clock)
    a = session.bucket(("taobao", "app", "shop-a"), 5, 1)
    assert session.bucket(("taobao", "app", "shop-a"), 5, 1) is a
    assert session.bucket(("taobao", "app", "shop-b"), 5, 1) is not a
    await session.aclose()
