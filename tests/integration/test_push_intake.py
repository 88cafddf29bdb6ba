"""Push intake end to end: the sandbox's own signed pushes POSTed to `/hooks/{platform}/{shop}`
are stored before they are acknowledged, redeliveries are ignored, forged ones leave no
trace, unparseable ones are quarantined and acknowledged; `process_inbox` then ingests them
through the order book, retries what may pass and quarantines what cannot map."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from connectors.dewu.sandbox import DewuSandbox
from connectors.douyin.client import push_sign
from connectors.douyin.sandbox import DouyinSandbox
from connectors.kuaishou.sandbox import KuaishouSandbox
from connectors.taobao.sandbox import TaobaoSandbox
from connectors.xiaohongshu.sandbox import XhsSandbox
from core import quarantine
from core.alerts import open_alerts
from core.clock import ManualClock
from core.intake import MAX_ATTEMPTS, process_inbox, process_inbox_stats
from core.inventory import ledger_matches
from core.model import InboxEvent, Order, OrderLine, QuarantinedPayload, Reservation
from core.pull import pull_orders
from core.runtime import Runtime
from core.sandbox import Fault, PushFault, Sandbox
from core.serving import serve_asgi
from core.web import build_app, hook_path

PUSHERS: dict[str, type[Sandbox]] = {
    "douyin": DouyinSandbox, "kuaishou": KuaishouSandbox, "xiaohongshu": XhsSandbox,
    "dewu": DewuSandbox,
}


async def setup(db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any,
                platform: str = "douyin") -> tuple[Runtime, Sandbox]:
    sandbox = PUSHERS[platform](clock=clock)
    if isinstance(sandbox, XhsSandbox):
        sandbox.push_url = hook_path(platform, "shop")
    sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 100, 3900)])
    rt: Runtime = await make_runtime(db_url, {"shop": sandbox, "tb": TaobaoSandbox(clock=clock)})
    if platform == "xiaohongshu":  # its signature covers the callback URL in the console
        shops = tuple(replace(s, options={**s.options, "push_url": hook_path(platform, "shop")})
                      if s.name == "shop" else s for s in rt.config.shops)
        rt.config = replace(rt.config, shops=shops)
    await seed_pool(rt, {"MUG": 50}, pull=False)
    return rt, sandbox


def client_for(rt: Runtime, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(rt, **options)),
                             base_url="http://erpsync")


async def count(rt: Runtime, model: Any, *where: Any) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where))
                   or 0)


async def statuses(rt: Runtime) -> dict[str, str]:
    async with rt.sessions() as session:
        return dict((await session.execute(select(Order.platform_order_id, Order.status))).all())


@pytest.mark.parametrize("platform", sorted(PUSHERS))
async def test_pushes_are_stored_acked_and_ingested_once(
        platform: str, sqlite_url: str, clock: ManualClock, make_runtime: Any,
        seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool, platform)
    kept = sandbox.place_order([("MUG", 2)])
    gone = sandbox.place_order([("MUG", 1)])
    clock.advance(timedelta(minutes=1))
    sandbox.cancel(gone.order_id)
    sandbox.faults.push_rates[PushFault.DUPLICATE] = 1.0  # every push arrives twice
    sandbox.faults.push_rates[PushFault.OUT_OF_ORDER] = 1.0  # newest first
    woken: list[int] = []
    async with client_for(rt, on_stored=lambda: woken.append(1)) as client:
        got = await sandbox.deliver_pushes(client, hook_path(platform, "shop"))
    assert got and set(got) == {200}
    assert woken
    events = await count(rt, InboxEvent)
    assert 0 < events <= len(got) // 2  # each event id stored once
    assert await count(rt, Order) == 0  # nothing ingested before the inbox is processed

    assert await process_inbox(rt) == events
    found = await statuses(rt)
    # paid and reviewed (Dewu orders carry no buyer address, so they wait for a person);
    # a paid order the buyer cancels is closed by a refund on most platforms
    assert found[kept.order_id] in ("approved", "on_hold")
    assert found[gone.order_id] in ("cancelled", "refunded")
    assert set(found) == {kept.order_id, gone.order_id}
    async with rt.sessions() as session:
        held = (await session.execute(select(OrderLine.platform_line_id, Reservation.state)
                                      .join(Reservation))).all()
        assert await ledger_matches(session) == []
    assert sorted(state for _, state in held) == ["reserved"] + (
        ["released"] if len(held) == 2 else [])
    assert await count(rt, InboxEvent, InboxEvent.state == "done") == events
    assert await process_inbox(rt) == 0  # nothing is due twice


async def test_the_receiver_refuses_what_is_not_ours_and_stores_nothing(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    sandbox.place_order([("MUG", 1)])
    (push,) = sandbox.pushes
    async with client_for(rt) as client:
        unknown = await client.post("/hooks/douyin/nobody", content=push.body,
                                    headers=dict(push.headers))
        mismatch = await client.post("/hooks/kuaishou/shop", content=push.body,
                                     headers=dict(push.headers))
        no_push = await client.post("/hooks/taobao/tb", content=b"{}")
        forged = await client.post(hook_path("douyin", "shop"), content=push.body,
                                   headers={**push.headers, "event-sign": "0" * 64})
        tampered = await client.post(hook_path("douyin", "shop"),
                                     content=push.body.replace(b'"101"', b'"105"'),
                                     headers=dict(push.headers))
        wrong_method = await client.get(hook_path("douyin", "shop"))
    assert [r.status_code for r in (unknown, mismatch, no_push)] == [404, 404, 404]
    assert [forged.status_code, tampered.status_code] == [401, 401]
    assert wrong_method.status_code == 405
    assert await count(rt, InboxEvent) == 0
    assert await count(rt, QuarantinedPayload) == 0


async def test_a_verified_body_that_does_not_parse_is_quarantined_and_acked(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    body = b'{"not": "an array"}'
    headers = {"app-id": sandbox.app_key, "content-type": "application/json",
               "event-sign": push_sign(sandbox.app_key, body, sandbox.app_secret)}
    async with client_for(rt) as client:
        answer = await client.post(hook_path("douyin", "shop"), content=body, headers=headers)
        again = await client.post(hook_path("douyin", "shop"), content=body, headers=headers)
    # acknowledged, so the platform stops redelivering what will never parse
    assert (answer.status_code, answer.content) == (200, b'{"code":0,"msg":"success"}')
    assert again.status_code == 200
    assert await count(rt, InboxEvent) == 0
    async with rt.sessions() as session:
        (entry,) = await quarantine.entries(session)
        (alert,) = await open_alerts(session, "quarantine")
    assert (entry.source, entry.payload, entry.seen) == ("push", body.decode(), 2)
    assert "does not parse" in entry.error and alert.subject == "shop:1"
    with pytest.raises(ValueError, match="nothing to re-read"):
        await quarantine.retry(rt, entry.id)


async def test_storage_down_is_a_503_so_the_platform_sends_again(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    sandbox.place_order([("MUG", 1)])

    async def down(*_: Any) -> int:
        raise OperationalError("INSERT INTO inbox", {}, Exception("disk I/O error"))

    monkeypatch.setattr("core.web.store_events", down)
    async with client_for(rt) as client:
        assert await sandbox.deliver_pushes(client, hook_path("douyin", "shop")) == [503]


async def test_a_reread_that_fails_is_retried_later_then_quarantined(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    placed = sandbox.place_order([("MUG", 1)])
    async with client_for(rt) as client:
        await sandbox.deliver_pushes(client, hook_path("douyin", "shop"))
    sandbox.faults.inject(Fault.SERVER_ERROR, times=50, api="order.orderDetail")
    stats = await process_inbox_stats(rt)
    assert (stats.processed, stats.retry_later) == (0, 1)
    async with rt.sessions() as session:
        event = await session.scalar(select(InboxEvent))
    assert event is not None and event.attempts == 1 and "Transient" in event.error
    assert event.next_attempt_at is not None and event.next_attempt_at > clock.now()
    assert await process_inbox(rt) == 0  # not due yet
    sandbox.faults.clear()
    clock.set(event.next_attempt_at)
    assert await process_inbox(rt) == 1
    assert await statuses(rt) == {placed.order_id: "approved"}

    # an event naming an order the platform never shows: backoff, then quarantine
    ghost = json.dumps([{"tag": "101", "msg_id": "ghost-1",
                         "data": json.dumps({"p_id": 6920000000000009999, "order_status": 2,
                                             "update_time": 1})}]).encode()
    headers = {"app-id": sandbox.app_key,
               "event-sign": push_sign(sandbox.app_key, ghost, sandbox.app_secret)}
    async with client_for(rt) as client:
        assert (await client.post(hook_path("douyin", "shop"), content=ghost,
                                  headers=headers)).status_code == 200
    for _ in range(MAX_ATTEMPTS):
        await process_inbox(rt)
        clock.advance(timedelta(hours=1))
    async with rt.sessions() as session:
        ghost_event = await session.scalar(select(InboxEvent).where(
            InboxEvent.event_id == "ghost-1"))
        (entry,) = await quarantine.entries(session)
    assert ghost_event is not None and ghost_event.state == "quarantined"
    assert ghost_event.attempts == MAX_ATTEMPTS
    assert entry.platform_order_id == "6920000000000009999" and "gave up" in entry.error


async def test_an_order_that_does_not_map_on_reread_is_quarantined_then_retried(
        sqlite_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    rt, sandbox = await setup(sqlite_url, clock, make_runtime, seed_pool)
    assert isinstance(sandbox, DouyinSandbox)
    placed = sandbox.place_order([("MUG", 1)])
    original = sandbox.render_order

    def broken(order: Any) -> dict[str, Any]:
        return {**original(order), "order_status": 99}

    sandbox.render_order = broken  # type: ignore[method-assign]
    async with client_for(rt) as client:
        await sandbox.deliver_pushes(client, hook_path("douyin", "shop"))
    stats = await process_inbox_stats(rt)
    assert (stats.processed, stats.quarantined) == (1, 1)
    async with rt.sessions() as session:
        (entry,) = await quarantine.entries(session)
    assert entry.platform_order_id == placed.order_id and entry.source == "push"
    sandbox.render_order = original  # type: ignore[method-assign]
    assert (await quarantine.retry(rt, entry.id)).resolved
    assert await statuses(rt) == {placed.order_id: "approved"}


async def test_over_real_http_pushes_and_polling_together_miss_nothing(
        db_url: str, clock: ManualClock, make_runtime: Any, seed_pool: Any) -> None:
    """Duplicated, reordered and dropped pushes over a real socket, processed while the
    safety-net pull runs at the same time: every order once, one reservation per line."""
    rt, sandbox = await setup(db_url, clock, make_runtime, seed_pool)
    sandbox.faults.push_rates.update({PushFault.DUPLICATE: 0.3, PushFault.OUT_OF_ORDER: 0.5,
                                      PushFault.DROP: 0.3})
    placed = [sandbox.place_order([("MUG", 1 + n % 2)]) for n in range(12)]
    clock.advance(timedelta(seconds=30))
    for victim in placed[:3]:
        sandbox.cancel(victim.order_id)
    clock.advance(timedelta(minutes=2))
    async with serve_asgi(build_app(rt)) as url, httpx.AsyncClient(base_url=url) as client:
        got = await sandbox.deliver_pushes(client, hook_path("douyin", "shop"))
    assert set(got) == {200}
    await asyncio.gather(process_inbox(rt), pull_orders(rt, "shop"), process_inbox(rt))
    await process_inbox(rt)

    expected = {o.order_id: "refunded" if o in placed[:3] else "approved" for o in placed}
    assert await statuses(rt) == expected
    async with rt.sessions() as session:
        per_line = (await session.execute(select(Reservation.order_line_id, func.count())
                                          .group_by(Reservation.order_line_id))).all()
        assert await ledger_matches(session) == []
    assert len(per_line) == 9 and {n for _, n in per_line} == {1}
