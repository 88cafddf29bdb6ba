"""Kuaidi100 JSON -> canonical tracking records: one test per status-table row, every
fixture mapped, the carrier table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from kuaidi100_support import fixture, fixture_names

from connectors.kuaidi100.connector import Kuaidi100Provider
from connectors.kuaidi100.mapping import (
    CARRIERS,
    STATE_NAMES,
    STATUS_TABLE,
    callback_result,
    to_tracking_result,
    tracking_status,
)
from core.carriers import DOMESTIC, INTERNATIONAL
from core.errors import BadResponse
from core.records import TrackingResult, TrackingStatus

S = TrackingStatus

# Every code of logistics-tracking.md §1.4 with the canonical status it must map to,
# written out independently of the table under test.
DOCUMENTED: dict[str, TrackingStatus] = {
    "1": S.COLLECTED, "101": S.PENDING, "102": S.PENDING, "103": S.COLLECTED,
    "0": S.IN_TRANSIT, "1001": S.IN_TRANSIT, "1002": S.IN_TRANSIT, "1003": S.IN_TRANSIT,
    "5": S.OUT_FOR_DELIVERY, "501": S.OUT_FOR_DELIVERY,
    "3": S.DELIVERED, "301": S.DELIVERED, "302": S.DELIVERED, "303": S.DELIVERED,
    "304": S.DELIVERED,
    "6": S.RETURNING,
    "4": S.RETURNED, "401": S.RETURNED,
    "14": S.REFUSED,
    "7": S.IN_TRANSIT,
    "2": S.PROBLEM, "201": S.PROBLEM, "202": S.PROBLEM, "203": S.REFUSED, "204": S.PROBLEM,
    "205": S.PROBLEM, "206": S.PROBLEM, "207": S.PROBLEM, "208": S.PROBLEM, "209": S.PROBLEM,
    "210": S.PROBLEM,
    "8": S.IN_TRANSIT, "10": S.IN_TRANSIT, "11": S.IN_TRANSIT, "12": S.IN_TRANSIT,
    "13": S.PROBLEM,
}


@pytest.mark.parametrize(("code", "expected"), sorted(DOCUMENTED.items()))
def test_status_table_row(code: str, expected: TrackingStatus) -> None:
    assert STATUS_TABLE[code] is expected
    assert tracking_status(code) is expected


def test_status_table_is_total_over_the_documented_codes_and_nothing_else() -> None:
    assert set(STATUS_TABLE) == set(DOCUMENTED)
    assert Kuaidi100Provider.status_table is STATUS_TABLE


def test_codes_are_looked_up_whole_never_by_prefix() -> None:
    assert tracking_status("1") is S.COLLECTED
    assert tracking_status("101") is S.PENDING
    assert tracking_status("1001") is S.IN_TRANSIT
    assert tracking_status("14") is S.REFUSED
    with pytest.raises(BadResponse):
        tracking_status("1004")
    with pytest.raises(BadResponse):
        tracking_status("")


def test_state_names_point_at_documented_codes() -> None:
    assert set(STATE_NAMES.values()) <= set(STATUS_TABLE)
    mains = {"在途": "0", "揽收": "1", "疑难": "2", "签收": "3", "退签": "4", "派件": "5",
             "退回": "6", "转投": "7", "清关": "8", "拒签": "14"}
    for name, code in mains.items():
        assert STATE_NAMES[name] == code


def _map(name: str) -> TrackingResult:
    payload: dict[str, Any] = fixture(name)
    if name.startswith("callback_"):
        return callback_result(payload, CARRIERS)
    return to_tracking_result(payload, CARRIERS)


SUCCESS_FIXTURES = fixture_names("query_ok") + fixture_names("callback_")


def test_there_are_fixtures_to_map() -> None:
    assert len(SUCCESS_FIXTURES) >= 5


@pytest.mark.parametrize("name", SUCCESS_FIXTURES)
def test_every_fixture_maps(name: str) -> None:
    payload = fixture(name)
    last = payload.get("lastResult", payload)
    result = _map(name)
    assert result.tracking_number == last["nu"]
    assert len(result.events) == len(last["data"])
    times = [e.occurred_at for e in result.events]
    assert times == sorted(times)  # oldest first, whatever order came in
    for event in result.events:
        assert event.occurred_at.utcoffset() == timedelta(hours=8)
        assert event.status in set(TrackingStatus)
        assert event.text
    assert {e.text for e in result.events} == {e["context"] for e in last["data"]}


def test_query_result_with_state_names() -> None:
    result = _map("query_ok.json")
    assert result.carrier == "YTO"
    assert result.status is S.DELIVERED
    assert result.final
    assert [e.status for e in result.events] == [
        S.COLLECTED, S.IN_TRANSIT, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED]
    assert result.events[0].location == "浙江,杭州市,余杭区"
    assert result.events[-1].raw_state == "3"
    assert result.events[0].occurred_at.isoformat() == "2026-11-12T19:26:12+08:00"


def test_query_result_with_advanced_sub_states() -> None:
    result = _map("query_ok_advanced.json")
    assert result.carrier == "ZTO"
    assert result.status is S.OUT_FOR_DELIVERY
    assert not result.final
    assert [e.raw_state for e in result.events] == ["103", "1002", "1001", "5", "501"]
    assert result.events[-1].status is S.OUT_FOR_DELIVERY


def test_polling_callback() -> None:
    result = _map("callback_polling.json")
    assert (result.carrier, result.status, result.final) == ("SF", S.IN_TRANSIT, False)


def test_callback_after_carrier_correction_names_the_corrected_carrier() -> None:
    result = _map("callback_shutdown_corrected.json")
    assert result.carrier == "YUNDA"
    assert result.status is S.DELIVERED
    assert result.final
    assert result.events[-1].raw_state == "304"


def test_abort_without_trace_is_pending_and_final() -> None:
    result = _map("callback_abort_no_trace.json")
    assert (result.carrier, result.status, result.final, result.events) == (
        "JT", S.PENDING, True, ())


def test_events_without_state_take_the_parcel_state() -> None:
    payload = fixture("query_ok.json")
    for event in payload["data"]:
        del event["status"]
    result = to_tracking_result(payload, CARRIERS)
    assert {e.status for e in result.events} == {S.DELIVERED}
    assert {e.raw_state for e in result.events} == {""}


def test_unknown_carrier_keeps_the_asked_or_raw_code() -> None:
    payload = dict(fixture("query_ok.json"), com="huitongkuaidi")
    assert to_tracking_result(payload, CARRIERS, carrier="BEST").carrier == "BEST"
    assert to_tracking_result(payload, CARRIERS).carrier == "huitongkuaidi"


@pytest.mark.parametrize("broken", [
    {"state": "99"},
    {"data": "not a list"},
    {"data": [{"context": "no time"}]},
    {"data": [{"ftime": "21/11/2026", "context": "bad time"}]},
    {"data": ["not an object"]},
])
def test_payloads_that_do_not_map_are_bad_responses(broken: dict[str, Any]) -> None:
    payload = {**fixture("query_ok.json"), **broken}
    with pytest.raises(BadResponse):
        to_tracking_result(payload, CARRIERS)


def test_callback_without_last_result_or_with_unknown_status() -> None:
    with pytest.raises(BadResponse):
        callback_result({"status": "polling"}, CARRIERS)
    with pytest.raises(BadResponse):
        callback_result({**fixture("callback_polling.json"), "status": "paused"}, CARRIERS)


EXPECTED_CARRIERS = {
    "SF": "shunfeng", "ZTO": "zhongtong", "YTO": "yuantong", "STO": "shentong",
    "YUNDA": "yunda", "JT": "jtexpress", "EMS": "ems", "POSTB": "youzhengguonei", "JD": "jd",
    "DBL": "debangkuaidi", "UPS": "ups", "FEDEX": "fedex", "DHL": "dhl", "USPS": "usps",
}


@pytest.mark.parametrize(("canonical", "com"), sorted(EXPECTED_CARRIERS.items()))
def test_carrier_table_row(canonical: str, com: str) -> None:
    assert CARRIERS.to_platform(canonical) == com
    assert CARRIERS.to_canonical(com) == canonical


def test_carrier_table_covers_every_canonical_carrier() -> None:
    assert CARRIERS.canonical_codes() == DOMESTIC | INTERNATIONAL
