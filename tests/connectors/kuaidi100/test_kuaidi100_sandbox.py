"""The Kuaidi100 sandbox through the provider: journeys on the clock, refusals exactly like
Kuaidi100, faults, subscriptions and signed callbacks."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from kuaidi100_support import SALT, wire

from connectors.kuaidi100.client import callback_sign
from connectors.kuaidi100.connector import CALLBACK_ACK, Kuaidi100Provider
from connectors.kuaidi100.sandbox import JOURNEYS, Kuaidi100Sandbox
from core.clock import ManualClock
from core.errors import (
    AuthExpired,
    BadResponse,
    NotFound,
    RateLimited,
    Rejected,
    SignatureInvalid,
    Transient,
    UnmappedCarrier,
)
from core.records import TrackingStatus
from core.sandbox import Fault, serve

S = TrackingStatus
HOUR = 3600.0
NUMBER = "YT7512345678901"
CALLBACK_URL = "https://erp.example.com/hooks/kuaidi100"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> Kuaidi100Sandbox:
    return Kuaidi100Sandbox(clock=clock)


@pytest.fixture
def provider(sandbox: Kuaidi100Sandbox, clock: ManualClock) -> Kuaidi100Provider:
    return wire(sandbox, clock)


# -- journeys on the clock ------------------------------------------------------------------
async def test_normal_journey_reveals_scans_as_the_clock_passes_them(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER)
    with pytest.raises(NotFound):  # nothing scanned yet
        await provider.track("YTO", NUMBER)
    seen: list[tuple[S, int]] = []
    for hours in (2.5, 8, 16, 8.5, 5):  # -> 2.5h, 10.5h, 26.5h, 35h, 40h
        clock.advance(hours * HOUR)
        result = await provider.track("YTO", NUMBER)
        seen.append((result.status, len(result.events)))
    assert seen == [(S.COLLECTED, 1), (S.IN_TRANSIT, 3), (S.IN_TRANSIT, 4),
                    (S.OUT_FOR_DELIVERY, 6), (S.DELIVERED, 7)]
    assert result.final
    assert result.carrier == "YTO"
    assert all(e.occurred_at <= clock.now() for e in result.events)


@pytest.mark.parametrize(("journey", "status", "final"), [
    ("normal", S.DELIVERED, True),
    ("stalled", S.IN_TRANSIT, False),
    ("problem", S.PROBLEM, False),
    ("refused", S.REFUSED, False),
    ("returned", S.RETURNED, True),
])
async def test_journey_kinds_end_where_they_should(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock,
        journey: str, status: S, final: bool) -> None:
    sandbox.add_parcel("ZTO", "73100000000001", journey, phone="13900005678")
    clock.advance(timedelta(days=10))
    result = await provider.track("ZTO", "73100000000001", phone="5678")
    assert (result.status, result.final) == (status, final)
    assert len(result.events) == len(JOURNEYS[journey])


async def test_stalled_parcel_stops_producing_events(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER, "stalled")
    clock.advance(15 * HOUR)
    first = await provider.track("YTO", NUMBER)
    clock.advance(timedelta(days=30))
    later = await provider.track("YTO", NUMBER)
    assert first.events == later.events
    assert clock.now() - later.events[-1].occurred_at > timedelta(days=30)


async def test_never_collected_parcel_has_no_result(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER, "never_collected")
    clock.advance(timedelta(days=5))
    with pytest.raises(NotFound) as caught:
        await provider.track("YTO", NUMBER)
    assert caught.value.code == "query:500"


def test_unknown_journey_is_refused(sandbox: Kuaidi100Sandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.add_parcel("YTO", NUMBER, "teleported")


async def test_ascending_order_and_sub_state_in_state(clock: ManualClock) -> None:
    sandbox = Kuaidi100Sandbox(clock=clock, state_carries_substate=True)
    sandbox.add_parcel("YTO", NUMBER)
    clock.advance(40 * HOUR)
    provider = wire(sandbox, clock, options={"kuaidi100": {
        "query_resultv2": "6", "min_query_interval": 0}})
    result = await provider.track("YTO", NUMBER)
    body = json.loads(sandbox.requests[-1].request.form()["param"])
    assert body["resultv2"] == "6"
    assert result.status is S.DELIVERED  # state "301" with the advanced resultv2
    assert result.events[-1].raw_state == "301"
    assert sandbox.render_result(sandbox.parcels[("yuantong", NUMBER)], order="asc")[
        "data"][0]["context"].endswith("快件已揽收")


# -- refusals ------------------------------------------------------------------------------
async def test_wrong_key_is_a_bad_sign(sandbox: Kuaidi100Sandbox, clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER)
    clock.advance(3 * HOUR)
    with pytest.raises(AuthExpired) as caught:
        await wire(sandbox, clock, key="not-the-key-0000").track("YTO", NUMBER)
    assert caught.value.code == "query:503"
    assert caught.value.platform_message == "验证签名失败"
    assert len(sandbox.calls("query")) == 1  # not retried


async def test_unknown_customer_is_refused(sandbox: Kuaidi100Sandbox, clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER)
    clock.advance(3 * HOUR)
    with pytest.raises(Rejected) as caught:
        await wire(sandbox, clock, customer="SOMEONEELSE").track("YTO", NUMBER)
    assert (caught.value.code, caught.value.reason) == ("query:400", "bad_params")


async def test_phone_check_of_shunfeng(sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider,
                                       clock: ManualClock) -> None:
    sandbox.add_parcel("SF", "SF1402345678901", phone="13812345678")
    clock.advance(3 * HOUR)
    for phone in ("", "13800000000"):
        with pytest.raises(Rejected) as caught:
            await provider.track("SF", "SF1402345678901", phone=phone)
        assert (caught.value.code, caught.value.reason) == ("query:408", "phone_required")
    result = await provider.track("SF", "SF1402345678901", phone="138-1234-5678")
    assert result.status is S.COLLECTED


async def test_over_long_number_and_unknown_carrier(provider: Kuaidi100Provider) -> None:
    with pytest.raises(Rejected) as caught:
        await provider.track("YTO", "YT" + "1" * 31)
    assert caught.value.reason == "bad_params"
    with pytest.raises(UnmappedCarrier):
        await provider.track("NOPE", NUMBER)


async def test_raw_requests_answered_like_kuaidi100(sandbox: Kuaidi100Sandbox) -> None:
    async with httpx.AsyncClient(transport=sandbox.transport(),
                                 base_url="https://poll.kuaidi100.com") as client:
        missing = await client.post("/poll/query.do", data={"customer": sandbox.customer})
        nowhere = await client.post("/poll/nothing", data={})
        not_json = await client.post("/poll", data={"schema": "json", "param": "{"})
    assert missing.json() == {"result": False, "returnCode": "400",
                              "message": "提交的数据不完整，或者贵公司没授权"}
    assert nowhere.status_code == 404
    assert not_json.json()["returnCode"] == "700"


# -- faults --------------------------------------------------------------------------------
async def test_rate_limit_once_then_success(sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider,
                                            clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER)
    clock.advance(3 * HOUR)
    sandbox.faults.inject(Fault.RATE_LIMIT, api="query")
    result = await provider.track("YTO", NUMBER)
    assert result.status is S.COLLECTED
    assert len(sandbox.calls("query")) == 2
    assert clock.slept  # the backoff went through the clock


@pytest.mark.parametrize(("fault", "error"), [
    (Fault.RATE_LIMIT, RateLimited),
    (Fault.SERVER_ERROR, Transient),
    (Fault.TIMEOUT, Transient),
    (Fault.MALFORMED, BadResponse),
])
async def test_fault_switches_map_to_canonical_errors(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock,
        fault: Fault, error: type[Exception]) -> None:
    sandbox.add_parcel("YTO", NUMBER)
    clock.advance(3 * HOUR)
    sandbox.faults.inject(fault, times=4)
    with pytest.raises(error):
        await provider.track("YTO", NUMBER)
    expected_calls = 1 if error is BadResponse else 4
    assert len(sandbox.calls("query")) == expected_calls


async def test_subscription_faults(sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider) -> None:
    sandbox.faults.inject(Fault.SERVER_ERROR, times=4, api="subscribe")
    with pytest.raises(Transient) as caught:
        await provider.subscribe("YTO", NUMBER, CALLBACK_URL)
    assert caught.value.code == "subscribe:500"
    assert not sandbox.subscriptions


# -- subscriptions -------------------------------------------------------------------------
async def test_subscription_is_recorded_and_idempotent(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider) -> None:
    await provider.subscribe("YTO", NUMBER, CALLBACK_URL)
    await provider.subscribe("YTO", NUMBER, CALLBACK_URL)  # Kuaidi100 answers 501: fine
    (sub,) = sandbox.subscriptions.values()
    assert (sub.company, sub.number, sub.callback_url, sub.salt, sub.resultv2) == (
        "yuantong", NUMBER, CALLBACK_URL, SALT, "4")
    assert len(sandbox.calls("subscribe")) == 2
    again = sandbox.handle(sandbox.calls("subscribe")[-1])
    assert json.loads(again.body) == {"result": False, "returnCode": "501", "message": "重复订阅"}


async def test_subscription_refusals(sandbox: Kuaidi100Sandbox, clock: ManualClock) -> None:
    with pytest.raises(AuthExpired) as bad_key:
        await wire(sandbox, clock, key="not-the-key-0000").subscribe("YTO", NUMBER, CALLBACK_URL)
    assert bad_key.value.code == "subscribe:600"
    sandbox.refused_companies.add("yunda")
    with pytest.raises(Rejected) as refused:
        await wire(sandbox, clock).subscribe("YUNDA", "4312345678901", CALLBACK_URL)
    assert (refused.value.code, refused.value.reason) == ("subscribe:701", "bad_carrier")
    with pytest.raises(Rejected) as bad_url:
        await wire(sandbox, clock).subscribe("YTO", NUMBER, "ftp://nowhere")
    assert bad_url.value.reason == "bad_params"
    with pytest.raises(Rejected) as no_salt:
        await wire(sandbox, clock, salt=None).subscribe("YTO", NUMBER, CALLBACK_URL)
    assert no_salt.value.reason == "missing_salt"
    assert not sandbox.subscriptions


# -- callbacks -----------------------------------------------------------------------------
def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


async def test_callbacks_follow_the_journey_and_verify(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER)
    await provider.subscribe("YTO", NUMBER, CALLBACK_URL)
    assert sandbox.render_callbacks() == []  # nothing before the first check
    clock.advance(3 * HOUR)
    (first,) = sandbox.render_callbacks()
    assert first.url == CALLBACK_URL
    form = _form(first.body)
    assert form["sign"] == callback_sign(form["param"], SALT)
    result = provider.verify_callback(dict(first.headers), first.body)
    assert (result.status, len(result.events), result.final) == (S.COLLECTED, 1, False)

    clock.advance(1 * HOUR)
    assert sandbox.render_callbacks() == []  # Kuaidi100 looks again only every ~4 h
    clock.advance(5 * HOUR)
    assert sandbox.render_callbacks()[0].push_status == "polling"  # 9 h: scans of 2 h, 6 h
    clock.advance(8 * HOUR)
    assert len(provider.verify_callback({}, sandbox.render_callbacks()[0].body).events) == 4
    clock.advance(4 * HOUR)
    assert sandbox.render_callbacks() == []  # 21 h: no scan since 14 h

    clock.advance(timedelta(days=2))
    (last,) = sandbox.render_callbacks()
    assert last.push_status == "shutdown"
    done = provider.verify_callback({}, last.body)
    assert (done.status, done.final, len(done.events)) == (S.DELIVERED, True, 7)
    clock.advance(timedelta(days=1))
    assert sandbox.render_callbacks() == []  # shut down: no more pushes
    await provider.subscribe("YTO", NUMBER, CALLBACK_URL)  # may subscribe again now
    assert sandbox.subscriptions[("yuantong", NUMBER)].status == "polling"


async def test_tampered_or_foreign_callbacks_are_refused(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER)
    await provider.subscribe("YTO", NUMBER, CALLBACK_URL)
    clock.advance(3 * HOUR)
    (push,) = sandbox.render_callbacks()
    form = _form(push.body)
    tampered = urlencode({"param": form["param"].replace("揽收", "签收"), "sign": form["sign"]})
    with pytest.raises(SignatureInvalid):
        provider.verify_callback({}, tampered.encode())
    with pytest.raises(SignatureInvalid):
        wire(sandbox, clock, salt="another-salt-000000").verify_callback({}, push.body)
    with pytest.raises(SignatureInvalid):
        wire(sandbox, clock, salt=None).verify_callback({}, push.body)
    with pytest.raises(SignatureInvalid):
        provider.verify_callback({}, urlencode({"param": form["param"]}).encode())
    assert provider.verify_callback({}, push.body).status is S.COLLECTED


async def test_no_trace_for_three_days_aborts(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    sandbox.add_parcel("JT", "JT0001234567890", "never_collected")
    await provider.subscribe("JT", "JT0001234567890", CALLBACK_URL)
    clock.advance(timedelta(days=2, hours=23))
    assert sandbox.render_callbacks() == []
    clock.advance(timedelta(hours=5))
    (push,) = sandbox.render_callbacks()
    assert push.push_status == "abort"
    assert json.loads(_form(push.body)["param"])["message"] == "3天查询无记录"
    result = provider.verify_callback({}, push.body)
    assert (result.carrier, result.status, result.final, result.events) == (
        "JT", S.PENDING, True, ())


async def test_wrong_carrier_is_corrected_by_kuaidi100(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    sandbox.add_parcel("YUNDA", "4312345678901")
    await provider.subscribe("YTO", "4312345678901", CALLBACK_URL)  # wrong carrier
    clock.advance(timedelta(days=3, hours=1))
    (abort,) = sandbox.render_callbacks()
    push = json.loads(_form(abort.body)["param"])
    assert (push["status"], push["autoCheck"], push["comNew"]) == ("abort", "0", "yunda")
    (corrected,) = sandbox.render_callbacks()  # re-subscribed under the right code
    push = json.loads(_form(corrected.body)["param"])
    assert (push["autoCheck"], push["comOld"], push["comNew"]) == ("1", "yuantong", "yunda")
    result = provider.verify_callback({}, corrected.body)
    assert result.carrier == "YUNDA"
    assert result.status is S.DELIVERED


async def test_sixty_days_without_change_aborts(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER, "stalled")
    await provider.subscribe("YTO", NUMBER, CALLBACK_URL)
    clock.advance(timedelta(days=1))
    assert sandbox.render_callbacks()[0].push_status == "polling"
    clock.advance(timedelta(days=58))
    assert sandbox.render_callbacks() == []
    clock.advance(timedelta(days=2))
    (push,) = sandbox.render_callbacks()
    assert push.push_status == "abort"
    assert json.loads(_form(push.body)["param"])["message"] == "60天无变化"


async def test_delivered_to_a_receiver_that_acks(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    received = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(provider.verify_callback(dict(request.headers), request.content))
        ack = provider.callback_ack()
        return httpx.Response(ack.status, content=ack.body)

    sandbox.add_parcel("YTO", NUMBER)
    await provider.subscribe("YTO", NUMBER, CALLBACK_URL)
    clock.advance(3 * HOUR)
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        assert await sandbox.deliver_callbacks(client) == [200]
    assert received[0].status is S.COLLECTED
    assert sandbox.pending_callbacks == []


async def test_unacknowledged_push_is_resent_three_times_35_min_apart(
        sandbox: Kuaidi100Sandbox, provider: Kuaidi100Provider, clock: ManualClock) -> None:
    hits = []

    def receiver(request: httpx.Request) -> httpx.Response:
        hits.append(clock.now())
        return httpx.Response(200, json={"result": True, "returnCode": "500", "message": "x"})

    sandbox.add_parcel("YTO", NUMBER, "stalled")
    await provider.subscribe("YTO", NUMBER, CALLBACK_URL)
    clock.advance(3 * HOUR)
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        for _ in range(6):
            await sandbox.deliver_callbacks(client)
            clock.advance(35 * 60)
    assert len(hits) == 4  # the first try and 3 retries
    assert [b - a for a, b in itertools.pairwise(hits)] == [timedelta(minutes=35)] * 3
    assert len(sandbox.undelivered) == 1


def test_ack_body_is_exactly_what_kuaidi100_expects() -> None:
    assert json.loads(CALLBACK_ACK) == {"result": True, "returnCode": "200", "message": "成功"}


# -- over real HTTP ------------------------------------------------------------------------
async def test_served_over_http_under_a_prefix(sandbox: Kuaidi100Sandbox,
                                               clock: ManualClock) -> None:
    sandbox.add_parcel("YTO", NUMBER)
    clock.advance(40 * HOUR)
    async with serve({"kd100": sandbox}) as urls:
        provider = wire(sandbox, clock, base_url=urls["kd100"], in_process=False)
        try:
            result = await provider.track("YTO", NUMBER)
        finally:
            await provider.http.aclose()
    assert result.status is S.DELIVERED
    assert sandbox.requests[-1].request.path == "/poll/query.do"
