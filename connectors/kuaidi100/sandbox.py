"""A Kuaidi100 simulator: parcels that move along scripted journeys on a settable clock.

A parcel is added with a journey kind (`JOURNEYS`); each scan of the journey has an offset
from the parcel's start and becomes visible only once the clock has passed it, so a test
moves a parcel from collected to delivered by advancing a `ManualClock`, and a stalled or
never-collected parcel is simply one whose scans stop (or never begin).

It answers like poll.kuaidi100.com: query.do checks the customer, the sign over the exact
`param` string, the parameters and the carriers' phone check, and returns `{"result": false,
"returnCode": ..., "message": ...}` for every refusal; `poll` records subscriptions (the key
inside `param`, duplicates refused with 501). `render_callbacks()` builds the form-encoded
pushes Kuaidi100 would send (signed UPPER(MD5(param + salt))), including the `abort` pushes
for "3天查询无记录" / "60天无变化" and the carrier correction (`autoCheck`/`comNew`);
`deliver_callbacks()` posts them and re-sends a push up to 3 times, 35 min apart on the
clock, unless the receiver answers Kuaidi100's exact success JSON.

Not simulated: `show` other than 0 (xml/html/text), `schema=xml`, map tracking, international
`destResult`. The item/order state of the base Sandbox is unused here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from connectors.kuaidi100.client import callback_sign, encode_param, query_sign
from connectors.kuaidi100.mapping import CARRIERS
from core.clock import Clock, format_beijing
from core.sandbox import (
    Fault,
    PushFault,
    Sandbox,
    SandboxRequest,
    SandboxResponse,
)
from core.signing import constant_time_equal

# `com` codes the simulated Kuaidi100 knows: the canonical carriers plus a few others
KNOWN_COMPANIES = frozenset({code for _, code in CARRIERS.items()} | {
    "youzhengbk", "debangwuliu", "huitongkuaidi", "zhaijisong", "youshuwuliu", "danniao",
    "kuayue", "jingdongkuaiyun", "zhongtongkuaiyun", "annengwuliu", "fengwang",
})
# carriers whose answers need the sender's or recipient's phone (the last 4 digits do)
PHONE_CHECKED = frozenset({"shunfeng", "fengwang", "zhongtong"})
MAIN_NAMES: Mapping[str, str] = {
    "0": "在途", "1": "揽收", "2": "疑难", "3": "签收", "4": "退签", "5": "派件", "6": "退回",
    "7": "转投", "8": "清关", "14": "拒签",
}
ADVANCED_RESULTV2 = frozenset({"4", "6", "8"})
SUCCESS_CODES = frozenset({"3", "4"})  # signed by someone: ischeck = 1


@dataclass(frozen=True, slots=True)
class Scan:
    after: timedelta  # from the parcel's start
    state: str  # main state code
    sub_state: str  # advanced sub-state code (the main code again when there is none)
    context: str
    area: str
    area_code: str


_ORIGIN = ("浙江,杭州市", "CN330100000000")
_DEST = ("北京,北京市", "CN110100000000")


def _scan(hours: float, state: str, sub: str, context: str,
          where: tuple[str, str] = _ORIGIN) -> Scan:
    return Scan(timedelta(hours=hours), state, sub, context, where[0], where[1])


_TO_DESTINATION = (
    _scan(2, "1", "103", "【杭州市】【杭州西湖营业部】快件已揽收"),
    _scan(6, "0", "1002", "【杭州市】快件已发往【杭州转运中心】"),
    _scan(10, "0", "1002", "【杭州市】快件已到达【杭州转运中心】"),
    _scan(14, "0", "1002", "【杭州市】快件已从【杭州转运中心】发出，发往【北京转运中心】"),
)
_TO_DOOR = (
    _scan(30, "0", "1001", "【北京市】快件已到达【北京转运中心】", _DEST),
    _scan(34, "5", "5", "【北京市】【朝阳营业部】派件员正在为您派件", _DEST),
)
_REFUSED = _scan(38, "14", "14", "【北京市】收件人拒收，快件待退回", _DEST)

JOURNEYS: Mapping[str, tuple[Scan, ...]] = {
    "normal": _TO_DESTINATION + _TO_DOOR + (
        _scan(38, "3", "301", "【北京市】快件已签收，签收人：本人", _DEST),),
    # leaves the origin hub and is never scanned again
    "stalled": _TO_DESTINATION,
    "problem": _TO_DESTINATION + _TO_DOOR + (
        _scan(40, "2", "206", "【北京市】派件员多次联系收件人未果，快件滞留营业部", _DEST),),
    "refused": _TO_DESTINATION + _TO_DOOR + (_REFUSED,),
    "returned": _TO_DESTINATION + _TO_DOOR + (
        _REFUSED,
        _scan(44, "6", "6", "【北京市】快件已退回，正在返回寄件人途中", _DEST),
        _scan(62, "6", "6", "【杭州市】退回件已到达【杭州转运中心】"),
        _scan(70, "4", "4", "【杭州市】退回件已由寄件人签收"),
    ),
    # a waybill was printed, nobody ever scanned the parcel
    "never_collected": (),
}


@dataclass
class SandboxParcel:
    com: str
    number: str
    journey: str
    start: datetime
    phone: str
    scans: tuple[Scan, ...]

    def visible(self, now: datetime) -> list[tuple[datetime, Scan]]:
        timed = [(self.start + scan.after, scan) for scan in self.scans]
        return [(at, scan) for at, scan in timed if at <= now]


@dataclass
class SandboxSubscription:
    company: str
    number: str
    callback_url: str
    salt: str | None
    resultv2: str
    subscribed_at: datetime
    next_check: datetime
    status: str = "polling"  # polling, shutdown, abort
    pushed: int = 0  # scans already pushed
    com_old: str = ""  # set when Kuaidi100 corrected the carrier itself


@dataclass(frozen=True, slots=True)
class CallbackDelivery:
    url: str
    company: str
    number: str
    push_status: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: {
        "content-type": "application/x-www-form-urlencoded;charset=UTF-8"})


@dataclass
class _Pending:
    delivery: CallbackDelivery
    due_at: datetime
    attempts: int = 0


def _error(code: str, message: str) -> SandboxResponse:
    return SandboxResponse.of_json({"result": False, "returnCode": code, "message": message})


def acknowledged(response: httpx.Response) -> bool:
    """Kuaidi100 counts a push as received only on its success JSON (any message text)."""
    if response.status_code != 200:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return (isinstance(body, dict) and body.get("result") is True
            and str(body.get("returnCode")) == "200")


class Kuaidi100Sandbox(Sandbox):
    platform: ClassVar[str] = "kuaidi100"
    # push cadence: first look 15 min after subscribing, then about every 4 h
    first_push_delay: ClassVar[timedelta] = timedelta(minutes=15)
    push_interval: ClassVar[timedelta] = timedelta(hours=4)
    no_trace_abort: ClassVar[timedelta] = timedelta(days=3)
    idle_abort: ClassVar[timedelta] = timedelta(days=60)
    callback_retry_delay: ClassVar[timedelta] = timedelta(minutes=35)
    callback_retries: ClassVar[int] = 3

    def __init__(self, *, app_key: str = "SANDBOXCUSTOMER00000000000000000",
                 app_secret: str = "sandbox-kuaidi100-key", clock: Clock | None = None,
                 seed: int = 0, timeout_seconds: float = 30.0,
                 state_carries_substate: bool = False,
                 access_token: str = "sandbox-access-token-1",
                 refresh_token: str = "sandbox-refresh-token-1") -> None:
        # Kuaidi100 has no tokens; the two are accepted so generic code can build any sandbox
        super().__init__(app_key=app_key, app_secret=app_secret, clock=clock, seed=seed,
                         timeout_seconds=timeout_seconds, access_token=access_token,
                         refresh_token=refresh_token)
        # whether `state` itself carries the sub-state with an advanced resultv2
        # (unconfirmed at Kuaidi100; the connector must cope with both)
        self.state_carries_substate = state_carries_substate
        self.parcels: dict[tuple[str, str], SandboxParcel] = {}
        self.subscriptions: dict[tuple[str, str], SandboxSubscription] = {}
        self.refused_companies: set[str] = set()  # answered 701 on subscription
        self.undelivered: list[CallbackDelivery] = []  # gave up after the retries
        self._outbox: list[_Pending] = []

    @property
    def customer(self) -> str:
        return self.app_key

    @property
    def key(self) -> str:
        return self.app_secret

    # -- operator API --------------------------------------------------------------------
    def add_parcel(self, carrier_code: str, number: str, journey: str = "normal", *,
                   phone: str = "", start: datetime | None = None) -> SandboxParcel:
        """A parcel on its way. `carrier_code`: a canonical code (`YTO`) or Kuaidi100's
        (`yuantong`). Its scans appear as the clock passes `start` + each scan's offset."""
        if journey not in JOURNEYS:
            raise ValueError(f"unknown journey {journey!r}; one of {sorted(JOURNEYS)}")
        com = (CARRIERS.to_platform(carrier_code)
               if carrier_code in CARRIERS.canonical_codes() else carrier_code)
        parcel = SandboxParcel(com=com, number=number, journey=journey,
                               start=start or self.clock.now(), phone=phone,
                               scans=JOURNEYS[journey])
        self.parcels[(com, number)] = parcel
        return parcel

    def render_result(self, parcel: SandboxParcel, *, resultv2: str = "1",
                      order: str = "desc") -> dict[str, Any]:
        """The query result (also a callback's lastResult) as Kuaidi100 renders it now."""
        visible = parcel.visible(self.clock.now())
        advanced = resultv2 in ADVANCED_RESULTV2
        data: list[dict[str, str]] = []
        for at, scan in visible:
            event = {"time": format_beijing(at), "ftime": format_beijing(at),
                     "context": scan.context}
            if resultv2 != "0":
                event.update(status=MAIN_NAMES[scan.state], areaCode=scan.area_code,
                             areaName=scan.area)
            if advanced:
                event.update(statusCode=scan.sub_state, location=scan.area)
            data.append(event)
        if order != "asc":
            data.reverse()
        last = visible[-1][1] if visible else None
        state = "0" if last is None else (
            last.sub_state if advanced and self.state_carries_substate else last.state)
        return {
            "message": "ok", "nu": parcel.number,
            "ischeck": "1" if last is not None and last.state in SUCCESS_CODES else "0",
            "condition": "00", "com": parcel.com, "status": "200", "state": state,
            "data": data,
        }

    # -- protocol ------------------------------------------------------------------------
    def api_name(self, request: SandboxRequest) -> str:
        path = request.path.rstrip("/")
        if path.endswith("/poll/query.do"):
            return "query"
        if path.endswith("/poll"):
            return "subscribe"
        return "unknown"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        api = self.api_name(request)
        if api == "unknown":
            return SandboxResponse(404, b"<html><body>404 Not Found</body></html>",
                                   {"content-type": "text/html"})
        form = request.form() if request.method == "POST" else dict(request.query)
        if api == "query":
            return self._query(form)
        return self._subscribe(form)

    def fault_response(self, fault: Fault, api: str) -> SandboxResponse:
        if api == "query":
            if fault is Fault.RATE_LIMIT:
                return _error("502", "服务器繁忙，请稍后再试")
            return _error("501", "服务器错误")
        return _error("500", "服务器错误")

    def _query(self, form: Mapping[str, str]) -> SandboxResponse:
        customer, sign, raw = form.get("customer"), form.get("sign"), form.get("param")
        if not customer or not sign or not raw:
            return _error("400", "提交的数据不完整，或者贵公司没授权")
        if customer != self.customer:
            return _error("400", "提交的数据不完整，或者贵公司没授权")
        if not constant_time_equal(query_sign(raw, self.key, customer), sign):
            return _error("503", "验证签名失败")
        try:
            param = json.loads(raw)
        except ValueError:
            return _error("501", "服务器错误")
        if not isinstance(param, dict):
            return _error("501", "服务器错误")
        com, num = str(param.get("com") or ""), str(param.get("num") or "")
        if not com or not num or len(num) > 32:
            return _error("400", "提交的数据不完整，或者贵公司没授权")
        if com not in KNOWN_COMPANIES:
            return _error("400", "找不到对应公司")
        if str(param.get("show") or "0") != "0":
            return _error("400", "sandbox: only show=0 (json) is simulated")
        phone = "".join(ch for ch in str(param.get("phone") or "") if ch.isdigit())
        if com in PHONE_CHECKED and not phone:
            return _error("408", "验证码错误：该快递公司需要提供寄件人或收件人手机号")
        parcel = self.parcels.get((com, num))
        if parcel is None or not parcel.visible(self.clock.now()):
            return _error("500", "查询无结果，请隔段时间再查")
        if com in PHONE_CHECKED and not parcel.phone.endswith(phone[-4:]):
            return _error("408", "验证码错误：手机号与运单不符")
        result = self.render_result(parcel, resultv2=str(param.get("resultv2") or "0"),
                                    order=str(param.get("order") or "desc"))
        return SandboxResponse.of_json(result)

    def _subscribe(self, form: Mapping[str, str]) -> SandboxResponse:
        raw = form.get("param")
        if form.get("schema", "json") != "json" or not raw:
            return _error("700", "订阅方的订阅数据存在错误（如不支持的快递公司、单号为空、单号超长等）")
        try:
            param = json.loads(raw)
        except ValueError:
            return _error("700", "订阅方的订阅数据存在错误（如不支持的快递公司、单号为空、单号超长等）")
        if not isinstance(param, dict) or not isinstance(param.get("parameters", {}), dict):
            return _error("700", "订阅方的订阅数据存在错误（如不支持的快递公司、单号为空、单号超长等）")
        if not constant_time_equal(str(param.get("key") or ""), self.key):
            return _error("600", "您不是合法的订阅者（即授权Key出错）")
        company, number = str(param.get("company") or ""), str(param.get("number") or "")
        parameters: Mapping[str, Any] = param.get("parameters") or {}
        url = str(parameters.get("callbackurl") or "")
        if (not company or company not in KNOWN_COMPANIES or not number or len(number) > 32
                or not url.startswith(("http://", "https://"))):
            return _error("700", "订阅方的订阅数据存在错误（如不支持的快递公司、单号为空、单号超长等）或错误的回调地址")
        if company in self.refused_companies:
            return _error("701", "拒绝订阅的快递公司")
        known = self.subscriptions.get((company, number))
        if known is not None and known.status == "polling":
            return _error("501", "重复订阅")
        now = self.clock.now()
        salt = parameters.get("salt")
        self.subscriptions[(company, number)] = SandboxSubscription(
            company=company, number=number, callback_url=url,
            salt=None if salt is None else str(salt),
            resultv2=str(parameters.get("resultv2") or "0"), subscribed_at=now,
            next_check=now + self.first_push_delay)
        return SandboxResponse.of_json({"result": True, "returnCode": "200", "message": "提交成功"})

    # -- callbacks -----------------------------------------------------------------------
    def render_callbacks(self) -> list[CallbackDelivery]:
        """The pushes due now: every watched parcel with scans not pushed yet (the whole
        history each time, as Kuaidi100 sends it), plus the abort pushes. Queued for
        `deliver_callbacks` as well."""
        now = self.clock.now()
        rendered: list[CallbackDelivery] = []
        for sub in list(self.subscriptions.values()):
            if sub.status != "polling" or now < sub.next_check:
                continue
            sub.next_check = now + self.push_interval
            parcel = self.parcels.get((sub.company, sub.number))
            visible = parcel.visible(now) if parcel else []
            if parcel is not None and visible:
                last_at, last = visible[-1]
                if len(visible) > sub.pushed:
                    sub.pushed = len(visible)
                    sub.status = "shutdown" if last.state in SUCCESS_CODES else "polling"
                    rendered.append(self._callback(sub, sub.status, "", parcel))
                elif now - last_at >= self.idle_abort:
                    sub.status = "abort"
                    rendered.append(self._callback(sub, "abort", "60天无变化", parcel))
            elif now - sub.subscribed_at >= self.no_trace_abort:
                sub.status = "abort"
                rendered.extend(self._no_trace(sub))
        self._outbox.extend(_Pending(d, now) for d in rendered)
        return rendered

    def _no_trace(self, sub: SandboxSubscription) -> list[CallbackDelivery]:
        """3 days without a trace. When the number belongs to another carrier Kuaidi100
        says so (`comNew`) and re-subscribes itself under the corrected code."""
        actual = next((p for (com, num), p in self.parcels.items()
                       if num == sub.number and com != sub.company), None)
        push = self._callback(sub, "abort", "3天查询无记录", None,
                              com_new=actual.com if actual else "")
        if actual is not None and (actual.com, sub.number) not in self.subscriptions:
            now = self.clock.now()
            self.subscriptions[(actual.com, sub.number)] = SandboxSubscription(
                company=actual.com, number=sub.number, callback_url=sub.callback_url,
                salt=sub.salt, resultv2=sub.resultv2, subscribed_at=now,
                next_check=now, com_old=sub.company)
        return [push]

    def _callback(self, sub: SandboxSubscription, status: str, message: str,
                  parcel: SandboxParcel | None, *, com_new: str = "") -> CallbackDelivery:
        if parcel is not None:
            last_result = self.render_result(parcel, resultv2=sub.resultv2)
        else:
            last_result = {"message": message, "nu": sub.number, "ischeck": "0",
                           "condition": "", "com": sub.company, "status": "200",
                           "state": "0", "data": []}
        corrected = bool(sub.com_old)
        push = {
            "status": status, "billstatus": "", "message": message,
            "autoCheck": "1" if corrected else "0",
            "comOld": sub.com_old, "comNew": sub.company if corrected else com_new,
            "lastResult": last_result,
        }
        param = encode_param(push)
        fields = [("param", param)]
        if sub.salt is not None:
            fields.append(("sign", callback_sign(param, sub.salt)))
        return CallbackDelivery(url=sub.callback_url, company=sub.company, number=sub.number,
                                push_status=status, body=urlencode(fields).encode())

    async def deliver_callbacks(self, client: httpx.AsyncClient) -> list[int]:
        """POST the due pushes (rendering new ones first), applying the push faults.
        A push not acknowledged with Kuaidi100's success JSON is re-sent up to
        `callback_retries` times, `callback_retry_delay` apart. Returns the statuses."""
        self.render_callbacks()
        now = self.clock.now()
        due = [p for p in self._outbox if p.due_at <= now]
        if len(due) > 1 and self.faults.draw_push(PushFault.OUT_OF_ORDER):
            due.reverse()
        statuses: list[int] = []
        for pending in due:
            self._outbox.remove(pending)
            if self.faults.draw_push(PushFault.DROP):
                continue
            copies = 2 if self.faults.draw_push(PushFault.DUPLICATE) else 1
            received = False
            for _ in range(copies):
                try:
                    response = await client.post(pending.delivery.url,
                                                 content=pending.delivery.body,
                                                 headers=dict(pending.delivery.headers))
                except httpx.HTTPError:
                    statuses.append(0)
                    continue
                statuses.append(response.status_code)
                received = received or acknowledged(response)
            if received:
                continue
            pending.attempts += 1
            if pending.attempts > self.callback_retries:
                self.undelivered.append(pending.delivery)
            else:
                pending.due_at = now + self.callback_retry_delay
                self._outbox.append(pending)
        return statuses

    @property
    def pending_callbacks(self) -> list[CallbackDelivery]:
        return [p.delivery for p in self._outbox]
