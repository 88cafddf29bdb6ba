"""Kuaidi100 JSON ⇄ canonical tracking records.

Kuaidi100 reports a parcel's `state` as a main code (0–8, 14) and, with an advanced
`resultv2`, each event's `statusCode` as a 2–4-digit sub-state (101 已下单 … 1003 转递). The
two families overlap in the first digits only by accident — `1001` (arrived at the
destination city) is no relative of `1` (collected) or of `101` (order placed) — so codes are
looked up whole in one table, never by prefix. Without an advanced `resultv2` an event
carries only the state *name* (在途, 签收, …), which `STATE_NAMES` turns back into a code.

Kuaidi100's `ftime` is Beijing wall time without a zone; it is parsed as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.clock import parse_beijing
from core.connector import CarrierTable
from core.errors import BadResponse
from core.records import TrackingEventRecord, TrackingResult, TrackingStatus

S = TrackingStatus

# canonical carrier (core.carriers) -> Kuaidi100 `com`. Corroborated across several
# open-source tables; the full list (~3000 codes) is Kuaidi100's to publish, so shops may
# add or rename codes with `options = {carriers = {...}}`.
CARRIERS = CarrierTable("kuaidi100", {
    "SF": "shunfeng",
    "ZTO": "zhongtong",
    "YTO": "yuantong",
    "STO": "shentong",
    "YUNDA": "yunda",
    "JT": "jtexpress",
    "EMS": "ems",
    "POSTB": "youzhengguonei",
    "JD": "jd",
    "DBL": "debangkuaidi",
    "UPS": "ups",
    "FEDEX": "fedex",
    "DHL": "dhl",
    "USPS": "usps",
})

# Every state and sub-state code Kuaidi100 documents -> canonical status. Total: a code not
# here is a payload we do not understand (BadResponse), never a guess.
STATUS_TABLE: Mapping[str, TrackingStatus] = {
    # 1 揽收 picked up
    "1": S.COLLECTED,
    "101": S.PENDING,  # 已下单: a waybill exists, no scan yet
    "102": S.PENDING,  # 待揽收: waiting for the courier
    "103": S.COLLECTED,  # 已揽收
    # 0 在途 in transit
    "0": S.IN_TRANSIT,
    "1001": S.IN_TRANSIT,  # 到达派件城市
    "1002": S.IN_TRANSIT,  # 干线
    "1003": S.IN_TRANSIT,  # 转递: forwarded to a new address
    # 5 派件 out for delivery
    "5": S.OUT_FOR_DELIVERY,
    # 投柜或驿站: waiting in a locker/station — last mile, not yet in the buyer's hands
    "501": S.OUT_FOR_DELIVERY,
    # 3 签收 delivered
    "3": S.DELIVERED,
    "301": S.DELIVERED,  # 本人签收
    "302": S.DELIVERED,  # 派件异常后签收
    "303": S.DELIVERED,  # 代签
    "304": S.DELIVERED,  # 投柜或站签收
    # 6 退回 on its way back to the sender
    "6": S.RETURNING,
    # 4 退签 back with the sender and signed
    "4": S.RETURNED,
    "401": S.RETURNED,  # 已销单: waybill cancelled
    # 14 拒签 refused by the recipient
    "14": S.REFUSED,
    # 7 转投 handed to another carrier: still moving
    "7": S.IN_TRANSIT,
    # 2 疑难 problem
    "2": S.PROBLEM,
    "201": S.PROBLEM,  # 超时未签收
    "202": S.PROBLEM,  # 超时未更新
    "203": S.REFUSED,  # 拒收: the recipient refused, the shipper has not decided yet
    "204": S.PROBLEM,  # 派件异常
    "205": S.PROBLEM,  # 柜或驿站超时未取
    "206": S.PROBLEM,  # 无法联系
    "207": S.PROBLEM,  # 超区
    "208": S.PROBLEM,  # 滞留
    "209": S.PROBLEM,  # 破损
    "210": S.PROBLEM,  # 销单
    # 8 清关 customs: moving, unless clearance failed
    "8": S.IN_TRANSIT,
    "10": S.IN_TRANSIT,  # 待清关
    "11": S.IN_TRANSIT,  # 清关中
    "12": S.IN_TRANSIT,  # 已清关
    "13": S.PROBLEM,  # 清关异常
}

# The names `resultv2` puts on each event (`status`), back to their codes.
STATE_NAMES: Mapping[str, str] = {
    "在途": "0", "揽收": "1", "疑难": "2", "签收": "3", "退签": "4", "派件": "5", "退回": "6",
    "转投": "7", "清关": "8", "拒签": "14",
    "已下单": "101", "待揽收": "102", "已揽收": "103",
    "到达派件城市": "1001", "干线": "1002", "转递": "1003",
    "投柜或驿站": "501",
    "本人签收": "301", "派件异常后签收": "302", "代签": "303", "投柜或站签收": "304",
    "已销单": "401",
    "超时未签收": "201", "超时未更新": "202", "拒收": "203", "派件异常": "204",
    "柜或驿站超时未取": "205", "无法联系": "206", "超区": "207", "滞留": "208", "破损": "209",
    "销单": "210",
    "待清关": "10", "清关中": "11", "已清关": "12", "清关异常": "13",
}

# A parcel in one of these states will not move again (until a new waybill).
FINAL_STATUSES = frozenset({S.DELIVERED, S.RETURNED})


def tracking_status(code: str) -> TrackingStatus:
    try:
        return STATUS_TABLE[code]
    except KeyError:
        raise BadResponse(f"kuaidi100: unknown state code {code!r}") from None


def event_code(event: Mapping[str, Any]) -> str:
    """The most precise code an event carries: its advanced `statusCode`, else the code of
    its state name, else "" (resultv2 off: Kuaidi100 gives no per-event state)."""
    code = str(event.get("statusCode") or "")
    if code:
        return code
    return STATE_NAMES.get(str(event.get("status") or ""), "")


def to_event(event: Mapping[str, Any], parcel_status: TrackingStatus) -> TrackingEventRecord:
    try:
        occurred_at = parse_beijing(str(event["ftime"]))
    except (KeyError, ValueError) as exc:
        raise BadResponse(f"kuaidi100: event without a valid ftime: {exc}") from exc
    code = event_code(event)
    return TrackingEventRecord(
        occurred_at=occurred_at,
        status=tracking_status(code) if code else parcel_status,
        location=str(event.get("areaName") or event.get("location") or ""),
        text=str(event.get("context") or ""),
        raw_state=code,
    )


def to_tracking_result(result: Mapping[str, Any], carriers: CarrierTable, *,
                       carrier: str | None = None, finished: bool = False) -> TrackingResult:
    """A query result (or a callback's `lastResult`) as a TrackingResult.

    `carrier`: the canonical code asked for, used when Kuaidi100's `com` has no canonical
    code in the table; failing both, the Kuaidi100 code itself is kept so nothing is lost.
    `finished`: the provider stopped watching (callback `shutdown`/`abort`).
    Events come oldest first, whatever order Kuaidi100 sent them in."""
    raw_events = result.get("data") or []
    if not isinstance(raw_events, Sequence) or isinstance(raw_events, str | bytes):
        raise BadResponse("kuaidi100: `data` is not a list")
    com = str(result.get("com") or "")
    number = str(result.get("nu") or "")
    # no scan at all is PENDING, whatever `state` says
    status = tracking_status(str(result.get("state", ""))) if raw_events else S.PENDING
    events = sorted((to_event(e, status) for e in raw_events if isinstance(e, Mapping)),
                    key=lambda e: e.occurred_at)
    if len(events) != len(raw_events):
        raise BadResponse("kuaidi100: an event is not an object")
    signed = str(result.get("ischeck") or "0") == "1"
    return TrackingResult(
        carrier=carriers.to_canonical(com) or carrier or com,
        tracking_number=number,
        status=status,
        events=tuple(events),
        final=finished or signed or status in FINAL_STATUSES,
    )


def callback_result(push: Mapping[str, Any], carriers: CarrierTable) -> TrackingResult:
    """A callback's decoded `param`. After Kuaidi100 corrected the carrier (`autoCheck=1`),
    `comNew` names the carrier that actually carries the parcel."""
    last = push.get("lastResult")
    if not isinstance(last, Mapping):
        raise BadResponse("kuaidi100 callback: no lastResult")
    status = str(push.get("status") or "")
    if status not in {"polling", "shutdown", "abort", "updateall"}:
        raise BadResponse(f"kuaidi100 callback: unknown push status {status!r}")
    result = to_tracking_result(last, carriers, finished=status in {"shutdown", "abort"})
    corrected = str(push.get("comNew") or "")
    if str(push.get("autoCheck") or "0") == "1" and corrected:
        return TrackingResult(carrier=carriers.to_canonical(corrected) or corrected,
                              tracking_number=result.tracking_number, status=result.status,
                              events=result.events, final=result.final)
    return result

