"""Parcel tracking against the Kuaidi100 sandbox on a ManualClock: polling (deduplicated
events, the provider's minimum interval, final parcels left alone), subscription pushes,
and the shipment alerts with their exact boundaries — stalled at 48 h not 47 h 59 m,
not collected at 24 h, exceptions, ship_overdue at 24 h or 48 h in promo mode, the push
SLA — each resolved when its condition clears."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from connectors.kuaidi100.connector import CALLBACK_ACK
from connectors.kuaidi100.sandbox import Kuaidi100Sandbox, Scan, acknowledged
from connectors.taobao.sandbox import TaobaoSandbox
from core.clock import ManualClock
from core.config import ConfigProblems, load
from core.db import create_engine, transaction, upgrade
from core.logistics import check_shipments, ship
from core.model import Alert, Order, Shipment, TrackingEvent
from core.pull import pull_orders
from core.runtime import Runtime, SandboxBinding
from core.sandbox import Sandbox
from core.senders import OutboxWorker
from core.testing import RoutingTransport
from core.tracking import (
    TRACKING_SANDBOX,
    TrackingSettings,
    accept_callback,
    poll_tracking,
    provider,
)

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
GUANGDONG = {"province": "广东省", "city": "深圳市", "district": "南山区", "detail": "科技园路 1 号"}
CALLBACK = "http://erp.example.com/hooks/kuaidi100"

Factory = Callable[..., Any]


@pytest.fixture
async def tracked(tmp_path: Path, config_file: Any, clock: ManualClock,
                  ) -> AsyncIterator[Factory]:
    """`await tracked(db_url, shops={...}, tracking=..., rules=...)`: a migrated Runtime
    whose shops are Taobao sandboxes and whose tracking provider is a Kuaidi100 sandbox."""
    made: list[Runtime] = []

    async def factory(db_url: str, *, shops: dict[str, dict[str, Any]] | None = None,
                      tracking: str = "", rules: dict[str, str] | None = None
                      ) -> tuple[Runtime, dict[str, TaobaoSandbox], Kuaidi100Sandbox]:
        shops = shops or {"tb": {}}
        sandboxes = {name: TaobaoSandbox(clock=clock, seed=i)
                     for i, name in enumerate(shops)}
        for sandbox in sandboxes.values():
            sandbox.add_item("马克杯", "MUG", 3900, skus=[("MUG", 500, 3900)])
        tracker = Kuaidi100Sandbox(clock=clock)
        entries = [{"name": name, "platform": "taobao", "sandbox": True, **extra}
                   for name, extra in shops.items()]
        path = config_file(db_url, entries, extra=(
            '\n[tracking]\nprovider = "kuaidi100"\nsandbox = true\n' + tracking))
        if rules:
            text = (tmp_path / "rules.toml").read_text(encoding="utf-8")
            for key, value in rules.items():
                text = re.sub(rf"(?m)^{key} = .*$", f'{key} = "{value}"', text)
            (tmp_path / "rules.toml").write_text(text, encoding="utf-8")
        config = load(path, check_env=False)
        routes: dict[str, Sandbox] = {f"{name}.sandbox": sb for name, sb in sandboxes.items()}
        routes["kuaidi100.sandbox"] = tracker
        bindings = {name: SandboxBinding(sb, f"http://{name}.sandbox")
                    for name, sb in sandboxes.items()}
        bindings[TRACKING_SANDBOX] = SandboxBinding(tracker, "http://kuaidi100.sandbox")
        engine = create_engine(config.database_url)
        await upgrade(engine, config.database_url)
        rt = Runtime(config, clock=clock, sandboxes=bindings, transport=RoutingTransport(routes),
                     engine=engine, node="test-node")
        rt.http.rate_limits = False
        await rt.sync_shops()
        made.append(rt)
        from core.catalog import ProductSpec, SkuSpec, upsert_product

        async with transaction(rt.sessions) as session:
            await upsert_product(session, ProductSpec("MUG", "马克杯", (SkuSpec("MUG", 3900),)),
                                 rt.now())
            from core.model import Sku

            sku = await session.scalar(select(Sku.id).where(Sku.merchant_code == "MUG"))
            assert sku is not None
            await rt.pool.change_on_hand(session, sku, "MAIN", 500, kind="receipt",
                                         reason="seed", reference="test", now=rt.now())
        return rt, sandboxes, tracker

    yield factory
    for rt in made:
        await rt.close()


async def place(rt: Runtime, sandbox: TaobaoSandbox, clock: ManualClock,
                shop: str = "tb") -> int:
    """A paid order on the platform, pulled five minutes later; our order id."""
    placed = sandbox.place_order([("MUG", 1)], address=GUANGDONG)
    clock.advance(5 * MINUTE)
    await pull_orders(rt, shop, since=clock.now() - HOUR)
    async with rt.sessions() as session:
        found = await session.scalar(select(Order.id).where(
            Order.platform_order_id == placed.order_id, Order.shop_id == rt.shop_ids[shop]))
    assert found is not None
    return found


async def shipped(rt: Runtime, sandbox: TaobaoSandbox, tracker: Kuaidi100Sandbox,
                  clock: ManualClock, journey: str, number: str = "YT1000000000001",
                  shop: str = "tb") -> int:
    """An order shipped now whose parcel starts its `journey` at once; the shipment id."""
    order_id = await place(rt, sandbox, clock, shop)
    async with transaction(rt.sessions) as session:
        shipment = await ship(session, order_id=order_id, carrier="YTO", tracking_number=number,
                              carriers=rt.connector(shop).carrier_table(), pool=rt.pool,
                              publisher=rt.publisher, now=rt.now())
        shipment_id = shipment.id
    tracker.add_parcel("YTO", number, journey, start=clock.now())
    return shipment_id


async def shipment(rt: Runtime, shipment_id: int) -> Shipment:
    async with rt.sessions() as session:
        found = await session.get(Shipment, shipment_id)
    assert found is not None
    return found


async def alerts(rt: Runtime, kind: str, *, open_only: bool = True) -> list[Alert]:
    query = select(Alert).where(Alert.kind == kind).order_by(Alert.id)
    if open_only:
        query = query.where(Alert.open_key.is_not(None))
    async with rt.sessions() as session:
        return list((await session.scalars(query)).all())


def queries(tracker: Kuaidi100Sandbox) -> int:
    return sum(1 for r in tracker.requests if r.api == "query")


def later_scan(hours: float, state: str, sub_state: str, text: str) -> Scan:
    return Scan(timedelta(hours=hours), state, sub_state, text, "北京,北京市", "CN110100000000")


# -- polling ------------------------------------------------------------------------------------
async def test_poll_stores_each_event_once_and_stops_at_delivery(
        db_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(db_url)
    sid = await shipped(rt, shops["tb"], tracker, clock, "normal")
    start = clock.now()
    assert await poll_tracking(rt) == 0  # no scan yet: Kuaidi100 answers 查询无结果
    clock.advance(11 * HOUR)
    assert await poll_tracking(rt) == 3  # collected at 2 h, two hub scans
    row = await shipment(rt, sid)
    assert (row.tracking_status, row.final) == ("in_transit", False)
    assert (row.first_event_at, row.last_event_at) == (start + 2 * HOUR, start + 10 * HOUR)
    asked = queries(tracker)
    assert await poll_tracking(rt) == 0
    assert queries(tracker) == asked  # inside the interval: Kuaidi100 is not asked at all

    clock.advance(30 * HOUR)  # delivered at 38 h
    assert await poll_tracking(rt) == 4  # the three known scans are not stored again
    row = await shipment(rt, sid)
    assert (row.tracking_status, row.final) == ("delivered", True)
    assert row.last_event_at is not None and row.first_event_at is not None
    assert row.last_event_at - row.first_event_at == timedelta(hours=36)
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(TrackingEvent)) == 7
    asked = queries(tracker)
    clock.advance(24 * HOUR)
    await poll_tracking(rt)
    assert queries(tracker) == asked  # a delivered parcel is never asked about again


async def test_the_providers_minimum_interval_beats_a_shorter_rule(
        sqlite_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(sqlite_url, rules={"tracking_poll": "5m"})
    await shipped(rt, shops["tb"], tracker, clock, "normal")
    clock.advance(3 * HOUR)
    await poll_tracking(rt)
    asked = queries(tracker)
    clock.advance(29 * MINUTE)
    await poll_tracking(rt)
    assert queries(tracker) == asked  # Kuaidi100 may lock a number asked every 5 min
    clock.advance(MINUTE)
    await poll_tracking(rt)
    assert queries(tracker) == asked + 1


# -- stalled ------------------------------------------------------------------------------------
async def test_stalled_opens_at_48_hours_and_resolves_on_the_next_event(
        db_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(db_url)
    sid = await shipped(rt, shops["tb"], tracker, clock, "stalled")
    start = clock.now()
    clock.advance(15 * HOUR)
    await poll_tracking(rt)
    last = (await shipment(rt, sid)).last_event_at
    assert last == start + 14 * HOUR  # left the origin hub, never scanned again

    clock.set(start + 14 * HOUR + 47 * HOUR + 59 * MINUTE)
    counts = await check_shipments(rt)
    assert counts["shipment_stalled"] == 0 and await alerts(rt, "shipment_stalled") == []
    clock.set(start + 14 * HOUR + 48 * HOUR)
    assert (await check_shipments(rt))["shipment_stalled"] == 1
    (stalled,) = await alerts(rt, "shipment_stalled")
    assert stalled.subject == f"shipment:{sid}" and stalled.severity == "warning"
    assert "no tracking update for 48 h" in stalled.message
    assert (await check_shipments(rt))["shipment_stalled"] == 0  # one open alert, not two

    # the parcel moves again: the very poll that stores the event resolves the alert
    parcel = tracker.parcels[("yuantong", "YT1000000000001")]
    parcel.scans += (later_scan(63, "0", "1001", "【北京市】快件已到达【北京转运中心】"),)
    clock.set(start + 64 * HOUR)
    assert await poll_tracking(rt) == 1
    assert await alerts(rt, "shipment_stalled") == []
    assert (await check_shipments(rt))["shipment_stalled"] == 0
    (closed,) = await alerts(rt, "shipment_stalled", open_only=False)
    assert closed.resolved_at == start + 64 * HOUR

    # a second stall after that event is a new episode: alerted again
    clock.set(start + 63 * HOUR + 48 * HOUR)
    assert (await check_shipments(rt))["shipment_stalled"] == 1


async def test_a_stall_closed_by_hand_is_not_raised_again_for_the_same_silence(
        sqlite_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(sqlite_url)
    sid = await shipped(rt, shops["tb"], tracker, clock, "stalled")
    clock.advance(15 * HOUR)
    await poll_tracking(rt)
    clock.advance(48 * HOUR)
    assert (await check_shipments(rt))["shipment_stalled"] == 1
    async with transaction(rt.sessions) as session:  # `erpsync alerts resolve`
        await session.execute(update(Alert).where(Alert.subject == f"shipment:{sid}")
                              .values(open_key=None, resolved_at=clock.now()))
    clock.advance(HOUR)
    counts = await check_shipments(rt)
    assert counts["shipment_stalled"] == 0 and counts["resolved"] == 0
    assert await alerts(rt, "shipment_stalled") == []


# -- not collected, exceptions ------------------------------------------------------------------
async def test_not_collected_at_24_hours_then_resolved_by_the_first_scan(
        db_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(db_url)
    sid = await shipped(rt, shops["tb"], tracker, clock, "never_collected")
    shipped_at = (await shipment(rt, sid)).shipped_at
    clock.set(shipped_at + 23 * HOUR + 59 * MINUTE)
    await poll_tracking(rt)
    assert (await check_shipments(rt))["not_collected"] == 0
    clock.set(shipped_at + 24 * HOUR)
    assert (await check_shipments(rt))["not_collected"] == 1
    assert "the courier has not scanned it" in (await alerts(rt, "not_collected"))[0].message

    parcel = tracker.parcels[("yuantong", "YT1000000000001")]
    parcel.scans += (later_scan(25, "1", "103", "【杭州市】快件已揽收"),)
    clock.set(shipped_at + 26 * HOUR)
    await poll_tracking(rt)
    assert (await shipment(rt, sid)).tracking_status == "collected"
    assert await alerts(rt, "not_collected") == []


@pytest.mark.parametrize(("journey", "hours", "status"), [
    ("problem", 41, "problem"), ("refused", 39, "refused"), ("returned", 45, "returning"),
])
async def test_a_delivery_exception_is_alerted(
        sqlite_url: str, clock: ManualClock, tracked: Factory, journey: str, hours: int,
        status: str) -> None:
    rt, shops, tracker = await tracked(sqlite_url)
    sid = await shipped(rt, shops["tb"], tracker, clock, journey)
    clock.advance(hours * HOUR)
    await poll_tracking(rt)
    assert (await shipment(rt, sid)).tracking_status == status
    assert (await check_shipments(rt))["delivery_exception"] == 1
    (raised,) = await alerts(rt, "delivery_exception")
    assert raised.severity == "error" and f"is {status} since" in raised.message


async def test_an_exception_clears_when_the_parcel_is_delivered_after_all(
        sqlite_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(sqlite_url)
    sid = await shipped(rt, shops["tb"], tracker, clock, "problem")
    clock.advance(41 * HOUR)
    await poll_tracking(rt)
    await check_shipments(rt)
    assert len(await alerts(rt, "delivery_exception")) == 1
    parcel = tracker.parcels[("yuantong", "YT1000000000001")]
    parcel.scans += (later_scan(44, "3", "302", "【北京市】快件已签收（派件异常后签收）"),)
    clock.advance(4 * HOUR)
    await poll_tracking(rt)
    row = await shipment(rt, sid)
    assert (row.tracking_status, row.final) == ("delivered", True)
    assert await alerts(rt, "delivery_exception") == []
    assert (await check_shipments(rt))["delivery_exception"] == 0


# -- shipping deadlines ------------------------------------------------------------------------
async def test_ship_overdue_waits_24_hours_or_48_in_promo_mode(
        db_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, _ = await tracked(db_url, shops={"tb": {}, "tb-promo": {"promo_mode": True}})
    paid = clock.now()
    normal = await place(rt, shops["tb"], clock, "tb")
    promo_paid = clock.now()  # five minutes later
    promo = await place(rt, shops["tb-promo"], clock, "tb-promo")
    async with rt.sessions() as session:
        statuses = (await session.scalars(select(Order.status).order_by(Order.id))).all()
    assert list(statuses) == ["approved", "approved"]

    async def overdue() -> set[str]:
        await check_shipments(rt)
        return {a.subject for a in await alerts(rt, "ship_overdue")}

    clock.set(paid + 23 * HOUR + 59 * MINUTE)
    assert await overdue() == set()
    clock.set(paid + 24 * HOUR)
    assert await overdue() == {f"order:{normal}"}
    clock.set(promo_paid + 47 * HOUR + 59 * MINUTE)
    assert await overdue() == {f"order:{normal}"}
    clock.set(promo_paid + 48 * HOUR)
    assert await overdue() == {f"order:{normal}", f"order:{promo}"}
    (promo_alert,) = [a for a in await alerts(rt, "ship_overdue")
                      if a.subject == f"order:{promo}"]
    assert "promo mode" in promo_alert.message

    # shipping resolves it at once, in the shipping transaction
    async with transaction(rt.sessions) as session:
        await ship(session, order_id=normal, carrier="YTO", tracking_number="YT1000000000009",
                   carriers=rt.connector("tb").carrier_table(), pool=rt.pool,
                   publisher=rt.publisher, now=rt.now())
    assert {a.subject for a in await alerts(rt, "ship_overdue")} == {f"order:{promo}"}


async def test_tracking_push_late_after_2_hours_resolved_by_the_push(
        sqlite_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(sqlite_url)
    sid = await shipped(rt, shops["tb"], tracker, clock, "normal")
    shipped_at = (await shipment(rt, sid)).shipped_at
    clock.set(shipped_at + HOUR + 59 * MINUTE)
    assert (await check_shipments(rt))["tracking_push_late"] == 0
    clock.set(shipped_at + 2 * HOUR)
    assert (await check_shipments(rt))["tracking_push_late"] == 1
    await OutboxWorker(rt).drain()
    assert (await shipment(rt, sid)).push_state == "pushed"
    assert await alerts(rt, "tracking_push_late") == []


# -- pushes -------------------------------------------------------------------------------------
async def test_subscription_pushes_are_verified_stored_once_and_acknowledged(
        db_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(db_url, tracking=f'callback_url = "{CALLBACK}"\n')
    sid = await shipped(rt, shops["tb"], tracker, clock, "normal")
    await poll_tracking(rt)  # subscribes the new parcel first
    assert (await shipment(rt, sid)).subscribed_at == clock.now()
    assert [s.callback_url for s in tracker.subscriptions.values()] == [CALLBACK]

    async def receive(request: httpx.Request) -> httpx.Response:
        ack = await accept_callback(rt, dict(request.headers), request.content)
        return httpx.Response(ack.status, content=ack.body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        clock.advance(7 * HOUR)
        assert await tracker.deliver_callbacks(client) == [200]
        clock.advance(4 * HOUR)
        assert await tracker.deliver_callbacks(client) == [200]
    assert tracker.pending_callbacks == [] and tracker.undelivered == []
    async with rt.sessions() as session:  # two pushes of the whole history: 3 events, once
        assert await session.scalar(select(func.count()).select_from(TrackingEvent)) == 3
    assert (await shipment(rt, sid)).tracking_status == "in_transit"

    assert tracker.render_callbacks() == []  # Kuaidi100 looks again only every ~4 h

    # a forged push is refused and nothing of it is stored
    clock.advance(4 * HOUR)
    (push,) = tracker.render_callbacks()
    forged = push.body.replace(b"%E6%9D%AD%E5%B7%9E", b"%E5%8C%97%E4%BA%AC")  # 杭州 → 北京
    refused = await accept_callback(rt, dict(push.headers), forged)
    assert refused.status == 403
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(TrackingEvent)) == 3
    accepted = await accept_callback(rt, dict(push.headers), push.body)
    assert accepted.body == CALLBACK_ACK
    assert acknowledged(httpx.Response(accepted.status, content=accepted.body))
    again = await accept_callback(rt, dict(push.headers), push.body)  # re-sent: no change
    assert again.body == CALLBACK_ACK
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(TrackingEvent)) == 4


async def test_an_abandoned_subscription_is_renewed(
        sqlite_url: str, clock: ManualClock, tracked: Factory) -> None:
    rt, shops, tracker = await tracked(sqlite_url, tracking=f'callback_url = "{CALLBACK}"\n')
    sid = await shipped(rt, shops["tb"], tracker, clock, "never_collected")
    await poll_tracking(rt)
    clock.advance(73 * HOUR)
    (abort,) = tracker.render_callbacks()  # 3天查询无记录
    assert abort.push_status == "abort"
    ack = await accept_callback(rt, dict(abort.headers), abort.body)
    assert ack.status == 200
    row = await shipment(rt, sid)
    assert row.subscribed_at is None and row.final is False
    await poll_tracking(rt)
    assert (await shipment(rt, sid)).subscribed_at == clock.now()


async def test_callbacks_without_a_provider_are_not_found(
        sqlite_url: str, make_runtime: Any) -> None:
    rt = await make_runtime(sqlite_url, {"tb": TaobaoSandbox()})
    assert provider(rt) is None
    assert (await accept_callback(rt, {}, b"param=x")).status == 404
    assert await poll_tracking(rt) == 0


# -- settings -----------------------------------------------------------------------------------
def test_tracking_settings_name_every_bad_key() -> None:
    with pytest.raises(ConfigProblems) as caught:
        TrackingSettings.from_config({
            "sandbox": "yes", "credentials": {"app_key": "lower-case"},
            "callback_url": "ftp://x", "colour": "blue"}, "erpsync.toml")
    text = str(caught.value)
    for key in ("tracking.colour: unknown key", "tracking.provider: is required",
                "tracking.sandbox: expected true/false", "tracking.callback_url",
                "tracking.credentials.app_key: 'lower-case' must name an environment variable"):
        assert key in text
    assert TrackingSettings.from_config({}) is None


async def test_a_real_provider_needs_its_environment_variables(
        sqlite_url: str, config_file: Any, clock: ManualClock) -> None:
    path = config_file(sqlite_url, [], extra=(
        '\n[tracking]\nprovider = "kuaidi100"\n'
        'credentials = { app_key = "K100_CUSTOMER", app_secret = "K100_KEY" }\n'))
    config = load(path, check_env=False)
    engine = create_engine(config.database_url)
    rt = Runtime(config, clock=clock, engine=engine, environ={"K100_CUSTOMER": "c"})
    try:
        with pytest.raises(ConfigProblems, match=r"tracking\.credentials\.app_secret: "
                                                 r"environment variable K100_KEY is not set"):
            provider(rt)
        rt2 = Runtime(config, clock=clock, engine=engine,
                      environ={"K100_CUSTOMER": "c", "K100_KEY": "k"})
        built = provider(rt2)
        assert built is not None and built.shop.base_url == "https://poll.kuaidi100.com"
        assert provider(rt2) is built  # built once per runtime
        await rt2.http.aclose()
    finally:
        await rt.close()
    unknown = config_file(sqlite_url, [], extra='\n[tracking]\nprovider = "nope"\n')
    rt3 = Runtime(load(unknown, check_env=False), clock=clock)
    try:
        with pytest.raises(ConfigProblems, match="unknown tracking provider 'nope'"):
            provider(rt3)
    finally:
        await rt3.close()
