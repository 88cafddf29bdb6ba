"""Kuaidi100Provider's own behaviour: declared facts, the 30-minute query guard, options."""

from __future__ import annotations

import json

import pytest
from kuaidi100_support import wire

from connectors.kuaidi100.client import Kuaidi100Options
from connectors.kuaidi100.connector import Kuaidi100Provider, phone_tail
from connectors.kuaidi100.sandbox import Kuaidi100Sandbox
from core.clock import ManualClock
from core.connector import TrackingProvider
from core.errors import RateLimited
from core.records import Capability, TrackingStatus

NUMBER = "YT7512345678901"


def test_declared_facts() -> None:
    assert issubclass(Kuaidi100Provider, TrackingProvider)
    assert Kuaidi100Provider.platform == "kuaidi100"
    assert Kuaidi100Provider.capabilities == {Capability.TRACKING, Capability.TRACKING_PUSH}
    assert Kuaidi100Provider.default_base_url == "https://poll.kuaidi100.com"
    assert Kuaidi100Provider.sandbox_class is Kuaidi100Sandbox


def test_callback_ack_is_kuaidi100s_success_json() -> None:
    clock = ManualClock()
    ack = wire(Kuaidi100Sandbox(clock=clock), clock).callback_ack()
    assert ack.status == 200
    assert ack.body.decode() == '{"result":true,"returnCode":"200","message":"成功"}'
    assert json.loads(ack.body)["result"] is True


async def test_a_number_is_not_queried_twice_within_the_interval() -> None:
    clock = ManualClock()
    sandbox = Kuaidi100Sandbox(clock=clock)
    sandbox.add_parcel("YTO", NUMBER)
    clock.advance(3 * 3600)
    provider = wire(sandbox, clock, options={"kuaidi100": {"min_query_interval": 1800}})
    assert (await provider.track("YTO", NUMBER)).status is TrackingStatus.COLLECTED
    clock.advance(600)
    with pytest.raises(RateLimited) as caught:
        await provider.track("YTO", NUMBER)
    assert caught.value.retry_after == pytest.approx(1200)
    assert len(sandbox.calls("query")) == 1  # the guard spared Kuaidi100 the call
    clock.advance(1200)
    assert (await provider.track("YTO", NUMBER)).status is TrackingStatus.COLLECTED
    assert len(sandbox.calls("query")) == 2


def test_options_defaults_and_overrides() -> None:
    assert Kuaidi100Options.from_shop({}) == Kuaidi100Options()
    assert Kuaidi100Options.from_shop({"kuaidi100": {"query_resultv2": "6"}}).query_resultv2 == "6"
    with pytest.raises(ValueError):
        Kuaidi100Options.from_shop({"kuaidi100": {"resultv3": "1"}})


async def test_carrier_codes_can_be_overridden_per_shop() -> None:
    clock = ManualClock()
    sandbox = Kuaidi100Sandbox(clock=clock)
    sandbox.add_parcel("youzhengbk", "9812345678901")
    clock.advance(3 * 3600)
    provider = wire(sandbox, clock, options={"carriers": {"POSTB": "youzhengbk"},
                                             "kuaidi100": {"min_query_interval": 0}})
    result = await provider.track("POSTB", "9812345678901")
    assert result.carrier == "POSTB"
    assert json.loads(sandbox.calls("query")[0].form()["param"])["com"] == "youzhengbk"


@pytest.mark.parametrize(("given", "sent"), [
    ("13812345678", "5678"), ("+86 138-1234-5678", "5678"), ("5678", "5678"), ("", ""),
    ("0571-8888 1234", "1234"),
])
def test_only_the_last_four_digits_are_sent(given: str, sent: str) -> None:
    assert phone_tail(given) == sent
